"""The admin on a laptop screen (1366×768): every list and add page fits its width without horizontal
overflow, with rows of realistic length in the lists (long prompts, model answers, names), and no column
squeezed until its rows stand tall."""

from __future__ import annotations

from django.contrib import admin
from django.urls import NoReverseMatch, reverse

from feedback.models import Comparison, ComparisonResponse, GenerationRun
from feedback.services.answers import human_answer_create
from tests.browser.conftest import ARTIFACTS
from tests.conftest import TEST_PASSWORD
from tests.factories import (
    AdminFactory,
    AnnotatorFactory,
    JudgmentFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
)

WIDTH, HEIGHT = 1366, 768
LONG = (
    "Summarize the following meeting notes for the engineering manager, in five bullet points, keeping every "
    "decision and owner, and leaving out the small talk about the coffee machine and the weather outside. "
)
TALLEST_ROW_PX = 160


def _seed():
    project = ProjectFactory(name="Customer support replies, second round of the holiday campaign")
    checkpoints = [
        PolicyCheckpointFactory(
            name=f"llama-3.1-8b-instruct-sft-step-{step:06d}", source=f"/models/run-{step}"
        )
        for step in (1000, 2000)
    ]
    run = GenerationRun.objects.create(
        project=project, checkpoint=checkpoints[1], opponent_checkpoint=checkpoints[0], samples_per_prompt=1
    )
    for index in range(6):
        prompt = PromptFactory(
            project=project,
            external_id=f"support-ticket-{index:05d}-with-a-rather-long-identifier",
            conversation=[{"role": "user", "content": LONG * 3}],
        )
        comparison = Comparison.objects.create(
            project=project, prompt=prompt, generation_run=run, required_judgments=3
        )
        for position, checkpoint in enumerate(checkpoints):
            response = ResponseFactory(
                prompt=prompt, run=run, checkpoint=checkpoint, sample_index=position, text=LONG * 4
            )
            ComparisonResponse.objects.create(comparison=comparison, response=response, position=position)
        JudgmentFactory(comparison=comparison, annotator=AnnotatorFactory(), rationale=LONG)
        human_answer_create(prompt=prompt, author=AnnotatorFactory(), text=LONG * 2)


def _pages() -> list[str]:
    urls = []
    for model in admin.site._registry:
        meta = model._meta
        for view in ("changelist", "add"):
            try:
                urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}"))
            except NoReverseMatch:
                continue
    return sorted(urls)


def test_every_admin_list_and_add_page_fits_a_laptop_screen(browser_page, live_server):
    page, watch = browser_page
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    _seed()
    staff = AdminFactory(username="laptop-admin")
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill(staff.username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/admin/")
    problems = []
    checked = 0
    for url in _pages():
        response = page.goto(f"{live_server.url}{url}")
        if response.status == 403:  # read-only models have no add page
            continue
        assert response.status == 200, url
        checked += 1
        measured = page.evaluate(
            """() => {
                const overflow = document.scrollingElement.scrollWidth - window.innerWidth;
                const results = document.querySelector('#changelist .results');
                const inner = results ? results.scrollWidth - results.clientWidth : 0;
                const rows = [...document.querySelectorAll('#result_list tbody tr')].map(r => r.offsetHeight);
                return {overflow, inner, tallest: rows.length ? Math.max(...rows) : 0};
            }"""
        )
        if measured["overflow"] > 0 or measured["inner"] > 0 or measured["tallest"] > TALLEST_ROW_PX:
            problems.append(f"{url}: {measured}")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            name = url.strip("/").replace("/", "-")
            page.screenshot(path=str(ARTIFACTS / f"admin-1366-{name}.png"), full_page=False)
    assert checked >= 20
    assert problems == [], "\n".join(problems)
    assert watch.dialogs == []
    assert watch.foreign_requests == []

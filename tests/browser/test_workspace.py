"""The workspace in a real browser: keyboard-only judging, reloads, retries, hostile text, small screens."""

import json
import re
import struct

import pytest

from feedback.models import Assignment, Comparison, Judgment
from tests.annotate.conftest import comparisons_bulk_create
from tests.browser.conftest import ARTIFACTS, log_in
from tests.factories import TEST_PASSWORD, AnnotatorFactory, ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)

CANARY = "http://canary.rankwise.invalid"
XSS_PAYLOADS = [
    f"<script>fetch('{CANARY}/script'); alert('script')</script>",
    f"<img src=x onerror=\"alert('img'); fetch('{CANARY}/img')\">",
    f"<svg onload=\"alert('svg')\"><image href='{CANARY}/svg.png'/></svg>",
    f"<iframe srcdoc=\"<script>parent.alert('iframe')</script>\" src='{CANARY}/frame'></iframe>",
    "[click me](javascript:alert('link'))",
    f"![tracking pixel]({CANARY}/pixel.png)",
    # Mutation XSS: parsers that re-serialise this turn the attribute's text into a live <img>.
    f"<noscript><p title=\"</noscript><img src=x onerror=alert('mxss') src={CANARY}/mxss>\">",
    f"<math><mtext><table><mglyph><style><img src={CANARY}/mglyph onerror=alert('mglyph')>",
]


@pytest.fixture
def annotator_in_project():
    annotator = AnnotatorFactory(username="keyboard-annotator")
    project = ProjectFactory(
        slug="browser",
        judgments_per_comparison=1,
        guidelines="# How to judge\n\nPrefer the **correct** answer.",
    )
    project.members.add(annotator)
    return annotator, project


def open_workspace(page, live_server, annotator, project) -> None:
    """Log in through the login form, then open the project's workspace."""
    log_in(page, live_server.url, annotator.username, TEST_PASSWORD)
    page.goto(f"{live_server.url}/projects/{project.slug}/annotate")


def shown_assignment(page) -> int:
    return int(page.locator("form#judgment").get_attribute("data-assignment-id"))


def wait_for_next(page, previous: int) -> int:
    page.wait_for_function(
        "previous => { const form = document.querySelector('form#judgment');"
        " return form && Number(form.dataset.assignmentId) !== previous || !!document.getElementById('all-done'); }",
        arg=previous,
    )
    return shown_assignment(page) if page.locator("form#judgment").count() else 0


def test_five_comparisons_judged_with_the_keyboard_only(browser_page, live_server, annotator_in_project):
    page, watch = browser_page
    annotator, project = annotator_in_project
    comparisons_bulk_create(project, 6)
    open_workspace(page, live_server, annotator, project)
    assert page.locator("#today-count").inner_text() == "0"

    # Each round: what is pressed, and what must be stored.
    rounds = [
        (["a", "3"], {"choice": "a", "strength": 3}),
        (["b", "1", "u"], {"choice": "b", "strength": 1, "flags": ["unsafe"]}),
        (["t"], {"choice": "tie", "strength": None}),
        (["x", "o", "k"], {"choice": "both_bad", "flags": ["broken", "off_topic"]}),
        (
            ["a", "2", "r", "4", "5"],
            {"choice": "a", "strength": 2, "rating_a": {"helpfulness": 5, "instruction_following": 4}},
        ),
    ]
    assignment = shown_assignment(page)
    stored_ids = []
    for number, (keys, _) in enumerate(rounds, start=1):
        for key in keys:
            page.keyboard.press(key)
        if number == 3:  # a rationale, typed after "/" and left with Esc
            page.keyboard.press("/")
            page.keyboard.type("Both are equally good.")
            page.keyboard.press("Escape")
        page.keyboard.press("Enter")
        page.get_by_role("status").filter(has_text="Saved").wait_for()
        # The answer's progress, as the script shows it before moving on.
        assert re.fullmatch(r"\d+% complete|being counted", page.locator("#project-percent").inner_text())
        stored_ids.append(assignment)
        assignment = wait_for_next(page, assignment)
        assert page.locator("#today-count").inner_text() == str(number)

    judgments = {
        judgment.assignment_id: judgment for judgment in Judgment.objects.filter(annotator=annotator)
    }
    assert sorted(judgments) == sorted(stored_ids)
    for assignment_id, (_, expected) in zip(stored_ids, rounds, strict=True):
        judgment = judgments[assignment_id]
        assert (judgment.choice, judgment.strength) == (expected["choice"], expected.get("strength"))
        assert judgment.flags == expected.get("flags", [])
        assert judgment.time_spent_ms > 0
        if "rating_a" in expected:
            first_response = judgment.comparison.entries.get(position=0).response_id
            assert judgment.ratings == {str(first_response): expected["rating_a"]}
    assert judgments[stored_ids[2]].rationale == "Both are equally good."
    assert Comparison.objects.filter(status="completed").count() == 5
    assert watch.dialogs == []
    assert watch.foreign_requests == []
    assert watch.console_errors == []


def test_a_reload_mid_comparison_shows_the_same_comparison(browser_page, live_server, annotator_in_project):
    page, _ = browser_page
    annotator, project = annotator_in_project
    comparisons_bulk_create(project, 3)
    open_workspace(page, live_server, annotator, project)
    first = shown_assignment(page)
    text = page.locator("#response-A .response-text").inner_text()
    page.keyboard.press("a")
    page.reload()
    assert shown_assignment(page) == first
    assert page.locator("#response-A .response-text").inner_text() == text
    assert Assignment.objects.filter(annotator=annotator).count() == 1


def test_a_failed_request_is_retried_with_the_same_key_and_saved_once(
    browser_page, live_server, annotator_in_project
):
    page, watch = browser_page
    annotator, project = annotator_in_project
    comparisons_bulk_create(project, 2)
    open_workspace(page, live_server, annotator, project)
    sent_bodies = []

    def flaky(route):
        sent_bodies.append(route.request.post_data)
        if len(sent_bodies) == 1:
            route.fulfill(status=503, body="down for a moment")  # the server never saw this one
        elif len(sent_bodies) == 2:
            assert route.fetch().status == 201  # the server stores it, but the answer is lost
            route.abort("connectionreset")
        else:
            route.continue_()  # answered as a replay of the stored judgment

    page.route(re.compile(r".*/judgment$"), flaky)
    assigned = shown_assignment(page)
    page.keyboard.press("b")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.get_by_role("status").filter(has_text="retrying").wait_for()
    page.get_by_role("status").filter(has_text="Saved").wait_for(timeout=20_000)
    wait_for_next(page, assigned)
    assert len(sent_bodies) == 3
    keys = {json.loads(body)["submission_key"] for body in sent_bodies}
    assert len(keys) == 1
    assert len(set(sent_bodies)) == 1  # the very same request each time
    judgment = Judgment.objects.get(annotator=annotator)
    assert (judgment.submission_key, judgment.choice, judgment.strength) == (keys.pop(), "b", 2)
    assert watch.dialogs == []


def test_hostile_model_text_is_shown_as_inert_text(browser_page, live_server, annotator_in_project):
    page, watch = browser_page
    annotator, project = annotator_in_project
    (comparison,) = comparisons_bulk_create(project, 1)
    hostile = "\n\n".join(XSS_PAYLOADS)
    for entry in comparison.entries.all():
        entry.response.text = hostile
        entry.response.save()
    comparison.prompt.conversation = [{"role": "user", "content": XSS_PAYLOADS[0] + "\n\n" + XSS_PAYLOADS[6]}]
    comparison.prompt.save()
    project.guidelines = XSS_PAYLOADS[1] + "\n\n" + XSS_PAYLOADS[3]
    project.save()

    open_workspace(page, live_server, annotator, project)
    page.keyboard.press("i")  # the guidelines render the same way
    page.keyboard.press("Escape")
    page.locator("#response-B .response-text").hover()
    page.wait_for_timeout(500)

    text = page.locator("#response-A .response-text").inner_text()
    for visible in (
        "<script>fetch(",
        "<img src=x onerror=",
        "<svg onload=",
        "<iframe srcdoc=",
        "<noscript><p title=",
        "<math><mtext>",
    ):
        assert visible in text
    assert "tracking pixel" in text  # an image becomes its alt text
    hostile_elements = page.evaluate(
        "() => document.querySelectorAll('main script:not(#workspace-config), main img, main svg, main iframe, main math, main [onerror], main [onload], a[href^=\"javascript\"]').length"
    )
    assert hostile_elements == 0
    # Clicking the link does nothing: it is plain text.
    page.get_by_text("[click me](javascript:alert('link'))").first.click()
    page.keyboard.press("x")
    page.keyboard.press("Enter")
    page.get_by_role("status").filter(has_text="Saved").wait_for()
    page.wait_for_selector("#all-done")
    assert watch.dialogs == []
    assert [url for url in watch.foreign_requests if url.startswith(CANARY)] == []
    assert watch.foreign_requests == []


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize(("width", "height", "side_by_side"), [(1280, 800, True), (390, 844, False)])
def test_the_comparison_page_reads_well_on_wide_and_narrow_screens(
    browser_page, live_server, annotator_in_project, width, height, side_by_side
):
    page, watch = browser_page
    annotator, project = annotator_in_project
    (comparison,) = comparisons_bulk_create(project, 1)
    long_answer = "\n\n".join(f"Paragraph {n}: " + "a fairly long sentence " * 12 for n in range(40))
    code = "```python\ndef add(a, b):\n    return a + b\n```"
    texts = [long_answer, "A short answer with code:\n\n" + code]
    for entry, text in zip(comparison.entries.order_by("position"), texts, strict=True):
        entry.response.text = text
        entry.response.save()
    page.set_viewport_size({"width": width, "height": height})
    open_workspace(page, live_server, annotator, project)

    a = page.locator("#response-A").bounding_box()
    b = page.locator("#response-B").bounding_box()
    assert (abs(a["y"] - b["y"]) < 1 and b["x"] > a["x"]) is side_by_side
    assert (b["y"] >= a["y"] + a["height"]) is not side_by_side
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    # A long answer scrolls inside its pane; code is highlighted.
    assert page.evaluate(
        "() => { const p = document.querySelector('#response-A .response-text'); return p.scrollHeight > p.clientHeight; }"
    )
    assert page.locator("#response-B code.highlight span.k").first.inner_text() == "def"
    # Every control has a label.
    unlabelled = page.evaluate(
        "() => Array.from(document.querySelectorAll('main input:not([type=hidden]), main select, main textarea'))"
        ".filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(el => el.name || el.id)"
    )
    assert unlabelled == []

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"comparison-{width}x{height}.png"
    page.screenshot(path=str(shot), full_page=False)
    assert png_size(shot) == (width, height)
    assert watch.dialogs == []
    assert watch.console_errors == []


def test_focus_moves_through_the_page_in_reading_order(browser_page, live_server, annotator_in_project):
    page, _ = browser_page
    annotator, project = annotator_in_project
    comparisons_bulk_create(project, 1)
    open_workspace(page, live_server, annotator, project)
    page.keyboard.press("a")  # a preference enables the strength scale
    page.locator("#response-A .response-text").focus()
    order = []
    for _ in range(30):
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.id || document.activeElement.name || ''"))
    wanted = ["choice", "strength", "flags", "rationale", "submit-button", "skip-button"]
    assert [order.index(name) for name in wanted] == sorted(order.index(name) for name in wanted)
    assert order.index("choice") > order.index("") >= 0  # the ratings and the other response come first


def test_help_guidelines_and_skip_from_the_keyboard(browser_page, live_server, annotator_in_project):
    page, _ = browser_page
    annotator, project = annotator_in_project
    comparisons_bulk_create(project, 2)
    open_workspace(page, live_server, annotator, project)
    first = shown_assignment(page)

    page.keyboard.press("?")
    assert page.locator("#help-dialog").is_visible()
    assert "Both bad" in page.locator("#help-dialog").inner_text()
    page.keyboard.press("Escape")
    assert not page.locator("#help-dialog").is_visible()
    page.keyboard.press("i")
    assert page.locator("#guidelines-dialog h1").inner_text() == "How to judge"
    page.keyboard.press("Escape")

    page.keyboard.press("s")
    assert page.locator("#skip-dialog").is_visible()
    page.keyboard.press("ArrowDown")  # the second reason
    page.keyboard.press("Enter")
    second = wait_for_next(page, first)
    assert second != first
    skipped = Assignment.objects.get(pk=first)
    assert (skipped.state, skipped.skip_reason) == ("skipped", "The prompt is broken or unclear")
    assert Comparison.objects.get(pk=skipped.comparison_id).lease_count == 0


def test_a_ranking_is_typed_best_first_with_ties(browser_page, live_server):
    page, watch = browser_page
    annotator = AnnotatorFactory(username="ranker")
    project = ProjectFactory(
        slug="kwise", comparison_mode="ranking", responses_per_comparison=4, judgments_per_comparison=1
    )
    project.members.add(annotator)
    comparisons_bulk_create(project, 1, responses_each=4)
    open_workspace(page, live_server, annotator, project)
    for key in ["c", "a", "=", "d", "b", "Backspace", "b"]:
        page.keyboard.press(key)
    assert page.locator("#ranking-summary").inner_text().split() == [
        "1.",
        "C",
        "2.",
        "A",
        "=",
        "D",
        "3.",
        "B",
    ]
    page.keyboard.press("Enter")
    page.get_by_role("status").filter(has_text="Saved").wait_for()
    page.wait_for_selector("#all-done")
    assert Judgment.objects.get().ranking == [2, 3, 1, 2]
    assert watch.dialogs == []

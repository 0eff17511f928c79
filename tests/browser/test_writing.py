"""Writing and editing answers in a real browser: a demonstration written with the keyboard only, kept
across a reload by the server-side draft and submitted once; an edit of the chosen answer with its diff;
hostile text in prompts, model answers and people's answers inert in the preview and the diff; the
writing page at laptop and phone widths."""

from __future__ import annotations

import pytest

from feedback.models import Project, Response
from feedback.services.answers import writing_tasks_open
from tests.annotate.conftest import comparisons_bulk_create
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_workspace import CANARY, XSS_PAYLOADS, open_workspace
from tests.factories import AnnotatorFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = "\n\n".join(XSS_PAYLOADS)


@pytest.fixture
def writer_in_project():
    writer = AnnotatorFactory(username="keyboard-writer")
    project = ProjectFactory(
        slug="write-browser",
        comparison_mode=Project.ComparisonMode.DEMONSTRATION,
        judgments_per_comparison=1,
        guidelines="# How to write\n\nAnswer **plainly**.",
    )
    project.members.add(writer)
    PromptFactory(project=project, conversation=[{"role": "user", "content": f"Explain tides.\n\n{HOSTILE}"}])
    PromptFactory(project=project, conversation=[{"role": "user", "content": "Explain wind."}])
    assert writing_tasks_open(project=project) == 2
    return writer, project


def _ready(page, form="answer"):
    page.wait_for_selector(f"form#{form}[data-ready=true]")


def _no_harm(watch, page, *regions):
    assert watch.dialogs == []
    assert [url for url in watch.foreign_requests if url.startswith(CANARY)] == []
    assert watch.foreign_requests == []
    assert watch.console_errors == []
    for region in regions:
        assert page.locator(f"{region} script, {region} img, {region} iframe, {region} svg").count() == 0


def test_a_demonstration_written_with_the_keyboard_survives_a_reload_and_is_saved_once(
    browser_page, live_server, writer_in_project
):
    page, watch = browser_page
    writer, project = writer_in_project
    open_workspace(page, live_server, writer, project)
    _ready(page)
    task = page.locator("form#answer").get_attribute("data-assignment-id")
    page.keyboard.press("w")
    page.keyboard.type("Tides follow the *moon*")
    page.locator("#writer-draft").filter(has_text="Draft saved").wait_for()
    page.locator("#writer-preview em").filter(has_text="moon").wait_for()

    page.reload()
    _ready(page)
    assert page.locator("form#answer").get_attribute("data-assignment-id") == task  # the same task
    assert page.locator("#writer-text").input_value() == "Tides follow the *moon*"
    assert "Draft restored" in page.locator("#writer-draft").inner_text()
    page.keyboard.press("w")
    page.keyboard.press("End")
    page.keyboard.type(" and the **sun**.")
    page.locator("#writer-preview strong").filter(has_text="sun").wait_for()
    page.keyboard.press("v")  # typed into the editor, not a shortcut there
    page.keyboard.press("Escape")
    page.keyboard.press("v")  # outside: hides the preview
    assert page.locator("#writer .preview-pane").is_hidden()
    page.keyboard.press("Enter")
    page.locator("#status.saved").wait_for()
    page.wait_for_function(
        "task => document.querySelector('form#answer')?.dataset.assignmentId !== task", arg=task
    )
    answers = list(Response.objects.filter(source="human"))
    assert [(answer.author, answer.text) for answer in answers] == [
        (writer, "Tides follow the *moon* and the **sun**.v")
    ]
    assert answers[0].assignment_id == int(task)
    assert answers[0].time_spent_ms > 0  # the time on the page since it loaded, after the reload
    _no_harm(watch, page, ".conversation", "#writer-preview")


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_an_edit_of_the_chosen_answer_shows_its_diff_and_hostile_text_stays_inert(
    browser_page, live_server, width, height
):
    page, watch = browser_page
    page.set_viewport_size({"width": width, "height": height})
    editor = AnnotatorFactory(username="keyboard-editor")
    project = ProjectFactory(
        slug="edit-browser", judgments_per_comparison=1, answer_editing=Project.AnswerEditing.OPTIONAL
    )
    project.members.add(editor)
    comparison = comparisons_bulk_create(project, 1)[0]
    first = comparison.entries.get(position=0).response
    first.text = f"The sky is green.\n\n{HOSTILE}"
    first.save()
    open_workspace(page, live_server, editor, project)
    _ready(page, "judgment")
    page.keyboard.press("a")
    page.keyboard.press("1")
    page.keyboard.press("w")  # the editor opens with A's text
    page.locator("#editor-text").wait_for()
    assert page.locator("#editor-text").input_value() == first.text
    page.keyboard.press("Control+Home")
    page.keyboard.press("Shift+End")
    page.keyboard.type("The sky is blue. <img src=x onerror=alert('typed')>")
    page.locator("#editor-diff ins").first.wait_for()
    diff = page.locator("#editor-diff")
    assert "green" in diff.locator("del").all_inner_texts()[0]
    assert any("blue" in text for text in diff.locator("ins").all_inner_texts())
    page.locator("#editor-preview p").first.wait_for()
    assert page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth") <= 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"edit-diff-{width}.png"), full_page=True)
    page.keyboard.press("Control+Enter")
    page.locator("#status.saved").wait_for()
    edit = Response.objects.get(source="human")
    assert edit.edited_from_id == first.pk
    assert edit.text.startswith("The sky is blue. <img src=x onerror=alert('typed')>\n\n")
    assert edit.judgment.choice == "a"
    _no_harm(watch, page, "#editor-preview", "#editor-diff", ".responses")


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_the_writing_page_reads_well_on_wide_and_narrow_screens(
    browser_page, live_server, writer_in_project, width, height
):
    page, watch = browser_page
    writer, project = writer_in_project
    page.set_viewport_size({"width": width, "height": height})
    open_workspace(page, live_server, writer, project)
    _ready(page)
    page.keyboard.press("w")
    page.keyboard.type("# Heading\n\nSome text, and a long word: " + "x" * 120)
    page.locator("#writer-preview h1").wait_for()
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    editor = page.locator("#writer-text").bounding_box()
    preview = page.locator("#writer .preview-pane").bounding_box()
    side_by_side = abs(editor["y"] - preview["y"]) < 60 and preview["x"] > editor["x"] + editor["width"] / 2
    assert side_by_side is (width >= 1000)
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    assert page.locator("#help-dialog").is_visible()
    assert "Ctrl" in page.locator("#help-dialog").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"writing-{width}.png"), full_page=True)
    _no_harm(watch, page, ".conversation", "#writer-preview")

    # The writer's own answers, one rejected with a hostile reason and one revised: readable, inert.
    from feedback.services.answers import answer_review, human_answer_create
    from tests.factories import AdminFactory

    reviewer = AdminFactory()
    prompt = project.prompts.first()
    for index, action in enumerate(("reject", "edit")):
        answer = human_answer_create(
            prompt=prompt,
            author=writer,
            text=f"Try {index}: " + "y" * 150 + XSS_PAYLOADS[0],
            review_required=True,
        )
        answer_review(
            reviewer=reviewer,
            answer_id=answer.pk,
            action=action,
            submission_key=f"browser-{index}-{width}",
            reason=f"Not this: {XSS_PAYLOADS[1]}" if action == "reject" else "",
            text=f"Fixed {index}: " + "z" * 150 if action == "edit" else None,
        )
    page.goto(f"{live_server.url}/projects/{project.slug}/answers")
    page.locator("#answer-counts").wait_for()
    assert "1 rejected" in page.locator("#answer-counts").inner_text()
    assert page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth") <= 0
    assert page.locator(".my-answer .diff").count() == 1  # the revised one, as a diff
    page.screenshot(path=str(ARTIFACTS / f"my-answers-{width}.png"), full_page=True)
    _no_harm(watch, page, ".my-answer")


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_a_reviewer_edits_a_hostile_answer_with_the_keyboard(browser_page, live_server, width, height):
    from feedback.services.answers import human_answer_create
    from tests.factories import AdminFactory

    page, watch = browser_page
    page.set_viewport_size({"width": width, "height": height})
    writer = AnnotatorFactory(username="hostile-writer")
    project = ProjectFactory(
        slug="review-browser", comparison_mode=Project.ComparisonMode.DEMONSTRATION, answers_reviewed=True
    )
    prompt = PromptFactory(
        project=project, conversation=[{"role": "user", "content": f"Say hi.\n\n{HOSTILE}"}]
    )
    answer = human_answer_create(prompt=prompt, author=writer, text=f"Hi!\n\n{HOSTILE}", review_required=True)
    reviewer = AdminFactory(username="keyboard-reviewer")
    open_workspace(page, live_server, reviewer, project)  # logs in
    page.goto(f"{live_server.url}/projects/{project.slug}/review")
    page.locator("#start-answers").click()
    _ready(page, "answer-review")
    page.keyboard.press("e")
    page.locator("#reviewer-text").wait_for()
    assert page.locator("#reviewer-text").input_value() == answer.text
    page.keyboard.press("Control+End")
    page.keyboard.type("\n\nReviewed <b>fine</b>.")
    page.locator("#reviewer-diff ins").first.wait_for()
    page.locator("#reviewer-draft").filter(has_text="Preview updated").wait_for()
    assert page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth") <= 0
    page.keyboard.press("Control+Enter")
    page.locator("#status.saved").wait_for()
    page.wait_for_url(f"{live_server.url}/projects/{project.slug}/review")  # nothing more waits
    answer.refresh_from_db()
    assert answer.review == "revised"
    revision = Response.objects.get(revision_of__answer=answer)
    assert revision.text == answer.text + "\n\nReviewed <b>fine</b>."
    assert revision.author == reviewer
    _no_harm(watch, page)

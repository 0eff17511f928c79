"""People's answers through the engine: writing tasks open for a demonstration project's prompts (with
model answers for reference when the project shows them), a written answer takes the lease's place like a
judgment, idempotently, and a verdict may carry an edit of the chosen answer (off, optional, or required
when both are bad), stored with its lineage."""

from __future__ import annotations

import io
import json

import pytest
from django.test import Client

from annotate.assignment import (
    SubmissionConflict,
    SubmissionKeyReused,
    assignment_skip,
    comparison_lease_next,
    judgment_submit,
)
from annotate.drafts import draft_save
from annotate.submission import JudgmentSubmission, SubmissionInvalid
from annotate.writing import answer_submit
from feedback.models import AnswerDraft, Comparison, Project, Response
from feedback.services.answers import writing_tasks_open
from feedback.services.prompts import prompts_import
from inference.pairing import comparisons_create_for_prompts
from tests.annotate.conftest import comparisons_bulk_create
from tests.conftest import logged_in_client
from tests.factories import (
    AnnotatorFactory,
    GenerationRunFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def writers():
    return [AnnotatorFactory(username=f"writer-{index}") for index in range(3)]


@pytest.fixture
def demo(writers):
    project = ProjectFactory(
        slug="write", comparison_mode=Project.ComparisonMode.DEMONSTRATION, judgments_per_comparison=2
    )
    project.members.add(*writers)
    return project


def _import(project, lines):
    body = "\n".join(json.dumps(line) for line in lines).encode()
    return prompts_import(project=project, source=io.BytesIO(body), file_format="jsonl")


def test_importing_prompts_opens_one_writing_task_each_and_gold_prompts_none(demo):
    report = _import(
        demo,
        [
            {"id": f"p{index}", "prompt": f"Explain thing {index}.", "category": "explain"}
            for index in range(4)
        ],
    )
    assert report.created == 4
    assert report.writing_tasks == 4
    assert "4 writing task(s) opened" in report.summary()
    PromptFactory(project=demo, is_gold=True)
    tasks = Comparison.objects.filter(project=demo)
    assert tasks.count() == 4
    assert all(task.required_judgments == 2 and not task.entries.exists() for task in tasks)
    assert writing_tasks_open(project=demo) == 0  # every prompt has its task; gold gets none
    with pytest.raises(ValueError, match="verdicts"):
        writing_tasks_open(project=ProjectFactory())


def test_a_run_opens_tasks_with_up_to_the_project_s_distinct_references(demo):
    demo.reference_answers = 2
    demo.save()
    report = _import(demo, [{"id": "q", "prompt": "Say hi."}, {"id": "r", "prompt": "Say bye."}])
    assert report.writing_tasks == 0  # they wait for model answers
    first, second = demo.prompts.order_by("pk")
    run = GenerationRunFactory(project=demo, seed=3)
    for index, text in enumerate(["Hi.", "Hi.", "Hello!", "Hey."]):
        ResponseFactory(prompt=first, run=run, sample_index=index, text=text)
    ResponseFactory(prompt=second, run=run, sample_index=0, text="Bye.")
    assert comparisons_create_for_prompts(run=run, prompt_ids=[first.pk, second.pk]) == 2
    task = Comparison.objects.get(prompt=first)
    shown = [entry.response.text for entry in task.entries.order_by("position")]
    assert len(shown) == 2
    assert len(set(shown)) == 2  # byte-identical answers are shown once
    assert task.generation_run_id == run.pk
    assert [entry.response.text for entry in Comparison.objects.get(prompt=second).entries.all()] == ["Bye."]
    # Again (a redelivered chunk): nothing more.
    assert comparisons_create_for_prompts(run=run, prompt_ids=[first.pk, second.pk]) == 0


def test_a_written_answer_takes_the_place_of_the_lease_and_is_stored_with_its_lineage(demo, writers):
    _import(demo, [{"id": "only", "prompt": "Write a haiku about tea."}])
    writer = writers[0]
    lease = comparison_lease_next(annotator=writer, project=demo)
    draft_save(annotator=writer, assignment_id=lease.pk, text="Steam", revision=1)
    text = "  Steam curls upward —\nleaves unfold in amber warmth.\nThe cup holds the dawn.\n"
    result = answer_submit(annotator=writer, assignment_id=lease.pk, submission_key="key-00001", text=text)
    assert not result.replayed
    answer = result.answer
    assert answer.text == text  # as written, nothing trimmed
    assert (answer.source, answer.author, answer.checkpoint, answer.edited_from) == (
        "human",
        writer,
        None,
        None,
    )
    assert answer.assignment_id == lease.pk
    assert answer.review == Response.Review.UNREVIEWED
    assert not AnswerDraft.objects.exists()  # served its purpose
    task = Comparison.objects.get(project=demo)
    assert (task.judgment_count, task.lease_count, task.status) == (1, 0, "open")
    lease.refresh_from_db()
    assert lease.state == "submitted"

    # The same request again is a replay; the key with other text is refused.
    again = answer_submit(annotator=writer, assignment_id=lease.pk, submission_key="key-00001", text=text)
    assert again.replayed
    assert again.answer.pk == answer.pk
    with pytest.raises(SubmissionKeyReused):
        answer_submit(annotator=writer, assignment_id=lease.pk, submission_key="key-00001", text="Other.")
    # A second tab (another key): the same text is answered as the stored answer, other text is refused.
    other_tab = answer_submit(annotator=writer, assignment_id=lease.pk, submission_key="key-00002", text=text)
    assert other_tab.replayed
    assert other_tab.answer.pk == answer.pk
    with pytest.raises(SubmissionConflict, match="already submitted"):
        answer_submit(annotator=writer, assignment_id=lease.pk, submission_key="key-00003", text="Other.")
    assert Response.objects.filter(source="human").count() == 1

    # The second writer completes the task; the third finds nothing left.
    second = comparison_lease_next(annotator=writers[1], project=demo)
    answer_submit(annotator=writers[1], assignment_id=second.pk, submission_key="key-00004", text="Tea.")
    task.refresh_from_db()
    assert (task.judgment_count, task.status) == (2, "completed")
    assert comparison_lease_next(annotator=writers[2], project=demo) is None


def test_answers_wait_for_review_where_the_project_asks_and_bad_ones_are_refused(demo, writers):
    demo.answers_reviewed = True
    demo.save()
    _import(demo, [{"id": "a", "prompt": "One?"}, {"id": "b", "prompt": "Two?"}])
    writer = writers[0]
    lease = comparison_lease_next(annotator=writer, project=demo)
    for text, message in (
        ("   \n", "empty"),
        ("nul\x00", "NUL"),
        ("x" * 20_001, "at most 20,000 characters"),
    ):
        with pytest.raises(SubmissionInvalid, match=message):
            answer_submit(annotator=writer, assignment_id=lease.pk, submission_key="key-bad-01", text=text)
    answer = answer_submit(annotator=writer, assignment_id=lease.pk, submission_key="key-ok-001", text="1.")
    assert answer.answer.review == Response.Review.PENDING
    assert answer.answer.review_required
    skipped = comparison_lease_next(annotator=writer, project=demo)
    assignment_skip(annotator=writer, assignment_id=skipped.pk, reason="Can't")
    with pytest.raises(SubmissionConflict, match="skipped"):
        answer_submit(annotator=writer, assignment_id=skipped.pk, submission_key="key-late-1", text="2.")
    # A verdict has no place in a demonstration project, nor an answer in a pairwise one.
    with pytest.raises(SubmissionInvalid, match="written answer"):
        judgment_submit(
            annotator=writer,
            assignment_id=lease.pk,
            submission_key="key-verdict",
            submission=JudgmentSubmission(choice="a"),
        )
    pairwise = ProjectFactory(judgments_per_comparison=1)
    pairwise.members.add(writer)
    comparisons_bulk_create(pairwise, 1)
    pair_lease = comparison_lease_next(annotator=writer, project=pairwise)
    with pytest.raises(SubmissionInvalid, match="verdict"):
        answer_submit(annotator=writer, assignment_id=pair_lease.pk, submission_key="key-pair-1", text="Hi.")


def test_the_writing_page_and_the_answer_endpoint(demo, writers):
    demo.reference_answers = 1
    demo.save()
    _import(demo, [{"id": "x", "prompt": "Greet me <script>alert(1)</script>"}])
    prompt = demo.prompts.get()
    run = GenerationRunFactory(project=demo)
    ResponseFactory(prompt=prompt, run=run, text='<img src=x onerror="alert(2)"> **hi**')
    comparisons_create_for_prompts(run=run, prompt_ids=[prompt.pk])
    client = logged_in_client(writers[0])
    page = client.get(f"/projects/{demo.slug}/annotate")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="writer-text"' in html
    assert "Model answer A" in html
    assert f'<a href="/projects/{demo.slug}/answers" id="my-answers-link">' in html
    assert "<script>alert" not in html
    assert "<img" not in html
    assert "<strong>hi</strong>" in html
    config = json.loads(html.split('id="workspace-config" type="application/json">')[1].split("</script>")[0])
    assert config["mode"] == "demonstration"
    assert config["maxChars"] == 20_000

    def post(body):
        return client.post(config["submitUrl"], json.dumps(body), content_type="application/json")

    refused = post({"submission_key": "short", "text": "", "extra": 1, "time_spent_ms": -1})
    assert refused.status_code == 400
    assert set(refused.json()["errors"]) == {"submission_key", "text", "non_field_errors", "time_spent_ms"}
    created = post({"submission_key": "answer-0001", "text": "Hello **you**.", "time_spent_ms": 41_500})
    assert created.status_code == 201
    body = created.json()
    assert Response.objects.get(pk=body["answer_id"]).time_spent_ms == 41_500
    assert body["review"] == "unreviewed"
    assert body["progress"]["today"] == 1  # answers count as the day's work
    assert post({"submission_key": "answer-0001", "text": "Hello **you**."}).status_code == 200
    assert post({"submission_key": "answer-0002", "text": "Changed."}).status_code == 409
    assert Client().post(config["submitUrl"], "{}", content_type="application/json").status_code == 401
    # Someone else's assignment does not exist for them.
    other = logged_in_client(writers[1])
    assert (
        other.post(
            config["submitUrl"],
            json.dumps({"submission_key": "answer-0003", "text": "Hi."}),
            content_type="application/json",
        ).status_code
        == 404
    )


@pytest.fixture
def editing(writers):
    project = ProjectFactory(
        slug="edit",
        judgments_per_comparison=1,
        answer_editing=Project.AnswerEditing.OPTIONAL,
        allows_tie=True,
    )
    project.members.add(*writers)
    comparisons_bulk_create(project, 4)
    return project


def _verdict(choice, edit=None, strength=None):
    return JudgmentSubmission(
        choice=choice,
        strength=strength if strength is not None else (1 if choice in ("a", "b") else None),
        edit_from=edit[0] if edit else None,
        edit_text=edit[1] if edit else None,
    )


def test_an_edit_of_the_chosen_answer_is_stored_with_the_verdict(editing, writers):
    writer = writers[0]
    lease = comparison_lease_next(annotator=writer, project=editing)
    entries = list(lease.comparison.entries.select_related("response").order_by("position"))
    original = entries[1].response
    for edit, message in (
        (("A", "Better."), "the answer you chose \\(B\\)"),
        (("B", original.text), "same as the answer it starts from"),
        (("B", " \n"), "empty"),
    ):
        with pytest.raises(SubmissionInvalid, match=message):
            judgment_submit(
                annotator=writer,
                assignment_id=lease.pk,
                submission_key="edit-bad-1",
                submission=_verdict("b", edit),
            )
    edited = original.text + " With a reason."
    result = judgment_submit(
        annotator=writer,
        assignment_id=lease.pk,
        submission_key="edit-ok-01",
        submission=_verdict("b", ("B", edited)),
    )
    answer = Response.objects.get(judgment=result.judgment)
    assert (answer.source, answer.author, answer.edited_from, answer.text) == (
        "human",
        writer,
        original,
        edited,
    )
    assert answer.edit_distance == len(" With a reason.")
    assert answer.prompt_id == original.prompt_id
    # The replay matches with the edit; the key with another edit is refused.
    assert judgment_submit(
        annotator=writer,
        assignment_id=lease.pk,
        submission_key="edit-ok-01",
        submission=_verdict("b", ("B", edited)),
    ).replayed
    with pytest.raises(SubmissionKeyReused):
        judgment_submit(
            annotator=writer,
            assignment_id=lease.pk,
            submission_key="edit-ok-01",
            submission=_verdict("b", ("B", edited + "!")),
        )
    # After a tie, either answer may be the start; a verdict without an edit stays fine.
    tie = comparison_lease_next(annotator=writer, project=editing)
    judgment_submit(
        annotator=writer,
        assignment_id=tie.pk,
        submission_key="edit-tie-1",
        submission=_verdict("tie", ("A", "Fresh.")),
    )
    plain = comparison_lease_next(annotator=writer, project=editing)
    judgment_submit(
        annotator=writer, assignment_id=plain.pk, submission_key="edit-none-1", submission=_verdict("a")
    )
    assert Response.objects.filter(source="human").count() == 2


def test_edits_are_refused_where_off_and_required_when_both_are_bad(editing, writers):
    writer = writers[0]
    editing.answer_editing = Project.AnswerEditing.BOTH_BAD
    editing.save()
    lease = comparison_lease_next(annotator=writer, project=editing)
    with pytest.raises(SubmissionInvalid, match="write a better one"):
        judgment_submit(
            annotator=writer,
            assignment_id=lease.pk,
            submission_key="bad-both-1",
            submission=_verdict("both_bad"),
        )
    judgment_submit(
        annotator=writer,
        assignment_id=lease.pk,
        submission_key="bad-both-2",
        submission=_verdict("both_bad", ("A", "A real answer.")),
    )
    editing.answer_editing = Project.AnswerEditing.OFF
    editing.save()
    other = comparison_lease_next(annotator=writer, project=editing)
    with pytest.raises(SubmissionInvalid, match="does not take edits"):
        judgment_submit(
            annotator=writer,
            assignment_id=other.pk,
            submission_key="off-edit-1",
            submission=_verdict("a", ("A", "x")),
        )


def test_the_workspace_hands_the_editor_the_raw_texts_as_json_only_where_editing_is_on(editing, writers):
    client = logged_in_client(writers[0])
    html = client.get(f"/projects/{editing.slug}/annotate").content.decode()
    config = json.loads(html.split('id="workspace-config" type="application/json">')[1].split("</script>")[0])
    assert config["editing"] == "optional"
    assert set(config["texts"]) == {"A", "B"}
    assert 'id="edit-section"' in html
    editing.answer_editing = Project.AnswerEditing.OFF
    editing.save()
    html = client.get(f"/projects/{editing.slug}/annotate").content.decode()
    assert 'id="edit-section"' not in html
    assert '"texts"' not in html


def test_the_admin_opens_writing_tasks_and_shows_the_settings(demo, client):
    from tests.factories import AdminFactory

    admin = AdminFactory()
    client.force_login(admin)
    PromptFactory.create_batch(2, project=demo)
    pairwise = ProjectFactory(slug="pairs")
    response = client.post(
        "/admin/feedback/project/",
        {"action": "open_writing_tasks", "_selected_action": [demo.pk, pairwise.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "write: 2 writing task(s) opened." in text.replace(demo.name, "write")
    assert "not a demonstration project; nothing opened" in text
    assert Comparison.objects.filter(project=demo).count() == 2
    form = client.get(f"/admin/feedback/project/{demo.pk}/change/").content.decode()
    for field in ("reference_answers", "answer_editing", "answers_reviewed"):
        assert f'name="{field}"' in form

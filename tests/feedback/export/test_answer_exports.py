"""The formats made of people's answers and of prompts: which answers count (review, people filters),
the rows of each shape, the edited > chosen > rejected expansion, the snapshot, and the two new shapes
made of judgments (conversational unpaired, conversational preference with the prompt implicit)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.management import call_command
from django.utils import timezone

from annotate.assignment import comparison_lease_next, judgment_submit
from annotate.submission import JudgmentSubmission
from annotate.writing import answer_submit
from feedback.export.options import ExportOptions
from feedback.models import (
    AnswerReview,
    Comparison,
    Project,
    ProjectMembership,
    ProjectRole,
    Response,
    ReviewItem,
)
from feedback.services.answers import (
    AnswerInvalid,
    AnswerReviewConflict,
    AnswerReviewForbidden,
    answer_review,
    writing_tasks_open,
)
from feedback.services.exports import export_create, export_path, export_run
from feedback.services.gold import gold_import
from feedback.services.prompts import PromptImportError
from feedback.services.review import review_decide
from tests.annotate.conftest import comparisons_bulk_create
from tests.factories import AdminFactory, AnnotatorFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def export_root(settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path / "exports"
    return settings.EXPORT_ROOT


def _rows(options, **kwargs):
    export = export_run(export_id=export_create(options=ExportOptions.from_mapping(options), **kwargs).pk)
    assert export.status == "completed", export.error
    with zipfile.ZipFile(export_path(export)) as bundle:
        names = bundle.namelist()
        rows = (
            [json.loads(line) for line in bundle.read("train.jsonl").splitlines()]
            if "train.jsonl" in names
            else []
        )
        card = bundle.read("README.md").decode()
    return rows, card, export


@pytest.fixture
def written(export_root):
    """A demonstration project whose answers need review: one accepted, one rejected, one replaced by the
    reviewer's edit, one waiting; plus a gold prompt (never exported)."""
    project = ProjectFactory(
        slug="demos",
        comparison_mode=Project.ComparisonMode.DEMONSTRATION,
        judgments_per_comparison=1,
        answers_reviewed=True,
        completion_template="{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:",
    )
    writers = [AnnotatorFactory(username=f"demo-writer-{index}") for index in range(2)]
    project.members.add(*writers)
    for index in range(4):
        PromptFactory(
            project=project,
            external_id=f"d{index}",
            conversation=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Question {index}?"},
            ],
        )
    PromptFactory(project=project, is_gold=True)
    assert writing_tasks_open(project=project) == 4
    answers = []
    for index in range(4):
        writer = writers[index % 2]
        lease = comparison_lease_next(annotator=writer, project=project)
        prompt_index = int(lease.comparison.prompt.external_id[1:])
        result = answer_submit(
            annotator=writer,
            assignment_id=lease.pk,
            submission_key=f"demo-key-{index}",
            text=f"Answer {prompt_index}.",
        )
        answers.append(result.answer)
    answers.sort(key=lambda answer: answer.prompt.external_id)
    reviewer = AdminFactory(username="demo-reviewer")
    answer_review(reviewer=reviewer, answer_id=answers[0].pk, action="accept", submission_key="review-0001")
    answer_review(
        reviewer=reviewer,
        answer_id=answers[1].pk,
        action="reject",
        reason="Wrong.",
        submission_key="review-0002",
    )
    answer_review(
        reviewer=reviewer,
        answer_id=answers[2].pk,
        action="edit",
        text="Answer 2, fixed.",
        submission_key="review-0003",
    )
    return project, answers, reviewer


def test_reviewing_answers_accepts_rejects_or_replaces_them_once(written):
    _project, answers, reviewer = written
    states = [Response.objects.get(pk=answer.pk).review for answer in answers]
    assert states == ["accepted", "rejected", "revised", "pending"]
    revision = Response.objects.get(revision_of__answer=answers[2])
    assert (revision.author, revision.edited_from_id, revision.review) == (
        reviewer,
        answers[2].pk,
        "accepted",
    )
    assert revision.edit_distance == len(", fixed")
    # The same decision again is a replay; another decision on a decided answer is a conflict.
    again = answer_review(
        reviewer=reviewer, answer_id=answers[0].pk, action="accept", submission_key="review-0001"
    )
    assert again.replayed
    assert again.decision.pk == AnswerReview.objects.get(submission_key="review-0001").pk
    with pytest.raises(AnswerReviewConflict, match="already accepted"):
        answer_review(
            reviewer=reviewer,
            answer_id=answers[0].pk,
            action="reject",
            reason="x",
            submission_key="review-0009",
        )
    with pytest.raises(AnswerInvalid) as refused:
        answer_review(
            reviewer=reviewer, answer_id=answers[3].pk, action="reject", submission_key="review-0010"
        )
    assert set(refused.value.errors) == {"reason"}
    with pytest.raises(AnswerInvalid, match="same as the answer"):
        answer_review(
            reviewer=reviewer,
            answer_id=answers[3].pk,
            action="edit",
            text="Answer 3.",
            submission_key="review-0011",
        )
    writer = answers[3].author
    with pytest.raises(AnswerReviewForbidden):
        answer_review(reviewer=writer, answer_id=answers[3].pk, action="accept", submission_key="review-0012")
    assert AnswerReview.objects.count() == 3


def test_prompt_completion_takes_the_answers_that_count_as_of_the_snapshot(written):
    _project, answers, reviewer = written
    rows, card, export = _rows({"format": "prompt-completion"})
    assert rows == [
        {"prompt": "system: Be brief.\nuser: Question 0?\nassistant:", "completion": "Answer 0."},
        {"prompt": "system: Be brief.\nuser: Question 2?\nassistant:", "completion": "Answer 2, fixed."},
    ]
    assert "- Written (demonstrations): 2" in card
    assert "- Left out, rejected: 1" in card
    assert "- Left out, replaced by a reviewer's edit: 1" in card
    assert "- Left out, waiting for review: 1" in card
    assert "People's answers covered: ids up to" in card
    assert set(export.source_marks) == {"answers", "answer_reviews"}
    # Accepted later: not in a re-export of the same snapshot, in a fresh one.
    answer_review(reviewer=reviewer, answer_id=answers[3].pk, action="accept", submission_key="review-0004")
    again, _, same = _rows({"format": "prompt-completion"}, snapshot_of=export)
    assert again == rows
    assert same.snapshot_digest == export.snapshot_digest
    fresh, _, _ = _rows({"format": "prompt-completion-conversational"})
    assert [row["completion"] for row in fresh] == [
        # In answer id order: the reviewer's edit was written after the answers.
        [{"role": "assistant", "content": text}]
        for text in ("Answer 0.", "Answer 3.", "Answer 2, fixed.")
    ]
    assert fresh[0]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Question 0?"},
    ]
    # The people filters apply to authors.
    left_out = answers[0].author
    excluded, _, _ = _rows({"format": "prompt-completion", "exclude_annotators": left_out.username})
    authors = [
        ("Answer 0.", answers[0].author),
        ("Answer 3.", answers[3].author),
        ("Answer 2, fixed.", reviewer),
    ]
    assert [row["completion"] for row in excluded] == [text for text, author in authors if author != left_out]
    reviewed, _, _ = _rows({"format": "prompt-completion", "answers": "edited"})
    assert reviewed == []  # nothing here was edited from a model answer


@pytest.fixture
def edited(export_root):
    """A pairwise project taking edits: one verdict for B with B improved, one both-bad with A improved,
    one plain verdict."""
    project = ProjectFactory(
        slug="edits", judgments_per_comparison=1, answer_editing=Project.AnswerEditing.OPTIONAL
    )
    writer = AnnotatorFactory(username="editor")
    project.members.add(writer)
    comparisons_bulk_create(project, 3)
    plans = [("b", "B"), ("both_bad", "A"), ("a", None)]
    texts = {}
    for index, (choice, start) in enumerate(plans):
        lease = comparison_lease_next(annotator=writer, project=project)
        entries = {
            entry.label: entry.response.text for entry in lease.comparison.entries.select_related("response")
        }
        edit = (start, entries[start] + " Improved.") if start else None
        judgment_submit(
            annotator=writer,
            assignment_id=lease.pk,
            submission_key=f"edit-key-{index}",
            submission=JudgmentSubmission(
                choice=choice,
                strength=1 if choice in ("a", "b") else None,
                edit_from=edit[0] if edit else None,
                edit_text=edit[1] if edit else None,
            ),
        )
        texts[index] = entries
    return project, texts


def test_edits_come_as_edit_over_original_or_the_full_expansion(edited):
    _project, texts = edited
    plain, card, _ = _rows({"format": "edits"})
    first, second = texts[0], texts[1]
    assert [(row["chosen"], row["rejected"]) for row in plain] == [
        (first["B"] + " Improved.", first["B"]),
        (second["A"] + " Improved.", second["A"]),
    ]
    assert "- Edited (model answers people improved): 2" in card
    expanded, _, _ = _rows({"format": "edits", "edit_pairs": "expanded"})
    assert [(row["chosen"], row["rejected"]) for row in expanded] == [
        (first["B"] + " Improved.", first["B"]),  # edited > chosen
        (first["B"] + " Improved.", first["A"]),  # edited > rejected
        (first["B"], first["A"]),  # chosen > rejected
        (second["A"] + " Improved.", second["A"]),
        (second["A"] + " Improved.", second["B"]),  # both bad: the edit beats both, nothing else
    ]
    assert all(set(row) == {"prompt", "chosen", "rejected"} for row in expanded)
    # SFT from the edits and the chosen model answers together: the people's first, then the judgments'.
    mixed, mixed_card, _ = _rows({"format": "prompt-completion", "answers": "edited,chosen"})
    assert [row["completion"] for row in mixed] == [
        first["B"] + " Improved.",
        second["A"] + " Improved.",
        first["B"],
        texts[2]["A"],
    ]
    assert "## Agreement" in mixed_card  # judgments were read too


def test_prompt_only_lists_the_prompts_and_never_gold(export_root):
    project = ProjectFactory(slug="online", completion_template="Q: {{ messages[-1].content }}\nA:")
    for index in range(3):
        PromptFactory(project=project, conversation=[{"role": "user", "content": f"Ask {index}"}])
    PromptFactory(project=project, is_gold=True)
    rows, card, export = _rows({"format": "prompt-only", "projects": "online"})
    assert rows == [{"prompt": f"Q: Ask {index}\nA:"} for index in range(3)]
    assert "- Prompts: 3 (gold prompts are never exported)" in card
    assert set(export.source_marks) == {"prompts"}
    PromptFactory(project=project)  # after the snapshot
    conversational, _, _ = _rows(
        {"format": "prompt-only-conversational", "projects": "online"}, snapshot_of=export
    )
    assert conversational == [{"prompt": [{"role": "user", "content": f"Ask {index}"}]} for index in range(3)]


def test_the_conversational_unpaired_and_implicit_prompt_shapes(export_root):
    project = ProjectFactory(slug="shapes", judgments_per_comparison=1)
    person = AnnotatorFactory(username="shaper")
    project.members.add(person)
    comparisons_bulk_create(project, 2)
    for index, choice in enumerate(("a", "both_bad")):
        lease = comparison_lease_next(annotator=person, project=project)
        judgment_submit(
            annotator=person,
            assignment_id=lease.pk,
            submission_key=f"shape-key-{index}",
            submission=JudgmentSubmission(choice=choice, strength=1 if choice == "a" else None),
        )
    first = Comparison.objects.filter(project=project).order_by("pk").first()
    conversation = first.prompt.conversation
    a_text, b_text = (
        entry.response.text for entry in first.entries.select_related("response").order_by("position")
    )
    unpaired, _, _ = _rows({"format": "unpaired-conversational"})
    assert unpaired[:2] == [
        {"prompt": conversation, "completion": [{"role": "assistant", "content": a_text}], "label": True},
        {"prompt": conversation, "completion": [{"role": "assistant", "content": b_text}], "label": False},
    ]
    assert len(unpaired) == 4  # both bad: both undesirable
    implicit, _, _ = _rows({"format": "preference-conversational-implicit", "columns": "margin"})
    assert implicit == [
        {
            "chosen": [*conversation, {"role": "assistant", "content": a_text}],
            "rejected": [*conversation, {"role": "assistant", "content": b_text}],
            "margin": 1.0,
        }
    ]


def test_a_writer_never_reviews_their_own_answer_and_a_rejection_asks_for_another(written):
    project, answers, reviewer = written
    # A reviewer who also writes: their own answer, and a reviewer's edit of it, wait for someone else.
    ProjectMembership.objects.update_or_create(
        project=project, user=answers[3].author, defaults={"role": ProjectRole.REVIEWER}
    )
    with pytest.raises(AnswerReviewForbidden, match="You wrote this answer"):
        answer_review(
            reviewer=answers[3].author, answer_id=answers[3].pk, action="accept", submission_key="own-0001"
        )
    revision = Response.objects.get(revision_of__answer=answers[2])
    assert revision.author == reviewer
    # The rejected demonstration's task asks for one more answer, and is open again.
    task = answers[1].assignment.comparison
    task.refresh_from_db()
    assert (task.required_judgments, task.status, task.completed_at) == (2, "open", None)
    # Gold items have no place in a demonstration project.
    with pytest.raises(PromptImportError) as refused:
        gold_import(project=project, source=io.BytesIO(b'{"id": "g"}\n'))
    assert "a demonstration project has no verdicts to check" in refused.value.errors[0].message


def test_edits_from_a_retired_comparison_are_left_out_and_counted_apart(edited):
    _project, texts = edited
    first = Response.objects.filter(source="human").order_by("pk").first()
    item = ReviewItem.objects.create(
        comparison=first.judgment.comparison,
        project=first.judgment.comparison.project,
        reasons=["picked"],
        queued_at=timezone.now(),
    )
    review_decide(
        reviewer=AdminFactory(),
        item_id=item.pk,
        submission_key="retire-0001",
        action="retire",
        reason="Broken.",
    )
    rows, card, _ = _rows({"format": "edits"})
    assert [row["rejected"] for row in rows] == [texts[1]["A"]]
    assert "- Left out, its comparison was retired by a reviewer: 1" in card
    # A format counts only the answers it could hold: no demonstration is counted as left out here.
    assert "waiting for review" not in card


def test_the_command_exports_answers_and_takes_fresh_marks_for_another_source(written, tmp_path):
    _rows_done, _, answers_export = _rows({"format": "prompt-completion"})
    call_command(
        "export_preferences",
        "--format",
        "prompt-completion",
        "--answers",
        "written",
        "--snapshot",
        str(answers_export.pk),
        "--output",
        str(tmp_path / "same"),
        stdout=io.StringIO(),
    )
    again = [json.loads(line) for line in (tmp_path / "same" / "train.jsonl").read_text().splitlines()]
    assert again == _rows_done
    # The recorded export read answers, not prompts: a prompt-only export of it reads the prompts as now.
    call_command(
        "export_preferences",
        "--format",
        "prompt-only",
        "--snapshot",
        str(answers_export.pk),
        "--output",
        str(tmp_path / "prompts"),
        stdout=io.StringIO(),
    )
    assert len((tmp_path / "prompts" / "train.jsonl").read_text().splitlines()) == 4  # gold left out

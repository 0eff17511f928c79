"""Submitting a written answer (a demonstration) to a writing task: the assignment engine's other kind of
submission, under the same rules as a judgment (`annotate.assignment`): the place the lease holds becomes
the answer, one transaction, the assignment row locked first.

Idempotent like a judgment: a retry with the same submission key and text returns the stored answer
(`replayed`), the same key with other text is refused (HTTP 422). Two tabs on the same task send two keys:
the first stores the answer; the second, once the first has committed, finds the task submitted and is
answered as a replay when it carries the same text (the usual case: both sent the saved draft) and as a
conflict (HTTP 409) when it carries other text, which is not stored. Either way one answer is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.assignment import (
    SubmissionConflict,
    SubmissionKeyReused,
    assignment_finish,
    place_count,
)
from annotate.selectors import assignment_get_for_annotator
from annotate.submission import SubmissionInvalid, submission_key_error, time_spent_error
from feedback.models import Assignment, Project, Response
from feedback.services.answers import answer_text_error, human_answer_create

KEY_REUSED = "This submission key was already used for a different answer; send a new key for a new answer."
BODY_FIELDS = frozenset({"submission_key", "text", "time_spent_ms"})


@dataclass(frozen=True)
class AnswerResult:
    answer: Response
    replayed: bool


def answer_parse(body: Any) -> tuple[str, str, int | None]:
    """(submission key, text, time spent in milliseconds or None) of a decoded JSON body, or
    SubmissionInvalid with field messages. The text is kept exactly as sent."""
    if not isinstance(body, dict):
        raise SubmissionInvalid({"non_field_errors": "The body must be a JSON object."})
    errors: dict[str, str] = {}
    if unknown := sorted(set(body) - BODY_FIELDS):
        errors["non_field_errors"] = f"Unknown fields: {', '.join(map(str, unknown))}."
    key = body.get("submission_key")
    if (message := submission_key_error(key)) is not None:
        errors["submission_key"] = message
    text = body.get("text")
    if (message := answer_text_error(text)) is not None:
        errors["text"] = message
    time_spent_ms = body.get("time_spent_ms")
    if (message := time_spent_error(time_spent_ms)) is not None:
        errors["time_spent_ms"] = message
    if errors:
        raise SubmissionInvalid(errors)
    assert isinstance(key, str)
    assert isinstance(text, str)
    return key, text, time_spent_ms


def answer_submit(
    *,
    annotator: User,
    assignment_id: int,
    submission_key: str,
    text: str,
    time_spent_ms: int | None = None,
    project: Project | None = None,
    now: datetime | None = None,
) -> AnswerResult:
    """Store the annotator's written answer to their writing task, in one transaction. Raises
    AssignmentNotFound, SubmissionInvalid (not a writing task; bad text), SubmissionConflict,
    SubmissionKeyReused or AnnotatorSuspended, as `judgment_submit` does."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = assignment_get_for_annotator(
            annotator=annotator, assignment_id=assignment_id, project=project, lock=True
        )
        comparison = assignment.comparison
        task_project = comparison.project
        if task_project.comparison_mode != Project.ComparisonMode.DEMONSTRATION:
            raise SubmissionInvalid(
                {"non_field_errors": "This project asks for a verdict, not a written answer."}
            )
        if (message := answer_text_error(text)) is not None:
            raise SubmissionInvalid({"text": message})

        if assignment.state in (Assignment.State.SUBMITTED, Assignment.State.SKIPPED):
            earlier = Response.objects.filter(author=annotator, submission_key=submission_key).first()
            if earlier is not None:
                if earlier.assignment_id == assignment.pk and earlier.text == text:
                    return AnswerResult(answer=earlier, replayed=True)
                raise SubmissionKeyReused(KEY_REUSED)
            if assignment.state == Assignment.State.SKIPPED:
                raise SubmissionConflict("You skipped this prompt; it can no longer take your answer.")
            stored = Response.objects.filter(assignment=assignment).first()
            if stored is not None and stored.text == text:
                return AnswerResult(answer=stored, replayed=True)  # another tab sent the same answer
            raise SubmissionConflict(
                "You already submitted an answer to this prompt (from another tab or window); this one, which "
                "differs from it, was not saved."
            )

        place_count(assignment=assignment, annotator=annotator, now=now)
        try:
            answer = human_answer_create(
                prompt=comparison.prompt,
                author=annotator,
                text=text,
                assignment=assignment,
                submission_key=submission_key,
                review_required=task_project.answers_reviewed,
                time_spent_ms=time_spent_ms,
            )
        except IntegrityError as error:
            # The key is another answer's (the whole transaction rolls back: no savepoint needed).
            raise SubmissionKeyReused(KEY_REUSED) from error
        assignment_finish(assignment, now=now)
    return AnswerResult(answer=answer, replayed=False)

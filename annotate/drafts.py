"""Drafts of people's answers, saved as they type, per assignment. Saving is activity: it extends the
lease (to the project's lease duration from now), so an annotator who is writing keeps their place, while
one who left loses it when the lease runs out as usual. One transaction each; the assignment row is
locked, so an expiry sweep either sees the extended lease or expires it before the save (which then
answers that the time ran out)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from annotate.assignment import SubmissionConflict
from annotate.selectors import assignment_get_for_annotator
from annotate.submission import SubmissionInvalid
from feedback.models import AnswerDraft, Assignment, Project
from feedback.services.answers import answer_text_error


def draft_clean(body: Any) -> tuple[str, int, str]:
    """`{"text": …, "revision": n, "base": "A"}` → (text, revision, base), or SubmissionInvalid with field
    messages. An empty draft is fine (the person cleared it); the answer's other limits hold. `base`,
    optional, is the label of the answer an edit starts from ("" for a demonstration)."""
    if not isinstance(body, dict) or set(body) - {"text", "revision", "base"}:
        raise SubmissionInvalid({"non_field_errors": 'Send {"text": "…", "revision": n, "base": "A"} only.'})
    errors: dict[str, Any] = {}
    text = body.get("text")
    if not isinstance(text, str):
        errors["text"] = "The draft is text."
    elif text and (problem := answer_text_error(text)) is not None and "empty" not in problem:
        errors["text"] = problem
    revision = body.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or not 0 <= revision < 2**31:
        errors["revision"] = "A whole number from 0, larger with each save."
    base = body.get("base", "")
    if not isinstance(base, str) or not re.fullmatch(r"[A-H]?", base):
        errors["base"] = "The label of the answer the edit starts from (A to H), or empty."
    if errors:
        raise SubmissionInvalid(errors)
    assert isinstance(text, str)
    assert isinstance(revision, int)
    return text, revision, base


def draft_save(
    *,
    annotator: User,
    assignment_id: int,
    text: str,
    revision: int,
    base: str = "",
    project: Project | None = None,
    now: datetime | None = None,
) -> AnswerDraft:
    """Store the draft (unless a later revision is stored already) and extend the lease. Raises
    AssignmentNotFound (not theirs) or SubmissionConflict (no longer leased to them)."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = assignment_get_for_annotator(
            annotator=annotator, assignment_id=assignment_id, project=project, lock=True
        )
        if assignment.state != Assignment.State.LEASED or assignment.expires_at <= now:
            raise SubmissionConflict(
                "Your time on this comparison ran out or it was finished: the draft was not saved."
            )
        extended = now + assignment.comparison.project.lease_duration
        if extended > assignment.expires_at:
            assignment.expires_at = extended
            assignment.save(update_fields=["expires_at"])
        draft = AnswerDraft.objects.select_for_update().filter(assignment=assignment).first()
        if draft is None:
            return AnswerDraft.objects.create(
                assignment=assignment, text=text, revision=revision, base=base, updated_at=now
            )
        if revision >= draft.revision:  # a late save of an older revision changes nothing
            draft.text, draft.revision, draft.base, draft.updated_at = text, revision, base, now
            draft.save(update_fields=["text", "revision", "base", "updated_at"])
        return draft


def draft_get(*, annotator: User, assignment_id: int, project: Project | None = None) -> AnswerDraft | None:
    """The annotator's draft on their assignment, or None (AssignmentNotFound when not theirs)."""
    assignment = assignment_get_for_annotator(
        annotator=annotator, assignment_id=assignment_id, project=project
    )
    return AnswerDraft.objects.filter(assignment=assignment).first()

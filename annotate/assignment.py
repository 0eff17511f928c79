"""The assignment engine: who judges which comparison, without ever exceeding a comparison's overlap.

The rule is kept by counters on the comparison row and a check constraint on them:
`judgment_count + lease_count <= required_judgments`. Every change to those counters is one conditional
`UPDATE … SET x = x ± 1` in the same transaction as the assignment or judgment row it accounts for, so
the counters and the rows never disagree, on PostgreSQL under any concurrency and on SQLite for the demo.

Locks, always in this order, so no two paths can deadlock:
- a claim locks the annotator's standing in the project (one claim per annotator and project at a
  time, so two tabs never hold two leases), runs the expiry sweep below inside its transaction, then
  locks one comparison with `FOR UPDATE SKIP LOCKED` (never waits for another claim);
- a suspension (`feedback.services.standing`) locks the standing, then expires the annotator's leases
  as the sweep does;
- a submission or skip locks its assignment row, then updates its comparison; a submission that stores a
  person's answer (a demonstration, or an edit with a judgment) then takes a no-key lock on its prompt
  (`feedback.services.answers.human_answer_create`, to number the prompt's answers), which no insert that
  references the prompt waits for;
- a reviewer's decision on an answer locks the answer, then (for an edit) its prompt as above; opening
  writing tasks locks the project row first (`writing_tasks_open`);
- the expiry sweep locks overdue assignments with `SKIP LOCKED`, then updates their comparisons in id order.

Cost per claim does not grow with the project: the candidate is the first row of the partial index
`comparison_next_open_idx` (open comparisons of a project, fewest missing judgments first, then oldest)
that has room and that this annotator has not already taken. Rows passed over are only those that are
full of live leases (bounded by the number of people working) or that this annotator already judged or
skipped while they are still open (bounded by their own recent work).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.db.models.lookups import LessThan
from django.utils import timezone

from annotate.selectors import assignment_get_for_annotator
from annotate.submission import JudgmentSubmission, SubmissionInvalid, judgment_values, skip_reason_clean
from feedback.models import (
    AnnotatorStanding,
    AnswerDraft,
    Assignment,
    Comparison,
    ComparisonResponse,
    Judgment,
    Project,
    Response,
)
from feedback.services.answers import edit_text_error, human_answer_create
from feedback.services.generation import send_task_on_commit
from feedback.services.leases import leases_return
from feedback.services.standing import standing_locked

if TYPE_CHECKING:  # django-stubs is a development dependency
    from django_stubs_ext import WithAnnotations

logger = logging.getLogger(__name__)

EXPIRY_SWEEP_LIMIT = 500
STANDING_TASK = "annotate.evaluate_standing"
# SQLite has no row locks: a claim may lose its candidate to a concurrent one and try the next. Under
# PostgreSQL a claim that found every candidate locked waits for one (`candidate_wait`) and tries again.
CLAIM_ATTEMPTS = 5
KEY_REUSED = (
    "This submission key was already used for a different judgment; send a new key for a new judgment."
)


class SubmissionConflict(Exception):
    """The submission cannot count (HTTP 409): its comparison has no place left for it, or it was judged."""


class AnnotatorSuspended(Exception):
    """The annotator is suspended from the project (HTTP 403); the message says why, in plain words."""


class SubmissionKeyReused(Exception):
    """The submission key was already used for a different judgment (HTTP 422)."""


@dataclass(frozen=True)
class SubmitResult:
    judgment: Judgment
    replayed: bool  # True when this was a retry of a submission already stored under the same key


def _has_room() -> Q:
    """A place free: judgments plus live leases below the required judgments; gold has no limit."""
    return Q(required_judgments__isnull=True) | Q(
        LessThan(F("judgment_count") + F("lease_count"), F("required_judgments"))
    )


def leases_expire(*, now: datetime | None = None, limit: int = EXPIRY_SWEEP_LIMIT) -> int:
    """Mark up to `limit` overdue leases expired and give their places back; returns how many.

    Overdue leases are taken oldest first with `SKIP LOCKED`, so concurrent sweeps share the work and a
    lease being submitted right now is left to its submission. Called inside a transaction (a claim), the
    sweep joins it: the freed places are there for that claim, and nothing is written if it rolls back.
    """
    now = now or timezone.now()
    # No savepoint: inside a claim's transaction the sweep is part of it (one statement when nothing is due).
    with transaction.atomic(savepoint=False):
        overdue = list(
            Assignment.objects.select_for_update(skip_locked=True)
            .filter(state=Assignment.State.LEASED, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("pk", "comparison_id")[:limit]
        )
        if not overdue:
            return 0
        leases_return(leases=overdue, now=now)
    logger.info("Expired %d leases", len(overdue))
    return len(overdue)


def claim_candidates(*, annotator_id: int, project_id: int, writer: bool = False) -> QuerySet[Comparison]:
    """The claim query: open comparisons with room that the annotator has not taken, next one first.
    With `writer` (the annotator has answers in the project's comparisons), not those showing an answer
    of theirs: nobody judges their own writing.

    An earlier expired lease of the annotator does not exclude a comparison; the claim revives it.
    """
    taken = Assignment.objects.filter(comparison=OuterRef("pk"), annotator_id=annotator_id).exclude(
        state=Assignment.State.EXPIRED
    )
    candidates = (
        Comparison.objects.filter(project_id=project_id, status=Comparison.Status.OPEN, is_gold=False)
        .filter(_has_room())
        .exclude(Exists(taken))
    )
    if writer:
        own = ComparisonResponse.objects.filter(comparison=OuterRef("pk"), response__author_id=annotator_id)
        candidates = candidates.exclude(Exists(own))
    return candidates.order_by(F("required_judgments") - F("judgment_count"), "id")


def writes_in(*, annotator_id: int, project_id: int) -> bool:
    """Whether any comparison of the project shows an answer the annotator wrote."""
    # From the author's side: most annotators wrote nothing, and the author index says so at once.
    return Response.objects.filter(
        author_id=annotator_id, comparison_entries__comparison__project_id=project_id
    ).exists()


def gold_candidates(*, annotator_id: int, project_id: int) -> QuerySet[Comparison]:
    """The project's open gold items this annotator was never served (whatever became of the lease:
    gold is never served twice), least answered first."""
    served = Assignment.objects.filter(comparison=OuterRef("pk"), annotator_id=annotator_id)
    return (
        Comparison.objects.filter(project_id=project_id, status=Comparison.Status.OPEN, is_gold=True)
        .exclude(Exists(served))
        .order_by("judgment_count", "id")
    )


class _Revive(TypedDict):
    revive: bool


def claim_next(
    *, annotator_id: int, project_id: int, writer: bool = False
) -> QuerySet[WithAnnotations[Comparison, _Revive]]:
    """The claim statement: the first candidate, row-locked unless another claim holds it (then the next),
    with its prompt for the page and `revive`, whether the annotator's own expired lease on it is to be
    taken back instead of a new assignment written. Must run in a transaction."""
    own_expired = Assignment.objects.filter(
        comparison=OuterRef("pk"), annotator_id=annotator_id, state=Assignment.State.EXPIRED
    )
    return (
        claim_candidates(annotator_id=annotator_id, project_id=project_id, writer=writer)
        .select_related("prompt")
        .annotate(revive=Exists(own_expired))
        .select_for_update(skip_locked=True, of=("self",))[:1]
    )


def candidate_wait(*, annotator_id: int, project_id: int, writer: bool = False) -> bool:
    """For a claim that found every candidate locked: wait until the first one (as last committed) is
    released, and say whether there was one; False means nothing is left for the annotator.

    A row locked by a submission or another claim in flight is not a row without room: skipping it near the
    end of a pool would send the annotator away from work still open. The wait takes the row's lock in a
    savepoint rolled back at once, so a waiting claim holds no comparison, and two waiting claims can never
    each hold what the other waits for."""
    first = claim_candidates(annotator_id=annotator_id, project_id=project_id, writer=writer).values_list(
        "pk", flat=True
    )
    waited_for = first.first()
    if waited_for is None:
        return False
    savepoint = transaction.savepoint()
    try:
        list(Comparison.objects.select_for_update().filter(pk=waited_for).values_list("pk", flat=True))
    finally:
        transaction.savepoint_rollback(savepoint)
    return True


def gold_due(*, rate: float, leases: int, gold_slots: int, draw: float) -> bool:
    """Whether the annotator's next comparison is to be gold, given `leases` served so far in the project,
    `gold_slots` of them when gold was due, and a uniform `draw` in [0, 1).

    The chance is the annotator's gold deficit, rate × (leases + 1) − slots so far, clipped to [0, 1]: gold
    comes at random moments, averages `rate` over time, is due for sure once a whole item is owed, and
    never runs ahead: after n leases an annotator has had at most rate × n + 1 gold items (less than one
    over their share). A slot counts whether or not a gold item was left to serve in it, so a project
    without gold owes nothing, and gold added later arrives at the rate, not in a burst."""
    deficit = rate * (leases + 1) - gold_slots
    return deficit > 0 and draw < min(deficit, 1.0)


def gold_draw(*, project_id: int, annotator_id: int, leases: int) -> float:
    """The claim's uniform draw in [0, 1): keyed by the server's secret, so that the moments gold comes
    are reproducible (tests, audits) but cannot be foreseen by anyone who reads this code."""
    message = f"gold:{project_id}:{annotator_id}:{leases}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def suspension_message(standing: AnnotatorStanding) -> str:
    return (
        f"You are suspended from {standing.project}: {standing.reason} It gives you no more comparisons "
        "until a project manager or an admin reinstates you."
    )


def comparison_lease_next(
    *, annotator: User, project: Project, now: datetime | None = None
) -> Assignment | None:
    """The annotator's open lease in the project, or a new lease on the next comparison; None when none
    is left for them. The caller has checked that the annotator may work on the project. Raises
    `AnnotatorSuspended` (with the reason, in plain words) when the annotator is suspended there.

    A new lease holds one of the comparison's places until it is submitted, skipped or expires after the
    project's lease duration. Idempotent per annotator: until then, calling again returns the same lease.
    At the project's gold rate (see `gold_due`) the lease is on a gold item the annotator has never been
    served instead; gold is served only while there is other work for them too, so it never stands out.
    Where the project compares people's answers (`compares_people`, as the caller loaded it: each request
    loads it afresh), no comparison showing an answer the annotator wrote is claimed.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # One claim per annotator and project at a time: two tabs, or a double click, must not take two
        # places; the row also holds the counts gold is served by.
        standing = standing_locked(project_id=project.pk, annotator_id=annotator.pk)
        if standing.status == AnnotatorStanding.Status.SUSPENDED:
            standing.project = project
            raise AnnotatorSuspended(suspension_message(standing))
        leases_expire(now=now)
        own = (
            Assignment.objects.filter(
                annotator=annotator,
                comparison__project=project,
                state=Assignment.State.LEASED,
                expires_at__gt=now,
            )
            .select_related("comparison__prompt")
            .order_by("leased_at")
            .first()
        )
        if own is not None:
            return own
        writer = project.compares_people and writes_in(annotator_id=annotator.pk, project_id=project.pk)
        claim = claim_next(annotator_id=annotator.pk, project_id=project.pk, writer=writer)
        for _ in range(CLAIM_ATTEMPTS):
            candidate = claim.first()
            if candidate is None:
                if not candidate_wait(annotator_id=annotator.pk, project_id=project.pk, writer=writer):
                    return None
                continue
            comparison: Comparison = candidate
            revive = candidate.revive
            is_gold_slot = bool(project.gold_rate) and gold_due(
                rate=project.gold_rate,
                leases=standing.leases,
                gold_slots=standing.gold_slots,
                draw=gold_draw(project_id=project.pk, annotator_id=annotator.pk, leases=standing.leases),
            )
            if is_gold_slot:
                gold = gold_candidates(annotator_id=annotator.pk, project_id=project.pk).select_related(
                    "prompt"
                )
                comparison = gold.first() or candidate
                revive = revive and comparison is candidate
            # Conditional on room: under PostgreSQL the row lock already guarantees it; on SQLite, which has
            # no row locks, this is what keeps a concurrent claim from taking the same place twice.
            taken = (
                Comparison.objects.filter(pk=comparison.pk, status=Comparison.Status.OPEN)
                .filter(_has_room())
                .update(lease_count=F("lease_count") + 1)
            )
            if taken:
                comparison.lease_count += 1
                break
        else:
            return None
        AnnotatorStanding.objects.filter(pk=standing.pk).update(
            leases=F("leases") + 1,
            gold_slots=F("gold_slots") + int(is_gold_slot),
            gold_leases=F("gold_leases") + int(comparison.is_gold),
        )
        expires_at = now + project.lease_duration
        if revive:
            assignment = Assignment.objects.select_for_update().get(
                comparison=comparison, annotator=annotator, state=Assignment.State.EXPIRED
            )
            assignment.state = Assignment.State.LEASED
            assignment.leased_at, assignment.expires_at, assignment.finished_at = now, expires_at, None
            assignment.save(update_fields=["state", "leased_at", "expires_at", "finished_at"])
        else:
            assignment = Assignment.objects.create(
                comparison=comparison, annotator=annotator, leased_at=now, expires_at=expires_at
            )
        assignment.comparison = comparison  # with its prompt, for the page
        return assignment


def _complete_if_last(now: datetime) -> dict[str, Case]:
    """SET clauses that close a comparison when this judgment is its last (they read the row before the
    update, so `judgment_count` here is the count without this judgment)."""
    is_last = Q(judgment_count__gte=F("required_judgments") - 1)
    return {
        "status": Case(When(is_last, then=Value(Comparison.Status.COMPLETED)), default=F("status")),
        "completed_at": Case(When(is_last, then=Value(now)), default=F("completed_at")),
    }


def _same_judgment(
    judgment: Judgment, assignment: Assignment, values: dict[str, Any], edit: tuple[int, str] | None
) -> bool:
    if judgment.assignment_id != assignment.pk or not all(
        getattr(judgment, name) == value for name, value in values.items()
    ):
        return False
    stored = Response.objects.filter(judgment=judgment).values_list("edited_from_id", "text").first()
    return stored == edit


def place_count(*, assignment: Assignment, annotator: User, now: datetime) -> None:
    """Turn the assignment's place in its comparison into a judgment (or a written answer): a live lease
    (even one past its time that no sweep has returned yet) always; an expired one only while the
    comparison has room. Raises SubmissionConflict or AnnotatorSuspended. The caller holds the
    assignment's row lock, in its transaction."""
    comparison = assignment.comparison
    what = (
        "answer" if comparison.project.comparison_mode == Project.ComparisonMode.DEMONSTRATION else "judgment"
    )
    counters = Comparison.objects.filter(pk=comparison.pk, status=Comparison.Status.OPEN)
    if assignment.state == Assignment.State.LEASED:
        counted = counters.filter(lease_count__gte=1).update(
            lease_count=F("lease_count") - 1,
            judgment_count=F("judgment_count") + 1,
            **_complete_if_last(now),
        )
        if not counted:
            raise SubmissionConflict(f"This item was withdrawn from annotation; your {what} was not saved.")
        return
    # A suspension expires the annotator's live leases under their standing's lock, so only a lease
    # already expired can belong to a suspended annotator: the one path that asks.
    if AnnotatorStanding.objects.filter(
        project_id=comparison.project_id, annotator=annotator, status=AnnotatorStanding.Status.SUSPENDED
    ).exists():
        raise AnnotatorSuspended(
            f"You are suspended from this project, so this {what} was not saved. A project manager or an "
            "admin can reinstate you."
        )
    counted = counters.filter(_has_room()).update(
        judgment_count=F("judgment_count") + 1, **_complete_if_last(now)
    )
    if not counted:
        raise SubmissionConflict(
            f"Your lease on this item expired and its place went to another annotator, so this {what} was not "
            "saved. Load the next one to go on."
        )


def assignment_finish(assignment: Assignment, *, now: datetime) -> None:
    """Mark the assignment submitted; in a project that takes people's answers, its draft (if any) has
    served its purpose. (Elsewhere there is none, and looking would cost every judgment a statement.)"""
    assignment.state = Assignment.State.SUBMITTED
    assignment.finished_at = now
    assignment.save(update_fields=["state", "finished_at"])
    project = assignment.comparison.project
    if (
        project.comparison_mode == Project.ComparisonMode.DEMONSTRATION
        or project.answer_editing != Project.AnswerEditing.OFF
    ):
        AnswerDraft.objects.filter(assignment=assignment).delete()


def judgment_submit(
    *,
    annotator: User,
    assignment_id: int,
    submission_key: str,
    submission: JudgmentSubmission,
    project: Project | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    """Store the annotator's judgment of their assigned comparison, in one transaction.

    Idempotent by `submission_key` (per annotator): a retry with the same key and the same judgment returns
    the stored one (`replayed`); the same key with anything else raises `SubmissionKeyReused`.
    A live lease (even one past its time that no sweep has returned yet) turns its place into a judgment.
    An expired lease counts only if the comparison still has a free place; otherwise `SubmissionConflict`.
    Raises `AssignmentNotFound` for an assignment that is not the annotator's (or in a project they have
    left, or not in `project` when one is given) and `SubmissionInvalid` with field messages for a judgment that breaks the project's rules.
    """
    now = now or timezone.now()
    with transaction.atomic():
        assignment = assignment_get_for_annotator(
            annotator=annotator, assignment_id=assignment_id, project=project, lock=True
        )
        comparison = assignment.comparison
        response_ids = list(comparison.entries.order_by("position").values_list("response_id", flat=True))
        values = judgment_values(submission, project=comparison.project, response_ids=response_ids)
        edit = values.pop("edit")
        original = None
        if edit is not None:
            original = Response.objects.get(pk=edit[0])
            if (message := edit_text_error(original.text, edit[1])) is not None:
                raise SubmissionInvalid({"edit": message})

        if assignment.state in (Assignment.State.SUBMITTED, Assignment.State.SKIPPED):
            # Finished: this is a retry (the same key and judgment) or a conflict.
            earlier = Judgment.objects.filter(annotator=annotator, submission_key=submission_key).first()
            if earlier is not None:
                if _same_judgment(earlier, assignment, values, edit):
                    return SubmitResult(judgment=earlier, replayed=True)
                raise SubmissionKeyReused(KEY_REUSED)
            if assignment.state == Assignment.State.SUBMITTED:
                raise SubmissionConflict("You already judged this comparison.")
            raise SubmissionConflict("You skipped this comparison; it can no longer take your judgment.")

        place_count(assignment=assignment, annotator=annotator, now=now)
        try:
            judgment = Judgment.objects.create(
                comparison=comparison,
                annotator=annotator,
                assignment=assignment,
                submission_key=submission_key,
                **values,
            )
        except IntegrityError as error:
            # A live or expired lease has no judgment, so a key already stored belongs to another one (or the
            # same key is being sent concurrently for another assignment). Raising rolls the whole
            # transaction back, so no savepoint is needed around the insert.
            raise SubmissionKeyReused(KEY_REUSED) from error
        if edit is not None:
            human_answer_create(
                prompt=comparison.prompt,
                author=annotator,
                text=edit[1],
                edited_from=original,
                judgment=judgment,
                review_required=comparison.project.answers_reviewed,
            )
        assignment_finish(assignment, now=now)
        if comparison.is_gold:
            # Graded off the request path; a lost message is made up by the periodic quality refresh.
            send_task_on_commit(STANDING_TASK, [judgment.pk])
    return SubmitResult(judgment=judgment, replayed=False)


def assignment_skip(
    *,
    annotator: User,
    assignment_id: int,
    reason: Any,
    project: Project | None = None,
    now: datetime | None = None,
) -> Assignment:
    """Give up an assigned comparison with a reason: its place returns to others and it never comes back
    to this annotator. Skipping twice is a no-op; skipping a judged comparison is a `SubmissionConflict`."""
    now = now or timezone.now()
    reason = skip_reason_clean(reason)
    with transaction.atomic():
        assignment = assignment_get_for_annotator(
            annotator=annotator, assignment_id=assignment_id, project=project, lock=True
        )
        if assignment.state == Assignment.State.SKIPPED:
            return assignment
        if assignment.state == Assignment.State.SUBMITTED:
            raise SubmissionConflict("You already judged this comparison; it cannot be skipped.")
        if assignment.state == Assignment.State.LEASED:
            Comparison.objects.filter(pk=assignment.comparison_id, lease_count__gte=1).update(
                lease_count=F("lease_count") - 1
            )
        assignment.state = Assignment.State.SKIPPED
        assignment.skip_reason = reason
        assignment.finished_at = now
        assignment.save(update_fields=["state", "skip_reason", "finished_at"])
    return assignment


__all__ = [
    "AnnotatorSuspended",
    "SubmissionConflict",
    "SubmissionInvalid",
    "SubmissionKeyReused",
    "SubmitResult",
    "assignment_skip",
    "claim_candidates",
    "comparison_lease_next",
    "gold_candidates",
    "gold_due",
    "judgment_submit",
    "leases_expire",
]

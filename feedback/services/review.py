"""The review queue and its decisions: a reviewer's final word on a comparison.

Items enter the queue from the quality refresh (`review_queue_refresh`: low agreement, a flag, a
disputed gold item) or by a manager's pick (`review_pick`). A reviewer then decides the final verdict,
sends the item back for more judgments, or retires it (`review_decide`). Each decision locks its item:
the second of two reviewers racing on one item gets `ReviewConflict` (HTTP 409) and changes nothing. A
decision is idempotent by the reviewer's submission key, and every one is a `ReviewDecision` row with
the item's previous state and a reason. A decided verdict wins over the vote in consensus exports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from feedback.models import (
    Comparison,
    GoldVerdict,
    Project,
    ProjectMembership,
    ProjectRole,
    ReviewDecision,
    ReviewItem,
)
from feedback.verdicts import PAIRWISE_CHOICES, PAIRWISE_RANKINGS, ranking_error

REASON_MAX_LENGTH = 2_000
SEND_BACK_EXTRA = 2  # more judgments asked of a comparison sent back
KEY_MAX_LENGTH = 64


class ReviewInvalid(ValueError):
    """The decision cannot be taken as sent (HTTP 400); `errors` maps fields to messages."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = {name: [message] for name, message in errors.items()}
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


class ReviewConflict(Exception):
    """The item is no longer waiting for a decision (HTTP 409): another reviewer decided it first."""


class ReviewForbidden(Exception):
    """The user may not review (or pick in) this project (HTTP 403)."""


class ReviewKeyReused(Exception):
    """The submission key was already used for another decision (HTTP 422)."""


def project_role(*, user: User, project: Project) -> str | None:
    """The user's role in the project; staff count as managers everywhere."""
    if user.is_staff:
        return ProjectRole.MANAGER
    return ProjectMembership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def may_review(*, user: User, project: Project) -> bool:
    return project_role(user=user, project=project) in (ProjectRole.REVIEWER, ProjectRole.MANAGER)


@transaction.atomic
def review_queue_refresh(
    *,
    project: Project,
    low_agreement: Iterable[int] = (),
    flagged: Iterable[int] = (),
    gold_disputed: Iterable[int] = (),
    now: datetime | None = None,
) -> int:
    """Queue the project's comparisons named for each reason; returns how many items were queued or
    re-queued. An item already waiting gains the reasons; one sent back waits again once its comparison
    is complete again; a decided or retired item stays as it is (its reviewer had the last word)."""
    now = now or timezone.now()
    reasons: dict[int, set[str]] = {}
    for reason, ids in (
        (ReviewItem.Reason.LOW_AGREEMENT, low_agreement),
        (ReviewItem.Reason.FLAGGED, flagged),
        (ReviewItem.Reason.GOLD_DISPUTED, gold_disputed),
    ):
        for comparison_id in ids:
            reasons.setdefault(int(comparison_id), set()).add(reason)
    if not reasons:
        return 0
    # The project's items as values, not locked: every change below is a conditional UPDATE, so a
    # reviewer deciding an item meanwhile (who locks it) wins, and a refresh that changes nothing (the
    # usual case) reads one list and writes nothing.
    existing = {
        comparison_id: (pk, status, set(queued_for))
        for pk, comparison_id, status, queued_for in ReviewItem.objects.filter(project=project).values_list(
            "pk", "comparison_id", "status", "reasons"
        )
    }
    low = ReviewItem.Reason.LOW_AGREEMENT
    # Low agreement counts once the comparison is complete (until then more judgments may settle it):
    # asked only where it would change something.
    asked = {
        comparison_id
        for comparison_id, why in reasons.items()
        if (comparison_id not in existing and low in why)
        or (comparison_id in existing and existing[comparison_id][1] == ReviewItem.Status.SENT_BACK)
        or (
            comparison_id in existing
            and existing[comparison_id][1] == ReviewItem.Status.PENDING
            and low in why - existing[comparison_id][2]
        )
    }
    completed = set(
        Comparison.objects.filter(pk__in=sorted(asked), status=Comparison.Status.COMPLETED).values_list(
            "pk", flat=True
        )
    )
    queued = 0
    new = []
    for comparison_id, why in sorted(reasons.items()):
        if comparison_id in asked and comparison_id not in completed:
            why = why - {low}
        if not why:
            continue
        if comparison_id not in existing:
            new.append(
                ReviewItem(comparison_id=comparison_id, project=project, reasons=sorted(why), queued_at=now)
            )
            continue
        pk, status, queued_for = existing[comparison_id]
        if status == ReviewItem.Status.PENDING and not why <= queued_for:
            ReviewItem.objects.filter(pk=pk, status=ReviewItem.Status.PENDING).update(
                reasons=sorted(why | queued_for)
            )
        elif status == ReviewItem.Status.SENT_BACK and comparison_id in completed:
            queued += ReviewItem.objects.filter(pk=pk, status=ReviewItem.Status.SENT_BACK).update(
                status=ReviewItem.Status.PENDING, reasons=sorted(why), queued_at=now
            )
    ReviewItem.objects.bulk_create(new)
    return queued + len(new)


def _reason_clean(reason: Any, *, required: bool) -> str:
    if not isinstance(reason, str):
        raise ReviewInvalid({"reason": "Must be text."})
    reason = reason.strip()
    if required and not reason:
        raise ReviewInvalid({"reason": "Say why: it is recorded with the decision."})
    if "\x00" in reason or len(reason) > REASON_MAX_LENGTH:
        raise ReviewInvalid({"reason": f"At most {REASON_MAX_LENGTH} characters of text."})
    return reason


def _key_clean(key: Any) -> str:
    if not isinstance(key, str) or not 8 <= len(key) <= KEY_MAX_LENGTH or not key.isprintable():
        raise ReviewInvalid({"submission_key": "A submission key is 8 to 64 printable characters."})
    return key


def verdict_clean(verdict: Any, *, project: Project, size: int) -> dict[str, Any]:
    """A reviewer's verdict in a judgment's stored form: pairwise {"choice": a|b|tie|both_bad, "strength"?},
    k-wise {"ranking": [rank per display position]}."""
    if not isinstance(verdict, dict):
        raise ReviewInvalid({"verdict": 'Send {"choice": …} (pairwise) or {"ranking": […]} (k-wise).'})
    if project.comparison_mode == Project.ComparisonMode.PAIRWISE:
        choice = verdict.get("choice")
        if set(verdict) - {"choice", "strength"} or choice not in PAIRWISE_CHOICES:
            raise ReviewInvalid({"verdict": "Choose a, b, tie or both_bad."})
        if choice == "tie" and not project.allows_tie:
            raise ReviewInvalid({"verdict": "This project does not allow ties."})
        levels = len(project.strength_labels or [])
        strength = verdict.get("strength")
        if strength is not None and (
            choice not in ("a", "b")
            or not isinstance(strength, int)
            or isinstance(strength, bool)
            or not 1 <= strength <= levels
        ):
            raise ReviewInvalid({"verdict": f"Strength goes with a or b, from 1 to {levels}."})
        return {"choice": choice, "ranking": PAIRWISE_RANKINGS[choice], "strength": strength}
    ranking = verdict.get("ranking")
    if (
        set(verdict) != {"ranking"}
        or not isinstance(ranking, list)
        or not all(isinstance(rank, int) and not isinstance(rank, bool) for rank in ranking)
    ):
        raise ReviewInvalid({"verdict": "A ranking: a rank per shown response, 1 best."})
    if (message := ranking_error(ranking, size=size, allows_tie=project.allows_tie)) is not None:
        raise ReviewInvalid({"verdict": message})
    return {"choice": "ranked", "ranking": ranking, "strength": None}


def _gold_verdict_set(item: ReviewItem, verdict: dict[str, Any], *, reason: str) -> None:
    """A reviewer's final word on a gold item is its answer from now on: the stored verdict (by response
    id) becomes the one decided, so every answer is graded against it at the next refresh. Suspensions
    already made stand until a person reinstates (as always)."""
    response_ids = list(item.comparison.entries.order_by("position").values_list("response_id", flat=True))
    if verdict["choice"] in ("tie", "both_bad"):
        gold: dict[str, Any] = {"accepted": [verdict["choice"]]}
    elif verdict["choice"] in ("a", "b"):
        gold = {"accepted": [str(response_ids[verdict["ranking"].index(1)])]}
    else:  # a ranking: the ranks as decided (the judgments' own form), by response id
        gold = {
            "ranks": {
                str(response_id): rank
                for response_id, rank in zip(response_ids, verdict["ranking"], strict=True)
            }
        }
    changes: dict[str, Any] = {"verdict": gold, "updated_at": timezone.now()}
    if reason:
        changes["explanation"] = reason
    GoldVerdict.objects.filter(comparison_id=item.comparison_id).update(**changes)


@dataclass(frozen=True)
class DecisionResult:
    decision: ReviewDecision
    replayed: bool


def _replay(
    *, reviewer: User, submission_key: str, item_id: int, action: str, verdict: Any, reason: str
) -> DecisionResult | None:
    earlier = ReviewDecision.objects.filter(reviewer=reviewer, submission_key=submission_key).first()
    if earlier is None:
        return None
    if (earlier.item_id, earlier.action, earlier.verdict, earlier.reason) == (
        item_id,
        action,
        verdict,
        reason,
    ):
        return DecisionResult(decision=earlier, replayed=True)
    raise ReviewKeyReused("This submission key was already used for another decision; send a new key.")


def review_decide(
    *,
    reviewer: User,
    item_id: int,
    submission_key: Any,
    action: Any,
    verdict: Any = None,
    reason: Any = "",
    now: datetime | None = None,
) -> DecisionResult:
    """Decide a waiting item: `decide` (with `verdict`), `send_back` (the comparison asks for
    SEND_BACK_EXTRA more judgments and reopens) or `retire` (the comparison is withdrawn and leaves the
    exports); a reason is required to send back or retire. One transaction; the item is row-locked.
    Raises ReviewInvalid (400), ReviewForbidden (403), ReviewConflict (409), ReviewKeyReused (422), and
    ReviewItem.DoesNotExist for an item the reviewer cannot see (404)."""
    now = now or timezone.now()
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().select_related("project", "comparison").get(pk=item_id)
        # Who may decide comes first: someone who may not is refused whatever they sent.
        if not may_review(user=reviewer, project=item.project):
            raise ReviewForbidden("Only the project's reviewers and managers decide its review queue.")
        submission_key = _key_clean(submission_key)
        if action not in (
            ReviewDecision.Action.DECIDE,
            ReviewDecision.Action.SEND_BACK,
            ReviewDecision.Action.RETIRE,
        ):
            raise ReviewInvalid({"action": "One of: decide, send_back, retire."})
        reason = _reason_clean(reason, required=action != ReviewDecision.Action.DECIDE)
        stored_verdict = None
        if action == ReviewDecision.Action.DECIDE:
            size = item.comparison.entries.count()
            stored_verdict = verdict_clean(verdict, project=item.project, size=size)
        elif verdict is not None:
            raise ReviewInvalid({"verdict": "Only a decision carries a verdict."})
        replay = _replay(
            reviewer=reviewer,
            submission_key=submission_key,
            item_id=item.pk,
            action=action,
            verdict=stored_verdict,
            reason=reason,
        )
        if replay is not None:
            return replay
        if item.status != ReviewItem.Status.PENDING:
            who = f" by {item.decided_by}" if item.decided_by else ""
            raise ReviewConflict(
                f"This item was already {item.get_status_display().lower()}{who}; nothing was changed."
            )
        previous_status, previous_verdict = item.status, item.verdict
        if action == ReviewDecision.Action.DECIDE:
            item.status, item.verdict = ReviewItem.Status.DECIDED, stored_verdict
            if item.comparison.is_gold and stored_verdict is not None:
                _gold_verdict_set(item, stored_verdict, reason=reason)
        elif action == ReviewDecision.Action.SEND_BACK:
            item.status = ReviewItem.Status.SENT_BACK
            if not item.comparison.is_gold:
                Comparison.objects.filter(pk=item.comparison_id).update(
                    required_judgments=F("required_judgments") + SEND_BACK_EXTRA,
                    status=Comparison.Status.OPEN,
                    completed_at=None,
                )
        else:
            item.status = ReviewItem.Status.RETIRED
            Comparison.objects.filter(pk=item.comparison_id).update(status=Comparison.Status.RETIRED)
        item.decided_at, item.decided_by = now, reviewer
        item.save(update_fields=["status", "verdict", "decided_at", "decided_by"])
        try:
            with transaction.atomic():
                decision = ReviewDecision.objects.create(
                    item=item,
                    reviewer=reviewer,
                    action=action,
                    verdict=stored_verdict,
                    reason=reason,
                    previous_status=previous_status,
                    previous_verdict=previous_verdict,
                    submission_key=submission_key,
                )
        except IntegrityError as error:  # the same key sent at once for another item
            raise ReviewKeyReused("This submission key was already used for another decision.") from error
    return DecisionResult(decision=decision, replayed=False)


@transaction.atomic
def review_pick(
    *, manager: User, comparison_id: int, reason: Any, submission_key: Any, now: datetime | None = None
) -> ReviewItem:
    """A manager sends a comparison to the review queue (again, if it was decided before)."""
    now = now or timezone.now()
    reason = _reason_clean(reason, required=True)
    submission_key = _key_clean(submission_key)
    comparison = Comparison.objects.select_related("project").get(pk=comparison_id)
    if project_role(user=manager, project=comparison.project) != ProjectRole.MANAGER:
        raise ReviewForbidden("Only the project's managers pick items for review.")
    item, created = ReviewItem.objects.select_for_update().get_or_create(
        comparison=comparison,
        defaults={"project": comparison.project, "reasons": [ReviewItem.Reason.PICKED], "queued_at": now},
    )
    previous_status = "" if created else item.status
    if not created:
        if item.status == ReviewItem.Status.PENDING and ReviewItem.Reason.PICKED in item.reasons:
            return item
        item.status = ReviewItem.Status.PENDING
        item.reasons = sorted(set(item.reasons) | {ReviewItem.Reason.PICKED})
        item.queued_at = now
        item.save(update_fields=["status", "reasons", "queued_at"])
    ReviewDecision.objects.create(
        item=item,
        reviewer=manager,
        action=ReviewDecision.Action.PICK,
        reason=reason,
        previous_status=previous_status,
        previous_verdict=None if created else item.verdict,
        submission_key=submission_key,
    )
    return item

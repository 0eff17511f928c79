"""Annotators' standing in a project: gold accuracy, warnings, suspensions and reinstatements.

Gold accuracy decides automatically, once an annotator answered at least `gold_min_answers` gold
items: below the project's warning accuracy they are warned; when even the upper end of its 95% Wilson
interval is below the suspension accuracy, suspended. The interval keeps a good annotator's unlucky
streak, checked after every gold answer, from suspending them, while one who guesses is still caught
within a dozen or so answers. Position bias beyond doubt (see `_position_bias_reason`) suspends too. A
suspended annotator gets no more work in the project until a person reinstates them; reinstatement
starts their gold count afresh, so old mistakes do not suspend them again at their next answer.
Managers and admins may also suspend by hand. Every change is a `StandingChange` row: who (none for
the automatic check), when, why, and the gold figures it was decided on.

Locks: the standing row first, then the annotator's live assignments, then their comparisons in id
order: the order the assignment engine's claim and expiry sweep take them in.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from feedback.models import (
    AnnotatorStanding,
    Assignment,
    ComparisonResponse,
    GoldVerdict,
    Judgment,
    Project,
    StandingChange,
)
from feedback.quality.gold import gold_correct
from feedback.quality.proportions import position_bias, wilson
from feedback.services.leases import leases_return

REASON_MAX_LENGTH = 1_000
# Position bias suspends only on this much evidence, and beyond chance at this level.
BIAS_MIN_DECISIVE = 50
BIAS_P_VALUE = 0.001


class StandingChangeInvalid(ValueError):
    """A suspension or reinstatement refused (no reason, nothing to change); the message says why."""


class GoldAnswer(NamedTuple):  # a tuple: a refresh makes one per gold answer, 100,000 at a time
    annotator_id: int
    comparison_id: int
    correct: bool


def gold_answers(
    *,
    project_id: int,
    annotator_id: int | None = None,
    since: datetime | None = None,
    up_to: int | None = None,
) -> list[GoldAnswer]:
    """Every judgment of a gold item of the project (optionally one annotator's, from `since` on, with
    ids up to `up_to`), graded against the item's verdict as it stands now, in the order they were given.
    Three queries, whatever the count. Answers repeat (a few outcomes per item), so each distinct one is
    decoded and graded once."""
    judgments = Judgment.objects.filter(comparison__project_id=project_id, comparison__is_gold=True)
    if up_to is not None:
        judgments = judgments.filter(pk__lte=up_to)
    if annotator_id is not None:
        judgments = judgments.filter(annotator_id=annotator_id)
    if since is not None:
        judgments = judgments.filter(created_at__gte=since)
    rows = list(
        judgments.order_by("created_at", "id").values_list(
            "annotator_id", "comparison_id", "choice", Cast("ranking", TextField())
        )
    )
    compared = {row[1] for row in rows}
    verdicts = dict(
        GoldVerdict.objects.filter(comparison_id__in=compared).values_list("comparison_id", "verdict")
    )
    shown: dict[int, list[int]] = defaultdict(list)
    for comparison_id, response_id in (
        ComparisonResponse.objects.filter(comparison_id__in=compared)
        .order_by("comparison_id", "position")
        .values_list("comparison_id", "response_id")
    ):
        shown[comparison_id].append(response_id)
    grades: dict[tuple[int, str, str], bool] = {}

    def graded(comparison_id: int, choice: str, ranking: str) -> bool:
        key = (comparison_id, choice, ranking)
        if key not in grades:
            grades[key] = gold_correct(
                verdicts[comparison_id],
                choice=choice,
                ranking=json.loads(ranking),
                response_ids=shown[comparison_id],
            )
        return grades[key]

    return [
        GoldAnswer(
            annotator_id=annotator,
            comparison_id=comparison_id,
            correct=graded(comparison_id, choice, ranking),
        )
        for annotator, comparison_id, choice, ranking in rows
        if comparison_id in verdicts  # a gold item whose verdict is being written grades nothing yet
    ]


@dataclass(frozen=True)
class StandingFigures:
    """An annotator's figures in a project over all their judgments, as the quality refresh counted them:
    `standing_evaluate` takes them instead of reading them again, unless the annotator was reinstated
    (their counts then start at the reinstatement)."""

    gold_answered: int
    gold_correct: int
    first: int  # judgments of ordinary comparisons putting the response shown first ahead, alone
    decisive: int  # judgments of ordinary comparisons putting one response ahead, alone


def standing_locked(*, project_id: int, annotator_id: int) -> AnnotatorStanding:
    """The annotator's standing in the project, row-locked; created on first use (their first claim)."""
    standings = AnnotatorStanding.objects.select_for_update().filter(
        project_id=project_id, annotator_id=annotator_id
    )
    standing = standings.first()
    if standing is None:
        AnnotatorStanding.objects.get_or_create(project_id=project_id, annotator_id=annotator_id)
        standing = standings.get()
    return standing


def _leases_release(*, project_id: int, annotator_id: int, now: datetime) -> None:
    """Expire the annotator's live leases in the project and give their places back, as the sweep does."""
    live = list(
        Assignment.objects.select_for_update()
        .filter(annotator_id=annotator_id, comparison__project_id=project_id, state=Assignment.State.LEASED)
        .values_list("pk", "comparison_id")
    )
    leases_return(leases=live, now=now)


def _change(
    standing: AnnotatorStanding,
    *,
    status: str,
    reason: str,
    actor: User | None,
    now: datetime,
    figures: tuple[int, int] | None = None,
) -> AnnotatorStanding:
    """Record and apply a change of status; `figures` (gold answered, correct) default to the current
    count since the last reinstatement."""
    if figures is None:
        answers = gold_answers(
            project_id=standing.project_id, annotator_id=standing.annotator_id, since=standing.counts_since
        )
        figures = (len(answers), sum(answer.correct for answer in answers))
    answered, correct = figures
    StandingChange.objects.create(
        project_id=standing.project_id,
        annotator_id=standing.annotator_id,
        previous_status=standing.status,
        status=status,
        changed_by=actor,
        reason=reason,
        gold_answered=answered,
        gold_correct=correct,
    )
    standing.status, standing.reason, standing.changed_at = status, reason, now
    if status == AnnotatorStanding.Status.SUSPENDED:
        _leases_release(project_id=standing.project_id, annotator_id=standing.annotator_id, now=now)
    standing.save(update_fields=["status", "reason", "changed_at"])
    return standing


def _percent(share: float) -> str:
    return f"{share:.0%}"


def position_figures(*, project: Project, annotator_id: int, since: datetime | None) -> tuple[int, int]:
    """(first, decisive): of the annotator's judgments of ordinary comparisons in the project (from `since`
    on) that put one response first alone, how many put the one shown first (A) there. Bounded by the
    annotator's own work."""
    judgments = Judgment.objects.filter(
        annotator_id=annotator_id, comparison__project=project, comparison__is_gold=False
    )
    if since is not None:
        judgments = judgments.filter(created_at__gte=since)
    first = decisive = 0
    for ranking in judgments.values_list("ranking", flat=True):
        top = [position for position, rank in enumerate(ranking) if rank == 1]
        if len(top) == 1:
            decisive += 1
            first += top[0] == 0
    return first, decisive


def _position_bias_reason(project: Project, first: int, decisive: int) -> str | None:
    """Why the annotator is to be suspended for position bias, or None: at least `BIAS_MIN_DECISIVE`
    decisive judgments, a share of the first position at least `bias_suspend_share` (or, in pairs, at
    most its complement), and beyond chance by the binomial test (p < `BIAS_P_VALUE`)."""
    if project.bias_suspend_share >= 1.0 or decisive < BIAS_MIN_DECISIVE:
        return None
    chance = 1 / project.responses_per_comparison
    bias = position_bias(first, decisive, expected=chance)
    share = bias.share or 0.0
    extreme = share >= project.bias_suspend_share or (
        project.responses_per_comparison == 2 and share <= 1 - project.bias_suspend_share
    )
    if not extreme or bias.p_value is None or bias.p_value >= BIAS_P_VALUE:
        return None
    return (
        f"You put the response shown first ahead in {_percent(share)} of {decisive} judgments, where chance is "
        f"{_percent(chance)}. The order responses are shown in is random, so this cannot be a preference."
    )


@transaction.atomic
def standing_evaluate(
    *,
    project_id: int,
    annotator_id: int,
    figures: StandingFigures | None = None,
    now: datetime | None = None,
) -> AnnotatorStanding:
    """Grade the annotator's gold answers and position bias in the project (since their last
    reinstatement) and warn, suspend, or lift a warning as the project's thresholds say. A suspension is
    never lifted here: only a person reinstates. Idempotent: evaluating again with no new judgment
    changes nothing."""
    now = now or timezone.now()
    project = Project.objects.get(pk=project_id)
    standing = standing_locked(project_id=project_id, annotator_id=annotator_id)
    if standing.status == AnnotatorStanding.Status.SUSPENDED:
        return standing
    if figures is not None and standing.counts_since is None:
        answered, correct = figures.gold_answered, figures.gold_correct
        first, decisive = figures.first, figures.decisive
    else:
        answers = gold_answers(project_id=project_id, annotator_id=annotator_id, since=standing.counts_since)
        answered, correct = len(answers), sum(answer.correct for answer in answers)
        first, decisive = position_figures(
            project=project, annotator_id=annotator_id, since=standing.counts_since
        )
    biased = _position_bias_reason(project, first, decisive)
    status = standing.status
    if answered >= project.gold_min_answers:
        accuracy = wilson(correct, answered)
        share, high = accuracy.share or 0.0, accuracy.high or 0.0
        described = f"gold accuracy {_percent(share)} ({correct} of {answered} gold items)"
        if high < project.gold_suspend_accuracy:
            status = AnnotatorStanding.Status.SUSPENDED
            reason = (
                f"Your {described}, at most {_percent(high)} with 95% confidence, is below the "
                f"{_percent(project.gold_suspend_accuracy)} this project requires."
            )
        elif share < project.gold_warn_accuracy:
            status = AnnotatorStanding.Status.WARNED
            reason = (
                f"Your {described} is below the {_percent(project.gold_warn_accuracy)} this project expects."
            )
        else:
            status = AnnotatorStanding.Status.ACTIVE
            reason = f"Your {described} is at or above the {_percent(project.gold_warn_accuracy)} this project expects."
    if biased is not None and status != AnnotatorStanding.Status.SUSPENDED:
        status, reason = AnnotatorStanding.Status.SUSPENDED, biased
    if status == standing.status:
        return standing
    return _change(standing, status=status, reason=reason, actor=None, now=now, figures=(answered, correct))


def _reason_clean(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise StandingChangeInvalid("Say why (a short reason): it is recorded and shown to the annotator.")
    if "\x00" in reason or len(reason) > REASON_MAX_LENGTH:
        raise StandingChangeInvalid(f"The reason must be text of at most {REASON_MAX_LENGTH} characters.")
    return reason.strip()


@transaction.atomic
def annotator_suspend(
    *, project_id: int, annotator_id: int, actor: User, reason: str, now: datetime | None = None
) -> AnnotatorStanding:
    """Suspend an annotator from a project by hand: no more work there, live leases returned."""
    reason = _reason_clean(reason)
    now = now or timezone.now()
    standing = standing_locked(project_id=project_id, annotator_id=annotator_id)
    if standing.status == AnnotatorStanding.Status.SUSPENDED:
        raise StandingChangeInvalid("This annotator is already suspended from the project.")
    return _change(standing, status=AnnotatorStanding.Status.SUSPENDED, reason=reason, actor=actor, now=now)


@transaction.atomic
def annotator_reinstate(
    *, project_id: int, annotator_id: int, actor: User, reason: str, now: datetime | None = None
) -> AnnotatorStanding:
    """Give a suspended annotator work again. Their gold count starts afresh from now."""
    reason = _reason_clean(reason)
    now = now or timezone.now()
    standing = standing_locked(project_id=project_id, annotator_id=annotator_id)
    if standing.status != AnnotatorStanding.Status.SUSPENDED:
        raise StandingChangeInvalid("This annotator is not suspended from the project.")
    changed = _change(standing, status=AnnotatorStanding.Status.ACTIVE, reason=reason, actor=actor, now=now)
    changed.counts_since = now
    changed.save(update_fields=["counts_since"])
    return changed

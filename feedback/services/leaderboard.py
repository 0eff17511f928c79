"""A project's checkpoint leaderboard: computed on a worker, cached per project and filters.

`leaderboard_compute` reads the battles of the judgments the filters select (the export's selection:
`feedback.services.battles`), fits Bradley–Terry raw and length/style-controlled with bootstrap intervals
(`feedback.quality.leaderboard`), and adds what the pages and the API show: the battle and win-rate
matrices, a raw fit per prompt category, the mean rating per checkpoint on each rubric axis, and for
every pair of checkpoints that met the counts, per category and per axis, that the head-to-head report
reads. Everything is JSON, stored in `LeaderboardReport`, one row per project and filter key.

`leaderboard_request` is what a page or an API call does: it returns the stored row (whatever its age,
saying how fresh it is) and sends the computation to a worker when there is none or judgments arrived
since. `leaderboards_refresh` (celery beat) recomputes the recently asked ones that judgments made stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components
from scipy.stats import t as student_t

from feedback.celery import app
from feedback.export.options import (
    ExportOptions,
    ExportOptionsError,
    _integer,
    _string_list,
    canonical_dict,
)
from feedback.export.quality import ExportQuality, export_quality
from feedback.export.source import judgments_selected
from feedback.models import (
    PEOPLE,
    PEOPLE_ID,
    Judgment,
    LeaderboardReport,
    PolicyCheckpoint,
    Project,
    PromptCategory,
    ReviewDecision,
    StandingChange,
)
from feedback.quality.leaderboard import (
    FIRST,
    SECOND,
    STYLE_LABELS,
    TIE,
    battle_cells,
    battles_needed,
    bradley_terry,
    bradley_terry_controlled,
    style_differences,
)
from feedback.quality.proportions import wilson
from feedback.services.battles import BOTH_BAD, CATEGORIES, Battles, battles_read, ratings_read
from feedback.services.generation import task_send

logger = logging.getLogger(__name__)

BOTH_BAD_POLICIES = ("apart", "tie")
MAX_ROUNDS = 10_000
MIN_ROUNDS = 100
EXAMPLES = 3  # representative judgments kept per pair and outcome
# The filters asked for within this long are kept fresh by the periodic refresh.
KEEP_FRESH = timedelta(days=7)
# At most this many are computed per periodic run, the most recently asked first: any reader may ask for
# new filters, and a run must end before the next one starts.
REFRESH_AT_MOST = 20
OUTCOMES = ("wins", "losses", "ties", "both_bad")
AFTER_EVERY_CHECKPOINT = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PeopleParticipant:
    """People's answers, as a leaderboard participant beside the checkpoints: named `PEOPLE`, with id
    `PEOPLE_ID`, listed after every checkpoint (it was registered by none)."""

    pk: int = PEOPLE_ID
    name: str = PEOPLE
    kind: str = "people"
    parent: None = None
    parent_id: None = None
    training_step: None = None
    created_at: datetime = AFTER_EVERY_CHECKPOINT


Participant = PolicyCheckpoint | PeopleParticipant


def leaderboard_participants(project: Project) -> list[str]:
    """The names that can meet on the project's leaderboard: the checkpoints that answered its prompts
    (oldest first) and, where it compares people's answers (perhaps to another project's prompts), the
    checkpoints that answered those prompts, then `PEOPLE`."""
    checkpoints = PolicyCheckpoint.objects.filter(responses__prompt__project=project)
    if project.compares_people:
        checkpoints = checkpoints | PolicyCheckpoint.objects.filter(
            responses__prompt__comparisons__project=project
        )
    names = list(checkpoints.distinct().order_by("created_at", "pk").values_list("name", flat=True))
    if project.compares_people:
        names.append(PEOPLE)
    return names


def participant_ids(names: Sequence[str]) -> dict[str, int]:
    """Participant name → id, for the names that name one (a checkpoint, or `PEOPLE`)."""
    found: dict[str, int] = dict(
        PolicyCheckpoint.objects.filter(name__in=list(names)).values_list("name", "pk")
    )
    if PEOPLE in names:
        found[PEOPLE] = PEOPLE_ID
    return found


# The judgment filters a leaderboard shares with the export, under the same names and meaning.
EXPORT_FILTERS = (
    "since",
    "until",
    "exclude_flagged",
    "exclude_suspended",
    "min_gold_accuracy",
    "adjudicated_wins",
    "reviewed_only",
)


def _decided(quality: ExportQuality, *, wins: bool) -> dict[int, dict[str, Any]]:
    """Comparison id → a reviewer's decided verdict, when reviewers' verdicts win (else none)."""
    return {pk: verdict for pk, verdict in quality.reviews.items() if verdict is not None} if wins else {}


class LeaderboardFiltersError(ValueError):
    """Bad filters: `errors` maps each field to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {' '.join(messages)}" for key, messages in errors.items()))


@dataclass(frozen=True)
class LeaderboardFilters:
    """Which judgments a leaderboard reads and how it is fitted. The judgment filters are the export's
    (the same names, the same meaning, parsed by `ExportOptions`), plus the prompt categories. `both_bad`:
    "apart" (counted, left out of the fit) or "tie" (half a win each). `reference`: the checkpoint shown
    at 1000 (default: the oldest base checkpoint among those compared, else the first registered)."""

    categories: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    exclude_flagged: bool = True
    exclude_suspended: bool = True
    min_gold_accuracy: float = 0.0
    adjudicated_wins: bool = True
    reviewed_only: bool = False
    both_bad: str = "apart"
    reference: str = ""
    rounds: int = 1000
    seed: int = 0

    @classmethod
    def from_mapping(cls, data: Any) -> LeaderboardFilters:
        errors: dict[str, list[str]] = {}
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            errors["non_field_errors"] = [f"Unknown filters: {', '.join(unknown)}."]
        values: dict[str, Any] = {}
        categories = _string_list(data.get("categories", ()))
        if categories is None:
            errors["categories"] = ["A list of prompt categories (or one comma-separated string)."]
        elif bad := sorted(set(categories) - set(PromptCategory.values)):
            errors["categories"] = [
                f"Unknown categories {', '.join(bad)}; choose from {', '.join(PromptCategory.values)}."
            ]
        else:
            values["categories"] = tuple(sorted(set(categories)))
        shared = EXPORT_FILTERS
        try:
            options = ExportOptions.from_mapping(
                {"format": "judgments", **{name: data[name] for name in shared if name in data}}
            )
        except ExportOptionsError as error:
            errors.update({name: messages for name, messages in error.errors.items() if name in shared})
        else:
            values.update({name: getattr(options, name) for name in shared})
        both_bad = data.get("both_bad", "apart")
        if both_bad not in BOTH_BAD_POLICIES:
            errors["both_bad"] = [f"{both_bad!r} is not one of: {', '.join(BOTH_BAD_POLICIES)}."]
        else:
            values["both_bad"] = both_bad
        reference = data.get("reference", "")
        if not isinstance(reference, str) or len(reference) > 200 or "\x00" in reference:
            errors["reference"] = ["A checkpoint's name."]
        elif reference and not participant_ids([reference]):
            errors["reference"] = [f"No checkpoint is named {reference!r} (nor is it {PEOPLE!r})."]
        else:
            values["reference"] = reference
        rounds = _integer(data.get("rounds", 1000))
        if rounds is None or not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
            errors["rounds"] = [f"An integer from {MIN_ROUNDS} to {MAX_ROUNDS}."]
        else:
            values["rounds"] = rounds
        seed = _integer(data.get("seed", 0))
        if seed is None or not 0 <= seed < 2**32:
            errors["seed"] = ["An integer from 0 to 4294967295."]
        else:
            values["seed"] = seed
        if errors:
            raise LeaderboardFiltersError(errors)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and canonical: stored with the leaderboard and hashed into its key."""
        return canonical_dict(self)

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def export_options(self, project_slugs: tuple[str, ...]) -> ExportOptions:
        """The export options that select the same judgments (the `judgments` format: one per judgment)."""
        return ExportOptions(
            format="judgments",
            projects=project_slugs,
            **{name: getattr(self, name) for name in EXPORT_FILTERS},
        )


# --- computation --------------------------------------------------------------------------------------


def leaderboard_compute(
    *, project: Project, filters: LeaderboardFilters, high_water_mark: int
) -> dict[str, Any]:
    """The leaderboard of the project's judgments up to the mark that `filters` select, as JSON."""
    options = filters.export_options((project.slug,))
    quality = export_quality(options, high_water_mark=high_water_mark)
    judgments = judgments_selected(options, high_water_mark=high_water_mark, quality=quality)
    return leaderboard_of_judgments(
        judgments,
        projects=[project.pk],
        filters=filters,
        decided=_decided(quality, wins=filters.adjudicated_wins),
        axes=[(axis["key"], axis.get("label") or axis["key"]) for axis in project.rating_rubric or []],
        is_ranking=project.comparison_mode == Project.ComparisonMode.RANKING,
        high_water_mark=high_water_mark,
    )


def leaderboard_of_judgments(
    judgments: Any,
    *,
    projects: list[int],
    filters: LeaderboardFilters,
    decided: dict[int, dict[str, Any]],
    axes: list[tuple[str, str]],
    is_ranking: bool,
    high_water_mark: int,
) -> dict[str, Any]:
    """The leaderboard of the given judgments (a queryset): what `leaderboard_compute` stores and what an
    export's dataset card carries."""
    if filters.categories:
        judgments = judgments.filter(comparison__prompt__category__in=filters.categories)
    battles = battles_read(judgments, projects=projects, decided=decided)
    ids = np.unique(np.concatenate((battles.first, battles.second)))
    checkpoints: dict[int, Participant] = {
        checkpoint.pk: checkpoint
        for checkpoint in PolicyCheckpoint.objects.filter(pk__in=ids.tolist()).select_related("parent")
    }
    if PEOPLE_ID in ids:
        checkpoints[PEOPLE_ID] = PeopleParticipant()
    report: dict[str, Any] = {
        "high_water_mark": high_water_mark,
        "filters": filters.to_dict(),
        "judgments": _distinct_sorted(battles.judgment),
        "battles": 0,
        "ties": int((battles.outcome == TIE).sum()),
        "both_bad": int((battles.outcome == BOTH_BAD).sum()),
        "same_checkpoint": battles.same_checkpoint,
        "rankings_expanded": is_ranking,
        "rounds": filters.rounds,
        "seed": filters.seed,
        "reference": None,
        "notes": [],
        "checkpoints": [],
        "first_advantage": None,
        "style": None,
        "matrix": {"checkpoints": [], "battles": [], "win_rate": []},
        "categories": [],
        "axes": [],
        "pairs": [],
    }
    if is_ranking:
        report["notes"].append(
            "Rankings are expanded to every pair of their responses; the pairs of one ranking are not "
            "independent, so the intervals are somewhat narrower than they should be."
        )
    order = sorted(checkpoints.values(), key=lambda checkpoint: (checkpoint.created_at, checkpoint.pk))
    k = len(order)
    # Checkpoint ids → their index in `order` (registration order), for every battle.
    position_of = np.empty(len(ids), dtype=np.intp)
    position_of[np.searchsorted(ids, [checkpoint.pk for checkpoint in order])] = np.arange(k)
    every_first = position_of[np.searchsorted(ids, battles.first)]
    every_second = position_of[np.searchsorted(ids, battles.second)]
    counted = _counts(every_first, every_second, battles.outcome, k)
    kept = np.ones(len(battles), dtype=bool) if filters.both_bad == "tie" else battles.outcome != BOTH_BAD
    first, second = every_first[kept], every_second[kept]
    outcome = np.where(battles.outcome[kept] == BOTH_BAD, TIE, battles.outcome[kept]).astype(np.intp)
    report["battles"] = len(first)
    report["matrix"] = _matrices(first, second, outcome, order)
    if k < 2 or not len(first):
        report["notes"].append("Fewer than two checkpoints met in these judgments: nothing to rank.")
        report["checkpoints"] = [
            _entry(checkpoint, None, None, counted[index]) for index, checkpoint in enumerate(order)
        ]
        return report

    fought = np.zeros(k, dtype=bool)  # in at least one battle of the fit (both-bad apart is none)
    fought[first] = fought[second] = True
    reference = _reference(order, fought, filters.reference, report["notes"])
    # Only checkpoints connected to the reference by battles have a score relative to it.
    graph = coo_array((np.ones(len(first)), (first, second)), shape=(k, k))
    _, component = connected_components(graph, directed=False)
    members = np.flatnonzero(component == component[reference])
    if len(members) < k:
        report["notes"].append(
            f"{k - len(members)} checkpoint(s) never met the reference's group, directly or through "
            "others: they have no score on this scale."
        )
    local = np.full(k, -1, dtype=np.intp)
    local[members] = np.arange(len(members))
    inside = (local[first] >= 0) & (local[second] >= 0)
    fit_first, fit_second, fit_outcome = local[first[inside]], local[second[inside]], outcome[inside]
    cells = battle_cells(fit_first, fit_second, fit_outcome, checkpoints=len(members))
    raw = bradley_terry(cells, reference=int(local[reference]), rounds=filters.rounds, seed=filters.seed)
    fitted_rows = np.flatnonzero(kept)[inside]
    covariates = style_differences(battles.first_style[fitted_rows], battles.second_style[fitted_rows])
    # The styles are in the covariates now: let their memory go before the controlled fit.
    battles = dataclasses.replace(
        battles, first_style=battles.first_style[:0], second_style=battles.second_style[:0]
    )
    controlled = bradley_terry_controlled(
        fit_first,
        fit_second,
        fit_outcome,
        covariates,
        checkpoints=len(members),
        reference=int(local[reference]),
        rounds=filters.rounds,
        seed=filters.seed,
    )
    report["reference"] = {"id": order[reference].pk, "name": order[reference].name}
    entries = []
    for index, checkpoint in enumerate(order):
        at = int(local[index])
        raw_entry = (
            _score(raw.scores[at], raw.elo[at], raw.low[at], raw.high[at], raw.ranks[at]) if at >= 0 else None
        )
        controlled_entry = (
            _score(
                controlled.scores[at],
                controlled.elo[at],
                controlled.low[at],
                controlled.high[at],
                controlled.ranks[at],
            )
            if at >= 0
            else None
        )
        entries.append(_entry(checkpoint, raw_entry, controlled_entry, counted[index]))
    entries.sort(key=lambda entry: (-(entry["raw"] or {}).get("elo", -math.inf), entry["name"]))
    report["checkpoints"] = entries
    # Where one side won (or lost) every decisive battle, the likelihood alone has no finite answer: the
    # prior decides how far out the score lies, so it says only "far above (below)".
    decisive = fit_outcome != TIE
    won = np.bincount(fit_first[decisive & (fit_outcome == FIRST)], minlength=len(members)) + np.bincount(
        fit_second[decisive & (fit_outcome == SECOND)], minlength=len(members)
    )
    lost = np.bincount(fit_first[decisive & (fit_outcome == SECOND)], minlength=len(members)) + np.bincount(
        fit_second[decisive & (fit_outcome == FIRST)], minlength=len(members)
    )
    for at, index in enumerate(members.tolist()):
        if won[at] + lost[at] and not (won[at] and lost[at]):
            report["notes"].append(
                f"{order[index].name} {'won' if won[at] else 'lost'} every one of its {won[at] + lost[at]} decisive "
                "battles: its score rests on the prior (a Gaussian of 10 logits around the reference) and only "
                f"says it lies far {'above' if won[at] else 'below'} the others."
            )
    report["first_advantage"] = {
        "raw": _advantage(raw.first_advantage, raw.first_advantage_interval),
        "controlled": _advantage(controlled.first_advantage, controlled.first_advantage_interval),
    }
    varies = covariates.std(axis=0) > 0 if len(covariates) else np.zeros(len(STYLE_LABELS), dtype=bool)
    report["style"] = [
        {
            "feature": label,
            # A feature that never differs between the two sides has no effect to estimate.
            "coefficient": float(controlled.coefficients[column]) if varies[column] else None,
            "low": float(controlled.coefficients_low[column]) if varies[column] else None,
            "high": float(controlled.coefficients_high[column]) if varies[column] else None,
        }
        for column, label in enumerate(STYLE_LABELS)
    ]
    del covariates
    category = battles.category[fitted_rows]
    for code, name in enumerate(CATEGORIES):
        chosen = category == code
        if not chosen.any():
            continue
        report["categories"].append(
            _category_fit(
                name,
                fit_first[chosen],
                fit_second[chosen],
                fit_outcome[chosen],
                [order[index] for index in members],
                reference=int(local[reference]),
                filters=filters,
            )
        )
    scores = np.full(k, np.nan)
    scores[members] = raw.scores
    ratings = ratings_read(judgments, axes=[key for key, _ in axes]) if axes else None
    report["axes"] = _axes(axes, ratings, order)
    report["pairs"] = _pairs(battles, every_first, every_second, order, scores, axes, ratings)
    return report


def _distinct_sorted(values: npt.NDArray[np.int64]) -> int:
    """How many distinct values an ascending array holds."""
    return int(len(values) and 1 + np.count_nonzero(values[1:] != values[:-1]))


def _reference(order: list[Participant], fought: npt.NDArray[np.bool_], asked: str, notes: list[str]) -> int:
    """The checkpoint shown at 1000: the one asked for, else the oldest base model, else the first
    registered; only among those with battles in the fit."""
    if asked:
        for index, checkpoint in enumerate(order):
            if checkpoint.name == asked and fought[index]:
                return index
        notes.append(f"The reference {asked!r} has no battles in this fit: the default is used.")
    for index, checkpoint in enumerate(order):
        if checkpoint.kind == PolicyCheckpoint.Kind.BASE and fought[index]:
            return index
    return int(np.flatnonzero(fought)[0])


def _score(logits: float, elo: float, low: float, high: float, rank: int) -> dict[str, Any]:
    return {
        "score": float(logits),
        "elo": float(elo),
        "low": float(low),
        "high": float(high),
        "rank": int(rank),
    }


def _advantage(logits: float, interval: tuple[float, float]) -> dict[str, float]:
    """The first-position term in logits with its interval, and the probability that the response shown
    first wins against an equal one."""
    return {
        "logits": float(logits),
        "low": float(interval[0]),
        "high": float(interval[1]),
        "win_probability": float(1.0 / (1.0 + math.exp(-logits))),
    }


def _counts(
    first: npt.NDArray[np.intp], second: npt.NDArray[np.intp], outcome: npt.NDArray[np.int8], k: int
) -> list[dict[str, int]]:
    """Per checkpoint (by index): its battles, wins, losses, ties and both-bad, whichever side it was on."""

    def per(where: npt.NDArray[np.intp], chosen: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        return np.bincount(where[chosen], minlength=k)

    every = np.ones(len(outcome), dtype=bool)
    battles = per(first, every) + per(second, every)
    wins = per(first, outcome == FIRST) + per(second, outcome == SECOND)
    losses = per(first, outcome == SECOND) + per(second, outcome == FIRST)
    ties = per(first, outcome == TIE) + per(second, outcome == TIE)
    both_bad = per(first, outcome == BOTH_BAD) + per(second, outcome == BOTH_BAD)
    return [
        {
            "battles": int(battles[index]),
            "wins": int(wins[index]),
            "losses": int(losses[index]),
            "ties": int(ties[index]),
            "both_bad": int(both_bad[index]),
        }
        for index in range(k)
    ]


def _entry(
    checkpoint: Participant,
    raw: dict[str, Any] | None,
    controlled: dict[str, Any] | None,
    counts: dict[str, int],
) -> dict[str, Any]:
    return {
        "id": checkpoint.pk,
        "name": checkpoint.name,
        "kind": checkpoint.kind,
        "parent": checkpoint.parent.name if checkpoint.parent else None,
        "parent_id": checkpoint.parent_id,
        "training_step": checkpoint.training_step,
        **counts,
        "raw": raw,
        "controlled": controlled,
    }


def _matrices(
    first: npt.NDArray[np.intp], second: npt.NDArray[np.intp], outcome: npt.NDArray[np.intp], order: list[Any]
) -> dict[str, Any]:
    """Battles between each two checkpoints (both orders), and the row's share of wins against the column
    (ties half; None where they never met)."""
    k = len(order)
    cell = first * k + second
    battles = np.bincount(cell, minlength=k * k).reshape(k, k).astype(np.float64)
    first_score = np.where(outcome == FIRST, 1.0, np.where(outcome == TIE, 0.5, 0.0))
    wins = np.bincount(cell, weights=first_score, minlength=k * k).reshape(k, k)
    wins += np.bincount(second * k + first, weights=1.0 - first_score, minlength=k * k).reshape(k, k)
    met = battles + battles.T
    rate = np.divide(wins, met, out=np.full((k, k), np.nan), where=met > 0)
    return {
        "checkpoints": [checkpoint.pk for checkpoint in order],
        "battles": met.astype(int).tolist(),
        "win_rate": [[None if math.isnan(value) else float(value) for value in row] for row in rate],
    }


def _category_fit(
    name: str,
    first: npt.NDArray[np.intp],
    second: npt.NDArray[np.intp],
    outcome: npt.NDArray[np.intp],
    members: list[Participant],
    *,
    reference: int,
    filters: LeaderboardFilters,
) -> dict[str, Any]:
    """A raw fit of one category's battles, on the same scale (the same reference), over the checkpoints
    that met the reference's group in this category."""
    k = len(members)
    graph = coo_array((np.ones(len(first)), (first, second)), shape=(k, k))
    _, component = connected_components(graph, directed=False)
    entry: dict[str, Any] = {"category": name, "battles": len(first), "checkpoints": []}
    if not ((first == reference) | (second == reference)).any():
        entry["note"] = "The reference has no battles in this category."
        return entry
    inside = np.flatnonzero(component == component[reference])
    local = np.full(k, -1, dtype=np.intp)
    local[inside] = np.arange(len(inside))
    keep = (local[first] >= 0) & (local[second] >= 0)
    cells = battle_cells(local[first[keep]], local[second[keep]], outcome[keep], checkpoints=len(inside))
    fit = bradley_terry(cells, reference=int(local[reference]), rounds=filters.rounds, seed=filters.seed)
    entry["checkpoints"] = [
        {
            "id": members[index].pk,
            "name": members[index].name,
            **_score(fit.scores[at], fit.elo[at], fit.low[at], fit.high[at], fit.ranks[at]),
        }
        for at, index in enumerate(inside)
    ]
    return entry


def _mean_interval(values: npt.NDArray[np.float64]) -> dict[str, Any]:
    """The mean with its 95% Student t interval (None with fewer than two values)."""
    count = len(values)
    if count < 2:
        return {"count": count, "mean": float(values.mean()) if count else None, "low": None, "high": None}
    mean = float(values.mean())
    half = float(student_t.ppf(0.975, count - 1) * values.std(ddof=1) / math.sqrt(count))
    return {"count": count, "mean": mean, "low": mean - half, "high": mean + half}


def _axes(axes: list[tuple[str, str]], ratings: Any, order: list[Participant]) -> list[dict[str, Any]]:
    """Each rubric axis's mean score per checkpoint, with its interval, over every rating its responses
    got in the selected judgments."""
    if ratings is None:
        return []
    result = []
    for column, (key, label) in enumerate(axes):
        scored = ratings.scored[:, column]
        entries = []
        for checkpoint in order:
            values = ratings.score[scored & (ratings.checkpoint == checkpoint.pk), column].astype(np.float64)
            if len(values):
                entries.append({"id": checkpoint.pk, "name": checkpoint.name, **_mean_interval(values)})
        result.append({"key": key, "label": label, "checkpoints": entries})
    return result


def _pairs(
    battles: Battles,
    first: npt.NDArray[np.intp],
    second: npt.NDArray[np.intp],
    order: list[Participant],
    scores: npt.NDArray[np.float64],
    axes: list[tuple[str, str]],
    ratings: Any,
) -> list[dict[str, Any]]:
    """For each two checkpoints that met (the older one named first): their outcomes whichever was shown
    first (both-bad included), per category, on each rubric axis the first's score minus the second's
    by the same judgment, and representative judgments of each outcome (with a rationale first, newest
    first)."""
    if not len(battles):
        return []
    low, high = np.minimum(first, second), np.maximum(first, second)
    swapped = first > second
    # The outcome from the lower index's side: 0 wins, 1 losses, 2 ties, 3 both bad.
    outcome = battles.outcome.astype(np.intp)
    side = np.where(outcome >= TIE, outcome, np.where(swapped, 1 - outcome, outcome))
    rated = _paired_ratings(battles, ratings, swapped) if ratings is not None else None
    result = []
    pair_key = low * len(order) + high
    grouped = np.argsort(pair_key, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_key[grouped])) + 1
    for rows in np.split(grouped, bounds):
        a, b = int(low[rows[0]]), int(high[rows[0]])
        counts = np.bincount(side[rows], minlength=4)
        by_category = {}
        for code in np.unique(battles.category[rows]):
            chosen = rows[battles.category[rows] == code]
            name = CATEGORIES[code] if 0 <= code < len(CATEGORIES) else "other"
            by_category[name] = dict(
                zip(OUTCOMES, np.bincount(side[chosen], minlength=4).tolist(), strict=True)
            )
        examples = {}
        for code, name in enumerate(OUTCOMES):
            chosen = rows[side[rows] == code]
            # Rationale first, then newest; one example per judgment (a ranking gives several pairs).
            ranked = chosen[np.lexsort((-battles.judgment[chosen], ~battles.rationale[chosen]))]
            examples[name] = list(dict.fromkeys(battles.judgment[ranked].tolist()))[:EXAMPLES]
        entry: dict[str, Any] = {
            "first": order[a].pk,
            "second": order[b].pk,
            **dict(zip(OUTCOMES, counts.tolist(), strict=True)),
            "categories": by_category,
            "examples": examples,
            "axes": {},
            "predicted": None
            if math.isnan(scores[a]) or math.isnan(scores[b])
            else float(1.0 / (1.0 + math.exp(-(scores[a] - scores[b])))),
        }
        if rated is not None:
            for column, (axis, _) in enumerate(axes):
                differences = rated[rows, column]
                differences = differences[~np.isnan(differences)]
                if len(differences):
                    entry["axes"][axis] = _mean_interval(differences)
        result.append(entry)
    return result


def _paired_ratings(
    battles: Battles, ratings: Any, swapped: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Per battle and axis, the lower-indexed checkpoint's score minus the other's, both given by the
    battle's judgment (NaN where it did not score both)."""
    keys = (ratings.judgment << 32) | ratings.response
    order = np.argsort(keys, kind="stable")
    keys, scores, scored = keys[order], ratings.score[order].astype(np.float64), ratings.scored[order]
    scores[~scored] = np.nan

    def lookup(response: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        wanted = (battles.judgment << 32) | response
        found = np.searchsorted(keys, wanted).clip(0, max(len(keys) - 1, 0))
        result = np.full((len(wanted), scores.shape[1]), np.nan)
        if len(keys):
            hit = keys[found] == wanted
            result[hit] = scores[found[hit]]
        return result

    difference = lookup(battles.first_response) - lookup(battles.second_response)
    difference[swapped] *= -1.0
    return difference


def head_to_head_report(report: dict[str, Any], first_id: int, second_id: int) -> dict[str, Any] | None:
    """Two checkpoints' head-to-head from a stored leaderboard, oriented as asked (None when they never
    met): outcome counts, the decisive share with its interval, the predicted win probability, how many
    more decisive battles would separate them, the same per category and per axis, and the judgment ids
    of representative comparisons of each outcome."""
    pair = next(
        (
            entry
            for entry in report.get("pairs", [])
            if {entry["first"], entry["second"]} == {first_id, second_id}
        ),
        None,
    )
    if pair is None:
        return None
    flip = pair["first"] != first_id

    def oriented(counts: dict[str, int]) -> dict[str, int]:
        if not flip:
            return dict(counts)
        return {**counts, "wins": counts["losses"], "losses": counts["wins"]}

    def summary(counts: dict[str, int]) -> dict[str, Any]:
        share = wilson(counts["wins"], counts["wins"] + counts["losses"])
        total = sum(counts[name] for name in OUTCOMES)
        return {
            **counts,
            # Each outcome's share of all their battles (both-bad included), with its Wilson interval.
            "shares": [
                {"outcome": name, "share": part.share, "low": part.low, "high": part.high}
                for name in OUTCOMES
                for part in (wilson(counts[name], total),)
            ],
            "decisive_share": share.share,
            "decisive_low": share.low,
            "decisive_high": share.high,
            "needed": battles_needed(counts["wins"], counts["losses"]),
        }

    overall = summary(oriented({name: pair[name] for name in OUTCOMES}))
    # Per category, the category fit's prediction where both have a score in it.
    category_elo = {
        row["category"]: {item["id"]: item["elo"] for item in row["checkpoints"]}
        for row in report.get("categories", [])
    }

    def category_predicted(name: str) -> float | None:
        elo = category_elo.get(name, {})
        if first_id not in elo or second_id not in elo:
            return None
        return float(1.0 / (1.0 + 10.0 ** ((elo[second_id] - elo[first_id]) / 400.0)))

    predicted = pair["predicted"]
    examples = pair["examples"]
    if flip:
        predicted = None if predicted is None else 1.0 - predicted
        examples = {**examples, "wins": examples["losses"], "losses": examples["wins"]}
    axes = {}
    for axis, figures in pair["axes"].items():
        axes[axis] = (
            figures
            if not flip
            else {
                **figures,
                "mean": None if figures["mean"] is None else -figures["mean"],
                "low": None if figures["high"] is None else -figures["high"],
                "high": None if figures["low"] is None else -figures["low"],
            }
        )
    return {
        "first": first_id,
        "second": second_id,
        **overall,
        "predicted": predicted,
        "categories": {
            name: {**summary(oriented(counts)), "predicted": category_predicted(name)}
            for name, counts in pair["categories"].items()
        },
        "axes": axes,
        "examples": examples,
    }


# --- storing, requesting, refreshing ---------------------------------------------------------------------


def leaderboard_refresh(*, project_id: int, key: str) -> LeaderboardReport | None:
    """Compute and store one leaderboard (a worker's task). None when the project or the row is gone.
    Idempotent: the same judgments and filters store the same figures."""
    row = LeaderboardReport.objects.filter(project_id=project_id, key=key).select_related("project").first()
    if row is None:
        return None
    high_water_mark = Judgment.objects.aggregate(mark=Max("pk"))["mark"] or 0
    marks = project_marks(row.project)
    started = time.perf_counter()
    try:
        filters = LeaderboardFilters.from_mapping(row.filters)  # e.g. its reference renamed since
        with transaction.atomic():
            report = leaderboard_compute(
                project=row.project, filters=filters, high_water_mark=high_water_mark
            )
    except Exception as error:  # stored for the page to show; the worker logs it
        logger.exception("leaderboard %s of project %s failed", key[:8], project_id)
        LeaderboardReport.objects.filter(pk=row.pk).update(
            status=LeaderboardReport.Status.FAILED,
            error=f"{type(error).__name__}: {error}"[:2000],
            marks=marks,
        )
        raise
    now = timezone.now()
    report["computed_at"] = now.isoformat()
    LeaderboardReport.objects.filter(pk=row.pk).update(
        status=LeaderboardReport.Status.READY,
        report=report,
        computed_at=now,
        seconds=time.perf_counter() - started,
        high_water_mark=high_water_mark,
        marks=marks,
        error="",
    )
    row.refresh_from_db()
    return row


def project_marks(project: Project) -> dict[str, int]:
    """What a project's leaderboards depend on besides their filters: its newest judgment (of ordinary
    comparisons), standing change (suspensions) and review decision (verdicts that win, retired
    comparisons) ids, 0 where none."""

    def newest(queryset: Any) -> int:
        return int(queryset.aggregate(mark=Max("pk"))["mark"] or 0)

    return {
        "judgment": newest(Judgment.objects.filter(comparison__project=project, comparison__is_gold=False)),
        "standing": newest(StandingChange.objects.filter(project=project)),
        "review": newest(ReviewDecision.objects.filter(item__project=project)),
    }


def is_stale(row: LeaderboardReport, marks: dict[str, int]) -> bool:
    """Waiting to be computed, or computed (or failed) before a judgment, suspension or review decision
    it depends on. A failed one is tried again once such data arrives, or by "Compute again"."""
    if row.status == LeaderboardReport.Status.PENDING:
        return True
    return any(marks[name] > int(row.marks.get(name, 0)) for name in marks)


def leaderboard_request(*, project: Project, filters: LeaderboardFilters) -> LeaderboardReport:
    """The project's leaderboard for `filters` as stored, marked as asked for now; when there is none or
    judgments arrived since, its computation is sent to a worker (after this transaction commits). With
    tasks run eagerly (the demo), the returned row is already computed."""
    now = timezone.now()
    try:
        with transaction.atomic():
            row, created = LeaderboardReport.objects.get_or_create(
                project=project, key=filters.key, defaults={"filters": filters.to_dict(), "requested_at": now}
            )
    except IntegrityError:  # another request created it meanwhile, and sent its computation
        row, created = LeaderboardReport.objects.get(project=project, key=filters.key), False
    LeaderboardReport.objects.filter(pk=row.pk).update(requested_at=now)
    # Sent once per need: a new row, or a computed one made stale (it goes back to pending; of two
    # requests racing, only the one whose conditional update changed the row sends). A pending row whose
    # message was lost is picked up by the periodic refresh.
    stale = False
    if row.status != LeaderboardReport.Status.PENDING and is_stale(row, project_marks(project)):
        stale = bool(
            LeaderboardReport.objects.filter(pk=row.pk, status=row.status).update(
                status=LeaderboardReport.Status.PENDING
            )
        )
        row.status = LeaderboardReport.Status.PENDING
    if created or stale:
        _send(row)
        if app.conf.task_always_eager:  # the demo: computed inline already
            row.refresh_from_db()
    return row


def leaderboard_recompute(*, project: Project, filters: LeaderboardFilters) -> LeaderboardReport:
    """Send the computation whatever the row's state (the admin's "Compute again", a failed one)."""
    row, _ = LeaderboardReport.objects.get_or_create(
        project=project,
        key=filters.key,
        defaults={"filters": filters.to_dict(), "requested_at": timezone.now()},
    )
    LeaderboardReport.objects.filter(pk=row.pk).update(status=LeaderboardReport.Status.PENDING, error="")
    _send(row)
    row.refresh_from_db()
    return row


def _send(row: LeaderboardReport) -> None:
    project_id, key = row.project_id, row.key
    transaction.on_commit(
        lambda: task_send("feedback.refresh_leaderboard", kwargs={"project_id": project_id, "key": key})
    )


def leaderboards_refresh() -> int:
    """celery beat: recompute the leaderboards asked for within KEEP_FRESH that judgments made stale (and
    each active project's default leaderboard). Returns how many were computed."""
    since = timezone.now() - KEEP_FRESH
    default = LeaderboardFilters()
    for project in Project.objects.filter(is_active=True).exclude(leaderboards__key=default.key):
        if project_marks(project)["judgment"]:
            LeaderboardReport.objects.get_or_create(
                project=project,
                key=default.key,
                defaults={"filters": default.to_dict(), "requested_at": since},
            )
    computed = 0
    recent = LeaderboardReport.objects.filter(requested_at__gte=since).select_related("project")
    for row in recent.order_by("-requested_at", "pk"):
        if computed == REFRESH_AT_MOST:  # the rest wait for the next run (or are asked for again)
            break
        if is_stale(row, project_marks(row.project)):
            try:
                leaderboard_refresh(project_id=row.project_id, key=row.key)
            except Exception:  # stored on the row; the others go on
                logger.warning("leaderboard %s left failed", row.key[:8])
                continue
            computed += 1
    return computed


def checkpoint_standings(checkpoint: PolicyCheckpoint) -> list[dict[str, Any]]:
    """Where the checkpoint stands on each project's default leaderboard that has it: its raw score, its
    parent's and the difference, and whether the two are separated head to head (None when they never
    met)."""
    result = []
    rows = (
        LeaderboardReport.objects.filter(key=LeaderboardFilters().key, report__isnull=False)
        .select_related("project")
        .order_by("project__name")
    )
    for row in rows:
        assert row.report is not None
        entries = {entry["id"]: entry for entry in row.report["checkpoints"]}
        own = entries.get(checkpoint.pk)
        if own is None:
            continue
        parent = entries.get(checkpoint.parent_id) if checkpoint.parent_id else None
        pair = head_to_head_report(row.report, checkpoint.pk, parent["id"]) if parent else None
        raw, parent_raw = own["raw"], parent["raw"] if parent else None
        result.append(
            {
                "project": row.project,
                "computed_at": row.computed_at,
                "score": raw,
                "parent": parent_raw,
                "difference": raw["elo"] - parent_raw["elo"] if raw and parent_raw else None,
                "head_to_head": pair,
            }
        )
    return result


def export_leaderboard(
    options: ExportOptions, quality: ExportQuality, *, high_water_mark: int
) -> dict[str, Any]:
    """The leaderboard of the judgments an export selected (its filters, its quality decisions, its
    mark), for its dataset card: default fit settings."""
    judgments = judgments_selected(options, high_water_mark=high_water_mark, quality=quality)
    filters = LeaderboardFilters(**{name: getattr(options, name) for name in EXPORT_FILTERS})
    projects = (
        Project.objects.filter(slug__in=options.projects) if options.projects else Project.objects.all()
    )
    return leaderboard_of_judgments(
        judgments,
        projects=list(projects.values_list("pk", flat=True)),
        filters=filters,
        decided=_decided(quality, wins=options.adjudicated_wins),
        axes=[],
        is_ranking=projects.filter(comparison_mode=Project.ComparisonMode.RANKING).exists(),
        high_water_mark=high_water_mark,
    )

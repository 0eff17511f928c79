"""Every statistic of a project's quality page, from the project's judgments as arrays.

`project_report` gives the project's figures (alpha per measure, per prompt category and over time,
the kappa of every pair of annotators, position bias); `annotator_reports` gives each annotator's
(gold accuracy, agreement with the others, position bias, speed, habits) and the anomalies they show,
each with its reason in plain words. Both return plain data that `feedback.services.quality` stores.

Measures:
- choice, nominal: which response was preferred (or tie, both bad); for k-wise rankings, which position
  was ranked first alone (or a tie for first).
- strength, ordinal: the signed strength of a pairwise preference, A much better … tie … B much better
  (both bad is not on that scale and is left out).
- ranking, nominal: each pair of responses of a k-wise ranking is a unit, its value which of the two
  was ranked higher (or a tie): "rankings by their pairwise orders".
- each rating axis, interval: the score of a response on the axis; the unit is the response in its
  comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from feedback.quality.agreement import (
    Alpha,
    cohen_kappa_pairs,
    krippendorff_alpha,
    majority_agreement,
    nominal_alpha_prefixes,
)
from feedback.quality.proportions import position_bias, wilson

CHOICES = ("a", "b", "tie", "both_bad", "ranked")
A, B, TIE, BOTH_BAD, RANKED = range(5)
NOT_TIMED = -1
# Pairs of annotators need this many shared comparisons for a kappa worth showing.
KAPPA_MIN_SHARED = 20
# Alpha of all judgments up to each of this many moments, evenly spaced over the judgments' times.
TIMELINE_POINTS = 12
# Anomaly rules. Reading: faster than this many characters a second is faster than the responses can
# be read (skimming runs at about twice the 20–25 of careful reading).
READING_CHARACTERS_PER_SECOND = 50
TOO_FAST_SHARE = 0.5
MIN_TIMED = 10
ONE_CHOICE_SHARE = 0.9
MIN_JUDGMENTS = 20
BIAS_P_VALUE = 0.001
BIAS_MIN_DEVIATION = 0.25  # |share − chance| at least this, besides being significant
LOW_AGREEMENT_KAPPA = 0.2
MIN_COMPARED = 20


@dataclass
class JudgmentArrays:
    """A project's judgments (gold items left out), one element per judgment.

    `first` is the display position ranked first alone (pairwise: 0 for A, 1 for B), −1 when none is
    (a tie for first, both bad); `size` how many responses were shown; `time_ms` the time on the page
    (−1 when not recorded); `characters` the length of the responses shown; `ranks` (k-wise projects
    only) a rank per position, 1 best; `sequence` orders judgments in time (their ids); `category` an
    index into the report's category names.
    """

    comparison: npt.NDArray[np.int64]
    annotator: npt.NDArray[np.int64]
    choice: npt.NDArray[np.int8]
    strength: npt.NDArray[np.int16]
    first: npt.NDArray[np.int8]
    size: npt.NDArray[np.int8]
    time_ms: npt.NDArray[np.int64]
    characters: npt.NDArray[np.int64]
    category: npt.NDArray[np.int16]
    sequence: npt.NDArray[np.int64]
    ranks: npt.NDArray[np.int8] | None = None

    def __len__(self) -> int:
        return len(self.comparison)


@dataclass
class RatingArrays:
    """Ratings, one element per score: the rated response in its comparison (`unit`), the axis (an index
    into the report's axis keys), who gave it, and the score."""

    unit: npt.NDArray[np.int64]
    axis: npt.NDArray[np.int16]
    annotator: npt.NDArray[np.int64]
    score: npt.NDArray[np.int64]


def empty_ratings() -> RatingArrays:
    return RatingArrays(
        unit=np.zeros(0, np.int64),
        axis=np.zeros(0, np.int16),
        annotator=np.zeros(0, np.int64),
        score=np.zeros(0, np.int64),
    )


def _alpha_json(alpha: Alpha) -> dict[str, Any]:
    return {"value": alpha.value, "units": alpha.units, "values": alpha.values}


def choice_values(table: JudgmentArrays, *, is_ranking: bool) -> npt.NDArray[np.int64]:
    """The nominal choice: the choice code (pairwise) or the position ranked first alone, −1 for a tie for
    first (k-wise)."""
    return (table.first if is_ranking else table.choice).astype(np.int64)


def strength_values(table: JudgmentArrays) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Which judgments are on the signed-strength scale, and their values (A negative, B positive, tie 0;
    a preference without a strength question counts 1)."""
    on_scale = np.isin(table.choice, (A, B, TIE))
    magnitude = np.maximum(table.strength.astype(np.int64), 1)
    signed = np.where(table.choice == A, -magnitude, np.where(table.choice == B, magnitude, 0))
    return on_scale, signed


def pairwise_orders(table: JudgmentArrays) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Units and values of "rankings by their pairwise orders": for each judgment and each pair of
    positions i < j, a unit (comparison, i, j) valued −1 (i ranked higher), 0 (tied) or 1."""
    assert table.ranks is not None
    width = table.ranks.shape[1]
    units, values = [], []
    for i in range(width):
        for j in range(i + 1, width):
            shown = table.size > j
            units.append((table.comparison[shown] * 64 + i * 8 + j).astype(np.int64))
            values.append(np.sign(table.ranks[shown, i].astype(np.int64) - table.ranks[shown, j]))
    return np.concatenate(units), np.concatenate(values)


def alpha_by_measure(
    table: JudgmentArrays, ratings: RatingArrays, *, axes: list[str], is_ranking: bool
) -> dict[str, dict[str, Any]]:
    """Krippendorff's alpha of each measure (see the module's docstring); rating axes by key."""
    result: dict[str, dict[str, Any]] = {
        "choice": _alpha_json(
            krippendorff_alpha(table.comparison, choice_values(table, is_ranking=is_ranking), level="nominal")
        )
    }
    if is_ranking:
        units, values = pairwise_orders(table)
        result["ranking"] = _alpha_json(krippendorff_alpha(units, values, level="nominal"))
    else:
        on_scale, signed = strength_values(table)
        result["strength"] = _alpha_json(
            krippendorff_alpha(table.comparison[on_scale], signed[on_scale], level="ordinal")
        )
    for index, key in enumerate(axes):
        scored = ratings.axis == index
        result[f"axis:{key}"] = _alpha_json(
            krippendorff_alpha(ratings.unit[scored], ratings.score[scored], level="interval")
        )
    return result


def project_report(
    table: JudgmentArrays,
    ratings: RatingArrays,
    *,
    axes: list[str],
    categories: list[str],
    is_ranking: bool,
    responses: int,
) -> dict[str, Any]:
    """The project's figures, as JSON-ready data. `responses` is how many responses a comparison shows."""
    choice = choice_values(table, is_ranking=is_ranking)
    by_category = {}
    for index, name in enumerate(categories):
        mine = table.category == index
        if mine.any():
            by_category[name] = _alpha_json(
                krippendorff_alpha(table.comparison[mine], choice[mine], level="nominal")
            )
    timeline = []
    if len(table):
        order = np.argsort(table.sequence, kind="stable")
        cuts = np.unique(np.linspace(0, len(order), TIMELINE_POINTS + 1).astype(np.int64)[1:])
        prefixes = nominal_alpha_prefixes(table.comparison[order], choice[order], cuts)
        for cut, alpha in zip(cuts, prefixes, strict=True):
            timeline.append(
                {"last": int(table.sequence[order[cut - 1]]), "judgments": int(cut), **_alpha_json(alpha)}
            )
    decisive = table.first >= 0
    bias = position_bias(int((table.first == 0).sum()), int(decisive.sum()), expected=1 / responses)
    kappas = cohen_kappa_pairs(table.comparison, table.annotator, choice, min_shared=KAPPA_MIN_SHARED)
    return {
        "judgments": len(table),
        "comparisons": len(np.unique(table.comparison)),
        "annotators": len(np.unique(table.annotator)),
        "alpha": alpha_by_measure(table, ratings, axes=axes, is_ranking=is_ranking),
        "alpha_by_category": by_category,
        "alpha_over_time": timeline,
        "kappa": {
            "min_shared": KAPPA_MIN_SHARED,
            "pairs": [
                {
                    "first": pair.first,
                    "second": pair.second,
                    "shared": pair.shared,
                    "agreement": pair.agreement,
                    "kappa": pair.kappa,
                }
                for pair in kappas
            ],
        },
        "position_bias": vars(bias),
    }


@dataclass(frozen=True)
class Anomaly:
    code: str  # too_fast, one_choice, position_bias, low_agreement, low_gold_accuracy
    reason: str


@dataclass
class AnnotatorReport:
    annotator: int
    judgments: int = 0
    gold_answered: int = 0
    gold_correct: int = 0
    gold_accuracy: float | None = None
    gold_low: float | None = None
    gold_high: float | None = None
    majority_compared: int = 0
    majority_agreed: int = 0
    majority_kappa: float | None = None
    first_chosen: int = 0
    decisive: int = 0
    first_share: float | None = None
    first_p_value: float | None = None
    timed: int = 0
    median_seconds: float | None = None
    too_fast: int = 0
    top_choice: str = ""
    top_choice_share: float | None = None
    anomalies: list[Anomaly] = field(default_factory=list)


def _percent(share: float) -> str:
    return f"{share:.0%}"


def annotator_reports(
    table: JudgmentArrays,
    gold: dict[int, tuple[int, int]],
    *,
    is_ranking: bool,
    responses: int,
    gold_min_answers: int,
    gold_warn_accuracy: float,
) -> list[AnnotatorReport]:
    """One report per annotator who judged or answered gold, ordered by annotator id. `gold` maps an
    annotator to (gold answered, correct)."""
    choice = choice_values(table, is_ranking=is_ranking)
    people = sorted(set(np.unique(table.annotator).tolist()) | set(gold))
    reports = {person: AnnotatorReport(annotator=person) for person in people}
    if len(table):
        for entry in majority_agreement(table.comparison, table.annotator, choice):
            report = reports[entry.annotator]
            report.majority_compared, report.majority_agreed, report.majority_kappa = (
                entry.compared,
                entry.agreed,
                entry.kappa,
            )
    order = np.argsort(table.annotator, kind="stable")
    bounds = np.searchsorted(table.annotator[order], [*people, np.iinfo(np.int64).max])
    chance = 1 / responses
    for index, person in enumerate(people):
        report = reports[person]
        rows = order[bounds[index] : bounds[index + 1]]
        report.judgments = len(rows)
        if len(rows):
            firsts = table.first[rows]
            bias = position_bias(int((firsts == 0).sum()), int((firsts >= 0).sum()), expected=chance)
            report.first_chosen, report.decisive = bias.first, bias.decisive
            report.first_share, report.first_p_value = bias.share, bias.p_value
            times = table.time_ms[rows]
            timed = times != NOT_TIMED
            report.timed = int(timed.sum())
            if report.timed:
                report.median_seconds = float(np.median(times[timed])) / 1000
                reading_ms = table.characters[rows][timed] * 1000 / READING_CHARACTERS_PER_SECOND
                report.too_fast = int((times[timed] < reading_ms).sum())
            values, counts = np.unique(choice[rows], return_counts=True)
            top = int(np.argmax(counts))
            report.top_choice = _choice_name(int(values[top]), is_ranking=is_ranking)
            report.top_choice_share = float(counts[top] / len(rows))
        answered, correct = gold.get(person, (0, 0))
        accuracy = wilson(correct, answered)
        report.gold_answered, report.gold_correct = answered, correct
        report.gold_accuracy, report.gold_low, report.gold_high = accuracy.share, accuracy.low, accuracy.high
        report.anomalies = _anomalies(
            report, chance=chance, gold_min_answers=gold_min_answers, gold_warn_accuracy=gold_warn_accuracy
        )
    return [reports[person] for person in people]


def _choice_name(value: int, *, is_ranking: bool) -> str:
    if is_ranking:
        return "tie for first" if value < 0 else f"{chr(ord('A') + value)} first"
    return {A: "A", B: "B", TIE: "tie", BOTH_BAD: "both bad"}.get(value, "?")


def _anomalies(
    report: AnnotatorReport, *, chance: float, gold_min_answers: int, gold_warn_accuracy: float
) -> list[Anomaly]:
    found = []
    if report.timed >= MIN_TIMED and report.too_fast / report.timed >= TOO_FAST_SHARE:
        found.append(
            Anomaly(
                "too_fast",
                f"{_percent(report.too_fast / report.timed)} of {report.timed} timed judgments came faster than "
                f"the responses can be read (at {READING_CHARACTERS_PER_SECOND} characters a second); median "
                f"{report.median_seconds:.1f} s.",
            )
        )
    if report.judgments >= MIN_JUDGMENTS and (report.top_choice_share or 0) >= ONE_CHOICE_SHARE:
        found.append(
            Anomaly(
                "one_choice",
                f"Chose {report.top_choice} in {_percent(report.top_choice_share or 0)} of {report.judgments} judgments.",
            )
        )
    if (
        report.decisive >= MIN_JUDGMENTS
        and report.first_p_value is not None
        and report.first_p_value < BIAS_P_VALUE
        and abs((report.first_share or 0) - chance) >= BIAS_MIN_DEVIATION
    ):
        found.append(
            Anomaly(
                "position_bias",
                f"Chose the response shown first in {_percent(report.first_share or 0)} of {report.decisive} "
                f"judgments with a clear winner, where chance is {_percent(chance)} (p = {report.first_p_value:.1g}); "
                "the display order is random, so no real preference explains it.",
            )
        )
    if (
        report.majority_compared >= MIN_COMPARED
        and report.majority_kappa is not None
        and report.majority_kappa < LOW_AGREEMENT_KAPPA
    ):
        found.append(
            Anomaly(
                "low_agreement",
                f"Agreed with the majority of the other annotators in {report.majority_agreed} of "
                f"{report.majority_compared} comparisons (kappa {report.majority_kappa:.2f}, below {LOW_AGREEMENT_KAPPA}).",
            )
        )
    if report.gold_answered >= gold_min_answers and (report.gold_accuracy or 0) < gold_warn_accuracy:
        found.append(
            Anomaly(
                "low_gold_accuracy",
                f"Gold accuracy {_percent(report.gold_accuracy or 0)} ({report.gold_correct} of "
                f"{report.gold_answered}; 95% interval {_percent(report.gold_low or 0)}–{_percent(report.gold_high or 0)}) "
                f"is below the project's {_percent(gold_warn_accuracy)}.",
            )
        )
    return found

"""feedback.quality.report on hand-built arrays: each measure's alpha is the package's on the same
values, and each anomaly fires on its behaviour and not on a careful annotator's."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest

from feedback.quality.report import (
    BOTH_BAD,
    TIE,
    A,
    B,
    JudgmentArrays,
    RatingArrays,
    annotator_reports,
    empty_ratings,
    project_report,
)

CATEGORIES = ["list", "explain"]


def table(rows: list[tuple[int, int, int, int]], **overrides) -> JudgmentArrays:
    """(comparison, annotator, choice, strength) rows of a pairwise project."""
    data = np.array(rows, dtype=np.int64).reshape(-1, 4)
    choice = data[:, 2].astype(np.int8)
    count = len(data)
    arrays = {
        "comparison": data[:, 0],
        "annotator": data[:, 1],
        "choice": choice,
        "strength": data[:, 3].astype(np.int16),
        "first": np.where(choice == A, 0, np.where(choice == B, 1, -1)).astype(np.int8),
        "size": np.full(count, 2, dtype=np.int8),
        "time_ms": np.full(count, 30_000, dtype=np.int64),
        "characters": np.full(count, 600, dtype=np.int64),
        "category": (data[:, 0] % 2).astype(np.int16),
        "sequence": np.arange(count, dtype=np.int64),
    }
    arrays.update(overrides)
    return JudgmentArrays(**arrays)


def _reliability(units, coders, values) -> np.ndarray:
    """The package's coders × units matrix of the same answers."""
    unit_index = {unit: index for index, unit in enumerate(sorted(set(units)))}
    coder_index = {coder: index for index, coder in enumerate(sorted(set(coders)))}
    matrix = np.full((len(coder_index), len(unit_index)), np.nan)
    for unit, coder, value in zip(units, coders, values, strict=True):
        matrix[coder_index[coder], unit_index[unit]] = value
    return matrix


def _crowd(seed: int) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    rows = []
    for comparison in range(120):
        truth = int(rng.integers(0, 2))
        for annotator in rng.choice(6, size=3, replace=False):
            choice = truth if rng.random() < 0.75 else int(rng.integers(0, 4))
            strength = int(rng.integers(1, 4)) if choice in (A, B) else 0
            rows.append((comparison, int(annotator), choice, strength))
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_choice_and_strength_alphas_are_the_packages_on_the_same_values(seed):
    rows = _crowd(seed)
    report = project_report(
        table(rows), empty_ratings(), axes=[], categories=CATEGORIES, is_ranking=False, responses=2
    )
    units, coders, choices, strengths = (list(column) for column in zip(*rows, strict=True))
    nominal = krippendorff.alpha(
        reliability_data=_reliability(units, coders, choices), level_of_measurement="nominal"
    )
    assert report["alpha"]["choice"]["value"] == pytest.approx(nominal, abs=1e-12)
    # Signed strength: A by s is −s, B by s is +s, a tie 0; both bad is off the scale.
    signed = [(-s if c == A else s if c == B else 0) for c, s in zip(choices, strengths, strict=True)]
    kept = [index for index, c in enumerate(choices) if c != BOTH_BAD]
    matrix = _reliability([units[i] for i in kept], [coders[i] for i in kept], [signed[i] for i in kept])
    ordinal = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    assert report["alpha"]["strength"]["value"] == pytest.approx(ordinal, abs=1e-12)
    for index, name in enumerate(CATEGORIES):
        mine = [i for i, unit in enumerate(units) if unit % 2 == index]
        expected = krippendorff.alpha(
            reliability_data=_reliability(
                [units[i] for i in mine], [coders[i] for i in mine], [choices[i] for i in mine]
            ),
            level_of_measurement="nominal",
        )
        assert report["alpha_by_category"][name]["value"] == pytest.approx(expected, abs=1e-12)
    # The timeline ends with the whole project, and each point covers more judgments than the one before.
    timeline = report["alpha_over_time"]
    assert timeline[-1]["judgments"] == len(rows)
    assert timeline[-1]["value"] == pytest.approx(nominal)
    assert [point["judgments"] for point in timeline] == sorted({point["judgments"] for point in timeline})


def test_rating_axes_are_interval_alphas_per_axis():
    rng = np.random.default_rng(4)
    units, axes, people, scores = [], [], [], []
    for unit in range(80):
        quality = int(rng.integers(1, 6))
        for person in rng.choice(5, size=3, replace=False):
            for axis in (0, 1):
                units.append(unit)
                axes.append(axis)
                people.append(int(person))
                scores.append(int(np.clip(quality + rng.integers(-1, 2) * axis, 1, 5)))
    ratings = RatingArrays(
        unit=np.array(units),
        axis=np.array(axes, dtype=np.int16),
        annotator=np.array(people),
        score=np.array(scores),
    )
    report = project_report(
        table(_crowd(1)),
        ratings,
        axes=["helpfulness", "tone"],
        categories=CATEGORIES,
        is_ranking=False,
        responses=2,
    )
    for index, key in enumerate(["helpfulness", "tone"]):
        mine = [i for i, axis in enumerate(axes) if axis == index]
        expected = krippendorff.alpha(
            reliability_data=_reliability(
                [units[i] for i in mine], [people[i] for i in mine], [scores[i] for i in mine]
            ),
            level_of_measurement="interval",
        )
        assert report["alpha"][f"axis:{key}"]["value"] == pytest.approx(expected, abs=1e-12)
    assert report["alpha"]["axis:helpfulness"]["value"] == 1.0  # the first axis has no noise


def test_rankings_agree_by_their_pairwise_orders():
    # Two annotators rank 3 responses of each comparison; they agree on comparison 1 and swap two on 2.
    ranks = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3], [2, 1, 3]], dtype=np.int8)
    arrays = table(
        [(1, 1, 4, 0), (1, 2, 4, 0), (2, 1, 4, 0), (2, 2, 4, 0)],
        ranks=ranks,
        first=np.array([0, 0, 0, 1], dtype=np.int8),
        size=np.full(4, 3, dtype=np.int8),
    )
    report = project_report(
        arrays, empty_ratings(), axes=[], categories=CATEGORIES, is_ranking=True, responses=3
    )
    # Units (comparison, i, j): comparison 1 agrees on all 3 pairs; comparison 2 disagrees on (0, 1).
    units = [(1, 0, 1), (1, 0, 2), (1, 1, 2), (2, 0, 1), (2, 0, 2), (2, 1, 2)]
    values = [[-1, -1], [-1, -1], [-1, -1], [-1, 1], [-1, -1], [-1, -1]]
    matrix = np.array(values, dtype=float).T
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert len(units) == matrix.shape[1]
    assert report["alpha"]["ranking"]["value"] == pytest.approx(expected)
    assert "strength" not in report["alpha"]


def _one_person(choices: list[int], **overrides) -> list:
    rows = [(index, 9, choice, 1 if choice in (A, B) else 0) for index, choice in enumerate(choices)]
    return annotator_reports(
        table(rows, **overrides),
        {},
        is_ranking=False,
        responses=2,
        gold_min_answers=10,
        gold_warn_accuracy=0.8,
    )


def test_a_careful_annotator_shows_no_anomaly():
    rng = np.random.default_rng(0)
    (report,) = _one_person([int(choice) for choice in rng.choice([A, B, TIE], size=60, p=[0.45, 0.45, 0.1])])
    assert report.anomalies == []
    assert report.median_seconds == 30.0


def test_answering_faster_than_reading_is_flagged():
    (report,) = _one_person([A, B] * 15, time_ms=np.full(30, 4_000, dtype=np.int64))
    # 600 characters take 12 s at 50 a second: 4 s is too fast, every time.
    assert [anomaly.code for anomaly in report.anomalies] == ["too_fast"]
    assert report.anomalies[0].reason.startswith(
        "100% of 30 timed judgments came faster than the responses can be read"
    )


def test_always_left_is_one_choice_and_position_bias():
    (report,) = _one_person([A] * 40)
    assert [anomaly.code for anomaly in report.anomalies] == ["one_choice", "position_bias"]
    assert report.anomalies[0].reason == "Chose A in 100% of 40 judgments."
    assert report.first_p_value == pytest.approx(2 * 0.5**40)


def test_low_gold_accuracy_is_flagged_with_its_interval():
    rows = [(index, 9, A if index % 2 else B, 1) for index in range(30)]
    (report,) = annotator_reports(
        table(rows), {9: (20, 9)}, is_ranking=False, responses=2, gold_min_answers=10, gold_warn_accuracy=0.8
    )
    assert [anomaly.code for anomaly in report.anomalies] == ["low_gold_accuracy"]
    assert report.anomalies[0].reason == (
        "Gold accuracy 45% (9 of 20; 95% interval 26%–66%) is below the project's 80%."
    )


def test_a_contrarian_has_low_agreement_with_the_others():
    rows = []
    for comparison in range(40):
        truth = comparison % 2
        rows += [(comparison, 1, truth, 1), (comparison, 2, truth, 1), (comparison, 3, 1 - truth, 1)]
    reports = {
        report.annotator: report
        for report in annotator_reports(
            table(rows), {}, is_ranking=False, responses=2, gold_min_answers=10, gold_warn_accuracy=0.8
        )
    }
    assert [anomaly.code for anomaly in reports[3].anomalies] == ["low_agreement"]
    assert reports[3].majority_kappa == pytest.approx(-1.0)
    assert reports[1].anomalies == reports[2].anomalies == []

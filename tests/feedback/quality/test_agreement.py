"""feedback.quality.agreement on plain arrays: alpha against the `krippendorff` package and Krippendorff's
own worked example, kappa against a textbook example and a direct count, the leave-one-out majority."""

from __future__ import annotations

import itertools

import krippendorff
import numpy as np
import pytest

from feedback.quality.agreement import (
    LEVELS,
    cohen_kappa_pairs,
    krippendorff_alpha,
    majority_agreement,
    nominal_alpha_prefixes,
)

NAN = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with missing values:
# 4 coders (rows) × 12 units (columns).
WORKED_EXAMPLE = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)


def _answers(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(units, coders, values) of a coders × units matrix, one element per present answer."""
    coders, units = np.nonzero(~np.isnan(matrix))
    return units, coders, matrix[coders, units]


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_alpha_reproduces_krippendorffs_worked_example(level, published):
    units, _, values = _answers(WORKED_EXAMPLE)
    alpha = krippendorff_alpha(units, values, level=level)
    assert round(alpha.value, 3) == published
    # Unit 12 has one value only: 11 pairable units, 40 pairable values (the paper's n).
    assert (alpha.units, alpha.values) == (11, 40)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("seed", range(6))
def test_alpha_equals_the_krippendorff_package_on_the_same_data(level, seed):
    rng = np.random.default_rng(seed)
    coders, unit_count, domain = 3 + seed, 30 + 20 * seed, 2 + seed
    truth = rng.integers(0, domain, size=unit_count)
    # Mostly agreeing coders, so alpha is far from 0 and a wrong distance would show.
    matrix = np.where(
        rng.random((coders, unit_count)) < 0.7, truth, rng.integers(0, domain, (coders, unit_count))
    )
    matrix = matrix.astype(float)
    matrix[rng.random(matrix.shape) < 0.35] = NAN
    units, _, values = _answers(matrix)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
    assert krippendorff_alpha(units, values, level=level).value == pytest.approx(expected, abs=1e-12)


def test_alpha_on_values_that_are_not_consecutive_integers_equals_the_package():
    matrix = np.array([[-3.0, 0.5, 7.0, NAN, -3.0], [-3.0, 0.5, 0.5, 7.0, 7.0], [NAN, 7.0, 7.0, 7.0, -3.0]])
    units, _, values = _answers(matrix)
    for level in LEVELS:
        expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
        assert krippendorff_alpha(units, values, level=level).value == pytest.approx(expected, abs=1e-12)


def test_alpha_ignores_the_order_and_the_ids_of_units():
    units, _, values = _answers(WORKED_EXAMPLE)
    order = np.random.default_rng(1).permutation(len(units))
    relabelled = (units * 7919 + 100_003)[order]
    assert krippendorff_alpha(relabelled, values[order], level="ordinal").value == pytest.approx(
        krippendorff_alpha(units, values, level="ordinal").value
    )


@pytest.mark.parametrize(
    ("units", "values", "why"),
    [
        ([], [], "no answers"),
        ([1, 2, 3], [1, 2, 1], "no unit with two answers"),
        ([1, 1, 2, 2], [4, 4, 4, 4], "every value equal: nothing to correct for"),
    ],
)
def test_alpha_is_undefined_without_pairable_disagreement_possible(units, values, why):
    assert krippendorff_alpha(np.array(units), np.array(values), level="nominal").value is None, why


def test_perfect_agreement_is_one_and_systematic_disagreement_is_below_zero():
    assert krippendorff_alpha([1, 1, 2, 2, 3, 3], [0, 0, 1, 1, 0, 0], level="nominal").value == 1.0
    assert krippendorff_alpha([1, 1, 2, 2], [0, 1, 0, 1], level="nominal").value < 0


def test_alpha_refuses_bad_input():
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([1], [1], level="ratio")
    with pytest.raises(ValueError, match="same length"):
        krippendorff_alpha([1, 2], [1], level="nominal")


@pytest.mark.parametrize("seed", range(5))
def test_alpha_of_every_prefix_equals_computing_each_prefix_alone(seed):
    rng = np.random.default_rng(seed)
    size = 3_000
    units = rng.integers(0, 700, size=size)  # units answered 0 to many times, spread over the prefixes
    values = rng.choice([2, 5, 7, 11], size=size, p=[0.5, 0.3, 0.15, 0.05])
    values[units % 5 == 0] = 5  # some units agree fully
    cuts = [0, 1, 2, 17, 400, 401, 1500, 2999, 3000]
    prefixes = nominal_alpha_prefixes(units, values, cuts)
    for cut, alpha in zip(cuts, prefixes, strict=True):
        alone = krippendorff_alpha(units[:cut], values[:cut], level="nominal")
        assert (alpha.units, alpha.values) == (alone.units, alone.values), cut
        if alone.value is None:
            assert alpha.value is None, cut
        else:
            assert alpha.value == pytest.approx(alone.value, abs=1e-12), cut
    assert prefixes[-1].value is not None


def test_kappa_reproduces_the_textbook_example():
    # 50 items judged yes/no by two raters: both yes 20, both no 15, yes/no 5, no/yes 10.
    # p_o = 0.7, p_e = 0.5 · 0.6 + 0.5 · 0.4 = 0.5, so kappa = 0.4.
    first = ["yes"] * 20 + ["no"] * 15 + ["yes"] * 5 + ["no"] * 10
    second = ["yes"] * 20 + ["no"] * 15 + ["no"] * 5 + ["yes"] * 10
    units = np.repeat(np.arange(50), 2)
    annotators = np.tile([7, 3], 50)
    values = np.array([value for pair in zip(first, second, strict=True) for value in pair])
    (pair,) = cohen_kappa_pairs(units, annotators, values)
    assert (pair.first, pair.second, pair.shared) == (3, 7, 50)
    assert pair.agreement == pytest.approx(0.7)
    assert pair.kappa == pytest.approx(0.4)


def _kappa_by_counting(
    answers: dict[int, dict[int, int]], first: int, second: int
) -> tuple[int, float | None]:
    shared = sorted(set(answers[first]) & set(answers[second]))
    pairs = [(answers[first][unit], answers[second][unit]) for unit in shared]
    categories = sorted({value for pair in pairs for value in pair})
    observed = sum(a == b for a, b in pairs) / len(pairs)
    chance = (
        sum(sum(a == c for a, _ in pairs) * sum(b == c for _, b in pairs) for c in categories)
        / len(pairs) ** 2
    )
    return len(pairs), None if chance == 1 else (observed - chance) / (1 - chance)


def test_kappa_of_every_pair_equals_counting_each_pair_by_hand():
    rng = np.random.default_rng(5)
    units, annotators, values = [], [], []
    for unit in range(400):
        for annotator in rng.choice(9, size=rng.integers(1, 5), replace=False):
            units.append(unit)
            annotators.append(int(annotator) * 10)
            values.append(int(rng.integers(0, 3)) if annotator % 3 else unit % 3)
    answers: dict[int, dict[int, int]] = {}
    for unit, annotator, value in zip(units, annotators, values, strict=True):
        answers.setdefault(annotator, {})[unit] = value
    pairs = cohen_kappa_pairs(np.array(units), np.array(annotators), np.array(values), min_shared=30)
    expected = {}
    for first, second in itertools.combinations(sorted(answers), 2):
        shared, kappa = _kappa_by_counting(answers, first, second)
        if shared >= 30:
            expected[(first, second)] = (shared, kappa)
    assert {(pair.first, pair.second): (pair.shared, pytest.approx(pair.kappa)) for pair in pairs} == expected
    assert 5 < len(expected) < 36  # some of the 36 pairs share enough units, some do not


def test_kappa_is_undefined_when_both_always_give_the_same_single_value():
    (pair,) = cohen_kappa_pairs([1, 1, 2, 2], [1, 2, 1, 2], ["a", "a", "a", "a"])
    assert pair.kappa is None
    assert pair.agreement == 1.0


def test_majority_agreement_leaves_each_annotator_out_of_their_own_majority():
    # Unit 1: 1 says a, 2 says a, 3 says b. Unit 2: 1 and 2 disagree, 3 alone has no strict majority of
    # others. Unit 3: only annotator 1.
    units = [1, 1, 1, 2, 2, 2, 3]
    annotators = [1, 2, 3, 1, 2, 3, 1]
    values = ["a", "a", "b", "a", "b", "b", "a"]
    result = {
        entry.annotator: (entry.compared, entry.agreed)
        for entry in majority_agreement(units, annotators, values)
    }
    # Annotator 1: unit 1 others {a, b} tie → not compared; unit 2 others {b, b} → b, disagrees.
    # Annotator 2: unit 1 others {a, b} tie; unit 2 others {a, b} tie. Annotator 3: unit 1 others {a, a}
    # → a, disagrees; unit 2 others {a, b} tie.
    assert result == {1: (1, 0), 2: (0, 0), 3: (1, 0)}


def test_majority_agreement_counts_agreement():
    units = [1, 1, 1, 2, 2, 2]
    annotators = [1, 2, 3, 1, 2, 3]
    values = [0, 0, 0, 1, 1, 0]
    result = {
        entry.annotator: (entry.compared, entry.agreed, entry.rate)
        for entry in majority_agreement(units, annotators, values)
    }
    # Unit 1: everyone agrees with the two others. Unit 2: 1 and 2 see others tied; 3 sees {1, 1}.
    assert result == {1: (1, 1, 1.0), 2: (1, 1, 1.0), 3: (2, 1, 0.5)}
    kappas = {entry.annotator: entry.kappa for entry in majority_agreement(units, annotators, values)}
    # 3 answered 0 twice against majorities 0 and 1: agreement 1/2, chance (2·1 + 0·1)/4 = 1/2, kappa 0.
    # 1 and 2 agree once with a majority that never varies: chance is 1, kappa undefined.
    assert kappas == {1: None, 2: None, 3: 0.0}

"""Chance-corrected agreement: Krippendorff's alpha, Cohen's kappa per pair of annotators, and each
annotator's agreement with the majority of the others.

Data comes as parallel arrays, one element per judgment (or per rated response, or per pair of a
ranking): the unit it is about, who answered, the value. Missing answers are simply absent, which is
what makes these fast on a million judgments: nothing is ever laid out as a units × annotators matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import sparse

Level = Literal["nominal", "ordinal", "interval"]
LEVELS: tuple[Level, ...] = ("nominal", "ordinal", "interval")


@dataclass(frozen=True)
class Alpha:
    """Krippendorff's alpha with what it was computed from.

    `value` is None when alpha is undefined: fewer than two pairable values, or every pairable value equal
    (no expected disagreement to correct for)."""

    value: float | None
    units: int  # units with at least two values (pairable)
    values: int  # pairable values, Krippendorff's n


# Integers spanning at most this many times their count (plus a margin) are numbered by counting, in
# linear time: ids of a project's comparisons, codes of choices, scores. Anything else is sorted.
DENSE_SPAN_FACTOR = 4


def _codes(values: npt.ArrayLike) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.intp]]:
    """The sorted distinct values and each element's index among them (what `np.unique(...,
    return_inverse=True)` gives, without its sort when the values are integers in a compact range)."""
    array = np.asarray(values).reshape(-1)
    if array.dtype.kind in "iu" and len(array):
        low, high = int(array.min()), int(array.max())
        span = high - low + 1
        if span <= DENSE_SPAN_FACTOR * len(array) + 1024:
            offsets = (array - low).astype(np.intp)
            present = np.zeros(span, dtype=bool)
            present[offsets] = True
            index = np.cumsum(present, dtype=np.intp) - 1
            return np.flatnonzero(present).astype(array.dtype) + low, index[offsets]
    domain, codes = np.unique(array, return_inverse=True)
    return domain, codes.reshape(-1)


def _value_counts(
    units: npt.ArrayLike, values: npt.ArrayLike
) -> tuple[npt.NDArray[np.generic], sparse.csr_array]:
    """The value domain and a sparse units × values matrix of how many answers gave each value."""
    _, unit_codes = _codes(units)
    domain, value_codes = _codes(values)
    counts = sparse.csr_array(
        (np.ones(len(unit_codes), dtype=np.float64), (unit_codes, value_codes)),
        shape=(int(unit_codes.max(initial=-1)) + 1, len(domain)),
    )
    return domain, counts


def coincidences(counts: sparse.csr_array) -> npt.NDArray[np.float64]:
    """Krippendorff's coincidence matrix o_ck = Σ_u (n_uc n_uk − [c = k] n_uc) / (m_u − 1) over pairable
    units (m_u ≥ 2 values), as one sparse product: no units × values × values tensor."""
    per_unit = np.asarray(counts.sum(axis=1)).reshape(-1)
    pairable = per_unit >= 2
    counts = counts[pairable]
    weights = 1.0 / (per_unit[pairable] - 1.0)
    weighted = sparse.diags_array(weights) @ counts
    products = (weighted.T @ counts).toarray()
    return products - np.diag(np.asarray(weighted.sum(axis=0)).reshape(-1))


def _distances(domain: npt.NDArray[np.generic], totals: npt.NDArray[np.float64], level: Level) -> npt.NDArray:
    size = len(domain)
    if level == "nominal":
        return 1.0 - np.eye(size)
    if level == "interval":
        points = domain.astype(np.float64)
        return (points[:, None] - points[None, :]) ** 2
    # Ordinal: the squared count of values between the two ranks, each end counting half.
    cumulative = np.concatenate(([0.0], np.cumsum(totals)))
    low = np.minimum.outer(np.arange(size), np.arange(size))
    high = np.maximum.outer(np.arange(size), np.arange(size))
    between = cumulative[high + 1] - cumulative[low]
    return (between - (totals[low] + totals[high]) / 2.0) ** 2


def krippendorff_alpha(units: npt.ArrayLike, values: npt.ArrayLike, *, level: Level) -> Alpha:
    """Krippendorff's alpha of answers `values` about `units` (parallel arrays, one element per answer).

    Levels: nominal (categories), ordinal (ranks, distances by the counts between them) and interval
    (squared differences). Values of one unit answered by one person twice must not occur (the
    caller's data has one judgment per comparison and annotator). Equals the `krippendorff` package's
    alpha on the same data (held by tests) and reproduces Krippendorff's published worked example.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    units, values = np.asarray(units), np.asarray(values)
    if units.shape != values.shape or units.ndim != 1:
        raise ValueError("units and values must be 1-d arrays of the same length")
    if len(units) == 0:
        return Alpha(value=None, units=0, values=0)
    domain, counts = _value_counts(units, values)
    per_unit = np.asarray(counts.sum(axis=1)).reshape(-1)
    pairable_units = int(np.count_nonzero(per_unit >= 2))
    pairable_values = int(per_unit[per_unit >= 2].sum())
    if pairable_values < 2:
        return Alpha(value=None, units=pairable_units, values=pairable_values)
    observed = coincidences(counts)
    distances = _distances(domain, observed.sum(axis=0), level)
    return _alpha_from_coincidences(observed, distances, units=pairable_units, values=pairable_values)


def _alpha_from_coincidences(
    observed: npt.NDArray[np.float64], distances: npt.NDArray, *, units: int, values: int
) -> Alpha:
    if values < 2:
        return Alpha(value=None, units=units, values=values)
    totals = observed.sum(axis=0)
    expected = (np.outer(totals, totals) - np.diag(totals)) / (values - 1.0)
    expected_disagreement = float((expected * distances).sum())
    if expected_disagreement <= 0:
        return Alpha(value=None, units=units, values=values)
    return Alpha(
        value=1.0 - float((observed * distances).sum()) / expected_disagreement, units=units, values=values
    )


def _unit_coincidences(counts: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], int, int]:
    """The coincidences of dense per-unit value counts (rows), with their pairable units and values."""
    per_unit = counts.sum(axis=1)
    pairable = per_unit >= 2
    rows = counts[pairable]
    weighted = rows / (per_unit[pairable] - 1.0)[:, None]
    observed = weighted.T @ rows - np.diag(weighted.sum(axis=0))
    return observed, int(pairable.sum()), int(per_unit[pairable].sum())


def nominal_alpha_prefixes(units: npt.ArrayLike, values: npt.ArrayLike, cuts: npt.ArrayLike) -> list[Alpha]:
    """The nominal alpha of the first `cut` answers, for each of the ascending `cuts`: what
    `krippendorff_alpha(units[:cut], values[:cut], level="nominal")` gives (to rounding), computed in one
    pass. The coincidences are kept up to date unit by unit: each stretch of answers between two cuts
    takes out the contribution of the units it touches, adds their answers, and puts it back, so every
    answer is counted once instead of once per prefix that holds it."""
    units, values = np.asarray(units).reshape(-1), np.asarray(values).reshape(-1)
    _, unit_codes = _codes(units)
    domain, value_codes = _codes(values)
    counts = np.zeros((int(unit_codes.max(initial=-1)) + 1, len(domain)), dtype=np.float64)
    observed = np.zeros((len(domain), len(domain)))
    distances = 1.0 - np.eye(len(domain))  # a value absent from a prefix adds nothing to either side
    pairable_units = pairable_values = start = 0
    result = []
    for cut in np.asarray(cuts, dtype=np.int64).tolist():
        touched = np.unique(unit_codes[start:cut])
        before, units_before, values_before = _unit_coincidences(counts[touched])
        np.add.at(counts, (unit_codes[start:cut], value_codes[start:cut]), 1.0)
        after, units_after, values_after = _unit_coincidences(counts[touched])
        observed += after - before
        pairable_units += units_after - units_before
        pairable_values += values_after - values_before
        start = cut
        result.append(
            _alpha_from_coincidences(observed, distances, units=pairable_units, values=pairable_values)
            if cut
            else Alpha(value=None, units=0, values=0)
        )
    return result


@dataclass(frozen=True)
class PairKappa:
    """Cohen's kappa of two annotators over the units both answered; None when undefined (both always
    gave one and the same value, so chance agreement is 1)."""

    first: int
    second: int
    shared: int
    agreement: float
    kappa: float | None


def _pairs_within_units(
    unit_codes: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Every pair (i, j), i before j, of elements that share a unit, as two index arrays."""
    order = np.argsort(unit_codes, kind="stable")
    sorted_units = unit_codes[order]
    firsts, seconds = [], []
    offset = 1
    while offset < len(order):
        same = sorted_units[offset:] == sorted_units[:-offset]
        if not same.any():
            break  # units are contiguous: no pair at this offset means none at a larger one
        firsts.append(order[:-offset][same])
        seconds.append(order[offset:][same])
        offset += 1
    if not firsts:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    return np.concatenate(firsts), np.concatenate(seconds)


def cohen_kappa_pairs(
    units: npt.ArrayLike, annotators: npt.ArrayLike, values: npt.ArrayLike, *, min_shared: int = 1
) -> list[PairKappa]:
    """Cohen's kappa for every pair of annotators who answered at least `min_shared` units in common,
    ordered by (first, second) with first < second (annotator ids as given).

    Each pair's kappa uses its own two marginals over the shared units: (p_o − p_e) / (1 − p_e)."""
    units, annotators, values = np.asarray(units), np.asarray(annotators), np.asarray(values)
    if not (units.shape == annotators.shape == values.shape) or units.ndim != 1:
        raise ValueError("units, annotators and values must be 1-d arrays of the same length")
    _, unit_codes = _codes(units)
    people, person_codes = _codes(annotators)
    _, value_codes = _codes(values)
    categories = int(value_codes.max(initial=-1)) + 1
    first, second = _pairs_within_units(unit_codes)
    if len(first) == 0:
        return []
    # Orient every pair so that the lower annotator code comes first, with its value.
    swap = person_codes[first] > person_codes[second]
    first, second = np.where(swap, second, first), np.where(swap, first, second)
    pair_keys = person_codes[first].astype(np.int64) * len(people) + person_codes[second]
    present, pair_index = np.unique(pair_keys, return_inverse=True)
    cells = (pair_index * categories + value_codes[first]) * categories + value_codes[second]
    tables = np.bincount(cells, minlength=len(present) * categories * categories).reshape(
        len(present), categories, categories
    )
    shared = tables.sum(axis=(1, 2))
    kept = np.flatnonzero(shared >= min_shared)
    observed = np.trace(tables[kept], axis1=1, axis2=2) / shared[kept]
    return [
        PairKappa(
            first=people[int(present[index]) // len(people)].item(),
            second=people[int(present[index]) % len(people)].item(),
            shared=int(shared[index]),
            agreement=float(agreement),
            kappa=kappa,
        )
        for index, agreement, kappa in zip(kept, observed, _kappas(tables[kept]), strict=True)
    ]


@dataclass(frozen=True)
class MajorityAgreement:
    """One annotator against the leave-one-out majority: of `compared` answers on units where the other
    annotators had a strict plurality, `agreed` matched it."""

    annotator: int
    compared: int
    agreed: int
    kappa: float | None  # chance-corrected: the annotator's answers against the majority's (Cohen's)

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


def majority_agreement(
    units: npt.ArrayLike, annotators: npt.ArrayLike, values: npt.ArrayLike
) -> list[MajorityAgreement]:
    """Each annotator's agreement with the strict-plurality answer of the *other* annotators of the same
    unit (their own answer left out); units where the others tie, or where nobody else answered, are not
    compared. One entry per annotator, ordered by annotator id."""
    units, annotators, values = np.asarray(units), np.asarray(annotators), np.asarray(values)
    if not (units.shape == annotators.shape == values.shape) or units.ndim != 1:
        raise ValueError("units, annotators and values must be 1-d arrays of the same length")
    people, person_codes = _codes(annotators)
    if len(units) == 0:
        return []
    _, unit_codes = _codes(units)
    _, value_codes = _codes(values)
    categories = int(value_codes.max()) + 1
    unit_count = int(unit_codes.max()) + 1
    # Dense units × categories counts: the categories of a choice are few.
    counts = np.bincount(unit_codes * categories + value_codes, minlength=unit_count * categories)
    others = counts.reshape(unit_count, categories)[unit_codes]
    others[np.arange(len(value_codes)), value_codes] -= 1
    top = others.max(axis=1)
    strict = (top > 0) & ((others == top[:, None]).sum(axis=1) == 1)
    majority = others.argmax(axis=1)
    agreed = strict & (majority == value_codes)
    # Per annotator, a categories × categories table of (own answer, majority) over the compared answers.
    cells = (person_codes[strict] * categories + value_codes[strict]) * categories + majority[strict]
    tables = np.bincount(cells, minlength=len(people) * categories * categories).reshape(
        len(people), categories, categories
    )
    kappas = _kappas(tables)
    compared_per = np.bincount(person_codes, weights=strict, minlength=len(people))
    agreed_per = np.bincount(person_codes, weights=agreed, minlength=len(people))
    return [
        MajorityAgreement(
            annotator=people[i].item(),
            compared=int(compared_per[i]),
            agreed=int(agreed_per[i]),
            kappa=kappas[i],
        )
        for i in range(len(people))
    ]


def _kappas(tables: npt.NDArray[np.int64]) -> list[float | None]:
    """Cohen's kappa of each (rows: first rater, columns: second) contingency table; None where there is
    no data or chance agreement is 1."""
    totals = tables.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.trace(tables, axis1=1, axis2=2) / totals
        chance = (tables.sum(axis=2) * tables.sum(axis=1)).sum(axis=1) / totals**2
        kappas = (observed - chance) / (1.0 - chance)
    return [
        None if total == 0 or chance_share >= 1.0 or not np.isfinite(kappa) else float(kappa)
        for total, chance_share, kappa in zip(totals, chance, kappas, strict=True)
    ]

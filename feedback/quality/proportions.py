"""Proportions with their uncertainty: gold accuracy with a Wilson interval, position bias with a
binomial test. Both are scipy's (`binomtest`), not re-derived here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from scipy.stats import binomtest

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Proportion:
    """`successes` of `trials`, the share, and its Wilson score interval at `CONFIDENCE`; the share and
    the interval are None when there were no trials."""

    successes: int
    trials: int
    share: float | None
    low: float | None
    high: float | None


# Both are pure and cost scipy about a millisecond a call; a refresh asks the same counts twice per
# annotator (the report, then the standing), and the results are immutable.
@lru_cache(maxsize=8192)
def wilson(successes: int, trials: int, *, confidence: float = CONFIDENCE) -> Proportion:
    """The share with its Wilson score interval (two-sided, `confidence`), which stays inside [0, 1] and
    is honest for small counts and shares near 0 or 1, where the normal approximation is not."""
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return Proportion(successes=0, trials=0, share=None, low=None, high=None)
    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return Proportion(
        successes=successes,
        trials=trials,
        share=successes / trials,
        low=float(interval.low),
        high=float(interval.high),
    )


@dataclass(frozen=True)
class PositionBias:
    """Of `decisive` judgments (one response strictly first), `first` chose the response shown first (A).

    `p_value` is the two-sided exact binomial test against `expected` (1/2 for pairs, 1/k for k
    responses): display order is random, so a real preference cannot explain a skew. None without data."""

    first: int
    decisive: int
    expected: float
    share: float | None
    p_value: float | None


@lru_cache(maxsize=8192)
def position_bias(first: int, decisive: int, *, expected: float = 0.5) -> PositionBias:
    if not 0 <= first <= decisive:
        raise ValueError(f"need 0 <= first <= decisive, got {first} of {decisive}")
    if not 0 < expected < 1:
        raise ValueError(f"the expected share must lie strictly between 0 and 1, got {expected}")
    if decisive == 0:
        return PositionBias(first=0, decisive=0, expected=expected, share=None, p_value=None)
    test = binomtest(first, decisive, expected, alternative="two-sided")
    return PositionBias(
        first=first, decisive=decisive, expected=expected, share=first / decisive, p_value=float(test.pvalue)
    )

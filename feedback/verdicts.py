"""What a verdict on a comparison may be: the rules a judgment and a reviewer's final word share.

A verdict is stored as a judgment is: `choice` (pairwise: a, b, tie, both_bad; k-wise: ranked) and
`ranking`, a rank per display position (1 is best, equal ranks tie), for every mode.
"""

from __future__ import annotations

from collections.abc import Sequence

PAIRWISE_CHOICES = ("a", "b", "tie", "both_bad")
# Pairwise verdicts store a rank per position too, so that exports read one shape for every mode.
PAIRWISE_RANKINGS: dict[str, list[int]] = {"a": [1, 2], "b": [2, 1], "tie": [1, 1], "both_bad": [1, 1]}


def ranking_error(ranking: Sequence[int], *, size: int, allows_tie: bool) -> str | None:
    """Why `ranking` is no ranking of `size` responses, or None."""
    if len(ranking) != size:
        return f"Rank all {size} shown responses (got {len(ranking)} ranks)."
    if any(not 1 <= rank <= size for rank in ranking):
        return f"Ranks run from 1 (best) to {size}."
    distinct = sorted(set(ranking))
    if not allows_tie and len(distinct) != size:
        return "This project does not allow ties: give each response its own rank."
    if distinct != list(range(1, len(distinct) + 1)):
        return "Ranks must be consecutive from 1 (tied responses share a rank, the next rank follows on)."
    return None


def verdict_text(choice: str, ranking: Sequence[int], labels: Sequence[str] | None = None) -> str:
    """A verdict as people read it: "A better", "B better", "Tie", "Both bad", or a ranking's labels best
    first ("B > A = C"). `labels` name the display positions (default A, B, C, …)."""
    if choice in ("a", "b"):
        return f"{choice.upper()} better"
    if choice == "tie":
        return "Tie"
    if choice == "both_bad":
        return "Both bad"
    names = list(labels) if labels is not None else [chr(ord("A") + index) for index in range(len(ranking))]
    places: dict[int, list[str]] = {}
    for label, rank in zip(names, ranking, strict=False):
        places.setdefault(rank, []).append(label)
    return " > ".join(" = ".join(places[rank]) for rank in sorted(places))

"""Gold verdicts: what an admin expects of a comparison, and whether a judgment gave it.

A verdict is stored keyed by response id, never by display position, so it stays right whatever order
the responses are shown in. People write it by label (A, B, … in an order they choose: the order of an
import line's responses, or the display order on a comparison's admin page); `verdict_from_labels`
turns that into the stored form. In a form they write it as one line of text ("A", "A, tie",
"C > A = B"): `labels_from_text` reads that, and reads back what `verdict_labels` writes.

Stored forms (JSON):
- pairwise: `{"accepted": ["<response id>", "tie", "both_bad"]}`, a non-empty subset: the outcomes that
  count as correct ("<id>" means that response is better);
- ranking, best only: `{"best": "<response id>"}`: correct when that response alone is ranked first;
- ranking, full order: `{"ranks": {"<response id>": rank}}` (1 is best, equal ranks tie, consecutive
  from 1): correct when the judgment's ranking is exactly this one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

TIE = "tie"
BOTH_BAD = "both_bad"


class VerdictInvalid(ValueError):
    """The expected verdict cannot be read; the message says why, in the writer's terms (labels)."""


def _label(index: int) -> str:
    return chr(ord("A") + index)


def _labels(response_ids: Sequence[int]) -> dict[str, int]:
    return {_label(index): response_id for index, response_id in enumerate(response_ids)}


def _label_of(value: Any, labels: Mapping[str, int]) -> int:
    if not isinstance(value, str) or value.upper() not in labels:
        raise VerdictInvalid(f"{value!r} is not a response here; use one of {', '.join(labels)}.")
    return labels[value.upper()]


def verdict_from_labels(
    expected: Any, *, response_ids: Sequence[int], is_ranking: bool, allows_tie: bool
) -> dict[str, Any]:
    """The stored verdict for `expected`, written with labels A, B, … for `response_ids` in that order.

    Pairwise: "A", or a list of accepted outcomes such as ["A", "tie"] ("tie" only where the project
    allows ties; "both_bad" too). Ranking: "C" (the best response), or {"order": ["C", "A", "B"]}, best
    first, with a nested list for tied responses ({"order": [["A", "C"], "B"]}). Raises `VerdictInvalid`.
    """
    labels = _labels(response_ids)
    if not is_ranking:
        accepted_raw = [expected] if isinstance(expected, str) else expected
        if not isinstance(accepted_raw, list) or not accepted_raw:
            raise VerdictInvalid(
                'The expected verdict is a label such as "A", or a list such as ["A", "tie"].'
            )
        accepted: list[str] = []
        for outcome in accepted_raw:
            if outcome in (TIE, BOTH_BAD):
                if outcome == TIE and not allows_tie:
                    raise VerdictInvalid("This project does not allow ties, so a tie cannot be expected.")
                key = outcome
            else:
                key = str(_label_of(outcome, labels))
            if key in accepted:
                raise VerdictInvalid(f"{outcome!r} is accepted twice.")
            accepted.append(key)
        if sum(key not in (TIE, BOTH_BAD) for key in accepted) == len(response_ids):
            raise VerdictInvalid(
                "Accepting every response as better accepts any preference: that is no test."
            )
        return {"accepted": sorted(accepted)}
    if isinstance(expected, str):
        return {"best": str(_label_of(expected, labels))}
    if (
        not isinstance(expected, dict)
        or set(expected) != {"order"}
        or not isinstance(expected["order"], list)
    ):
        raise VerdictInvalid('A ranking\'s expected verdict is the best label ("C") or {"order": [...]}.')
    ranks: dict[str, int] = {}
    for rank, group in enumerate(expected["order"], start=1):
        members = group if isinstance(group, list) else [group]
        if not members:
            raise VerdictInvalid("An empty group in the order.")
        if len(members) > 1 and not allows_tie:
            raise VerdictInvalid("This project does not allow ties, so the order cannot tie responses.")
        for member in members:
            key = str(_label_of(member, labels))
            if key in ranks:
                raise VerdictInvalid(f"{member!r} is placed twice in the order.")
            ranks[key] = rank
    if len(ranks) != len(response_ids):
        missing = [label for label, response_id in labels.items() if str(response_id) not in ranks]
        raise VerdictInvalid(f"The order must place every response; missing: {', '.join(missing)}.")
    return {"ranks": ranks}


def verdict_labels(verdict: Mapping[str, Any], *, response_ids: Sequence[int]) -> str:
    """The verdict written back with labels for `response_ids` in that order, for people to read."""
    label_of = {str(response_id): _label(index) for index, response_id in enumerate(response_ids)}
    if "accepted" in verdict:
        names = [label_of.get(key, key).replace("both_bad", "both bad") for key in verdict["accepted"]]
        return " or ".join(sorted(names))
    if "best" in verdict:
        return f"{label_of.get(verdict['best'], '?')} best"
    groups: dict[int, list[str]] = {}
    for key, rank in verdict["ranks"].items():
        groups.setdefault(rank, []).append(label_of.get(key, "?"))
    return " > ".join(" = ".join(sorted(groups[rank])) for rank in sorted(groups))


def labels_from_text(text: str, *, is_ranking: bool) -> str | list[str] | dict[str, list[Any]]:
    """A verdict written as one line of text, in the structure `verdict_from_labels` takes (which checks
    the labels against the comparison).

    Pairwise: a label ("A"), or accepted outcomes separated by commas or "or" ("A, tie", "B or both
    bad"). Ranking: the best label ("C", or "C best"), or the order best first with ">" between places
    and "=" between tied responses ("C > A > B", "A = C > B"). Raises `VerdictInvalid`.
    """
    words = " ".join(text.split())
    if not words:
        example = '"C" or "C > A = B"' if is_ranking else '"A" or "A, tie"'
        raise VerdictInvalid(f"Write the expected verdict, such as {example}.")
    if not is_ranking:
        outcomes = [_outcome_word(part) for part in re.split(r"\s*,\s*|\s+or\s+", words, flags=re.I)]
        if "" in outcomes:
            raise VerdictInvalid(f"{text.strip()!r} has an empty outcome between its separators.")
        return outcomes[0] if len(outcomes) == 1 else outcomes
    if ">" not in words and "=" not in words:
        return re.sub(r"\s+best$", "", words, flags=re.I)
    places = [[member.strip() for member in place.split("=")] for place in words.split(">")]
    if any(not member for place in places for member in place):
        raise VerdictInvalid(f"{text.strip()!r} has an empty place: write labels between > and =.")
    return {"order": [place[0] if len(place) == 1 else place for place in places]}


def _outcome_word(word: str) -> str:
    """A pairwise outcome as written: "tie" and "both bad" (any case, "_" or "-" or a space) by name."""
    normal = re.sub(r"[\s_-]+", "_", word.strip().lower())
    return normal if normal in (TIE, BOTH_BAD) else word.strip()


def outcome_of(choice: str, ranking: Sequence[int], *, response_ids: Sequence[int]) -> str:
    """A pairwise judgment's outcome in the verdict's terms: the better response's id, "tie" or
    "both_bad". `ranking` is the judgment's rank per display position."""
    if choice in (TIE, BOTH_BAD):
        return choice
    first = [response_ids[position] for position, rank in enumerate(ranking) if rank == 1]
    return str(first[0]) if len(first) == 1 else TIE


def gold_correct(
    verdict: Mapping[str, Any], *, choice: str, ranking: Sequence[int], response_ids: Sequence[int]
) -> bool:
    """Whether a judgment (its choice and rank per display position, the comparison's response ids by
    display position) gives the expected verdict."""
    if "accepted" in verdict:
        return outcome_of(choice, ranking, response_ids=response_ids) in verdict["accepted"]
    ranks = {str(response_ids[position]): rank for position, rank in enumerate(ranking)}
    if "best" in verdict:
        first = [key for key, rank in ranks.items() if rank == 1]
        return first == [verdict["best"]]
    return ranks == dict(verdict["ranks"])

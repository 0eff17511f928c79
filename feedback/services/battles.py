"""Battles between checkpoints, read from judgments: what the leaderboard is fitted on.

A battle is two responses of different checkpoints in one judgment, in display order: a pairwise
judgment is one battle; a k-wise ranking is expanded to every pair of its positions (k·(k−1)/2 battles,
the better rank wins, equal ranks tie). Expanding to pairs rather than fitting Plackett–Luce keeps one
model for both modes, one set of cells, and ties, which Plackett–Luce has no place for; it counts a
ranking of k responses as k − 1 … k(k−1)/2 pieces of evidence where Plackett–Luce counts k − 1, so a
ranking project's intervals are somewhat narrower than they should be (its battles are not independent),
which the leaderboard says. "Both bad" is a battle of its own outcome (`BOTH_BAD`), counted apart and
left out of the fit unless asked. Responses of the same checkpoint, and imported responses (gold items
carry no checkpoint), make no battle.

The judgments are the export's (`feedback.export.source.judgments_selected`): the same filters and the
same quality decisions, so the leaderboard is read from exactly the judgments a dataset would be. Where
a reviewer decided a comparison and `adjudicated_wins` holds, the decided verdict replaces each of its
judgments' verdicts (the comparison keeps its weight; the reviewer's word decides its outcome).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import connection
from django.db.models import IntegerField, QuerySet
from django.db.models.functions import Cast, Length

from feedback.models import Comparison, ComparisonResponse, Judgment, Prompt, PromptCategory, Response
from feedback.quality.leaderboard import FIRST, SECOND, STYLE_FEATURES, TIE, markdown_style
from feedback.services.quality import PACKED_BLOCK, _table, packed_int64_rows
from feedback.verdicts import PAIRWISE_RANKINGS

BOTH_BAD = 3
CATEGORIES = list(PromptCategory.values)
STYLE_FILL_CHUNK = 2_000


def style_fields(text: str) -> dict[str, int]:
    """A response's style columns (see `Response.characters`), to set when it is made."""
    return dict(zip(STYLE_FEATURES, markdown_style(text), strict=True))


def styles_fill(responses: QuerySet[Response]) -> int:
    """Measure the style of those of `responses` that have none yet (made before it was stored, or by
    hand); returns how many."""
    filled = 0
    missing = responses.filter(characters__isnull=True).order_by("pk").values_list("pk", "text")
    batch: list[Response] = []
    for pk, text in missing.iterator(chunk_size=STYLE_FILL_CHUNK):
        batch.append(Response(pk=pk, **style_fields(text)))
        if len(batch) == STYLE_FILL_CHUNK:
            Response.objects.bulk_update(batch, list(STYLE_FEATURES))
            filled += len(batch)
            batch = []
    if batch:
        Response.objects.bulk_update(batch, list(STYLE_FEATURES))
        filled += len(batch)
    return filled


@dataclass(frozen=True)
class Battles:
    """One row per battle, as parallel arrays: the judgment, its comparison, the checkpoints (ids) shown
    first and second, the outcome (FIRST, SECOND, TIE or BOTH_BAD), the prompt's category (an index into
    CATEGORIES), whether the judgment has a rationale, and each side's style (battles × STYLE_FEATURES)."""

    judgment: npt.NDArray[np.int64]
    comparison: npt.NDArray[np.int64]
    first: npt.NDArray[np.int64]
    second: npt.NDArray[np.int64]
    first_response: npt.NDArray[np.int64]
    second_response: npt.NDArray[np.int64]
    outcome: npt.NDArray[np.int8]
    category: npt.NDArray[np.int16]
    rationale: npt.NDArray[np.bool_]
    first_style: npt.NDArray[np.float64]
    second_style: npt.NDArray[np.float64]
    same_checkpoint: int  # pairs of responses of one checkpoint, which make no battle

    def __len__(self) -> int:
        return len(self.judgment)

    def take(self, keep: npt.NDArray[np.bool_]) -> Battles:
        return Battles(
            judgment=self.judgment[keep],
            comparison=self.comparison[keep],
            first=self.first[keep],
            second=self.second[keep],
            first_response=self.first_response[keep],
            second_response=self.second_response[keep],
            outcome=self.outcome[keep],
            category=self.category[keep],
            rationale=self.rationale[keep],
            first_style=self.first_style[keep],
            second_style=self.second_style[keep],
            same_checkpoint=self.same_checkpoint,
        )


# Columns of a pair row: judgment, comparison, first position, second position, first response, second
# response, outcome, category code, has a rationale.
_PAIR_COLUMNS = 9


def battles_read(
    judgments: QuerySet[Judgment], *, decided: dict[int, dict[str, Any]] | None = None
) -> Battles:
    """The battles of `judgments` (each judgment of a comparison in `decided` takes the decided verdict
    instead of its own). Fills missing response styles first."""
    selected = judgments.order_by().values("pk")
    compared = judgments.order_by().values("comparison_id")
    shown = Response.objects.filter(
        pk__in=ComparisonResponse.objects.filter(comparison_id__in=compared).values("response_id")
    )
    styles_fill(shown)
    if connection.vendor == "postgresql":
        pairs = _pairs_packed(selected)
        responses = _responses_packed(compared)
    else:
        pairs = _pairs_orm(judgments)
        responses = np.array(
            list(shown.order_by("pk").values_list("pk", "checkpoint_id", *STYLE_FEATURES)), dtype=object
        ).reshape(-1, 2 + len(STYLE_FEATURES))
        responses[:, 1] = [-1 if value is None else value for value in responses[:, 1]]
        responses = responses.astype(np.int64)
    if decided:
        _apply_decisions(pairs, decided)
    return _battles(pairs, responses)


def _pairs_packed(selected: QuerySet[Any]) -> npt.NDArray[np.int64]:
    subquery, params = selected.query.sql_with_params()
    rank = "(j.ranking ->> {}::int)::int"
    first_rank, second_rank = rank.format("e1.position"), rank.format("e2.position")
    columns = [
        "j.id",
        "j.comparison_id",
        "e1.position",
        "e2.position",
        "e1.response_id",
        "e2.response_id",
        f"CASE WHEN j.choice = 'both_bad' THEN {BOTH_BAD} WHEN {first_rank} < {second_rank} THEN {FIRST} "
        f"WHEN {first_rank} > {second_rank} THEN {SECOND} ELSE {TIE} END",
        "coalesce(array_position(%s::text[], p.category::text), 0) - 1",
        "(length(j.rationale) > 0)::int",
    ]
    source = (
        f"FROM {_table(Judgment)} j JOIN {_table(Comparison)} c ON c.id = j.comparison_id "
        f"JOIN {_table(Prompt)} p ON p.id = c.prompt_id "
        f"JOIN {_table(ComparisonResponse)} e1 ON e1.comparison_id = j.comparison_id "
        f"JOIN {_table(ComparisonResponse)} e2 ON e2.comparison_id = j.comparison_id "
        f"AND e2.position > e1.position WHERE j.id IN ({subquery})"
    )
    return packed_int64_rows(
        columns, source, [CATEGORIES, *params], block=f"j.id / {PACKED_BLOCK}", sort_by=(0, 2, 3)
    )


def _responses_packed(compared: QuerySet[Any]) -> npt.NDArray[np.int64]:
    subquery, params = compared.query.sql_with_params()
    columns = [
        "r.id",
        "coalesce(r.checkpoint_id, -1)",
        *(f"coalesce(r.{name}, 0)" for name in STYLE_FEATURES),
    ]
    # Fixed SQL around Django's compiled subquery; every value goes as a parameter.
    shown = f"SELECT e.response_id FROM {_table(ComparisonResponse)} e WHERE e.comparison_id IN ({subquery})"  # noqa: S608
    source = f"FROM {_table(Response)} r WHERE r.id IN ({shown})"
    return packed_int64_rows(columns, source, list(params), block=f"r.id / {PACKED_BLOCK}")


def _pairs_orm(judgments: QuerySet[Judgment]) -> npt.NDArray[np.int64]:
    """`_pairs_packed`'s rows through the ORM (SQLite, the demo's database)."""
    entries: dict[int, list[tuple[int, int]]] = {}
    for comparison_id, position, response_id in (
        ComparisonResponse.objects.filter(comparison_id__in=judgments.order_by().values("comparison_id"))
        .order_by("comparison_id", "position")
        .values_list("comparison_id", "position", "response_id")
    ):
        entries.setdefault(comparison_id, []).append((position, response_id))
    code = {category: index for index, category in enumerate(CATEGORIES)}
    rows: list[tuple[int, ...]] = []
    selected = (
        judgments.annotate(q_rationale=Cast(Length("rationale"), IntegerField()))
        .order_by("pk")
        .values_list(
            "pk", "comparison_id", "choice", "ranking", "comparison__prompt__category", "q_rationale"
        )
    )
    for pk, comparison_id, choice, ranking, category, rationale in selected.iterator(chunk_size=5_000):
        shown = entries.get(comparison_id, [])
        for index, (first_position, first_response) in enumerate(shown):
            for second_position, second_response in shown[index + 1 :]:
                outcome = _outcome(choice, ranking, first_position, second_position)
                rows.append(
                    (
                        pk,
                        comparison_id,
                        first_position,
                        second_position,
                        first_response,
                        second_response,
                        outcome,
                        code.get(category, -1),
                        int(rationale > 0),
                    )
                )
    return np.array(rows, dtype=np.int64).reshape(-1, _PAIR_COLUMNS)


def _outcome(choice: str, ranking: list[int], first_position: int, second_position: int) -> int:
    if choice == "both_bad":
        return BOTH_BAD
    first_rank, second_rank = ranking[first_position], ranking[second_position]
    return FIRST if first_rank < second_rank else SECOND if first_rank > second_rank else TIE


def _apply_decisions(pairs: npt.NDArray[np.int64], decided: dict[int, dict[str, Any]]) -> None:
    """Each pair row of a decided comparison takes the outcome of the decided verdict."""
    for row in np.flatnonzero(np.isin(pairs[:, 1], np.fromiter(decided, dtype=np.int64))):
        verdict = decided[int(pairs[row, 1])]
        choice = verdict.get("choice", "ranked")
        ranking = verdict.get("ranking") or PAIRWISE_RANKINGS.get(choice, [1, 1])
        pairs[row, 6] = _outcome(choice, ranking, int(pairs[row, 2]), int(pairs[row, 3]))


def _battles(pairs: npt.NDArray[np.int64], responses: npt.NDArray[np.int64]) -> Battles:
    order = np.argsort(responses[:, 0], kind="stable")
    responses = responses[order]
    ids = responses[:, 0]

    def lookup(response_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        if not len(response_ids):
            return np.zeros(0, dtype=np.intp)
        found = np.searchsorted(ids, response_ids).clip(0, max(len(ids) - 1, 0))
        if not len(ids) or (ids[found] != response_ids).any():
            raise RuntimeError("a judged response was not read")
        return found

    first_row, second_row = lookup(pairs[:, 4]), lookup(pairs[:, 5])
    first, second = responses[first_row, 1], responses[second_row, 1]
    made = (first >= 0) & (second >= 0)
    same = made & (first == second)
    keep = made & ~same
    return Battles(
        judgment=pairs[keep, 0],
        comparison=pairs[keep, 1],
        first=first[keep],
        second=second[keep],
        first_response=pairs[keep, 4],
        second_response=pairs[keep, 5],
        outcome=pairs[keep, 6].astype(np.int8),
        category=pairs[keep, 7].astype(np.int16),
        rationale=pairs[keep, 8].astype(bool),
        first_style=responses[first_row[keep], 2:].astype(np.float64),
        second_style=responses[second_row[keep], 2:].astype(np.float64),
        same_checkpoint=int(same.sum()),
    )


NO_SCORE = np.iinfo(np.int64).min


@dataclass(frozen=True)
class Ratings:
    """One row per (judgment, response shown) that the judgment rated: the response's checkpoint (−1 for
    an imported one), and a score per axis (`scored` says which axes it scored)."""

    judgment: npt.NDArray[np.int64]
    response: npt.NDArray[np.int64]
    checkpoint: npt.NDArray[np.int64]
    score: npt.NDArray[np.int64]
    scored: npt.NDArray[np.bool_]


def ratings_read(judgments: QuerySet[Judgment], *, axes: list[str]) -> Ratings:
    """The rubric scores the judgments gave, per response shown, on `axes`."""
    rows = (
        _ratings_packed(judgments, axes)
        if connection.vendor == "postgresql"
        else _ratings_orm(judgments, axes)
    )
    scores = rows[:, 3:]
    scored = scores != NO_SCORE
    rated = scored.any(axis=1)
    return Ratings(
        judgment=rows[rated, 0],
        response=rows[rated, 1],
        checkpoint=rows[rated, 2],
        score=np.where(scored, scores, 0)[rated],
        scored=scored[rated],
    )


def _ratings_packed(judgments: QuerySet[Judgment], axes: list[str]) -> npt.NDArray[np.int64]:
    """Rows (judgment, response, its checkpoint or −1, a score per axis or NO_SCORE) in that order, one
    per rated judgment and response shown."""
    subquery, params = judgments.order_by().values("pk").query.sql_with_params()
    source = (
        f"FROM {_table(Judgment)} j JOIN {_table(ComparisonResponse)} e ON e.comparison_id = j.comparison_id "
        f"JOIN {_table(Response)} r ON r.id = e.response_id "
        f"WHERE j.ratings <> '{{}}'::jsonb AND j.id IN ({subquery})"
    )
    return packed_int64_rows(
        [
            "j.id",
            "e.response_id",
            "coalesce(r.checkpoint_id, -1)",
            *(f"coalesce((j.ratings -> e.response_id::text ->> %s)::int8, {NO_SCORE})" for _ in axes),
        ],
        source,
        [*axes, *params],
        block=f"j.id / {PACKED_BLOCK}",
        sort_by=(0, 1),
    )


def _ratings_orm(judgments: QuerySet[Judgment], axes: list[str]) -> npt.NDArray[np.int64]:
    """`_ratings_packed`'s rows through the ORM."""
    checkpoint_of = dict(
        Response.objects.filter(
            pk__in=ComparisonResponse.objects.filter(
                comparison_id__in=judgments.order_by().values("comparison_id")
            ).values("response_id")
        ).values_list("pk", "checkpoint_id")
    )
    collected = []
    for pk, ratings in judgments.exclude(ratings={}).order_by("pk").values_list("pk", "ratings"):
        for response_id, by_axis in sorted(ratings.items(), key=lambda item: int(item[0])):
            checkpoint = checkpoint_of.get(int(response_id))
            given = [by_axis.get(axis, NO_SCORE) for axis in axes]
            collected.append((pk, int(response_id), -1 if checkpoint is None else checkpoint, *given))
    return np.array(collected, dtype=np.int64).reshape(-1, 3 + len(axes))

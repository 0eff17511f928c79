"""Battles between checkpoints, read from judgments: what the leaderboard is fitted on.

A battle is two responses of different checkpoints in one judgment, in display order: a pairwise
judgment is one battle; a k-wise ranking is expanded to every pair of its positions (k·(k−1)/2 battles,
the better rank wins, equal ranks tie). Expanding to pairs rather than fitting Plackett–Luce keeps one
model for both modes, one set of cells, and ties, which Plackett–Luce has no place for; it counts a
ranking of k responses as k − 1 … k(k−1)/2 pieces of evidence where Plackett–Luce counts k − 1, so a
ranking project's intervals are somewhat narrower than they should be (its battles are not independent),
which the leaderboard says. "Both bad" is a battle of its own outcome (`BOTH_BAD`), counted apart and
left out of the fit unless asked. People's answers take part as one more participant, `PEOPLE`
(`PEOPLE_ID`), so a leaderboard says whether the checkpoints beat the project's writers. Responses of the
same participant (two people's answers among them), and imported responses (gold items carry no
checkpoint), make no battle.

The judgments are the export's (`feedback.export.source.judgments_selected`): the same filters and the
same quality decisions, so the leaderboard is read from exactly the judgments a dataset would be. Where
a reviewer decided a comparison and `adjudicated_wins` holds, the decided verdict replaces each of its
judgments' verdicts (the comparison keeps its weight; the reviewer's word decides its outcome).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import connection
from django.db.models import F, QuerySet
from django.db.models.functions import Length

from feedback.models import (
    PARTICIPANT_SQL,
    Comparison,
    ComparisonResponse,
    Judgment,
    PromptCategory,
    Response,
    participant,
)
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
    first_style: npt.NDArray[np.int32]
    second_style: npt.NDArray[np.int32]
    same_checkpoint: int  # pairs of responses of one checkpoint, which make no battle

    def __len__(self) -> int:
        return len(self.judgment)


def battles_read(
    judgments: QuerySet[Judgment],
    *,
    projects: Sequence[int],
    decided: dict[int, dict[str, Any]] | None = None,
) -> Battles:
    """The battles of `judgments`, which belong to the comparisons of `projects` (each judgment of a
    comparison in `decided` takes the decided verdict instead of its own). Fills missing response styles
    first.

    Two reads, each a scan with no join back to the other: the judgments (id, comparison, choice, category,
    whether there is a rationale, a rank per position) and the projects' comparison entries (comparison,
    position, response, its checkpoint and style); numpy pairs them by comparison."""
    entries_shown = ComparisonResponse.objects.filter(
        comparison__project_id__in=list(projects), comparison__is_gold=False
    )
    styles_fill(Response.objects.filter(pk__in=entries_shown.values("response_id")))
    if connection.vendor == "postgresql":
        entries = _entries_packed(projects)
        positions = int(entries[:, 1].max()) + 1 if len(entries) else 2
        rows = _judgment_rows_packed(judgments, positions)
    else:
        entries = _entries_orm(entries_shown)
        positions = int(entries[:, 1].max()) + 1 if len(entries) else 2
        rows = _judgment_rows_orm(judgments, positions)
    if decided:
        _apply_decisions(rows, decided)
    return _battles(rows, entries)


CHOICES = list(Judgment.Choice.values)
_BOTH_BAD_CODE = CHOICES.index("both_bad")
# Columns of a judgment row: id, comparison, choice code, category code, has a rationale, then a rank per
# display position (0 where the judgment has none).
_RANKS = 5
# Columns of an entry row: comparison, position, response, its participant (PARTICIPANT_SQL), its style.
_ENTRY_STYLE = 4


def _judgment_rows_packed(judgments: QuerySet[Judgment], positions: int) -> npt.NDArray[np.int64]:
    chosen = (
        judgments.order_by()
        .annotate(
            q_id=F("pk"),
            q_comparison=F("comparison_id"),
            q_choice=F("choice"),
            q_category=F("comparison__prompt__category"),
            q_rationale=Length("rationale"),
            q_ranking=F("ranking"),
        )
        .values("q_id", "q_comparison", "q_choice", "q_category", "q_rationale", "q_ranking")
    )
    subquery, params = chosen.query.sql_with_params()
    return packed_int64_rows(
        [
            "s.q_id",
            "s.q_comparison",
            "coalesce(array_position(%s::text[], s.q_choice::text), 0) - 1",
            "coalesce(array_position(%s::text[], s.q_category::text), 0) - 1",
            "(s.q_rationale > 0)::int",
            *(f"coalesce((s.q_ranking ->> {position})::int, 0)" for position in range(positions)),
        ],
        f"FROM ({subquery}) s",
        [CHOICES, CATEGORIES, *params],
        block=f"s.q_id / {PACKED_BLOCK}",
    )


def _judgment_rows_orm(judgments: QuerySet[Judgment], positions: int) -> npt.NDArray[np.int64]:
    """`_judgment_rows_packed`'s rows through the ORM (SQLite, the demo's database)."""
    choice_code = {choice: index for index, choice in enumerate(CHOICES)}
    category_code = {category: index for index, category in enumerate(CATEGORIES)}
    rows = []
    for pk, comparison_id, choice, category, rationale, ranking in (
        judgments.annotate(q_rationale=Length("rationale"))
        .order_by("pk")
        .values_list(
            "pk", "comparison_id", "choice", "comparison__prompt__category", "q_rationale", "ranking"
        )
        .iterator(chunk_size=5_000)
    ):
        ranks = [int(rank) for rank in ranking[:positions]] + [0] * max(0, positions - len(ranking))
        rows.append(
            (
                pk,
                comparison_id,
                choice_code.get(choice, -1),
                category_code.get(category, -1),
                int(rationale > 0),
                *ranks,
            )
        )
    return np.array(rows, dtype=np.int64).reshape(-1, _RANKS + positions)


def _entries_packed(projects: Sequence[int]) -> npt.NDArray[np.int64]:
    return packed_int64_rows(
        [
            "e.comparison_id",
            "e.position",
            "e.response_id",
            PARTICIPANT_SQL,
            *(f"coalesce(r.{name}, 0)" for name in STYLE_FEATURES),
        ],
        f"FROM {_table(ComparisonResponse)} e JOIN {_table(Comparison)} c ON c.id = e.comparison_id "
        f"JOIN {_table(Response)} r ON r.id = e.response_id WHERE c.project_id = ANY(%s) AND NOT c.is_gold",
        [list(projects)],
        block=f"e.comparison_id / {PACKED_BLOCK}",
        sort_by=(0, 1),
    )


def _entries_orm(entries: QuerySet[ComparisonResponse]) -> npt.NDArray[np.int64]:
    """`_entries_packed`'s rows through the ORM."""
    rows = [
        (
            comparison_id,
            position,
            response_id,
            participant(checkpoint_id, source),
            *(style or 0 for style in styles),
        )
        for comparison_id, position, response_id, checkpoint_id, source, *styles in entries.order_by(
            "comparison_id", "position"
        ).values_list(
            "comparison_id",
            "position",
            "response_id",
            "response__checkpoint_id",
            "response__source",
            *(f"response__{name}" for name in STYLE_FEATURES),
        )
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 4 + _ENTRY_STYLE)


def _apply_decisions(rows: npt.NDArray[np.int64], decided: dict[int, dict[str, Any]]) -> None:
    """Each judgment row of a decided comparison takes the decided verdict (its choice and ranks)."""
    positions = rows.shape[1] - _RANKS
    for row in np.flatnonzero(np.isin(rows[:, 1], np.fromiter(decided, dtype=np.int64))):
        verdict = decided[int(rows[row, 1])]
        choice = verdict.get("choice", "ranked")
        ranking = list(verdict.get("ranking") or PAIRWISE_RANKINGS.get(choice, [1, 1]))[:positions]
        rows[row, 2] = CHOICES.index(choice) if choice in CHOICES else -1
        rows[row, _RANKS:] = ranking + [0] * (positions - len(ranking))


def _battles(rows: npt.NDArray[np.int64], entries: npt.NDArray[np.int64]) -> Battles:
    """Every pair of positions (i < j) of each judgment's comparison, in the judgment's order then (i, j):
    the i-th entry shown is first. A pair of two checkpoints' responses is a battle."""
    shown = entries[:, 0]
    start = np.searchsorted(shown, rows[:, 1], side="left")
    count = np.searchsorted(shown, rows[:, 1], side="right") - start
    positions = rows.shape[1] - _RANKS
    pieces = []
    for i in range(positions):
        for j in range(i + 1, positions):
            row = np.flatnonzero(count > j)
            pieces.append((row, start[row] + i, start[row] + j))
    row = np.concatenate([piece[0] for piece in pieces]) if pieces else np.zeros(0, dtype=np.intp)
    first_entry = np.concatenate([piece[1] for piece in pieces]) if pieces else row
    second_entry = np.concatenate([piece[2] for piece in pieces]) if pieces else row
    if len(pieces) > 1:  # back in the judgments' order; a stable sort keeps (i, j) within one
        order = np.argsort(row, kind="stable")
        row, first_entry, second_entry = row[order], first_entry[order], second_entry[order]
    del pieces
    first, second = entries[first_entry, 3], entries[second_entry, 3]
    made = (first >= 0) & (second >= 0)
    same = made & (first == second)
    keep = made & ~same
    row, first_entry, second_entry = row[keep], first_entry[keep], second_entry[keep]
    styles = entries[:, 4:].astype(np.int32)  # taken per battle below: small integers, half the memory
    ranks = rows[:, _RANKS:]
    first_rank = ranks[row, entries[first_entry, 1]]
    second_rank = ranks[row, entries[second_entry, 1]]
    outcome = np.where(
        rows[row, 2] == _BOTH_BAD_CODE,
        BOTH_BAD,
        np.where(first_rank < second_rank, FIRST, np.where(first_rank > second_rank, SECOND, TIE)),
    ).astype(np.int8)
    return Battles(
        judgment=rows[row, 0],
        comparison=rows[row, 1],
        first=first[keep],
        second=second[keep],
        first_response=entries[first_entry, 2],
        second_response=entries[second_entry, 2],
        outcome=outcome,
        category=rows[row, 3].astype(np.int16),
        rationale=rows[row, 4] > 0,
        first_style=styles[first_entry],
        second_style=styles[second_entry],
        same_checkpoint=int(same.sum()),
    )


NO_SCORE = np.iinfo(np.int64).min


@dataclass(frozen=True)
class Ratings:
    """One row per (judgment, response shown) that the judgment rated: the response's participant (its
    checkpoint, PEOPLE_ID or −1: `PARTICIPANT_SQL`), and a score per axis (`scored` says which axes it scored)."""

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
            PARTICIPANT_SQL,
            *(f"coalesce((j.ratings -> e.response_id::text ->> %s)::int8, {NO_SCORE})" for _ in axes),
        ],
        source,
        [*axes, *params],
        block=f"j.id / {PACKED_BLOCK}",
        sort_by=(0, 1),
    )


def _ratings_orm(judgments: QuerySet[Judgment], axes: list[str]) -> npt.NDArray[np.int64]:
    """`_ratings_packed`'s rows through the ORM."""
    participant_of = {
        pk: participant(checkpoint_id, source)
        for pk, checkpoint_id, source in Response.objects.filter(
            pk__in=ComparisonResponse.objects.filter(
                comparison_id__in=judgments.order_by().values("comparison_id")
            ).values("response_id")
        ).values_list("pk", "checkpoint_id", "source")
    }
    collected = []
    for pk, ratings in judgments.exclude(ratings={}).order_by("pk").values_list("pk", "ratings"):
        for response_id, by_axis in sorted(ratings.items(), key=lambda item: int(item[0])):
            given = [by_axis.get(axis, NO_SCORE) for axis in axes]
            collected.append((pk, int(response_id), participant_of.get(int(response_id), -1), *given))
    return np.array(collected, dtype=np.int64).reshape(-1, 3 + len(axes))

"""A project's quality figures, computed off the request path and stored.

`project_quality_refresh` reads the project's judgments as arrays (gold items apart), grades the gold
answers, calls `feedback.quality.report`, brings each annotator's standing up to date (gold accuracy and
position bias may warn or suspend), queues comparisons for review, and in one transaction stores a
`ProjectQuality` row (a history) and replaces every `AnnotatorQuality` row of the project. Celery beat runs it for every active project with new judgments; the demo runs it
inline. Pages and the API only read the stored rows.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from django.db import connection, transaction
from django.db.models import Case, IntegerField, Max, Sum, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Length
from django.utils import timezone

from feedback.models import (
    AnnotatorQuality,
    Comparison,
    ComparisonResponse,
    Judgment,
    Project,
    ProjectQuality,
    Prompt,
    PromptCategory,
)
from feedback.quality.report import (
    CHOICES,
    NOT_TIMED,
    AnnotatorReport,
    JudgmentArrays,
    RatingArrays,
    annotator_reports,
    choice_values,
    project_report,
)
from feedback.services.review import review_queue_refresh
from feedback.services.standing import GoldAnswer, StandingFigures, gold_answers, standing_evaluate

logger = logging.getLogger(__name__)

CATEGORIES = list(PromptCategory.values)
ROW_CHUNK = 20_000


def _chunks(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


MAX_POSITIONS = 8


def _code(field: str, values: list[str]) -> Case:
    """A text column as the index of its value in `values`, computed by the database (−1: none of them)."""
    return Case(
        *(When(**{field: value}, then=Value(index)) for index, value in enumerate(values)),
        default=Value(-1),
        output_field=IntegerField(),
    )


# --- PostgreSQL: rows packed by the server, read straight into numpy ----------------------------------------

PACKED_BLOCK = 65_536  # rows are packed per block of this many consecutive ids, each block one bytea


def packed_int64_rows(
    columns: Sequence[str], source: str, params: Sequence[Any], *, block: str, sort_by: Sequence[int] = (0,)
) -> np.ndarray:
    """The rows of `SELECT columns {source}` as an (n, len(columns)) int64 array sorted by the columns
    `sort_by` (their values must make the order total). PostgreSQL only. `params` fill the columns'
    placeholders, then the source's.

    The server packs each row's values as big-endian int8 (`int8send`) and concatenates a block of rows
    (`GROUP BY {block}`) into one bytea, so the client receives a few large values that numpy reads with
    `frombuffer`: no Python object per value and little client CPU (per-row COPY costs about 1 µs of
    Python per row). The server does not sort (an ordered aggregate sorts every block again, on disk
    past `work_mem`); numpy does. A NULL would drop its row from the packing, so each block also carries
    its row count and a mismatch is refused: the columns must never be NULL.
    """
    packed = " || ".join(f"int8send(({column})::int8)" for column in columns)
    # Packed in a subquery, so that parallel workers pack their rows and the leader only concatenates.
    statement = (
        "SELECT string_agg(s.packed, ''::bytea), count(*) "  # noqa: S608 (the caller's fixed SQL)
        f"FROM (SELECT {packed} AS packed, {block} AS block {source}) s GROUP BY s.block"
    )
    width = len(columns)
    connection.ensure_connection()
    with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
        # Blocks of a few MB are aggregated in memory; compiling the plan (JIT) costs more than it saves.
        # The whole table is read, so parallel workers pay for themselves: the default costs (tuned for
        # queries returning few rows) keep the planner from starting them for the scan and the packing.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL parallel_setup_cost = 0")
        cursor.execute("SET LOCAL parallel_tuple_cost = 0")
        blocks = []
        # Streamed a block at a time (libpq's single-row mode): a block's bytes are freed once converted,
        # instead of the whole result waiting in the client's memory.
        for values, count in cursor.stream(statement, params, binary=True):
            if values is None or len(values) != count * width * 8:
                raise ValueError("packed rows had NULL values: every column must be non-NULL")
            # Native byte order block by block: the received bytes go as soon as they are converted.
            blocks.append(np.frombuffer(values, dtype=">i8").astype(np.int64))
    if not blocks:
        return np.zeros((0, width), dtype=np.int64)
    data = np.concatenate(blocks).reshape(-1, width)
    del blocks
    if len(sort_by) == 1:
        key = data[:, sort_by[0]]
        if len(key) > 1 and not (key[1:] >= key[:-1]).all():
            # Blocks arrive in any order, each mostly in order: a stable sort (timsort) uses those runs.
            data = data[np.argsort(key, kind="stable")]
        return data
    return data[np.lexsort([data[:, column] for column in reversed(sort_by)])]


def _table(model: type[Any]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _ordinary_judgments(*joins: str) -> str:
    """The FROM and WHERE of a project's judgments of ordinary comparisons up to a mark (parameters: the
    project's id, the mark)."""
    return (
        f"FROM {_table(Judgment)} j JOIN {_table(Comparison)} c ON c.id = j.comparison_id {' '.join(joins)} "
        "WHERE c.project_id = %s AND NOT c.is_gold AND j.id <= %s"
    )


def _judgment_rows_packed(project: Project, high_water_mark: int, *, positions: int) -> np.ndarray:
    """`judgment_arrays`' columns, computed by PostgreSQL (codes by `array_position`)."""
    columns = [
        "j.id",
        "j.comparison_id",
        "j.annotator_id",
        "coalesce(array_position(%s::text[], j.choice::text), 0) - 1",
        "coalesce(j.strength, 0)",
        f"coalesce(j.time_spent_ms, {int(NOT_TIMED)})",
        "coalesce(array_position(%s::text[], p.category::text), 0) - 1",
        "coalesce(c.characters, -1)",
        *(f"coalesce((j.ranking ->> {position})::int, 0)" for position in range(positions)),
    ]
    return packed_int64_rows(
        columns,
        _ordinary_judgments(f"JOIN {_table(Prompt)} p ON p.id = c.prompt_id"),
        [list(CHOICES), CATEGORIES, project.pk, high_water_mark],
        block=f"j.id / {PACKED_BLOCK}",
    )


def _characters_by_comparison(comparison_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The comparisons' responses' characters together, summed from the texts: for comparisons whose
    count was not stored when they were made. Returns (ids in order, characters)."""
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(comparison_ids), ROW_CHUNK):
        pairs.extend(
            ComparisonResponse.objects.filter(
                comparison_id__in=comparison_ids[start : start + ROW_CHUNK].tolist()
            )
            .values("comparison_id")
            .annotate(characters=Sum(Length("response__text")))
            .order_by("comparison_id")
            .values_list("comparison_id", "characters")
        )
    table = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return table[:, 0], table[:, 1]


def judgment_arrays(*, project: Project, high_water_mark: int) -> JudgmentArrays:
    """The project's judgments of ordinary comparisons up to the mark, in id order, as arrays."""
    is_ranking = project.comparison_mode == Project.ComparisonMode.RANKING
    judgments = Judgment.objects.filter(
        comparison__project=project, comparison__is_gold=False, pk__lte=high_water_mark
    ).order_by("pk")
    columns: list[Any] = [
        "pk",
        "comparison_id",
        "annotator_id",
        _code("choice", list(CHOICES)),
        Coalesce("strength", Value(0)),
        Coalesce("time_spent_ms", Value(NOT_TIMED)),
        _code("comparison__prompt__category", CATEGORIES),
        Coalesce("comparison__characters", Value(-1)),
    ]
    names = ["pk", "comparison", "annotator", "choice", "strength", "time_ms", "category", "characters"]
    if connection.vendor == "postgresql":
        data = _judgment_rows_packed(project, high_water_mark, positions=MAX_POSITIONS if is_ranking else 0)
        return _judgment_table(project, data, is_ranking=is_ranking)
    if is_ranking:
        for position in range(MAX_POSITIONS):
            rank = Cast(KT(f"ranking__{position}"), IntegerField())
            columns.append(Coalesce(rank, Value(0), output_field=IntegerField()))
            names.append(f"rank{position}")
    # Computed columns under names of their own: annotations may not shadow the model's fields.
    annotations = {
        f"q_{name}": column
        for name, column in zip(names, columns, strict=True)
        if not isinstance(column, str)
    }
    rows = judgments.annotate(**annotations).values_list(
        *(
            column if isinstance(column, str) else f"q_{name}"
            for name, column in zip(names, columns, strict=True)
        )
    )
    # An array a chunk at a time: a list of a million row tuples would double the peak memory.
    blocks = [
        np.array(chunk, dtype=np.int64) for chunk in _chunks(rows.iterator(chunk_size=ROW_CHUNK), ROW_CHUNK)
    ]
    data = np.concatenate(blocks) if blocks else np.zeros((0, len(names)), dtype=np.int64)
    del blocks
    return _judgment_table(project, data, is_ranking=is_ranking)


def _judgment_table(project: Project, data: np.ndarray, *, is_ranking: bool) -> JudgmentArrays:
    """The arrays from the rows read (pk, comparison, annotator, choice code, strength, time, category
    code, the comparison's characters or −1 where not stored, then a rank per position in ranking
    projects)."""
    count = len(data)
    comparison = data[:, 1]
    choice = data[:, 3].astype(np.int8)
    ranks = data[:, 8:].astype(np.int8) if is_ranking else None
    if ranks is not None:
        alone = (ranks == 1).sum(axis=1) == 1
        first = np.where(alone, np.argmax(ranks == 1, axis=1), -1).astype(np.int8)
    else:
        first = np.where(choice == 0, 0, np.where(choice == 1, 1, -1)).astype(np.int8)
    shown = data[:, 7]
    if (missing := shown < 0).any():  # comparisons made before the count was stored, or by hand
        compared, characters = _characters_by_comparison(np.unique(comparison[missing]))
        found = np.minimum(np.searchsorted(compared, comparison[missing]), max(len(compared) - 1, 0))
        shown = shown.copy()
        shown[missing] = (
            np.where(compared[found] == comparison[missing], characters[found], 0) if len(compared) else 0
        )
    return JudgmentArrays(
        comparison=comparison,
        annotator=data[:, 2],
        choice=choice,
        strength=data[:, 4].astype(np.int16),
        first=first,
        size=np.full(count, project.responses_per_comparison, dtype=np.int8),
        time_ms=data[:, 5],
        characters=shown,
        category=data[:, 6].astype(np.int16),
        sequence=data[:, 0],
        ranks=ranks,
    )


def rating_arrays(*, project: Project, high_water_mark: int, axes: list[str]) -> RatingArrays:
    """Every score on the project's rubric in its judgments of ordinary comparisons up to the mark."""
    if connection.vendor == "postgresql":
        return _rating_arrays_packed(project, high_water_mark, axes)
    axis_index = {key: index for index, key in enumerate(axes)}
    units, axis_codes, annotators, scores = [], [], [], []
    rated = (
        Judgment.objects.filter(
            comparison__project=project, comparison__is_gold=False, pk__lte=high_water_mark
        )
        .exclude(ratings={})
        .values_list("comparison_id", "annotator_id", "ratings")
        .order_by("pk")
    )
    for comparison_id, annotator_id, ratings in rated.iterator(chunk_size=5000):
        for response_id, by_axis in ratings.items():
            unit = (comparison_id << 32) | int(response_id)
            for key, score in by_axis.items():
                if key in axis_index:
                    units.append(unit)
                    axis_codes.append(axis_index[key])
                    annotators.append(annotator_id)
                    scores.append(score)
    # Units numbered 0, 1, … once here, so that each axis's alpha numbers its units by counting.
    _, unit_codes = np.unique(np.array(units, dtype=np.int64), return_inverse=True)
    return RatingArrays(
        unit=unit_codes.astype(np.int64),
        axis=np.array(axis_codes, dtype=np.int16),
        annotator=np.array(annotators, dtype=np.int64),
        score=np.array(scores, dtype=np.int64),
    )


NO_SCORE = np.iinfo(np.int64).min  # an axis a judgment did not score for a response


def _rating_arrays_packed(project: Project, high_water_mark: int, axes: list[str]) -> RatingArrays:
    """`rating_arrays` read by PostgreSQL as one row per rated judgment and response shown, a column per
    axis (`ratings -> response -> axis`, NO_SCORE where absent), then turned long here. Key lookups in
    the JSON are cheaper on the server than unnesting every score as a row of its own (`jsonb_each`)."""
    rows = packed_int64_rows(
        [
            "j.comparison_id",
            "e.response_id",
            "j.annotator_id",
            *(f"coalesce((j.ratings -> e.response_id::text ->> %s)::int8, {NO_SCORE})" for _ in axes),
        ],
        _ordinary_judgments(f"JOIN {_table(ComparisonResponse)} e ON e.comparison_id = j.comparison_id")
        + " AND j.ratings <> '{}'::jsonb",
        [*axes, project.pk, high_water_mark],
        block=f"j.id / {PACKED_BLOCK}",
        sort_by=(0, 2, 1),  # comparison, annotator (one judgment each), response
    )
    scores = rows[:, 3:]
    scored_row, axis = np.nonzero(scores != NO_SCORE)  # row-major: each row's axes in rubric order
    _, unit_codes = np.unique((rows[scored_row, 0] << 32) | rows[scored_row, 1], return_inverse=True)
    return RatingArrays(
        unit=unit_codes.astype(np.int64),
        axis=axis.astype(np.int16),
        annotator=rows[scored_row, 2],
        score=scores[scored_row, axis],
    )


def _timeline_times(report: dict[str, Any]) -> None:
    """Give each timeline point the time of its last judgment (ISO 8601), read for those few ids."""
    points = report["alpha_over_time"]
    times = dict(
        Judgment.objects.filter(pk__in=[point["last"] for point in points]).values_list("pk", "created_at")
    )
    for point in points:
        moment: datetime = times[point.pop("last")]
        point["until"] = moment.isoformat()


# A gold item most of whose (at least this many) answers disagree with its verdict may have it wrong.
GOLD_DISPUTE_MIN_ANSWERS = 3


def _review_candidates(
    project: Project, table: JudgmentArrays, graded: list[GoldAnswer], *, is_ranking: bool
) -> tuple[list[int], list[int], list[int]]:
    """Comparisons for the review queue: agreement below the project's threshold (the share of judgments
    that made the majority choice), a flag raised, a gold item most annotators answered otherwise."""
    low: list[int] = []
    if len(table) and project.review_agreement_below > 0:
        units, unit_codes = np.unique(table.comparison, return_inverse=True)
        _, value_codes = np.unique(choice_values(table, is_ranking=is_ranking), return_inverse=True)
        width = int(value_codes.max()) + 1
        counts = np.bincount(unit_codes * width + value_codes, minlength=len(units) * width).reshape(
            -1, width
        )
        totals = counts.sum(axis=1)
        low = units[(totals >= 2) & (counts.max(axis=1) < project.review_agreement_below * totals)].tolist()
    flagged = list(
        Judgment.objects.filter(comparison__project=project)
        .exclude(flags=[])
        .values_list("comparison_id", flat=True)
        .distinct()
    )
    answers: dict[int, list[bool]] = {}
    for answer in graded:
        answers.setdefault(answer.comparison_id, []).append(answer.correct)
    disputed = [
        comparison_id
        for comparison_id, correct in answers.items()
        if len(correct) >= GOLD_DISPUTE_MIN_ANSWERS and sum(correct) * 2 < len(correct)
    ]
    return low, flagged, disputed


def project_quality_refresh(*, project_id: int) -> ProjectQuality | None:
    """Compute and store the project's quality figures, then update its annotators' standings. None when
    the project is gone. Idempotent: a second run over the same judgments stores the same figures."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    started = time.perf_counter()
    high_water_mark = Judgment.objects.aggregate(mark=Max("pk"))["mark"] or 0
    axes = [axis["key"] for axis in project.rating_rubric or []]
    is_ranking = project.comparison_mode == Project.ComparisonMode.RANKING
    table = judgment_arrays(project=project, high_water_mark=high_water_mark)
    ratings = rating_arrays(project=project, high_water_mark=high_water_mark, axes=axes)
    graded = gold_answers(project_id=project.pk)
    answered = Counter(answer.annotator_id for answer in graded)
    correct = Counter(answer.annotator_id for answer in graded if answer.correct)
    gold = {person: (answered[person], correct[person]) for person in answered}
    report = project_report(
        table,
        ratings,
        axes=axes,
        categories=CATEGORIES,
        is_ranking=is_ranking,
        responses=project.responses_per_comparison,
    )
    report["gold"] = {
        "items": project.comparisons.filter(is_gold=True).count(),
        "answered": sum(answered.values()),
        "correct": sum(correct.values()),
    }
    _timeline_times(report)
    annotators = annotator_reports(
        table,
        gold,
        is_ranking=is_ranking,
        responses=project.responses_per_comparison,
        gold_min_answers=project.gold_min_answers,
        gold_warn_accuracy=project.gold_warn_accuracy,
    )
    # Standings from the figures in hand: the gold answers and first-position counts of every annotator
    # never reinstated (one read each otherwise: their counts start at the reinstatement).
    for entry in annotators:
        standing_evaluate(
            project_id=project.pk,
            annotator_id=entry.annotator,
            figures=StandingFigures(
                gold_answered=entry.gold_answered,
                gold_correct=entry.gold_correct,
                first=entry.first_chosen,
                decisive=entry.decisive,
            ),
        )
    low, flagged, disputed = _review_candidates(project, table, graded, is_ranking=is_ranking)
    review_queue_refresh(project=project, low_agreement=low, flagged=flagged, gold_disputed=disputed)
    quality = quality_store(
        project=project,
        report=report,
        annotators=annotators,
        high_water_mark=high_water_mark,
        seconds=time.perf_counter() - started,
    )
    logger.info("Quality of project %s: %d judgments in %.2f s", project.slug, len(table), quality.seconds)
    return quality


@transaction.atomic
def quality_store(
    *,
    project: Project,
    report: dict[str, Any],
    annotators: list[AnnotatorReport],
    high_water_mark: int,
    seconds: float,
) -> ProjectQuality:
    """Add the project's figures to its history and replace every annotator's, in one transaction."""
    now = timezone.now()
    quality = ProjectQuality.objects.create(
        project=project, computed_at=now, seconds=seconds, high_water_mark=high_water_mark, report=report
    )
    # Every pair's kappa is read from the newest report only (the admin's heatmap, the API): the history
    # keeps the rest of each refresh's figures, or it would grow by megabytes a refresh (2 MB at 200
    # annotators). `pair_count` says how many there were.
    older = ProjectQuality.objects.filter(project=project, report__kappa__has_key="pairs").exclude(
        pk=quality.pk
    )
    for previous in older:
        kappa = previous.report["kappa"]
        kappa["pair_count"] = len(kappa.pop("pairs"))
        previous.save(update_fields=["report"])
    AnnotatorQuality.objects.filter(project=project).delete()
    AnnotatorQuality.objects.bulk_create(
        AnnotatorQuality(
            project=project,
            annotator_id=entry.annotator,
            computed_at=now,
            anomalies=[{"code": anomaly.code, "reason": anomaly.reason} for anomaly in entry.anomalies],
            **{name: value for name, value in vars(entry).items() if name not in ("annotator", "anomalies")},
        )
        for entry in annotators
    )
    return quality


def projects_due_for_quality() -> list[int]:
    """Active projects with judgments newer than their last computation (or never computed)."""
    latest = dict(
        ProjectQuality.objects.values("project_id")
        .annotate(mark=Max("high_water_mark"))
        .values_list("project_id", "mark")
    )
    newest = (
        Judgment.objects.filter(comparison__project__is_active=True)
        .values("comparison__project_id")
        .annotate(mark=Max("pk"))
        .values_list("comparison__project_id", "mark")
        .order_by()
    )
    return sorted(project_id for project_id, mark in newest if mark > latest.get(project_id, 0))

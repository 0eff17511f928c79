"""Judgments grouped by comparison, streamed from the database with bounded memory.

On PostgreSQL one statement does it, one row per comparison: its prompt's columns, its entries (position,
response id, text, checkpoint) as arrays in position order, and its selected judgments as one array per
column. The rows arrive in binary through psycopg's `Cursor.stream()` in chunks of STREAM_ROWS (libpq's
chunked-rows mode): the server keeps producing while Python builds rows, and psycopg's C loaders decode a
chunk at a time, without Django's per-value converters (jsonb goes through orjson). Only the columns the
format needs are read: ratings, rationale, flags, timing and usernames only for the formats that write
them. Projects and checkpoint names are read once, before the stream: nothing else may run on the
connection while it is open.

Elsewhere (SQLite, the demo's default) three ordered ORM streams are merged in lockstep by comparison
id: the comparisons (with their prompt), their entries, and their judgments. Both sources yield equal
groups; the tests compare them.

Order is part of the export's bytes: comparisons by id, entries by position, judgments by annotator id
(the order of the unique (comparison, annotator) index, which serves it without a sort).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, cast

import orjson
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet

from feedback.export.options import ExportOptions
from feedback.export.quality import ExportQuality, export_quality
from feedback.models import (
    PARTICIPANT_SQL,
    PEOPLE,
    PEOPLE_ID,
    Comparison,
    ComparisonResponse,
    Judgment,
    PolicyCheckpoint,
    Project,
    Prompt,
    Response,
    participant,
)

CHUNK_SIZE = 2_000
# Rows per chunk of the PostgreSQL stream: enough that psycopg's per-chunk cost vanishes, few enough that
# the first rows come at once and a chunk of large comparisons stays small.
STREAM_ROWS = 100

# Formats whose rows carry more of a judgment than its verdict (the judgments audit; rankings' ratings).
FULL_JUDGMENT_FORMATS = frozenset({"rankings", "judgments", "gold"})


@dataclass(slots=True)
class Entry:
    position: int
    response_id: int
    text: str
    checkpoint: str


@dataclass(slots=True)
class JudgmentRecord:
    """A judgment as the export reads it. The fields after `strength` are read only for the formats in
    `FULL_JUDGMENT_FORMATS`; for the others they keep their empty defaults."""

    id: int
    annotator_id: int
    choice: str
    ranking: list[int]
    strength: int | None
    annotator: str = ""
    ratings: dict[str, dict[str, int]] = field(default_factory=dict)
    rationale: str = ""
    flags: list[str] = field(default_factory=list)
    time_spent_ms: int | None = None
    created_at: datetime | None = None


@dataclass(slots=True)
class ComparisonGroup:
    comparison_id: int
    project: str
    prompt_id: str
    prompt_pk: int
    conversation: list[dict[str, str]]
    category: str
    content_hash: str
    completion_template: str
    strength_labels: list[str]
    entries: list[Entry]
    judgments: list[JudgmentRecord]


def judgments_selected(
    options: ExportOptions, *, high_water_mark: int, quality: ExportQuality | None = None
) -> QuerySet[Judgment]:
    """The judgments an export covers: at or below the mark, never of a gold item (the `gold` format
    lists those, with every answer, whoever gave it), and through every filter of `options`; the quality
    and review filters as `quality` decided them (default: as of now)."""
    if options.format == "gold":
        condition = Q(id__lte=high_water_mark, comparison__is_gold=True)
    else:
        if quality is None:
            quality = export_quality(options, high_water_mark=high_water_mark)
        condition = Q(id__lte=high_water_mark, comparison__is_gold=False) & quality.condition(options)
        if options.exclude_flagged:
            condition &= Q(flags=[])
    if options.projects:
        condition &= Q(comparison__project__slug__in=options.projects)
    if options.since:
        condition &= Q(created_at__gte=options.since)
    if options.until:
        condition &= Q(created_at__lt=options.until)
    if options.exclude_annotators:
        condition &= ~Q(annotator__username__in=options.exclude_annotators)
    judgments = Judgment.objects.filter(condition)
    if options.checkpoints:
        # Every response of the comparison comes from one of the listed checkpoints (`people`: people's
        # answers).
        listed = Q(response__checkpoint__name__in=options.checkpoints)
        if PEOPLE in options.checkpoints:
            listed |= Q(response__source=Response.Source.HUMAN)
        foreign = ComparisonResponse.objects.filter(comparison=OuterRef("comparison_id")).exclude(listed)
        judgments = judgments.filter(~Exists(foreign))
    return judgments


def comparison_groups(
    options: ExportOptions, *, high_water_mark: int, quality: ExportQuality | None = None
) -> Iterator[ComparisonGroup]:
    """Every comparison with at least one selected judgment, in id order, with its entries and judgments.

    Must run inside a transaction (the caller's `transaction.atomic()`). On PostgreSQL the connection is
    busy with the stream until the iterator is exhausted or closed: run no other query meanwhile (the
    quality decisions are read before it starts).
    """
    full = options.format in FULL_JUDGMENT_FORMATS
    if quality is None:
        quality = export_quality(options, high_water_mark=high_water_mark)
    if connection.vendor == "postgresql":
        return _groups_by_stream(options, high_water_mark=high_water_mark, full=full, quality=quality)
    return _groups_by_orm(options, high_water_mark=high_water_mark, full=full, quality=quality)


# --- PostgreSQL: one statement, streamed in binary ---------------------------------------------------------

# (alias, judgment lookup, PostgreSQL type the row carries it as)
_JUDGMENT_COLUMNS = (
    ("k_comparison", "comparison_id", "int8"),
    ("k_id", "id", "int8"),
    ("k_annotator", "annotator_id", "int8"),
    ("k_choice", "choice", "text"),
    ("k_ranking", "ranking", "jsonb"),
    ("k_strength", "strength", "int4"),
)
_FULL_JUDGMENT_COLUMNS = (
    ("k_username", "annotator__username", "text"),
    ("k_ratings", "ratings", "jsonb"),
    ("k_rationale", "rationale", "text"),
    ("k_flags", "flags", "jsonb"),
    ("k_time", "time_spent_ms", "int8"),
    ("k_created", "created_at", "timestamptz"),
)
# A comparison's own columns: (SQL expression, type).
_COMPARISON_COLUMNS = (
    ("c.project_id", "int8"),
    ("p.external_id", "text"),
    ("p.id", "int8"),
    ("p.conversation", "jsonb"),
    ("p.category", "text"),
    ("p.content_hash", "text"),
)
# Its entries, each column aggregated into an array in position order: (column of `x`, element type).
_ENTRY_COLUMNS = (("position", "int4"), ("response_id", "int8"), ("text", "text"), ("checkpoint_id", "int8"))


def _groups_by_stream(
    options: ExportOptions, *, high_water_mark: int, full: bool, quality: ExportQuality | None = None
) -> Iterator[ComparisonGroup]:
    """One row per comparison: its own columns, its entries as arrays, and its selected judgments as one
    array per column (grouped from the judgments in (comparison, annotator) order, which an index
    serves). A third as many rows as judgments, so a third of the per-row cost on both sides."""
    import psycopg
    from psycopg import sql
    from psycopg.types.json import set_json_loads

    judgment_columns = _JUDGMENT_COLUMNS + (_FULL_JUDGMENT_COLUMNS if full else ())
    selected = judgments_selected(options, high_water_mark=high_water_mark, quality=quality).order_by(
        "comparison_id", "annotator_id"
    )
    # The filters stay Django's (one definition for both sources); its SQL keeps its %s placeholders,
    # which psycopg sends as the statement's parameters.
    inner, params = selected.values(
        **{alias: F(lookup) for alias, lookup, _ in judgment_columns}
    ).query.sql_with_params()
    aggregates = [
        sql.SQL("array_agg(i.{alias}::{kind}) AS {alias}").format(
            alias=sql.Identifier(alias), kind=sql.SQL(kind)
        )
        for alias, _, kind in judgment_columns[1:]
    ]
    select: list[sql.Composable] = [sql.SQL("g.k_comparison::int8")]
    select += [
        sql.SQL("{}::{}").format(sql.SQL(expression), sql.SQL(kind))
        for expression, kind in _COMPARISON_COLUMNS
    ]
    select += [sql.SQL("x.{}").format(sql.Identifier(f"k_{column}")) for column, _ in _ENTRY_COLUMNS]
    select += [sql.SQL("g.{}").format(sql.Identifier(alias)) for alias, _, _ in judgment_columns[1:]]
    entry_arrays = sql.SQL(", ").join(
        sql.SQL("array_agg(e.{}::{}) AS {}").format(
            sql.Identifier(column), sql.SQL(kind), sql.Identifier(f"k_{column}")
        )
        for column, kind in _ENTRY_COLUMNS
    )
    statement = sql.SQL(
        "SELECT {select}"
        " FROM (SELECT i.k_comparison, {aggregates} FROM ({inner}) i GROUP BY i.k_comparison) g"
        " JOIN {comparisons} c ON c.id = g.k_comparison JOIN {prompts} p ON p.id = c.prompt_id"
        " CROSS JOIN LATERAL (SELECT {entry_arrays} FROM (SELECT e.position, e.response_id, r.text,"
        " {participant} AS checkpoint_id FROM {entries} e JOIN {responses} r ON r.id = e.response_id"
        " WHERE e.comparison_id = c.id ORDER BY e.position) e) x"
        " ORDER BY g.k_comparison"
    ).format(
        select=sql.SQL(", ").join(select),
        aggregates=sql.SQL(", ").join(aggregates),
        inner=sql.SQL(inner),  # Django's compiled SQL; its values are in `params`
        comparisons=sql.Identifier(Comparison._meta.db_table),
        prompts=sql.Identifier(Prompt._meta.db_table),
        entry_arrays=entry_arrays,
        entries=sql.Identifier(ComparisonResponse._meta.db_table),
        responses=sql.Identifier(Response._meta.db_table),
        participant=sql.SQL(PARTICIPANT_SQL),
    )
    # Read before the stream: nothing else may run on the connection while it is open.
    projects = {
        pk: (slug, template, labels)
        for pk, slug, template, labels in Project.objects.values_list(
            "pk", "slug", "completion_template", "strength_labels"
        )
    }
    checkpoints = participant_names()
    connection.ensure_connection()
    # A savepoint: a stream closed early (a dropped download) is cancelled on the server, which aborts
    # what it runs in; rolling back to the savepoint leaves the caller's transaction usable.
    with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
        set_json_loads(orjson.loads, cursor)
        # JIT compiles the plan's expressions before the first row, and a stream gains nothing from it.
        # Parallel workers neither: the client sets the pace, and the plan they get (each worker grouping
        # every judgment for its share of comparisons) takes CPU from the client.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        rows = cast(Generator[Any], cursor.stream(statement, params, binary=True, size=STREAM_ROWS))
        try:
            for row in rows:
                yield _group_of(row, projects, checkpoints)
        finally:
            rows.close()  # now, not at garbage collection: the savepoint's rollback needs the connection


_ENTRIES_AT = 1 + len(_COMPARISON_COLUMNS)
_JUDGMENTS_AT = _ENTRIES_AT + len(_ENTRY_COLUMNS)
_by_position = attrgetter("position")
_by_annotator = attrgetter("annotator_id")


def participant_names() -> dict[int, str]:
    """Participant id → the name exports show: each checkpoint's, and `PEOPLE` for people's answers
    (imported responses, −1, have none)."""
    return {**dict(PolicyCheckpoint.objects.values_list("pk", "name")), PEOPLE_ID: PEOPLE}


def _group_of(
    row: tuple[Any, ...],
    projects: dict[int, tuple[str, str, list[str]]],
    checkpoints: dict[int, str],
) -> ComparisonGroup:
    project_id, external_id, prompt_pk, conversation, category, content_hash = row[1:_ENTRIES_AT]
    slug, template, labels = projects[project_id]
    positions, response_ids, texts, checkpoint_ids = row[_ENTRIES_AT:_JUDGMENTS_AT]
    entries = [
        # Imported responses (gold items) have no checkpoint; people's answers are `PEOPLE`'s.
        Entry(position, response_id, text, checkpoints.get(checkpoint_id, ""))
        for position, response_id, text, checkpoint_id in zip(
            positions, response_ids, texts, checkpoint_ids, strict=True
        )
    ]
    judgments = [JudgmentRecord(*values) for values in zip(*row[_JUDGMENTS_AT:], strict=True)]
    # Array order follows the ordered input in practice; the export's bytes must not rest on it.
    entries.sort(key=_by_position)
    judgments.sort(key=_by_annotator)
    return ComparisonGroup(
        row[0],
        slug,
        external_id,
        prompt_pk,
        conversation,
        category,
        content_hash,
        template,
        labels,
        entries,
        judgments,
    )


# --- Other backends: three ORM streams merged ----------------------------------------------------------


def _groups_by_orm(
    options: ExportOptions, *, high_water_mark: int, full: bool, quality: ExportQuality | None = None
) -> Iterator[ComparisonGroup]:
    judgments = judgments_selected(options, high_water_mark=high_water_mark, quality=quality)
    comparison_ids = judgments.values("comparison_id")
    comparisons = _rows(
        Comparison.objects.filter(id__in=comparison_ids).order_by("id"),
        "id",
        "project__slug",
        "prompt__external_id",
        "prompt_id",
        "prompt__conversation",
        "prompt__category",
        "prompt__content_hash",
        "project__completion_template",
        "project__strength_labels",
    )
    entries = _rows(
        ComparisonResponse.objects.filter(comparison_id__in=comparison_ids).order_by(
            "comparison_id", "position"
        ),
        "comparison_id",
        "position",
        "response_id",
        "response__text",
        "response__checkpoint_id",
        "response__source",
    )
    names = participant_names()
    judgment_columns = _JUDGMENT_COLUMNS + (_FULL_JUDGMENT_COLUMNS if full else ())
    judgment_rows = _rows(
        judgments.order_by("comparison_id", "annotator_id"), *(lookup for _, lookup, _ in judgment_columns)
    )
    pending_entry = next(entries, None)
    pending_judgment = next(judgment_rows, None)
    for row in comparisons:
        comparison_id = row[0]
        group_entries: list[Entry] = []
        while pending_entry is not None and pending_entry[0] == comparison_id:
            _, position, response_id, text, checkpoint_id, source = pending_entry
            group_entries.append(
                Entry(position, response_id, text, names.get(participant(checkpoint_id, source), ""))
            )
            pending_entry = next(entries, None)
        group_judgments: list[JudgmentRecord] = []
        while pending_judgment is not None and pending_judgment[0] == comparison_id:
            group_judgments.append(JudgmentRecord(*pending_judgment[1:]))
            pending_judgment = next(judgment_rows, None)
        if not group_judgments:
            # Cannot happen while the three streams select the same comparisons; a comparison without
            # judgments would otherwise become a row with no votes.
            continue
        yield ComparisonGroup(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            group_entries,
            group_judgments,
        )


def _rows(queryset: QuerySet[Any], *fields: str) -> Iterator[tuple[Any, ...]]:
    # values_list().iterator(): chunked fetches; the ORM's converters give the same Python types as the
    # PostgreSQL stream's loaders (JSON decoded, datetimes aware).
    return iter(queryset.values_list(*fields).iterator(chunk_size=CHUNK_SIZE))

"""Judgments grouped by comparison, streamed from the database with bounded memory.

Three ordered streams are merged in lockstep by comparison id: the comparisons (with their prompt), their
entries (position, response text, checkpoint), and their judgments. Each is one server-side cursor on
PostgreSQL (`iterator()` inside a transaction, so no `WITH HOLD` materialisation), read in chunks; text
is sent once per comparison rather than once per judgment. Only one comparison's rows are in memory.

Order is part of the export's bytes: comparisons by id, entries by position, judgments by annotator id
(the order of the unique (comparison, annotator) index, which serves it without a sort).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from feedback.export.options import ExportOptions
from feedback.models import Comparison, ComparisonResponse, Judgment

CHUNK_SIZE = 2_000


@dataclass(frozen=True, slots=True)
class Entry:
    position: int
    response_id: int
    text: str
    checkpoint: str


@dataclass(frozen=True, slots=True)
class JudgmentRecord:
    id: int
    annotator_id: int
    annotator: str
    choice: str
    ranking: list[int]
    strength: int | None
    ratings: dict[str, dict[str, int]]
    rationale: str
    flags: list[str]
    time_spent_ms: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
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


def judgments_selected(options: ExportOptions, *, high_water_mark: int) -> QuerySet[Judgment]:
    """The judgments an export covers: at or below the mark, and through every filter of `options`."""
    condition = Q(id__lte=high_water_mark)
    if options.projects:
        condition &= Q(comparison__project__slug__in=options.projects)
    if options.since:
        condition &= Q(created_at__gte=options.since)
    if options.until:
        condition &= Q(created_at__lt=options.until)
    if options.exclude_flagged:
        condition &= Q(flags=[])
    if options.exclude_annotators:
        condition &= ~Q(annotator__username__in=options.exclude_annotators)
    judgments = Judgment.objects.filter(condition)
    if options.checkpoints:
        # Every response of the comparison comes from one of the listed checkpoints.
        foreign = ComparisonResponse.objects.filter(comparison=OuterRef("comparison_id")).exclude(
            response__checkpoint__name__in=options.checkpoints
        )
        judgments = judgments.filter(~Exists(foreign))
    return judgments


def comparison_groups(options: ExportOptions, *, high_water_mark: int) -> Iterator[ComparisonGroup]:
    """Every comparison with at least one selected judgment, in id order, with its entries and judgments.

    Must run inside a transaction on PostgreSQL (the caller's `transaction.atomic()`), which keeps the
    server-side cursors plain.
    """
    judgments = judgments_selected(options, high_water_mark=high_water_mark)
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
        "response__checkpoint__name",
    )
    judgment_rows = _rows(
        judgments.order_by("comparison_id", "annotator_id"),
        "comparison_id",
        "id",
        "annotator_id",
        "annotator__username",
        "choice",
        "ranking",
        "strength",
        "ratings",
        "rationale",
        "flags",
        "time_spent_ms",
        "created_at",
    )
    pending_entry = next(entries, None)
    pending_judgment = next(judgment_rows, None)
    for row in comparisons:
        comparison_id = row[0]
        group_entries: list[Entry] = []
        while pending_entry is not None and pending_entry[0] == comparison_id:
            group_entries.append(Entry(*pending_entry[1:]))
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
            comparison_id,
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
    # values_list().iterator(): a server-side cursor on PostgreSQL, chunked fetches elsewhere; the ORM's
    # converters give the same Python types on both backends (JSON decoded, datetimes aware).
    return iter(queryset.values_list(*fields).iterator(chunk_size=CHUNK_SIZE))

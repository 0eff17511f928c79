"""Annotator statistics: how much each annotator judged in each project, how fast, and with which habits.

Everything is counted by the database in one grouped query over judgments, on PostgreSQL and on the
demo's SQLite alike; only the final divisions happen here, so both backends give the same numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Aggregate, Case, Count, FloatField, Q, QuerySet, Sum, Value, When
from django.db.models.lookups import Exact

from feedback.models import Judgment, Project

# A comparison shows at most this many responses (positions 0–7, see ComparisonResponse).
MAX_POSITIONS = 8
SQLITE_MEDIAN_FUNCTION = "RANKWISE_MEDIAN"


class Median(Aggregate):
    """The median of the non-null values of a group, NULL for none; an even count gives the mean of the
    middle two (`PERCENTILE_CONT(0.5)`). SQLite has no such aggregate: `sqlite_median_register` adds one
    to every new SQLite connection (see `AnnotateConfig.ready`)."""

    function = "PERCENTILE_CONT"
    name = "Median"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()
    arity = 1

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        # On a copy: `Aggregate.as_sql` reads the template from the instance when it adds a FILTER clause.
        median = self.copy()
        median.function = SQLITE_MEDIAN_FUNCTION
        median.template = "%(function)s(%(expressions)s)"
        return median.as_sql(compiler, connection, **extra_context)


class _SQLiteMedian:
    """`Median` for SQLite, as Python's sqlite3 module runs aggregates: step per row, then finalize."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        return float(statistics.median(self.values)) if self.values else None


def sqlite_median_register(*, sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """A `connection_created` receiver: gives a new SQLite connection the `Median` aggregate."""
    if connection.vendor == "sqlite":
        connection.connection.create_aggregate(SQLITE_MEDIAN_FUNCTION, 1, _SQLiteMedian)


def _ranked_first_count() -> Any:
    """How many positions a judgment's ranking puts first (rank 1). Positions past the end of the list
    read as NULL in both databases and so count as not first."""
    return sum(
        (
            Case(When(**{f"ranking__{position}": 1}, then=Value(1)), default=Value(0))
            for position in range(MAX_POSITIONS)
        ),
        start=Value(0),
    )


def _strict_preference() -> Q:
    """One response strictly first: A or B in pairwise mode; in k-wise mode (choice `ranked`) a ranking
    with exactly one rank 1 (ranks run 1, 2, … and tied responses share a rank)."""
    return Q(choice__in=[Judgment.Choice.A, Judgment.Choice.B]) | Q(
        Exact(_ranked_first_count(), 1), choice=Judgment.Choice.RANKED
    )


def _left_preference() -> Q:
    """A strict preference for the response shown on the left: position 0, "A"."""
    return Q(choice=Judgment.Choice.A) | Q(
        Exact(_ranked_first_count(), 1), choice=Judgment.Choice.RANKED, ranking__0=1
    )


@dataclass(frozen=True)
class AnnotatorStatistics:
    """One annotator's work in one project. Rates are fractions in [0, 1]; None where undefined."""

    annotator_id: int
    annotator_username: str
    project_id: int
    project_name: str
    judgments: int
    timed_judgments: int  # judgments that recorded their time on the page
    judgments_per_hour: float | None
    median_seconds: float | None
    strict_preferences: int  # judgments that put one response first, alone
    left_share: float | None
    tie_rate: float
    both_bad_rate: float


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def annotator_statistics(
    *, projects: QuerySet[Project] | Iterable[Project] | None = None, since: datetime | None = None
) -> list[AnnotatorStatistics]:
    """One row per (annotator, project) with at least one judgment, ordered by username then project
    name; optionally only judgments in `projects` and created at or after `since`. One query.

    - judgments: how many judgments the annotator made in the project.
    - median_seconds: the median of `time_spent_ms / 1000` over judgments that recorded a time (an even
      count takes the mean of the middle two); None when none did.
    - judgments_per_hour: judgments per hour spent on the page, 3600 × (judgments with a time) / (their
      total seconds); None when none recorded a time, or all recorded zero.
    - left_share: of the judgments that put one response strictly first (choice a or b; or a k-wise
      ranking with exactly one rank 1), the share that put the response shown on the left (position 0,
      "A") first; None when there are none. Near 1 (or 0) means a position bias, not a preference.
    - tie_rate, both_bad_rate: the share of all judgments with choice tie, or both bad.
    """
    judgments = Judgment.objects.all()
    if projects is not None:
        # A queryset stays a subquery; anything else is read once, here.
        chosen = projects if isinstance(projects, QuerySet) else list(projects)
        judgments = judgments.filter(comparison__project__in=chosen)
    if since is not None:
        judgments = judgments.filter(created_at__gte=since)
    rows = (
        judgments.order_by()
        .values("annotator_id", "annotator__username", "comparison__project_id", "comparison__project__name")
        .annotate(
            judgment_total=Count("id"),
            timed_total=Count("id", filter=Q(time_spent_ms__isnull=False)),
            time_spent_ms_total=Sum("time_spent_ms"),
            time_spent_ms_median=Median("time_spent_ms"),
            strict_total=Count("id", filter=_strict_preference()),
            left_total=Count("id", filter=_left_preference()),
            tie_total=Count("id", filter=Q(choice=Judgment.Choice.TIE)),
            both_bad_total=Count("id", filter=Q(choice=Judgment.Choice.BOTH_BAD)),
        )
    )
    result = [
        AnnotatorStatistics(
            annotator_id=row["annotator_id"],
            annotator_username=row["annotator__username"],
            project_id=row["comparison__project_id"],
            project_name=row["comparison__project__name"],
            judgments=row["judgment_total"],
            timed_judgments=row["timed_total"],
            judgments_per_hour=(
                3600 * row["timed_total"] / (row["time_spent_ms_total"] / 1000)
                if row["time_spent_ms_total"]
                else None
            ),
            median_seconds=(
                row["time_spent_ms_median"] / 1000 if row["time_spent_ms_median"] is not None else None
            ),
            strict_preferences=row["strict_total"],
            left_share=_share(row["left_total"], row["strict_total"]),
            tie_rate=row["tie_total"] / row["judgment_total"],
            both_bad_rate=row["both_bad_total"] / row["judgment_total"],
        )
        for row in rows
    ]
    # Sorted here rather than by the database, whose collations differ between PostgreSQL and SQLite.
    return sorted(
        result, key=lambda row: (row.annotator_username, row.project_name, row.annotator_id, row.project_id)
    )

"""The high-water mark of a snapshot: the largest judgment id such that no smaller one can still appear.

Reading `max(id)` alone is not enough on PostgreSQL: ids are drawn when a row is inserted, not when its
transaction commits, so a judgment with a smaller id may commit after the read and would then slip into a
re-export of the "same" snapshot. Taking the table in SHARE mode waits for every transaction that is
inserting judgments (they hold ROW EXCLUSIVE) and holds new ones back for the instant of the read; any
insert after it draws a larger id. Submissions pause for milliseconds, never longer than the slowest
in-flight submit. SQLite has one writer at a time, so its committed max is already such a mark.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.db.models import Max

from feedback.models import Judgment

LOCK_TIMEOUT = "10s"


def table_high_water_marks(*models: Any) -> list[int]:
    """The marks of tables whose rows an export reads by id (judgments; people's answers, review
    decisions and prompts for the formats made of them), taken together: rows written in one transaction
    into two of them (a reviewer's edit and its decision) are either both below their marks or neither.
    Call it outside other transactions: the locks are held until the outermost one ends."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            tables = ", ".join(connection.ops.quote_name(model._meta.db_table) for model in models)
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cursor.execute(f"LOCK TABLE {tables} IN SHARE MODE")
        return [int(model.objects.aggregate(mark=Max("id"))["mark"] or 0) for model in models]


def table_high_water_mark(model: Any) -> int:
    return table_high_water_marks(model)[0]


def judgment_high_water_mark() -> int:
    """Call it outside other transactions: the lock is held until the outermost one ends."""
    return table_high_water_mark(Judgment)

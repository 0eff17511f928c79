"""Returning leases: what the expiry sweep (`annotate.assignment.leases_expire`) and a suspension
(`feedback.services.standing`) both do with the leases they end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from django.db.models import F

from feedback.models import Assignment, Comparison


def leases_return(*, leases: Sequence[tuple[int, int]], now: datetime) -> None:
    """Mark the leases `(assignment id, comparison id)` expired and give their places back to their
    comparisons, updated in id order (the lock order of the assignment engine). The caller holds the
    assignments' row locks, in its transaction."""
    if not leases:
        return
    Assignment.objects.filter(pk__in=[pk for pk, _ in leases]).update(
        state=Assignment.State.EXPIRED, finished_at=now
    )
    freed = Counter(comparison_id for _, comparison_id in leases)
    for comparison_id in sorted(freed):
        Comparison.objects.filter(pk=comparison_id).update(
            lease_count=F("lease_count") - freed[comparison_id]
        )

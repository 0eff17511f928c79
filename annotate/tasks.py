"""Celery tasks of the annotation side (queue `default`)."""

from __future__ import annotations

from celery import shared_task

from annotate.assignment import EXPIRY_SWEEP_LIMIT, leases_expire


@shared_task(name="annotate.expire_leases")
def expire_leases(batch: int = EXPIRY_SWEEP_LIMIT) -> int:
    """Periodic (celery beat): return the places of overdue leases to the pool, in bounded batches.

    Claims sweep too, so this only keeps counts and the admin's open leases current on quiet projects."""
    total = 0
    while expired := leases_expire(limit=batch):
        total += expired
    return total

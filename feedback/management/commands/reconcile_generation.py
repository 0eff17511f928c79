from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser

from feedback.services.generation import generation_reconcile


class Command(BaseCommand):
    help = (
        "Re-send generation chunks whose worker or message was lost: running chunks with no heartbeat "
        "for --stale-after seconds, and queued chunks enqueued longer ago than that. Safe to run any time; "
        "celery beat runs it every 5 minutes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stale-after",
            type=int,
            default=None,
            help="Seconds (default: RANKWISE_GENERATION_STALE_SECONDS, 900).",
        )

    def handle(self, *args: object, stale_after: int | None, **options: object) -> None:
        count = generation_reconcile(
            stale_after=timedelta(seconds=stale_after) if stale_after is not None else None
        )
        self.stdout.write(f"Re-enqueued {count} chunk(s).")

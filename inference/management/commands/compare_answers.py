"""`manage.py compare_answers PROJECT [--from SOURCE] [--against CHECKPOINT] [--seed N]`: put people's
answers into a project's comparisons, against a checkpoint's answers or each other, and print what was
created. Exit status 1 with a message, and nothing written, when the request cannot be met."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.models import PolicyCheckpoint, Project
from feedback.services.answers import AnswersPairingError
from inference.pairing import answers_comparisons_create


class Command(BaseCommand):
    help = (
        "Compare people's answers (accepted, or written where no review was asked) in PROJECT, a pairwise "
        "or ranking project: against --against's answers to the same prompts, or each other without it. "
        "--from takes the answers of another project's prompts (a demonstration project's, say). The "
        "project's pairing strategy and cap apply; running it again creates only what is new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="The slug of the project whose comparisons they join.")
        parser.add_argument(
            "--from", dest="source", default="", help="The slug of the project whose prompts were answered."
        )
        parser.add_argument("--against", default="", help="A checkpoint's name (default: each other).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the pairing (default 0).")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project has the slug {options['project']!r}.")
        source = Project.objects.filter(slug=options["source"]).first() if options["source"] else project
        if source is None:
            raise CommandError(f"No project has the slug {options['source']!r} (--from).")
        against = None
        if options["against"]:
            against = PolicyCheckpoint.objects.filter(name=options["against"]).first()
            if against is None:
                raise CommandError(f"No checkpoint is named {options['against']!r} (--against).")
        try:
            report = answers_comparisons_create(
                project=project, source=source, against=against, seed=options["seed"]
            )
        except AnswersPairingError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(report.summary()))

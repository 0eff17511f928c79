"""`manage.py import_prompts FILE --project SLUG`: the import service from the command line.

Exit status 0 when the file was accepted (conflicts are listed but are not failures: the stored prompts
were kept), 1 with every bad line listed when it was refused.
"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.models import Project
from feedback.services.prompts import PromptImportError, prompt_file_format_for, prompts_import


class Command(BaseCommand):
    help = "Import prompts from a JSONL or CSV file into a project (all or nothing, idempotent by id)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="A .jsonl or .csv file of prompts.")
        parser.add_argument("--project", required=True, help="Slug of the project to import into.")
        parser.add_argument(
            "--format", choices=["jsonl", "csv"], help="File format; by default taken from the file name."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            project = Project.objects.get(slug=options["project"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {options['project']!r}.") from None
        try:
            file_format = options["format"] or prompt_file_format_for(path.name)
        except ValueError as error:
            raise CommandError(str(error)) from None
        try:
            with path.open("rb") as source:
                report = prompts_import(project=project, source=source, file_format=file_format)
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror or error}") from None
        except PromptImportError as error:
            for line_error in error.errors:
                self.stderr.write(f"{path}:{line_error}")
            raise CommandError(f"{path}: {error}") from None

        for conflict in report.conflicts:
            self.stderr.write(self.style.WARNING(f"{path}:{conflict}"))
        self.stdout.write(self.style.SUCCESS(f"{path} into {project.slug}: {report.summary()}"))

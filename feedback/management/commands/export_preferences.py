"""`manage.py export_preferences --format preference --output DIR`: an export written straight to disk.

The options are the REST API's and the admin's (one parser, `ExportOptions.from_mapping`). The command
prints the high-water mark it exported; `--high-water-mark N` (or `--snapshot EXPORT_ID`) writes that
snapshot again, byte for byte. Exit status 1 with every bad option named when the options are refused.
"""

from functools import partial
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.export.answers import source_marks_now
from feedback.export.options import (
    AGGREGATIONS,
    BOTH_BAD_POLICIES,
    EDIT_PAIRS,
    FORMATS,
    KWISE_EXPANSIONS,
    OUTPUTS,
    TIE_POLICIES,
    ExportOptions,
    ExportOptionsError,
)
from feedback.export.snapshot import judgment_high_water_mark
from feedback.export.writer import export_write
from feedback.models import Export
from feedback.services.leaderboard import export_leaderboard

# Command-line flag → option name, for the flags whose names differ.
RENAMED = {"project": "projects", "checkpoint": "checkpoints", "exclude_annotator": "exclude_annotators"}


class Command(BaseCommand):
    help = "Export judgments as a dataset TRL trainers read (JSONL, Parquet or a datasets directory)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", type=Path, required=True, help="Directory to write (absent or empty)."
        )
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--aggregation", choices=AGGREGATIONS)
        parser.add_argument("--project", action="append", help="Project slug; repeat for several.")
        parser.add_argument("--checkpoint", action="append", help="Checkpoint name; repeat for several.")
        parser.add_argument("--since", help="Judgments made at or after this ISO 8601 date-time.")
        parser.add_argument("--until", help="Judgments made before this ISO 8601 date-time.")
        parser.add_argument("--min-judgments", help="Comparisons with at least this many judgments.")
        parser.add_argument("--min-agreement", help="Comparisons with at least this agreement (0–1).")
        flagged = parser.add_mutually_exclusive_group()
        flagged.add_argument("--include-flagged", dest="exclude_flagged", action="store_const", const=False)
        flagged.add_argument("--exclude-flagged", dest="exclude_flagged", action="store_const", const=True)
        parser.add_argument("--exclude-annotator", action="append", help="Username; repeat for several.")
        suspended = parser.add_mutually_exclusive_group()
        suspended.add_argument(
            "--include-suspended", dest="exclude_suspended", action="store_const", const=False
        )
        suspended.add_argument(
            "--exclude-suspended", dest="exclude_suspended", action="store_const", const=True
        )
        parser.add_argument(
            "--min-gold-accuracy",
            help="Only annotators with at least this gold accuracy (0–1) in their project.",
        )
        parser.add_argument("--ties", choices=TIE_POLICIES)
        parser.add_argument("--both-bad", choices=BOTH_BAD_POLICIES)
        parser.add_argument("--kwise", choices=KWISE_EXPANSIONS)
        parser.add_argument("--margin-scale", help="Comma-separated margins, one per strength level.")
        parser.add_argument("--columns", help="Comma-separated extra columns.")
        parser.add_argument("--test-fraction", help="Share of prompts in the test split (0–0.9).")
        parser.add_argument("--split-salt")
        parser.add_argument("--output-format", dest="output_format", choices=OUTPUTS, default="jsonl")
        parser.add_argument(
            "--answers", help="prompt-completion formats: comma-separated, among chosen, edited, written."
        )
        parser.add_argument("--edit-pairs", dest="edit_pairs", choices=EDIT_PAIRS, help="edits format.")
        snapshot = parser.add_mutually_exclusive_group()
        snapshot.add_argument("--high-water-mark", type=int, help="Export this snapshot again.")
        snapshot.add_argument("--snapshot", type=int, help="Export the snapshot of this recorded export.")

    def handle(self, *args: Any, **options: Any) -> None:
        data: dict[str, Any] = {}
        for flag in [
            "format",
            "aggregation",
            "project",
            "checkpoint",
            "since",
            "until",
            "min_judgments",
            "min_agreement",
            "exclude_flagged",
            "exclude_annotator",
            "exclude_suspended",
            "min_gold_accuracy",
            "ties",
            "both_bad",
            "kwise",
            "margin_scale",
            "columns",
            "test_fraction",
            "split_salt",
            "answers",
            "edit_pairs",
        ]:
            if options.get(flag) is not None:
                data[RENAMED.get(flag, flag)] = options[flag]
        data["output"] = options["output_format"]
        try:
            export_options = ExportOptions.from_mapping(data)
        except ExportOptionsError as error:
            for field, messages in error.errors.items():
                self.stderr.write(f"{field}: {' '.join(messages)}")
            raise CommandError("The export options were refused.") from None
        mark = options["high_water_mark"]
        standing_mark = quality_mark = review_mark = None  # now, unless a recorded snapshot says otherwise
        source_marks = None
        if options["snapshot"] is not None:
            recorded = Export.objects.filter(pk=options["snapshot"]).first()
            if recorded is None:
                raise CommandError(f"No export with id {options['snapshot']}.")
            mark = recorded.high_water_mark
            standing_mark, quality_mark = recorded.standing_mark, recorded.quality_mark
            review_mark = recorded.review_mark
            # Its marks of answers and prompts where it read the same sources; otherwise now.
            fresh = source_marks_now(export_options)
            source_marks = dict(recorded.source_marks) if set(recorded.source_marks) == set(fresh) else fresh
        if mark is not None and mark < 0:
            raise CommandError("--high-water-mark cannot be negative.")
        if mark is None:
            mark = judgment_high_water_mark()
        directory: Path = options["output"]
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise CommandError(f"{directory} exists and is not an empty directory.")
        manifest = export_write(
            export_options,
            high_water_mark=mark,
            standing_mark=standing_mark,
            review_mark=review_mark,
            quality_mark=quality_mark,
            source_marks=source_marks,
            directory=directory,
            leaderboard=partial(export_leaderboard, high_water_mark=mark),
        )
        rows = ", ".join(f"{split} {count}" for split, count in manifest["rows"].items())
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported {rows} rows from {manifest['judgments']} judgments to {directory} "
                f"(high-water mark {mark}, snapshot {manifest['snapshot_digest'][:12]})."
            )
        )

"""`manage.py make_tiny_checkpoint PATH [--kind base|instruct] [--seed N] [--words]`: a tiny test model on disk.

The model has random weights and a real tokenizer (byte-level, or with --words word-level, as the demo
uses): it loads and generates in milliseconds on a CPU, for tests and the demo, and its output is noise. Exit status 1, with nothing written, when PATH is a
file or a non-empty directory. torch and transformers are imported only when the command runs.
"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Write a tiny test checkpoint (a Llama-shaped model with random weights, a byte-level tokenizer and, "
        "for --kind instruct, a ChatML chat template) into PATH, which must be empty or absent. Its output "
        "is noise: it is for trying Rankwise and for tests, never for collecting preference data. Register "
        "it as a local checkpoint of the same kind; validation reports it as a test model."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", type=Path, help="Directory to write; created if absent, refused if not empty."
        )
        parser.add_argument(
            "--kind",
            choices=["base", "instruct"],
            default="instruct",
            help="instruct (default) has a chat template; base has none and is prompted by a completion template.",
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights (default 0).")
        parser.add_argument(
            "--words",
            action="store_true",
            help="A word-level tokenizer: the model writes random but readable words (the demo's), where the "
            "default byte-level one writes any text back exactly (the tests') and its noise shows as broken "
            "characters.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"].expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise CommandError(f"{path} is a file; give a directory that is empty or absent.")
        if path.is_dir() and any(path.iterdir()):
            raise CommandError(f"{path} is not empty; give a directory that is empty or absent.")

        from transformers.utils import logging as transformers_logging

        from inference.tiny import build_tiny_checkpoint

        transformers_logging.disable_progress_bar()  # a one-file model needs no "Writing model shards" bar
        build_tiny_checkpoint(path, kind=options["kind"], seed=options["seed"], words=options["words"])
        self.stdout.write(self.style.SUCCESS(f"Wrote a tiny {options['kind']} checkpoint to {path}"))
        self.stdout.write(
            "It is a tiny test model with random weights: its output is noise. Use it to try Rankwise, "
            "not to collect preference data."
        )

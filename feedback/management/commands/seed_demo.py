"""`manage.py seed_demo [--checkpoint DIR]`: the demo's users, project, prompts, gold items and, given a
checkpoint directory, its responses and comparisons and a simulated crowd's judgments of them (with the
quality figures they give); prints the logins. Safe to re-run.

A model of the user's takes the tiny checkpoint's place when the environment names one:
`RANKWISE_DEMO_MODEL` (a local Hugging Face model directory) or `RANKWISE_DEMO_OPENAI_URL` with
`RANKWISE_DEMO_OPENAI_MODEL` (an OpenAI-compatible server; its key, if it wants one, in
`RANKWISE_DEMO_OPENAI_API_KEY`)."""

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.models import LeaderboardReport
from feedback.services.demo import (
    DEMO_ACCOUNTS,
    demo_credentials_path,
    demo_generate,
    demo_model_from_environment,
    demo_seed,
    demo_simulate,
)


class Command(BaseCommand):
    help = (
        "Create (or bring up to date) the demo users, project, bundled prompts and gold items, and print the "
        "logins. With --checkpoint, register that model directory (made by make_tiny_checkpoint) as the demo "
        "project's checkpoint, generate its responses and comparisons, and have a simulated crowd judge "
        "most of them, once. RANKWISE_DEMO_MODEL (a model directory) or RANKWISE_DEMO_OPENAI_URL and "
        "RANKWISE_DEMO_OPENAI_MODEL (an OpenAI-compatible server) in the environment take its place."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--checkpoint", type=Path, help="A checkpoint directory to generate with.")

    def handle(self, *args: Any, checkpoint: Path | None = None, **options: Any) -> None:
        if checkpoint is not None and not checkpoint.is_dir():
            raise CommandError(
                f"{checkpoint} is not a directory; make it with manage.py make_tiny_checkpoint."
            )
        result = demo_seed()
        self.stdout.write(f"Demo project {result.project.slug!r}: prompts {result.prompts.summary()}.")
        self.stdout.write(f"Gold items: {result.gold.summary()}.")
        self.stdout.write(
            f"Writing project {result.writing.slug!r}: prompts {result.writing_prompts.summary()}."
        )
        try:
            model = demo_model_from_environment(checkpoint)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        if model is not None:
            if not model.tiny:
                self.stdout.write(f"Demo model: {model.name} ({model.notes})")
            try:
                runs = demo_generate(model=model)
            except ValidationError as error:
                raise CommandError(f"Cannot generate: {'; '.join(error.messages)}") from None
            if not runs:
                self.stdout.write("Responses: already generated.")
            for run in runs:
                comparisons = run.comparisons.count()
                what = (
                    f"{run.checkpoint} against {run.opponent_checkpoint}"
                    if run.opponent_checkpoint_id
                    else str(run.checkpoint)
                )
                self.stdout.write(
                    f"Generation run {run.pk} ({what}): {run.get_status_display().lower()}, {run.done_prompts} "
                    f"of {run.total_prompts} prompts, {comparisons} comparisons."
                )
                if run.error:
                    raise CommandError(f"Generation failed: {run.error}")
            simulated = demo_simulate()
            if simulated is None:
                self.stdout.write("Simulated crowd: nothing new to judge.")
            else:
                self.stdout.write(f"Simulated crowd: {simulated.summary()}; quality figures computed.")
                self.stdout.write(f"Leaderboard: {leaderboard_summary(simulated.leaderboard)}")
        self.stdout.write(f"Demo logins (kept in {demo_credentials_path()}):")
        for account in DEMO_ACCOUNTS:
            password = result.credentials[account.username]
            self.stdout.write(f"  {account.username:<11} {password:<18} {account.role}")


def leaderboard_summary(row: LeaderboardReport | None) -> str:
    """One line: each checkpoint's score and interval, best first (or why there is none yet)."""
    if row is None or row.report is None:
        return "being computed by a worker."
    scored = [entry for entry in row.report["checkpoints"] if entry["raw"]]
    if not scored:
        return "fewer than two checkpoints met."
    return (
        ", ".join(
            f"{entry['name']} {entry['raw']['elo']:.0f} [{entry['raw']['low']:.0f}, {entry['raw']['high']:.0f}]"
            for entry in scored
        )
        + "."
    )

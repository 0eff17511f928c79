"""Prompt import throughput: `prompts_import` against naive row-by-row inserts, measured in the same run.

Run from the repository root against a PostgreSQL server. The database is created if it is missing and
migrated; the service's two imports share one new project and the baseline writes into another, both
uniquely slugged and deleted at the end, so runs neither see nor leave each other's rows:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rankwise_bench \\
        .venv/bin/python bench/import_prompts.py [--prompts 100000] [--baseline-rows 5000]

It generates a deterministic JSON Lines file of `--prompts` prompts (a mix of single prompts and
three-message conversations, 50–800 characters per message, with ids, categories and small metadata) and
times, wall clock and parsing included:

1. `prompts_import` of the whole file into an empty project (the target: >= 10,000 prompts/s at 100,000);
2. `prompts_import` of the same file again, straight after (every prompt unchanged: the idempotent
   re-import path, usually before autovacuum has analysed the freshly loaded rows);
3. the baseline: the first `--baseline-rows` lines, each `json.loads`-ed, hashed and saved with
   `Prompt.objects.create(...)` in autocommit, as naive code would.

Absolute figures depend on the machine; the ratio to the baseline is what carries across machines.
The script prints its figures and exits 0 whether or not the target is met; it exits 2 when it
cannot run (no PostgreSQL DATABASE_URL, server unreachable).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from benchkit import cpu_model, exit_unable, postgres_config_or_exit
from psycopg import sql

if TYPE_CHECKING:
    from feedback.models import Project

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SEED = 20261121
TARGET_PROMPTS = 100_000
TARGET_PROMPTS_PER_SECOND = 10_000
PROJECT_SLUG_PREFIX = "bench-import-"
# Shares of the generated file: the rest are single `prompt` strings.
CONVERSATION_SHARE = 0.4
MESSAGE_CHARS = (50, 800)

# Words the generated text is drawn from; a few carry accents and typographic signs, as real text does.
VOCABULARY = (
    "the a an of to and in for on with as by from that this which model answer question data user "
    "explain summarize list write rewrite classify extract code function table email report policy "
    "budget customer review product feature release schedule meeting notes paragraph sentence example "
    "steps reasons risks benefits trade-offs Python SQL JSON API latency throughput memory cache index "
    "transaction query server client request response error retry timeout deadline team manager "
    "students teacher history science climate energy river mountain city market price growth café "
    "naïve résumé façade — “quoted” 3 7 12 42 2026 % please briefly clearly concise formal friendly "
    "bullet points short long detailed simple technical audience beginners experts why how what when"
)
WORDS = tuple(VOCABULARY.split())
SOURCES = ("crowd", "synthetic", "support-tickets", "forum", "red-team", "partner")
TAGS = ("math", "reasoning", "safety", "creative", "factual", "multilingual", "long-context", "format")
OPENINGS = {
    "list": "List",
    "summarize": "Summarize",
    "explain": "Explain",
    "write": "Write",
    "rewrite": "Rewrite",
    "brainstorm": "Brainstorm",
    "classify": "Classify",
    "extract": "Extract",
    "code": "Write code for",
    "qa": "Answer:",
    "other": "Consider",
}


@dataclass(frozen=True)
class Measurement:
    name: str
    prompts: int
    seconds: float

    @property
    def prompts_per_second(self) -> float:
        return self.prompts / self.seconds


# --- Setup -----------------------------------------------------------------------------------------------


def database_create_if_missing(config: dict[str, Any]) -> None:
    """Create the database named in DATABASE_URL, connecting to the `postgres` maintenance database."""
    try:
        with psycopg.connect(
            host=config.get("HOST") or "127.0.0.1",
            port=config.get("PORT") or 5432,
            user=config.get("USER") or "postgres",
            password=config.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=5,
            autocommit=True,  # CREATE DATABASE cannot run inside a transaction
        ) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
            ).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
                print(f"created database {config['NAME']}", file=sys.stderr)
    except psycopg.Error as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        exit_unable(f"bench/import_prompts.py: cannot prepare database {config['NAME']!r}: {message}")


def django_setup() -> None:
    # Run as `python bench/import_prompts.py`, the script's own folder is on sys.path, not the repository.
    sys.path.insert(0, str(REPOSITORY_ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "feedback.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def project_create(label: str) -> Project:
    from feedback.models import Project

    token = uuid.uuid4().hex[:12]
    return Project.objects.create(name=f"Benchmark {label} {token}", slug=f"{PROJECT_SLUG_PREFIX}{token}")


# --- The prompt file -------------------------------------------------------------------------------------


def message_text(rng: random.Random, *, opening: str = "") -> str:
    """Words up to a length drawn from MESSAGE_CHARS, starting with `opening`, ending with a full stop."""
    length = rng.randint(*MESSAGE_CHARS)
    words = [opening] if opening else []
    size = len(opening)
    while size < length:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:length].rstrip() + "."


def prompt_records(count: int, *, seed: int) -> Iterator[dict[str, Any]]:
    from feedback.models import PromptCategory

    rng = random.Random(seed)
    categories = list(PromptCategory.values)
    for number in range(1, count + 1):
        category = rng.choice(categories)
        record: dict[str, Any] = {"id": f"bench-{number:07d}"}
        if rng.random() < CONVERSATION_SHARE:
            record["messages"] = [
                {"role": "user", "content": message_text(rng, opening=OPENINGS[category])},
                {"role": "assistant", "content": message_text(rng)},
                {"role": "user", "content": message_text(rng, opening="Now")},
            ]
        else:
            record["prompt"] = message_text(rng, opening=OPENINGS[category])
        record["category"] = category
        record["metadata"] = {
            "source": rng.choice(SOURCES),
            "difficulty": rng.randint(1, 5),
            "tags": rng.sample(TAGS, k=rng.randint(0, 3)),
        }
        yield record


def prompt_file_write(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as file:
        for record in prompt_records(count, seed=SEED):
            file.write(json.dumps(record, ensure_ascii=False))
            file.write("\n")


# --- Measurements ----------------------------------------------------------------------------------------


def measure_service(
    name: str, *, project: Project, path: Path, expected: Literal["created", "unchanged"], count: int
) -> Measurement:
    from feedback.services.prompts import prompts_import

    started = time.perf_counter()
    with path.open("rb") as source:
        report = prompts_import(project=project, source=source, file_format="jsonl")
    seconds = time.perf_counter() - started
    if getattr(report, expected) != count:
        raise RuntimeError(f"{name}: expected {count} {expected}, got {report.summary()}")
    return Measurement(name=name, prompts=count, seconds=seconds)


def measure_baseline(*, project: Project, path: Path, rows: int) -> Measurement:
    """Naive import: parse, hash and INSERT one line at a time, each its own autocommitted statement."""
    from feedback.models import Prompt, conversation_hash

    started = time.perf_counter()
    created = 0
    with path.open("rb") as source:
        for raw in itertools.islice(source, rows):
            record = json.loads(raw)
            if "messages" in record:
                conversation = record["messages"]
            else:
                conversation = [{"role": "user", "content": record["prompt"]}]
            Prompt.objects.create(
                project=project,
                external_id=str(record["id"]),
                conversation=conversation,
                category=record.get("category", "other"),
                metadata=record.get("metadata", {}),
                content_hash=conversation_hash(conversation),
            )
            created += 1
    seconds = time.perf_counter() - started
    return Measurement(name=f"baseline: Prompt.objects.create × {created}", prompts=created, seconds=seconds)


# --- Report ----------------------------------------------------------------------------------------------


def report_print(
    *,
    first_import: Measurement,
    re_import: Measurement,
    baseline: Measurement,
    count: int,
    file_bytes: int,
    server_version: str,
) -> None:
    measurements = [first_import, re_import, baseline]
    ratio = first_import.prompts_per_second / baseline.prompts_per_second
    print()
    print("Prompt import benchmark (bench/import_prompts.py)")
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model()}), PostgreSQL {server_version}, "
        f"Python {platform.python_version()} ({platform.system()} {platform.machine()})"
    )
    print(
        f"file: {count:,} prompts, {file_bytes / 1e6:.1f} MB JSONL "
        f"(seed {SEED}, {CONVERSATION_SHARE:.0%} three-message conversations)"
    )
    print()
    name_width = max(len(measurement.name) for measurement in measurements)
    print(f"{'measurement':<{name_width}}  {'prompts':>9}  {'seconds':>8}  {'prompts/s':>10}")
    print(f"{'-' * name_width}  {'-' * 9}  {'-' * 8}  {'-' * 10}")
    for measurement in measurements:
        print(
            f"{measurement.name:<{name_width}}  {measurement.prompts:>9,}  "
            f"{measurement.seconds:>8.2f}  {measurement.prompts_per_second:>10,.0f}"
        )
    print()
    print(f"ratio service/baseline (first import): {ratio:.1f}×")
    met = first_import.prompts_per_second >= TARGET_PROMPTS_PER_SECOND
    verdict = "MET" if met else "MISSED"
    if count != TARGET_PROMPTS:
        verdict += f" (indicative only: the target is stated for --prompts {TARGET_PROMPTS})"
    print(
        f"target >= {TARGET_PROMPTS_PER_SECOND:,} prompts/s for a {TARGET_PROMPTS:,}-prompt import: {verdict}"
    )


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--prompts", type=positive_int, default=TARGET_PROMPTS, help="prompts in the file")
    parser.add_argument(
        "--baseline-rows", type=positive_int, default=5_000, help="lines imported row by row for the baseline"
    )
    arguments = parser.parse_args()
    count: int = arguments.prompts
    baseline_rows: int = min(arguments.baseline_rows, count)

    config = postgres_config_or_exit(script="bench/import_prompts.py", example_database="rankwise_bench")
    database_create_if_missing(config)
    django_setup()

    from django.db import connection
    from django.test.utils import override_settings

    from feedback.models import Project

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (server_version,) = cursor.fetchone()
    projects: list[Project] = []
    with tempfile.TemporaryDirectory(prefix="rankwise-bench-") as folder:
        path = Path(folder) / "prompts.jsonl"
        print(f"generating {count:,} prompts into {path} ...", file=sys.stderr)
        prompt_file_write(path, count)

        # DEBUG (the settings' demo default) wraps every cursor to record its queries; production runs
        # without it, and it would tax the baseline's many small statements most.
        try:
            with override_settings(DEBUG=False):
                projects.append(project_create("import"))
                print("importing into an empty project ...", file=sys.stderr)
                first_import = measure_service(
                    "prompts_import, empty project",
                    project=projects[-1],
                    path=path,
                    expected="created",
                    count=count,
                )
                print("importing the same file again ...", file=sys.stderr)
                re_import = measure_service(
                    "prompts_import again, all unchanged",
                    project=projects[-1],
                    path=path,
                    expected="unchanged",
                    count=count,
                )
                projects.append(project_create("baseline"))
                print(f"baseline: {baseline_rows:,} rows one by one ...", file=sys.stderr)
                baseline = measure_baseline(project=projects[-1], path=path, rows=baseline_rows)
            report_print(
                first_import=first_import,
                re_import=re_import,
                baseline=baseline,
                count=count,
                file_bytes=path.stat().st_size,
                server_version=server_version,
            )
        finally:
            # Cascades to the prompts, so the database is as it was and a re-run starts clean.
            print("deleting the benchmark projects ...", file=sys.stderr)
            Project.objects.filter(pk__in=[project.pk for project in projects]).delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())

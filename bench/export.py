"""Export throughput and memory: `preference` JSONL and Parquet against a COPY drain and a naive loop.

Run from the repository root against a PostgreSQL server. The database named in DATABASE_URL is created
(and migrated) if it is missing and seeded once; a later run re-uses it when it already holds at least
as many judgments of this script's seed. When it holds fewer, or something else, or with `--reseed`, it
is dropped and seeded again, so its name must contain "bench" (and not start with "test_"):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rankwise_bench_export \\
        .venv/bin/python bench/export.py [--sizes 100000,1000000] [--repeat 1] [--quick]

The seed (SQL, `INSERT … SELECT … FROM generate_series`, one transaction, then `VACUUM ANALYZE` and
`CHECKPOINT`): one pairwise project with overlap 3 and the default completion template and rubric, two
checkpoints, one prompt per comparison (200–400 characters, a quarter with a system message), its two
responses (one per checkpoint, 300–1,000 characters, display order shuffled), all drawn from 4,096
generated sentences so that no two texts need be alike; three judgments per comparison by three of 50
annotators: 45 % A, 40 % B, 10 % tie, 5 % both bad, strength 1–3 on A/B, ratings on a quarter of them,
a rationale on a tenth, a flag on 3 %. Judgment ids run in comparison order, as the claim (which finishes
the comparisons closest to done first) roughly leaves them.

Each size is a number of judgments: the export's high-water mark is the id of that many-th judgment, so
both sizes read one database. At each size, each candidate runs in a fresh Python process (so its peak
RSS, VmHWM, is its own), timed wall clock around the work only:

1. `jsonl`: `export_write(ExportOptions.from_mapping({"format": "preference", "output": "jsonl",
   "exclude_flagged": False}), high_water_mark=mark, directory=…)`: train.jsonl, README.md and the
   file digests, as the export task writes them;
2. `parquet`: the same with `"output": "parquet"`;
3. `copy`: the ceiling. `COPY (SELECT conversation, chosen text, rejected text … WHERE id <= mark AND
   choice IN ('a', 'b') ORDER BY comparison, annotator) TO STDOUT` through psycopg's `cursor.copy()`,
   every byte read and dropped. It selects the rows the export writes (ties and both-bad are dropped by
   default) in the export's order, but sends the conversation's JSON where the export renders the
   prompt through the project's completion template;
4. `naive`: `Judgment.objects.filter(...).annotate(<text at position 0 and 1 as subqueries>)
   .values(...).iterator()` with `json.dumps` of each row into a file, in autocommit (so Django's
   server-side cursor is WITH HOLD), the conversation's JSON as the prompt, as a first version would.

Before measuring, a small mark's rows are compared: the export's (prompt, chosen, rejected) against the
COPY query's (prompt rendered from its conversation) in order, and against the naive loop's as a multiset.
Row counts must agree at every size; the script exits 1 when they do not. Otherwise it exits 0 whether
the targets are met or not, and 2 when it cannot run.

`--profile jsonl|parquet` runs one candidate under cProfile at `--profile-size` judgments instead and
prints where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from benchkit import (
    bench_database_config_or_exit,
    connect,
    cpu_model,
    database_prepare,
    django_disconnect,
    django_setup,
    int_list,
    memory_gib,
    migrate,
    quotient,
    seed_load,
    verdict,
)
from psycopg import sql

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "bench/export.py"
SEED = 20261121
# Bump when the seed's shape changes: a database seeded by another version is seeded again.
SEED_VERSION = "export-seed-v1"
PROJECT_SLUG = "bench-export"
OVERLAP = 3
ANNOTATORS = 50
SENTENCES = 4096
DEFAULT_SIZES = (100_000, 1_000_000)
QUICK_SIZES = (20_000, 200_000)
VERIFY_JUDGMENTS = 3_000
CANDIDATES = ("jsonl", "parquet", "copy", "naive")
RANKWISE = ("jsonl", "parquet")
# Targets from the issue.
TARGET_SHARE_OF_COPY = 0.5
TARGET_TIMES_NAIVE = 5.0
TARGET_PEAK_RSS_MB = 256.0
TARGET_RSS_GROWTH = 1.2
TARGET_LARGE = 1_000_000
TARGET_SMALL = 100_000
EXPORT_OPTIONS = {"format": "preference", "exclude_flagged": False}
CHILD_RESULT_PREFIX = "BENCH-RESULT "

# --- The baselines' query --------------------------------------------------------------------------------
# The rows the `preference` export writes with its defaults: one per A/B judgment (ties and both-bad are
# dropped), chosen and rejected by the choice, in the export's order (comparison, then annotator).
BASELINE_SELECT = """
SELECT p.conversation,
    CASE WHEN j.choice = 'a' THEN ra.text ELSE rb.text END AS chosen,
    CASE WHEN j.choice = 'a' THEN rb.text ELSE ra.text END AS rejected
FROM feedback_judgment AS j
JOIN feedback_comparison AS c ON c.id = j.comparison_id
JOIN feedback_prompt AS p ON p.id = c.prompt_id
JOIN feedback_comparisonresponse AS ea ON ea.comparison_id = c.id AND ea.position = 0
JOIN feedback_response AS ra ON ra.id = ea.response_id
JOIN feedback_comparisonresponse AS eb ON eb.comparison_id = c.id AND eb.position = 1
JOIN feedback_response AS rb ON rb.id = eb.response_id
WHERE j.id <= {mark} AND j.choice IN ('a', 'b')
ORDER BY j.comparison_id, j.annotator_id
"""

# --- Seeding ---------------------------------------------------------------------------------------------
# Ids come from the series (the tables are empty), so no statement needs a join; the identity sequences
# are moved past them afterwards. `h` is a per-row hash (0 … 2^31 - 1) that picks sentences and choices.
SEED_STATEMENTS = (
    (
        "prompts",
        """
        INSERT INTO feedback_prompt (id, project_id, external_id, conversation, category, metadata,
            content_hash, created_at)
        SELECT i, %(project)s, 'bench-export-' || i, conversation,
            (%(categories)s::text[])[1 + h %% cardinality(%(categories)s::text[])], '{}'::jsonb,
            encode(sha256(convert_to(conversation::text, 'UTF8')), 'hex'),
            now() - make_interval(secs => %(comparisons)s::int - i)
        FROM (
            SELECT i, h, CASE WHEN h %% 4 = 0 THEN jsonb_build_array(
                    jsonb_build_object('role', 'system', 'content',
                        (%(systems)s::text[])[1 + (h / 4) %% cardinality(%(systems)s::text[])]),
                    jsonb_build_object('role', 'user', 'content', user_text))
                ELSE jsonb_build_array(jsonb_build_object('role', 'user', 'content', user_text))
                END AS conversation
            FROM (
                SELECT i, h, 'Request ' || i || ': ' || array_to_string(
                    (%(sentences)s::text[])[1 + h %% (%(sentence_count)s::int - 8)
                        : 1 + h %% (%(sentence_count)s::int - 8) + 1 + (h / 7) %% 3], ' ') AS user_text
                FROM (
                    SELECT i, hashint8extended(i, 1) & 2147483647 AS h
                    FROM generate_series(1::bigint, %(comparisons)s::bigint) AS i
                ) AS hashed
            ) AS texts
        ) AS prompts
        """,
    ),
    (
        "responses",
        """
        INSERT INTO feedback_response (id, prompt_id, checkpoint_id, run_id, sample_index, text,
            sampling_parameters, seed, token_count, finish_reason, latency_seconds, created_at)
        SELECT 2 * i - 1 + k, i, CASE WHEN k = 0 THEN %(checkpoint_a)s ELSE %(checkpoint_b)s END::bigint,
            %(run)s, 0, text, '{}'::jsonb, h, length(text) / 4, 'eos', NULL, now()
        FROM (
            SELECT i, k, h, array_to_string(
                (%(sentences)s::text[])[1 + h %% (%(sentence_count)s::int - 12)
                    : 1 + h %% (%(sentence_count)s::int - 12) + 3 + (h / 11) %% 8], ' ') AS text
            FROM (
                SELECT i, k, hashint8extended(2 * i + k, 2) & 2147483647 AS h
                FROM generate_series(1::bigint, %(comparisons)s::bigint) AS i
                CROSS JOIN generate_series(0, 1) AS k
            ) AS hashed
        ) AS responses
        """,
    ),
    (
        "comparisons",
        """
        INSERT INTO feedback_comparison (id, project_id, prompt_id, generation_run_id, required_judgments,
            judgment_count, lease_count, status, created_at, completed_at)
        SELECT i, %(project)s, i, %(run)s, %(overlap)s, n, 0,
            CASE WHEN n >= %(overlap)s THEN 'completed' ELSE 'open' END, now(),
            CASE WHEN n >= %(overlap)s THEN now() END
        FROM (
            SELECT i, least(%(overlap)s::int, %(judgments)s::bigint - %(overlap)s::int * (i - 1))::int AS n
            FROM generate_series(1::bigint, %(comparisons)s::bigint) AS i
        ) AS counted
        """,
    ),
    (
        "comparison responses",
        """
        INSERT INTO feedback_comparisonresponse (id, comparison_id, response_id, position)
        SELECT 2 * i - 1 + k, i, 2 * i - 1 + k, (k + (hashint8extended(i, 3) & 1)) %% 2
        FROM generate_series(1::bigint, %(comparisons)s::bigint) AS i CROSS JOIN generate_series(0, 1) AS k
        """,
    ),
    (
        "judgments",
        """
        INSERT INTO feedback_judgment (id, comparison_id, annotator_id, assignment_id, choice, ranking,
            strength, ratings, rationale, flags, time_spent_ms, submission_key, created_at, updated_at)
        SELECT j, c,
            (%(annotators)s::bigint[])[1 + ((hc %% %(annotator_count)s::int) + k * 17) %% %(annotator_count)s::int],
            NULL, choice,
            (CASE choice WHEN 'a' THEN '[1, 2]' WHEN 'b' THEN '[2, 1]' ELSE '[1, 1]' END)::jsonb,
            CASE WHEN choice IN ('a', 'b') THEN 1 + (h / 100) %% 3 END,
            CASE WHEN (h / 1000) %% 4 = 0 THEN jsonb_build_object(
                (2 * c - 1)::text, jsonb_build_object('instruction_following', 1 + h %% 5,
                    'helpfulness', 1 + (h / 5) %% 5, 'format', 1 + (h / 25) %% 5, 'tone', 1 + (h / 125) %% 5,
                    'safety', 1 + (h / 625) %% 5),
                (2 * c)::text, jsonb_build_object('instruction_following', 1 + (h / 3) %% 5,
                    'helpfulness', 1 + (h / 15) %% 5, 'format', 1 + (h / 75) %% 5, 'tone', 1 + (h / 375) %% 5,
                    'safety', 1 + (h / 1875) %% 5))
                ELSE '{}'::jsonb END,
            CASE WHEN (h / 7000) %% 10 = 0
                THEN (%(sentences)s::text[])[1 + (h / 13) %% %(sentence_count)s::int] ELSE '' END,
            (CASE WHEN (h / 70000) %% 33 = 0 THEN '["off_topic"]' ELSE '[]' END)::jsonb,
            4000 + h %% 180000, 'bench-export-' || j,
            now() - make_interval(secs => %(judgments)s::int - j), now() - make_interval(secs => %(judgments)s::int - j)
        FROM (
            SELECT j, c, k, h, hc,
                CASE WHEN r < 45 THEN 'a' WHEN r < 85 THEN 'b' WHEN r < 95 THEN 'tie' ELSE 'both_bad' END AS choice
            FROM (
                SELECT j, (j - 1) / %(overlap)s::int + 1 AS c, ((j - 1) %% %(overlap)s::int)::int AS k,
                    hashint8extended(j, 4) & 2147483647 AS h,
                    hashint8extended((j - 1) / %(overlap)s::int + 1, 5) & 2147483647 AS hc,
                    (hashint8extended(j, 6) & 2147483647) %% 100 AS r
                FROM generate_series(1::bigint, %(judgments)s::bigint) AS j
            ) AS hashed
        ) AS judgments
        """,
    ),
)
SEEDED_TABLES = (
    "feedback_prompt",
    "feedback_response",
    "feedback_comparison",
    "feedback_comparisonresponse",
    "feedback_judgment",
)

# The generated text: words with some accents, typographic quotes, digits, code and paragraph breaks,
# so that JSON escaping and UTF-8 have the work real text gives them.
VOCABULARY_TEXT = (
    "the a an of to and in for on with as by from that this which model answer question data user "
    "explain summarize list write rewrite classify extract code function table email report policy "
    "budget customer review product feature release schedule meeting notes paragraph sentence example "
    "steps reasons risks benefits trade-offs Python SQL JSON API latency throughput memory cache index "
    "transaction query server client request response error retry timeout deadline team manager "
    "students teacher history science climate energy river mountain city market price growth café "
    "naïve résumé façade — “quoted” 3 7 12 42 2026 % please briefly clearly concise formal friendly "
    "bullet points short long detailed simple technical audience beginners experts why how what when"
)
WORDS = tuple(VOCABULARY_TEXT.split())
SNIPPETS = ('`x = "value"`', "`SELECT 1;`", '`{"key": [1, 2]}`', "`path\\to\\file`", "`a < b && c > d`")
SYSTEM_PROMPTS = (
    "You are a helpful assistant. Answer concisely.",
    "You are an expert technical writer; prefer short paragraphs.",
    "You are a careful tutor for beginners. Explain every step.",
    "Answer in a friendly, formal tone and avoid jargon.",
    "You are a senior engineer reviewing code. Be direct.",
    "Keep answers under 200 words unless asked otherwise.",
    "You help customers with billing questions; never invent policies.",
    "Reply in plain text without Markdown headings.",
)
CATEGORIES = (
    "list",
    "summarize",
    "explain",
    "write",
    "rewrite",
    "brainstorm",
    "classify",
    "extract",
    "code",
    "qa",
)


def sentences_generate(count: int) -> list[str]:
    """`count` sentences of 60–120 characters, deterministic."""
    generator = random.Random(SEED)
    sentences = []
    for _ in range(count):
        target = generator.randint(60, 120)
        words: list[str] = []
        length = 0
        while length < target:
            word = generator.choice(SNIPPETS) if generator.random() < 0.02 else generator.choice(WORDS)
            words.append(word)
            length += len(word) + 1
        text = " ".join(words)
        text = text[0].upper() + text[1:] + generator.choice((".", ".", ".", "?", "!", ":"))
        roll = generator.random()
        if roll < 0.08:
            text = "\n\n" + text
        elif roll < 0.14:
            text = "\n- " + text
        sentences.append(text)
    return sentences


# --- Setup -----------------------------------------------------------------------------------------------


def comparisons_for(judgments: int) -> int:
    return -(-judgments // OVERLAP)


def seed_signature(judgments: int) -> str:
    return f"{SCRIPT} {SEED_VERSION}: {judgments} judgments"


def seeded_judgments(config: dict[str, Any]) -> int:
    """Judgments of this script's seed in the database, 0 when it holds none or something else."""
    with connect(config) as connection:
        try:
            row = connection.execute(
                "SELECT guidelines FROM feedback_project WHERE slug = %s", [PROJECT_SLUG]
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        if row is None or not str(row[0]).startswith(f"{SCRIPT} {SEED_VERSION}: "):
            return 0
        recorded = int(str(row[0]).rsplit(": ", 1)[1].split()[0])
        counts = connection.execute(
            "SELECT (SELECT count(*) FROM feedback_judgment), (SELECT count(*) FROM feedback_comparison), "
            "(SELECT count(*) FROM feedback_comparisonresponse), (SELECT count(*) FROM feedback_project)"
        ).fetchone()
    comparisons = comparisons_for(recorded)
    if counts != (recorded, comparisons, 2 * comparisons, 1):
        return 0
    return recorded


def seed(config: dict[str, Any], *, judgments: int) -> float:
    """Project, checkpoints, run and annotators through the ORM, the rest in SQL; returns the seconds
    the SQL took, VACUUM ANALYZE and CHECKPOINT included."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    from feedback.models import GenerationRun, PolicyCheckpoint, Project

    comparisons = comparisons_for(judgments)
    project = Project.objects.create(
        name="Export benchmark",
        slug=PROJECT_SLUG,
        judgments_per_comparison=OVERLAP,
        guidelines=seed_signature(judgments),
    )
    checkpoint_a = PolicyCheckpoint.objects.create(name="bench-export-policy-a", source="/nonexistent/a")
    checkpoint_b = PolicyCheckpoint.objects.create(name="bench-export-policy-b", source="/nonexistent/b")
    run = GenerationRun.objects.create(
        project=project,
        checkpoint=checkpoint_a,
        opponent_checkpoint=checkpoint_b,
        status=GenerationRun.Status.COMPLETED,
        samples_per_prompt=1,
        total_prompts=comparisons,
        done_prompts=comparisons,
    )
    users = User.objects.bulk_create(
        [
            User(username=f"bench-export-annotator-{number:03d}", password=make_password(None))
            for number in range(1, ANNOTATORS + 1)
        ]
    )
    project.members.add(*users)
    django_disconnect()

    parameters: dict[str, Any] = {
        "project": project.pk,
        "checkpoint_a": checkpoint_a.pk,
        "checkpoint_b": checkpoint_b.pk,
        "run": run.pk,
        "comparisons": comparisons,
        "judgments": judgments,
        "overlap": OVERLAP,
        "sentences": sentences_generate(SENTENCES),
        "sentence_count": SENTENCES,
        "systems": list(SYSTEM_PROMPTS),
        "categories": list(CATEGORIES),
        "annotators": [user.pk for user in users],
        "annotator_count": ANNOTATORS,
    }
    return seed_load(config, statements=SEED_STATEMENTS, parameters=parameters, tables=SEEDED_TABLES)


@dataclass(frozen=True)
class DataShape:
    judgments: int
    comparisons: int
    database_mb: float
    prompt_chars: tuple[float, int, int]  # mean, min, max of a prompt's message contents, summed
    response_chars: tuple[float, int, int]  # of a response's text
    choices: dict[str, int]


def data_shape(config: dict[str, Any]) -> DataShape:
    with connect(config) as connection:
        judgments, comparisons, size = connection.execute(
            "SELECT (SELECT count(*) FROM feedback_judgment), (SELECT count(*) FROM feedback_comparison), "
            "pg_database_size(current_database())"
        ).fetchone() or (0, 0, 0)
        prompt = connection.execute(
            "SELECT avg(n), min(n), max(n) FROM (SELECT (SELECT sum(length(m ->> 'content')) "
            "FROM jsonb_array_elements(conversation) AS m)::int AS n "
            "FROM feedback_prompt TABLESAMPLE SYSTEM (5)) AS s"
        ).fetchone() or (0, 0, 0)
        response = connection.execute(
            "SELECT avg(n), min(n), max(n) FROM (SELECT length(text) AS n "
            "FROM feedback_response TABLESAMPLE SYSTEM (5)) AS s"
        ).fetchone() or (0, 0, 0)
        choices: dict[str, int] = dict(
            connection.execute("SELECT choice, count(*) FROM feedback_judgment GROUP BY choice").fetchall()
        )
    return DataShape(
        judgments=int(judgments),
        comparisons=int(comparisons),
        database_mb=int(size) / 1e6,
        prompt_chars=(float(prompt[0] or 0), int(prompt[1] or 0), int(prompt[2] or 0)),
        response_chars=(float(response[0] or 0), int(response[1] or 0), int(response[2] or 0)),
        choices={str(key): int(value) for key, value in choices.items()},
    )


def mark_for(connection: psycopg.Connection, judgments: int) -> tuple[int, int]:
    """(high-water mark, rows the export writes): the id of the `judgments`-th judgment, and the A/B
    judgments at or below it."""
    row = connection.execute(
        "SELECT id FROM feedback_judgment ORDER BY id OFFSET %s LIMIT 1", [judgments - 1]
    ).fetchone()
    if row is None:
        raise RuntimeError(f"the database holds fewer than {judgments} judgments")
    mark = int(row[0])
    expected = connection.execute(
        "SELECT count(*) FROM feedback_judgment WHERE id <= %s AND choice IN ('a', 'b')", [mark]
    ).fetchone()
    return mark, int(expected[0]) if expected else 0


# --- The candidates (run in a child process) -------------------------------------------------------------


def naive_rows(mark: int) -> Iterator[dict[str, Any]]:
    """The straightforward loop: one ORM query, the two texts as subqueries, `values().iterator()`."""
    from django.db.models import OuterRef, Subquery

    from feedback.models import ComparisonResponse, Judgment

    def text_at(position: int) -> Subquery:
        return Subquery(
            ComparisonResponse.objects.filter(
                comparison_id=OuterRef("comparison_id"), position=position
            ).values("response__text")[:1]
        )

    rows = (
        Judgment.objects.filter(id__lte=mark, choice__in=["a", "b"])
        .annotate(text_a=text_at(0), text_b=text_at(1))
        .values("choice", "comparison__prompt__conversation", "text_a", "text_b")
        .iterator()
    )
    for row in rows:
        text_a, text_b = row["text_a"], row["text_b"]
        chosen, rejected = (text_a, text_b) if row["choice"] == "a" else (text_b, text_a)
        yield {"prompt": row["comparison__prompt__conversation"], "chosen": chosen, "rejected": rejected}


def copy_query(mark: int) -> sql.Composed:
    return sql.SQL("COPY ({select}) TO STDOUT").format(
        select=sql.SQL(BASELINE_SELECT.strip()).format(mark=sql.Literal(mark))
    )


@dataclass
class ChildResult:
    candidate: str
    judgments: int
    mark: int
    rows: int
    seconds: float
    cpu_seconds: float
    bytes_out: int
    base_rss_mb: float
    peak_rss_mb: float
    digest_seconds: float = 0.0
    load_average: float = 0.0  # 1-minute load average of the machine when the work ended

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def memory_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process in MB (VmHWM is reset by exec, unlike ru_maxrss on Linux, which
    can carry the parent's peak at fork into the child)."""
    values: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    if "VmHWM" not in values:
        values["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        values.setdefault("VmRSS", values["VmHWM"])
    return values


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_main(candidate: str, *, judgments: int, mark: int, profile_path: str | None) -> int:
    """Measure one candidate in this (fresh) process; prints one result line."""
    if candidate != "copy":
        django_setup()
    config = bench_database_config_or_exit(
        script=SCRIPT, example_database="rankwise_bench_export", doing="seeds (and with --reseed drops)"
    )
    directory = Path(tempfile.mkdtemp(prefix=f"rankwise-bench-export-{candidate}-"))
    digest_time = [0.0]
    work: Any
    try:
        if candidate in RANKWISE:
            from feedback.export import writer
            from feedback.export.options import ExportOptions

            options = ExportOptions.from_mapping({**EXPORT_OPTIONS, "output": candidate})
            original_digest = writer.file_digest

            def timed_digest(path: Path) -> dict[str, Any]:
                began = time.perf_counter()
                try:
                    return original_digest(path)
                finally:
                    digest_time[0] += time.perf_counter() - began

            writer.file_digest = timed_digest  # timing only: the same function runs

            def work() -> int:
                manifest = writer.export_write(options, high_water_mark=mark, directory=directory / "out")
                return int(sum(manifest["rows"].values()))

        elif candidate == "copy":
            query = copy_query(mark)

            def work() -> int:
                rows = 0
                with connect(config) as connection, connection.cursor() as cursor, cursor.copy(query) as copy:
                    for data in copy:
                        rows += bytes(data).count(b"\n")  # text format: newlines inside values are escaped
                return rows

        else:

            def work() -> int:
                rows = 0
                with (directory / "naive.jsonl").open("w", encoding="utf-8") as output:
                    for row in naive_rows(mark):
                        output.write(json.dumps(row) + "\n")
                        rows += 1
                return rows

        base = memory_status()
        cpu_before = cpu_seconds()
        began = time.perf_counter()
        if profile_path:
            import cProfile

            profiler = cProfile.Profile()
            rows = profiler.runcall(work)
            profiler.dump_stats(profile_path)
        else:
            rows = work()
        seconds = time.perf_counter() - began
        cpu = cpu_seconds() - cpu_before
        peak = memory_status()
        bytes_out = sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result = ChildResult(
        candidate=candidate,
        judgments=judgments,
        mark=mark,
        rows=rows,
        seconds=seconds,
        cpu_seconds=cpu,
        bytes_out=bytes_out,
        base_rss_mb=base["VmRSS"],
        peak_rss_mb=peak["VmHWM"],
        digest_seconds=digest_time[0],
        load_average=os.getloadavg()[0],
    )
    print(CHILD_RESULT_PREFIX + json.dumps(result.__dict__), flush=True)
    return 0


def run_child(candidate: str, *, judgments: int, mark: int, profile_path: str | None = None) -> ChildResult:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        candidate,
        "--child-judgments",
        str(judgments),
        "--child-mark",
        str(mark),
    ]
    if profile_path:
        command += ["--child-profile", profile_path]
    completed = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(CHILD_RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        sys.stderr.write(completed.stdout[-5000:] + completed.stderr[-5000:])
        raise RuntimeError(f"{candidate} at {judgments:,} judgments failed (exit {completed.returncode})")
    return ChildResult(**json.loads(lines[-1][len(CHILD_RESULT_PREFIX) :]))


# --- Checks ----------------------------------------------------------------------------------------------


def verify_same_rows(config: dict[str, Any], mark: int) -> list[str]:
    """Problems found comparing the export's rows with both baselines' at a small mark (none: [])."""
    from django.db import transaction

    from feedback.export.options import ExportOptions
    from feedback.export.writer import export_row_groups
    from feedback.models import Project
    from feedback.prompting import completion_prompt_render

    options = ExportOptions.from_mapping({**EXPORT_OPTIONS, "output": "jsonl"})
    with transaction.atomic():
        exported = [
            (row["prompt"], row["chosen"], row["rejected"])
            for _, rows in export_row_groups(options, high_water_mark=mark)
            for row in rows
        ]
    template = Project.objects.get(slug=PROJECT_SLUG).completion_template
    naive = Counter(
        (
            completion_prompt_render(template=template, conversation=row["prompt"]),
            row["chosen"],
            row["rejected"],
        )
        for row in naive_rows(mark)
    )
    django_disconnect()
    with connect(config) as connection:
        selected = [
            (completion_prompt_render(template=template, conversation=conversation), chosen, rejected)
            for conversation, chosen, rejected in connection.execute(
                sql.SQL(BASELINE_SELECT).format(mark=sql.Literal(mark))
            ).fetchall()
        ]
    problems = []
    if not exported:
        problems.append("the export wrote no rows")
    if exported != selected:
        first = next(
            (index for index, pair in enumerate(zip(exported, selected, strict=False)) if pair[0] != pair[1]),
            min(len(exported), len(selected)),
        )
        problems.append(
            f"the COPY query's rows differ from the export's ({len(selected)} against {len(exported)}; "
            f"first difference at row {first})"
        )
    if Counter(exported) != naive:
        problems.append(
            f"the naive loop's rows differ from the export's ({naive.total()} against {len(exported)})"
        )
    return problems


# --- Report ----------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """Every run of one candidate at one size; the figures are the median run's, RSS the largest."""

    runs: list[ChildResult] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def rows(self) -> int:
        return self.runs[0].rows

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def peak_rss_mb(self) -> float:
        return max(run.peak_rss_mb for run in self.runs)

    @property
    def base_rss_mb(self) -> float:
        return max(run.base_rss_mb for run in self.runs)

    @property
    def cpu_seconds(self) -> float:
        return statistics.median(run.cpu_seconds for run in self.runs)

    @property
    def bytes_out(self) -> int:
        return self.runs[0].bytes_out

    @property
    def digest_seconds(self) -> float:
        return statistics.median(run.digest_seconds for run in self.runs)

    @property
    def load_average(self) -> float:
        return max(run.load_average for run in self.runs)


def report_print(
    results: dict[int, dict[str, Measured]],
    *,
    shape: DataShape,
    seed_note: str,
    server_version: str,
    load_before: tuple[float, float, float],
    repeat: int,
) -> None:
    import django
    import orjson
    import pyarrow

    load_after = os.getloadavg()
    sizes = sorted(results)
    print()
    print(f"Export benchmark ({SCRIPT})")
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model()}), {memory_gib():.0f} GiB RAM, PostgreSQL "
        f"{server_version}, Python {platform.python_version()}, Django {django.get_version()}, "
        f"psycopg {psycopg.__version__}, pyarrow {pyarrow.__version__}, orjson {orjson.__version__}"
    )
    print(
        f"load average (1/5/15 min): {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f} before, "
        f"{load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} after"
    )
    choices = ", ".join(
        f"{name} {quotient(count, shape.judgments):.1%}" for name, count in sorted(shape.choices.items())
    )
    print(
        f"database: {shape.judgments:,} judgments on {shape.comparisons:,} comparisons (one per prompt, two "
        f"responses each, overlap {OVERLAP}, {ANNOTATORS} annotators), {shape.database_mb:,.0f} MB; {seed_note}"
    )
    print(
        f"  choices: {choices}; prompts {shape.prompt_chars[0]:.0f} characters on average "
        f"({shape.prompt_chars[1]}–{shape.prompt_chars[2]}), responses {shape.response_chars[0]:.0f} "
        f"({shape.response_chars[1]}–{shape.response_chars[2]}) (5 % samples)"
    )
    print(
        f"each candidate in a fresh process, {repeat} run(s) per size (median time, largest RSS); "
        "rows/s = rows written ÷ wall seconds of the work; CPU s: the process's own (user + system); "
        "RSS = VmRSS before the work, VmHWM after; load: the 1-minute load average as the work ended"
    )
    print()
    header = (
        f"{'judgments':>10} | {'candidate':<8} | {'rows':>9} | {'seconds':>8} | {'rows/s':>9} | "
        f"{'MB out':>7} | {'CPU s':>6} | {'digest s':>8} | {'base RSS':>8} | {'peak RSS MB':>11} | {'load':>4}"
    )
    print(header)
    print("-" * len(header))
    for size in sizes:
        for candidate in CANDIDATES:
            measured = results[size][candidate]
            digest = f"{measured.digest_seconds:.2f}" if candidate in RANKWISE else "–"
            print(
                f"{size:>10,} | {candidate:<8} | {measured.rows:>9,} | {measured.seconds:>8.2f} | "
                f"{measured.rows_per_second:>9,.0f} | {measured.bytes_out / 1e6:>7,.0f} | "
                f"{measured.cpu_seconds:>6.1f} | {digest:>8} | {measured.base_rss_mb:>8.0f} | "
                f"{measured.peak_rss_mb:>11.0f} | {measured.load_average:>4.1f}"
            )
    print()
    print(
        f"{'judgments':>10} | {'JSONL ÷ COPY':>12} | {'Parquet ÷ COPY':>14} | {'JSONL ÷ naive':>13} | {'Parquet ÷ naive':>15}"
    )
    for size in sizes:
        rates = {candidate: results[size][candidate].rows_per_second for candidate in CANDIDATES}
        print(
            f"{size:>10,} | {quotient(rates['jsonl'], rates['copy']):>11.2f}× | "
            f"{quotient(rates['parquet'], rates['copy']):>13.2f}× | "
            f"{quotient(rates['jsonl'], rates['naive']):>12.2f}× | "
            f"{quotient(rates['parquet'], rates['naive']):>14.2f}×"
        )
    small, large = sizes[0], sizes[-1]
    if len(sizes) > 1:
        print()
        print(f"peak RSS at {large:,} ÷ at {small:,}:")
        for candidate in CANDIDATES:
            growth = quotient(results[large][candidate].peak_rss_mb, results[small][candidate].peak_rss_mb)
            print(f"  {candidate:<8} {growth:.2f}×")

    print()
    indicative = large != TARGET_LARGE
    at_large = results[large]
    for candidate in RANKWISE:
        share = quotient(at_large[candidate].rows_per_second, at_large["copy"].rows_per_second)
        times = quotient(at_large[candidate].rows_per_second, at_large["naive"].rows_per_second)
        print(
            f"target {candidate} >= {TARGET_SHARE_OF_COPY}× the COPY drain at {large:,}: {share:.2f}× — "
            f"{verdict(share >= TARGET_SHARE_OF_COPY, indicative=indicative)}"
        )
        print(
            f"target {candidate} >= {TARGET_TIMES_NAIVE:g}× the naive loop at {large:,}: {times:.2f}× — "
            f"{verdict(times >= TARGET_TIMES_NAIVE, indicative=indicative)}"
        )
        peak = max(results[size][candidate].peak_rss_mb for size in sizes)
        print(
            f"target {candidate} peak RSS <= {TARGET_PEAK_RSS_MB:g} MB (largest over the sizes): "
            f"{peak:.0f} MB — {verdict(peak <= TARGET_PEAK_RSS_MB, indicative=indicative)}"
        )
        if len(sizes) > 1:
            growth = quotient(at_large[candidate].peak_rss_mb, results[small][candidate].peak_rss_mb)
            print(
                f"target {candidate} peak RSS at {large:,} <= {TARGET_RSS_GROWTH}× at {small:,}: {growth:.2f}× — "
                f"{verdict(growth <= TARGET_RSS_GROWTH, indicative=(small, large) != (TARGET_SMALL, TARGET_LARGE))}"
            )


def profile_print(path: str, *, lines: int) -> None:
    import pstats

    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--sizes",
        type=int_list,
        default=list(DEFAULT_SIZES),
        help="judgments per measurement, comma-separated",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: sizes {QUICK_SIZES[0]:,} and {QUICK_SIZES[1]:,}"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each candidate per size (median time)")
    parser.add_argument("--reseed", action="store_true", help="drop and seed the database even if it fits")
    parser.add_argument("--profile", choices=RANKWISE, help="cProfile one export instead of the benchmark")
    parser.add_argument("--profile-size", type=int, default=TARGET_SMALL, help="judgments for --profile")
    parser.add_argument("--profile-lines", type=int, default=40, help="functions listed by --profile")
    parser.add_argument("--child", choices=CANDIDATES, help=argparse.SUPPRESS)
    parser.add_argument("--child-judgments", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-mark", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        return child_main(
            arguments.child,
            judgments=arguments.child_judgments,
            mark=arguments.child_mark,
            profile_path=arguments.child_profile,
        )

    sizes = sorted(set(QUICK_SIZES if arguments.quick else arguments.sizes))
    if arguments.profile:
        sizes = [arguments.profile_size]
    config = bench_database_config_or_exit(
        script=SCRIPT, example_database="rankwise_bench_export", doing="seeds (and with --reseed drops)"
    )
    load_before = os.getloadavg()
    needed = max(sizes)
    database_prepare(config, drop=arguments.reseed, script=SCRIPT)
    django_setup()
    migrate()
    django_disconnect()
    seeded = 0 if arguments.reseed else seeded_judgments(config)
    if seeded >= needed:
        seed_note = f"re-used (seeded earlier with {seeded:,} judgments)"
        print(f"re-using the seeded database ({seeded:,} judgments)", file=sys.stderr)
    else:
        if not arguments.reseed:  # a smaller or other seed, or none: start from an empty database
            database_prepare(config, drop=True, script=SCRIPT)
            migrate()
            django_disconnect()
        print(f"seeding {needed:,} judgments ...", file=sys.stderr)
        seconds = seed(config, judgments=needed)
        seed_note = f"seeded in this run in {seconds:.1f} s"
        print(f"seeded in {seconds:.1f} s", file=sys.stderr)

    with connect(config) as connection:
        marks = {size: mark_for(connection, size) for size in sizes}
        version_row = connection.execute("SHOW server_version").fetchone()
        server_version = str(version_row[0]) if version_row else "unknown"
        high = marks[max(sizes)][0]
        # Warm the operating system's cache with the rows every candidate reads (not measured).
        began = time.perf_counter()
        with connection.cursor() as cursor, cursor.copy(copy_query(high)) as copy:
            for _ in copy:
                pass
        print(f"warm-up drain: {time.perf_counter() - began:.1f} s", file=sys.stderr)

    if arguments.profile:
        size = sizes[0]
        mark = marks[size][0]
        with tempfile.TemporaryDirectory(prefix="rankwise-bench-export-profile-") as folder:
            path = str(Path(folder) / "export.prof")
            result = run_child(arguments.profile, judgments=size, mark=mark, profile_path=path)
            print(
                f"{arguments.profile} at {size:,} judgments under cProfile: {result.rows:,} rows in "
                f"{result.seconds:.2f} s ({result.rows_per_second:,.0f} rows/s, profiler included)"
            )
            profile_print(path, lines=arguments.profile_lines)
        return 0

    with connect(config) as connection:
        small_mark, _ = mark_for(connection, min(VERIFY_JUDGMENTS, min(sizes)))
    problems = verify_same_rows(config, small_mark)
    if problems:
        for problem in problems:
            print(f"row check: {problem}", file=sys.stderr)
        return 1
    print(
        f"row check at {min(VERIFY_JUDGMENTS, min(sizes)):,} judgments: the candidates write the same rows",
        file=sys.stderr,
    )

    results: dict[int, dict[str, Measured]] = {
        size: {name: Measured() for name in CANDIDATES} for size in sizes
    }
    mismatched = False
    for size in sizes:
        mark, expected = marks[size]
        for _ in range(arguments.repeat):
            for candidate in CANDIDATES:
                result = run_child(candidate, judgments=size, mark=mark)
                results[size][candidate].runs.append(result)
                print(
                    f"  {size:>9,} {candidate:<8} {result.rows:>9,} rows in {result.seconds:7.2f} s = "
                    f"{result.rows_per_second:>9,.0f} rows/s, peak RSS {result.peak_rss_mb:5.0f} MB, "
                    f"load {result.load_average:.1f}",
                    file=sys.stderr,
                )
                if result.rows != expected:
                    mismatched = True
        print(
            f"row counts at {size:,} (expected {expected:,} A/B judgments at or below id {mark:,}): "
            + ", ".join(f"{name} {results[size][name].rows:,}" for name in CANDIDATES)
        )
    shape = data_shape(config)
    report_print(
        results,
        shape=shape,
        seed_note=seed_note,
        server_version=server_version,
        load_before=load_before,
        repeat=arguments.repeat,
    )
    if mismatched:
        print("row counts differ between the candidates: see above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quality statistics: the whole refresh of a project's quality page at a million judgments, part by part,
and Krippendorff's alpha against the `krippendorff` package on the same data, in the same run.

Run from the repository root against a PostgreSQL server. The database named in DATABASE_URL is created
(and migrated) if it is missing and seeded once; a later run re-uses it when it holds this script's seed
at the same size. Otherwise (or with `--reseed`) it is dropped and seeded again, so its name must contain
"bench" (and not start with "test_"):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rankwise_bench_quality \\
        .venv/bin/python bench/quality.py [--judgments 1000000 | --quick] [--repeat 3] [--profile]

The seed (SQL, `INSERT … SELECT … FROM generate_series`, one transaction, then `VACUUM ANALYZE` and
`CHECKPOINT`; deterministic): one pairwise project with the default rubric (5 rating axes, 1–5) and 200
annotators. `--judgments` ordinary judgments (1,000,000; `--quick`: 100,000), three per comparison by
three distinct annotators drawn per comparison (so every pair of annotators shares some comparisons), in
comparison order. Each comparison has a latent truth (45 % A, 40 % B, 10 % tie, 5 % both bad, a strength
1–3, and a 1–5 score per response and axis); an annotator gives the truth with their own probability and
otherwise draws an answer from the same marginals, so alpha is well above 0. Most annotators follow the
truth 70–90 % of the time; 5 guess (0 %), 5 are careless (40 %), 2 pick A whenever they do not follow
(50 %: position bias) and 4 spend 2–8 s per judgment where the others spend 15–105 s (too fast to read
responses of 300–1,000 characters each). A quarter of the comparisons are rated: each of their judgments
scores both responses on all 5 axes. Gold: 1,000 gold comparisons (imported responses, a `GoldVerdict`
accepting the truth), and one gold answer per 10 ordinary judgments (500 per annotator at 1,000,000, each
annotator on distinct items), interleaved in time; standings exist for every annotator (as the claim
leaves them), all active.

Measured, each in a fresh Python process (so each peak RSS, VmHWM, is its own):

1. `refresh`: `feedback.services.quality.project_quality_refresh(project_id=…)`, as deployed (beat calls
   it). Run once unmeasured first from reset standings (every annotator active, no quality rows, no
   review items): that first refresh warns and suspends the bad annotators and fills the review queue;
   the measured one starts from where it left them (a repeat refresh is then idempotent, as beat's
   are). The service's own functions are wrapped with timers (the same functions run), so the report
   shows how its time splits; the rest is storing and the small queries in between.
2. `parts`: the same pieces called by this script one after the other with the refresh's arguments:
   `judgment_arrays`, `rating_arrays`, gold grading (`feedback.services.standing.gold_answers` and the
   counts), `project_report`, the gold count and timeline times, `annotator_reports`, storing (the
   service's `quality_store`), one `standing_evaluate` per annotator (from the figures in hand, as the service), and the review queue
   (`_review_candidates` and `review_queue_refresh`, where the service has them); then, called again on
   the same arrays, the pure pieces inside the reports (alpha per measure, per category and over time,
   kappa of every pair, the leave-one-out majority) and the standing's two reads (gold answers and
   position figures per annotator). It also saves the alpha inputs for 3 and 4.
3. `ours`: `feedback.quality.agreement.krippendorff_alpha(units, values, level=…)` on the nominal choice
   (units: comparisons), the ordinal signed strength and one interval rating axis (instruction
   following), `--repeat` runs each (median).
4. `package`: `krippendorff.alpha(value_counts=…, value_domain=…, level_of_measurement=…)` on the same
   data. The package takes a units × annotators matrix (`reliability_data`: 200 × 333,334 floats, 533 MB)
   or a units × values count matrix (`value_counts`); the value counts are used, built with numpy
   (`np.unique` codes and one `np.bincount`) outside the package's timed call and timed on their own.
   The values must equal ours to 1e-9 (exit 1 otherwise).

Exit 0 whether the targets are met or not, 1 when the alphas differ, 2 when the benchmark cannot run.
`--profile` runs the refresh once under cProfile instead and prints where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
from benchkit import (
    bench_database_config_or_exit,
    connect,
    cpu_model,
    database_prepare,
    django_disconnect,
    django_setup,
    exit_unable,
    memory_gib,
    migrate,
    quotient,
    seed_load,
    verdict,
)
from psycopg import sql

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "bench/quality.py"
EXAMPLE_DATABASE = "rankwise_bench_quality"
# Bump when the seed's shape changes: a database seeded by another version is seeded again.
SEED_VERSION = "quality-seed-v1"
PROJECT_SLUG = "bench-quality"
OVERLAP = 3
ANNOTATORS = 200
GOLD_ITEMS = 1_000
GOLD_PER_ORDINARY = 10  # one gold answer per this many ordinary judgments
DEFAULT_JUDGMENTS = 1_000_000
QUICK_JUDGMENTS = 100_000
MIN_JUDGMENTS = 10_000
# Targets from the issue (at 1,000,000 judgments, on the 2-core machine).
TARGET_JUDGMENTS = 1_000_000
TARGET_SECONDS = 10.0
TARGET_PEAK_RSS_MB = 512.0
ALPHA_TOLERANCE = 1e-9
ALPHA_AXIS = "instruction_following"
# (name in the report, level): the three alphas timed against the package.
ALPHA_MEASURES: tuple[tuple[str, Literal["nominal", "ordinal", "interval"]], ...] = (
    ("choice", "nominal"),
    ("strength", "ordinal"),
    (f"axis:{ALPHA_AXIS}", "interval"),
)
CANDIDATES = ("refresh", "parts", "ours", "package")
# The review queue's step at the end of the refresh (timed when the service has it).
REVIEW_STEPS = ("_review_candidates", "review_queue_refresh")
CHILD_RESULT_PREFIX = "BENCH-RESULT "

# --- Seeding ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """How an annotator answers: `follow` percent of answers give the comparison's truth; otherwise a draw
    from the marginals, or A when `biased`. `fast`: 2–8 s per judgment."""

    kind: str
    follow: int
    biased: bool = False
    fast: bool = False


def annotator_profile(index: int) -> Profile:
    if index % 40 == 7:
        return Profile("guesser", 0)
    if index % 40 == 27:
        return Profile("careless", 40)
    if index % 100 == 13:
        return Profile("position-biased", 50, biased=True)
    if index % 50 == 41:
        return Profile("fast", 80, fast=True)
    return Profile("good", 70 + (index * 7) % 21)


def hashed(expression: str, seed: int) -> str:
    """A deterministic non-negative hash of a bigint expression (0 … 2^31 − 1), as SQL."""
    return f"(hashint8extended(({expression})::bigint, {seed}) & 2147483647)"


def outcome(roll: str) -> str:
    """A pairwise choice from a roll in 0 … 99 with the seed's marginals: 45 % A, 40 % B, 10 % tie, 5 % both
    bad."""
    return f"CASE WHEN {roll} < 45 THEN 'a' WHEN {roll} < 85 THEN 'b' WHEN {roll} < 95 THEN 'tie' ELSE 'both_bad' END"


def truth(comparison: str) -> str:
    return outcome(f"{hashed(comparison, 8)} %% 100")


def score(*, response: str, axis: int, side: int) -> str:
    """The annotator's score of a response on an axis: the latent score (per response and axis) with the
    annotator's probability, else a uniform draw."""
    key = f"j * 16 + {axis * 2 + side}"
    latent = f"1 + {hashed(f'{response} * 8 + {axis}', 14)} %% 5"
    return f"CASE WHEN {hashed(key, 15)} %% 100 < follow THEN {latent} ELSE 1 + {hashed(key, 16)} %% 5 END"


def ratings_object(axes: list[str]) -> str:
    """The judgment's ratings JSON for a rated comparison: both responses (ids 2c − 1 and 2c), every axis."""
    responses = []
    for side, response in enumerate(("2 * c - 1", "2 * c")):
        scores = ", ".join(
            f"'{key}', {score(response=response, axis=index, side=side)}" for index, key in enumerate(axes)
        )
        responses.append(f"({response})::text, jsonb_build_object({scores})")
    return f"jsonb_build_object({', '.join(responses)})"


ORDINARY_SOURCE = """
SELECT j, c, ({hc_base} %% %(annotator_count)s::int
        + k * (1 + {hc_step} %% ((%(annotator_count)s::int - 1) / 2))) %% %(annotator_count)s::int AS a,
    {hc_rated} %% 4 = 0 AS rated,
    now() - make_interval(secs => %(judgments)s::int - j) AS created_at
FROM (
    SELECT j, (j - 1) / %(overlap)s::int + 1 AS c, (j - 1) %% %(overlap)s::int AS k
    FROM generate_series(1::bigint, %(judgments)s::bigint) AS j
) AS numbered
"""
# Annotator a's r-th gold answer is on item (37 a + r) mod items: distinct items for one annotator.
GOLD_SOURCE = """
SELECT %(judgments)s::bigint + 1 + g AS j,
    %(comparisons)s::bigint + 1 + ((g %% %(annotator_count)s::int) * 37 + g / %(annotator_count)s::int)
        %% %(gold_items)s::int AS c,
    g %% %(annotator_count)s::int AS a, false AS rated,
    now() - make_interval(secs => %(judgments)s::int
        - (g * %(judgments)s::bigint / %(gold_judgments)s::bigint)::int) AS created_at
FROM generate_series(0::bigint, %(gold_judgments)s::bigint - 1) AS g
"""
JUDGMENTS = """
INSERT INTO feedback_judgment (id, comparison_id, annotator_id, assignment_id, choice, ranking, strength,
    ratings, rationale, flags, time_spent_ms, submission_key, created_at, updated_at)
SELECT j, c, (%(annotators)s::int[])[1 + a], NULL, choice,
    (CASE choice WHEN 'a' THEN '[1, 2]' WHEN 'b' THEN '[2, 1]' ELSE '[1, 1]' END)::jsonb,
    CASE WHEN choice IN ('a', 'b') THEN
        CASE WHEN follows AND {strength_follows} %% 100 < follow THEN truth_strength
        ELSE 1 + {strength_draw} %% 3 END
    END,
    CASE WHEN rated THEN {ratings} ELSE '{{}}'::jsonb END,
    '', '[]'::jsonb,
    CASE WHEN fast THEN 2000 + {time_draw} %% 6000 ELSE 15000 + {time_draw} %% 90000 END,
    'bench-quality-' || j, created_at, created_at
FROM (
    SELECT j, c, a, rated, created_at, follow, fast, follows, truth_strength,
        CASE WHEN follows THEN truth WHEN biased THEN 'a' ELSE {own} END AS choice
    FROM (
        SELECT source.*, (%(follow)s::int[])[1 + a] AS follow, (%(biased)s::bool[])[1 + a] AS biased,
            (%(fast)s::bool[])[1 + a] AS fast, {truth} AS truth, 1 + {truth_strength} %% 3 AS truth_strength,
            {follows_roll} %% 100 < (%(follow)s::int[])[1 + a] AS follows
        FROM ({source}) AS source
    ) AS drawn
) AS judged
"""


def judgments_statement(*, source: str, axes: list[str]) -> str:
    return JUDGMENTS.format(
        strength_follows=hashed("j", 11),
        strength_draw=hashed("j", 12),
        time_draw=hashed("j", 17),
        ratings=ratings_object(axes),
        own=outcome(f"{hashed('j', 6)} %% 100"),
        truth=truth("c"),
        truth_strength=hashed("c", 9),
        follows_roll=hashed("j", 10),
        source=source.format(hc_base=hashed("c", 5), hc_step=hashed("c", 7), hc_rated=hashed("c", 13)),
    )


def seed_statements(axes: list[str]) -> list[tuple[str, str]]:
    """Ids come from the series (the tables are empty): comparison i has prompt i and responses 2i − 1 and
    2i; comparisons after %(comparisons)s are gold."""
    return [
        (
            "prompts",
            f"""
            INSERT INTO feedback_prompt (id, project_id, external_id, conversation, category, metadata,
                content_hash, is_gold, created_at)
            SELECT i, %(project)s, 'bench-quality-' || i,
                jsonb_build_array(jsonb_build_object('role', 'user', 'content',
                    'Request ' || i || ': ' || md5(i::text))),
                (%(categories)s::text[])[1 + {hashed("i", 1)} %% cardinality(%(categories)s::text[])],
                '{{}}'::jsonb, encode(sha256(convert_to('bench-quality-' || i, 'UTF8')), 'hex'),
                i > %(comparisons)s, now()
            FROM generate_series(1::bigint, %(comparisons)s::bigint + %(gold_items)s) AS i
            """,
        ),
        (
            "responses",
            f"""
            INSERT INTO feedback_response (id, prompt_id, source, checkpoint_id, run_id, sample_index, text,
                sampling_parameters, seed, token_count, finish_reason, latency_seconds, created_at)
            SELECT 2 * i - 1 + k, i, CASE WHEN gold THEN 'imported' ELSE 'model' END,
                CASE WHEN gold THEN NULL WHEN k = 0 THEN %(checkpoint_a)s ELSE %(checkpoint_b)s END::bigint,
                CASE WHEN gold THEN NULL ELSE %(run)s END::bigint, CASE WHEN gold THEN k ELSE 0 END,
                rpad('', characters::int, md5((2 * i + k)::text) || ' '), '{{}}'::jsonb, NULL, characters / 4,
                CASE WHEN gold THEN '' ELSE 'eos' END, NULL, now()
            FROM (
                SELECT i, k, i > %(comparisons)s AS gold, 300 + {hashed("2 * i + k", 2)} %% 701 AS characters
                FROM generate_series(1::bigint, %(comparisons)s::bigint + %(gold_items)s) AS i
                CROSS JOIN generate_series(0, 1) AS k
            ) AS drawn
            """,
        ),
        (
            "comparisons",
            """
            INSERT INTO feedback_comparison (id, project_id, prompt_id, generation_run_id, is_gold,
                required_judgments, judgment_count, lease_count, status, created_at, completed_at)
            SELECT i, %(project)s, i, CASE WHEN gold THEN NULL ELSE %(run)s END::bigint, gold,
                CASE WHEN gold THEN NULL ELSE %(overlap)s END, CASE WHEN gold THEN 0 ELSE n END, 0,
                CASE WHEN NOT gold AND n >= %(overlap)s THEN 'completed' ELSE 'open' END, now(),
                CASE WHEN NOT gold AND n >= %(overlap)s THEN now() END
            FROM (
                SELECT i, i > %(comparisons)s AS gold,
                    greatest(0, least(%(overlap)s::int, %(judgments)s::bigint - %(overlap)s::int * (i - 1)))::int AS n
                FROM generate_series(1::bigint, %(comparisons)s::bigint + %(gold_items)s) AS i
            ) AS counted
            """,
        ),
        (
            "comparison responses",
            f"""
            INSERT INTO feedback_comparisonresponse (id, comparison_id, response_id, position)
            SELECT 2 * i - 1 + k, i, 2 * i - 1 + k, (k + ({hashed("i", 3)} & 1)) %% 2
            FROM generate_series(1::bigint, %(comparisons)s::bigint + %(gold_items)s) AS i
            CROSS JOIN generate_series(0, 1) AS k
            """,
        ),
        (
            "comparison characters (stored when made, as inference.pairing does)",
            """
            UPDATE feedback_comparison AS c SET characters = summed.total
            FROM (
                SELECT e.comparison_id, sum(length(r.text)) AS total
                FROM feedback_comparisonresponse e JOIN feedback_response r ON r.id = e.response_id
                GROUP BY e.comparison_id
            ) AS summed
            WHERE summed.comparison_id = c.id
            """,
        ),
        (
            "gold verdicts",
            # The response shown as A is 2c − 1 + b, as B 2c − b (b: the display order's bit above).
            f"""
            INSERT INTO feedback_goldverdict (comparison_id, verdict, explanation, created_by_id, created_at,
                updated_at)
            SELECT c, jsonb_build_object('accepted', jsonb_build_array(CASE truth
                    WHEN 'a' THEN (2 * c - 1 + b)::text WHEN 'b' THEN (2 * c - b)::text ELSE truth END)),
                '', NULL, now(), now()
            FROM (
                SELECT c, {hashed("c", 3)} & 1 AS b, {truth("c")} AS truth
                FROM generate_series(%(comparisons)s::bigint + 1, %(comparisons)s::bigint + %(gold_items)s) AS c
            ) AS items
            """,
        ),
        ("judgments", judgments_statement(source=ORDINARY_SOURCE, axes=axes)),
        ("gold answers", judgments_statement(source=GOLD_SOURCE, axes=axes)),
        (
            "gold answer counts",
            """
            UPDATE feedback_comparison AS c SET judgment_count = answered.n
            FROM (
                SELECT comparison_id, count(*) AS n FROM feedback_judgment
                WHERE comparison_id > %(comparisons)s GROUP BY comparison_id
            ) AS answered
            WHERE c.id = answered.comparison_id
            """,
        ),
        (
            "standings",
            """
            INSERT INTO feedback_annotatorstanding (project_id, annotator_id, status, reason, leases,
                gold_slots, gold_leases, changed_at, counts_since)
            SELECT %(project)s, annotator_id, 'active', '', count(*),
                count(*) FILTER (WHERE comparison_id > %(comparisons)s),
                count(*) FILTER (WHERE comparison_id > %(comparisons)s), NULL, NULL
            FROM feedback_judgment GROUP BY annotator_id
            """,
        ),
    ]


SEEDED_TABLES = (
    "feedback_prompt",
    "feedback_response",
    "feedback_comparison",
    "feedback_comparisonresponse",
    "feedback_judgment",
    "feedback_annotatorstanding",
)


@dataclass(frozen=True)
class Size:
    """The seed's counts for `judgments` ordinary judgments."""

    judgments: int

    @property
    def comparisons(self) -> int:
        return -(-self.judgments // OVERLAP)

    @property
    def gold_per_annotator(self) -> int:
        return max(1, min(GOLD_ITEMS, self.judgments // GOLD_PER_ORDINARY // ANNOTATORS))

    @property
    def gold_judgments(self) -> int:
        return self.gold_per_annotator * ANNOTATORS

    def signature(self) -> str:
        return f"{SCRIPT} {SEED_VERSION}: {self.judgments} judgments"


# --- Setup -----------------------------------------------------------------------------------------------


def database_config() -> dict[str, Any]:
    return bench_database_config_or_exit(
        script=SCRIPT, example_database=EXAMPLE_DATABASE, doing="seeds (and drops to seed again)"
    )


def seeded_size(config: dict[str, Any]) -> int:
    """Ordinary judgments of this script's seed in the database, 0 when it holds none or something else."""
    with connect(config) as connection:
        try:
            row = connection.execute(
                "SELECT guidelines FROM feedback_project WHERE slug = %s", [PROJECT_SLUG]
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        if row is None or not str(row[0]).startswith(f"{SCRIPT} {SEED_VERSION}: "):
            return 0
        size = Size(int(str(row[0]).rsplit(": ", 1)[1].split()[0]))
        counts = connection.execute(
            "SELECT (SELECT count(*) FROM feedback_judgment), (SELECT count(*) FROM feedback_comparison), "
            "(SELECT count(*) FROM feedback_goldverdict), (SELECT count(*) FROM feedback_project)"
        ).fetchone()
    expected = (size.judgments + size.gold_judgments, size.comparisons + GOLD_ITEMS, GOLD_ITEMS, 1)
    return size.judgments if counts == expected else 0


def seed(config: dict[str, Any], *, size: Size) -> float:
    """Project, checkpoints, run and annotators through the ORM, the rest in SQL; returns the seconds
    the SQL took, VACUUM ANALYZE and CHECKPOINT included."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    from feedback.models import GenerationRun, PolicyCheckpoint, Project, PromptCategory

    project = Project.objects.create(
        name="Quality benchmark",
        slug=PROJECT_SLUG,
        judgments_per_comparison=OVERLAP,
        guidelines=size.signature(),
    )
    axes = [axis["key"] for axis in project.rating_rubric]
    if len(axes) != 5 or ALPHA_AXIS not in axes:
        exit_unable(f"{SCRIPT}: expected the default rubric of 5 axes with {ALPHA_AXIS!r}, got {axes}")
    checkpoint_a = PolicyCheckpoint.objects.create(name="bench-quality-policy-a", source="/nonexistent/a")
    checkpoint_b = PolicyCheckpoint.objects.create(name="bench-quality-policy-b", source="/nonexistent/b")
    run = GenerationRun.objects.create(
        project=project,
        checkpoint=checkpoint_a,
        opponent_checkpoint=checkpoint_b,
        status=GenerationRun.Status.COMPLETED,
        samples_per_prompt=1,
        total_prompts=size.comparisons,
        done_prompts=size.comparisons,
    )
    users = User.objects.bulk_create(
        [
            User(username=f"bench-quality-annotator-{number:03d}", password=make_password(None))
            for number in range(1, ANNOTATORS + 1)
        ]
    )
    project.members.add(*users)
    django_disconnect()
    profiles = [annotator_profile(index) for index in range(ANNOTATORS)]
    parameters: dict[str, Any] = {
        "project": project.pk,
        "checkpoint_a": checkpoint_a.pk,
        "checkpoint_b": checkpoint_b.pk,
        "run": run.pk,
        "comparisons": size.comparisons,
        "judgments": size.judgments,
        "overlap": OVERLAP,
        "gold_items": GOLD_ITEMS,
        "gold_judgments": size.gold_judgments,
        "categories": list(PromptCategory.values),
        "annotators": [user.pk for user in users],
        "annotator_count": ANNOTATORS,
        "follow": [profile.follow for profile in profiles],
        "biased": [profile.biased for profile in profiles],
        "fast": [profile.fast for profile in profiles],
    }
    return seed_load(config, statements=seed_statements(axes), parameters=parameters, tables=SEEDED_TABLES)


def state_reset(config: dict[str, Any]) -> None:
    """Every annotator active again, no quality figures and no review items: the state the seed leaves."""
    with connect(config) as connection:
        row = connection.execute("SELECT id FROM feedback_project WHERE slug = %s", [PROJECT_SLUG]).fetchone()
        assert row is not None
        project = row[0]
        for table in ("feedback_standingchange", "feedback_annotatorquality", "feedback_projectquality"):
            connection.execute(
                sql.SQL("DELETE FROM {} WHERE project_id = %s").format(sql.Identifier(table)), [project]
            )
        review = connection.execute("SELECT to_regclass('feedback_reviewitem') IS NOT NULL").fetchone()
        if review and review[0]:  # the review queue the refresh fills, where this version has one
            connection.execute(
                "DELETE FROM feedback_reviewdecision WHERE item_id IN "
                "(SELECT id FROM feedback_reviewitem WHERE project_id = %s)",
                [project],
            )
            connection.execute("DELETE FROM feedback_reviewitem WHERE project_id = %s", [project])
        connection.execute(
            "UPDATE feedback_annotatorstanding SET status = 'active', reason = '', changed_at = NULL, "
            "counts_since = NULL WHERE project_id = %s",
            [project],
        )


@dataclass(frozen=True)
class DataShape:
    judgments: int
    gold_answers: int
    comparisons: int
    gold_items: int
    rated_judgments: int
    database_mb: float
    choices: dict[str, int]


def data_shape(config: dict[str, Any]) -> DataShape:
    with connect(config) as connection:
        row = connection.execute(
            "SELECT (SELECT count(*) FROM feedback_judgment j JOIN feedback_comparison c ON c.id = j.comparison_id "
            "WHERE NOT c.is_gold), (SELECT count(*) FROM feedback_judgment j JOIN feedback_comparison c "
            "ON c.id = j.comparison_id WHERE c.is_gold), (SELECT count(*) FROM feedback_comparison WHERE NOT is_gold), "
            "(SELECT count(*) FROM feedback_comparison WHERE is_gold), "
            "(SELECT count(*) FROM feedback_judgment WHERE ratings <> '{}'::jsonb), "
            "pg_database_size(current_database())"
        ).fetchone()
        assert row is not None
        choices: dict[str, int] = dict(
            connection.execute(
                "SELECT j.choice, count(*) FROM feedback_judgment j JOIN feedback_comparison c "
                "ON c.id = j.comparison_id WHERE NOT c.is_gold GROUP BY j.choice"
            ).fetchall()
        )
    return DataShape(
        judgments=int(row[0]),
        gold_answers=int(row[1]),
        comparisons=int(row[2]),
        gold_items=int(row[3]),
        rated_judgments=int(row[4]),
        database_mb=int(row[5]) / 1e6,
        choices={str(key): int(value) for key, value in choices.items()},
    )


# --- Measuring (in child processes) ----------------------------------------------------------------------


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


def django_backend_pid() -> int:
    """The process id of the PostgreSQL backend serving Django's connection (opened here if need be)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def backend_cpu_seconds(pid: int) -> float:
    """User + system CPU of a local PostgreSQL backend from /proc (NaN when it cannot be read, e.g. a
    server on another machine). Parallel workers the backend starts are other processes, not counted."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Timing:
    """One timed piece: wall and CPU seconds of this process and of its PostgreSQL backend, and this
    process's peak RSS (VmHWM) after it."""

    name: str
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float
    peak_rss_mb: float
    calls: int = 1
    level: int = 0  # 1: a piece inside the one above, timed again on its own


class Clock:
    def __init__(self, backend_pid: int) -> None:
        self.timings: list[Timing] = []
        self.backend_pid = backend_pid

    def run(self, name: str, function: Callable[[], Any], *, level: int = 0) -> Any:
        cpu, server = cpu_seconds(), backend_cpu_seconds(self.backend_pid)
        began = time.perf_counter()
        result = function()
        seconds = time.perf_counter() - began
        self.timings.append(
            Timing(
                name,
                seconds,
                cpu_seconds() - cpu,
                backend_cpu_seconds(self.backend_pid) - server,
                memory_status()["VmHWM"],
                level=level,
            )
        )
        return result


def child_print(payload: dict[str, Any]) -> int:
    payload["load_average"] = os.getloadavg()[0]
    print(CHILD_RESULT_PREFIX + json.dumps(payload), flush=True)
    return 0


def project_id() -> int:
    from feedback.models import Project

    return int(Project.objects.values_list("pk", flat=True).get(slug=PROJECT_SLUG))


def refresh_main(*, profile_path: str | None) -> int:
    """The deployed refresh, whole. The service module's functions are wrapped with timers (the same
    functions run), so that its time can be split."""
    django_setup()
    from feedback.services import quality as service

    target = project_id()
    backend = django_backend_pid()  # the connection the refresh will use, opened before the clock starts
    spent: dict[str, list[float]] = {}
    if profile_path is None:
        for name in (
            "judgment_arrays",
            "rating_arrays",
            "gold_answers",
            "project_report",
            "_timeline_times",
            "annotator_reports",
            "standing_evaluate",
            *REVIEW_STEPS,
        ):
            original = getattr(service, name, None)
            if original is None:
                continue  # a step this version of the service does not have

            def timed(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    spent.setdefault(_name, []).append(time.perf_counter() - began)

            setattr(service, name, timed)  # timing only: the same function runs
    base = memory_status()
    cpu, server = cpu_seconds(), backend_cpu_seconds(backend)
    began = time.perf_counter()
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        quality = profiler.runcall(service.project_quality_refresh, project_id=target)
        profiler.dump_stats(profile_path)
    else:
        quality = service.project_quality_refresh(project_id=target)
    seconds = time.perf_counter() - began
    cpu, server = cpu_seconds() - cpu, backend_cpu_seconds(backend) - server
    peak = memory_status()
    assert quality is not None
    return child_print(
        {
            "candidate": "refresh",
            "seconds": seconds,
            "cpu_seconds": cpu,
            "server_cpu_seconds": server,
            "base_rss_mb": base["VmRSS"],
            "peak_rss_mb": peak["VmHWM"],
            "recorded_seconds": quality.seconds,
            "inside": {name: [sum(values), len(values)] for name, values in spent.items()},
            "alpha": {name: entry["value"] for name, entry in quality.report["alpha"].items()},
            "judgments": quality.report["judgments"],
            "kappa_pairs": len(quality.report["kappa"]["pairs"]),
            "report_bytes": len(json.dumps(quality.report)),
        }
    )


def parts_main(*, arrays_path: str) -> int:
    """Each piece of the refresh called here with the refresh's arguments, in its order; then the pieces
    inside the reports and the standing evaluation, again on the same inputs."""
    django_setup()
    import numpy as np
    from django.db.models import Max

    from feedback.models import Judgment, Project
    from feedback.quality import report as reporting
    from feedback.quality.agreement import (
        cohen_kappa_pairs,
        krippendorff_alpha,
        majority_agreement,
        nominal_alpha_prefixes,
    )
    from feedback.services import quality as service
    from feedback.services.standing import StandingFigures, gold_answers, position_figures, standing_evaluate

    project = Project.objects.get(slug=PROJECT_SLUG)
    backend = django_backend_pid()
    clock = Clock(backend)
    base = memory_status()
    began = time.perf_counter()
    cpu, server = cpu_seconds(), backend_cpu_seconds(backend)
    high_water_mark = clock.run(
        "high-water mark", lambda: Judgment.objects.aggregate(mark=Max("pk"))["mark"] or 0
    )
    axes = [axis["key"] for axis in project.rating_rubric or []]
    is_ranking = project.comparison_mode == Project.ComparisonMode.RANKING
    responses = project.responses_per_comparison
    table = clock.run(
        "judgment_arrays", lambda: service.judgment_arrays(project=project, high_water_mark=high_water_mark)
    )
    ratings = clock.run(
        "rating_arrays",
        lambda: service.rating_arrays(project=project, high_water_mark=high_water_mark, axes=axes),
    )

    graded: list[Any] = []

    def gold_grade() -> dict[int, tuple[int, int]]:
        graded.extend(gold_answers(project_id=project.pk))
        answered: dict[int, int] = {}
        correct: dict[int, int] = {}
        for answer in graded:
            answered[answer.annotator_id] = answered.get(answer.annotator_id, 0) + 1
            correct[answer.annotator_id] = correct.get(answer.annotator_id, 0) + answer.correct
        return {person: (answered[person], correct[person]) for person in answered}

    gold = clock.run("gold grading (gold_answers)", gold_grade)
    report = clock.run(
        "project_report",
        lambda: reporting.project_report(
            table,
            ratings,
            axes=axes,
            categories=service.CATEGORIES,
            is_ranking=is_ranking,
            responses=responses,
        ),
    )

    def gold_count_and_timeline() -> None:
        report["gold"] = {
            "items": project.comparisons.filter(is_gold=True).count(),
            "answered": sum(answered for answered, _ in gold.values()),
            "correct": sum(correct for _, correct in gold.values()),
        }
        service._timeline_times(report)

    clock.run("gold count, timeline times", gold_count_and_timeline)
    annotators = clock.run(
        "annotator_reports",
        lambda: reporting.annotator_reports(
            table,
            gold,
            is_ranking=is_ranking,
            responses=responses,
            gold_min_answers=project.gold_min_answers,
            gold_warn_accuracy=project.gold_warn_accuracy,
        ),
    )

    def store() -> None:
        service.quality_store(
            project=project,
            report=report,
            annotators=annotators,
            high_water_mark=high_water_mark,
            seconds=time.perf_counter() - began,
        )

    clock.run("storing", store)

    def standings() -> None:
        # As the service does: from the figures in hand, unless the annotator was reinstated.
        for entry in annotators:
            standing_evaluate(
                project_id=project.pk,
                annotator_id=entry.annotator,
                figures=StandingFigures(
                    gold_answered=entry.gold_answered,
                    gold_correct=entry.gold_correct,
                    first=entry.first_chosen,
                    decisive=entry.decisive,
                ),
            )

    clock.run(f"standing_evaluate × {len(annotators)}", standings)
    for timing in clock.timings:
        if timing.name.startswith("standing_evaluate"):
            timing.calls = len(annotators)
    if all(hasattr(service, name) for name in REVIEW_STEPS):

        def review_queue() -> None:
            low, flagged, disputed = service._review_candidates(project, table, graded, is_ranking=is_ranking)
            service.review_queue_refresh(
                project=project, low_agreement=low, flagged=flagged, gold_disputed=disputed
            )

        clock.run("review queue", review_queue)
    sequence_seconds, sequence_cpu = time.perf_counter() - began, cpu_seconds() - cpu
    sequence_server = backend_cpu_seconds(backend) - server
    peak_after_sequence = memory_status()["VmHWM"]

    # The pieces inside, timed again on their own (same inputs; not part of the sum above).
    choice = reporting.choice_values(table, is_ranking=is_ranking)
    inner = Clock(backend)
    inner.run(
        "alpha per measure (choice, strength, 5 axes)",
        lambda: reporting.alpha_by_measure(table, ratings, axes=axes, is_ranking=is_ranking),
        level=1,
    )

    def by_category() -> None:
        for index in range(len(service.CATEGORIES)):
            mine = table.category == index
            if mine.any():
                krippendorff_alpha(table.comparison[mine], choice[mine], level="nominal")

    inner.run(f"alpha per category ({len(service.CATEGORIES)})", by_category, level=1)

    def over_time() -> None:  # as project_report does it: every prefix in one pass
        order = np.argsort(table.sequence, kind="stable")
        cuts = np.unique(np.linspace(0, len(order), reporting.TIMELINE_POINTS + 1).astype(np.int64)[1:])
        nominal_alpha_prefixes(table.comparison[order], choice[order], cuts)

    inner.run(f"alpha over time ({reporting.TIMELINE_POINTS} points)", over_time, level=1)
    inner.run(
        "kappa of every pair (cohen_kappa_pairs)",
        lambda: cohen_kappa_pairs(
            table.comparison, table.annotator, choice, min_shared=reporting.KAPPA_MIN_SHARED
        ),
        level=1,
    )
    inner.run(
        "leave-one-out majority (majority_agreement)",
        lambda: majority_agreement(table.comparison, table.annotator, choice),
        level=1,
    )
    people = [entry.annotator for entry in annotators]
    inner.run(
        f"standing: gold_answers × {len(people)}",
        lambda: [gold_answers(project_id=project.pk, annotator_id=person) for person in people],
        level=1,
    )
    inner.run(
        f"standing: position_figures × {len(people)}",
        lambda: [position_figures(project=project, annotator_id=person, since=None) for person in people],
        level=1,
    )

    on_scale, signed = reporting.strength_values(table)
    axis_index = axes.index(ALPHA_AXIS)
    scored = ratings.axis == axis_index
    np.savez(
        arrays_path,
        choice_units=table.comparison,
        choice_values=choice,
        strength_units=table.comparison[on_scale],
        strength_values=signed[on_scale],
        axis_units=ratings.unit[scored],
        axis_values=ratings.score[scored],
    )
    return child_print(
        {
            "candidate": "parts",
            "seconds": sequence_seconds,
            "cpu_seconds": sequence_cpu,
            "server_cpu_seconds": sequence_server,
            "base_rss_mb": base["VmRSS"],
            "peak_rss_mb": peak_after_sequence,
            "timings": [vars(timing) for timing in clock.timings],
            "inner": [vars(timing) for timing in inner.timings],
            "judgments": len(table),
            "scores": len(ratings.score),
            "alpha": {name: entry["value"] for name, entry in report["alpha"].items()},
        }
    )


def measure_arrays(arrays_path: str) -> dict[str, tuple[Any, Any]]:
    import numpy as np

    with np.load(arrays_path) as data:
        return {
            name: (data[f"{key}_units"], data[f"{key}_values"])
            for name, key in zip(
                (name for name, _ in ALPHA_MEASURES), ("choice", "strength", "axis"), strict=True
            )
        }


def ours_main(*, arrays_path: str, repeat: int) -> int:
    sys.path.insert(0, str(REPOSITORY_ROOT))
    from feedback.quality.agreement import krippendorff_alpha

    measures = measure_arrays(arrays_path)
    base = memory_status()
    results = {}
    for name, level in ALPHA_MEASURES:
        units, values = measures[name]
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            alpha = krippendorff_alpha(units, values, level=level)
            times.append(time.perf_counter() - began)
        results[name] = {
            "value": alpha.value,
            "seconds": times,
            "units": alpha.units,
            "values": alpha.values,
            "answers": len(units),
        }
    peak = memory_status()
    return child_print(
        {"candidate": "ours", "base_rss_mb": base["VmRSS"], "peak_rss_mb": peak["VmHWM"], "measures": results}
    )


def value_counts_build(units: Any, values: Any) -> tuple[Any, Any]:
    """The package's `value_counts` (units × values, how many answers gave each value) and its sorted value
    domain, from parallel arrays of answers."""
    import numpy as np

    _, unit_codes = np.unique(units, return_inverse=True)
    domain, value_codes = np.unique(values, return_inverse=True)
    unit_count = int(unit_codes.max(initial=-1)) + 1
    cells = unit_codes.reshape(-1).astype(np.int64) * len(domain) + value_codes.reshape(-1)
    counts = np.bincount(cells, minlength=unit_count * len(domain)).reshape(unit_count, len(domain))
    return counts, domain


def package_main(*, arrays_path: str, repeat: int) -> int:
    import krippendorff

    measures = measure_arrays(arrays_path)
    base = memory_status()
    results = {}
    for name, level in ALPHA_MEASURES:
        units, values = measures[name]
        build_times, alpha_times = [], []
        for _ in range(repeat):
            began = time.perf_counter()
            counts, domain = value_counts_build(units, values)
            build_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            value = float(
                krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level)
            )
            alpha_times.append(time.perf_counter() - began)
            matrix_shape = counts.shape
            del counts
        results[name] = {
            "value": value,
            "seconds": alpha_times,
            "build_seconds": build_times,
            "matrix_shape": list(matrix_shape),
            "answers": len(units),
        }
    peak = memory_status()
    return child_print(
        {
            "candidate": "package",
            "base_rss_mb": base["VmRSS"],
            "peak_rss_mb": peak["VmHWM"],
            "measures": results,
            "version": getattr(krippendorff, "__version__", None) or package_version("krippendorff"),
        }
    )


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def run_child(candidate: str, *extra: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", candidate, *extra]
    completed = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(CHILD_RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        sys.stderr.write(completed.stdout[-5000:] + completed.stderr[-5000:])
        raise RuntimeError(f"{candidate} failed (exit {completed.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(CHILD_RESULT_PREFIX) :])
    return result


# --- Report ----------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report_print(
    *,
    size: Size,
    shape: DataShape,
    seed_note: str,
    server_version: str,
    load_before: tuple[float, float, float],
    first: dict[str, Any],
    refresh: dict[str, Any],
    parts: dict[str, Any],
    ours: dict[str, Any],
    package: dict[str, Any],
    repeat: int,
) -> bool:
    """Print the figures; True when every alpha equals the package's."""
    import django
    import numpy
    import scipy

    load_after = os.getloadavg()
    indicative = size.judgments != TARGET_JUDGMENTS
    print()
    print(f"Quality statistics benchmark ({SCRIPT})")
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model()}), {memory_gib():.0f} GiB RAM, PostgreSQL "
        f"{server_version}, Python {platform.python_version()}, Django {django.get_version()}, numpy "
        f"{numpy.__version__}, scipy {scipy.__version__}, krippendorff {package['version']}"
    )
    print(
        f"load average (1/5/15 min): {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f} before, "
        f"{load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} after"
    )
    choices = ", ".join(
        f"{name} {quotient(count, shape.judgments):.1%}" for name, count in sorted(shape.choices.items())
    )
    print(
        f"database: {shape.judgments:,} judgments on {shape.comparisons:,} comparisons (overlap {OVERLAP}, "
        f"{ANNOTATORS} annotators), {shape.rated_judgments:,} rated ({parts['scores']:,} scores), "
        f"{shape.gold_answers:,} gold answers on {shape.gold_items:,} gold items; {shape.database_mb:,.0f} MB; "
        f"{seed_note}"
    )
    print(f"  choices: {choices}")
    print()
    inside = refresh["inside"]
    print(
        "The refresh, part by part (called alone: each piece called by this script in the refresh's order, "
        "one process; inside: the same functions timed inside one project_quality_refresh):"
    )
    header = (
        f"{'part':<46} | {'alone s':>8} | {'CPU s':>6} | {'server CPU s':>12} | {'VmHWM MB':>8} | "
        f"{'inside s':>8}"
    )
    print(header)
    print("-" * len(header))
    inside_names = {
        "judgment_arrays": ("judgment_arrays",),
        "rating_arrays": ("rating_arrays",),
        "gold grading (gold_answers)": ("gold_answers",),
        "project_report": ("project_report",),
        "gold count, timeline times": ("_timeline_times",),
        "annotator_reports": ("annotator_reports",),
        "review queue": REVIEW_STEPS,
    }
    accounted = 0.0
    for timing in parts["timings"]:
        name = timing["name"]
        keys = ("standing_evaluate",) if name.startswith("standing_evaluate") else inside_names.get(name, ())
        found = [inside[key][0] for key in keys if key in inside]
        inside_seconds = sum(found) if found else None
        if inside_seconds is not None:
            accounted += inside_seconds
        shown = f"{inside_seconds:8.2f}" if inside_seconds is not None else f"{'–':>8}"
        print(
            f"{name:<46} | {timing['seconds']:8.2f} | {timing['cpu_seconds']:6.2f} | "
            f"{timing['server_cpu_seconds']:12.2f} | {timing['peak_rss_mb']:8.0f} | {shown}"
        )
    rest = refresh["seconds"] - accounted
    print(
        f"{'storing and the rest (whole − the timed ones)':<46} | {'':>8} | {'':>6} | {'':>12} | {'':>8} | "
        f"{rest:8.2f}"
    )
    print(
        f"{'sum / whole':<46} | {parts['seconds']:8.2f} | {parts['cpu_seconds']:6.2f} | "
        f"{parts['server_cpu_seconds']:12.2f} | {parts['peak_rss_mb']:8.0f} | {refresh['seconds']:8.2f}"
    )
    print()
    print("Inside the pieces (called again on their own, same inputs; not in the sum above):")
    for timing in parts["inner"]:
        print(
            f"  {timing['name']:<52} {timing['seconds']:7.2f} s  (CPU {timing['cpu_seconds']:.2f} s, "
            f"server CPU {timing['server_cpu_seconds']:.2f} s)"
        )
    print()
    print(
        f"project_quality_refresh as deployed (fresh process): {refresh['seconds']:.2f} s wall, "
        f"{refresh['cpu_seconds']:.2f} s CPU in the process, {refresh['server_cpu_seconds']:.2f} s in its "
        "PostgreSQL backend (parallel workers not counted), "
        f"RSS {refresh['base_rss_mb']:.0f} MB before, peak {refresh['peak_rss_mb']:.0f} MB; it recorded "
        f"{refresh['recorded_seconds']:.2f} s (without its standing evaluations); report "
        f"{refresh['report_bytes'] / 1e6:.1f} MB of JSON, {refresh['kappa_pairs']:,} kappa pairs"
    )
    print(
        f"the first refresh after resetting the standings (unmeasured warm-up; it writes the warnings and "
        f"suspensions): {first['seconds']:.2f} s, peak RSS {first['peak_rss_mb']:.0f} MB"
    )
    print()
    print(
        f"Alpha alone: ours (parallel arrays of answers) against krippendorff {package['version']} "
        f"(value_counts, a dense units × values matrix, built with numpy outside its timed call); "
        f"median of {repeat} runs each, fresh process per side:"
    )
    header = (
        f"{'measure':<28} | {'level':<8} | {'answers':>9} | {'pairable units':>14} | {'value_counts':>13} | "
        f"{'ours s':>7} | "
        f"{'package s':>9} | {'building s':>10} | {'pkg+build s':>11} | {'ours ÷ pkg':>10} | "
        f"{'ours ÷ pkg+build':>16}"
    )
    print(header)
    print("-" * len(header))
    equal = True
    speed = {}
    for name, level in ALPHA_MEASURES:
        mine, theirs = ours["measures"][name], package["measures"][name]
        ours_s, package_s, build_s = (
            median(mine["seconds"]),
            median(theirs["seconds"]),
            median(theirs["build_seconds"]),
        )
        speed[name] = (ours_s, package_s, build_s)
        print(
            f"{name:<28} | {level:<8} | {mine['answers']:>9,} | {mine['units']:>14,} | "
            f"{'×'.join(f'{side:,}' for side in theirs['matrix_shape']):>13} | {ours_s:7.3f} | "
            f"{package_s:9.3f} | {build_s:10.3f} | {package_s + build_s:11.3f} | "
            f"{quotient(ours_s, package_s):9.2f}× | {quotient(ours_s, package_s + build_s):15.2f}×"
        )
    print()
    for name, _ in ALPHA_MEASURES:
        value_ours, value_package = ours["measures"][name]["value"], package["measures"][name]["value"]
        difference = abs(value_ours - value_package) if value_ours is not None else float("inf")
        same = difference <= ALPHA_TOLERANCE
        equal = equal and same
        in_report = refresh["alpha"].get(name)
        print(
            f"alpha {name:<28} ours {value_ours!r:<22} package {value_package!r:<22} |difference| "
            f"{difference:.1e} {'(equal)' if same else '(DIFFERENT)'}; in the stored report {in_report!r}"
        )
    print(
        f"peak RSS of the alpha processes (loading the arrays included): ours {ours['peak_rss_mb']:.0f} MB "
        f"(from {ours['base_rss_mb']:.0f} MB), package {package['peak_rss_mb']:.0f} MB "
        f"(from {package['base_rss_mb']:.0f} MB)"
    )
    print()
    whole = refresh["seconds"]
    print(
        f"target: every statistic (project_quality_refresh) within {TARGET_SECONDS:g} s at {size.judgments:,}: "
        f"{whole:.2f} s — {verdict(whole <= TARGET_SECONDS, indicative=indicative)}"
    )
    computations = sum(
        timing["seconds"]
        for timing in parts["timings"]
        if timing["name"] in ("project_report", "annotator_reports")
    )
    print(
        f"  (the pure computations alone, project_report + annotator_reports: {computations:.2f} s; "
        f"in-process CPU of the whole refresh: {refresh['cpu_seconds']:.2f} s)"
    )
    for name, _ in ALPHA_MEASURES:
        ours_s, package_s, build_s = speed[name]
        print(
            f"target: alpha {name} at least as fast as the package: ours {ours_s:.3f} s against "
            f"{package_s:.3f} s given the matrix — {verdict(ours_s <= package_s, indicative=indicative)}; "
            f"against {package_s + build_s:.3f} s with its building — "
            f"{verdict(ours_s <= package_s + build_s, indicative=indicative)}"
        )
    print(
        f"target: peak RSS of the refresh <= {TARGET_PEAK_RSS_MB:g} MB: {refresh['peak_rss_mb']:.0f} MB — "
        f"{verdict(refresh['peak_rss_mb'] <= TARGET_PEAK_RSS_MB, indicative=indicative)}"
    )
    return equal


def profile_print(path: str, *, lines: int) -> None:
    import pstats

    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--judgments",
        type=int,
        default=DEFAULT_JUDGMENTS,
        help=f"ordinary judgments in the project (default {DEFAULT_JUDGMENTS:,}; at least {MIN_JUDGMENTS:,})",
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_JUDGMENTS:,} judgments")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each alpha per side (median)")
    parser.add_argument("--reseed", action="store_true", help="drop and seed the database even if it fits")
    parser.add_argument("--profile", action="store_true", help="cProfile one refresh instead")
    parser.add_argument("--profile-lines", type=int, default=35, help="functions listed by --profile")
    parser.add_argument("--child", choices=CANDIDATES, help=argparse.SUPPRESS)
    parser.add_argument("--child-arrays", help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child == "refresh":
        return refresh_main(profile_path=arguments.child_profile)
    if arguments.child == "parts":
        return parts_main(arrays_path=arguments.child_arrays)
    if arguments.child == "ours":
        return ours_main(arrays_path=arguments.child_arrays, repeat=arguments.repeat)
    if arguments.child == "package":
        return package_main(arrays_path=arguments.child_arrays, repeat=arguments.repeat)

    size = Size(QUICK_JUDGMENTS if arguments.quick else arguments.judgments)
    if size.judgments < MIN_JUDGMENTS:
        parser.error(f"--judgments must be at least {MIN_JUDGMENTS:,}")
    if arguments.repeat < 1:
        parser.error("--repeat must be at least 1")
    started = time.perf_counter()
    config = database_config()
    load_before = os.getloadavg()
    database_prepare(config, drop=arguments.reseed, script=SCRIPT)
    django_setup()
    migrate()
    django_disconnect()
    seeded = 0 if arguments.reseed else seeded_size(config)
    if seeded == size.judgments:
        seed_note = "re-used (seeded by an earlier run)"
        print(f"re-using the seeded database ({seeded:,} judgments)", file=sys.stderr)
    else:
        if not arguments.reseed:  # another size or seed, or none: start from an empty database
            database_prepare(config, drop=True, script=SCRIPT)
            migrate()
            django_disconnect()
        print(
            f"seeding {size.judgments:,} judgments and {size.gold_judgments:,} gold answers ...",
            file=sys.stderr,
        )
        seconds = seed(config, size=size)
        seed_note = f"seeded in this run in {seconds:.1f} s"
        print(f"seeded in {seconds:.1f} s", file=sys.stderr)
    with connect(config) as connection:
        version_row = connection.execute("SHOW server_version").fetchone()
        server_version = str(version_row[0]) if version_row else "unknown"

    state_reset(config)
    if arguments.profile:
        run_child("refresh")  # the warm-up: standings as a repeat refresh finds them
        with tempfile.TemporaryDirectory(prefix="rankwise-bench-quality-profile-") as folder:
            path = str(Path(folder) / "refresh.prof")
            result = run_child("refresh", "--child-profile", path)
            print(
                f"project_quality_refresh at {size.judgments:,} judgments under cProfile: "
                f"{result['seconds']:.2f} s (profiler included)"
            )
            profile_print(path, lines=arguments.profile_lines)
        return 0

    first = run_child("refresh")
    print(f"  warm-up refresh (first after reset): {first['seconds']:.2f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="rankwise-bench-quality-") as folder:
        arrays_path = str(Path(folder) / "alpha-inputs.npz")
        parts = run_child("parts", "--child-arrays", arrays_path)
        print(f"  parts: {parts['seconds']:.2f} s, peak RSS {parts['peak_rss_mb']:.0f} MB", file=sys.stderr)
        refresh = run_child("refresh")
        print(
            f"  refresh: {refresh['seconds']:.2f} s, peak RSS {refresh['peak_rss_mb']:.0f} MB",
            file=sys.stderr,
        )
        repeat = ["--repeat", str(arguments.repeat)]
        ours = run_child("ours", "--child-arrays", arrays_path, *repeat)
        package = run_child("package", "--child-arrays", arrays_path, *repeat)
    shape = data_shape(config)
    equal = report_print(
        size=size,
        shape=shape,
        seed_note=seed_note,
        server_version=server_version,
        load_before=load_before,
        first=first,
        refresh=refresh,
        parts=parts,
        ours=ours,
        package=package,
        repeat=arguments.repeat,
    )
    print(f"\nthe benchmark took {time.perf_counter() - started:.0f} s in all")
    if not equal:
        print("alpha differs from the package's: see above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

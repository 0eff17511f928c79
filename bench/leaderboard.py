"""The checkpoint leaderboard at a million judgments: the whole computation from the database, its parts,
and the bootstrap against the naive one (resample the battles row by row and refit every round, as
FastChat's elo_analysis does), in the same run.

Run from the repository root against a PostgreSQL server. The database named in DATABASE_URL is created
(and migrated) if it is missing and seeded once; a later run re-uses it when it holds this script's seed
at the same size. Otherwise (or with `--reseed`) it is dropped and seeded again, so its name must contain
"bench" (and not start with "test_"):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rankwise_bench_leaderboard \\
        .venv/bin/python bench/leaderboard.py [--judgments 1000000 | --quick] [--naive-rounds 10]

The seed (SQL, `INSERT … SELECT … FROM generate_series`, one transaction; deterministic): one pairwise
project, 20 checkpoints (a base model, then instruction-tuned ones, each the parent of the next) with
true strengths spread over 2 logits and a length each (300–1,640 characters, longer with each step, and
drawn apart from it 0–3 headers, 0–11 list items and 0–5 bold spans); `--judgments` judgments
(1,000,000; `--quick`: 100,000), three per comparison by three of 200 annotators; each comparison shows two responses of two different checkpoints
in a random order; the annotators see the truth through σ(s_A − s_B + 0.1 + 0.8·length difference): 8%
ties, 3% both bad.

Measured, each in a fresh Python process (so each peak RSS, VmHWM, is its own):

1. `leaderboard`: `feedback.services.leaderboard.leaderboard_compute` with the default filters (1,000
   bootstrap rounds, both fits), as the worker runs it; the service's own functions wrapped with timers.
   Then, on the battles it read: the raw fit (`battle_cells` + `bradley_terry`) and the controlled fit
   (`bradley_terry_controlled`) alone, on all the battles and on their first tenth (cost against
   battles, once they are counted).
2. `naive`: on the same battles, `--naive-rounds` rounds of the naive bootstrap: draw as many battles with
   replacement, count them and refit (raw), and draw, refit with covariates (controlled), with the same
   fitting functions as ours; the time per round × 1,000 is the baseline (1,000 rounds of it would take
   minutes; the per-round cost does not change with the round).

Targets (issue 16): the whole leaderboard within 10 s, at least 20× the naive baseline, peak RSS at most
512 MB. Exit 0 whether the targets are met or not, 2 when the benchmark cannot run.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import (
    bench_database_config_or_exit,
    connect,
    cpu_model,
    database_prepare,
    django_disconnect,
    django_setup,
    migrate,
    quotient,
    seed_load,
    verdict,
)

SCRIPT = "bench/leaderboard.py"
CHECKPOINTS = 20
ANNOTATORS = 200
OVERLAP = 3
ROUNDS = 1000
SEED_VERSION = 2


def hashed(expression: str, seed: int) -> str:
    """A deterministic uniform number in [0, 1) from a bigint expression, as SQL."""
    return f"((hashint8extended(({expression})::bigint, {seed}) & 2147483647)::float8 / 2147483648.0)"


def strength(checkpoint: str) -> str:
    """Checkpoint c's true strength in logits (c = 1 … 20): rising over 2 logits with the training step,
    with a dip every third checkpoint, so the order is not the registration order."""
    return f"(-1 + 2 * (({checkpoint}) - 1)::float8 / {CHECKPOINTS - 1} - 0.5 * ((({checkpoint})) %% 3))"


def seed_statements() -> list[tuple[str, str]]:
    """Comparison i has prompt i, responses 2i − 1 (its first checkpoint) and 2i (its second); the
    display order is a coin; its judgments are 3i − 2 … 3i."""
    first = f"(1 + floor({hashed('i', 1)} * {CHECKPOINTS})::int)"
    step = f"(1 + floor({hashed('i', 2)} * {CHECKPOINTS - 1})::int)"
    return [
        (
            "prompts",
            """
            INSERT INTO feedback_prompt (id, project_id, external_id, conversation, category, metadata,
                content_hash, is_gold, created_at)
            SELECT i, %(project)s, 'bench-leaderboard-' || i,
                jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'Request ' || i)),
                (%(categories)s::text[])[1 + i %% cardinality(%(categories)s::text[])], '{}'::jsonb,
                encode(sha256(convert_to('bench-leaderboard-' || i, 'UTF8')), 'hex'), false, now()
            FROM generate_series(1::bigint, %(comparisons)s::bigint) AS i
            """,
        ),
        (
            "responses",
            f"""
            INSERT INTO feedback_response (id, prompt_id, source, checkpoint_id, run_id, sample_index, text,
                sampling_parameters, seed, token_count, finish_reason, latency_seconds, created_at,
                characters, markdown_headers, markdown_list_items, markdown_bold)
            SELECT 2 * i - 1 + k, i, 'model', %(checkpoint_base)s + checkpoint, %(run_base)s + checkpoint, 0,
                'bench', '{{}}'::jsonb, NULL,
                characters / 4, 'eos', NULL, now(), characters, floor(4 * {hashed("2 * i + k", 7)})::int,
                floor(12 * {hashed("2 * i + k", 8)})::int, floor(6 * {hashed("2 * i + k", 9)})::int
            FROM (
                SELECT i, k, checkpoint,
                    (300 + 60 * (checkpoint - 1) + 200 * {hashed("2 * i + k", 3)})::int AS characters
                FROM (
                    SELECT i, k, CASE WHEN k = 0 THEN {first}
                        ELSE 1 + ({first} - 1 + {step}) %% {CHECKPOINTS} END AS checkpoint
                    FROM generate_series(1::bigint, %(comparisons)s::bigint) AS i
                    CROSS JOIN generate_series(0, 1) AS k
                ) AS chosen
            ) AS drawn
            """,
        ),
        (
            "comparisons",
            """
            INSERT INTO feedback_comparison (id, project_id, prompt_id, generation_run_id, is_gold,
                required_judgments, judgment_count, lease_count, status, created_at, completed_at, characters)
            SELECT i, %(project)s, i, NULL, false, %(overlap)s, %(overlap)s, 0, 'completed', now(), now(), NULL
            FROM generate_series(1::bigint, %(comparisons)s::bigint) AS i
            """,
        ),
        (
            "comparison responses",
            f"""
            INSERT INTO feedback_comparisonresponse (id, comparison_id, response_id, position)
            SELECT 2 * i - 1 + k, i, 2 * i - 1 + k, (k + ({hashed("i", 4)} < 0.5)::int) %% 2
            FROM generate_series(1::bigint, %(comparisons)s::bigint) AS i
            CROSS JOIN generate_series(0, 1) AS k
            """,
        ),
        (
            "judgments",
            f"""
            INSERT INTO feedback_judgment (id, comparison_id, annotator_id, assignment_id, choice, ranking,
                strength, ratings, rationale, flags, time_spent_ms, submission_key, created_at, updated_at)
            SELECT 3 * (i - 1) + j + 1, i, %(user_base)s + 1 + (i * 7 + j * 67) %% {ANNOTATORS}, NULL, choice,
                CASE choice WHEN 'a' THEN '[1, 2]' WHEN 'b' THEN '[2, 1]' ELSE '[1, 1]' END::jsonb,
                NULL, '{{}}'::jsonb, '', '[]'::jsonb, 30000, 'bench-' || i || '-' || j, now(), now()
            FROM (
                SELECT i, j, CASE
                    WHEN roll < 0.03 THEN 'both_bad' WHEN roll < 0.11 THEN 'tie'
                    WHEN {hashed("9 * i + j", 6)} < 1 / (1 + exp(-(strength_a - strength_b + 0.1
                        + 0.8 * (length_a - length_b) / (length_a + length_b)))) THEN 'a'
                    ELSE 'b' END AS choice
                FROM (
                    SELECT i, j, {hashed("9 * i + j", 5)} AS roll,
                        {strength("ra.checkpoint_id - %(checkpoint_base)s")} AS strength_a,
                        {strength("rb.checkpoint_id - %(checkpoint_base)s")} AS strength_b,
                        ra.characters::float8 AS length_a, rb.characters::float8 AS length_b
                    FROM generate_series(1::bigint, %(comparisons)s::bigint) AS i
                    CROSS JOIN generate_series(0, {OVERLAP - 1}) AS j
                    JOIN feedback_comparisonresponse ea ON ea.comparison_id = i AND ea.position = 0
                    JOIN feedback_comparisonresponse eb ON eb.comparison_id = i AND eb.position = 1
                    JOIN feedback_response ra ON ra.id = ea.response_id
                    JOIN feedback_response rb ON rb.id = eb.response_id
                ) AS shown
            ) AS judged
            """,
        ),
    ]


SEEDED_TABLES = (
    "feedback_prompt",
    "feedback_response",
    "feedback_comparison",
    "feedback_comparisonresponse",
    "feedback_judgment",
)


def signature(judgments: int) -> str:
    return f"bench-leaderboard v{SEED_VERSION} {judgments} judgments"


def seeded(config: dict[str, Any], judgments: int) -> bool:
    with connect(config) as connection:
        try:
            row = connection.execute(
                "SELECT guidelines FROM feedback_project WHERE slug = 'bench-leaderboard'"
            ).fetchone()
        except Exception:  # not migrated yet
            return False
    return row is not None and row[0] == signature(judgments)


def seed(config: dict[str, Any], judgments: int) -> float:
    from django.contrib.auth.models import User

    from feedback.models import GenerationRun, PolicyCheckpoint, Project, PromptCategory

    comparisons = -(-judgments // OVERLAP)
    project = Project.objects.create(name="Bench leaderboard", slug="bench-leaderboard", guidelines="seeding")
    users = User.objects.bulk_create(User(username=f"bench-annotator-{a}") for a in range(1, ANNOTATORS + 1))
    checkpoints: list[PolicyCheckpoint] = []
    for c in range(1, CHECKPOINTS + 1):
        checkpoints.append(
            PolicyCheckpoint.objects.create(
                name=f"bench-checkpoint-{c:02d}",
                kind=PolicyCheckpoint.Kind.BASE if c == 1 else PolicyCheckpoint.Kind.INSTRUCT,
                source=f"/models/bench-{c}",
                parent=checkpoints[-1] if checkpoints else None,
                training_step=(c - 1) * 100,
            )
        )
    runs = [
        GenerationRun.objects.create(
            project=project, checkpoint=checkpoint, status="completed", samples_per_prompt=1, seed=0
        )
        for checkpoint in checkpoints
    ]
    for rows in (users, checkpoints, runs):  # consecutive ids: the SQL addresses them as base + index
        assert [row.pk - rows[0].pk for row in rows] == list(range(len(rows)))
    django_disconnect()
    return seed_load(
        config,
        statements=seed_statements(),
        parameters={
            "project": project.pk,
            "user_base": users[0].pk - 1,
            "checkpoint_base": checkpoints[0].pk - 1,
            "run_base": runs[0].pk - 1,
            "comparisons": comparisons,
            "overlap": OVERLAP,
            "categories": list(PromptCategory.values),
        },
        tables=SEEDED_TABLES,
    ) + _signed(project.pk, judgments)


def _signed(project_id: int, judgments: int) -> float:
    """Mark the project as seeded at this size (last: an interrupted seed is seeded again)."""
    from feedback.models import Project

    Project.objects.filter(pk=project_id).update(guidelines=signature(judgments))
    return 0.0


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- children -------------------------------------------------------------------------------------------


def leaderboard_main(battles_path: str) -> dict[str, Any]:
    import numpy as np
    from django.db.models import Max

    from feedback.models import Judgment, Project
    from feedback.quality import leaderboard as fits
    from feedback.services import leaderboard as service
    from feedback.services.battles import BOTH_BAD

    timings: dict[str, float] = {}
    captured: dict[str, Any] = {}
    # The service's own functions, wrapped with timers (the last result of each kept: the battles).
    for name in ("battles_read", "ratings_read", "bradley_terry", "bradley_terry_controlled", "battle_cells"):
        original = getattr(service, name)

        def timed(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = _original(*args, **kwargs)
            timings[_name] = timings.get(_name, 0.0) + time.perf_counter() - started
            captured[_name] = result
            return result

        setattr(service, name, timed)
    project = Project.objects.get(slug="bench-leaderboard")
    mark = Judgment.objects.aggregate(mark=Max("pk"))["mark"]
    started = time.perf_counter()
    report = service.leaderboard_compute(
        project=project, filters=service.LeaderboardFilters(), high_water_mark=mark
    )
    total = time.perf_counter() - started
    rss = peak_rss_mb()
    battles = captured["battles_read"]
    kept = battles.outcome != BOTH_BAD
    index = {
        pk: position
        for position, pk in enumerate(sorted(set(battles.first.tolist()) | set(battles.second.tolist())))
    }
    first = np.array([index[pk] for pk in battles.first[kept].tolist()], dtype=np.intp)
    second = np.array([index[pk] for pk in battles.second[kept].tolist()], dtype=np.intp)
    outcome = battles.outcome[kept].astype(np.intp)
    covariates = fits.style_differences(battles.first_style[kept], battles.second_style[kept])
    np.savez(battles_path, first=first, second=second, outcome=outcome, covariates=covariates)
    alone: dict[str, dict[str, float]] = {}
    for label, count in (("all", len(first)), ("tenth", len(first) // 10)):
        started = time.perf_counter()
        cells = fits.battle_cells(first[:count], second[:count], outcome[:count], checkpoints=len(index))
        counted = time.perf_counter() - started
        started = time.perf_counter()
        fits.bradley_terry(cells, rounds=ROUNDS)
        raw = time.perf_counter() - started

        def controlled_fit(rounds: int, count: int = count) -> float:
            started = time.perf_counter()
            fits.bradley_terry_controlled(
                first[:count],
                second[:count],
                outcome[:count],
                covariates[:count],
                checkpoints=len(index),
                rounds=rounds,
            )
            return time.perf_counter() - started

        controlled = controlled_fit(ROUNDS)
        point = controlled_fit(1)  # the point fit alone: the rest of `controlled` is the bootstrap
        alone[label] = {
            "battles": count,
            "count": counted,
            "raw": raw,
            "controlled": controlled,
            "point": point,
        }
    top = report["checkpoints"][0]
    return {
        "total": total,
        "timings": timings,
        "rss_mb": rss,
        "judgments": report["judgments"],
        "battles": report["battles"],
        "alone": alone,
        "top": f"{top['name']} {top['raw']['elo']:.0f} [{top['raw']['low']:.0f}, {top['raw']['high']:.0f}]",
        "length_coefficient": report["style"][0],
    }


def naive_main(battles_path: str, rounds: int) -> dict[str, Any]:
    import numpy as np

    from feedback.quality import leaderboard as fits

    data = np.load(battles_path)
    first, second, outcome, covariates = data["first"], data["second"], data["outcome"], data["covariates"]
    checkpoints = int(max(first.max(), second.max()) + 1)
    generator = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(rounds):
        rows = generator.integers(0, len(first), size=len(first))
        cells = fits.battle_cells(first[rows], second[rows], outcome[rows], checkpoints=checkpoints)
        fits.bradley_terry(cells, rounds=1)
    raw = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        rows = generator.integers(0, len(first), size=len(first))
        fits.bradley_terry_controlled(
            first[rows], second[rows], outcome[rows], covariates[rows], checkpoints=checkpoints, rounds=1
        )
    controlled = (time.perf_counter() - started) / rounds
    return {
        "raw_per_round": raw,
        "controlled_per_round": controlled,
        "rounds": rounds,
        "rss_mb": peak_rss_mb(),
    }


def child(arguments: list[str]) -> dict[str, Any]:
    process = subprocess.run(
        [sys.executable, __file__, *arguments], capture_output=True, text=True, check=False
    )
    if process.returncode != 0:
        sys.stderr.write(process.stderr)
        raise SystemExit(2)
    return json.loads(process.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 judgments")
    parser.add_argument("--naive-rounds", type=int, default=10)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--child", choices=("leaderboard", "naive"))
    parser.add_argument("--battles")
    arguments = parser.parse_args()
    if arguments.child:
        django_setup()
        result = (
            leaderboard_main(arguments.battles)
            if arguments.child == "leaderboard"
            else naive_main(arguments.battles, arguments.naive_rounds)
        )
        print(json.dumps(result))
        return 0

    judgments = 100_000 if arguments.quick else arguments.judgments
    config = bench_database_config_or_exit(
        script=SCRIPT, example_database="rankwise_bench_leaderboard", doing="seeds"
    )
    database_prepare(config, drop=arguments.reseed, script=SCRIPT)
    django_setup()
    migrate()
    seed_seconds = None
    if not seeded(config, judgments):
        django_disconnect()
        database_prepare(config, drop=True, script=SCRIPT)
        migrate()
        print(f"Seeding {judgments:,} judgments …", file=sys.stderr)
        seed_seconds = seed(config, judgments)
    django_disconnect()

    with tempfile.TemporaryDirectory() as scratch:
        battles = str(Path(scratch) / "battles.npz")
        ours = child(["--child", "leaderboard", "--battles", battles])
        naive = child(
            ["--child", "naive", "--battles", battles, "--naive-rounds", str(arguments.naive_rounds)]
        )

    naive_total = (naive["raw_per_round"] + naive["controlled_per_round"]) * ROUNDS
    ours_bootstrap = ours["alone"]["all"]["raw"] + ours["alone"]["all"]["controlled"]
    speedup = quotient(naive_total, ours_bootstrap)
    print(f"# bench/leaderboard.py — {platform.node()}, {cpu_model()}, Python {platform.python_version()}")
    if seed_seconds is not None:
        print(f"seeded in {seed_seconds:.0f} s")
    print(
        f"judgments {ours['judgments']:,}, battles in the fit {ours['battles']:,}, checkpoints {CHECKPOINTS}, rounds {ROUNDS}"
    )
    length = ours["length_coefficient"]
    print(
        f"top: {ours['top']}; length coefficient {length['coefficient']:.2f} "
        f"[{length['low']:.2f}, {length['high']:.2f}] (planted 0.8 on decisive battles; the 8% of ties, drawn "
        "at random and counted half a win, pull a fitted coefficient toward about 0.73)"
    )
    print("\n## The whole leaderboard (leaderboard_compute, default filters, both fits)")
    print(f"total {ours['total']:.2f} s, peak RSS {ours['rss_mb']:.0f} MB")
    for name, seconds in sorted(ours["timings"].items(), key=lambda item: -item[1]):
        print(f"  {name}: {seconds:.2f} s")
    print(
        f"  rest (matrices, categories, pairs, examples): {ours['total'] - sum(ours['timings'].values()) + 0:.2f} s"
        " (per-category fits are inside bradley_terry)"
    )
    print("\n## Fits alone, once battles are counted (1,000 rounds each)")
    print(
        "| battles | count cells | raw fit + bootstrap | controlled fit + bootstrap | of which the point fit "
        "(reads every battle) | of which the bootstrap |"
    )
    print("|---|---|---|---|---|---|")
    for label in ("tenth", "all"):
        row = ours["alone"][label]
        print(
            f"| {row['battles']:,} | {row['count']:.3f} s | {row['raw']:.3f} s | {row['controlled']:.3f} s | "
            f"{row['point']:.3f} s | {row['controlled'] - row['point']:.3f} s |"
        )
    print("\n## Against the naive bootstrap (resample battles row by row, refit every round)")
    print(
        f"naive: raw {naive['raw_per_round']:.3f} s/round, controlled {naive['controlled_per_round']:.3f} s/round "
        f"(measured over {naive['rounds']} rounds each) → {naive_total:.1f} s for 1,000 rounds of both"
    )
    print(f"ours: {ours_bootstrap:.2f} s for both fits with 1,000 rounds each → {speedup:.0f}× faster")
    print("\n## Targets")
    print(
        f"whole leaderboard ≤ 10 s: {ours['total']:.2f} s — {verdict(ours['total'] <= 10, indicative=False)}"
    )
    print(f"≥ 20× the naive bootstrap: {speedup:.0f}× — {verdict(speedup >= 20, indicative=False)}")
    print(f"peak RSS ≤ 512 MB: {ours['rss_mb']:.0f} MB — {verdict(ours['rss_mb'] <= 512, indicative=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Assignment throughput and latency: annotators over HTTP against the bare claim SQL, in the same run.

Run from the repository root against a PostgreSQL server. Each size gets its own database, named after
the one in DATABASE_URL with the size appended (rankwise_bench_assign_10000, ...), dropped and created
again, so that name must contain "bench" (and not start with "test_"):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rankwise_bench_assign \\
        .venv/bin/python bench/assign.py [--sizes 10000,1000000] [--levels 10,50,200] [--duration 20] [--rounds 5]

For each size (comparisons in one project, overlap 3) the script first creates and migrates its database
and seeds the comparisons with `INSERT … SELECT … FROM generate_series` (a prompt, two responses of one
generation run, two `ComparisonResponse` rows and the comparison, `required_judgments` 3), then `VACUUM
ANALYZE` and `CHECKPOINT`. Then it runs `--rounds` rounds over the sizes, smallest first in odd rounds and
largest first in even ones, so that the machine's drift over the run weighs on both sizes alike. In each
round, for each size:

1. it starts the app under gunicorn on 127.0.0.1 (DEBUG off, plain HTTP) with a Celery worker and beat,
   and in the first round logs one user in through the real login form to check the path; the
   simulated annotators get sessions made directly in the session table (the same rows a login writes),
   because logging 200 users in costs 200 password hashes (about 0.4 s of CPU each) before the
   measurement starts; the app is stopped at the end of the round, so the other size runs alone;
2. at each concurrency level (10, 50, 200 simulated annotators), from the same pool state each time:
   - the ceiling: one thread per annotator, each in a loop of two transactions through psycopg (client
     defaults: server-side binding, statements prepared after 5 runs): the claim (Django's own claim
     statement, `annotate.assignment.claim_next(...)` taken from `query.sql_with_params()`, then the conditional `lease_count + 1` update and the assignment
     insert) and the submission (the counter update that closes a comparison at its last judgment,
     the judgment insert, the assignment marked submitted). Not included: the app's lease-expiry
     sweep, the annotator row lock, the own-lease lookup, sessions, permissions, validation, rendering.
     PostgreSQL here allows 100 connections, so above `--max-connections` (50) the annotators share
     that many connections and the claim latency includes the wait for one;
   - HTTP: one thread and one `httpx.Client` (own session and CSRF cookies) per annotator, each looping
     `GET /projects/<slug>/annotate` (next) and `POST …/judgment` (submit) with no think time; the
     clients are made and given their CSRF cookie before the clock starts (gunicorn's default sync
     workers close the connection after each response, so each request opens a loopback connection);
   each phase runs `--duration` seconds (or until the pool runs dry, reported); the SQL audit then counts
   violations of the overlap and once-per-annotator rules and of the counters, and the pool is reset
   (judgments and assignments truncated, counters zeroed, `VACUUM ANALYZE`, `CHECKPOINT`).

It prints p50/p95/p99 of next, submit and claim, judgments/s of both paths, the ratio HTTP ÷ ceiling,
and p99(next) at the largest size ÷ p99(next) at the smallest, per level, each level's rounds pooled
(judgments over their summed time, percentiles over all their requests), and each round's figures.
Client, gunicorn and PostgreSQL share the machine's cores, as the figures say: it also prints the CPU
each judgment cost the client, the app (gunicorn and the Celery worker, from /proc) and the rest of the
machine (PostgreSQL), and how many cores the HTTP path would need at the target share of the ceiling. Exit 0 whether the targets are met or not,
1 when the audit finds a violation, 2 when the benchmark cannot run.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import queue
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import redis
from benchkit import (
    bench_database_config_or_exit,
    connect,
    cpu_model,
    django_disconnect,
    exit_unable,
    int_list,
    memory_gib,
    migrate,
    quotient,
    seed_load,
    verdict,
)
from psycopg import sql

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SEED = 20261121
OVERLAP = 3
DEFAULT_SIZES = (10_000, 1_000_000)
DEFAULT_LEVELS = (10, 50, 200)
DEFAULT_ROUNDS = 5
QUICK_SIZES = (2_000, 20_000)
# Targets from the issue.
TARGET_HTTP_SHARE_OF_CEILING = 0.5
TARGET_P99_GROWTH = 1.25
TARGET_LARGE = 1_000_000
TARGET_SMALL = 10_000
PROJECT_SLUG = "bench-assign"
# A sentinel annotator id, so that the claim statement's parameter for the annotator can be found.
SENTINEL_ANNOTATOR_ID = -7_654_321
CHOICES = ("a", "b", "tie", "both_bad")
ASSIGNMENT_ID = re.compile(r'data-assignment-id="(\d+)"')
SUBMIT_URL = re.compile(r'data-submit-url="([^"]+)"')
HTTP_TIMEOUT_SECONDS = 120.0
SERVER_START_SECONDS = 60.0
# Connections left to others when the ceiling opens its own.
CONNECTION_HEADROOM = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
APP_PROCESSES = frozenset({"gunicorn", "celery"})

# --- The ceiling's statements, after the claim (which is Django's own) -----------------------------------
# Each mirrors what annotate/assignment.py issues through the ORM.
LEASE_SQL = """
UPDATE feedback_comparison SET lease_count = lease_count + 1
WHERE id = %s AND status = 'open' AND judgment_count + lease_count < required_judgments
"""
ASSIGNMENT_INSERT_SQL = """
INSERT INTO feedback_assignment (comparison_id, annotator_id, state, leased_at, expires_at, finished_at, skip_reason)
VALUES (%s, %s, 'leased', now(), now() + interval '20 minutes', NULL, '') RETURNING id
"""
COUNT_JUDGMENT_SQL = """
UPDATE feedback_comparison SET
    lease_count = lease_count - 1,
    judgment_count = judgment_count + 1,
    status = CASE WHEN judgment_count >= required_judgments - 1 THEN 'completed' ELSE status END,
    completed_at = CASE WHEN judgment_count >= required_judgments - 1 THEN now() ELSE completed_at END
WHERE id = %s AND status = 'open' AND lease_count >= 1
"""
JUDGMENT_INSERT_SQL = """
INSERT INTO feedback_judgment (comparison_id, annotator_id, assignment_id, choice, ranking, strength, ratings,
    rationale, flags, time_spent_ms, submission_key, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s::jsonb, %s, '{}', '', '[]', %s, %s, now(), now())
"""
ASSIGNMENT_SUBMITTED_SQL = (
    "UPDATE feedback_assignment SET state = 'submitted', finished_at = now() WHERE id = %s"
)
RANKINGS = {"a": "[1, 2]", "b": "[2, 1]", "tie": "[1, 1]", "both_bad": "[1, 1]"}

# --- Seeding ---------------------------------------------------------------------------------------------
# Ids are computed from the series (the database is new), so no statement needs a join; the identity
# sequences are moved past them afterwards.
SEED_STATEMENTS = (
    (
        "prompts",
        """
        INSERT INTO feedback_prompt (id, project_id, external_id, conversation, category, metadata,
            content_hash, created_at)
        SELECT i, %(project)s, 'bench-' || i, conversation, 'explain', '{}',
            encode(sha256(convert_to(conversation::text, 'UTF8')), 'hex'), now()
        FROM (
            SELECT i, jsonb_build_array(jsonb_build_object(
                'role', 'user',
                'content', 'Benchmark prompt ' || i || ': explain in two sentences why the sky is blue.'
            )) AS conversation
            FROM generate_series(1, %(count)s) AS i
        ) AS prompts
        """,
    ),
    (
        "responses",
        """
        INSERT INTO feedback_response (id, prompt_id, checkpoint_id, run_id, sample_index, text,
            sampling_parameters, seed, token_count, finish_reason, latency_seconds, created_at)
        SELECT 2 * i - 1 + k, i, %(checkpoint)s, %(run)s, k,
            'Sample ' || k || ' for prompt ' || i || ': sunlight scatters off air molecules, and blue '
                || 'light, with its shorter wavelength, scatters far more than red.',
            '{}', i * 2 + k, 24, 'eos', NULL, now()
        FROM generate_series(1, %(count)s) AS i CROSS JOIN generate_series(0, 1) AS k
        """,
    ),
    (
        "comparisons",
        """
        INSERT INTO feedback_comparison (id, project_id, prompt_id, generation_run_id, required_judgments,
            judgment_count, lease_count, status, created_at, completed_at)
        SELECT i, %(project)s, i, %(run)s, %(overlap)s, 0, 0, 'open', now(), NULL
        FROM generate_series(1, %(count)s) AS i
        """,
    ),
    (
        "comparison responses",
        """
        INSERT INTO feedback_comparisonresponse (id, comparison_id, response_id, position)
        SELECT 2 * i - 1 + k, i, 2 * i - 1 + k, k
        FROM generate_series(1, %(count)s) AS i CROSS JOIN generate_series(0, 1) AS k
        """,
    ),
)
SEEDED_TABLES = ("feedback_prompt", "feedback_response", "feedback_comparison", "feedback_comparisonresponse")

# --- Audit -----------------------------------------------------------------------------------------------
AUDIT_QUERIES = {
    # The overlap rule, counted from rows: judgments plus live leases never exceed required_judgments.
    "comparisons over their overlap (judgments + live leases > required)": """
        SELECT count(*) FROM feedback_comparison AS c
        JOIN (SELECT comparison_id, count(*) AS n FROM feedback_judgment GROUP BY comparison_id) AS j
            ON j.comparison_id = c.id
        LEFT JOIN (
            SELECT comparison_id, count(*) AS n FROM feedback_assignment WHERE state = 'leased'
            GROUP BY comparison_id
        ) AS l ON l.comparison_id = c.id
        WHERE j.n + coalesce(l.n, 0) > c.required_judgments
    """,
    "(comparison, annotator) pairs judged more than once": """
        SELECT count(*) FROM (
            SELECT 1 FROM feedback_judgment GROUP BY comparison_id, annotator_id HAVING count(*) > 1
        ) AS pairs
    """,
    "(comparison, annotator) pairs assigned more than once": """
        SELECT count(*) FROM (
            SELECT 1 FROM feedback_assignment GROUP BY comparison_id, annotator_id HAVING count(*) > 1
        ) AS pairs
    """,
    # The counters against the rows they stand for (the sum judgment_count + lease_count included).
    "comparisons whose counters differ from their rows": """
        SELECT count(*) FROM feedback_comparison AS c
        LEFT JOIN (SELECT comparison_id, count(*) AS n FROM feedback_judgment GROUP BY comparison_id) AS j
            ON j.comparison_id = c.id
        LEFT JOIN (
            SELECT comparison_id, count(*) AS n FROM feedback_assignment WHERE state = 'leased'
            GROUP BY comparison_id
        ) AS l ON l.comparison_id = c.id
        WHERE c.judgment_count <> coalesce(j.n, 0) OR c.lease_count <> coalesce(l.n, 0)
            OR (c.status = 'completed') <> (c.judgment_count >= c.required_judgments)
    """,
}


# --- Results ---------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of `values` (0 < share <= 1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-share * len(ordered) // 1))))
    return ordered[rank - 1]


@dataclass
class Latencies:
    milliseconds: list[float] = field(default_factory=list)

    def p(self, share: float) -> float:
        return percentile(self.milliseconds, share)

    def summary(self) -> str:
        return f"{self.p(0.50):7.1f} {self.p(0.95):7.1f} {self.p(0.99):7.1f}"


@dataclass
class PhaseResult:
    """One phase (ceiling or HTTP) at one concurrency level."""

    name: str
    annotators: int
    seconds: float = 0.0
    judgments: int = 0
    first: Latencies = field(default_factory=Latencies)  # next (HTTP) or claim (ceiling)
    second: Latencies = field(default_factory=Latencies)  # submit
    errors: Counter[str] = field(default_factory=Counter)
    exhausted: bool = False
    violations: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    # What else ran: the client's own CPU time, the share of all cores busy (client, gunicorn, PostgreSQL
    # and anything else on the machine) and the 1-minute load average when the phase ended.
    client_cpu_seconds: float = 0.0
    machine_busy: float = 0.0
    load_average: float = 0.0
    # CPU seconds of the app's processes (gunicorn and the Celery worker), and of every core together; what
    # is left of the latter after the client and the app is PostgreSQL's, and whatever else ran.
    app_cpu_seconds: float = 0.0
    busy_cpu_seconds: float = 0.0

    def cpu_ms_per_judgment(self) -> tuple[float, float, float]:
        """Client, app and the rest (the database), in ms of CPU per judgment."""
        client, app = self.client_cpu_seconds, self.app_cpu_seconds
        rest = self.busy_cpu_seconds - client - app
        per_judgment = quotient(1000, self.judgments)
        return client * per_judgment, app * per_judgment, rest * per_judgment

    @property
    def judgments_per_second(self) -> float:
        return self.judgments / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Fixture:
    project_id: int
    slug: str
    annotator_ids: list[int]
    session_keys: list[str]
    probe_username: str
    probe_password: str


def pooled(phases: Sequence[PhaseResult]) -> PhaseResult:
    """One level's phases over all rounds as one: judgments over the summed time, the latencies of every
    round together (so p99 is over all of them), the machine's figures weighted by time."""
    first = phases[0]
    seconds = sum(phase.seconds for phase in phases)
    result = PhaseResult(name=first.name, annotators=first.annotators, connections=first.connections)
    result.seconds = seconds
    result.judgments = sum(phase.judgments for phase in phases)
    for phase in phases:
        result.first.milliseconds.extend(phase.first.milliseconds)
        result.second.milliseconds.extend(phase.second.milliseconds)
        result.errors.update(phase.errors)
        for name, count in phase.violations.items():
            result.violations[name] = result.violations.get(name, 0) + count
    result.exhausted = any(phase.exhausted for phase in phases)
    result.client_cpu_seconds = sum(phase.client_cpu_seconds for phase in phases)
    result.app_cpu_seconds = sum(phase.app_cpu_seconds for phase in phases)
    result.busy_cpu_seconds = sum(phase.busy_cpu_seconds for phase in phases)
    result.machine_busy = quotient(sum(phase.machine_busy * phase.seconds for phase in phases), seconds)
    result.load_average = max(phase.load_average for phase in phases)
    return result


@dataclass
class SizeResult:
    """One size: its own database, seeded once, and its phases, one per round at each level."""

    comparisons: int
    config: dict[str, Any]
    database_url: str
    fixture: Fixture
    seed_seconds: float
    ceiling: dict[int, list[PhaseResult]] = field(default_factory=dict)
    http: dict[int, list[PhaseResult]] = field(default_factory=dict)

    def ceiling_at(self, level: int) -> PhaseResult:
        return pooled(self.ceiling[level])

    def http_at(self, level: int) -> PhaseResult:
        return pooled(self.http[level])


@dataclass(frozen=True)
class ServerConfig:
    workers: int
    threads: int

    @property
    def worker_class(self) -> str:
        return "gthread" if self.threads > 1 else "sync"

    def describe(self) -> str:
        return f"gunicorn {self.workers} {self.worker_class} workers × {self.threads} thread(s)"


# --- Setup -----------------------------------------------------------------------------------------------


def database_recreate(config: dict[str, Any], *, drop_only: bool = False) -> None:
    try:
        with connect(config, dbname="postgres") as connection:
            name = sql.Identifier(config["NAME"])
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            if not drop_only:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
    except psycopg.Error as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        exit_unable(f"bench/assign.py: cannot prepare database {config['NAME']!r}: {message}")


def django_setup(secret_key: str) -> None:
    # Run as `python bench/assign.py`, the script's own folder is on sys.path, not the repository.
    sys.path.insert(0, str(REPOSITORY_ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "feedback.settings"
    # Sessions made here must verify in the server: both sign with this key.
    os.environ["DJANGO_SECRET_KEY"] = secret_key
    import django

    django.setup()
    # The settings log INFO to the console; httpx would log every request of the load there.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def seed(config: dict[str, Any], *, count: int, annotators: int) -> tuple[Fixture, float]:
    """Create the project, its checkpoint and run through the ORM, the comparisons in SQL; returns the
    fixture and the seconds the comparisons took (VACUUM ANALYZE included)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore

    from feedback.models import GenerationRun, PolicyCheckpoint, Project
    from feedback.roles import ANNOTATORS_GROUP

    project = Project.objects.create(
        name="Assignment benchmark", slug=PROJECT_SLUG, judgments_per_comparison=OVERLAP
    )
    checkpoint = PolicyCheckpoint.objects.create(name="bench-policy", source="/nonexistent/bench-policy")
    run = GenerationRun.objects.create(
        project=project,
        checkpoint=checkpoint,
        status=GenerationRun.Status.COMPLETED,
        samples_per_prompt=2,
        total_prompts=count,
        done_prompts=count,
    )
    django_disconnect()

    parameters = {"project": project.pk, "checkpoint": checkpoint.pk, "run": run.pk, "count": count}
    parameters["overlap"] = OVERLAP
    seed_seconds = seed_load(config, statements=SEED_STATEMENTS, parameters=parameters, tables=SEEDED_TABLES)

    group = Group.objects.get(name=ANNOTATORS_GROUP)
    users = User.objects.bulk_create(
        [
            User(username=f"bench-annotator-{number:04d}", password=make_password(None))
            for number in range(1, annotators + 1)
        ]
    )
    probe_password = secrets.token_urlsafe(16)
    probe = User.objects.create_user(username="bench-login-probe", password=probe_password)
    everyone = [*users, probe]
    User.groups.through.objects.bulk_create(
        [User.groups.through(user_id=user.pk, group_id=group.pk) for user in everyone]
    )
    project.members.add(*everyone)
    session_keys = []
    for user in users:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        assert session.session_key is not None
        session_keys.append(session.session_key)
    django_disconnect()
    fixture = Fixture(
        project_id=project.pk,
        slug=project.slug,
        annotator_ids=[user.pk for user in users],
        session_keys=session_keys,
        probe_username=probe.username,
        probe_password=probe_password,
    )
    return fixture, seed_seconds


@dataclass(frozen=True)
class ClaimStatement:
    """Django's claim statement for one project, with its parameters; some of them are the annotator's."""

    sql: str
    parameters: tuple[Any, ...]
    annotator_positions: tuple[int, ...]

    def parameters_for(self, annotator_id: int) -> list[Any]:
        parameters = list(self.parameters)
        for position in self.annotator_positions:
            parameters[position] = annotator_id
        return parameters


def claim_statement(project_id: int) -> ClaimStatement:
    from django.db import transaction

    from annotate.assignment import claim_next

    with transaction.atomic():  # the compiler refuses FOR UPDATE outside a transaction
        queryset = claim_next(annotator_id=SENTINEL_ANNOTATOR_ID, project_id=project_id)
        statement, parameters = queryset.query.sql_with_params()
    django_disconnect()
    # Choices enums become plain strings, as Django's own adapters send them.
    values = tuple(str(value) if isinstance(value, str) else value for value in parameters)
    positions = tuple(index for index, value in enumerate(values) if value == SENTINEL_ANNOTATOR_ID)
    if not positions:
        raise RuntimeError(f"cannot find the annotator parameter in the claim statement: {parameters}")
    return ClaimStatement(sql=statement, parameters=values, annotator_positions=positions)


def pool_reset(admin: psycopg.Connection, project_id: int) -> None:
    """Every phase starts from the seeded state: no assignments, no judgments, every comparison open."""
    admin.execute("TRUNCATE feedback_judgment, feedback_assignment")
    admin.execute(
        """
        UPDATE feedback_comparison SET judgment_count = 0, lease_count = 0, status = 'open', completed_at = NULL
        WHERE project_id = %s AND (judgment_count <> 0 OR lease_count <> 0 OR status <> 'open')
        """,
        [project_id],
    )
    # The claim walks the front of an index that every judgment rewrites; without this (and autovacuum,
    # which may be off) later phases would walk earlier phases' dead entries.
    admin.execute("VACUUM ANALYZE feedback_comparison, feedback_assignment, feedback_judgment")
    admin.execute("CHECKPOINT")


def connections_free(admin: psycopg.Connection) -> int:
    """Connections the server would still accept (other clients, such as test runs, share them)."""
    row = admin.execute(
        "SELECT current_setting('max_connections')::int "
        "- current_setting('superuser_reserved_connections')::int - count(*) FROM pg_stat_activity"
    ).fetchone()
    return int(row[0]) if row else 0


def audit(admin: psycopg.Connection) -> dict[str, int]:
    violations = {}
    for name, query in AUDIT_QUERIES.items():
        row = admin.execute(query).fetchone()
        violations[name] = int(row[0]) if row else -1
    return violations


# --- Server ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment(
    *, database_url: str, broker_url: str, secret_key: str, static_root: Path
) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        DATABASE_URL=database_url,
        # A real broker, as deployed: the pages send the progress recount to the worker below rather
        # than run it inline (Celery's eager mode, which an empty broker URL means).
        CELERY_BROKER_URL=broker_url,
        DJANGO_SETTINGS_MODULE="feedback.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secret_key,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        # Plain HTTP on loopback: no redirect to HTTPS, cookies not limited to HTTPS, no HSTS.
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_SESSION_COOKIE_SECURE="0",
        DJANGO_CSRF_COOKIE_SECURE="0",
        DJANGO_SECURE_HSTS_SECONDS="0",
        DJANGO_STATIC_ROOT=str(static_root),
        DJANGO_LOG_LEVEL="WARNING",
    )
    return environment


def collectstatic(environment: dict[str, str]) -> None:
    """DEBUG off serves static files through whitenoise's manifest, which `collectstatic` writes."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=REPOSITORY_ROOT,
        env=environment,
        check=True,
    )


@contextmanager
def gunicorn(environment: dict[str, str], config: ServerConfig, log_path: Path) -> Iterator[str]:
    """Serve the app on a free loopback port until the block ends; yields the base URL."""
    port = free_port()
    command = [
        str(VENV_BIN / "gunicorn"),
        "feedback.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        f"--workers={config.workers}",
        f"--worker-class={config.worker_class}",
        f"--threads={config.threads}",
        "--backlog=2048",
        "--timeout=120",
        "--keep-alive=30",
        "--log-level=warning",
    ]
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        server = subprocess.Popen(command, cwd=REPOSITORY_ROOT, env=environment, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {server.returncode}; see {log_path}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer /healthz in {SERVER_START_SECONDS:.0f} s")
            time.sleep(0.2)
        yield base_url
    finally:
        process_stop(server)


@contextmanager
def celery_worker(environment: dict[str, str], log_path: Path) -> Iterator[None]:
    """The `default` queue's worker with celery beat embedded, as deployed next to the web tier: it
    counts project completion (every 30 s, and when a page finds the count overdue) and sweeps leases.
    It shares the machine's cores with the rest, so its work is part of what the figures pay for."""
    redis.Redis.from_url(environment["CELERY_BROKER_URL"]).flushdb()  # no messages from an earlier run
    command = [
        str(VENV_BIN / "celery"),
        "-A",
        "feedback.celery:app",
        "worker",
        "--beat",
        "--schedule",
        str(log_path.with_name("celerybeat-schedule")),
        "--pool=solo",
        "--queues=default",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=WARNING",
    ]
    with log_path.open("ab") as log:
        worker = subprocess.Popen(command, cwd=REPOSITORY_ROOT, env=environment, stdout=log, stderr=log)
    try:
        time.sleep(1.0)
        if worker.poll() is not None:
            raise RuntimeError(f"the celery worker exited with {worker.returncode}; see {log_path}")
        yield
    finally:
        process_stop(worker)


def process_stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def login_probe(base_url: str, fixture: Fixture) -> None:
    """The real login form, once: GET sets the CSRF cookie, POST answers 302 with a session cookie."""
    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        form = client.get("/accounts/login/")
        csrf = client.cookies.get("csrftoken")
        if form.status_code != 200 or not csrf:
            raise RuntimeError(f"GET /accounts/login/ answered {form.status_code} without a CSRF cookie")
        answer = client.post(
            "/accounts/login/",
            data={
                "username": fixture.probe_username,
                "password": fixture.probe_password,
                "csrfmiddlewaretoken": csrf,
            },
        )
        if answer.status_code != 302 or not client.cookies.get("sessionid"):
            raise RuntimeError(f"POST /accounts/login/ answered {answer.status_code}, not 302 with a session")
        page = client.get(f"/projects/{fixture.slug}/annotate")
        if page.status_code != 200:
            raise RuntimeError(
                f"GET /projects/{fixture.slug}/annotate answered {page.status_code} after login"
            )


# --- Load ------------------------------------------------------------------------------------------------


def submission_body(rng: random.Random) -> dict[str, Any]:
    choice = rng.choice(CHOICES)
    return {
        "submission_key": uuid.uuid4().hex,
        "choice": choice,
        "strength": rng.randint(1, 3) if choice in ("a", "b") else None,
        "time_spent_ms": rng.randint(2_000, 60_000),
    }


@dataclass
class Worker:
    """One simulated annotator's figures, merged into the phase's when it ends."""

    first: list[float] = field(default_factory=list)
    second: list[float] = field(default_factory=list)
    judgments: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class PhaseStop:
    """Set when one simulated annotator finds nothing left: the others stop, the rate ends there."""

    def __init__(self) -> None:
        self.ran_dry_at: float | None = None
        self._event = threading.Event()
        self._lock = threading.Lock()

    def ran_dry(self) -> None:
        with self._lock:
            if self.ran_dry_at is None:
                self.ran_dry_at = time.perf_counter()
                self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class AnnotatorLoop:
    """One simulated annotator: `prepare` runs before the clock starts, `run` until the deadline."""

    def prepare(self) -> None:
        """Set up what a real annotator would already have (a browser session); not timed."""

    def run(self, worker: Worker, deadline: float, stop: PhaseStop) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what `prepare` set up."""


def cpu_times() -> tuple[float, float]:
    """Busy and total jiffies of all cores since boot (/proc/stat); zeros where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return float(total - idle), float(total)


def processes_cpu_seconds(names: frozenset[str]) -> float:
    """CPU seconds (user + system) used so far by the live processes named (`comm`) one of `names`."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                line = stat.read()
        except OSError:  # it exited meanwhile
            continue
        name_end = line.rindex(b")")  # the name may hold spaces and parentheses
        if line[line.index(b"(") + 1 : name_end].decode(errors="replace") not in names:
            continue
        fields = line[name_end + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of proc_pid_stat(5)
    return total / CLOCK_TICKS


def run_phase(result: PhaseResult, *, duration: float, loops: Sequence[AnnotatorLoop]) -> PhaseResult:
    """Run every simulated annotator until `duration` has passed or one finds nothing left; the clock
    starts once all are prepared."""
    workers = [Worker() for _ in loops]
    stop = PhaseStop()
    ready = threading.Barrier(len(loops) + 1)
    go = threading.Barrier(len(loops) + 1)
    ended: list[float] = []
    deadline = 0.0

    def body(loop: AnnotatorLoop, worker: Worker) -> None:
        # Every thread reaches both barriers, whatever fails, or the others would wait forever.
        try:
            loop.prepare()
            prepared = True
        except Exception as error:
            worker.errors[f"prepare failed: {type(error).__name__}: {error}"] += 1
            prepared = False
        ready.wait()
        go.wait()
        try:
            if prepared:
                loop.run(worker, deadline, stop)
        except Exception as error:  # a crashed annotator is a figure, not the end of the run
            worker.errors[f"crashed: {type(error).__name__}: {error}"] += 1
        finally:
            ended.append(time.perf_counter())
            loop.close()

    threads = [
        threading.Thread(target=body, args=(loop, worker), daemon=True)
        for loop, worker in zip(loops, workers, strict=True)
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    busy_before, total_before = cpu_times()
    app_before = processes_cpu_seconds(APP_PROCESSES)
    client_before = time.process_time()
    began = time.perf_counter()
    deadline = began + duration
    go.wait()
    for thread in threads:
        thread.join()
    result.seconds = (stop.ran_dry_at or max(ended)) - began
    result.exhausted = stop.ran_dry_at is not None
    busy_after, total_after = cpu_times()
    result.client_cpu_seconds = time.process_time() - client_before
    result.app_cpu_seconds = processes_cpu_seconds(APP_PROCESSES) - app_before
    result.busy_cpu_seconds = (busy_after - busy_before) / CLOCK_TICKS
    result.machine_busy = (
        (busy_after - busy_before) / (total_after - total_before) if total_after > total_before else 0.0
    )
    result.load_average = os.getloadavg()[0]
    for worker in workers:
        result.first.milliseconds.extend(worker.first)
        result.second.milliseconds.extend(worker.second)
        result.judgments += worker.judgments
        result.errors.update(worker.errors)
    return result


class HttpAnnotator(AnnotatorLoop):
    """Next and submit over HTTP with one keep-alive client, its session cookie and its CSRF cookie."""

    def __init__(self, base_url: str, slug: str, session_key: str, seed: int) -> None:
        self.base_url, self.slug, self.session_key = base_url, slug, session_key
        self.rng = random.Random(seed)
        self.client: httpx.Client | None = None
        self.csrf = ""

    def prepare(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=HTTP_TIMEOUT_SECONDS)
        self.client.cookies.set("sessionid", self.session_key, domain="127.0.0.1")
        self.client.get("/accounts/login/")  # sets the CSRF cookie
        self.csrf = self.client.cookies.get("csrftoken") or ""
        if not self.csrf:
            raise RuntimeError("GET /accounts/login/ set no csrftoken cookie")

    def run(self, worker: Worker, deadline: float, stop: PhaseStop) -> None:
        client, next_path = self.client, f"/projects/{self.slug}/annotate"
        assert client is not None
        while time.perf_counter() < deadline and not stop.is_set():
            began = time.perf_counter()
            page = client.get(next_path)
            worker.first.append((time.perf_counter() - began) * 1000)
            if page.status_code != 200:
                worker.errors[f"next: HTTP {page.status_code}"] += 1
                continue
            found = ASSIGNMENT_ID.search(page.text)
            if found is None:
                stop.ran_dry()
                return
            submit = SUBMIT_URL.search(page.text)
            url = (
                submit.group(1) if submit else f"/projects/{self.slug}/assignments/{found.group(1)}/judgment"
            )
            began = time.perf_counter()
            answer = client.post(url, json=submission_body(self.rng), headers={"X-CSRFToken": self.csrf})
            worker.second.append((time.perf_counter() - began) * 1000)
            if answer.status_code == 201:
                worker.judgments += 1
            else:
                worker.errors[f"submit: HTTP {answer.status_code}"] += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class ConnectionPool:
    """A fixed set of psycopg connections handed out one at a time (plain psycopg; no pool package)."""

    def __init__(self, config: dict[str, Any], size: int) -> None:
        self.connections: queue.Queue[psycopg.Connection] = queue.Queue()
        self.all = [connect(config) for _ in range(size)]
        for connection in self.all:
            self.connections.put(connection)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        connection = self.connections.get()
        try:
            yield connection
        finally:
            self.connections.put(connection)

    def close(self) -> None:
        for connection in self.all:
            connection.close()


class CeilingAnnotator(AnnotatorLoop):
    """Claim and submit as bare SQL through psycopg: the claim transaction, then the submission's."""

    def __init__(self, pool: ConnectionPool, claim: ClaimStatement, annotator_id: int, seed: int) -> None:
        self.pool, self.statement, self.annotator_id = pool, claim.sql, annotator_id
        self.parameters = claim.parameters_for(annotator_id)
        self.rng = random.Random(seed)

    def run(self, worker: Worker, deadline: float, stop: PhaseStop) -> None:
        while time.perf_counter() < deadline and not stop.is_set():
            began = time.perf_counter()
            with self.pool.connection() as connection, connection.transaction():
                row = connection.execute(self.statement, self.parameters).fetchone()
                if row is None:
                    stop.ran_dry()
                    return
                comparison_id = row[0]
                if connection.execute(LEASE_SQL, [comparison_id]).rowcount != 1:
                    worker.errors["claim: no room after the lock"] += 1
                    continue
                assignment = connection.execute(
                    ASSIGNMENT_INSERT_SQL, [comparison_id, self.annotator_id]
                ).fetchone()
                assert assignment is not None
            worker.first.append((time.perf_counter() - began) * 1000)
            body = submission_body(self.rng)
            began = time.perf_counter()
            with self.pool.connection() as connection, connection.transaction():
                if connection.execute(COUNT_JUDGMENT_SQL, [comparison_id]).rowcount != 1:
                    worker.errors["submit: comparison not open"] += 1
                    continue
                connection.execute(
                    JUDGMENT_INSERT_SQL,
                    [
                        comparison_id,
                        self.annotator_id,
                        assignment[0],
                        body["choice"],
                        RANKINGS[body["choice"]],
                        body["strength"],
                        body["time_spent_ms"],
                        body["submission_key"],
                    ],
                )
                connection.execute(ASSIGNMENT_SUBMITTED_SQL, [assignment[0]])
            worker.second.append((time.perf_counter() - began) * 1000)
            worker.judgments += 1


# --- One size --------------------------------------------------------------------------------------------


def size_database(config: dict[str, Any], database_url: str, count: int) -> tuple[dict[str, Any], str]:
    """Each size has its own database, named after DATABASE_URL's with the size appended."""
    name = f"{config['NAME']}_{count}"
    return {**config, "NAME": name}, urlsplit(database_url)._replace(path=f"/{name}").geturl()


def django_use(config: dict[str, Any]) -> None:
    """Point this process's Django connection at a size's database (its ORM seeds it)."""
    from django.db import connections

    django_disconnect()
    connections["default"].settings_dict["NAME"] = config["NAME"]


def size_prepare(*, config: dict[str, Any], database_url: str, count: int, annotators: int) -> SizeResult:
    size_config, size_url = size_database(config, database_url, count)
    print(f"\n== {count:,} comparisons: database {size_config['NAME']} ==", file=sys.stderr)
    database_recreate(size_config)
    django_use(size_config)
    migrate()
    django_disconnect()
    print(f"seeding {count:,} comparisons ...", file=sys.stderr)
    fixture, seed_seconds = seed(size_config, count=count, annotators=annotators)
    print(f"seeded in {seed_seconds:.1f} s", file=sys.stderr)
    return SizeResult(
        comparisons=count,
        config=size_config,
        database_url=size_url,
        fixture=fixture,
        seed_seconds=seed_seconds,
    )


def size_round(
    size: SizeResult,
    *,
    round_number: int,
    broker_url: str,
    secret_key: str,
    static_root: Path,
    server: ServerConfig,
    levels: Sequence[int],
    duration: float,
    warmup: float,
    max_connections: int,
    log_path: Path,
) -> None:
    """One round at one size: the app started on the size's database, then each level's ceiling and HTTP
    phases from the same pool state; the app is stopped afterwards, so the other size runs alone."""
    print(f"\n== round {round_number}: {size.comparisons:,} comparisons ==", file=sys.stderr)
    django_use(size.config)
    claim = claim_statement(size.fixture.project_id)
    environment = server_environment(
        database_url=size.database_url, broker_url=broker_url, secret_key=secret_key, static_root=static_root
    )
    fixture = size.fixture
    with (
        connect(size.config) as admin,
        celery_worker(environment, log_path.with_name("celery.log")),
        gunicorn(environment, server, log_path) as base_url,
    ):
        if round_number == 1:
            login_probe(base_url, fixture)
        if warmup > 0:
            # Workers compile templates and open their database connections on first use.
            warm = PhaseResult(name="warm-up", annotators=min(levels))
            run_phase(
                warm,
                duration=warmup,
                loops=[
                    HttpAnnotator(base_url, fixture.slug, fixture.session_keys[index], SEED + index)
                    for index in range(warm.annotators)
                ],
            )
            print(f"warm-up: {warm.judgments} judgments in {warm.seconds:.1f} s", file=sys.stderr)
        pool_reset(admin, fixture.project_id)
        for level in levels:
            seed_base = SEED + 1000 * round_number + level
            connections = min(level, max_connections, connections_free(admin) - CONNECTION_HEADROOM)
            if connections < 1:
                exit_unable("bench/assign.py: PostgreSQL has no free connections for the ceiling")
            pool = ConnectionPool(size.config, connections)
            try:
                ceiling = run_phase(
                    PhaseResult(name="ceiling", annotators=level, connections=connections),
                    duration=duration,
                    loops=[
                        CeilingAnnotator(pool, claim, fixture.annotator_ids[index], seed_base + index)
                        for index in range(level)
                    ],
                )
            finally:
                pool.close()
            ceiling.violations = audit(admin)
            pool_reset(admin, fixture.project_id)
            phase_print(ceiling)
            http = run_phase(
                PhaseResult(name="HTTP", annotators=level, connections=server.workers * server.threads),
                duration=duration,
                loops=[
                    HttpAnnotator(base_url, fixture.slug, fixture.session_keys[index], seed_base + index)
                    for index in range(level)
                ],
            )
            http.violations = audit(admin)
            pool_reset(admin, fixture.project_id)
            phase_print(http)
            size.ceiling.setdefault(level, []).append(ceiling)
            size.http.setdefault(level, []).append(http)
    django_disconnect()


def round_order(sizes: list[SizeResult], round_number: int) -> list[SizeResult]:
    """Smallest first in odd rounds, largest first in even ones (A B, B A, A B, ...), so that a machine
    slowing down or speeding up over the run weighs on both sizes alike."""
    return sizes if round_number % 2 else sizes[::-1]


def phase_print(phase: PhaseResult) -> None:
    note = " (pool ran dry)" if phase.exhausted else ""
    errors = f" errors {dict(phase.errors)}" if phase.errors else ""
    bad = sum(phase.violations.values())
    print(
        f"  {phase.name:>7} × {phase.annotators:>3}: {phase.judgments:>6} judgments in {phase.seconds:5.1f} s "
        f"= {phase.judgments_per_second:7.1f}/s; first p50/p95/p99 {phase.first.summary()} ms; "
        f"submit {phase.second.summary()} ms; audit violations {bad}; CPU busy {phase.machine_busy:.0%}, "
        f"client {phase.client_cpu_seconds / phase.seconds:.2f} cores, load {phase.load_average:.1f}{note}{errors}",
        file=sys.stderr,
    )


# --- Report ----------------------------------------------------------------------------------------------


def report_print(
    results: list[SizeResult],
    *,
    levels: Sequence[int],
    rounds: int,
    duration: float,
    server: ServerConfig,
    server_version: str,
    max_connections: int,
) -> bool:
    """Print the summary; returns whether the audit found no violation."""
    import django

    print()
    print("Assignment benchmark (bench/assign.py)")
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model()}), {memory_gib():.0f} GiB RAM, PostgreSQL "
        f"{server_version}, Python {platform.python_version()}, Django {django.get_version()}, "
        f"psycopg {psycopg.__version__}, httpx {httpx.__version__}"
    )
    print(
        f"server: {server.describe()} on 127.0.0.1, DEBUG off; client: one thread per annotator, "
        f"{duration:g} s per phase × {rounds} round(s), sizes alternating, no think time; overlap {OVERLAP}; ceiling connections (conns): "
        f"min(annotators, {max_connections}, the server's free connections - {CONNECTION_HEADROOM})"
    )
    for size in results:
        print()
        print(
            f"{size.comparisons:,} comparisons (seeded in {size.seed_seconds:.1f} s); "
            f"rounds pooled: judgments over their summed time, percentiles over all their requests"
        )
        print(
            f"{'annotators':>10} | {'HTTP j/s':>8}  {'next p50/p95/p99 ms':>23}  {'submit p50/p95/p99 ms':>23} | "
            f"{'conns':>5}  {'ceiling j/s':>11}  {'claim p50/p95/p99 ms':>23} | {'HTTP ÷ ceiling':>14}"
        )
        for level in levels:
            http, ceiling = size.http_at(level), size.ceiling_at(level)
            ratio = quotient(http.judgments_per_second, ceiling.judgments_per_second)
            dry = "*" if http.exhausted or ceiling.exhausted else ""
            print(
                f"{level:>10} | {http.judgments_per_second:>8.1f}  {http.first.summary():>23}  "
                f"{http.second.summary():>23} | {ceiling.connections:>5}  "
                f"{ceiling.judgments_per_second:>11.1f}  {ceiling.first.summary():>23} | "
                f"{f'{ratio:.3f}×{dry}':>14}"
            )
        print(
            f"{'annotators':>10} | {'CPU busy, HTTP':>14}  {'CPU busy, ceiling':>17}  "
            f"{'client cores, HTTP':>18}  {'client cores, ceiling':>21}  {'load avg':>8}"
        )
        for level in levels:
            http, ceiling = size.http_at(level), size.ceiling_at(level)
            print(
                f"{level:>10} | {http.machine_busy:>14.0%}  {ceiling.machine_busy:>17.0%}  "
                f"{http.client_cpu_seconds / http.seconds:>18.2f}  "
                f"{ceiling.client_cpu_seconds / ceiling.seconds:>21.2f}  "
                f"{max(http.load_average, ceiling.load_average):>8.1f}"
            )
        print(
            f"{'annotators':>10} | {'CPU ms per judgment: HTTP client / app / database+rest':>54} | "
            f"{'ceiling client / database+rest':>30} | {'cores HTTP needs at ' + str(TARGET_HTTP_SHARE_OF_CEILING) + '× ceiling':>30}"
        )
        for level in levels:
            http, ceiling = size.http_at(level), size.ceiling_at(level)
            http_cpu, ceiling_cpu = http.cpu_ms_per_judgment(), ceiling.cpu_ms_per_judgment()
            needed = sum(http_cpu) / 1000 * TARGET_HTTP_SHARE_OF_CEILING * ceiling.judgments_per_second
            print(
                f"{level:>10} | {' / '.join(f'{value:.2f}' for value in http_cpu):>54} | "
                f"{f'{ceiling_cpu[0]:.2f} / {ceiling_cpu[2]:.2f}':>30} | {needed:>30.1f}"
            )
        if rounds > 1:
            print(f"{'annotators':>10} | per round: HTTP ÷ ceiling; p99(next) ms")
            for level in levels:
                shares = [
                    quotient(http.judgments_per_second, ceiling.judgments_per_second)
                    for http, ceiling in zip(size.http[level], size.ceiling[level], strict=True)
                ]
                print(
                    f"{level:>10} | "
                    + "  ".join(
                        f"{share:.3f}×; {http.first.p(0.99):.1f}"
                        for share, http in zip(shares, size.http[level], strict=True)
                    )
                )
        if any(size.http_at(level).exhausted or size.ceiling_at(level).exhausted for level in levels):
            print("* the pool ran dry during the phase: its rate is over the time until then")
        errors = Counter[str]()
        for level in levels:
            errors.update({f"{key} (HTTP × {level})": n for key, n in size.http_at(level).errors.items()})
            errors.update(
                {f"{key} (ceiling × {level})": n for key, n in size.ceiling_at(level).errors.items()}
            )
        if errors:
            print(f"errors: {dict(errors)}")

    print()
    print("audit after every phase (violations, must be 0):")
    clean = True
    for name in AUDIT_QUERIES:
        total = sum(
            phase.violations.get(name, 0)
            for size in results
            for phases in (*size.http.values(), *size.ceiling.values())
            for phase in phases
        )
        clean = clean and total == 0
        print(f"  {name}: {total}")

    print()
    smallest, largest = results[0], results[-1]
    indicative = (smallest.comparisons, largest.comparisons) != (TARGET_SMALL, TARGET_LARGE)
    shares = {
        level: quotient(
            largest.http_at(level).judgments_per_second, largest.ceiling_at(level).judgments_per_second
        )
        for level in levels
    }
    share_met = all(share >= TARGET_HTTP_SHARE_OF_CEILING for share in shares.values())
    print(
        f"target HTTP judgments/s >= {TARGET_HTTP_SHARE_OF_CEILING}× the ceiling at {largest.comparisons:,}: "
        + ", ".join(f"{level}: {share:.2f}×" for level, share in shares.items())
        + f" — {verdict(share_met, indicative=largest.comparisons != TARGET_LARGE)}"
    )
    if len(results) > 1:
        growth = {
            level: quotient(largest.http_at(level).first.p(0.99), smallest.http_at(level).first.p(0.99))
            for level in levels
        }
        growth_met = all(value <= TARGET_P99_GROWTH for value in growth.values())
        print(
            f"target p99(next) at {largest.comparisons:,} <= {TARGET_P99_GROWTH}× at {smallest.comparisons:,}: "
            + ", ".join(f"{level}: {value:.2f}×" for level, value in growth.items())
            + f" — {verdict(growth_met, indicative=indicative)}"
        )
    print(f"target 0 audit violations: {'MET' if clean else 'MISSED'}")
    return clean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--sizes", type=int_list, default=list(DEFAULT_SIZES), help="comparisons per run, smallest first"
    )
    parser.add_argument(
        "--comparisons",
        type=int,
        help=f"the large size: shorthand for --sizes {TARGET_SMALL},N",
    )
    parser.add_argument("--levels", type=int_list, default=list(DEFAULT_LEVELS), help="simulated annotators")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase and level")
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="rounds over the sizes, alternating their order; each level's rounds are pooled",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of HTTP warm-up per size")
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1) + 1,
        help="gunicorn workers (default: 2 × cores + 1, gunicorn's rule of thumb)",
    )
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (>1: gthread)")
    parser.add_argument(
        "--max-connections", type=int, default=50, help="most PostgreSQL connections the ceiling opens"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: sizes {QUICK_SIZES[0]:,} and {QUICK_SIZES[1]:,}, 5 s per phase, 1 s warm-up, 2 rounds",
    )
    parser.add_argument("--keep-database", action="store_true", help="leave the sizes' databases")
    parser.add_argument(
        "--broker",
        default=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12"),
        help="Redis for the app's Celery worker; the script empties this database (default: db 12)",
    )
    arguments = parser.parse_args()
    sizes: list[int] = sorted(arguments.sizes)
    if arguments.comparisons:
        sizes = sorted({TARGET_SMALL, arguments.comparisons})
    duration, warmup = arguments.duration, arguments.warmup
    rounds: int = arguments.rounds
    if arguments.quick:
        sizes, duration, warmup, rounds = list(QUICK_SIZES), 5.0, 1.0, 2
    if rounds < 1:
        exit_unable("bench/assign.py: --rounds must be at least 1")
    levels: list[int] = arguments.levels
    server = ServerConfig(workers=arguments.workers, threads=arguments.threads)

    config = bench_database_config_or_exit(
        script="bench/assign.py", example_database="rankwise_bench_assign", doing="drops and re-creates"
    )
    database_url = os.environ["DATABASE_URL"]
    secret_key = secrets.token_urlsafe(50)
    django_setup(secret_key)
    print(
        f"sizes {', '.join(f'{size:,}' for size in sizes)}; levels {levels}; {duration:g} s per phase; "
        f"{rounds} round(s); {server.describe()}",
        file=sys.stderr,
    )
    results: list[SizeResult] = []
    with tempfile.TemporaryDirectory(prefix="rankwise-bench-assign-") as folder:
        static_root = Path(folder) / "static"
        log_path = Path(folder) / "gunicorn.log"
        collectstatic(
            server_environment(
                database_url=database_url,
                broker_url=arguments.broker,
                secret_key=secret_key,
                static_root=static_root,
            )
        )
        try:
            for count in sizes:
                results.append(
                    size_prepare(
                        config=config, database_url=database_url, count=count, annotators=max(levels)
                    )
                )
            for round_number in range(1, rounds + 1):
                for size in round_order(results, round_number):
                    size_round(
                        size,
                        round_number=round_number,
                        broker_url=arguments.broker,
                        secret_key=secret_key,
                        static_root=static_root,
                        server=server,
                        levels=levels,
                        duration=duration,
                        warmup=warmup,
                        max_connections=arguments.max_connections,
                        log_path=log_path,
                    )
            with connect(config, dbname="postgres") as connection:
                row = connection.execute("SHOW server_version").fetchone()
                server_version = str(row[0]) if row else "unknown"
        except Exception:
            if log_path.exists():
                print(f"gunicorn log:\n{log_path.read_text(errors='replace')[-5000:]}", file=sys.stderr)
            raise
        finally:
            django_disconnect()
            if not arguments.keep_database:
                for count in sizes:
                    database_recreate(size_database(config, database_url, count)[0], drop_only=True)
    clean = report_print(
        results,
        levels=levels,
        rounds=rounds,
        duration=duration,
        server=server,
        server_version=server_version,
        max_connections=arguments.max_connections,
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the PostgreSQL benchmarks share: refusing to run without PostgreSQL (or on a database that is
not a benchmark's), connections, Django setup steps, the machine's name and memory, and report helpers.

Imported by the scripts as a sibling module (`python bench/NAME.py` puts this folder on sys.path).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import dj_database_url
import psycopg
from psycopg import sql


def exit_unable(message: str) -> NoReturn:
    """Exit 2: the benchmark could not run (a missed target is still exit 0)."""
    print(message, file=sys.stderr)
    sys.exit(2)


def postgres_config_or_exit(*, script: str, example_database: str) -> dict[str, Any]:
    """The Django database settings of DATABASE_URL; exit 2 with an example unless it is PostgreSQL."""
    url = os.environ.get("DATABASE_URL", "")
    config: dict[str, Any] = dict(dj_database_url.parse(url)) if url else {}
    if config.get("ENGINE") != "django.db.backends.postgresql":
        exit_unable(
            f"{script} measures PostgreSQL: set DATABASE_URL to a PostgreSQL URL, e.g.\n"
            f"  DATABASE_URL=postgres://postgres@127.0.0.1:5432/{example_database} "
            f".venv/bin/python {script}\n(got DATABASE_URL={url!r})"
        )
    return config


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench_database_config_or_exit(*, script: str, example_database: str, doing: str) -> dict[str, Any]:
    """The PostgreSQL settings of DATABASE_URL, refusing (exit 2) a database the benchmark might harm:
    its name must contain 'bench' and not start with 'test_'. `doing` says what the script does to it."""
    config = postgres_config_or_exit(script=script, example_database=example_database)
    name = str(config.get("NAME") or "")
    if "bench" not in name or name.startswith("test_"):
        exit_unable(
            f"{script} {doing} the database {name!r}: name one that contains 'bench' and does not start "
            f"with 'test_', e.g. {example_database}."
        )
    return config


def connect(
    config: dict[str, Any], *, dbname: str | None = None, autocommit: bool = True
) -> psycopg.Connection:
    return psycopg.connect(
        host=config.get("HOST") or "127.0.0.1",
        port=config.get("PORT") or 5432,
        user=config.get("USER") or "postgres",
        password=config.get("PASSWORD") or None,
        dbname=dbname or config["NAME"],
        connect_timeout=10,
        autocommit=autocommit,
    )


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def django_disconnect() -> None:
    from django.db import connections

    connections.close_all()


def memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def quotient(numerator: float, denominator: float) -> float:
    """NaN rather than an exception when there is nothing to divide by."""
    return numerator / denominator if denominator else float("nan")


def verdict(met: bool, *, indicative: bool) -> str:
    word = "MET" if met else "MISSED"
    return f"{word} (indicative only: sizes differ from the target's)" if indicative else word


def int_list(value: str) -> list[int]:
    """argparse type: a comma-separated list of positive integers (underscores allowed)."""
    try:
        numbers = [int(item.replace("_", "")) for item in value.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {value!r}") from None
    if not numbers or any(number < 1 for number in numbers):
        raise argparse.ArgumentTypeError(f"need positive integers, got {value!r}")
    return numbers


def seed_load(
    config: dict[str, Any],
    *,
    statements: Sequence[tuple[str, str]],
    parameters: Mapping[str, Any],
    tables: Sequence[str],
) -> float:
    """Run a script's named `INSERT … SELECT … generate_series` statements in one transaction, move the
    tables' id sequences past the rows, then `VACUUM ANALYZE` and `CHECKPOINT`; print each step's time
    and return the whole load's seconds."""
    started = time.perf_counter()
    with connect(config, autocommit=False) as connection:
        # Losing these rows to a crash costs nothing: the script seeds again.
        connection.execute("SET synchronous_commit = off")
        for name, statement in statements:
            step = time.perf_counter()
            connection.execute(statement, parameters)
            print(f"  {name}: {time.perf_counter() - step:.1f} s", file=sys.stderr)
        step = time.perf_counter()
        connection.commit()  # the deferred foreign-key checks run here
        print(f"  commit (foreign-key checks): {time.perf_counter() - step:.1f} s", file=sys.stderr)
        connection.autocommit = True
        for table in tables:
            connection.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({table}, 'id'), (SELECT max(id) FROM {ident}))"
                ).format(table=sql.Literal(table), ident=sql.Identifier(table))
            )
        step = time.perf_counter()
        connection.execute("VACUUM ANALYZE")
        print(f"  VACUUM ANALYZE: {time.perf_counter() - step:.1f} s", file=sys.stderr)
        step = time.perf_counter()
        # Write the load's dirty pages out now, so that no checkpoint the bulk load's WAL started is still
        # writing during the first measurement.
        connection.execute("CHECKPOINT")
        print(f"  CHECKPOINT: {time.perf_counter() - step:.1f} s", file=sys.stderr)
    return time.perf_counter() - started


REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def database_prepare(config: dict[str, Any], *, drop: bool, script: str) -> None:
    """Create the database if it is missing; drop it first when `drop`."""
    name = sql.Identifier(config["NAME"])
    try:
        with connect(config, dbname="postgres") as connection:
            if drop:
                connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
            ).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
    except psycopg.Error as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        exit_unable(f"{script}: cannot prepare database {config['NAME']!r}: {message}")


def django_environment() -> None:
    """Production-like settings for this process and the children it starts (they inherit them)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "feedback.settings"
    os.environ["DJANGO_DEBUG"] = "0"  # DEBUG would record every query
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1")
    os.environ["DJANGO_LOG_LEVEL"] = "WARNING"
    os.environ.pop("CELERY_BROKER_URL", None)


def django_setup() -> None:
    # Run as `python bench/NAME.py`, the script's own folder is on sys.path, not the repository.
    sys.path.insert(0, str(REPOSITORY_ROOT))
    django_environment()
    import django

    django.setup()

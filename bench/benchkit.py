"""What the PostgreSQL benchmarks share: refusing to run without PostgreSQL, and naming the machine.

Imported by the scripts as a sibling module (`python bench/NAME.py` puts this folder on sys.path).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, NoReturn

import dj_database_url


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

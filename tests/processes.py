"""`manage.py` in a fresh process, configured only by what the test passes."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_VARIABLES = ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")


def clean_environment(**env: str) -> dict[str, str]:
    """The parent's environment minus every Rankwise/Django setting, plus `env`."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "RANKWISE_")) and key not in CONFIG_VARIABLES
    }
    return {**clean, **env}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py in a fresh process configured only by `env`."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=180,
    )


def python_script(script: str, *, timeout: int = 180, **env: str) -> subprocess.CompletedProcess:
    """Run `python -c script` from the repository in a fresh process configured only by `env`."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )

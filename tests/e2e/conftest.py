"""Real Celery worker processes against the real Redis and the test PostgreSQL database."""

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from inference.tiny import build_tiny_checkpoint
from tests.processes import ROOT, clean_environment

CELERY = Path(sys.executable).parent / "celery"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-instruct", kind="instruct")


def database_url_of_tests() -> str:
    options = connection.settings_dict
    user = options["USER"] or "postgres"
    return f"postgres://{user}@{options['HOST'] or '127.0.0.1'}:{options['PORT'] or 5432}/{options['NAME']}"


class Worker:
    """A `celery worker` process consuming both queues, as the GPU workers run it (solo pool by default)."""

    def __init__(self, name: str, log: Path, *, pool: str = "solo", **env: str) -> None:
        self.log = log
        self.handle = log.open("w")
        self.process = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "feedback.celery:app",
                "worker",
                "--pool",
                pool,
                "--concurrency",
                "1",
                "--queues",
                "generation,default",
                "--hostname",
                f"{name}@localhost",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=clean_environment(
                DJANGO_SETTINGS_MODULE="feedback.settings",
                DATABASE_URL=database_url_of_tests(),
                CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
                RANKWISE_VAR_DIR=str(log.parent),
                **env,
            ),
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self.handle.flush()
        return self.log.read_text()

    def kill(self) -> None:
        """kill -9: no shutdown, no acknowledgement, the task dies mid-batch."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.handle.close()


@pytest.fixture
def start_worker(tmp_path) -> Iterator:
    """Start workers with a clean broker; every worker is stopped at teardown."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    workers: list[Worker] = []

    def start(*, pool: str = "solo", **env: str) -> Worker:
        worker = Worker(f"e2e{len(workers)}", tmp_path / f"worker{len(workers)}.log", pool=pool, **env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def wait_for(condition, *, timeout: float, what: str, workers=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    logs = "\n\n".join(worker.output()[-4000:] for worker in workers)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}.\n{logs}")

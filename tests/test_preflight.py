"""`make test` stops at once, naming the service that is down and how to start it."""

import os

from tests.preflight import START_POSTGRES, START_REDIS, check_postgres, check_redis

# Port 1 on loopback: nothing listens there, so the connection is refused at once.
CLOSED = "127.0.0.1:1"


def test_reachable_services_pass():
    assert (
        check_postgres(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rankwise")) is None
    )
    assert check_redis(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")) is None


def test_an_unreachable_postgres_is_named_with_how_to_start_it():
    message = check_postgres(f"postgres://postgres@{CLOSED}/rankwise")
    assert message is not None
    assert message.startswith(f"PostgreSQL is not reachable at {CLOSED} (")
    assert f"Start it (Debian): {START_POSTGRES}" in message


def test_an_unreachable_redis_is_named_with_how_to_start_it():
    message = check_redis(f"redis://{CLOSED}/0")
    assert message is not None
    assert message.startswith(f"Redis is not reachable at redis://{CLOSED}/0 (")
    assert f"Start it: {START_REDIS}" in message


def test_a_sqlite_url_is_refused_for_tests():
    assert check_postgres("sqlite:///tmp/x.sqlite3") == (
        "DATABASE_URL='sqlite:///tmp/x.sqlite3' is not PostgreSQL; the tests run on PostgreSQL."
    )

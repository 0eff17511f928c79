"""Before the suite: are PostgreSQL and Redis reachable? Say which is not, and how to start it.

Run by `make test` with the same DATABASE_URL and CELERY_BROKER_URL the tests use.
"""

import os
import sys

import dj_database_url
import psycopg
import redis

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"


def check_postgres(url: str) -> str | None:
    config = dj_database_url.parse(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        return f"DATABASE_URL={url!r} is not PostgreSQL; the tests run on PostgreSQL."
    host, port = config.get("HOST") or "127.0.0.1", config.get("PORT") or 5432
    try:
        # The maintenance database: the test database itself is created by pytest-django.
        psycopg.connect(
            host=host,
            port=port,
            user=config.get("USER") or "postgres",
            password=config.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (
            f"PostgreSQL is not reachable at {host}:{port} ({first_line}).\n"
            f"  Start it (Debian): {START_POSTGRES}\n"
            "  or point TEST_DATABASE_URL at a running server: make test TEST_DATABASE_URL=postgres://..."
        )
    return None


def check_redis(url: str) -> str | None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (redis.RedisError, ValueError) as error:
        return (
            f"Redis is not reachable at {url} ({error}).\n"
            f"  Start it: {START_REDIS}\n"
            "  or point TEST_BROKER_URL at a running server: make test TEST_BROKER_URL=redis://..."
        )
    return None


def main() -> int:
    problems = [
        problem
        for problem in (
            check_postgres(os.environ["DATABASE_URL"]),
            check_redis(os.environ["CELERY_BROKER_URL"]),
        )
        if problem
    ]
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Configuration from the environment: demo defaults, production refusals, and `check --deploy`."""

import os
import secrets

import pytest

from tests.processes import manage


def production_env(**overrides: str) -> dict[str, str]:
    return {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "rankwise.example.org",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rankwise"),
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_DEBUG=0 but DJANGO_SECRET_KEY is unset or the public demo key."),
        (
            {"DJANGO_SECRET_KEY": "django-insecure-rankwise-demo-key-never-use-this-outside-make-demo"},
            "DJANGO_DEBUG=0 but DJANGO_SECRET_KEY is unset or the public demo key.",
        ),
        ({"DJANGO_ALLOWED_HOSTS": ""}, "DJANGO_DEBUG=0 but DJANGO_ALLOWED_HOSTS is empty."),
        ({"DJANGO_ALLOWED_HOSTS": " , "}, "DJANGO_DEBUG=0 but DJANGO_ALLOWED_HOSTS is empty."),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG='maybe' is not a boolean"),
    ],
)
def test_production_refuses_to_start_misconfigured(overrides, message):
    result = manage("check", **production_env(**overrides))
    assert result.returncode == 1
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in result.stderr


def test_check_deploy_passes_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production_env())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == "System check identified no issues (0 silenced).\n"


def test_check_deploy_fails_when_a_security_setting_is_switched_off():
    # The passing run above means something only if the check can fail under the same settings.
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", **production_env(DJANGO_SECURE_SSL_REDIRECT="0")
    )
    assert result.returncode == 1
    assert "security.W008" in result.stderr


def test_the_demo_defaults_need_no_configuration(tmp_path):
    script = (
        "from django.conf import settings as s; import django; django.setup(); "
        "from feedback.celery import app; "
        "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], "
        "s.CELERY_TASK_ALWAYS_EAGER, app.conf.task_always_eager, s.SECRET_KEY == s.DEMO_SECRET_KEY)"
    )
    result = manage("shell", "--verbosity", "0", "-c", script, RANKWISE_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "True",
        "django.db.backends.sqlite3",
        str(tmp_path / "rankwise.sqlite3"),
        "True",
        "True",
        "True",
    ]


def test_a_broker_url_turns_off_eager_tasks_and_the_visibility_timeout_outlasts_the_hard_limit():
    script = (
        "from feedback.celery import app; c = app.conf; "
        "print(c.task_always_eager, c.broker_url, c.task_acks_late, c.task_reject_on_worker_lost, "
        "c.worker_prefetch_multiplier, c.broker_transport_options['visibility_timeout'] > c.task_time_limit, "
        "c.task_soft_time_limit < c.task_time_limit, sorted(q.name for q in c.task_queues))"
    )
    result = manage("shell", "--verbosity", "0", "-c", script, CELERY_BROKER_URL="redis://127.0.0.1:6379/15")
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == "False redis://127.0.0.1:6379/15 True True 1 True True ['default', 'generation']"
    )


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "1500 1800 2100 2700"),
        ({"CELERY_TASK_SOFT_TIME_LIMIT": "600", "CELERY_TASK_TIME_LIMIT": "900"}, "300 600 900 1500"),
    ],
)
def test_the_generation_deadline_sits_below_the_time_limits_and_the_visibility_timeout(environment, expected):
    """The solo pool ignores Celery's time limits, so a chunk task stops itself at its deadline: below the
    soft limit, below the hard limit, far below the time after which Redis would deliver it again."""
    script = (
        "from django.conf import settings as s; from feedback.celery import app; c = app.conf; "
        "print(s.RANKWISE_GENERATION_TASK_DEADLINE, c.task_soft_time_limit, c.task_time_limit, "
        "c.broker_transport_options['visibility_timeout'])"
    )
    result = manage("shell", "--verbosity", "0", "-c", script, **environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
    deadline, soft, hard, visibility = map(int, expected.split())
    assert deadline < soft < hard < visibility


def test_a_deadline_past_the_soft_time_limit_is_refused():
    result = manage("check", RANKWISE_GENERATION_TASK_DEADLINE_SECONDS="1800")
    assert result.returncode == 1
    assert (
        "ImproperlyConfigured: Need 0 < RANKWISE_GENERATION_TASK_DEADLINE_SECONDS < CELERY_TASK_SOFT_TIME_LIMIT"
        in result.stderr
    )


def test_the_demo_runs_tasks_inline_without_a_broker_warning(tmp_path):
    """Celery builds a connection object even for inline tasks: with no broker configured it must not make
    kombu warn about a missing hostname in the demo's log."""
    script = (
        "from feedback.celery import app; c = app.connection_for_write(); c.info(); "
        "print(app.conf.task_always_eager, app.conf.broker_url)"
    )
    result = manage("shell", "--verbosity", "0", "-c", script, RANKWISE_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "memory://localhost/"]
    assert "No hostname" not in result.stderr

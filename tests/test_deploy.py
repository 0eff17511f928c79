"""The deployment files (Dockerfile, docker-compose.yml) against the code they name.

Nothing here builds or runs a container: the files are parsed, and every entry point, management
command, queue and build target they name is resolved against the project. No database access.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

SERVICES = {"postgres", "redis", "migrate", "web", "worker", "worker-gpu"}
ONE_SHOT = {"migrate"}
GPU_QUEUE = "generation"
SHELL_OPERATORS = {"&&", "||", ";", "|"}

# Compose interpolation: $$ is a literal $, ${VAR:-default} / ${VAR-default} take the default,
# ${VAR}, ${VAR:?err} and $VAR are left as a <VAR> placeholder.
_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?+])([^}]*))?\}|\$(\w+)")


# ---- reading the files ----------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def interpolate(text: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if operator in (":-", "-"):
            return argument
        return f"<{name or match.group(4)}>"

    return _COMPOSE_VARIABLE.sub(substitute, text)


def argv(command: str | list[Any] | None) -> list[str]:
    """A compose `command` (string or list) as the argument list compose would run."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(interpolate(command))
    return [interpolate(str(part)) for part in command]


def shell_segments(words: list[str]) -> list[list[str]]:
    """Split a shell line's words into its simple commands, dropping leading VAR=value assignments."""
    segments: list[list[str]] = [[]]
    for word in words:
        if word in SHELL_OPERATORS:
            segments.append([])
        elif segments[-1] or not re.fullmatch(r"\w+=.*", word):
            segments[-1].append(word)
    return [segment for segment in segments if segment]


def healthcheck_argv(healthcheck: dict[str, Any]) -> list[list[str]]:
    test = healthcheck.get("test")
    if isinstance(test, str):
        return shell_segments(shlex.split(interpolate(test)))
    if not test or test[0] == "NONE":
        return []
    if test[0] == "CMD-SHELL":
        return shell_segments(shlex.split(interpolate(" ".join(test[1:]))))
    return [argv(test[1:] if test[0] == "CMD" else test)]


@functools.cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile_stages() -> list[str]:
    stages = []
    for keyword, arguments in dockerfile_instructions():
        words = arguments.split()
        if keyword == "FROM" and len(words) >= 3 and words[-2].lower() == "as":
            stages.append(words[-1])
    return stages


def dockerfile_commands() -> list[tuple[str, list[str]]]:
    """Every CMD/ENTRYPOINT and every simple command of every RUN line, labelled."""
    commands = []
    for keyword, arguments in dockerfile_instructions():
        if keyword in ("CMD", "ENTRYPOINT"):
            words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
            commands.append((f"Dockerfile {keyword}", words))
        elif keyword == "RUN":
            commands += [("Dockerfile RUN", segment) for segment in shell_segments(shlex.split(arguments))]
    return commands


def compose_commands() -> list[tuple[str, list[str]]]:
    """Every service's command, entrypoint and healthcheck command, labelled."""
    commands = []
    for name, service in services().items():
        for key in ("entrypoint", "command"):
            if service.get(key):
                commands.append((f"service {name} {key}", argv(service[key])))
        for words in healthcheck_argv(service.get("healthcheck") or {}):
            commands.append((f"service {name} healthcheck", words))
    return commands


def all_commands() -> list[tuple[str, list[str]]]:
    return compose_commands() + dockerfile_commands()


# ---- reading command lines ------------------------------------------------------------------------


def program(words: list[str]) -> str:
    """The program a command line runs: `celery`, `gunicorn`, or `python -m X` as X."""
    if not words:
        return ""
    name = Path(words[0]).name
    if name.startswith("python") and len(words) > 2 and words[1] == "-m":
        return words[2]
    return name


def program_args(words: list[str]) -> list[str]:
    return words[3:] if Path(words[0]).name.startswith("python") and words[1:2] == ["-m"] else words[1:]


def option_values(words: list[str], *names: str) -> list[str]:
    """Values of an option, in any of the forms `--name value`, `--name=value`, `-X value`, `-Xvalue`."""
    values = []
    for index, word in enumerate(words):
        for name in names:
            if word == name and index + 1 < len(words):
                values.append(words[index + 1])
            elif name.startswith("--") and word.startswith(name + "="):
                values.append(word[len(name) + 1 :])
            elif len(name) == 2 and word.startswith(name) and len(word) > 2 and not word.startswith("--"):
                values.append(word[2:].removeprefix("="))
    return values


def gunicorn_target(words: list[str]) -> str | None:
    """The app a gunicorn command line serves, parsed by gunicorn's own argument parser."""
    from gunicorn.config import Config

    positional = Config().parser().parse_args(program_args(words)).args
    return positional[0] if positional else None


def celery_queues(words: list[str]) -> list[str]:
    return [queue for value in option_values(words, "--queues", "-Q") for queue in value.split(",") if queue]


def celery_worker_commands() -> dict[str, list[str]]:
    """service name -> its Celery worker command line."""
    return {
        name: argv(service.get("command"))
        for name, service in services().items()
        if program(argv(service.get("command"))) == "celery" and "worker" in argv(service.get("command"))
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


# ---- resolving what the commands name -------------------------------------------------------------


def wsgi_problem(target: str | None) -> str | None:
    """None when `module:attr` imports and the attribute is callable, else what is wrong."""
    if not target:
        return "no application named"
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        return f"{target!r} is not of the form module:attribute"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return f"{target!r}: module {module_name!r} does not import ({exc})"
    if not hasattr(module, attribute):
        return f"{target!r}: module {module_name!r} has no attribute {attribute!r}"
    if not callable(getattr(module, attribute)):
        return f"{target!r}: {attribute!r} is not callable, so it is no WSGI application"
    return None


def celery_app(target: str) -> Any:
    """The object a `celery -A` value names (`module:attr`, or a module holding `app` or `celery`)."""
    module_name, colon, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    if colon:
        return getattr(module, attribute)
    return getattr(module, "app", None) or getattr(module, "celery", None)


def celery_app_problem(target: str) -> str | None:
    from celery import Celery

    try:
        app = celery_app(target)
    except (ImportError, AttributeError) as exc:
        return f"{target!r} does not resolve ({exc})"
    if not isinstance(app, Celery):
        return f"{target!r} is {type(app).__name__}, not a celery.Celery instance"
    return None


def declared_queues() -> set[str]:
    from feedback.celery import app

    queues = app.conf.task_queues or []
    return set(queues) if isinstance(queues, dict) else {queue.name for queue in queues}


def manage_problem(words: list[str]) -> str | None:
    """None when `... manage.py X` names the project's manage.py and an existing command X."""
    from django.core.management import get_commands

    index = next(i for i, word in enumerate(words) if word.endswith("manage.py"))
    if not (ROOT / Path(words[index]).name).is_file():
        return f"{words[index]} does not exist at the repository root"
    if index + 1 >= len(words):
        return "manage.py is run without a command"
    if words[index + 1] not in get_commands():
        return f"manage.py has no command {words[index + 1]!r}"
    return None


# ---- the tests ------------------------------------------------------------------------------------


def test_compose_names_every_service():
    missing = SERVICES - set(services())
    assert not missing, f"docker-compose.yml lacks the services {sorted(missing)}"


def test_compose_has_no_obsolete_version_key():
    assert "version" not in compose(), "the Compose spec has no top-level `version:`; drop it"


def test_every_long_running_service_has_a_healthcheck():
    lacking = [
        name
        for name, service in services().items()
        if name not in ONE_SHOT
        and (
            not service.get("healthcheck")
            or service["healthcheck"].get("disable")
            or not healthcheck_argv(service["healthcheck"])
        )
    ]
    assert lacking == [], f"services without a healthcheck: {lacking}"


def test_long_running_services_restart_and_one_shot_does_not():
    policies = {name: service.get("restart", "no") for name, service in services().items()}
    expected = {name: "no" if name in ONE_SHOT else "unless-stopped" for name in services()}
    assert policies == expected


# Importing the WSGI app builds WhiteNoise, which warns that the test STATIC_ROOT was never collected.
@pytest.mark.filterwarnings("ignore:No directory at:UserWarning")
def test_gunicorn_commands_serve_an_importable_wsgi_application():
    commands = [(label, words) for label, words in all_commands() if program(words) == "gunicorn"]
    labels = {label for label, _ in commands}
    assert {"service web command", "Dockerfile CMD"} <= labels, f"gunicorn is run only by {sorted(labels)}"
    problems = [f"{label}: {wsgi_problem(gunicorn_target(words))}" for label, words in commands]
    problems = [problem for problem in problems if not problem.endswith(": None")]
    assert problems == [], "\n".join(problems)


def test_wsgi_check_reports_a_missing_application():
    # The check above must be able to fail: a wrong attribute, a wrong module, a non-callable.
    assert (
        wsgi_problem("feedback.wsgi:nope")
        == "'feedback.wsgi:nope': module 'feedback.wsgi' has no attribute 'nope'"
    )
    assert wsgi_problem("feedback.wsgi_nope:application").startswith(
        "'feedback.wsgi_nope:application': module 'feedback.wsgi_nope' does not import"
    )
    assert wsgi_problem("feedback.wsgi:__name__") == (
        "'feedback.wsgi:__name__': '__name__' is not callable, so it is no WSGI application"
    )
    assert wsgi_problem("feedback.wsgi") == "'feedback.wsgi' is not of the form module:attribute"
    assert (
        wsgi_problem(gunicorn_target(["gunicorn", "--bind=0.0.0.0:8000", "feedback.wsgi:nope"])) is not None
    )


def test_celery_commands_name_the_celery_app():
    commands = [(label, words) for label, words in all_commands() if program(words) == "celery"]
    assert commands, "no celery command found"
    problems = []
    for label, words in commands:
        apps = option_values(words, "-A", "--app")
        if len(apps) != 1:
            problems.append(f"{label}: names {len(apps)} apps with -A/--app, expected 1")
        problems += [f"{label}: {problem}" for problem in map(celery_app_problem, apps) if problem]
    assert problems == [], "\n".join(problems)


def test_celery_app_check_reports_a_wrong_app():
    assert celery_app_problem("feedback.wsgi:application") is not None
    assert celery_app_problem("feedback.celery:nope") is not None


def test_manage_py_commands_exist():
    commands = [
        (label, words) for label, words in all_commands() if any(w.endswith("manage.py") for w in words)
    ]
    labels = {label for label, _ in commands}
    assert {"service migrate command", "Dockerfile RUN"} <= labels, (
        f"manage.py is run only by {sorted(labels)}"
    )
    problems = [f"{label}: {manage_problem(words)}" for label, words in commands if manage_problem(words)]
    assert problems == [], "\n".join(problems)


def test_manage_py_check_reports_a_missing_command():
    assert manage_problem(["python", "manage.py", "migrat"]) == "manage.py has no command 'migrat'"


def test_celery_app_declares_the_two_queues_and_routes_unrouted_tasks_to_one():
    from feedback.celery import app

    assert declared_queues() == {"default", GPU_QUEUE}
    assert app.conf.task_default_queue in declared_queues(), (
        f"task_default_queue is {app.conf.task_default_queue!r}, which no worker consumes"
    )


def test_workers_consume_declared_queues_and_every_declared_queue_is_consumed():
    workers = celery_worker_commands()
    assert set(workers) == {"worker", "worker-gpu"}, f"Celery workers: {sorted(workers)}"
    consumed = {name: set(celery_queues(words)) for name, words in workers.items()}
    unnamed = sorted(name for name, queues in consumed.items() if not queues)
    assert unnamed == [], f"workers that name no --queues (so consume every queue): {unnamed}"
    undeclared = {
        name: sorted(queues - declared_queues())
        for name, queues in consumed.items()
        if queues - declared_queues()
    }
    assert undeclared == {}, f"workers consume queues the Celery app does not declare: {undeclared}"
    unconsumed = declared_queues() - set().union(*consumed.values())
    assert not unconsumed, f"declared queues no worker consumes: {sorted(unconsumed)}"


def test_only_gpu_workers_consume_the_generation_queue():
    workers = celery_worker_commands()
    assert set(celery_queues(workers["worker-gpu"])) == {GPU_QUEUE}
    torchless = [
        name
        for name, words in workers.items()
        if GPU_QUEUE in celery_queues(words) and services()[name].get("build", {}).get("target") != "gpu"
    ]
    assert torchless == [], f"{torchless} consume {GPU_QUEUE!r} from an image without torch"


def test_gpu_worker_takes_one_task_at_a_time_on_a_reserved_gpu():
    service = services()["worker-gpu"]
    words = argv(service["command"])
    assert option_values(words, "--pool", "-P") == ["solo"], "worker-gpu must run --pool solo"
    assert option_values(words, "--prefetch-multiplier") == ["1"], (
        "worker-gpu must run --prefetch-multiplier 1"
    )
    assert service["build"]["target"] == "gpu"
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    gpus = [
        device
        for device in devices
        if device.get("driver") == "nvidia"
        and "gpu" in device.get("capabilities", [])
        and (device.get("count") == 1 or device.get("device_ids"))
    ]
    assert len(gpus) == 1, f"worker-gpu reserves no single nvidia GPU: {devices}"


def test_gpu_worker_reads_checkpoints_offline_from_a_read_only_mount():
    service = services()["worker-gpu"]
    env = environment(service)
    assert env.get("HF_HUB_OFFLINE") == "1"
    assert env.get("HF_HOME", "").startswith("/models")
    mounts = [interpolate(volume).split(":") for volume in service.get("volumes", [])]
    assert [mount[1:] for mount in mounts if mount[1:2] == ["/models"]] == [["/models", "ro"]]


def test_compose_build_targets_are_dockerfile_stages():
    stages = set(dockerfile_stages())
    targets = {
        name: (service["build"] if isinstance(service["build"], dict) else {}).get("target")
        for name, service in services().items()
        if "build" in service
    }
    assert set(targets) == {"migrate", "web", "worker", "worker-gpu"}
    wrong = {name: target for name, target in targets.items() if target not in stages}
    assert wrong == {}, f"build targets that are no `FROM ... AS <target>` stage ({sorted(stages)}): {wrong}"


def test_dockerfile_default_target_is_web_and_stages_are_multi_stage():
    stages = dockerfile_stages()
    assert {"base", "web", "gpu"} <= set(stages), f"Dockerfile stages: {stages}"
    assert stages[-1] == "web", "`docker build .` builds the last stage; it must be `web`"


def test_dockerfile_bakes_in_no_secret_and_runs_as_a_user():
    env_lines = [arguments for keyword, arguments in dockerfile_instructions() if keyword in ("ENV", "ARG")]
    assert not [line for line in env_lines if "DJANGO_SECRET_KEY" in line], (
        "a secret key in ENV/ARG outlives the build"
    )
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER instruction: the containers would run as root"
    assert users[-1] not in ("root", "0"), f"the last USER is {users[-1]!r}: the containers would run as root"


def test_startup_order():
    depends = {name: service.get("depends_on", {}) for name, service in services().items()}
    assert isinstance(depends["web"], dict), "web's depends_on must use the long form with conditions"
    assert depends["web"]["migrate"]["condition"] == "service_completed_successfully"
    assert depends["web"]["redis"]["condition"] == "service_healthy"
    assert isinstance(depends["migrate"], dict), "migrate's depends_on must use the long form with conditions"
    assert depends["migrate"]["postgres"]["condition"] == "service_healthy"
    for worker in ("worker", "worker-gpu"):
        assert depends[worker]["migrate"]["condition"] == "service_completed_successfully", worker
        assert depends[worker]["redis"]["condition"] == "service_healthy", worker


def test_app_services_get_production_settings_from_the_environment():
    app_services = [name for name, service in services().items() if "build" in service]
    assert app_services, "no service is built from the Dockerfile"
    for name in app_services:
        env = environment(services()[name])
        database, broker = (
            interpolate(env.get("DATABASE_URL", "")),
            interpolate(env.get("CELERY_BROKER_URL", "")),
        )
        assert re.match(r"postgres(ql)?://", database), (
            f"{name}: DATABASE_URL is not a postgres URL: {database!r}"
        )
        assert re.match(r"rediss?://", broker), f"{name}: CELERY_BROKER_URL is not a redis URL: {broker!r}"
        assert database.split("@")[-1].split(":")[0] == "postgres", (
            f"{name}: DATABASE_URL is not the postgres service"
        )
        assert broker.split("://")[1].split(":")[0] == "redis", (
            f"{name}: CELERY_BROKER_URL is not the redis service"
        )
        assert "${POSTGRES_PASSWORD" in env["DATABASE_URL"], f"{name}: the database password is a literal"
        assert env.get("DJANGO_DEBUG") == "0", f"{name}: DJANGO_DEBUG is {env.get('DJANGO_DEBUG')!r}, not '0'"
        secret = env.get("DJANGO_SECRET_KEY", "")
        assert secret.startswith("${DJANGO_SECRET_KEY"), (
            f"{name}: DJANGO_SECRET_KEY must come from the environment"
        )
        assert env.get("DJANGO_ALLOWED_HOSTS"), f"{name}: DJANGO_ALLOWED_HOSTS is unset"
        # TLS ends at the proxy: with the SSL redirect on, Django must trust X-Forwarded-Proto or loop.
        if interpolate(env.get("DJANGO_SECURE_SSL_REDIRECT", "1")) != "0":
            assert interpolate(env.get("DJANGO_SECURE_PROXY_SSL_HEADER", "")) == "1", (
                f"{name}: the SSL redirect is on behind a TLS proxy, but DJANGO_SECURE_PROXY_SSL_HEADER is not 1"
            )


def test_postgres_credentials_match_the_database_url():
    env = environment(services()["postgres"])
    assert env["POSTGRES_DB"] == "rankwise"
    assert env["POSTGRES_USER"] == "rankwise"
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    url = environment(services()["web"])["DATABASE_URL"]
    assert url.startswith(f"postgres://{env['POSTGRES_USER']}:"), url
    assert url.endswith(f"@postgres:5432/{env['POSTGRES_DB']}"), url


def test_command_line_helpers():
    assert argv("celery -A x worker -Q 'a,b'") == ["celery", "-A", "x", "worker", "-Q", "a,b"]
    assert argv(["gunicorn", "--workers=${WEB_CONCURRENCY:-3}", "$${HOME}"]) == [
        "gunicorn",
        "--workers=3",
        "${HOME}",
    ]
    assert option_values(["celery", "-Aapp", "worker", "--pool=solo", "-Q", "a,b"], "-A") == ["app"]
    assert option_values(["celery", "worker", "--pool=solo"], "--pool", "-P") == ["solo"]
    assert celery_queues(["celery", "worker", "-Q", "a,b", "--queues=c"]) == ["a", "b", "c"]
    assert shell_segments(["A=1", "python", "manage.py", "x", "&&", "rm", "-rf", "build"]) == [
        ["python", "manage.py", "x"],
        ["rm", "-rf", "build"],
    ]
    assert gunicorn_target(["gunicorn", "--access-logfile", "-", "-b", "0.0.0.0:8000", "m:app"]) == "m:app"
    assert program(["python", "-m", "celery", "-A", "x"]) == "celery"


def test_the_default_worker_runs_beat_and_every_scheduled_task_is_registered():
    from feedback.celery import app

    words = celery_worker_commands()["worker"]
    assert "--beat" in words or "-B" in words, "nothing runs celery beat, so reconcile never runs"
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert scheduled == {
        "feedback.reconcile_generation",
        "annotate.expire_leases",
        "annotate.refresh_progress",
        "feedback.refresh_leaderboard",
        "feedback.refresh_quality",
    }
    assert scheduled <= set(app.tasks)
    for task in scheduled:
        assert app.amqp.router.route({}, task)["queue"].name in celery_queues(words)


def test_web_serves_the_exports_the_worker_writes_from_one_shared_volume():
    """The `default` worker writes export archives, `web` serves them: the same named volume, mounted
    where both processes' RANKWISE_EXPORT_ROOT points, and owned by the app user in the image."""
    mounts = {}
    for name in ("web", "worker"):
        service = services()[name]
        root = environment(service)["RANKWISE_EXPORT_ROOT"]
        mounts[name] = [volume for volume in service.get("volumes", []) if volume.split(":")[1] == root]
    assert mounts["web"] == mounts["worker"] == ["exports:/var/lib/rankwise/exports"]
    assert "exports" in compose()["volumes"]
    runs = " ".join(arguments for instruction, arguments in dockerfile_instructions() if instruction == "RUN")
    assert "install -d -o rankwise -g rankwise /var/lib/rankwise/exports" in runs

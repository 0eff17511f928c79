"""Rankwise settings: every value comes from the environment, with a default that runs the demo.

The defaults (`DJANGO_DEBUG` on, a SQLite file, tasks run eagerly) are for `make demo` only. With
`DJANGO_DEBUG=0` the process refuses to start on the demo secret key or without `DJANGO_ALLOWED_HOSTS`,
and turns on the HTTPS settings that `manage.py check --deploy` asks for.
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("RANKWISE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    normalized = value.strip().lower()
    if normalized in {"1", "true", "yes", "on"}:
        return True
    if normalized in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use 1/0, true/false, yes/no or on/off.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# --- Core and security -----------------------------------------------------------------------------------

# Public on purpose: it exists so the demo starts with no configuration, and production refuses it.
DEMO_SECRET_KEY = "django-insecure-rankwise-demo-key-never-use-this-outside-make-demo"  # noqa: S105

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "") or DEMO_SECRET_KEY
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

if not DEBUG:
    if SECRET_KEY == DEMO_SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_DEBUG=0 but DJANGO_SECRET_KEY is unset or the public demo key. Set DJANGO_SECRET_KEY "
            "to a long random value, e.g. the output of: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DJANGO_DEBUG=0 but DJANGO_ALLOWED_HOSTS is empty. Set it to the comma-separated host names "
            "this server answers to, e.g. DJANGO_ALLOWED_HOSTS=rankwise.example.org"
        )

# TLS is terminated by a reverse proxy in production; these follow `check --deploy`.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # container health checks speak plain HTTP on loopback
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that overwrites X-Forwarded-Proto; otherwise clients could forge "https".
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Applications ----------------------------------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served as our static files (no CDN)
    "feedback",
    "annotate",
    "inference",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "feedback.api.errors.ApiErrorsMiddleware",
]

ROOT_URLCONF = "feedback.urls"
WSGI_APPLICATION = "feedback.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data ------------------------------------------------------------------------------------------------

if not os.environ.get("DATABASE_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the demo's SQLite file lives here
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'rankwise.sqlite3'}",
        conn_max_age=env_int("DJANGO_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotate:projects"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", VAR_DIR / "media"))
# Export archives: written by the worker that runs the export, served by the web process, so in a
# multi-host deployment both mount this directory (docker-compose.yml shares a volume).
EXPORT_ROOT = Path(os.environ.get("RANKWISE_EXPORT_ROOT", VAR_DIR / "exports"))

# Admin uploads of prompt files: the import service streams them, so allow big files but keep
# form fields small.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- REST API --------------------------------------------------------------------------------------------

# Requests per token, as DRF writes rates: "600/min", "10/s", "20000/hour", "100000/day".
RANKWISE_API_TOKEN_RATE = os.environ.get("RANKWISE_API_TOKEN_RATE", "600/min")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", RANKWISE_API_TOKEN_RATE):
    raise ImproperlyConfigured(
        f"RANKWISE_API_TOKEN_RATE={RANKWISE_API_TOKEN_RATE!r} is not a rate: write e.g. 600/min or 10/s."
    )
# Rate limits count in Django's cache. The default local-memory cache counts per process, so N web
# workers allow up to N times the rate; point DJANGO_CACHE_URL at Redis to count across all of them.
CACHE_URL = os.environ.get("DJANGO_CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "rankwise"}
}

REST_FRAMEWORK = {
    # The token class comes first: its `WWW-Authenticate` challenge makes DRF answer 401, not 403, to
    # requests without credentials. Browsers use the session, with CSRF enforced on writes.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "feedback.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Views name their own; this default keeps a forgotten one closed to all but dataset readers.
    "DEFAULT_PERMISSION_CLASSES": ["feedback.api.permissions.ReadsDatasets"],
    "DEFAULT_THROTTLE_CLASSES": ["feedback.api.throttling.ApiTokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "feedback.api.errors.exception_handler",
    # No `?format=` renderer switch: query parameters are each endpoint's own (exports take a `format`),
    # and JSON is the one representation. The schema endpoint picks YAML or JSON by the Accept header.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_SCHEMA_CLASS": "feedback.api.schema.ApiAutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Rankwise API",
    "DESCRIPTION": (
        "Preference data for RLHF: projects, prompts, checkpoints, comparisons, judgments, exports.\n\n"
        "Authenticate with `Authorization: Bearer <token>` (a token from the admin or "
        "`manage.py create_api_token`), or with a browser session. Data engineers and admins may use "
        'every endpoint; annotators get 403. Every error is `{"detail": "…", "errors": '
        '{"<field>": ["…"]}}`, `errors` only where fields are at fault. Lists are cursor-paginated: '
        "follow `next`. Unknown query parameters are refused with 400."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "GenerationRunStatusEnum": "feedback.models.GenerationRun.Status",
        "ComparisonStatusEnum": "feedback.models.Comparison.Status",
        "ExportStatusEnum": "feedback.models.Export.Status",
        "LeaderboardStatusEnum": "feedback.models.LeaderboardReport.Status",
    },
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999},
        "slug": {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$"},
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "feedback.api.schema.add_error_responses",
    ],
}

# --- Celery ----------------------------------------------------------------------------------------------

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
# No broker means the single-process demo: tasks run inline, in the caller, and errors propagate.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
# Inline tasks never reach a broker, but Celery still builds a connection object for them: an in-memory
# one, named with a host (an empty URL, or "memory://", made kombu warn "No hostname was supplied").
CELERY_BROKER_URL = CELERY_BROKER_URL or "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None  # state lives in PostgreSQL rows, not in Celery results
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (Queue("default"), Queue("generation"))
CELERY_TASK_ROUTES = {"inference.*": {"queue": "generation"}}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Long GPU tasks: acknowledge after the work, requeue if the worker dies, take one message at a time.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 30 * 60)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 35 * 60)
# Redis redelivers unacknowledged messages after this; it must outlast the hard limit or a slow but
# healthy task would be delivered twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 10 * 60}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# `celery beat` re-sends generation chunks whose message or worker was lost (see generation_reconcile)
# and returns the places of overdue annotation leases (claims do that too, on busy projects), and counts
# the projects' completion off the annotators' request path.
CELERY_BEAT_SCHEDULE = {
    "reconcile-generation": {"task": "feedback.reconcile_generation", "schedule": 300.0},
    "expire-leases": {"task": "annotate.expire_leases", "schedule": 60.0},
    # Project completion for the progress bars (annotate.progress.PROGRESS_REFRESH_SECONDS).
    "refresh-progress": {"task": "annotate.refresh_progress", "schedule": 30.0},
    # Quality figures (agreement, gold accuracy, anomalies) of projects with new judgments.
    "refresh-quality": {
        "task": "feedback.refresh_quality",
        "schedule": float(env_int("RANKWISE_QUALITY_REFRESH_SECONDS", 300)),
    },
    # Leaderboards asked for in the last week (and each project's default) that new judgments made stale.
    "refresh-leaderboards": {
        "task": "feedback.refresh_leaderboard",
        "schedule": float(env_int("RANKWISE_LEADERBOARD_REFRESH_SECONDS", 300)),
    },
}

# --- Rankwise --------------------------------------------------------------------------------------------

# A prompt whose messages hold more than this many characters in all is refused at import.
RANKWISE_PROMPT_MAX_CHARS = env_int("RANKWISE_PROMPT_MAX_CHARS", 50_000)
# A person's answer (a demonstration or an edit) holds at most this many characters.
RANKWISE_ANSWER_MAX_CHARS = env_int("RANKWISE_ANSWER_MAX_CHARS", 20_000)
RANKWISE_DEFAULT_LEASE = timedelta(minutes=env_int("RANKWISE_DEFAULT_LEASE_MINUTES", 20))

# Generation. A chunk is a run's prompts for one task; a batch is what one `generate` call takes.
RANKWISE_GENERATION_CHUNK_SIZE = env_int("RANKWISE_GENERATION_CHUNK_SIZE", 16)
RANKWISE_GENERATION_BATCH_SIZE = env_int("RANKWISE_GENERATION_BATCH_SIZE", 32)
# A chunk that failed this many times (errors or lost workers) ends failed; the run goes on without it.
RANKWISE_GENERATION_MAX_ATTEMPTS = env_int("RANKWISE_GENERATION_MAX_ATTEMPTS", 3)
# Seconds before the retry after the first error, after the second, … (the last repeats).
try:
    RANKWISE_GENERATION_RETRY_DELAYS = [
        int(delay) for delay in env_list("RANKWISE_GENERATION_RETRY_DELAYS", ["10", "60"])
    ] or [10]
except ValueError:
    raise ImproperlyConfigured(
        "RANKWISE_GENERATION_RETRY_DELAYS must be whole seconds, comma-separated."
    ) from None
# A worker beats a chunk's heartbeat after every batch; a running chunk silent this long lost its worker.
# Keep it well above the time one batch takes.
RANKWISE_GENERATION_STALE_AFTER = timedelta(seconds=env_int("RANKWISE_GENERATION_STALE_SECONDS", 15 * 60))
# A chunk task stops starting new batches after this many seconds and re-enqueues the rest of its chunk.
# The solo pool GPU workers use ignores Celery's time limits, so this in-task deadline is what keeps a
# task shorter than the soft limit and far shorter than Redis' visibility timeout.
RANKWISE_GENERATION_TASK_DEADLINE = env_int(
    "RANKWISE_GENERATION_TASK_DEADLINE_SECONDS", max(CELERY_TASK_SOFT_TIME_LIMIT - 5 * 60, 60)
)
if not 0 < RANKWISE_GENERATION_TASK_DEADLINE < CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "Need 0 < RANKWISE_GENERATION_TASK_DEADLINE_SECONDS < CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

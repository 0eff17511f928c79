"""Settings for pytest: the real PostgreSQL and Redis of the machine, overridable by environment.

SQLite and eager tasks are the demo's defaults only; the suite proves the code on what production runs.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rankwise")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
# `datasets` and TRL ping the Hugging Face hub (download counts, usage) unless told they are offline; the
# suite reaches nothing outside the machine. Read at their import, so set before any test imports them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RANKWISE_VAR_DIR", os.path.join(os.path.dirname(__file__), "..", "var", "test"))

from feedback.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests only
# Serve static files from the apps as in development: the suite runs no collectstatic.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

"""The web process starts and serves without torch: only inference/ imports it, lazily, on a worker."""

import json
import subprocess
import sys

from tests.processes import ROOT, clean_environment

SCRIPT = r"""
import importlib.abc
import json
import sys

BLOCKED = ("torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors")


class NoML(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on the web host")
        return None


sys.meta_path.insert(0, NoML())
try:
    import torch  # noqa: F401
except ImportError as error:
    torch_error = str(error)

import django

django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from feedback.celery import app

call_command("migrate", verbosity=0)
app.loader.import_default_modules()  # what a worker's autodiscovery imports
admin = get_user_model().objects.create_superuser("root", password="x")
client = Client()
statuses = {path: client.get(path).status_code for path in ("/healthz", "/accounts/login/")}
client.force_login(admin)
for path in (
    "/",
    "/admin/",
    "/admin/feedback/policycheckpoint/",
    "/admin/feedback/generationrun/",
    "/admin/feedback/generationrun/start/",
    "/admin/feedback/project/add/",
    "/admin/feedback/export/add/",
    "/admin/annotate/annotatorstatistics/",
):
    statuses[path] = client.get(path).status_code
loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
tasks = sorted(name for name in app.tasks if not name.startswith("celery."))
print(json.dumps({"torch_error": torch_error, "statuses": statuses, "loaded": loaded, "tasks": tasks}))
"""


def test_the_web_stack_imports_and_serves_pages_where_import_torch_fails(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=clean_environment(
            DJANGO_SETTINGS_MODULE="feedback.settings",
            DATABASE_URL=f"sqlite:///{tmp_path / 'web.sqlite3'}",
            DJANGO_ALLOWED_HOSTS="testserver",
            RANKWISE_VAR_DIR=str(tmp_path),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch_error"] == "torch is not installed on the web host"
    assert report["statuses"] == {
        "/healthz": 200,
        "/accounts/login/": 200,
        "/": 200,
        "/admin/": 200,
        "/admin/feedback/policycheckpoint/": 200,
        "/admin/feedback/generationrun/": 200,
        "/admin/feedback/generationrun/start/": 200,
        "/admin/feedback/project/add/": 200,
        "/admin/feedback/export/add/": 200,
        "/admin/annotate/annotatorstatistics/": 200,
    }
    assert report["loaded"] == []
    assert report["tasks"] == [
        "annotate.evaluate_standing",
        "annotate.expire_leases",
        "annotate.refresh_progress",
        "feedback.export_run",
        "feedback.reconcile_generation",
        "feedback.refresh_leaderboard",
        "feedback.refresh_quality",
        "inference.answers_pair",
        "inference.generate_chunk",
        "inference.validate_checkpoint",
    ]

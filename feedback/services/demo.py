"""The demo's seed: users for each role, a project and its bundled prompts. Safe to run again."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from feedback.models import GenerationRun, PolicyCheckpoint, Project
from feedback.roles import ANNOTATORS_GROUP, DATA_ENGINEERS_GROUP
from feedback.services.generation import checkpoint_validation_request, generation_run_start
from feedback.services.prompts import PromptImportReport, prompts_import

DEMO_PROMPTS = Path(__file__).resolve().parent.parent / "demo" / "prompts.jsonl"
DEMO_PROJECT_SLUG = "demo"
DEMO_CHECKPOINT_NAME = "tiny-instruct"
# The tiny checkpoint writes noise; short answers keep the demo's pages readable and its seeding quick.
DEMO_MAX_NEW_TOKENS = 48
DEMO_GUIDELINES = """\
# How to judge

You see a conversation and two answers, **A** and **B**, written by AI models. Pick the answer a careful,
knowledgeable person would rather receive.

1. **Follow the instruction.** An answer that ignores an explicit constraint (a word limit, "exactly five
   items", a format) loses to one that respects it, even if it is otherwise nicer.
2. **Be helpful and correct.** Prefer accurate, complete, on-point answers. Penalise made-up facts.
3. **Format and tone.** Structure should fit the request; tone should fit the reader.
4. **Safety.** Flag anything unsafe or containing personal data, whatever you choose.

Choose **tie** only when you genuinely cannot prefer one, and **both bad** when neither is acceptable.
Say how strongly you prefer your choice, rate each answer on the rubric, and add a short rationale when
your choice is not obvious.
"""


@dataclass(frozen=True)
class DemoAccount:
    username: str
    role: str
    is_staff: bool = False
    group: str | None = None


DEMO_ACCOUNTS = (
    DemoAccount("admin", "admin (staff, superuser)", is_staff=True),
    DemoAccount("annotator1", "annotator", group=ANNOTATORS_GROUP),
    DemoAccount("annotator2", "annotator", group=ANNOTATORS_GROUP),
    DemoAccount("engineer", "data engineer", group=DATA_ENGINEERS_GROUP),
)


@dataclass(frozen=True)
class DemoSeedResult:
    credentials: dict[str, str]
    project: Project
    prompts: PromptImportReport


def demo_credentials_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-credentials.json"


def demo_seed() -> DemoSeedResult:
    """Create or bring up to date the demo's users, project and prompts.

    Passwords are random on first use and kept in `VAR_DIR/demo-credentials.json` (mode 0600), so a
    second run prints the same, still valid, passwords instead of resetting them.
    """
    path = demo_credentials_path()
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    user_model = get_user_model()
    credentials: dict[str, str] = {}

    with transaction.atomic():
        for account in DEMO_ACCOUNTS:
            user, _ = user_model.objects.get_or_create(username=account.username)
            password = known.get(account.username)
            if password is None or not user.check_password(password):
                password = secrets.token_urlsafe(12)
                user.set_password(password)
            user.is_staff = user.is_superuser = account.is_staff
            user.is_active = True
            user.save()
            if account.group:
                user.groups.add(Group.objects.get(name=account.group))
            credentials[account.username] = password

        project, _ = Project.objects.get_or_create(
            slug=DEMO_PROJECT_SLUG,
            defaults={"name": "Demo: instruction following", "guidelines": DEMO_GUIDELINES},
        )
        project.members.add(*user_model.objects.filter(groups__name=ANNOTATORS_GROUP))
        with DEMO_PROMPTS.open("rb") as source:
            report = prompts_import(project=project, source=source, file_format="jsonl")

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(credentials, file, indent=2)
    return DemoSeedResult(credentials=credentials, project=project, prompts=report)


def demo_generate(*, checkpoint_path: Path) -> GenerationRun | None:
    """Register the tiny checkpoint at `checkpoint_path` as the demo project's current one, validate it
    and generate its responses and comparisons, unless a completed run of it already exists.

    Without a broker (the demo) both tasks run inline, so comparisons exist when this returns. Returns
    the new run, or None when there was nothing to do.
    """
    project = Project.objects.get(slug=DEMO_PROJECT_SLUG)
    with transaction.atomic():
        checkpoint, _ = PolicyCheckpoint.objects.update_or_create(
            name=DEMO_CHECKPOINT_NAME,
            defaults={
                "kind": PolicyCheckpoint.Kind.INSTRUCT,
                "source_type": PolicyCheckpoint.SourceType.LOCAL,
                "source": str(checkpoint_path.resolve()),
                "notes": "Made by `manage.py make_tiny_checkpoint`: random weights, its answers are noise.",
            },
        )
        if project.current_checkpoint_id != checkpoint.pk or project.max_new_tokens != DEMO_MAX_NEW_TOKENS:
            project.current_checkpoint = checkpoint
            project.max_new_tokens = DEMO_MAX_NEW_TOKENS
            project.save(update_fields=["current_checkpoint", "max_new_tokens"])
    if checkpoint.validation_status != PolicyCheckpoint.ValidationStatus.VALID:
        checkpoint_validation_request(checkpoints=[checkpoint])
        checkpoint.refresh_from_db()
    if project.generation_runs.filter(checkpoint=checkpoint, status=GenerationRun.Status.COMPLETED).exists():
        return None
    run = generation_run_start(project=project, checkpoint=checkpoint, seed=0)
    run.refresh_from_db()
    return run

"""The demo's seed: users for each role, a project with its bundled prompts and gold items, and a
simulated crowd's judgments so that the quality page has figures to show. Safe to run again: nothing is
created twice."""

from __future__ import annotations

import json
import os
import random
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Prefetch
from django.utils import timezone

from feedback.models import (
    AnnotatorStanding,
    Assignment,
    Comparison,
    ComparisonResponse,
    GenerationRun,
    GoldVerdict,
    Judgment,
    LeaderboardReport,
    PolicyCheckpoint,
    Project,
    ProjectMembership,
    ProjectQuality,
    ProjectRole,
)
from feedback.roles import ANNOTATORS_GROUP, DATA_ENGINEERS_GROUP
from feedback.services.generation import checkpoint_validation_request, generation_run_start
from feedback.services.gold import GoldImportReport, gold_import
from feedback.services.leaderboard import LeaderboardFilters, leaderboard_request
from feedback.services.prompts import PromptImportReport, prompts_import
from feedback.services.quality import project_quality_refresh

DEMO_DIRECTORY = Path(__file__).resolve().parent.parent / "demo"
DEMO_PROMPTS = DEMO_DIRECTORY / "prompts.jsonl"
DEMO_GOLD = DEMO_DIRECTORY / "gold.jsonl"
DEMO_PROJECT_SLUG = "demo"
# The demonstration project: people write the answers to the same prompts, two per prompt, and the demo
# reviewer accepts, rejects or edits them before they count.
DEMO_WRITING_SLUG = "demo-writing"
DEMO_WRITING_GUIDELINES = """\
# How to write

Write the answer you would want an assistant to give: follow every instruction in the prompt (length,
format, number of items), be correct and complete, and keep the tone right for the reader. Markdown
works: lists, **bold**, headings and code blocks show in the preview as they will be read.

Your draft is saved as you type. A reviewer reads each answer before it goes into a training set; say
in the answer nothing you would not want a stranger to read.
"""
# Each comparison is judged by 5 of the 6 people of the simulated crowd, so every pair of them shares
# enough comparisons for a kappa; 6 gold answers are enough to grade (the demo has 8 gold items).
DEMO_JUDGMENTS_PER_COMPARISON = 5
DEMO_GOLD_MIN_ANSWERS = 6
DEMO_CHECKPOINT_NAME = "tiny-instruct"
# Its "parent" for the leaderboard: the same weights registered as a base model (prompted through the
# completion template), so the demo has two checkpoints head to head. The crowd prefers the instruct
# one's answer in DEMO_INSTRUCT_PREFERRED of those comparisons.
DEMO_BASE_CHECKPOINT_NAME = "tiny-base"
DEMO_INSTRUCT_PREFERRED = 0.7
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

## About this demo's model

Unless the demo was started with a model of your own (see the README), the answers come from a tiny
model that was never trained: its weights are random, so it writes random words. That is expected. Judge
the answers anyway: the point is to see how Rankwise works, not how good the model is.
"""


@dataclass(frozen=True)
class DemoAccount:
    username: str
    role: str
    is_staff: bool = False
    group: str | None = None
    project_role: str | None = None  # their role in the demo project, for those who are not annotators


DEMO_ACCOUNTS = (
    DemoAccount("admin", "admin (staff, superuser)", is_staff=True),
    DemoAccount("annotator1", "annotator", group=ANNOTATORS_GROUP),
    DemoAccount("annotator2", "annotator", group=ANNOTATORS_GROUP),
    DemoAccount("engineer", "data engineer", group=DATA_ENGINEERS_GROUP),
    DemoAccount("reviewer", "reviewer (the demo projects' review queues)", project_role=ProjectRole.REVIEWER),
)


@dataclass(frozen=True)
class DemoSeedResult:
    credentials: dict[str, str]
    project: Project
    prompts: PromptImportReport
    gold: GoldImportReport
    writing: Project
    writing_prompts: PromptImportReport


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
            defaults={
                "name": "Demo: instruction following",
                "guidelines": DEMO_GUIDELINES,
                "judgments_per_comparison": DEMO_JUDGMENTS_PER_COMPARISON,
                "gold_min_answers": DEMO_GOLD_MIN_ANSWERS,
                "answer_editing": Project.AnswerEditing.OPTIONAL,
            },
        )
        writing, _ = Project.objects.get_or_create(
            slug=DEMO_WRITING_SLUG,
            defaults={
                "name": "Demo: write the answer",
                "guidelines": DEMO_WRITING_GUIDELINES,
                "comparison_mode": Project.ComparisonMode.DEMONSTRATION,
                "judgments_per_comparison": 2,
                "answers_reviewed": True,
                "gold_rate": 0.0,
            },
        )
        for each in (project, writing):
            each.members.add(*user_model.objects.filter(groups__name=ANNOTATORS_GROUP))
            for account in DEMO_ACCOUNTS:
                if account.project_role:
                    ProjectMembership.objects.update_or_create(
                        project=each,
                        user=user_model.objects.get(username=account.username),
                        defaults={"role": account.project_role},
                    )
        with DEMO_PROMPTS.open("rb") as source:
            report = prompts_import(project=project, source=source, file_format="jsonl")
        with DEMO_GOLD.open("rb") as source:
            gold = gold_import(project=project, source=source)
        with DEMO_PROMPTS.open("rb") as source:  # writing tasks open as the prompts arrive
            writing_report = prompts_import(project=writing, source=source, file_format="jsonl")

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(credentials, file, indent=2)
    return DemoSeedResult(
        credentials=credentials,
        project=project,
        prompts=report,
        gold=gold,
        writing=writing,
        writing_prompts=writing_report,
    )


@dataclass(frozen=True)
class DemoModel:
    """The model the demo generates with: the tiny checkpoint (random weights), a model directory of the
    user's (`RANKWISE_DEMO_MODEL`), or a model an OpenAI-compatible server serves
    (`RANKWISE_DEMO_OPENAI_URL`, `RANKWISE_DEMO_OPENAI_MODEL`, and the key, if the server wants one, in
    `RANKWISE_DEMO_OPENAI_API_KEY`). It is registered twice: as the instruction-tuned checkpoint, and as
    its own "parent", the same weights prompted as a base model, so the leaderboard has two to compare."""

    name: str
    base_name: str
    fields: dict[str, str]  # the checkpoint's source fields (source, backend, …)
    notes: str
    tiny: bool

    @classmethod
    def tiny_checkpoint(cls, path: Path) -> DemoModel:
        return cls(
            name=DEMO_CHECKPOINT_NAME,
            base_name=DEMO_BASE_CHECKPOINT_NAME,
            fields={"source": str(path.resolve())},
            notes="Made by `manage.py make_tiny_checkpoint`: random weights, its answers are random words.",
            tiny=True,
        )

    @classmethod
    def local(cls, path: Path) -> DemoModel:
        name = path.resolve().name[:180] or "demo-model"
        return cls(
            name=name,
            base_name=f"{name}-as-base",
            fields={"source": str(path.resolve())},
            notes="The demo's model, from RANKWISE_DEMO_MODEL.",
            tiny=False,
        )

    @classmethod
    def served(cls, url: str, model: str) -> DemoModel:
        return cls(
            name=model[:180],
            base_name=f"{model[:180]}-as-base",
            fields={
                "source": model,
                "backend": PolicyCheckpoint.Backend.OPENAI,
                "api_base_url": url,
                "served_model_name": model,
                "api_key_env": DEMO_OPENAI_KEY_VARIABLE if os.environ.get(DEMO_OPENAI_KEY_VARIABLE) else "",
            },
            notes=f"The demo's model, served at {url} (RANKWISE_DEMO_OPENAI_URL).",
            tiny=False,
        )


DEMO_OPENAI_KEY_VARIABLE = "RANKWISE_DEMO_OPENAI_API_KEY"


def demo_model_from_environment(tiny_path: Path | None) -> DemoModel | None:
    """The model `make demo` generates with: the user's, when the environment names one, else the tiny
    checkpoint at `tiny_path` (None: none). Raises ValidationError for a setting that cannot work."""
    directory = os.environ.get("RANKWISE_DEMO_MODEL", "").strip()
    url = os.environ.get("RANKWISE_DEMO_OPENAI_URL", "").strip()
    if directory and url:
        raise ValidationError("Set RANKWISE_DEMO_MODEL or RANKWISE_DEMO_OPENAI_URL, not both.")
    if directory:
        path = Path(directory).expanduser()
        if not (path / "config.json").is_file():
            raise ValidationError(f"RANKWISE_DEMO_MODEL={directory}: no Hugging Face model directory there.")
        return DemoModel.local(path)
    if url:
        model = os.environ.get("RANKWISE_DEMO_OPENAI_MODEL", "").strip()
        if not model:
            raise ValidationError(
                "RANKWISE_DEMO_OPENAI_URL needs RANKWISE_DEMO_OPENAI_MODEL: the model's name there."
            )
        return DemoModel.served(url, model)
    return DemoModel.tiny_checkpoint(tiny_path) if tiny_path is not None else None


def demo_generate(*, model: DemoModel) -> list[GenerationRun]:
    """Register the demo's model as the demo project's current checkpoint (and, as its parent, the same
    weights as a base model), validate them, and generate: the current checkpoint's samples paired with
    each other, then the base against the instruct one head to head; each run unless a completed one
    exists.

    Without a broker (the demo) the tasks run inline, so comparisons exist when this returns. Returns the
    new runs (none when there was nothing to do).
    """
    project = Project.objects.get(slug=DEMO_PROJECT_SLUG)
    with transaction.atomic():
        base, _ = PolicyCheckpoint.objects.update_or_create(
            name=model.base_name,
            defaults={
                "kind": PolicyCheckpoint.Kind.BASE,
                "source_type": PolicyCheckpoint.SourceType.LOCAL,
                **model.fields,
                "notes": f"{model.notes} The same weights as {model.name}, prompted as a base model.",
            },
        )
        checkpoint, _ = PolicyCheckpoint.objects.update_or_create(
            name=model.name,
            defaults={
                "kind": PolicyCheckpoint.Kind.INSTRUCT,
                "source_type": PolicyCheckpoint.SourceType.LOCAL,
                **model.fields,
                "notes": model.notes,
                "parent": base,
            },
        )
        if project.current_checkpoint_id != checkpoint.pk or project.max_new_tokens != DEMO_MAX_NEW_TOKENS:
            project.current_checkpoint = checkpoint
            project.max_new_tokens = DEMO_MAX_NEW_TOKENS
            project.save(update_fields=["current_checkpoint", "max_new_tokens"])
    unchecked = [
        row for row in (base, checkpoint) if row.validation_status != PolicyCheckpoint.ValidationStatus.VALID
    ]
    if unchecked:
        checkpoint_validation_request(checkpoints=unchecked)
        for row in unchecked:
            row.refresh_from_db()
    done = project.generation_runs.filter(status=GenerationRun.Status.COMPLETED)
    runs = []
    if not done.filter(checkpoint=checkpoint, opponent_checkpoint__isnull=True).exists():
        runs.append(generation_run_start(project=project, checkpoint=checkpoint, seed=0))
    if not done.filter(checkpoint=base, opponent_checkpoint=checkpoint).exists():
        runs.append(
            generation_run_start(
                project=project, checkpoint=base, opponent_checkpoint=checkpoint, samples_per_prompt=1, seed=1
            )
        )
    for run in runs:
        run.refresh_from_db()
    return runs


# --- The simulated crowd ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedAnnotator:
    """A demo annotator whose judgments are simulated. `habit`: "careful" people prefer the better response
    `accuracy` of the time (and get gold right as often); "random" ones click any outcome, too fast to
    have read; "left" ones always choose the response shown first."""

    username: str
    habit: str
    accuracy: float
    seconds: tuple[int, int]
    gold_items: int | None = None  # how many gold items they answered (None: all)


# The two demo annotators who can log in answer half the gold items: the rest is left for the people
# trying the demo, who then meet gold in the normal flow.
DEMO_CROWD = (
    SimulatedAnnotator("annotator1", "careful", 0.9, (20, 60), gold_items=4),
    SimulatedAnnotator("annotator2", "careful", 0.85, (15, 50), gold_items=4),
    SimulatedAnnotator("demo-ada", "careful", 0.9, (25, 70)),
    SimulatedAnnotator("demo-ben", "careful", 0.8, (15, 45)),
    SimulatedAnnotator("demo-cy", "random", 0.25, (1, 2)),
    SimulatedAnnotator("demo-dee", "left", 0.5, (10, 30)),
)
DEMO_CROWD_SEED = 6
# Comparisons left without a judgment, for the people trying the demo.
DEMO_LEFT_OPEN = 10
# The simulated judgments are spread over this many days, ending an hour ago.
DEMO_CROWD_DAYS = 6
SIMULATED_KEY_PREFIX = "demo-simulated-"
RANKINGS = {"a": [1, 2], "b": [2, 1], "tie": [1, 1], "both_bad": [1, 1]}


@dataclass(frozen=True)
class DemoSimulationResult:
    judgments: int
    comparisons: int
    gold_items: int
    annotators: int
    quality: ProjectQuality | None
    leaderboard: LeaderboardReport | None = None

    def summary(self) -> str:
        return (
            f"{self.judgments} judgments by {self.annotators} annotators of {self.comparisons} comparisons "
            f"and {self.gold_items} gold items"
        )


@dataclass
class _Planned:
    comparison: Comparison
    annotator: User
    choice: str
    strength: int | None
    ratings: dict[str, dict[str, int]]
    milliseconds: int


def _crowd_users(project: Project) -> dict[str, User]:
    """The crowd's users: the demo's annotators and simulated ones (who cannot log in), all members."""
    user_model = get_user_model()
    people = {}
    for member in DEMO_CROWD:
        user, created = user_model.objects.get_or_create(username=member.username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get(name=ANNOTATORS_GROUP))
        people[member.username] = user
    project.members.add(*people.values())
    return people


def _untouched_comparisons(project: Project) -> list[Comparison]:
    """Open ordinary comparisons nobody has judged or leased, oldest first, less the ones left open."""
    served = Assignment.objects.filter(comparison=OuterRef("pk"))
    untouched = list(
        Comparison.objects.filter(
            project=project, is_gold=False, status=Comparison.Status.OPEN, judgment_count=0, lease_count=0
        )
        .exclude(Exists(served))
        .prefetch_related(Prefetch("entries", ComparisonResponse.objects.select_related("response")))
        .order_by("id")
    )
    return untouched[: max(0, len(untouched) - DEMO_LEFT_OPEN)]


def _pick(member: SimulatedAnnotator, rng: random.Random, *, right: str, allows_tie: bool) -> str:
    """The member's outcome where `right` ("a" or "b") is the better response."""
    wrong = "b" if right == "a" else "a"
    if member.habit == "left":
        return "a"
    if member.habit == "random":
        if rng.random() < member.accuracy:
            return right
        return rng.choice([wrong, "both_bad", *(["tie"] if allows_tie else [])])
    draw = rng.random()
    if draw < member.accuracy:
        return right
    return "tie" if allows_tie and draw < member.accuracy + (1 - member.accuracy) / 3 else wrong


def _planned(
    member: SimulatedAnnotator,
    user: User,
    comparison: Comparison,
    rng: random.Random,
    *,
    project: Project,
    right: str,
    rated: bool,
) -> _Planned:
    choice = _pick(member, rng, right=right, allows_tie=project.allows_tie)
    strength = None
    if choice in ("a", "b") and project.strength_labels:
        strength = rng.randint(1, len(project.strength_labels))
    ratings: dict[str, dict[str, int]] = {}
    if rated and member.habit == "careful":
        for entry in comparison.entries.all():
            quality = 4.0 if "ab"[entry.position] == right else 2.5
            ratings[str(entry.response_id)] = {
                axis["key"]: min(
                    axis["scale"]["max"], max(axis["scale"]["min"], round(rng.gauss(quality, 0.8)))
                )
                for axis in project.rating_rubric or []
            }
    low, high = member.seconds
    return _Planned(comparison, user, choice, strength, ratings, round(rng.uniform(low, high) * 1000))


def _crowd_plan(
    project: Project, ordinary: list[Comparison], gold: list[Comparison], people: dict[str, User]
) -> list[_Planned]:
    """Who answers what, in the order they answered: each ordinary comparison by all but one of the crowd
    in turn (as many as it requires, at most), gold items mixed in. Seeded: the same every time."""
    rng = random.Random(DEMO_CROWD_SEED)  # noqa: S311 (a simulation, not a secret)
    plan = []
    instruct = project.current_checkpoint_id  # the instruct one: its parent is the same weights as base
    for index, comparison in enumerate(ordinary):
        shown = [entry.response.checkpoint_id for entry in comparison.entries.all()]
        if len(set(shown)) > 1 and instruct in shown:  # head to head: the instruct answer is usually better
            side = shown.index(instruct)
            right = "ab"[side if rng.random() < DEMO_INSTRUCT_PREFERRED else 1 - side]
        else:
            right = rng.choice("ab")
        judges = [member for position, member in enumerate(DEMO_CROWD) if position != index % len(DEMO_CROWD)]
        for member in judges[: comparison.required_judgments]:
            plan.append(
                _planned(
                    member, people[member.username], comparison, rng, project=project, right=right, rated=True
                )
            )
    verdicts = dict(GoldVerdict.objects.filter(comparison__in=gold).values_list("comparison_id", "verdict"))
    positions = {
        comparison.pk: {str(entry.response_id): "ab"[entry.position] for entry in comparison.entries.all()}
        for comparison in gold
    }
    # Gold items with one better response (all the demo's are); any other an admin adds is left alone.
    better = {
        comparison_id: [positions[comparison_id][key] for key in verdict.get("accepted", []) if key.isdigit()]
        for comparison_id, verdict in verdicts.items()
    }
    gold = [comparison for comparison in gold if len(better.get(comparison.pk, [])) == 1]
    for member in DEMO_CROWD:
        for comparison in gold[: member.gold_items]:
            right = better[comparison.pk][0]
            answer = _planned(
                member, people[member.username], comparison, rng, project=project, right=right, rated=False
            )
            plan.insert(rng.randrange(len(plan) + 1), answer)
    return plan


def _plan_store(project: Project, plan: list[_Planned], now: datetime) -> None:
    """The plan as rows, as the assignment engine leaves them: a submitted lease and its judgment each,
    comparisons' counters (completed when full), and the crowd's standings' counts."""
    start, end = now - timedelta(days=DEMO_CROWD_DAYS), now - timedelta(hours=1)
    step = (end - start) / max(1, len(plan) - 1)
    moments = [start + step * index for index in range(len(plan))]
    assignments = Assignment.objects.bulk_create(
        Assignment(
            comparison=answer.comparison,
            annotator=answer.annotator,
            state=Assignment.State.SUBMITTED,
            leased_at=moment - timedelta(milliseconds=answer.milliseconds),
            expires_at=moment - timedelta(milliseconds=answer.milliseconds) + project.lease_duration,
            finished_at=moment,
        )
        for answer, moment in zip(plan, moments, strict=True)
    )
    judgments = Judgment.objects.bulk_create(
        Judgment(
            comparison=answer.comparison,
            annotator=answer.annotator,
            assignment=assignment,
            choice=answer.choice,
            ranking=RANKINGS[answer.choice],
            strength=answer.strength,
            ratings=answer.ratings,
            time_spent_ms=answer.milliseconds,
            submission_key=f"{SIMULATED_KEY_PREFIX}{answer.comparison.pk}",
        )
        for answer, assignment in zip(plan, assignments, strict=True)
    )
    for judgment, moment in zip(judgments, moments, strict=True):
        judgment.created_at = moment  # when the simulated annotator answered, not when the demo ran
    Judgment.objects.bulk_update(judgments, ["created_at"])
    counts = Counter(answer.comparison.pk for answer in plan)
    last = {answer.comparison.pk: moment for answer, moment in zip(plan, moments, strict=True)}
    comparisons = {answer.comparison.pk: answer.comparison for answer in plan}
    for comparison_id in sorted(counts):
        comparison = comparisons[comparison_id]
        changes: dict[str, Any] = {"judgment_count": F("judgment_count") + counts[comparison_id]}
        if (
            comparison.required_judgments is not None
            and counts[comparison_id] >= comparison.required_judgments
        ):
            changes |= {"status": Comparison.Status.COMPLETED, "completed_at": last[comparison_id]}
        Comparison.objects.filter(pk=comparison_id).update(**changes)
    served = Counter(answer.annotator.pk for answer in plan)
    gold = Counter(answer.annotator.pk for answer in plan if answer.comparison.is_gold)
    for annotator_id in sorted(served):
        AnnotatorStanding.objects.get_or_create(project=project, annotator_id=annotator_id)
        AnnotatorStanding.objects.filter(project=project, annotator_id=annotator_id).update(
            leases=F("leases") + served[annotator_id],
            gold_slots=F("gold_slots") + gold[annotator_id],
            gold_leases=F("gold_leases") + gold[annotator_id],
        )


def demo_simulate(*, now: datetime | None = None) -> DemoSimulationResult | None:
    """A simulated crowd judges the demo project's comparisons (all but `DEMO_LEFT_OPEN`, which stay open
    for the people trying the demo) and its gold items, then its quality figures are computed (so some of
    the crowd end warned or suspended, as the figures say).

    Simulated history, written as the assignment engine would have left it (which `feedback` may not
    call): a submitted lease per judgment, the comparisons' counters, the standings' counts. Idempotent:
    once the crowd has judged, a second run adds nothing and computes nothing (None). None too when there
    are no comparisons yet (before generation)."""
    project = Project.objects.get(slug=DEMO_PROJECT_SLUG)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).get()
        simulated = Judgment.objects.filter(
            comparison__project=project, submission_key__startswith=SIMULATED_KEY_PREFIX
        )
        if simulated.exists():
            return None
        ordinary = _untouched_comparisons(project)
        if not ordinary:
            return None
        people = _crowd_users(project)
        gold = list(
            Comparison.objects.filter(project=project, is_gold=True, status=Comparison.Status.OPEN)
            .prefetch_related("entries")
            .order_by("id")
        )
        plan = _crowd_plan(project, ordinary, gold, people)
        _plan_store(project, plan, now or timezone.now())
    return DemoSimulationResult(
        judgments=len(plan),
        comparisons=len(ordinary),
        gold_items=len(gold),
        annotators=len(people),
        quality=project_quality_refresh(project_id=project.pk),
        # Without a broker (the demo) computed here; with one, sent to a worker.
        leaderboard=leaderboard_request(project=project, filters=LeaderboardFilters()),
    )

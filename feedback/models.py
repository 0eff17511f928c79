"""The feedback data: what was asked, who answered, how people judged the answers.

Integrity lives in the database: unique keys, check constraints and foreign keys hold even when two
workers or annotators race. Python validation (services, `clean`) only gives the clear message first.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import Exact, LessThanOrEqual

from feedback.prompting import DEFAULT_COMPLETION_TEMPLATE, validate_completion_template
from feedback.sampling import MAX_NEW_TOKENS_LIMIT, SamplingParameters


class PromptCategory(models.TextChoices):
    """The kind of instruction a prompt gives; exports and statistics group by it."""

    LIST = "list", "List"
    SUMMARIZE = "summarize", "Summarize"
    EXPLAIN = "explain", "Explain"
    WRITE = "write", "Write"
    REWRITE = "rewrite", "Rewrite"
    BRAINSTORM = "brainstorm", "Brainstorm"
    CLASSIFY = "classify", "Classify"
    EXTRACT = "extract", "Extract"
    CODE = "code", "Code"
    QA = "qa", "Question answering"
    OTHER = "other", "Other"


class MessageRole(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class JudgmentFlag(models.TextChoices):
    UNSAFE = "unsafe", "Unsafe"
    PERSONAL_DATA = "personal_data", "Personal data"
    OFF_TOPIC = "off_topic", "Off-topic"
    BROKEN = "broken", "Broken"


def default_rating_rubric() -> list[dict[str, Any]]:
    """The rubric a new project starts with: five axes on a 1–5 scale."""

    def axis(key: str, label: str, description: str) -> dict[str, Any]:
        return {"key": key, "label": label, "description": description, "scale": {"min": 1, "max": 5}}

    return [
        axis(
            "instruction_following",
            "Instruction following",
            "Does the response do what was asked, respecting every explicit constraint?",
        ),
        axis(
            "helpfulness",
            "Helpfulness and relevance",
            "Is it useful, correct and on point, without padding or missing parts?",
        ),
        axis(
            "format",
            "Format and structure",
            "Is it organised as requested (lists, length, sections) and easy to read?",
        ),
        axis("tone", "Tone and style", "Is the register right for the request and the reader?"),
        axis("safety", "Safety", "Is it free of harmful, deceptive or privacy-violating content?"),
    ]


# People's answers (`Response.Source.HUMAN`) compared with model answers take part in battles, the
# leaderboard and the exports' checkpoint column as one participant under this name and id (no checkpoint
# can have either: ids start at 1 and the name is reserved).
PEOPLE = "people"
PEOPLE_ID = 0
# Who wrote a response (table alias `r`) as a participant: its checkpoint, PEOPLE_ID for a person's answer,
# −1 for an imported one (gold items), which takes part in nothing.
PARTICIPANT_SQL = f"coalesce(r.checkpoint_id, CASE WHEN r.source = 'human' THEN {PEOPLE_ID} ELSE -1 END)"


def participant(checkpoint_id: int | None, source: str) -> int:
    """`PARTICIPANT_SQL` in Python."""
    if checkpoint_id is not None:
        return checkpoint_id
    return PEOPLE_ID if source == Response.Source.HUMAN else -1


def checkpoint_name_validator(value: str) -> None:
    if value.strip().casefold() == PEOPLE:
        raise ValidationError(
            f"{PEOPLE!r} names people's answers on leaderboards and in exports: choose another name."
        )


def default_strength_labels() -> list[str]:
    return ["Slightly better", "Better", "Much better"]


RUBRIC_KEY_MAX_LENGTH = 64


def validate_rating_rubric(value: Any) -> None:
    """A rubric is a list of axes {key, label, description, scale: {min, max}} with unique slug keys."""
    if not isinstance(value, list):
        raise ValidationError("The rubric must be a list of axes.")
    seen: set[str] = set()
    for index, axis in enumerate(value, start=1):
        where = f"Axis {index}"
        if not isinstance(axis, dict):
            raise ValidationError(f"{where}: must be an object with key, label, description and scale.")
        unknown = set(axis) - {"key", "label", "description", "scale"}
        if unknown:
            raise ValidationError(f"{where}: unknown fields {sorted(unknown)}.")
        key = axis.get("key")
        if not isinstance(key, str) or not key or len(key) > RUBRIC_KEY_MAX_LENGTH:
            raise ValidationError(f"{where}: key must be a non-empty string of at most 64 characters.")
        if not key.replace("_", "").isalnum() or not key.isascii() or key != key.lower():
            raise ValidationError(f"{where}: key {key!r} must use lowercase letters, digits and '_'.")
        if key in seen:
            raise ValidationError(f"{where}: key {key!r} is used twice.")
        seen.add(key)
        if not isinstance(axis.get("label"), str) or not axis["label"].strip():
            raise ValidationError(f"{where} ({key}): label must be a non-empty string.")
        if not isinstance(axis.get("description", ""), str):
            raise ValidationError(f"{where} ({key}): description must be a string.")
        scale = axis.get("scale")
        if not isinstance(scale, dict) or set(scale) != {"min", "max"}:
            raise ValidationError(f"{where} ({key}): scale must be {{'min': int, 'max': int}}.")
        low, high = scale["min"], scale["max"]
        if not all(isinstance(bound, int) and not isinstance(bound, bool) for bound in (low, high)):
            raise ValidationError(f"{where} ({key}): scale bounds must be integers.")
        if not 0 <= low < high <= 100:
            raise ValidationError(f"{where} ({key}): scale needs 0 <= min < max <= 100.")


def validate_strength_labels(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(label, str) and label.strip() for label in value):
        raise ValidationError("Strength labels must be a list of non-empty strings (weakest first).")
    if len(value) > 10:
        raise ValidationError("At most 10 strength levels.")
    if len(set(value)) != len(value):
        raise ValidationError("Strength labels must be distinct.")


def canonical_json(value: Any) -> str:
    """One JSON text per value, whatever its key order: what hashes are taken of."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def conversation_hash(conversation: list[dict[str, str]]) -> str:
    """SHA-256 of the conversation's canonical JSON: equal prompts hash equal, whatever the key order."""
    return sha256_hex(canonical_json(conversation))


def validate_stop_strings(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError("Stop strings must be a list of strings.")
    try:
        SamplingParameters(stop_strings=tuple(value))
    except ValueError as error:
        raise ValidationError(str(error)) from None


class Project(models.Model):
    class ComparisonMode(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise (A vs B)"
        RANKING = "ranking", "Ranking of k responses"
        DEMONSTRATION = "demonstration", "Demonstrations: people write the answer"

    class AnswerEditing(models.TextChoices):
        OFF = "off", "Off"
        OPTIONAL = "optional", "Optional: after the verdict, the annotator may improve the chosen answer"
        BOTH_BAD = "both_bad", "Required when both are bad (optional otherwise)"

    class PairingStrategy(models.TextChoices):
        DISJOINT = "disjoint", "Random disjoint pairs (or k-sets): each response in at most one comparison"
        ALL_PAIRS = "all_pairs", "All pairs, up to the cap per prompt"

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    comparison_mode = models.CharField(
        max_length=16, choices=ComparisonMode.choices, default=ComparisonMode.PAIRWISE
    )
    responses_per_comparison = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(2), MaxValueValidator(8)],
        help_text="2 for pairwise; k (3–8) for rankings.",
    )
    allows_tie = models.BooleanField(default=True)
    # People's answers. A demonstration project asks annotators to write the answer to each prompt (the
    # conversation so far), optionally with model answers shown for reference; a pairwise or ranking
    # project may let them improve the chosen answer after their verdict.
    reference_answers = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(8)],
        help_text="Demonstration projects: how many model answers the writer sees for reference (0: none, "
        "they write from the prompt alone and tasks open when prompts are imported; otherwise tasks open "
        "when a generation run has answered).",
    )
    answer_editing = models.CharField(
        max_length=16,
        choices=AnswerEditing.choices,
        default=AnswerEditing.OFF,
        help_text="Pairwise and ranking projects: whether annotators may edit the answer they chose into a "
        "better one after their verdict.",
    )
    answers_reviewed = models.BooleanField(
        default=False,
        help_text="People's answers (demonstrations and edits) count in exports only once a reviewer accepts "
        "them.",
    )
    # Set (for good) when people's answers first enter its comparisons: only then does a claim check that
    # it does not give a writer their own answer to judge, so other projects' claims cost nothing more.
    compares_people = models.BooleanField(default=False, db_default=False, editable=False)
    strength_labels = models.JSONField(
        default=default_strength_labels,
        blank=True,
        validators=[validate_strength_labels],
        help_text="Pairwise preference strength, weakest first; empty list for no strength question.",
    )
    rating_rubric = models.JSONField(
        default=default_rating_rubric, blank=True, validators=[validate_rating_rubric]
    )
    judgments_per_comparison = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Overlap: how many different annotators judge each comparison.",
    )
    lease_duration = models.DurationField(
        default=timedelta(minutes=20), help_text="How long an annotator holds a comparison before it returns."
    )
    # Generation defaults, copied onto each run (a run records what it actually used).
    samples_per_prompt = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(64)]
    )
    max_new_tokens = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(1), MaxValueValidator(MAX_NEW_TOKENS_LIMIT)]
    )
    temperature = models.FloatField(default=0.8, validators=[MinValueValidator(0.0), MaxValueValidator(5.0)])
    top_p = models.FloatField(default=0.95, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    top_k = models.PositiveIntegerField(default=0, help_text="0 switches top-k filtering off.")
    repetition_penalty = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(0.01), MaxValueValidator(10.0)],
        help_text="1 switches it off.",
    )
    stop_strings = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_stop_strings],
        help_text='Strings that end a response, not included in it, e.g. ["\\nUser:"].',
    )
    completion_template = models.TextField(
        default=DEFAULT_COMPLETION_TEMPLATE,
        validators=[validate_completion_template],
        help_text=(
            "How a conversation becomes a plain-text prompt for base (non-chat) checkpoints: a sandboxed "
            "Jinja template over `messages` (each with `role` and `content`)."
        ),
    )
    pairing_strategy = models.CharField(
        max_length=16, choices=PairingStrategy.choices, default=PairingStrategy.DISJOINT
    )
    max_comparisons_per_prompt = models.PositiveSmallIntegerField(
        default=6,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Cap on the comparisons made from one prompt's responses in one run.",
    )
    current_checkpoint = models.ForeignKey(
        "PolicyCheckpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="ProjectMembership",
        through_fields=("project", "user"),
        blank=True,
        related_name="annotation_projects",
    )
    # Gold items: served inside the normal flow at this rate, and what an annotator's accuracy on them
    # leads to. Defaults suit a 2-way choice, where guessing scores 50%.
    gold_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of the comparisons served to an annotator that are gold (0.1: 1 in 10; 0: none).",
    )
    gold_warn_accuracy = models.FloatField(
        default=0.8,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Below this gold accuracy an annotator is flagged.",
    )
    gold_suspend_accuracy = models.FloatField(
        default=0.6,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="An annotator whose gold accuracy is below this with 95% confidence (the upper end of its "
        "Wilson interval) is suspended from the project…",
    )
    gold_min_answers = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="…once they have answered at least this many gold items.",
    )
    review_agreement_below = models.FloatField(
        default=0.6,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A completed comparison whose judgments agree less than this (the share that made the "
        "majority choice) goes to the review queue. 0 sends none for agreement.",
    )
    bias_suspend_share = models.FloatField(
        default=0.9,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="Suspend an annotator who puts the response shown first (or, in pairs, second) ahead this "
        "often, beyond chance (p < 0.001, at least 50 such judgments): display order is random, so "
        "that is not a preference. 1 switches it off.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(responses_per_comparison__gte=2, responses_per_comparison__lte=8),
                name="project_responses_per_comparison_range",
            ),
            models.CheckConstraint(
                condition=~Q(comparison_mode="pairwise") | Q(responses_per_comparison=2),
                name="project_pairwise_compares_two",
            ),
            models.CheckConstraint(
                condition=Q(comparison_mode__in=["pairwise", "ranking", "demonstration"]),
                name="project_comparison_mode_valid",
            ),
            models.CheckConstraint(
                condition=Q(answer_editing__in=["off", "optional", "both_bad"])
                & (Q(answer_editing="off") | ~Q(comparison_mode="demonstration")),
                name="project_answer_editing_valid",
            ),
            models.CheckConstraint(
                condition=Q(reference_answers__lte=8), name="project_reference_answers_range"
            ),
            models.CheckConstraint(
                condition=Q(judgments_per_comparison__gte=1), name="project_judgments_per_comparison_positive"
            ),
            models.CheckConstraint(
                condition=Q(lease_duration__gt=timedelta(0)), name="project_lease_duration_positive"
            ),
            models.CheckConstraint(condition=Q(samples_per_prompt__gte=1), name="project_samples_positive"),
            models.CheckConstraint(
                condition=Q(max_new_tokens__gte=1), name="project_max_new_tokens_positive"
            ),
            models.CheckConstraint(
                condition=Q(temperature__gte=0) & Q(top_p__gte=0, top_p__lte=1),
                name="project_sampling_range",
            ),
            models.CheckConstraint(
                condition=Q(repetition_penalty__gt=0), name="project_repetition_penalty_positive"
            ),
            models.CheckConstraint(
                condition=Q(pairing_strategy__in=["disjoint", "all_pairs"]), name="project_pairing_valid"
            ),
            models.CheckConstraint(
                condition=Q(max_comparisons_per_prompt__gte=1), name="project_comparison_cap_positive"
            ),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0, gold_rate__lte=0.5), name="project_gold_rate_range"
            ),
            models.CheckConstraint(
                condition=Q(gold_suspend_accuracy__gte=0, gold_warn_accuracy__lte=1)
                & Q(gold_suspend_accuracy__lte=F("gold_warn_accuracy")),
                name="project_gold_thresholds_ordered",
            ),
            models.CheckConstraint(condition=Q(gold_min_answers__gte=1), name="project_gold_min_answers"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.comparison_mode == self.ComparisonMode.PAIRWISE and self.responses_per_comparison != 2:
            raise ValidationError(
                {"responses_per_comparison": "A pairwise project compares exactly 2 responses."}
            )
        if self.comparison_mode == self.ComparisonMode.RANKING and self.responses_per_comparison < 3:
            raise ValidationError(
                {"responses_per_comparison": "A ranking project compares 3 to 8 responses."}
            )
        if (
            self.comparison_mode == self.ComparisonMode.DEMONSTRATION
            and self.answer_editing != self.AnswerEditing.OFF
        ):
            raise ValidationError(
                {"answer_editing": "A demonstration project has no verdict to edit after: set it to off."}
            )
        if self.gold_suspend_accuracy > self.gold_warn_accuracy:
            raise ValidationError(
                {"gold_suspend_accuracy": "Suspension must come at or below the accuracy that warns."}
            )

    def sampling_parameters(self) -> SamplingParameters:
        """The project's defaults for a new run."""
        return SamplingParameters(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            repetition_penalty=self.repetition_penalty,
            stop_strings=tuple(self.stop_strings),
        )


class ProjectRole(models.TextChoices):
    """What a member may do in a project. Each role includes the ones before it."""

    ANNOTATOR = "annotator", "Annotator: judges comparisons"
    REVIEWER = "reviewer", "Reviewer: also decides the review queue"
    MANAGER = "manager", "Manager: also picks items for review and reinstates annotators"


class ProjectMembership(models.Model):
    """A user's place in a project, with their role. Staff may work on every project without one."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=ProjectRole.choices, default=ProjectRole.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_once_per_project"),
            models.CheckConstraint(
                condition=Q(role__in=["annotator", "reviewer", "manager"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Prompt(models.Model):
    """A conversation whose last turn is the user's; the policy writes the next assistant turn."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(
        max_length=200,
        help_text="Id from the imported file; derived from the content when the file had none.",
    )
    conversation = models.JSONField(help_text='[{"role": "system"|"user"|"assistant", "content": "..."}]')
    category = models.CharField(max_length=32, choices=PromptCategory.choices, default=PromptCategory.OTHER)
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the canonical conversation JSON.")
    is_gold = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Imported with a gold item: runs over the whole project leave it out, so it never "
        "reaches annotators as anything but gold.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="prompt_unique_external_id"),
            models.CheckConstraint(
                condition=Q(category__in=PromptCategory.values), name="prompt_category_valid"
            ),
            models.CheckConstraint(condition=~Q(external_id=""), name="prompt_external_id_not_empty"),
            models.CheckConstraint(
                condition=Exact(Length("content_hash"), 64), name="prompt_content_hash_sha256"
            ),
        ]
        indexes = [models.Index(fields=["project", "content_hash"], name="prompt_project_hash_idx")]

    def __str__(self) -> str:
        return f"{self.external_id}: {self.preview}"

    @property
    def last_user_message(self) -> str:
        return str(self.conversation[-1]["content"]) if self.conversation else ""

    @property
    def preview(self) -> str:
        text = " ".join(self.last_user_message.split())
        return text if len(text) <= 80 else text[:79] + "…"

    @property
    def turn_count(self) -> int:
        return sum(1 for message in self.conversation if message.get("role") == MessageRole.USER)


class PolicyCheckpoint(models.Model):
    """A model that writes responses: a Hugging Face model directory, optionally with a LoRA adapter."""

    class Kind(models.TextChoices):
        BASE = "base", "Base (completion)"
        INSTRUCT = "instruct", "Instruction-tuned (chat)"

    class SourceType(models.TextChoices):
        LOCAL = "local", "Local directory"
        HUB = "hub", "Hub id (resolved from the local cache only)"

    class Dtype(models.TextChoices):
        AUTO = "auto", "Auto (bf16 on CUDA, fp32 on CPU)"
        BFLOAT16 = "bfloat16", "bfloat16"
        FLOAT16 = "float16", "float16"
        FLOAT32 = "float32", "float32"

    class Backend(models.TextChoices):
        TRANSFORMERS = "transformers", "transformers, on the GPU workers"
        OPENAI = "openai", "OpenAI-compatible server (vLLM, SGLang, TGI, transformers serve)"

    class ValidationStatus(models.TextChoices):
        UNCHECKED = "unchecked", "Not checked"
        PENDING = "pending", "Checking"
        VALID = "valid", "Valid"
        INVALID = "invalid", "Invalid"

    name = models.CharField(max_length=200, unique=True, validators=[checkpoint_name_validator])
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.INSTRUCT)
    source_type = models.CharField(max_length=8, choices=SourceType.choices, default=SourceType.LOCAL)
    source = models.CharField(max_length=500, help_text="A local directory, or a hub id such as org/model.")
    revision = models.CharField(max_length=100, blank=True, help_text="Hub revision (branch, tag or commit).")
    adapter_source = models.CharField(
        max_length=500, blank=True, help_text="Optional LoRA (PEFT) adapter: a local directory or hub id."
    )
    adapter_revision = models.CharField(max_length=100, blank=True)
    dtype = models.CharField(max_length=16, choices=Dtype.choices, default=Dtype.AUTO)
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.TRANSFORMERS)
    api_base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="OpenAI-compatible backend: the server's base URL, e.g. http://vllm:8000/v1.",
    )
    served_model_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="OpenAI-compatible backend: the model name the server knows (default: the source).",
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="OpenAI-compatible backend: the name of the environment variable on the workers that "
        "holds the API key. The key itself is never stored.",
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The checkpoint this one was trained from (lineage).",
    )
    training_step = models.PositiveBigIntegerField(null=True, blank=True)
    notes = models.TextField(blank=True)
    validation_status = models.CharField(
        max_length=16, choices=ValidationStatus.choices, default=ValidationStatus.UNCHECKED, editable=False
    )
    validation_report = models.JSONField(default=dict, blank=True, editable=False)
    validated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "name"]
        constraints = [
            models.CheckConstraint(condition=~Q(source=""), name="checkpoint_source_not_empty"),
            models.CheckConstraint(condition=~Q(name__iexact=PEOPLE), name="checkpoint_name_not_people"),
            models.CheckConstraint(
                condition=Q(source_type="hub") | Q(revision=""), name="checkpoint_revision_only_for_hub"
            ),
            models.CheckConstraint(condition=Q(kind__in=["base", "instruct"]), name="checkpoint_kind_valid"),
            models.CheckConstraint(
                condition=Q(source_type__in=["local", "hub"]), name="checkpoint_source_type_valid"
            ),
            models.CheckConstraint(
                condition=Q(parent__isnull=True) | ~Q(parent=F("id")), name="checkpoint_not_own_parent"
            ),
            models.CheckConstraint(
                condition=Q(backend__in=["transformers", "openai"]), name="checkpoint_backend_valid"
            ),
            models.CheckConstraint(
                condition=Q(backend="transformers") | ~Q(api_base_url=""),
                name="checkpoint_openai_needs_url",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.backend == self.Backend.OPENAI and not self.api_base_url:
            raise ValidationError({"api_base_url": "An OpenAI-compatible checkpoint needs the server's URL."})
        if self.backend == self.Backend.OPENAI and self.adapter_source:
            raise ValidationError(
                {"adapter_source": "Load LoRA adapters in the serving engine; the OpenAI backend cannot."}
            )
        if self.api_key_env and not self.api_key_env.replace("_", "").isalnum():
            raise ValidationError({"api_key_env": "An environment variable name: letters, digits, _."})

    @property
    def is_tiny_test_model(self) -> bool:
        """Set by validation from the checkpoint's config (`make_tiny_checkpoint` writes random weights)."""
        return bool(self.validation_report.get("is_test_model"))


class GenerationRun(models.Model):
    """One request to generate responses: prompts × samples from one checkpoint, or two head to head."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generation_runs")
    checkpoint = models.ForeignKey(PolicyCheckpoint, on_delete=models.PROTECT, related_name="runs")
    opponent_checkpoint = models.ForeignKey(
        PolicyCheckpoint,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs_as_opponent",
        help_text="Set for checkpoint-vs-checkpoint runs: each comparison pits one response of each.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    samples_per_prompt = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    # The sampling parameters every response of the run was generated with.
    sampling_parameters = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(default=0, help_text="Base seed; each sample derives its own from it.")
    chunk_size = models.PositiveSmallIntegerField(
        default=16, validators=[MinValueValidator(1)], help_text="Prompts per task."
    )
    total_prompts = models.PositiveIntegerField(default=0)
    # A prompt is done when every sample of every checkpoint of the run is stored (and paired), failed
    # when a chunk holding it failed for good.
    done_prompts = models.PositiveIntegerField(default=0)
    failed_prompts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "queued", "running", "completed", "failed", "cancelled"]),
                name="run_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(opponent_checkpoint__isnull=True) | ~Q(opponent_checkpoint=F("checkpoint")),
                name="run_opponent_differs",
            ),
            models.CheckConstraint(condition=Q(samples_per_prompt__gte=1), name="run_samples_positive"),
            models.CheckConstraint(
                condition=Q(done_prompts__lte=F("total_prompts") - F("failed_prompts")),
                name="run_progress_within_total",
            ),
            models.CheckConstraint(condition=Q(chunk_size__gte=1), name="run_chunk_size_positive"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="run_status_idx")]

    def __str__(self) -> str:
        return f"Run {self.pk} · {self.checkpoint} · {self.get_status_display()}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.COMPLETED, self.Status.FAILED, self.Status.CANCELLED)

    @property
    def checkpoint_ids(self) -> list[int]:
        ids = [self.checkpoint_id]
        if self.opponent_checkpoint_id:
            ids.append(self.opponent_checkpoint_id)
        return ids


class GenerationChunk(models.Model):
    """The unit of generation work: some prompts of a run, all their samples, from one checkpoint.

    One Celery message carries one chunk id. The chunk row, not the message, is the truth: a worker
    claims it under a row lock, beats its heartbeat while it generates, and stores responses under their
    unique key, so a redelivered, duplicated or re-enqueued message finds the work done and does nothing.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    run = models.ForeignKey(GenerationRun, on_delete=models.CASCADE, related_name="chunks")
    checkpoint = models.ForeignKey(PolicyCheckpoint, on_delete=models.PROTECT, related_name="+")
    index = models.PositiveIntegerField()
    prompt_ids = models.JSONField(help_text="The run's prompts this chunk generates for, in order.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "index", "checkpoint_id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "checkpoint", "index"], name="chunk_unique_per_run"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed", "cancelled"]),
                name="chunk_status_valid",
            ),
        ]
        indexes = [
            # Reconcile scans only live chunks.
            models.Index(
                fields=["status", "heartbeat_at"],
                name="chunk_live_idx",
                condition=Q(status__in=["queued", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"Chunk {self.index} of run {self.run_id} ({self.get_status_display()})"


class Response(models.Model):
    """One sampled answer of a checkpoint to a prompt. Untrusted text: never rendered as HTML."""

    class FinishReason(models.TextChoices):
        EOS = "eos", "End of sequence"
        LENGTH = "length", "Max new tokens"
        STOP = "stop", "Stop string"

    class Source(models.TextChoices):
        MODEL = "model", "Generated by a checkpoint"
        IMPORTED = "imported", "Imported with a gold item"
        HUMAN = "human", "Written or edited by a person"

    class Review(models.TextChoices):
        """Where a person's answer stands: it counts in exports when `unreviewed` (its project asked no
        review when it was written) or `accepted`."""

        NONE = "", "Not a person's answer"
        UNREVIEWED = "unreviewed", "Counts without review"
        PENDING = "pending", "Waiting for review"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        REVISED = "revised", "Replaced by a reviewer's edit"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    source = models.CharField(
        max_length=16, choices=Source.choices, default=Source.MODEL, db_default=Source.MODEL
    )
    # Set for generated responses (a check constraint holds it); imported ones come from a file.
    checkpoint = models.ForeignKey(
        PolicyCheckpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="responses"
    )
    run = models.ForeignKey(
        GenerationRun, null=True, blank=True, on_delete=models.CASCADE, related_name="responses"
    )
    sample_index = models.PositiveSmallIntegerField()
    text = models.TextField()
    sampling_parameters = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    token_count = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=16, choices=FinishReason.choices, blank=True)
    latency_seconds = models.FloatField(null=True, blank=True, help_text="Wall time to generate, in seconds.")
    created_at = models.DateTimeField(auto_now_add=True)
    # A person's answer (source "human"): who wrote it, and what it was edited from, if anything, with the
    # Levenshtein distance in characters between the two. Never attributed to a checkpoint.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="answers",
        help_text="Who wrote it (human answers only).",
    )
    edited_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="edits",
        help_text="The answer this one was edited from, if it is an edit.",
    )
    edit_distance = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Characters inserted, deleted or substituted to get here from the original.",
    )
    # Where it was written: the writing task of a demonstration, or the judgment after which the annotator
    # improved the answer they chose. A reviewer's edit has neither.
    assignment = models.OneToOneField(
        "Assignment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="answer",
        help_text="The writing task it answers (demonstrations).",
    )
    judgment = models.OneToOneField(
        "Judgment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="edit",
        help_text="The verdict after which it was edited from the chosen answer.",
    )
    # A database default too: the benchmarks (and any bulk loader) insert model answers by raw SQL.
    submission_key = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text="The author's idempotency key, for a written answer.",
    )
    review = models.CharField(
        max_length=16, choices=Review.choices, blank=True, default=Review.NONE, db_default=Review.NONE
    )
    review_required = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Its project asked for review when it was written: it counts once accepted.",
    )
    time_spent_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Milliseconds the writer spent on the page (demonstrations)."
    )
    # Its style, what the length-controlled leaderboard regresses on (`feedback.quality.leaderboard.
    # markdown_style`): set when generated, filled by the leaderboard's refresh where missing.
    characters = models.PositiveIntegerField(null=True, blank=True, editable=False)
    markdown_headers = models.PositiveIntegerField(null=True, blank=True, editable=False)
    markdown_list_items = models.PositiveIntegerField(null=True, blank=True, editable=False)
    markdown_bold = models.PositiveIntegerField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["prompt_id", "checkpoint_id", "sample_index"]
        constraints = [
            # The idempotency key of generation: re-running a chunk cannot create a sample twice.
            models.UniqueConstraint(
                fields=["prompt", "checkpoint", "run", "sample_index"], name="response_unique_sample"
            ),
            models.CheckConstraint(
                condition=Q(finish_reason__in=["", "eos", "length", "stop"]),
                name="response_finish_reason_valid",
            ),
            models.CheckConstraint(
                condition=Q(latency_seconds__isnull=True) | Q(latency_seconds__gte=0),
                name="response_latency_nonnegative",
            ),
            models.CheckConstraint(
                condition=Q(source="imported")
                | Q(source="model", checkpoint__isnull=False, run__isnull=False)
                | Q(source="human", checkpoint__isnull=True, author__isnull=False),
                name="response_generated_has_checkpoint",
            ),
            models.CheckConstraint(
                condition=Q(source__in=["model", "imported", "human"]), name="response_source_valid"
            ),
            # Only a person's answer has an author or an original, and an edit always has its distance.
            models.CheckConstraint(
                condition=Q(source="human") | Q(author__isnull=True, edited_from__isnull=True),
                name="response_lineage_only_for_human",
            ),
            models.CheckConstraint(
                condition=Q(edited_from__isnull=True, edit_distance__isnull=True)
                | Q(edited_from__isnull=False, edit_distance__isnull=False),
                name="response_edit_has_distance",
            ),
            models.CheckConstraint(
                condition=Q(edited_from__isnull=True) | ~Q(edited_from=F("id")), name="response_not_own_edit"
            ),
            models.CheckConstraint(
                condition=Q(
                    source="human", review__in=["unreviewed", "pending", "accepted", "rejected", "revised"]
                )
                | (
                    ~Q(source="human")
                    & Q(review="", review_required=False, submission_key="", assignment__isnull=True)
                    & Q(judgment__isnull=True)
                ),
                name="response_review_only_for_human",
            ),
            models.CheckConstraint(
                condition=Q(review_required=True) | ~Q(review="pending"), name="response_pending_needs_review"
            ),
            models.UniqueConstraint(
                fields=["author", "submission_key"],
                condition=~Q(submission_key=""),
                name="response_answer_key_once",
            ),
        ]
        indexes = [
            models.Index(fields=["run", "prompt"], name="response_run_prompt_idx"),
            # People's answers: the review queue's (per project, through the prompt) and the exports' scans,
            # small partial indexes beside the model answers' table.
            models.Index(
                fields=["prompt"], name="response_review_pending_idx", condition=Q(review="pending")
            ),
            models.Index(fields=["id"], name="response_human_idx", condition=Q(source="human")),
        ]

    def __str__(self) -> str:
        return f"Response {self.pk} to prompt {self.prompt_id} (sample {self.sample_index})"


class Comparison(models.Model):
    """2..k responses to one prompt, shown to annotators in a stored, randomised display order."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETED = "completed", "Completed"
        RETIRED = "retired", "Retired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    generation_run = models.ForeignKey(
        GenerationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="comparisons"
    )
    responses = models.ManyToManyField(Response, through="ComparisonResponse", related_name="comparisons")
    # Gold: the expected verdict is known (GoldVerdict). Served inside the normal flow to every annotator
    # once, never counted toward overlap or progress, never in a preference export. A gold comparison has
    # no required judgments (NULL): any number of annotators answer it, and it stays open.
    is_gold = models.BooleanField(default=False, db_default=False)
    required_judgments = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Empty for gold: no limit."
    )
    judgment_count = models.PositiveSmallIntegerField(default=0)
    # Live leases holding a slot. Not indexed on purpose: it changes on every lease, and leaving it out
    # of every index keeps those updates HOT (no index writes) in PostgreSQL.
    lease_count = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # What an annotator has to read: its responses' characters together, set when it is made (responses
    # never change), so the quality refresh's "too fast to read" check does not sum every text again.
    characters = models.PositiveIntegerField(
        null=True, blank=True, editable=False, help_text="Its responses' characters together."
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(required_judgments__gte=1), name="comparison_required_positive"
            ),
            models.CheckConstraint(
                condition=Q(judgment_count__lte=F("required_judgments")), name="comparison_not_over_judged"
            ),
            # The overlap rule itself: judgments plus live leases never exceed the required judgments.
            models.CheckConstraint(
                condition=Q(
                    LessThanOrEqual(F("judgment_count") + F("lease_count"), F("required_judgments")),
                    judgment_count__gte=0,
                    lease_count__gte=0,
                ),
                name="comparison_not_over_assigned",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["open", "completed", "retired"]), name="comparison_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(is_gold=True, required_judgments__isnull=True)
                | Q(is_gold=False, required_judgments__isnull=False),
                name="comparison_gold_has_no_overlap",
            ),
            models.CheckConstraint(
                condition=Q(is_gold=False) | ~Q(status="completed"), name="comparison_gold_never_completes"
            ),
        ]
        indexes = [
            # The next-comparison claim: open comparisons of a project, fewest judgments still missing
            # first, then oldest. Partial, so finished work never slows the claim as the project grows.
            models.Index(
                F("project"),
                F("required_judgments") - F("judgment_count"),
                F("id"),
                name="comparison_next_open_idx",
                condition=Q(status="open", is_gold=False),
            ),
            # The gold claim: a project's open gold items, least answered first.
            models.Index(
                fields=["project", "judgment_count", "id"],
                name="comparison_gold_open_idx",
                condition=Q(status="open", is_gold=True),
            ),
            models.Index(fields=["prompt"], name="comparison_prompt_idx"),
        ]

    def __str__(self) -> str:
        return f"Comparison {self.pk} ({self.judgment_count}/{self.required_judgments})"


def position_label(position: int) -> str:
    """The label a display position is shown with: 0 is A, 1 is B, and so on."""
    return chr(ord("A") + position)


class ComparisonResponse(models.Model):
    """A response's place in a comparison: position 0 is shown as A, 1 as B, and so on."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="entries")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="comparison_entries")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["comparison_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "position"], name="comparison_position_unique"),
            models.UniqueConstraint(fields=["comparison", "response"], name="comparison_response_unique"),
            models.CheckConstraint(condition=Q(position__lte=7), name="comparison_position_range"),
        ]

    def __str__(self) -> str:
        return f"{self.label}: response {self.response_id}"

    @property
    def label(self) -> str:
        return position_label(self.position)


class Assignment(models.Model):
    """An annotator's lease on a comparison; at most one per comparison and annotator, ever."""

    class State(models.TextChoices):
        LEASED = "leased", "Leased"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.LEASED)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-leased_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="assignment_unique_per_annotator"
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("leased_at")), name="assignment_expiry_after_lease"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["leased", "submitted", "skipped", "expired"]),
                name="assignment_state_valid",
            ),
        ]
        indexes = [
            # "My open lease" and lease expiry sweeps touch only live leases.
            models.Index(
                fields=["annotator", "expires_at"],
                name="assignment_open_by_user_idx",
                condition=Q(state="leased"),
            ),
            models.Index(
                fields=["comparison", "expires_at"],
                name="assignment_open_by_cmp_idx",
                condition=Q(state="leased"),
            ),
            # The expiry sweep takes the oldest overdue leases first, whatever their comparison.
            models.Index(
                fields=["expires_at"], name="assignment_lease_expiry_idx", condition=Q(state="leased")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} on comparison {self.comparison_id} ({self.state})"


class AnswerDraft(models.Model):
    """What an annotator has written so far on an assignment (a demonstration or an edit), saved as they
    type so that a reload, a closed tab or a lost connection loses nothing. `revision` is the client's
    counter: a save older than the stored one (arriving late) changes nothing."""

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="draft")
    text = models.TextField(blank=True)
    revision = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField()
    base = models.CharField(
        max_length=1, blank=True, default="", help_text="An edit: the label of the answer it starts from."
    )

    def __str__(self) -> str:
        return f"Draft of assignment {self.assignment_id} (revision {self.revision})"


class GoldVerdict(models.Model):
    """The verdict a gold comparison expects, keyed by response id (see `feedback.quality.gold`)."""

    comparison = models.OneToOneField(
        Comparison, primary_key=True, on_delete=models.CASCADE, related_name="gold_verdict"
    )
    verdict = models.JSONField(help_text='{"accepted": [...]}, {"best": id} or {"ranks": {id: rank}}.')
    explanation = models.TextField(
        blank=True, help_text="Why this is the answer: for reviewers, never shown."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Gold verdict of comparison {self.comparison_id}"


class AnnotatorStanding(models.Model):
    """An annotator's standing in a project, and the counts the assignment engine serves gold by.

    The claim locks this row (one claim per annotator and project at a time). `status` changes only
    through `feedback.services.standing`, which writes a `StandingChange` for each change.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        WARNED = "warned", "Warned (low gold accuracy)"
        SUSPENDED = "suspended", "Suspended"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="standings")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="standings"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    reason = models.TextField(blank=True, help_text="Why the status is what it is, in plain words.")
    leases = models.PositiveIntegerField(default=0, help_text="Comparisons served in the project.")
    gold_slots = models.PositiveIntegerField(
        default=0, help_text="Of which gold was due (served, or none was left for the annotator)."
    )
    gold_leases = models.PositiveIntegerField(default=0, help_text="Of which gold.")
    changed_at = models.DateTimeField(null=True, blank=True)
    counts_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Gold answers before this (the last reinstatement) no longer count toward suspension.",
    )

    class Meta:
        ordering = ["project_id", "annotator_id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "annotator"], name="standing_once_per_project"),
            models.CheckConstraint(
                condition=Q(status__in=["active", "warned", "suspended"]), name="standing_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(gold_leases__lte=F("gold_slots"), gold_slots__lte=F("leases")),
                name="standing_gold_within_slots",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} in {self.project}: {self.get_status_display()}"


class ProjectQuality(models.Model):
    """One computation of a project's quality figures (see `feedback.quality.report.project_report`),
    kept as a history: the page reads the newest and says when it was computed."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="quality_reports")
    computed_at = models.DateTimeField()
    seconds = models.FloatField(help_text="How long the computation took.")
    high_water_mark = models.BigIntegerField(help_text="The largest judgment id the figures include.")
    report = models.JSONField()

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["project", "-computed_at"], name="project_quality_latest_idx")]

    def __str__(self) -> str:
        return f"Quality of {self.project} at {self.computed_at:%Y-%m-%d %H:%M}"


class LeaderboardReport(models.Model):
    """A project's leaderboard for one set of filters (`feedback.services.leaderboard`), as last computed:
    one row per project and filter key, replaced by each computation, which runs on a worker. `requested_at`
    is when a page or an API call last asked for it: the periodic refresh keeps recently asked ones fresh."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be computed"
        READY = "ready", "Computed"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="leaderboards")
    key = models.CharField(max_length=64, help_text="SHA-256 of the canonical filters.")
    filters = models.JSONField(help_text="The canonical filters (LeaderboardFilters.to_dict).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_at = models.DateTimeField()
    computed_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="How long the computation took.")
    high_water_mark = models.BigIntegerField(default=0, help_text="The largest judgment id it includes.")
    marks = models.JSONField(
        default=dict,
        blank=True,
        help_text="The project's newest judgment, standing change and review decision ids then.",
    )
    report = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["project_id", "-requested_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="leaderboard_once_per_filters"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "ready", "failed"]), name="leaderboard_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="ready") | Q(report__isnull=False, computed_at__isnull=False),
                name="leaderboard_ready_has_report",
            ),
        ]

    def __str__(self) -> str:
        return f"Leaderboard of {self.project} ({self.key[:8]})"


class AnnotatorQuality(models.Model):
    """An annotator's figures in a project as last computed, and the anomalies they show (each with
    its reason). Replaced by every computation of the project's quality."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotator_quality")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quality_figures"
    )
    computed_at = models.DateTimeField()
    judgments = models.PositiveIntegerField(default=0)
    gold_answered = models.PositiveIntegerField(default=0)
    gold_correct = models.PositiveIntegerField(default=0)
    gold_accuracy = models.FloatField(null=True, blank=True)
    gold_low = models.FloatField(null=True, blank=True, help_text="Wilson 95% interval, lower bound.")
    gold_high = models.FloatField(null=True, blank=True, help_text="Wilson 95% interval, upper bound.")
    majority_compared = models.PositiveIntegerField(default=0)
    majority_agreed = models.PositiveIntegerField(default=0)
    majority_kappa = models.FloatField(null=True, blank=True)
    first_chosen = models.PositiveIntegerField(default=0)
    decisive = models.PositiveIntegerField(default=0)
    first_share = models.FloatField(null=True, blank=True)
    first_p_value = models.FloatField(null=True, blank=True)
    timed = models.PositiveIntegerField(default=0)
    median_seconds = models.FloatField(null=True, blank=True)
    too_fast = models.PositiveIntegerField(default=0)
    top_choice = models.CharField(max_length=32, blank=True)
    top_choice_share = models.FloatField(null=True, blank=True)
    anomalies = models.JSONField(default=list, blank=True, help_text='[{"code": …, "reason": …}]')

    class Meta:
        ordering = ["project_id", "annotator_id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "annotator"], name="annotator_quality_once"),
            models.CheckConstraint(
                condition=Q(gold_correct__lte=F("gold_answered")), name="annotator_quality_gold_counts"
            ),
        ]
        verbose_name_plural = "annotator quality"

    def __str__(self) -> str:
        return f"{self.annotator} in {self.project}"


class ReviewItem(models.Model):
    """A comparison that needs a reviewer's final word, why, and the word once given.

    Items enter the queue from the quality refresh (low agreement, a flag raised, a gold item most
    annotators answered otherwise) or by a manager's pick. `feedback.services.review` is the only writer:
    a decision locks the item, so two reviewers can never both decide it.
    """

    class Reason(models.TextChoices):
        LOW_AGREEMENT = "low_agreement", "Low agreement"
        FLAGGED = "flagged", "Flagged by an annotator"
        GOLD_DISPUTED = "gold_disputed", "Gold item most annotators answered otherwise"
        PICKED = "picked", "Picked by a manager"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a reviewer"
        DECIDED = "decided", "Decided"
        SENT_BACK = "sent_back", "Sent back for more judgments"
        RETIRED = "retired", "Retired"

    comparison = models.OneToOneField(Comparison, on_delete=models.CASCADE, related_name="review")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_items")
    reasons = models.JSONField(default=list, help_text="Why it is in the queue: Reason values.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # The final verdict when decided, in a judgment's stored form: {"choice": …, "ranking": [rank per
    # display position], "strength": …}.
    verdict = models.JSONField(null=True, blank=True)
    queued_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["queued_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "decided", "sent_back", "retired"]),
                name="review_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="decided") | Q(verdict__isnull=False), name="review_decided_has_verdict"
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "queued_at", "id"],
                name="review_pending_idx",
                condition=Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"Review of comparison {self.comparison_id} ({self.get_status_display()})"


class ReviewDecision(models.Model):
    """Every decision on a review item: who, when, what (decide, send back, retire, pick), the verdict,
    the item's previous state, and why. Never updated or deleted by the application."""

    class Action(models.TextChoices):
        DECIDE = "decide", "Set the final verdict"
        SEND_BACK = "send_back", "Send back for more judgments"
        RETIRE = "retire", "Retire"
        PICK = "pick", "Pick for review"

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_decisions"
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    verdict = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    previous_status = models.CharField(max_length=16, blank=True)
    previous_verdict = models.JSONField(null=True, blank=True)
    submission_key = models.CharField(max_length=64, help_text="Client-chosen idempotency key.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["reviewer", "submission_key"], name="review_decision_key_once"),
            models.CheckConstraint(
                condition=Q(action__in=["decide", "send_back", "retire", "pick"]), name="review_action_valid"
            ),
            models.CheckConstraint(
                condition=~Q(action="decide") | Q(verdict__isnull=False), name="review_decide_has_verdict"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer}: {self.action} on review {self.item_id}"


class AnswerReview(models.Model):
    """Every decision on a person's answer: accept, reject (with a reason) or edit (the reviewer's edit is
    an answer of its own, `revision`, edited from this one). Never updated or deleted by the application;
    exports read an answer's standing as of a mark over these rows."""

    class Action(models.TextChoices):
        ACCEPT = "accept", "Accept"
        REJECT = "reject", "Reject"
        EDIT = "edit", "Edit (the edit is accepted in its place)"

    answer = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="answer_reviews"
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    reason = models.TextField(blank=True)
    revision = models.OneToOneField(
        Response, null=True, blank=True, on_delete=models.PROTECT, related_name="revision_of"
    )
    previous = models.CharField(max_length=16, help_text="The answer's review status before.")
    submission_key = models.CharField(max_length=64, help_text="Client-chosen idempotency key.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["reviewer", "submission_key"], name="answer_review_key_once"),
            models.CheckConstraint(
                condition=Q(action__in=["accept", "reject", "edit"]), name="answer_review_action_valid"
            ),
            models.CheckConstraint(
                condition=~Q(action="reject") | ~Q(reason=""), name="answer_review_reject_has_reason"
            ),
            models.CheckConstraint(
                condition=Q(action="edit", revision__isnull=False)
                | Q(~Q(action="edit"), revision__isnull=True),
                name="answer_review_edit_has_revision",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer}: {self.action} on answer {self.answer_id}"


class StandingChange(models.Model):
    """The record of a suspension, reinstatement or warning: who (none: the gold check), when, why, and
    the gold figures it was decided on. Never updated or deleted by the application."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="standing_changes")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="standing_changes"
    )
    previous_status = models.CharField(max_length=16, choices=AnnotatorStanding.Status.choices)
    status = models.CharField(max_length=16, choices=AnnotatorStanding.Status.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField()
    gold_answered = models.PositiveIntegerField(default=0)
    gold_correct = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="standing_change_has_reason"),
            models.CheckConstraint(condition=~Q(previous_status=F("status")), name="standing_change_changes"),
        ]
        indexes = [models.Index(fields=["project", "annotator", "created_at"], name="standing_change_idx")]

    def __str__(self) -> str:
        return f"{self.annotator} in {self.project}: {self.previous_status} → {self.status}"


RATIONALE_MAX_LENGTH = 5_000


class Judgment(models.Model):
    """One annotator's verdict on one comparison: the audit record that datasets are built from.

    `ranking` holds a rank per display position (1 is best; equal ranks are ties) for every mode, so
    exports read one shape; `choice` keeps what the annotator pressed in pairwise mode.
    """

    class Choice(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"
        RANKED = "ranked", "Ranked (k-wise)"

    comparison = models.ForeignKey(Comparison, on_delete=models.PROTECT, related_name="judgments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgments"
    )
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="judgment"
    )
    choice = models.CharField(max_length=16, choices=Choice.choices)
    ranking = models.JSONField(help_text="Rank per display position, 1 = best; equal ranks are ties.")
    strength = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="1-based index into the project's strength labels."
    )
    ratings = models.JSONField(
        default=dict, blank=True, help_text='{"<response id>": {"<axis key>": score}} on the project rubric.'
    )
    rationale = models.TextField(blank=True)
    flags = models.JSONField(
        default=list, blank=True, help_text="Subset of: " + ", ".join(JudgmentFlag.values)
    )
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Milliseconds on the page.")
    submission_key = models.CharField(max_length=64, help_text="Client-chosen idempotency key.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "annotator"], name="judgment_once_per_annotator"),
            models.UniqueConstraint(
                fields=["annotator", "submission_key"], name="judgment_unique_submission_key"
            ),
            models.CheckConstraint(
                condition=Q(choice__in=["a", "b", "tie", "both_bad", "ranked"]), name="judgment_choice_valid"
            ),
            models.CheckConstraint(
                condition=Q(strength__isnull=True) | (Q(strength__gte=1) & Q(choice__in=["a", "b"])),
                name="judgment_strength_only_for_preference",
            ),
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("rationale"), RATIONALE_MAX_LENGTH),
                name="judgment_rationale_bounded",
            ),
            models.CheckConstraint(condition=~Q(submission_key=""), name="judgment_submission_key_not_empty"),
        ]
        indexes = [
            # Incremental pulls (`updated_after`) and snapshot exports walk judgments in this order.
            models.Index(fields=["updated_at", "id"], name="judgment_updated_idx"),
            models.Index(fields=["annotator", "created_at"], name="judgment_annotator_time_idx"),
        ]

    def __str__(self) -> str:
        return f"Judgment {self.pk} by {self.annotator} on comparison {self.comparison_id}"


class ApiToken(models.Model):
    """A bearer token for scripts. Only its SHA-256 is stored; the secret is shown once, at creation.

    Tokens carry 256 bits of randomness, so a fast hash is enough: nothing to brute-force.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'nightly export job'.")
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Exact(Length("key_hash"), 64), name="api_token_key_hash_sha256"),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="api_token_expiry_after_creation"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"


class Export(models.Model):
    """One dataset export: its options, the snapshot it covers, and the files it wrote.

    The snapshot is a high-water mark over judgment ids, taken while no judgment transaction was in
    flight (see `feedback.export.snapshot`): every judgment with id <= it had committed, and every later
    one gets a larger id. Exporting the same options and mark again writes byte-identical files.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    options = models.JSONField(help_text="The normalised export options (feedback.export.ExportOptions).")
    high_water_mark = models.BigIntegerField(help_text="The largest judgment id the snapshot covers.")
    # The quality side of the snapshot: suspensions as of this standing change, quality figures as of
    # this quality report (both logs are append-only), so re-exports decide the same.
    standing_mark = models.BigIntegerField(default=0, help_text="The newest StandingChange id it reads.")
    quality_mark = models.BigIntegerField(default=0, help_text="The newest ProjectQuality id it reads.")
    review_mark = models.BigIntegerField(default=0, help_text="The newest ReviewDecision id it reads.")
    # The snapshot of the formats that read people's answers or the prompts themselves: the largest
    # response, answer-review and prompt ids they read ({} for the formats built from judgments alone).
    source_marks = models.JSONField(default=dict, blank=True)
    snapshot_digest = models.CharField(
        max_length=64, help_text="SHA-256 of options and high-water mark: equal digests, equal files."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="exports"
    )
    file_name = models.CharField(max_length=200, blank=True, help_text="The archive, under EXPORT_ROOT.")
    file_sha256 = models.CharField(max_length=64, blank=True)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    manifest = models.JSONField(
        default=dict, blank=True, help_text="Row counts per split and the SHA-256 of each file written."
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "running", "completed", "failed"]),
                name="export_status_valid",
            ),
            models.CheckConstraint(condition=Q(high_water_mark__gte=0), name="export_mark_nonnegative"),
            models.CheckConstraint(
                condition=~Q(status="completed") | ~Q(file_sha256=""), name="export_completed_has_file"
            ),
        ]

    def __str__(self) -> str:
        return f"Export {self.pk} ({self.options.get('format', '?')}, {self.get_status_display()})"

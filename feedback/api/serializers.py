"""Input serializers validate what a client sends; output serializers shape what it gets. No writes here:
views hand validated input to the services."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from feedback.api.filters import MAX_ID, id_field
from feedback.export.options import (
    AGGREGATIONS,
    ANSWER_SOURCES,
    BOTH_BAD_POLICIES,
    EDIT_PAIRS,
    EXTRA_COLUMNS,
    FORMATS,
    KWISE_EXPANSIONS,
    OUTPUTS,
    SPLITS,
    TIE_POLICIES,
    ExportOptions,
)
from feedback.models import (
    PEOPLE,
    AnnotatorQuality,
    Comparison,
    ComparisonResponse,
    Export,
    GenerationRun,
    Judgment,
    LeaderboardReport,
    PolicyCheckpoint,
    Project,
    ProjectQuality,
    Prompt,
    Response,
    ReviewItem,
)
from feedback.quality.gold import verdict_labels
from feedback.sampling import SamplingParameters, SamplingParametersError
from feedback.selectors import annotator_pseudonym
from feedback.services.generation import MAX_CHUNK_SIZE
from feedback.services.prompts import PromptConflict

# --- projects --------------------------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    prompt_total = serializers.IntegerField(read_only=True)
    comparison_total = serializers.IntegerField(read_only=True)
    comparison_completed = serializers.IntegerField(read_only=True)
    judgment_total = serializers.IntegerField(read_only=True)

    class Meta:
        model = Project
        fields = (
            "slug",
            "name",
            "is_active",
            "comparison_mode",
            "responses_per_comparison",
            "allows_tie",
            "strength_labels",
            "rating_rubric",
            "judgments_per_comparison",
            "current_checkpoint",
            "prompt_total",
            "comparison_total",
            "comparison_completed",
            "judgment_total",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


# --- prompts ---------------------------------------------------------------------------------------------


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField()


class PromptSerializer(serializers.ModelSerializer):
    conversation = serializers.SerializerMethodField()

    class Meta:
        model = Prompt
        fields = ("id", "external_id", "category", "conversation", "metadata", "content_hash", "created_at")
        read_only_fields = fields

    @extend_schema_field(MessageSerializer(many=True))
    def get_conversation(self, prompt: Prompt) -> list[dict[str, str]]:
        return list(prompt.conversation)


class PromptUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A JSON Lines (.jsonl) or CSV (.csv) file of prompts.")
    format = serializers.ChoiceField(
        choices=["jsonl", "csv"], required=False, help_text="By default taken from the file name."
    )


class PromptConflictSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    external_id = serializers.CharField()
    changed_fields = serializers.ListField(child=serializers.CharField())
    message = serializers.CharField()

    def to_representation(self, conflict: PromptConflict) -> dict[str, Any]:
        return {
            "line": conflict.line,
            "external_id": conflict.external_id,
            "changed_fields": list(conflict.changed_fields),
            "message": str(conflict),
        }


class PromptImportReportSerializer(serializers.Serializer):
    """What an import did: new prompts, unchanged re-imports, and conflicts (stored prompts kept)."""

    created = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    conflicts = PromptConflictSerializer(many=True)
    total = serializers.IntegerField()
    summary = serializers.CharField()


# --- checkpoints -----------------------------------------------------------------------------------------


class CheckpointSerializer(serializers.ModelSerializer):
    parent_name = serializers.CharField(source="parent.name", read_only=True, allow_null=True, default=None)

    class Meta:
        model = PolicyCheckpoint
        fields = (
            "id",
            "name",
            "kind",
            "source_type",
            "source",
            "revision",
            "adapter_source",
            "adapter_revision",
            "dtype",
            "backend",
            "parent",
            "parent_name",
            "training_step",
            "notes",
            "validation_status",
            "validated_at",
            "created_at",
        )
        read_only_fields = fields


# --- generation runs -------------------------------------------------------------------------------------


class SamplingSerializer(serializers.Serializer):
    """Documents the `sampling` object; `SamplingParameters.from_dict` is what validates it."""

    temperature = serializers.FloatField(required=False, min_value=0, max_value=5)
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1)
    top_k = serializers.IntegerField(required=False, min_value=0)
    max_new_tokens = serializers.IntegerField(required=False, min_value=1)
    repetition_penalty = serializers.FloatField(required=False, min_value=0, max_value=10)
    stop_strings = serializers.ListField(child=serializers.CharField(), required=False)


@extend_schema_field(SamplingSerializer)
class SamplingField(serializers.DictField):
    """A JSON object of sampling parameters, documented as SamplingSerializer."""


class GenerationRunCreateSerializer(serializers.Serializer):
    project = serializers.SlugField(max_length=100, help_text="The project's slug.")
    checkpoint = id_field(required=False, help_text="Default: the project's current checkpoint.")
    opponent_checkpoint = id_field(
        required=False, help_text="For checkpoint-vs-checkpoint runs: each comparison pits one of each."
    )
    samples_per_prompt = serializers.IntegerField(
        required=False, min_value=1, max_value=64, help_text="Default: the project's."
    )
    sampling = SamplingField(required=False, help_text="Missing parameters take the defaults.")
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)
    chunk_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_CHUNK_SIZE, help_text="Prompts per worker task."
    )

    def validate_sampling(self, value: dict[str, Any]) -> SamplingParameters:
        try:
            sampling = SamplingParameters.from_dict(value)
        except SamplingParametersError as error:
            raise serializers.ValidationError(
                {name: [message] for name, message in error.errors.items()}
            ) from None
        return sampling


class GenerationRunStatusSerializer(serializers.ModelSerializer):
    is_finished = serializers.BooleanField(read_only=True)

    class Meta:
        model = GenerationRun
        fields = (
            "id",
            "status",
            "is_finished",
            "total_prompts",
            "done_prompts",
            "failed_prompts",
            "error",
            "started_at",
            "finished_at",
        )
        read_only_fields = fields


class GenerationRunSerializer(serializers.ModelSerializer):
    project: serializers.SlugRelatedField[Project] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    checkpoint_name = serializers.CharField(source="checkpoint.name", read_only=True)
    opponent_checkpoint_name = serializers.CharField(
        source="opponent_checkpoint.name", read_only=True, allow_null=True, default=None
    )
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    is_finished = serializers.BooleanField(read_only=True)
    sampling_parameters = serializers.SerializerMethodField()

    class Meta:
        model = GenerationRun
        fields = (
            "id",
            "project",
            "checkpoint",
            "checkpoint_name",
            "opponent_checkpoint",
            "opponent_checkpoint_name",
            "status",
            "is_finished",
            "samples_per_prompt",
            "sampling_parameters",
            "seed",
            "chunk_size",
            "total_prompts",
            "done_prompts",
            "failed_prompts",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        )
        read_only_fields = fields

    @extend_schema_field(SamplingSerializer)
    def get_sampling_parameters(self, run: GenerationRun) -> dict[str, Any]:
        return dict(run.sampling_parameters)


# --- comparisons -----------------------------------------------------------------------------------------


class ComparisonEntrySerializer(serializers.ModelSerializer):
    label = serializers.CharField(read_only=True, help_text="The position as shown: A, B, …")  # type: ignore[assignment]
    source = serializers.CharField(  # type: ignore[assignment]
        source="response.source", read_only=True, help_text="model, imported (gold items) or human."
    )
    checkpoint = serializers.SerializerMethodField(
        help_text="The checkpoint that wrote it; `people` for a person's answer; null for an imported one."
    )
    checkpoint_id = serializers.IntegerField(source="response.checkpoint_id", read_only=True, allow_null=True)
    text = serializers.CharField(source="response.text", read_only=True)
    finish_reason = serializers.CharField(source="response.finish_reason", read_only=True)

    class Meta:
        model = ComparisonResponse
        fields = (
            "position",
            "label",
            "response",
            "source",
            "checkpoint",
            "checkpoint_id",
            "text",
            "finish_reason",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_checkpoint(self, entry: ComparisonResponse) -> str | None:
        response = entry.response
        if response.checkpoint is not None:
            return response.checkpoint.name
        return PEOPLE if response.source == Response.Source.HUMAN else None


class ComparisonSerializer(serializers.ModelSerializer):
    project: serializers.SlugRelatedField[Project] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    prompt_external_id = serializers.CharField(source="prompt.external_id", read_only=True)
    entries = ComparisonEntrySerializer(many=True, read_only=True)

    class Meta:
        model = Comparison
        fields = (
            "id",
            "project",
            "prompt",
            "prompt_external_id",
            "generation_run",
            "status",
            "required_judgments",
            "judgment_count",
            "entries",
            "created_at",
            "completed_at",
        )
        read_only_fields = fields


# --- judgments -------------------------------------------------------------------------------------------


class JudgmentSerializer(serializers.ModelSerializer):
    project: serializers.SlugRelatedField[Project] = serializers.SlugRelatedField(
        source="comparison.project", slug_field="slug", read_only=True
    )
    annotator: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    ranking = serializers.ListField(
        child=serializers.IntegerField(),
        read_only=True,
        help_text="Rank per display position (1 is best; equal ranks are ties).",
    )
    flags = serializers.ListField(child=serializers.CharField(), read_only=True)
    ratings = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        read_only=True,
        help_text="Response id → rubric axis → score.",
    )

    class Meta:
        model = Judgment
        fields = (
            "id",
            "comparison",
            "project",
            "annotator",
            "choice",
            "ranking",
            "strength",
            "ratings",
            "rationale",
            "flags",
            "time_spent_ms",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


# --- exports ---------------------------------------------------------------------------------------------


class ExportOptionsSerializer(serializers.Serializer):
    """Documents export options; `ExportOptions.from_mapping` is the parser that validates them.

    Lists may also be given as one comma-separated string.
    """

    format = serializers.ChoiceField(choices=FORMATS)
    aggregation = serializers.ChoiceField(choices=AGGREGATIONS, required=False)
    projects = serializers.ListField(child=serializers.CharField(), required=False, help_text="Slugs.")
    checkpoints = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Checkpoint names (`people` for people's answers): every response compared is theirs.",
    )
    since = serializers.DateTimeField(required=False, allow_null=True)
    until = serializers.DateTimeField(required=False, allow_null=True)
    min_judgments = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    min_agreement = serializers.FloatField(required=False, min_value=0, max_value=1)
    exclude_flagged = serializers.BooleanField(required=False)
    exclude_annotators = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Usernames."
    )
    exclude_suspended = serializers.BooleanField(
        required=False, help_text="Leave out annotators suspended from their project (default true)."
    )
    min_gold_accuracy = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        help_text="Leave out annotators below this gold accuracy in their project (and those without gold).",
    )
    reviewed_only = serializers.BooleanField(
        required=False, help_text="Only comparisons a reviewer decided (default false)."
    )
    adjudicated_wins = serializers.BooleanField(
        required=False,
        help_text="Under consensus, a reviewer's decided verdict replaces the vote (default true).",
    )
    ties = serializers.ChoiceField(choices=TIE_POLICIES, required=False)
    both_bad = serializers.ChoiceField(choices=BOTH_BAD_POLICIES, required=False)
    kwise = serializers.ChoiceField(choices=KWISE_EXPANSIONS, required=False)
    margin_scale = serializers.ListField(child=serializers.FloatField(min_value=0), required=False)
    columns = serializers.ListField(child=serializers.ChoiceField(choices=EXTRA_COLUMNS), required=False)
    test_fraction = serializers.FloatField(required=False, min_value=0, max_value=0.9)
    split_salt = serializers.CharField(required=False, max_length=100)
    output = serializers.ChoiceField(choices=OUTPUTS, required=False)
    answers = serializers.ListField(
        child=serializers.ChoiceField(choices=ANSWER_SOURCES),
        required=False,
        help_text="prompt-completion formats: which answers (default written and edited; chosen adds the "
        "model answers judgments preferred).",
    )
    edit_pairs = serializers.ChoiceField(
        choices=EDIT_PAIRS,
        required=False,
        help_text="edits format: the edit over its original only, or expanded to edited > chosen > rejected.",
    )


class ExportCreateSerializer(ExportOptionsSerializer):
    snapshot_of = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="Re-export exactly the judgments of this earlier export (its snapshot) with these options.",
    )


class ExportStreamQuery(serializers.Serializer):
    """Documents the stream's query parameters: the export options (lists comma-separated or repeated)
    and `split`. `ExportOptions.from_mapping` validates them; `output` can only be jsonl here."""

    format = serializers.ChoiceField(choices=FORMATS)
    aggregation = serializers.ChoiceField(choices=AGGREGATIONS, required=False)
    projects = serializers.CharField(required=False, help_text="Slugs, comma-separated.")
    checkpoints = serializers.CharField(
        required=False, help_text="Checkpoint names (`people` for people's answers), comma-separated."
    )
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    min_judgments = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    min_agreement = serializers.FloatField(required=False, min_value=0, max_value=1)
    exclude_flagged = serializers.BooleanField(required=False)
    exclude_annotators = serializers.CharField(required=False, help_text="Usernames, comma-separated.")
    exclude_suspended = serializers.BooleanField(
        required=False, help_text="Leave out annotators suspended from their project (default true)."
    )
    min_gold_accuracy = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        help_text="Leave out annotators below this gold accuracy in their project (and those without gold).",
    )
    reviewed_only = serializers.BooleanField(
        required=False, help_text="Only comparisons a reviewer decided (default false)."
    )
    adjudicated_wins = serializers.BooleanField(
        required=False,
        help_text="Under consensus, a reviewer's decided verdict replaces the vote (default true).",
    )
    ties = serializers.ChoiceField(choices=TIE_POLICIES, required=False)
    both_bad = serializers.ChoiceField(choices=BOTH_BAD_POLICIES, required=False)
    kwise = serializers.ChoiceField(choices=KWISE_EXPANSIONS, required=False)
    margin_scale = serializers.CharField(required=False, help_text="Numbers, comma-separated.")
    columns = serializers.CharField(
        required=False, help_text=f"Comma-separated, among: {', '.join(EXTRA_COLUMNS)}."
    )
    test_fraction = serializers.FloatField(required=False, min_value=0, max_value=0.9)
    split_salt = serializers.CharField(required=False, max_length=100)
    output = serializers.ChoiceField(choices=["jsonl"], required=False)
    answers = serializers.CharField(
        required=False,
        help_text=f"prompt-completion formats, comma-separated, among: {', '.join(ANSWER_SOURCES)}.",
    )
    edit_pairs = serializers.ChoiceField(choices=EDIT_PAIRS, required=False, help_text="edits format.")
    split = serializers.ChoiceField(choices=SPLITS, required=False, help_text="Only this split.")


EXPORT_OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(ExportOptions))
EXPORT_LIST_OPTIONS = frozenset(
    field.name for field in dataclasses.fields(ExportOptions) if field.type.startswith("tuple")
)


class ExportStatusSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = ("id", "status", "error", "started_at", "finished_at", "download_url")
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_download_url(self, export: Export) -> str | None:
        if export.status != Export.Status.COMPLETED:
            return None
        return reverse("api:export-download", args=[export.pk])


class ExportSerializer(ExportStatusSerializer):
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    options = serializers.JSONField(read_only=True, help_text="The normalised options (see ExportOptions).")
    manifest = serializers.JSONField(read_only=True)

    class Meta:
        model = Export
        fields = (
            "id",
            "status",
            "options",
            "high_water_mark",
            "source_marks",
            "snapshot_digest",
            "file_name",
            "file_sha256",
            "file_size",
            "manifest",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "download_url",
        )
        read_only_fields = fields


# --- quality ---------------------------------------------------------------------------------------------


class GoldUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A JSON Lines (.jsonl) file of gold items.")


class GoldImportReportSerializer(serializers.Serializer):
    """What a gold import did: new gold items, and lines already imported (skipped)."""

    created = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    summary = serializers.CharField()


class GoldItemSerializer(serializers.Serializer):
    """A gold comparison: what annotators see, the expected verdict (by label) and how often it was
    answered."""

    comparison_id = serializers.IntegerField(source="pk")
    prompt_id = serializers.CharField(source="prompt.external_id")
    conversation = serializers.JSONField(source="prompt.conversation")
    category = serializers.CharField(source="prompt.category")
    responses = serializers.SerializerMethodField()
    expected = serializers.SerializerMethodField(help_text='The verdict by label, e.g. "A or tie".')
    verdict = serializers.JSONField(source="gold_verdict.verdict", help_text="Stored by response id.")
    explanation = serializers.CharField(source="gold_verdict.explanation")
    answers = serializers.IntegerField(source="judgment_count")
    status = serializers.CharField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(
        serializers.ListField(
            child=serializers.DictField(),
            help_text="In display order: {label (A is shown first), response_id, text}.",
        )
    )
    def get_responses(self, comparison: Comparison) -> list[dict[str, Any]]:
        return [
            {"label": entry.label, "response_id": entry.response_id, "text": entry.response.text}
            for entry in comparison.entries.all()
        ]

    def get_expected(self, comparison: Comparison) -> str:
        shown = [entry.response_id for entry in comparison.entries.all()]
        return verdict_labels(comparison.gold_verdict.verdict, response_ids=shown)


class ProjectQualitySerializer(serializers.Serializer):
    """The project's quality figures as last computed (see the README's "Quality" section): Krippendorff's
    alpha per measure, per prompt category and over time, Cohen's kappa for every pair of annotators with
    enough shared comparisons (annotators named), position bias, and gold answers."""

    project = serializers.CharField(source="project.slug")
    computed_at = serializers.DateTimeField()
    seconds = serializers.FloatField(help_text="How long the computation took.")
    high_water_mark = serializers.IntegerField(help_text="The largest judgment id the figures include.")
    report = serializers.SerializerMethodField()

    def get_report(self, quality: ProjectQuality) -> dict[str, Any]:
        report = dict(quality.report)
        names = self.context.get("usernames", {})
        report["kappa"] = {
            **report["kappa"],
            "pairs": [
                {**pair, "first": names.get(pair["first"], ""), "second": names.get(pair["second"], "")}
                for pair in report["kappa"]["pairs"]
            ],
        }
        return report


class AnnotatorQualitySerializer(serializers.ModelSerializer):
    """One annotator's figures in the project as last computed, their standing, and the anomalies they
    show, each with its reason."""

    annotator = serializers.CharField(source="annotator.username")
    status = serializers.SerializerMethodField(help_text="active, warned or suspended.")
    status_reason = serializers.SerializerMethodField()

    class Meta:
        model = AnnotatorQuality
        exclude = ("id", "project")

    def get_status(self, row: AnnotatorQuality) -> str:
        return self.context.get("standings", {}).get(row.annotator_id, ("active", ""))[0]

    def get_status_reason(self, row: AnnotatorQuality) -> str:
        return self.context.get("standings", {}).get(row.annotator_id, ("active", ""))[1]


class ReviewJudgmentSerializer(serializers.Serializer):
    """A judgment as reviewers see it: the annotator as a pseudonym, stable within the project."""

    annotator = serializers.CharField(help_text="A pseudonym, the same for one annotator across the project.")
    choice = serializers.CharField()
    ranking = serializers.ListField(child=serializers.IntegerField(), help_text="Rank per display position.")
    strength = serializers.IntegerField(allow_null=True)
    ratings = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="By response label, then axis.",
    )
    rationale = serializers.CharField(allow_blank=True)
    flags = serializers.ListField(child=serializers.CharField())
    time_spent_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class ReviewItemSerializer(serializers.Serializer):
    """A comparison in the review queue: why it is there, what was shown, every judgment, and the decision
    once taken."""

    id = serializers.IntegerField()
    comparison_id = serializers.IntegerField()
    prompt_id = serializers.CharField(source="comparison.prompt.external_id")
    category = serializers.CharField(source="comparison.prompt.category")
    conversation = serializers.JSONField(source="comparison.prompt.conversation")
    responses = serializers.SerializerMethodField()
    judgments = serializers.SerializerMethodField()
    expected = serializers.SerializerMethodField(
        help_text="A gold item's expected verdict by label, else null."
    )
    reasons = serializers.ListField(child=serializers.ChoiceField(choices=ReviewItem.Reason.choices))
    status = serializers.ChoiceField(choices=ReviewItem.Status.choices)
    verdict = serializers.JSONField(
        allow_null=True,
        help_text='Once decided: {"choice", "ranking" (rank per display position), "strength"}.',
    )
    queued_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)

    @extend_schema_field(
        serializers.ListField(
            child=serializers.DictField(), help_text="In display order: {label (A is shown first), text}."
        )
    )
    def get_responses(self, item: ReviewItem) -> list[dict[str, Any]]:
        return [
            {"label": entry.label, "text": entry.response.text} for entry in item.comparison.entries.all()
        ]

    @extend_schema_field(ReviewJudgmentSerializer(many=True))
    def get_judgments(self, item: ReviewItem) -> list[dict[str, Any]]:
        label_of = {str(entry.response_id): entry.label for entry in item.comparison.entries.all()}
        return [
            {
                "annotator": annotator_pseudonym(
                    project_id=item.project_id, annotator_id=judgment.annotator_id
                ),
                "choice": judgment.choice,
                "ranking": judgment.ranking,
                "strength": judgment.strength,
                "ratings": {label_of.get(key, key): axes for key, axes in (judgment.ratings or {}).items()},
                "rationale": judgment.rationale,
                "flags": judgment.flags,
                "time_spent_ms": judgment.time_spent_ms,
                "created_at": serializers.DateTimeField().to_representation(judgment.created_at),
            }
            for judgment in item.comparison.judgments.all()
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_expected(self, item: ReviewItem) -> str | None:
        gold = getattr(item.comparison, "gold_verdict", None) if item.comparison.is_gold else None
        if gold is None:
            return None
        shown = [entry.response_id for entry in item.comparison.entries.all()]
        return verdict_labels(gold.verdict, response_ids=shown)


class ReviewDecisionRequestSerializer(serializers.Serializer):
    """Documents a decision's body; `feedback.services.review.review_decide` validates it."""

    submission_key = serializers.CharField(
        min_length=8,
        max_length=64,
        help_text="Yours, unique per decision: a retry with it is answered as a replay.",
    )
    action = serializers.ChoiceField(
        choices=["decide", "send_back", "retire"],
        help_text="decide (with verdict), send_back (more judgments; reason required) or retire (reason required).",
    )
    verdict = serializers.JSONField(
        required=False,
        help_text='Pairwise {"choice": "a"|"b"|"tie"|"both_bad", "strength"?: 1…n}; k-wise {"ranking": [rank per '
        "display position]}.",
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class ReviewDecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField(source="item_id")
    reviewer = serializers.CharField(source="reviewer.username")
    action = serializers.CharField()
    verdict = serializers.JSONField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    previous_status = serializers.CharField(allow_blank=True)
    previous_verdict = serializers.JSONField(allow_null=True)
    created_at = serializers.DateTimeField()
    replayed = serializers.BooleanField(help_text="True when this answered a retry of a stored decision.")


# --- the leaderboard ------------------------------------------------------------------------------------


class LeaderboardQuery(serializers.Serializer):
    """Documents the leaderboard's query parameters; `LeaderboardFilters.from_mapping` validates them (the
    export's judgment filters, with the same names and meaning, plus categories and the fit's settings)."""

    categories = serializers.CharField(required=False, help_text="Prompt categories, comma-separated.")
    since = serializers.DateTimeField(required=False, help_text="Judgments made at or after this moment.")
    until = serializers.DateTimeField(required=False, help_text="Judgments made before this moment.")
    exclude_flagged = serializers.BooleanField(
        required=False, help_text="Leave out flagged judgments (default true)."
    )
    exclude_suspended = serializers.BooleanField(
        required=False, help_text="Leave out annotators suspended from the project (default true)."
    )
    min_gold_accuracy = serializers.FloatField(
        required=False, min_value=0, max_value=1, help_text="Leave out annotators below this gold accuracy."
    )
    adjudicated_wins = serializers.BooleanField(
        required=False,
        help_text="A reviewer's decided verdict replaces its judgments' verdicts (default true).",
    )
    reviewed_only = serializers.BooleanField(required=False, help_text="Only comparisons a reviewer decided.")
    both_bad = serializers.ChoiceField(
        choices=("apart", "tie"),
        required=False,
        help_text="'apart' (default): counted, left out of the fit; 'tie': half a win each.",
    )
    reference = serializers.CharField(
        required=False,
        max_length=200,
        help_text="The checkpoint shown at 1000 (default: the oldest base one).",
    )
    rounds = serializers.IntegerField(
        required=False, min_value=100, max_value=10_000, help_text="Bootstrap rounds."
    )
    seed = serializers.IntegerField(
        required=False, min_value=0, max_value=2**32 - 1, help_text="Bootstrap seed."
    )


class HeadToHeadQuery(LeaderboardQuery):
    first = serializers.CharField(
        max_length=200, help_text="A checkpoint's name, or `people` for people's answers."
    )
    second = serializers.CharField(
        max_length=200, help_text="Another checkpoint's name, or `people` for people's answers."
    )


class LeaderboardStateSerializer(serializers.Serializer):
    """Where a leaderboard stands: `pending` until a worker computed it (then ask again), `ready`, or
    `failed` (with the error). `fresh` is false when judgments arrived since it was computed: the figures
    in hand are served while the new ones are computed."""

    project = serializers.CharField(source="project.slug")
    status = serializers.ChoiceField(choices=LeaderboardReport.Status.choices)
    fresh = serializers.BooleanField()
    filters = serializers.DictField(help_text="The filters, canonical (defaults filled in).")
    computed_at = serializers.DateTimeField(allow_null=True)
    seconds = serializers.FloatField(allow_null=True, help_text="How long the computation took.")
    high_water_mark = serializers.IntegerField(help_text="The largest judgment id the figures include.")
    error = serializers.CharField(allow_blank=True)


class ScoreSerializer(serializers.Serializer):
    score = serializers.FloatField(help_text="Bradley–Terry score in logits; the reference's is 0.")
    elo = serializers.FloatField(help_text="On the Elo-like scale: 1000 + 400·score/ln 10.")
    low = serializers.FloatField(help_text="95% bootstrap interval, Elo scale.")
    high = serializers.FloatField()
    rank = serializers.IntegerField(help_text="1 + the number of checkpoints significantly better.")


class LeaderboardCheckpointSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    parent = serializers.CharField(allow_null=True)  # type: ignore[assignment]
    parent_id = serializers.IntegerField(allow_null=True)
    training_step = serializers.IntegerField(allow_null=True)
    battles = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    ties = serializers.IntegerField()
    both_bad = serializers.IntegerField()
    raw = ScoreSerializer(allow_null=True, help_text="Null when it never met the reference's group.")
    controlled = ScoreSerializer(allow_null=True, help_text="Length and markdown style held fixed.")


class AdvantageSerializer(serializers.Serializer):
    logits = serializers.FloatField()
    low = serializers.FloatField()
    high = serializers.FloatField()
    win_probability = serializers.FloatField(help_text="The response shown first against an equal one.")


class FirstAdvantageSerializer(serializers.Serializer):
    raw = AdvantageSerializer()
    controlled = AdvantageSerializer()


class StyleCoefficientSerializer(serializers.Serializer):
    feature = serializers.CharField()
    coefficient = serializers.FloatField(
        allow_null=True, help_text="Log-odds per unit of normalised difference; null when it never differs."
    )
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)


class NamedScoreSerializer(ScoreSerializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class CategoryFitSerializer(serializers.Serializer):
    category = serializers.CharField()
    battles = serializers.IntegerField()
    note = serializers.CharField(required=False)
    checkpoints = NamedScoreSerializer(many=True)


class MeanSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="95% Student t interval.")
    high = serializers.FloatField(allow_null=True)


class CheckpointMeanSerializer(MeanSerializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class AxisMeansSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    checkpoints = CheckpointMeanSerializer(many=True)


class ReferenceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class MatrixSerializer(serializers.Serializer):
    checkpoints = serializers.ListField(child=serializers.CharField(), help_text="Names, in row order.")
    battles = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()), help_text="Battles, both orders."
    )
    win_rate = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="The row's share of wins against the column, ties half; null where they never met.",
    )


class LeaderboardReportSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField()
    judgments = serializers.IntegerField()
    battles = serializers.IntegerField(help_text="Battles in the fit.")
    ties = serializers.IntegerField()
    both_bad = serializers.IntegerField()
    same_checkpoint = serializers.IntegerField(help_text="Pairs of one checkpoint's responses: no battle.")
    rankings_expanded = serializers.BooleanField()
    rounds = serializers.IntegerField()
    seed = serializers.IntegerField()
    reference = ReferenceSerializer(allow_null=True)
    notes = serializers.ListField(child=serializers.CharField())
    checkpoints = LeaderboardCheckpointSerializer(many=True)
    first_advantage = FirstAdvantageSerializer(allow_null=True)
    style = StyleCoefficientSerializer(many=True, allow_null=True)  # type: ignore[assignment]
    categories = CategoryFitSerializer(many=True)
    axes = AxisMeansSerializer(many=True)


class LeaderboardSerializer(LeaderboardStateSerializer):
    report = LeaderboardReportSerializer(allow_null=True)


class LeaderboardMatricesSerializer(LeaderboardStateSerializer):
    matrix = MatrixSerializer(allow_null=True)


class OutcomeShareSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=("wins", "losses", "ties", "both_bad"))
    share = serializers.FloatField(allow_null=True, help_text="Of all their battles, both-bad included.")
    low = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval.")
    high = serializers.FloatField(allow_null=True)


class HeadToHeadCountsSerializer(serializers.Serializer):
    wins = serializers.IntegerField(help_text="Of the first named.")
    losses = serializers.IntegerField()
    ties = serializers.IntegerField()
    both_bad = serializers.IntegerField()
    shares = OutcomeShareSerializer(many=True)
    decisive_share = serializers.FloatField(allow_null=True, help_text="Wins among wins and losses.")
    decisive_low = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval.")
    decisive_high = serializers.FloatField(allow_null=True)
    needed = serializers.IntegerField(
        allow_null=True, help_text="About how many more decisive battles would separate them at 95%."
    )


class CategoryCountsSerializer(HeadToHeadCountsSerializer):
    category = serializers.CharField()
    predicted = serializers.FloatField(
        allow_null=True, help_text="The category fit's probability that the first named wins."
    )


class AxisDifferenceSerializer(MeanSerializer):
    key = serializers.CharField(help_text="The first named's score minus the other's, by the same judgment.")
    label = serializers.CharField()  # type: ignore[assignment]


class ExampleResponseSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]
    checkpoint = serializers.CharField(allow_null=True)
    text = serializers.CharField(allow_blank=True, help_text="Model output: untrusted text.")


class ExampleSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=("wins", "losses", "ties", "both_bad"))
    judgment = serializers.IntegerField()
    comparison = serializers.IntegerField()
    conversation = serializers.ListField(child=serializers.DictField())
    category = serializers.CharField()
    responses = ExampleResponseSerializer(many=True)
    choice = serializers.CharField(help_text="The verdict that counted: a reviewer's when `reviewed`.")
    ranking = serializers.ListField(child=serializers.IntegerField())
    reviewed = serializers.BooleanField(help_text="A reviewer's decided verdict counted instead of the vote.")
    annotator_choice = serializers.CharField(help_text="What the annotator chose.")
    rationale = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class HeadToHeadSerializer(LeaderboardStateSerializer):
    first = serializers.CharField()
    second = serializers.CharField()
    met = serializers.BooleanField(help_text="False when they never met in these judgments.")
    overall = HeadToHeadCountsSerializer(allow_null=True)
    predicted = serializers.FloatField(
        allow_null=True, help_text="The raw fit's probability that the first named wins, position aside."
    )
    categories = CategoryCountsSerializer(many=True)
    axes = AxisDifferenceSerializer(many=True)
    examples = ExampleSerializer(many=True)

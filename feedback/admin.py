"""The admin: where staff run projects. Thin: lists, filters, and pages and actions calling the services.

Model output, checkpoint reports and worker errors are untrusted text: they reach HTML only through
`format_html` (or Django's escaping readonly fields), never `mark_safe`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, TextField, URLField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from feedback.models import (
    ApiToken,
    Assignment,
    Comparison,
    ComparisonResponse,
    GenerationChunk,
    GenerationRun,
    Judgment,
    PolicyCheckpoint,
    Project,
    Prompt,
    Response,
    conversation_hash,
)
from feedback.selectors import projects_with_progress
from feedback.services.generation import (
    checkpoint_validation_request,
    generation_run_cancel,
    generation_run_start,
)
from feedback.services.prompts import (
    MAX_REPORTED_ERRORS,
    PromptImportError,
    conversation_clean,
    metadata_clean,
    prompt_file_format_for,
    prompts_import,
)
from feedback.services.tokens import DEFAULT_LIFETIME, MAX_LIFETIME, api_token_create, api_token_revoke

# How many bad lines the upload page lists before summarising the rest.
IMPORT_ERRORS_SHOWN = 50

TINY_TEST_MODEL_BADGE = (
    '<span title="Random weights from make_tiny_checkpoint: its responses are noise." '
    'style="background: #777; color: #fff; border-radius: 4px; padding: 1px 5px; font-size: 0.8em; '
    'white-space: nowrap">tiny test model</span>'
)


def _percent(done: int, total: int) -> str:
    return f"{done}/{total} ({100 * done // total}%)" if total else "0/0"


def _run_progress(run: GenerationRun) -> str:
    failed = f", {run.failed_prompts} failed" if run.failed_prompts else ""
    return _percent(run.done_prompts, run.total_prompts) + failed


def _error_block(text: str) -> SafeString | str:
    """A worker's error: its first line, and the whole text (a traceback, say) folded underneath."""
    text = text.strip()
    if not text:
        return ""
    first_line = text.splitlines()[0]
    if first_line == text:
        return format_html('<span style="white-space: pre-wrap">{}</span>', text)
    return format_html(
        '<details><summary>{}</summary><pre style="white-space: pre-wrap">{}</pre></details>',
        first_line,
        text,
    )


def _key_value_table(data: Mapping[str, Any]) -> SafeString:
    """A JSON object as a two-column table; nested values are shown as JSON, everything escaped."""
    return format_html(
        "<table><tbody>{}</tbody></table>",
        format_html_join(
            "",
            '<tr><th scope="row">{}</th><td><span style="white-space: pre-wrap">{}</span></td></tr>',
            (
                (key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
                for key, value in data.items()
            ),
        ),
    )


def _field_errors(error: ValidationError) -> dict[str, list[str]]:
    """A service's ValidationError as field → messages (errors not tied to a field under NON_FIELD_ERRORS)."""
    if hasattr(error, "error_dict"):
        return error.message_dict
    return {NON_FIELD_ERRORS: error.messages}


def _run_link(run: GenerationRun) -> SafeString:
    url = reverse("admin:feedback_generationrun_change", args=[run.pk])
    return format_html(
        '<a href="{}">run {}</a> for {} ({} prompt(s) from {})',
        url,
        run.pk,
        run.project,
        run.total_prompts,
        " vs ".join(
            str(checkpoint) for checkpoint in (run.checkpoint, run.opponent_checkpoint) if checkpoint
        ),
    )


def _start_runs(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    plans: Iterable[tuple[Project, Sequence[Prompt] | None]],
) -> None:
    """Start one run per (project, prompts) with the project's defaults and report each outcome."""
    started: list[GenerationRun] = []
    for project, prompts in plans:
        try:
            started.append(generation_run_start(project=project, prompts=prompts, created_by=request.user))
        except ValidationError as error:
            reasons = "; ".join(
                message if field == NON_FIELD_ERRORS else f"{field.replace('_', ' ')}: {message}"
                for field, field_messages in _field_errors(error).items()
                for message in field_messages
            )
            model_admin.message_user(request, f"No run started for {project}: {reasons}", messages.ERROR)
    if started:
        model_admin.message_user(
            request,
            format_html(
                "Started {} generation run(s): {}.",
                len(started),
                format_html_join("; ", "{}", ((_run_link(run),) for run in started)),
            ),
            messages.SUCCESS,
        )


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class GenerationRunInline(ReadOnlyInline):
    model = GenerationRun
    fk_name = "project"
    fields = ("checkpoint", "opponent_checkpoint", "status", "progress", "created_at")
    readonly_fields = fields
    ordering = ("-created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[GenerationRun]:
        return super().get_queryset(request).select_related("checkpoint", "opponent_checkpoint")

    @admin.display(description="Prompts done")
    def progress(self, run: GenerationRun) -> str:
        return _run_progress(run)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "comparison_mode",
        "is_active",
        "prompt_count",
        "comparison_count",
        "progress",
        "current_checkpoint",
    )
    list_filter = ("is_active", "comparison_mode")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("annotators",)
    list_select_related = ("current_checkpoint",)
    readonly_fields = ("prompt_count", "comparison_count", "progress", "checkpoints_used", "created_at")
    inlines = (GenerationRunInline,)
    actions = ("generate_responses",)
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_active", "guidelines")}),
        ("Progress", {"fields": ("prompt_count", "comparison_count", "progress", "checkpoints_used")}),
        (
            "Comparisons",
            {
                "fields": (
                    "comparison_mode",
                    "responses_per_comparison",
                    "allows_tie",
                    "strength_labels",
                    "rating_rubric",
                    "judgments_per_comparison",
                    "lease_duration",
                )
            },
        ),
        (
            "Generation",
            {
                "fields": (
                    "current_checkpoint",
                    "samples_per_prompt",
                    "max_new_tokens",
                    "temperature",
                    "top_p",
                    "top_k",
                    "repetition_penalty",
                    "stop_strings",
                    "completion_template",
                    "pairing_strategy",
                    "max_comparisons_per_prompt",
                )
            },
        ),
        ("Annotators", {"fields": ("annotators",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return projects_with_progress(super().get_queryset(request))

    @admin.display(description="Prompts", ordering="prompt_total")
    def prompt_count(self, project: Project) -> int:
        return getattr(project, "prompt_total", 0)

    @admin.display(description="Comparisons", ordering="comparison_total")
    def comparison_count(self, project: Project) -> int:
        return getattr(project, "comparison_total", 0)

    @admin.display(description="Completed comparisons")
    def progress(self, project: Project) -> str:
        return _percent(getattr(project, "comparison_completed", 0), getattr(project, "comparison_total", 0))

    @admin.display(description="Checkpoints that answered")
    def checkpoints_used(self, project: Project) -> str:
        names = (
            PolicyCheckpoint.objects.filter(responses__prompt__project=project)
            .distinct()
            .order_by("name")
            .values_list("name", flat=True)
        )
        return ", ".join(names) or "none yet"

    def has_generate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("feedback.add_generationrun")

    @admin.action(description="Generate responses with the current checkpoint", permissions=["generate"])
    def generate_responses(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        projects = queryset.select_related("current_checkpoint").order_by("name")
        _start_runs(self, request, ((project, None) for project in projects))


class PromptImportForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.order_by("name"))
    file = forms.FileField(
        help_text="JSON Lines (.jsonl) or CSV (.csv). A file with any bad line imports nothing."
    )
    file_format = forms.ChoiceField(
        label="Format",
        choices=[("", "From the file name"), ("jsonl", "JSON Lines"), ("csv", "CSV")],
        required=False,
    )


class PromptForm(forms.ModelForm):
    """A prompt written by hand: the same checks as a line of an import."""

    class Meta:
        model = Prompt
        fields = ("project", "external_id", "category", "conversation", "metadata")

    def clean_conversation(self) -> list[dict[str, str]]:
        return _cleaned(conversation_clean, self.cleaned_data.get("conversation"))

    def clean_metadata(self) -> dict[str, Any]:
        return _cleaned(metadata_clean, self.cleaned_data.get("metadata"))


def _cleaned(clean: Callable[[Any], Any], value: Any) -> Any:
    try:
        return clean(value)
    except ValueError as error:
        raise ValidationError(f"{error}.") from None


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    """Prompts are imported in bulk (the list's "Import prompts") or written here one at a time. Once
    responses were generated from a prompt, its conversation and project are fixed: those responses, and
    the judgments of them, answer that text, and an export pairs them with it."""

    form = PromptForm
    list_display = ("external_id", "project", "category", "turn_count", "preview", "created_at")
    list_filter = ("project", "category")
    search_fields = ("external_id",)
    list_select_related = ("project",)
    readonly_fields = ("content_hash", "created_at", "conversation_display")
    change_list_template = "admin/feedback/prompt/change_list.html"
    fields = ("project", "external_id", "category", "conversation", "conversation_display", "metadata")
    actions = ("generate_responses",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Prompt]:
        # Whether responses exist comes with the prompt: the change page asks several times.
        answered = Exists(Response.objects.filter(prompt=OuterRef("pk")))
        return super().get_queryset(request).annotate(answered=answered)

    @staticmethod
    def _answered(prompt: Prompt | None) -> bool:
        return bool(getattr(prompt, "answered", False))  # a new prompt has none

    def get_fields(self, request: HttpRequest, obj: Prompt | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("project", "external_id", "category", "conversation", "metadata")
        if self._answered(obj):
            return ("project", "external_id", "category", "conversation_display", "metadata")
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Prompt | None = None) -> tuple[str, ...]:
        if self._answered(obj):
            return (*self.readonly_fields, "project")
        return tuple(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Prompt, form: forms.ModelForm, change: bool) -> None:
        obj.content_hash = conversation_hash(obj.conversation)
        super().save_model(request, obj, form, change)

    @admin.display(description="Turns")
    def turn_count(self, prompt: Prompt) -> int:
        return prompt.turn_count

    @admin.display(description="Last user message")
    def preview(self, prompt: Prompt) -> str:
        return prompt.preview

    @admin.display(description="Conversation")
    def conversation_display(self, prompt: Prompt) -> str:
        messages = format_html_join(
            "",
            '<p><strong>{}</strong><br><span style="white-space: pre-wrap">{}</span></p>',
            ((message.get("role", "?"), message.get("content", "")) for message in prompt.conversation or []),
        )
        if not self._answered(prompt):
            return messages
        return format_html(
            '{}<p class="help">Responses were generated from this conversation, so it can no longer change. '
            "Import or add a new prompt for other text.</p>",
            messages,
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Prompt], search_term: str
    ) -> tuple[QuerySet[Prompt], bool]:
        """Search ids and the conversation's text, within whatever filters are already applied."""
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = queryset.annotate(conversation_text=Cast("conversation", TextField())).filter(
            Q(external_id__icontains=term) | Q(conversation_text__icontains=term)
        )
        return matches, False

    def get_urls(self) -> list[URLPattern]:
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="feedback_prompt_import"),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PromptImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            project: Project = form.cleaned_data["project"]
            upload = form.cleaned_data["file"]
            try:
                file_format = form.cleaned_data["file_format"] or prompt_file_format_for(upload.name)
                report = prompts_import(project=project, source=upload, file_format=file_format)
            except ValueError as error:
                form.add_error("file_format", str(error))
            except PromptImportError as error:
                shown = [str(line_error) for line_error in error.errors[:IMPORT_ERRORS_SHOWN]]
                hidden = len(error.errors) - len(shown)
                if hidden or error.truncated:
                    at_least = "at least " if error.truncated else ""
                    shown.append(
                        f"… and {at_least}{hidden} more bad line(s) (the first {MAX_REPORTED_ERRORS} are counted)"
                    )
                form.add_error("file", [f"{upload.name}: {error}", *shown])
            else:
                self.message_user(
                    request, f"{upload.name} into {project}: {report.summary()}.", messages.SUCCESS
                )
                for conflict in report.conflicts[:IMPORT_ERRORS_SHOWN]:
                    self.message_user(request, str(conflict), messages.WARNING)
                changelist = reverse("admin:feedback_prompt_changelist")
                return HttpResponseRedirect(f"{changelist}?project__id__exact={project.pk}")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import prompts",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/feedback/prompt/import.html", context)

    def has_generate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("feedback.add_generationrun")

    @admin.action(
        description="Generate responses for the selected prompts (current checkpoint)",
        permissions=["generate"],
    )
    def generate_responses(self, request: HttpRequest, queryset: QuerySet[Prompt]) -> None:
        """One run per project, over that project's selected prompts only."""
        prompts_by_project: dict[int, list[Prompt]] = {}
        projects: dict[int, Project] = {}
        for prompt in queryset.select_related("project__current_checkpoint").order_by("project__name", "id"):
            projects.setdefault(prompt.project_id, prompt.project)
            prompts_by_project.setdefault(prompt.project_id, []).append(prompt)
        _start_runs(
            self,
            request,
            ((projects[project_id], prompts) for project_id, prompts in prompts_by_project.items()),
        )


@admin.register(PolicyCheckpoint)
class PolicyCheckpointAdmin(admin.ModelAdmin):
    list_display = (
        "name_and_label",
        "kind",
        "backend",
        "source_type",
        "source",
        "adapter_source",
        "parent",
        "training_step",
        "validation_status",
        "created_at",
    )
    list_filter = ("kind", "backend", "source_type", "validation_status", "dtype")
    search_fields = ("name", "source", "adapter_source", "notes")
    list_select_related = ("parent",)
    autocomplete_fields = ("parent",)
    readonly_fields = ("validation_status", "validated_at", "validation_report_display", "created_at")
    # Serving URLs are usually plain http inside the cluster (http://vllm:8000/v1).
    formfield_overrides = {URLField: {"assume_scheme": "http"}}
    fieldsets = (
        (None, {"fields": ("name", "kind", "parent", "training_step", "notes")}),
        (
            "Weights",
            {"fields": ("source_type", "source", "revision", "adapter_source", "adapter_revision", "dtype")},
        ),
        ("Serving", {"fields": ("backend", "api_base_url", "served_model_name", "api_key_env")}),
        (
            "Validation",
            {
                "fields": ("validation_status", "validated_at", "validation_report_display", "created_at"),
                "description": "A worker inspects the checkpoint where its files are: "
                "use the action “Validate selected checkpoints” on the list.",
            },
        ),
    )
    actions = ("validate_checkpoints",)

    @admin.display(description="Name", ordering="name")
    def name_and_label(self, checkpoint: PolicyCheckpoint) -> SafeString | str:
        if checkpoint.is_tiny_test_model:
            return format_html("{} " + TINY_TEST_MODEL_BADGE, checkpoint.name)
        return checkpoint.name

    @admin.display(description="Validation report")
    def validation_report_display(self, checkpoint: PolicyCheckpoint) -> SafeString | str:
        report = checkpoint.validation_report
        if not report:
            return "Not validated yet."
        if not isinstance(report, dict):
            return json.dumps(report, ensure_ascii=False)
        return _key_value_table(report)

    @admin.action(description="Validate selected checkpoints", permissions=["change"])
    def validate_checkpoints(self, request: HttpRequest, queryset: QuerySet[PolicyCheckpoint]) -> None:
        count = checkpoint_validation_request(checkpoints=queryset)
        self.message_user(
            request,
            f"Asked the workers to validate {count} checkpoint(s); each shows “Checking” until a worker "
            "records its verdict.",
            messages.SUCCESS,
        )


def _parse_stop_strings(text: str) -> list[str]:
    """One stop string per line; `\\n` inside a line stands for a newline. Blank lines are skipped."""
    return [line.replace("\\n", "\n") for line in text.splitlines() if line.strip()]


class GenerationRunStartForm(forms.Form):
    """What a run may override; blank means the project's setting. The service validates the values."""

    SAMPLING_FIELDS = (
        "temperature",
        "top_p",
        "top_k",
        "max_new_tokens",
        "repetition_penalty",
        "stop_strings",
    )

    project = forms.ModelChoiceField(queryset=Project.objects.select_related("current_checkpoint"))
    checkpoint = forms.ModelChoiceField(
        queryset=PolicyCheckpoint.objects.order_by("name"),
        required=False,
        help_text="Blank: the project's current checkpoint.",
    )
    opponent_checkpoint = forms.ModelChoiceField(
        queryset=PolicyCheckpoint.objects.order_by("name"),
        required=False,
        help_text="Checkpoint against checkpoint (pairwise projects): both answer every prompt and each "
        "comparison pits one response of each.",
    )
    samples_per_prompt = forms.IntegerField(required=False, help_text="Blank: the project's.")
    temperature = forms.FloatField(required=False, help_text="0 is greedy. Blank: the project's.")
    top_p = forms.FloatField(required=False, help_text="1 switches it off. Blank: the project's.")
    top_k = forms.IntegerField(required=False, help_text="0 switches it off. Blank: the project's.")
    max_new_tokens = forms.IntegerField(required=False, help_text="Blank: the project's.")
    repetition_penalty = forms.FloatField(
        required=False, help_text="1 switches it off. Blank: the project's."
    )
    stop_strings = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 40}),
        help_text="One per line, spaces kept; write \\n for a newline inside one (e.g. \\nUser:). "
        "Blank: the project's.",
    )
    seed = forms.IntegerField(required=False, help_text="Blank: a random seed (recorded on the run).")
    chunk_size = forms.IntegerField(required=False, help_text="Prompts per worker task. Blank: the default.")

    def sampling_overrides(self) -> dict[str, Any] | None:
        """The project's sampling defaults with the given fields replaced; None when none was given."""
        values = {**self.cleaned_data, "stop_strings": _parse_stop_strings(self.cleaned_data["stop_strings"])}
        given = {name: values[name] for name in self.SAMPLING_FIELDS if values[name] not in (None, [])}
        if not given:
            return None
        project: Project = self.cleaned_data["project"]
        return {**project.sampling_parameters().as_dict(), **given}


class GenerationChunkInline(ReadOnlyInline):
    model = GenerationChunk
    fields = ("index", "checkpoint", "status", "attempts", "error_display", "heartbeat_at")
    readonly_fields = fields
    ordering = ("index", "checkpoint_id")
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[GenerationChunk]:
        return super().get_queryset(request).select_related("checkpoint")

    @admin.display(description="Error")
    def error_display(self, chunk: GenerationChunk) -> SafeString | str:
        return _error_block(chunk.error)


@admin.register(GenerationRun)
class GenerationRunAdmin(admin.ModelAdmin):
    """Runs are started from the start page or the actions and moved on by workers, never edited here:
    saving a form would write back counters that workers are updating."""

    list_display = ("id", "project", "checkpoint", "opponent_checkpoint", "status", "progress", "created_at")
    list_filter = ("status", "project")
    list_select_related = ("project", "checkpoint", "opponent_checkpoint")
    search_fields = ("checkpoint__name", "project__name")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "project",
                    "checkpoint",
                    "opponent_checkpoint",
                    "status",
                    "progress",
                    "chunk_summary",
                    "error_display",
                )
            },
        ),
        ("Sampling", {"fields": ("samples_per_prompt", "sampling_parameters_display", "seed", "chunk_size")}),
        ("History", {"fields": ("created_by", "created_at", "started_at", "finished_at")}),
    )
    # View-only: every field shown is read-only.
    readonly_fields = flatten_fieldsets(fieldsets)
    inlines = (GenerationChunkInline,)
    actions = ("cancel_runs",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("feedback.change_generationrun")

    def get_urls(self) -> list[URLPattern]:
        return [
            path("start/", self.admin_site.admin_view(self.start_view), name="feedback_generationrun_start"),
            *super().get_urls(),
        ]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The generic add form would let staff write a run without its chunks; the start page calls the
        # service instead (and posts to its own URL).
        return self.start_view(request)

    def start_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = GenerationRunStartForm(request.POST or None, initial={"project": request.GET.get("project")})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                run = generation_run_start(
                    project=data["project"],
                    checkpoint=data["checkpoint"],
                    opponent_checkpoint=data["opponent_checkpoint"],
                    samples_per_prompt=data["samples_per_prompt"],
                    sampling=form.sampling_overrides(),
                    seed=data["seed"],
                    chunk_size=data["chunk_size"],
                    created_by=request.user,
                )
            except ValidationError as error:
                for field, field_messages in _field_errors(error).items():
                    for message in field_messages:
                        form.add_error(field if field in form.fields else None, message)
            else:
                self.message_user(
                    request,
                    format_html("Started {}: {} chunk(s) queued.", _run_link(run), run.chunks.count()),
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:feedback_generationrun_change", args=[run.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a generation run",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/feedback/generationrun/start.html", context)

    @admin.display(description="Prompts done")
    def progress(self, run: GenerationRun) -> str:
        return _run_progress(run)

    @admin.display(description="Chunks")
    def chunk_summary(self, run: GenerationRun) -> str:
        counts = dict(
            run.chunks.order_by().values("status").annotate(count=Count("id")).values_list("status", "count")
        )
        return ", ".join(
            f"{counts[status]} {label.lower()}"
            for status, label in GenerationChunk.Status.choices
            if status in counts
        )

    @admin.display(description="Error")
    def error_display(self, run: GenerationRun) -> SafeString | str:
        return _error_block(run.error)

    @admin.display(description="Sampling parameters")
    def sampling_parameters_display(self, run: GenerationRun) -> SafeString:
        return _key_value_table(run.sampling_parameters or {})

    @admin.action(description="Cancel selected runs", permissions=["cancel"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[GenerationRun]) -> None:
        cancelled: list[int] = []
        finished: list[int] = []
        for run in queryset.order_by("id"):
            (cancelled if generation_run_cancel(run=run) else finished).append(run.pk)
        summary = f"Cancelled {len(cancelled)} run(s)."
        if finished:
            summary += f" {len(finished)} had already finished: " + ", ".join(map(str, finished)) + "."
        self.message_user(request, summary, messages.SUCCESS if cancelled else messages.WARNING)


RESPONSE_FIELDS = (
    "prompt",
    "checkpoint",
    "run",
    "sample_index",
    "text",
    "sampling_parameters",
    "seed",
    "token_count",
    "finish_reason",
    "latency_seconds",
)


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "prompt",
        "checkpoint",
        "run",
        "sample_index",
        "token_count",
        "finish_reason",
        "latency",
    )
    list_filter = ("checkpoint", "finish_reason", "prompt__project")
    list_select_related = ("prompt", "checkpoint", "run")
    search_fields = ("text", "prompt__external_id")
    raw_id_fields = ("prompt", "run")

    def get_fields(self, request: HttpRequest, obj: Response | None = None) -> tuple[str, ...]:
        if obj is None:
            return RESPONSE_FIELDS
        # A stored response's text is model output: shown, escaped, never edited in a textarea.
        return (*("text_display" if name == "text" else name for name in RESPONSE_FIELDS), "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Response | None = None) -> tuple[str, ...]:
        return ("text_display", "created_at") if obj is not None else ()

    @admin.display(description="Text")
    def text_display(self, response: Response) -> SafeString:
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', response.text)

    @admin.display(description="Latency (s)", ordering="latency_seconds")
    def latency(self, response: Response) -> str:
        return "" if response.latency_seconds is None else f"{response.latency_seconds:.2f}"


class ComparisonResponseInline(ReadOnlyInline):
    model = ComparisonResponse
    fields = ("label", "response", "response_text")
    readonly_fields = fields
    show_change_link = False

    @admin.display(description="Text")
    def response_text(self, entry: ComparisonResponse) -> str:
        return format_html('<span style="white-space: pre-wrap">{}</span>', entry.response.text[:2_000])


class JudgmentInline(ReadOnlyInline):
    model = Judgment
    fields = (
        "annotator",
        "choice",
        "ranking",
        "strength",
        "ratings",
        "flags",
        "time_spent",
        "rationale",
        "created_at",
    )
    readonly_fields = fields
    ordering = ("created_at", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Judgment]:
        return super().get_queryset(request).select_related("annotator")

    @admin.display(description="Time spent (s)", ordering="time_spent_ms")
    def time_spent(self, judgment: Judgment) -> str:
        if judgment.time_spent_ms is None:
            return self.get_empty_value_display()
        return f"{judgment.time_spent_ms / 1000:.1f}"


class AssignmentInline(ReadOnlyInline):
    """The comparison's open leases only: who holds a place now, and whether the sweep is late for it.
    Finished assignments are on the assignment list."""

    model = Assignment
    verbose_name = "open lease"
    verbose_name_plural = "open leases"
    fields = ("annotator", "leased_at", "expires_at", "overdue")
    readonly_fields = fields
    ordering = ("expires_at", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Assignment]:
        return super().get_queryset(request).filter(state=Assignment.State.LEASED).select_related("annotator")

    @admin.display(description="Overdue", boolean=True)
    def overdue(self, assignment: Assignment) -> bool:
        return assignment.expires_at <= timezone.now()


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """For rows only services write (leases, judgments, statistics): staff read them, nobody edits them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ComparisonForm(forms.ModelForm):
    class Meta:
        model = Comparison
        fields = ("status", "required_judgments")

    def clean_required_judgments(self) -> int:
        required = self.cleaned_data["required_judgments"]
        if self.instance.pk is not None:
            judged, leased = (
                Comparison.objects.filter(pk=self.instance.pk)
                .values_list("judgment_count", "lease_count")
                .get()
            )
            if required < judged + leased:
                raise ValidationError(
                    f"This comparison already has {judged} judgments and {leased} open leases; "
                    f"it cannot require fewer than {judged + leased}."
                )
        return required


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    """Comparisons come from generation runs. Staff may retire or reopen one and change its overlap; the
    counters belong to the assignment engine and are never written from this page."""

    form = ComparisonForm
    list_display = ("id", "project", "prompt", "status", "judgments", "open_leases", "created_at")
    list_filter = ("status", "project")
    list_select_related = ("project", "prompt")
    search_fields = ("prompt__external_id",)
    fields = (
        "project",
        "prompt",
        "generation_run",
        "status",
        "required_judgments",
        "judgment_count",
        "lease_count",
        "created_at",
        "completed_at",
    )
    readonly_fields = (
        "project",
        "prompt",
        "generation_run",
        "judgment_count",
        "lease_count",
        "created_at",
        "completed_at",
    )
    inlines = (ComparisonResponseInline, JudgmentInline, AssignmentInline)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Comparison, form: forms.ModelForm, change: bool) -> None:
        # Only the fields this form changed: the counters move under concurrent submissions, and writing
        # back this page's copy of them would break the overlap rule.
        obj.save(update_fields=form.changed_data)

    @admin.display(description="Judgments", ordering="judgment_count")
    def judgments(self, comparison: Comparison) -> str:
        return f"{comparison.judgment_count}/{comparison.required_judgments}"

    @admin.display(description="Open leases", ordering="lease_count")
    def open_leases(self, comparison: Comparison) -> int:
        return comparison.lease_count


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyModelAdmin):
    """Leases are the assignment engine's bookkeeping: readable here, changed only by the engine."""

    list_display = ("id", "comparison", "annotator", "state", "leased_at", "expires_at", "skip_reason")
    list_filter = ("state", "comparison__project")
    list_select_related = ("comparison", "annotator")
    search_fields = ("annotator__username",)


@admin.register(Judgment)
class JudgmentAdmin(ReadOnlyModelAdmin):
    """Judgments are the audit record: staff may read them, nobody edits or deletes them here."""

    list_display = ("id", "comparison", "annotator", "choice", "strength", "flag_list", "created_at")
    list_filter = ("choice", "comparison__project")
    list_select_related = ("comparison", "annotator")
    search_fields = ("annotator__username", "rationale")

    @admin.display(description="Flags")
    def flag_list(self, judgment: Judgment) -> str:
        return ", ".join(judgment.flags or [])


# --- API tokens --------------------------------------------------------------------------------------------


class ApiTokenCreateForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        help_text="The token acts as this user, with this user's role.",
    )
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'nightly export job'.")
    days = forms.IntegerField(
        label="Lifetime (days)",
        min_value=1,
        max_value=MAX_LIFETIME.days,
        initial=DEFAULT_LIFETIME.days,
        help_text=f"Every token expires; at most {MAX_LIFETIME.days} days.",
    )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created here through the service, which returns the secret once: the page after
    creation shows it and nothing stores it. Tokens are never edited, only revoked (or deleted); the
    stored hash is shown nowhere."""

    list_display = ("name", "user", "prefix", "state", "created_at", "expires_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    fields = ("name", "user", "prefix", "state", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields
    actions = ("revoke_tokens",)

    @admin.display(description="State")
    def state(self, token: ApiToken) -> str:
        if token.revoked_at is not None:
            return "revoked"
        if token.expires_at <= timezone.now():
            return "expired"
        return "active"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("feedback.change_apitoken")

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = sum(api_token_revoke(token=token) for token in queryset)
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiTokenCreateForm(request.POST or None)
        context: dict[str, Any] = {**self.admin_site.each_context(request), "opts": self.model._meta}
        if request.method == "POST" and form.is_valid():
            try:
                token, secret = api_token_create(
                    user=form.cleaned_data["user"],
                    name=form.cleaned_data["name"],
                    lifetime=timedelta(days=form.cleaned_data["days"]),
                )
            except ValidationError as error:
                for field, field_messages in _field_errors(error).items():
                    form.add_error(
                        {"lifetime": "days", "name": "name", "user": "user"}.get(field), field_messages
                    )
            else:
                self.log_addition(request, token, [{"added": {}}])
                context.update({"title": "API token created", "token": token, "secret": secret})
                response = TemplateResponse(request, "admin/feedback/apitoken/created.html", context)
                response["Cache-Control"] = "no-store"
                return response
        context.update({"title": "Add API token", "form": form})
        return TemplateResponse(request, "admin/feedback/apitoken/add.html", context)


# The export page lives in its own module; importing it registers it.
from feedback import admin_exports  # noqa: E402, F401

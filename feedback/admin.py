"""The admin: where staff run projects. Thin: lists, filters, and the import page calling the service."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from feedback.models import (
    Assignment,
    Comparison,
    ComparisonResponse,
    GenerationRun,
    Judgment,
    PolicyCheckpoint,
    Project,
    Prompt,
    Response,
)
from feedback.selectors import projects_with_progress
from feedback.services.prompts import (
    MAX_REPORTED_ERRORS,
    PromptImportError,
    prompt_file_format_for,
    prompts_import,
)

# How many bad lines the upload page lists before summarising the rest.
IMPORT_ERRORS_SHOWN = 50


def _percent(done: int, total: int) -> str:
    return f"{done}/{total} ({100 * done // total}%)" if total else "0/0"


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
    fields = (
        "checkpoint",
        "opponent_checkpoint",
        "status",
        "total_prompts",
        "done_prompts",
        "failed_prompts",
    )
    readonly_fields = fields
    ordering = ("-created_at",)


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
                    "completion_template",
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


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("external_id", "project", "category", "turn_count", "preview", "created_at")
    list_filter = ("project", "category")
    search_fields = ("external_id",)
    list_select_related = ("project",)
    readonly_fields = ("content_hash", "created_at", "conversation_display")
    change_list_template = "admin/feedback/prompt/change_list.html"
    fields = ("project", "external_id", "category", "conversation", "conversation_display", "metadata")

    @admin.display(description="Turns")
    def turn_count(self, prompt: Prompt) -> int:
        return prompt.turn_count

    @admin.display(description="Last user message")
    def preview(self, prompt: Prompt) -> str:
        return prompt.preview

    @admin.display(description="Conversation")
    def conversation_display(self, prompt: Prompt) -> str:
        return format_html_join(
            "",
            '<p><strong>{}</strong><br><span style="white-space: pre-wrap">{}</span></p>',
            ((message.get("role", "?"), message.get("content", "")) for message in prompt.conversation or []),
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


@admin.register(PolicyCheckpoint)
class PolicyCheckpointAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "source_type",
        "source",
        "adapter_source",
        "parent",
        "training_step",
        "validation_status",
        "created_at",
    )
    list_filter = ("kind", "source_type", "validation_status", "dtype")
    search_fields = ("name", "source", "adapter_source", "notes")
    list_select_related = ("parent",)
    autocomplete_fields = ("parent",)
    readonly_fields = ("validation_status", "validation_report", "validated_at", "created_at")


@admin.register(GenerationRun)
class GenerationRunAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "checkpoint", "opponent_checkpoint", "status", "progress", "created_at")
    list_filter = ("status", "project")
    list_select_related = ("project", "checkpoint", "opponent_checkpoint")
    search_fields = ("checkpoint__name", "project__name")
    readonly_fields = (
        "status",
        "total_prompts",
        "done_prompts",
        "failed_prompts",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )

    @admin.display(description="Prompts done")
    def progress(self, run: GenerationRun) -> str:
        failed = f", {run.failed_prompts} failed" if run.failed_prompts else ""
        return _percent(run.done_prompts, run.total_prompts) + failed


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
    fields = ("annotator", "choice", "ranking", "strength", "flags", "created_at")
    readonly_fields = fields


class AssignmentInline(ReadOnlyInline):
    model = Assignment
    fields = ("annotator", "state", "leased_at", "expires_at")
    readonly_fields = fields


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "prompt", "status", "judgments", "created_at")
    list_filter = ("status", "project")
    list_select_related = ("project", "prompt")
    search_fields = ("prompt__external_id",)
    raw_id_fields = ("prompt", "generation_run")
    readonly_fields = ("judgment_count", "created_at", "completed_at")
    inlines = (ComparisonResponseInline, JudgmentInline, AssignmentInline)

    @admin.display(description="Judgments", ordering="judgment_count")
    def judgments(self, comparison: Comparison) -> str:
        return f"{comparison.judgment_count}/{comparison.required_judgments}"


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "comparison", "annotator", "state", "leased_at", "expires_at")
    list_filter = ("state", "comparison__project")
    list_select_related = ("comparison", "annotator")
    search_fields = ("annotator__username",)
    raw_id_fields = ("comparison",)


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    """Judgments are the audit record: staff may read them, nobody edits or deletes them here."""

    list_display = ("id", "comparison", "annotator", "choice", "strength", "flag_list", "created_at")
    list_filter = ("choice", "comparison__project")
    list_select_related = ("comparison", "annotator")
    search_fields = ("annotator__username", "rationale")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Flags")
    def flag_list(self, judgment: Judgment) -> str:
        return ", ".join(judgment.flags or [])

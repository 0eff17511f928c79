"""Generation runs: the start page and the actions that start runs through the service, the run's
chunks, cancelling. Runs are never edited here; workers move them on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from feedback.admin.common import ReadOnlyInline, field_errors, key_value_table, percent
from feedback.admin.settings_fields import EscapedLinesField
from feedback.models import GenerationChunk, GenerationRun, PolicyCheckpoint, Project, Prompt
from feedback.services.generation import generation_run_cancel, generation_run_start


def run_progress(run: GenerationRun) -> str:
    failed = f", {run.failed_prompts} failed" if run.failed_prompts else ""
    return percent(run.done_prompts, run.total_prompts) + failed


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


def start_runs(
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
                for field, field_messages in field_errors(error).items()
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
    stop_strings = EscapedLinesField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 40}),
        help_text="One per line, spaces kept; write \\n for a newline inside one (e.g. \\nUser:), \\t for "
        "a tab, \\\\ for a backslash. Blank: the project's.",
    )
    seed = forms.IntegerField(required=False, help_text="Blank: a random seed (recorded on the run).")
    chunk_size = forms.IntegerField(required=False, help_text="Prompts per worker task. Blank: the default.")

    def sampling_overrides(self) -> dict[str, Any] | None:
        """The project's sampling defaults with the given fields replaced; None when none was given."""
        values = self.cleaned_data
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
                for field, field_messages in field_errors(error).items():
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
        return run_progress(run)

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
        return key_value_table(run.sampling_parameters or {})

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

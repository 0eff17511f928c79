"""What annotators judge and what they leave: responses, comparisons (with their responses, judgments
and open leases inline), assignments and judgments. Counters and leases belong to the assignment engine;
judgments are the audit record: these pages read them and never write them.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from feedback.admin.common import ReadOnlyInline, ReadOnlyModelAdmin
from feedback.models import Assignment, Comparison, ComparisonResponse, Judgment, Response

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

"""What annotators judge and what they leave: responses, comparisons (with their responses, judgments
and open leases inline), assignments and judgments. Counters and leases belong to the assignment engine;
judgments are the audit record: these pages read them and never write them.

Gold items are comparisons too: the list filters them, a gold comparison's page shows its verdict by
label, "Mark as gold" (`GoldMarkForm`) makes one gold or changes its verdict, and "Import gold items"
(`GoldImportForm`) reads a JSON Lines file; both call `feedback.services.gold`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from feedback.admin.common import (
    ReadOnlyInline,
    ReadOnlyModelAdmin,
    import_error_messages,
    local_time,
    staff_user,
)
from feedback.models import (
    Assignment,
    Comparison,
    ComparisonResponse,
    GoldVerdict,
    Judgment,
    Project,
    Response,
)
from feedback.quality.gold import VerdictInvalid, labels_from_text, verdict_labels
from feedback.services.gold import EXPLANATION_MAX_CHARS, GoldInvalid, comparison_mark_gold, gold_import
from feedback.services.prompts import PromptImportError
from feedback.verdicts import verdict_text

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

    def clean_status(self) -> str:
        status = self.cleaned_data["status"]
        if self.instance.is_gold and status == Comparison.Status.COMPLETED:
            raise ValidationError("A gold comparison never completes; retire it to stop serving it.")
        return status

    def clean_required_judgments(self) -> int:
        # Not on a gold comparison's page (read-only there: any number of annotators answer gold).
        required = self.cleaned_data.get("required_judgments")
        if required is None:
            raise ValidationError("Say how many annotators judge this comparison.")
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


class GoldMarkForm(forms.Form):
    expected = forms.CharField(
        label="Expected verdict",
        max_length=200,
        help_text='By label, A being the response shown first. Pairwise: "A", or the outcomes that count as '
        'right, such as "A, tie" or "B, both bad". Rankings: the best response ("C"), or the whole order, '
        'best first, with ties: "C > A > B", "A = C > B".',
    )
    explanation = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        max_length=EXPLANATION_MAX_CHARS,
        help_text="Why this is the answer: for reviewers, never shown to annotators.",
    )


class GoldImportForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.order_by("name"))
    file = forms.FileField(
        help_text="JSON Lines (.jsonl): one gold item a line. A file with any bad line imports nothing."
    )


def comparison_labelled_texts(comparison: Comparison) -> list[tuple[str, str]]:
    """The comparison's responses as (label, text) in display order: what A, B, … of a verdict name."""
    return [(entry.label, entry.response.text) for entry in comparison.entries.select_related("response")]


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    """Comparisons come from generation runs (gold items also from a gold file). Staff may retire or reopen
    one and change its overlap, and make one gold; the counters belong to the assignment engine and are
    never written from this page."""

    form = ComparisonForm
    list_display = ("id", "is_gold", "project", "prompt", "status", "judgments", "open_leases", "created_at")
    list_filter = ("status", "is_gold", "project")
    change_list_template = "admin/feedback/comparison/change_list.html"
    change_form_template = "admin/feedback/comparison/change_form.html"
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

    def has_gold_permission(self, request: HttpRequest) -> bool:
        """Who may write gold verdicts: marking a comparison, importing a file."""
        return request.user.has_perm("feedback.add_goldverdict")

    def get_fields(self, request: HttpRequest, obj: Comparison | None = None) -> tuple[str, ...]:
        fields = tuple(self.fields or ())
        return (*fields, "gold_verdict_display") if obj is not None and obj.is_gold else fields

    def get_readonly_fields(self, request: HttpRequest, obj: Comparison | None = None) -> tuple[str, ...]:
        if obj is not None and obj.is_gold:
            return (*self.readonly_fields, "required_judgments", "gold_verdict_display")
        return tuple(self.readonly_fields)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        context["has_gold_permission"] = self.has_gold_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "has_gold_permission": self.has_gold_permission(request)}
        return super().changelist_view(request, extra_context)

    @admin.display(description="Gold verdict")
    def gold_verdict_display(self, comparison: Comparison) -> SafeString | str:
        gold = GoldVerdict.objects.filter(comparison=comparison).select_related("created_by").first()
        if gold is None:
            return "Being written: this gold item grades nobody yet."
        response_ids = [entry.response_id for entry in comparison.entries.order_by("position")]
        return format_html(
            '<strong>{}</strong><br><span style="white-space: pre-wrap">{}</span><br>'
            '<span class="quiet">Written by {}, last changed {}.</span>',
            verdict_labels(gold.verdict, response_ids=response_ids),
            gold.explanation or "No explanation.",
            gold.created_by or "an import",
            local_time(gold.updated_at),
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "import-gold/",
                self.admin_site.admin_view(self.gold_import_view),
                name="feedback_comparison_gold_import",
            ),
            path(
                "<path:object_id>/gold/",
                self.admin_site.admin_view(self.gold_mark_view),
                name="feedback_comparison_gold",
            ),
            *super().get_urls(),
        ]

    def gold_mark_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Make one comparison gold, or change its verdict, with the verdict written by label."""
        if not self.has_gold_permission(request):
            raise PermissionDenied
        comparison = self.get_object(request, unquote(object_id))
        if comparison is None:
            raise Http404("No such comparison.")
        gold = GoldVerdict.objects.filter(comparison=comparison).first()
        response_ids = [entry.response_id for entry in comparison.entries.order_by("position")]
        initial = {}
        if gold is not None:
            initial = {
                "expected": verdict_labels(gold.verdict, response_ids=response_ids),
                "explanation": gold.explanation,
            }
        form = GoldMarkForm(request.POST or None, initial=initial)
        is_ranking = comparison.project.comparison_mode == Project.ComparisonMode.RANKING
        if request.method == "POST" and form.is_valid():
            try:
                expected = labels_from_text(form.cleaned_data["expected"], is_ranking=is_ranking)
                comparison_mark_gold(
                    comparison_id=comparison.pk,
                    expected=expected,
                    explanation=form.cleaned_data["explanation"],
                    actor=staff_user(request),
                )
            except VerdictInvalid as error:
                form.add_error("expected", str(error))
            except GoldInvalid as error:
                form.add_error(None, str(error))
            else:
                self.message_user(
                    request,
                    f"Comparison {comparison.pk} is gold: {form.cleaned_data['expected']}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:feedback_comparison_change", args=[comparison.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Gold verdict of comparison {comparison.pk}"
            if gold
            else f"Mark comparison {comparison.pk} as gold",
            "form": form,
            "opts": self.opts,
            "comparison": comparison,
            "responses": comparison_labelled_texts(comparison),
            "is_gold": gold is not None,
        }
        return TemplateResponse(request, "admin/feedback/comparison/gold.html", context)

    def gold_import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_gold_permission(request):
            raise PermissionDenied
        form = GoldImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            project: Project = form.cleaned_data["project"]
            upload = form.cleaned_data["file"]
            try:
                report = gold_import(project=project, source=upload, actor=staff_user(request))
            except PromptImportError as error:
                form.add_error("file", import_error_messages(upload.name, error))
            else:
                self.message_user(
                    request, f"{upload.name} into {project}: {report.summary()}.", messages.SUCCESS
                )
                changelist = reverse("admin:feedback_comparison_changelist")
                return HttpResponseRedirect(f"{changelist}?is_gold__exact=1&project__id__exact={project.pk}")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import gold items",
            "form": form,
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/feedback/comparison/gold_import.html", context)

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

    list_display = ("id", "comparison", "annotator", "verdict", "strength_label", "flag_list", "created_at")
    list_filter = ("choice", "comparison__project")
    list_select_related = ("comparison__project", "annotator")
    search_fields = ("annotator__username", "rationale")
    fields = (
        "comparison",
        "annotator",
        "assignment",
        "verdict",
        "strength_label",
        "choice",
        "ranking",
        "ratings",
        "rationale",
        "flags",
        "time_spent_ms",
        "submission_key",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="Verdict", ordering="choice")
    def verdict(self, judgment: Judgment) -> str:
        """Pairwise: A, B, tie or both bad; a ranking: the labels best first, `=` between equal ranks."""
        return verdict_text(judgment.choice, judgment.ranking)

    @admin.display(description="Strength", ordering="strength")
    def strength_label(self, judgment: Judgment) -> str:
        """The project's label for the strength given (its number where the project has no label)."""
        if judgment.strength is None:
            return "—"
        labels = judgment.comparison.project.strength_labels or []
        if 1 <= judgment.strength <= len(labels):
            return str(labels[judgment.strength - 1])
        return str(judgment.strength)

    @admin.display(description="Flags")
    def flag_list(self, judgment: Judgment) -> str:
        return ", ".join(judgment.flags or [])

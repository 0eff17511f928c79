"""The admin's export page: a form over the export options, the list of exports, downloads.

Imported, and so registered, by `feedback.admin`. The form hands its values to `ExportOptions.from_mapping` (the same
parser as the REST API and the command), so every rule and message is shared; its errors land on the
form fields they name.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from feedback.export.options import (
    AGGREGATIONS,
    ANSWER_SOURCES,
    BOTH_BAD_POLICIES,
    DEFAULT_ANSWER_SOURCES,
    EDIT_PAIRS,
    EXTRA_COLUMNS,
    FORMATS,
    KWISE_EXPANSIONS,
    OUTPUTS,
    TIE_POLICIES,
    ExportOptions,
    ExportOptionsError,
)
from feedback.models import PEOPLE, Export, PolicyCheckpoint, Project
from feedback.services.exports import export_archive, export_create, export_options
from feedback.views import export_archive_response


def _choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=_choices(FORMATS))
    aggregation = forms.ChoiceField(choices=_choices(AGGREGATIONS), initial="raw")
    output = forms.ChoiceField(choices=_choices(OUTPUTS), initial="jsonl", label="File format")
    projects = forms.ModelMultipleChoiceField(
        queryset=Project.objects.order_by("slug"),
        to_field_name="slug",
        required=False,
        help_text="None: all.",
    )
    checkpoints = forms.MultipleChoiceField(
        required=False,
        help_text=f"Only comparisons whose every response comes from these checkpoints ({PEOPLE}: people's "
        "answers). None: all.",
    )
    since = forms.DateTimeField(required=False, help_text="Judgments made at or after this time.")
    until = forms.DateTimeField(required=False, help_text="Judgments made before this time.")
    min_judgments = forms.IntegerField(initial=1, min_value=1, max_value=1000)
    min_agreement = forms.FloatField(initial=0.0, min_value=0.0, max_value=1.0)
    exclude_flagged = forms.BooleanField(initial=True, required=False, label="Leave out flagged judgments")
    exclude_annotators = forms.CharField(required=False, help_text="Usernames, comma-separated.")
    exclude_suspended = forms.BooleanField(
        initial=True, required=False, label="Leave out annotators suspended from their project"
    )
    min_gold_accuracy = forms.FloatField(
        initial=0.0,
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="Leave out annotators below this gold accuracy in their project (and, above 0, those "
        "without gold answers). 0: keep everyone.",
    )
    reviewed_only = forms.BooleanField(required=False, label="Only comparisons a reviewer decided")
    adjudicated_wins = forms.BooleanField(
        initial=True, required=False, label="Under consensus, a reviewer's verdict replaces the vote"
    )
    ties = forms.ChoiceField(choices=_choices(TIE_POLICIES), initial="drop")
    both_bad = forms.ChoiceField(
        choices=[("", "format's default"), *_choices(BOTH_BAD_POLICIES)], required=False, label="Both bad"
    )
    kwise = forms.ChoiceField(
        choices=_choices(KWISE_EXPANSIONS), initial="all-pairs", label="k-wise to pairs"
    )
    margin_scale = forms.CharField(
        required=False, help_text="Margins per strength level, comma-separated, e.g. 0.5,1,2. Empty: 1, 2, 3…"
    )
    columns = forms.MultipleChoiceField(
        choices=_choices(EXTRA_COLUMNS), required=False, widget=forms.CheckboxSelectMultiple
    )
    test_fraction = forms.FloatField(initial=0.0, min_value=0.0, max_value=0.9)
    split_salt = forms.CharField(initial="rankwise", max_length=100)
    answers = forms.MultipleChoiceField(
        choices=_choices(ANSWER_SOURCES),
        initial=list(DEFAULT_ANSWER_SOURCES),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="People's answers",
        help_text="prompt-completion formats: written (demonstrations), edited (model answers people "
        "improved), chosen (the model answers judgments preferred).",
    )
    edit_pairs = forms.ChoiceField(
        choices=_choices(EDIT_PAIRS),
        initial="edit-over-original",
        required=False,
        label="Edit pairs",
        help_text="edits format: the edit over its original, or expanded to edited > chosen > rejected.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = PolicyCheckpoint.objects.order_by("name").values_list("name", flat=True)
        field = self.fields["checkpoints"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [*_choices(tuple(names)), (PEOPLE, f"{PEOPLE} (people's answers)")]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        data = {name: value for name, value in cleaned.items() if value not in (None, "")}
        data["projects"] = [project.slug for project in cleaned.get("projects") or []]
        data["checkpoints"] = list(cleaned.get("checkpoints") or [])
        if "columns" not in self.data and cleaned.get("aggregation") == "consensus":
            data.pop("columns", None)
        if not data.get("answers"):
            data.pop("answers", None)
        try:
            self.options = ExportOptions.from_mapping(data)
        except ExportOptionsError as error:
            for field, field_messages in error.errors.items():
                self.add_error(field if field in self.fields else None, field_messages)
        return cleaned


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("id", "format_display", "status", "rows_display", "created_by", "created_at", "download")
    list_filter = ("status",)
    ordering = ("-created_at", "-id")
    readonly_fields = (
        "status",
        "options",
        "high_water_mark",
        "standing_mark",
        "review_mark",
        "quality_mark",
        "snapshot_digest",
        "manifest",
        "file_name",
        "file_sha256",
        "file_size",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "download",
    )
    actions = ("export_again",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Export]:
        return super().get_queryset(request).select_related("created_by")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Format")
    def format_display(self, export: Export) -> str:
        options = export.options
        return f"{options.get('format')} · {options.get('aggregation')} · {options.get('output')}"

    @admin.display(description="Rows")
    def rows_display(self, export: Export) -> str:
        rows = (export.manifest or {}).get("rows") or {}
        return ", ".join(f"{split} {count}" for split, count in rows.items()) or "—"

    @admin.display(description="Download")
    def download(self, export: Export) -> str:
        if export.status != Export.Status.COMPLETED:
            return "—"
        url = reverse("admin:feedback_export_download", args=[export.pk])
        return format_html('<a href="{}">{}</a>', url, export.file_name)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:export_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="feedback_export_download",
            ),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ExportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            export = export_create(options=form.options, created_by=request.user)
            self.message_user(
                request,
                f"Export {export.pk} recorded (judgments up to id {export.high_water_mark}); "
                f"status: {export.get_status_display()}.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:feedback_export_change", args=[export.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "New export",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/feedback/export/add.html", context)

    def download_view(self, request: HttpRequest, export_id: int) -> HttpResponseBase:
        if not self.has_view_permission(request):
            raise PermissionDenied
        export = Export.objects.filter(pk=export_id).first()
        path = export_archive(export) if export is not None else None
        if export is None or path is None:
            raise Http404("No finished export with that id.")
        return export_archive_response(export, path)

    @admin.action(description="Export the same snapshot again (byte-identical files)")
    def export_again(self, request: HttpRequest, queryset: QuerySet[Export]) -> None:
        for export in queryset.order_by("id"):
            again = export_create(options=export_options(export), created_by=request.user, snapshot_of=export)
            self.message_user(request, f"Export {again.pk} re-exports the snapshot of export {export.pk}.")

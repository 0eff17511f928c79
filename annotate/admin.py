"""Annotation in the admin: a read-only page of annotator statistics. Thin: parse the filter, call the
selector, format. Usernames and project names are user data: the template autoescapes every cell."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from annotate.models import AnnotatorStatistics
from annotate.statistics import annotator_statistics
from feedback.admin.common import ReadOnlyModelAdmin
from feedback.models import Project

MISSING = "—"

# (header, what it means): shown as the table's headers and, in full, under the table.
STATISTICS_COLUMNS = (
    ("Annotator", "The annotator's username."),
    ("Project", "The project the judgments belong to: one row per annotator and project."),
    ("Judgments", "How many judgments the annotator made in the project."),
    (
        "Judgments per hour",
        "Judgments per hour on the comparison page: 3600 × (judgments that recorded their time) ÷ (their "
        f"total seconds). {MISSING} when none recorded a time.",
    ),
    (
        "Median seconds",
        "The median time on the page per judgment, over the judgments that recorded one (an even count "
        f"takes the mean of the middle two). {MISSING} when none did.",
    ),
    (
        "Left (A) share",
        "Of the judgments that put one response strictly first (A or B; in a ranking, a single rank 1: "
        "ties for first and “both bad” do not count), the share that put the response shown on the left "
        "(A) first, with their count. Display order is random, so a share far from chance (50% for pairs, "
        f"1/k for k responses) means a position bias. {MISSING} when there are none.",
    ),
    ("Tie rate", "The share of all the annotator's judgments in the project that are ties."),
    ("Both-bad rate", "The share of all the annotator's judgments in the project that are “both bad”."),
)


def _percent(share: float | None) -> str:
    return MISSING if share is None else f"{share:.1%}"


def _decimal(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


class AnnotatorStatisticsFilterForm(forms.Form):
    project = forms.ModelChoiceField(
        queryset=Project.objects.order_by("name"), required=False, empty_label="All projects"
    )


@admin.register(AnnotatorStatistics)
class AnnotatorStatisticsAdmin(ReadOnlyModelAdmin):
    """Per annotator and project: volume, speed and answer habits (see `annotator_statistics`).

    Nothing here writes. Staff who may read judgments may read their statistics; the page's own view
    permission (`annotate.view_annotatorstatistics`) grants it too. The object pages of the proxy are
    refused: a statistics row is not an object."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return False
        return super().has_view_permission(request) or request.user.has_perm("feedback.view_judgment")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = AnnotatorStatisticsFilterForm(request.GET)
        project: Project | None = None
        filter_error = ""
        if form.is_valid():
            project = form.cleaned_data["project"]
        else:
            filter_error = f"There is no project {request.GET.get('project', '')!r}: showing every project."
            form = AnnotatorStatisticsFilterForm()
        rows = [
            (
                row.annotator_username,
                row.project_name,
                str(row.judgments),
                _decimal(row.judgments_per_hour),
                _decimal(row.median_seconds),
                MISSING
                if row.left_share is None
                else f"{_percent(row.left_share)} of {row.strict_preferences}",
                _percent(row.tie_rate),
                _percent(row.both_bad_rate),
            )
            for row in annotator_statistics(projects=None if project is None else [project])
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Annotator statistics" + (f" for {project}" if project else ""),
            "opts": self.opts,
            "form": form,
            "filter_error": filter_error,
            "columns": STATISTICS_COLUMNS,
            "rows": rows,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/annotate/annotatorstatistics/change_list.html", context)

"""A project's leaderboard page in the admin: the filters as a form (GET), the stored figures of
`feedback.services.leaderboard` as charts drawn on the server (a forest plot of both fits, the win-rate
heatmap, per-category bars) with their numbers in tables beside them, a head-to-head report for two
chosen checkpoints, and a CSV of the table. The figures are computed on a worker; the page says when
they are being computed, and how fresh they are."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from feedback.admin.charts import (
    ForestRow,
    category_bars_svg,
    forest_plot_svg,
    win_rate_heatmap_svg,
)
from feedback.admin.common import project_page_object
from feedback.models import PEOPLE_ID, LeaderboardReport, Project, PromptCategory
from feedback.selectors import judgment_examples
from feedback.services.leaderboard import (
    LeaderboardFilters,
    LeaderboardFiltersError,
    head_to_head_report,
    is_stale,
    leaderboard_participants,
    leaderboard_recompute,
    leaderboard_request,
    project_marks,
)

MISSING = "—"


class LeaderboardForm(forms.Form):
    """The leaderboard's filters (`LeaderboardFilters`), and two checkpoints for a head-to-head."""

    filtered = forms.BooleanField(required=False, widget=forms.HiddenInput, initial=True)
    categories = forms.MultipleChoiceField(
        choices=PromptCategory.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    since = forms.DateTimeField(
        required=False, help_text="Judgments made at or after, e.g. 2026-11-01 00:00."
    )
    until = forms.DateTimeField(required=False, help_text="Judgments made before.")
    exclude_flagged = forms.BooleanField(required=False, initial=True, label="Leave out flagged judgments")
    exclude_suspended = forms.BooleanField(
        required=False, initial=True, label="Leave out suspended annotators"
    )
    min_gold_accuracy = forms.FloatField(
        required=False, min_value=0, max_value=1, help_text="Leave out annotators below this gold accuracy."
    )
    adjudicated_wins = forms.BooleanField(required=False, initial=True, label="A reviewer's verdict wins")
    reviewed_only = forms.BooleanField(required=False, label="Reviewed comparisons only")
    both_bad = forms.ChoiceField(
        choices=(("apart", "Counted apart, left out of the fit"), ("tie", "Half a win each")), initial="apart"
    )
    reference = forms.ChoiceField(
        required=False, help_text="Shown at 1000. Default: the oldest base checkpoint."
    )
    first = forms.ChoiceField(required=False, label="Head to head: this checkpoint")
    second = forms.ChoiceField(required=False, label="against this one")

    def __init__(self, data: Mapping[str, Any] | None, *, checkpoints: list[str]) -> None:
        super().__init__(data)
        named = [("", MISSING), *((name, name) for name in checkpoints)]
        for name in ("reference", "first", "second"):
            self.fields[name].choices = named  # type: ignore[attr-defined]

    def filters(self) -> LeaderboardFilters:
        """The filters (valid form only); their own checks become the form's errors."""
        data = self.cleaned_data
        mapping = {
            name: data[name]
            for name in (
                "since",
                "until",
                "exclude_flagged",
                "exclude_suspended",
                "adjudicated_wins",
                "reviewed_only",
                "both_bad",
                "reference",
            )
            if data.get(name) not in (None, "")
        }
        mapping["categories"] = list(data["categories"])
        if data.get("min_gold_accuracy") is not None:
            mapping["min_gold_accuracy"] = data["min_gold_accuracy"]
        for name in ("since", "until"):
            if name in mapping:
                mapping[name] = mapping[name].isoformat()
        try:
            return LeaderboardFilters.from_mapping(mapping)
        except LeaderboardFiltersError as error:
            for name, problems in error.errors.items():
                self.add_error(name if name in self.fields else None, problems)
            raise


def _interval(score: Mapping[str, Any] | None) -> str:
    if score is None:
        return MISSING
    return f"{score['elo']:.0f} [{score['low']:.0f}, {score['high']:.0f}]"


def _table(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in report["checkpoints"]:
        raw, controlled = entry["raw"], entry["controlled"]
        rows.append(
            {
                **entry,
                "raw_text": _interval(raw),
                "controlled_text": _interval(controlled),
                "raw_rank": raw["rank"] if raw else MISSING,
                "controlled_rank": controlled["rank"] if controlled else MISSING,
                "shift": f"{controlled['elo'] - raw['elo']:+.0f}" if raw and controlled else MISSING,
                # People's answers are no checkpoint: nothing to link to.
                "url": reverse("admin:feedback_policycheckpoint_change", args=[entry["id"]])
                if entry["id"] != PEOPLE_ID
                else None,
            }
        )
    return rows


def _charts(report: Mapping[str, Any]) -> dict[str, Any]:
    entries = report["checkpoints"]
    if report["reference"] is None or not entries:
        return {}

    def triple(score: Mapping[str, Any] | None) -> tuple[float, float, float] | None:
        return None if score is None else (score["elo"], score["low"], score["high"])

    forest = forest_plot_svg(
        [ForestRow(entry["name"], triple(entry["raw"]), triple(entry["controlled"])) for entry in entries],
        reference=1000.0,
    )
    matrix = report["matrix"]
    names = {entry["id"]: entry["name"] for entry in entries}
    ordered = [names.get(pk, str(pk)) for pk in matrix["checkpoints"]]
    heatmap = win_rate_heatmap_svg(ordered, matrix["win_rate"])
    categories = [row for row in report["categories"] if row["checkpoints"]]
    scored = [entry["name"] for entry in entries if entry["raw"] is not None]
    bars = None
    if categories:
        by_category = [{item["name"]: item for item in row["checkpoints"]} for row in categories]
        bars = category_bars_svg(
            [row["category"] for row in categories],
            scored,
            [[triple(found.get(name)) for name in scored] for found in by_category],
        )
    category_lines = [
        {
            "category": row["category"],
            "battles": row["battles"],
            "note": row.get("note", ""),
            "scores": [
                f"{item['name']}: {item['elo']:.0f} [{item['low']:.0f}, {item['high']:.0f}]"
                for item in row["checkpoints"]
            ],
        }
        for row in report["categories"]
    ]
    rate_rows = [
        {
            "name": names.get(pk, str(pk)),
            "cells": [
                MISSING if rate is None else f"{rate:.0%} of {battles}"
                for rate, battles in zip(rates, matrix["battles"][index], strict=True)
            ],
        }
        for index, (pk, rates) in enumerate(zip(matrix["checkpoints"], matrix["win_rate"], strict=True))
    ]
    return {
        "forest": forest,
        "heatmap": heatmap,
        "category_bars": bars,
        "category_lines": category_lines,
        "matrix_names": ordered,
        "rate_rows": rate_rows,
    }


def _csv(project: Project, report: Mapping[str, Any]) -> HttpResponse:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "checkpoint",
            "kind",
            "parent",
            "battles",
            "wins",
            "losses",
            "ties",
            "both_bad",
            "raw_elo",
            "raw_low",
            "raw_high",
            "raw_rank",
            "controlled_elo",
            "controlled_low",
            "controlled_high",
            "controlled_rank",
        ]
    )
    for entry in report["checkpoints"]:
        row = [
            entry[name]
            for name in ("name", "kind", "parent", "battles", "wins", "losses", "ties", "both_bad")
        ]
        for fit in ("raw", "controlled"):
            score = entry[fit]
            row += (
                [f"{score[name]:.2f}" for name in ("elo", "low", "high")] + [score["rank"]]
                if score
                else [""] * 4
            )
        # A spreadsheet must not run what a checkpoint's name says: the text cells (name, kind, parent)
        # that start like a formula are quoted; the numbers after them are left as they are.
        writer.writerow(
            [
                f"'{cell}" if column < 3 and isinstance(cell, str) and cell[:1] in "=+-@\t\r" else cell
                for column, cell in enumerate(row)
            ]
        )
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="leaderboard-{project.slug}.csv"'
    return response


def _head_to_head(project: Project, report: Mapping[str, Any], first: str, second: str) -> dict[str, Any]:
    ids = {entry["name"]: entry["id"] for entry in report["checkpoints"]}
    found = None
    if first in ids and second in ids and first != second:
        found = head_to_head_report(dict(report), ids[first], ids[second])
    if found is None:
        return {"first": first, "second": second, "met": False}
    labels = {axis["key"]: axis.get("label") or axis["key"] for axis in project.rating_rubric or []}
    names = {"wins": "wins", "losses": "losses", "ties": "ties", "both_bad": "both bad"}
    return {
        **found,  # its `first` and `second` are ids: the page names them
        "first": first,
        "second": second,
        "met": True,
        "share_lines": [
            {"label": names[line["outcome"]], "count": found[line["outcome"]], **line}
            for line in found["shares"]
        ],
        "categories": [{"category": name, **figures} for name, figures in found["categories"].items()],
        "axes": [{"label": labels.get(key, key), **figures} for key, figures in found["axes"].items()],
        "examples": judgment_examples(
            project=project,
            examples=found["examples"],
            reviewed=bool(report["filters"].get("adjudicated_wins", True)),
        ),
    }


def project_leaderboard_view(
    model_admin: admin.ModelAdmin[Project], request: HttpRequest, object_id: str
) -> HttpResponse:
    """GET: the page for the filters in the query (default filters without one); `?format=csv` the
    table. POST ("Compute again"): send the computation to a worker, then back to the page."""
    project = project_page_object(model_admin, request, object_id)
    checkpoints = leaderboard_participants(project)
    query = request.GET.copy()
    wants_csv = query.pop("format", [""])[0] == "csv"
    form = LeaderboardForm(query if query.get("filtered") else None, checkpoints=checkpoints)
    filters = LeaderboardFilters()
    if form.is_bound and form.is_valid():
        with contextlib.suppress(LeaderboardFiltersError):  # its messages are the form's errors now
            filters = form.filters()
    url = reverse("admin:feedback_project_leaderboard", args=[project.pk])
    if request.method == "POST":
        if not model_admin.has_change_permission(request, project):
            raise PermissionDenied
        leaderboard_recompute(project=project, filters=filters)
        model_admin.message_user(request, "The leaderboard is being computed by a worker.", messages.SUCCESS)
        return HttpResponseRedirect(f"{url}?{query.urlencode()}" if query else url)
    row = None if form.errors else leaderboard_request(project=project, filters=filters)
    report = row.report if row is not None else None
    if wants_csv:
        if report is None:
            raise Http404("Not computed yet.")
        return _csv(project, report)
    csv_query = query.copy()
    csv_query["format"] = "csv"
    first, second = (
        form.cleaned_data.get(name, "") if form.is_bound and not form.errors else ""
        for name in ("first", "second")
    )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Leaderboard of {project}",
        "opts": model_admin.opts,
        "original": project,
        "form": form,
        "row": row,
        "report": report,
        "pending": row is not None and row.status == LeaderboardReport.Status.PENDING,
        "failed": row is not None and row.status == LeaderboardReport.Status.FAILED,
        "fresh": row is not None and report is not None and not is_stale(row, project_marks(project)),
        "can_compute": model_admin.has_change_permission(request, project),
        "csv_url": f"{url}?{csv_query.urlencode()}",
        "lines": _table(report) if report else [],
        **(_charts(report) if report else {}),
        "head_to_head": _head_to_head(project, report, first, second)
        if report and first and second
        else None,
    }
    return TemplateResponse(request, "admin/feedback/project/leaderboard.html", context)

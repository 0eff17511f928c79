"""A project's quality page: its newest stored figures (`ProjectQuality`, `AnnotatorQuality`), each chart
drawn on the server (`feedback.admin.charts`) with its numbers in a table beside it, how fresh they are,
and a "Compute now" button that runs `project_quality_refresh`.

Thin: the figures are computed elsewhere and stored; this reads the rows and formats them. Usernames,
anomaly reasons and category names reach the page through the template's escaping or matplotlib's.

The chart functions are imported where they are called: matplotlib takes most of a second to import, and
every process that loads the admin (web workers, Celery workers, each `manage.py` command) would pay for
it at start otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from feedback.admin.common import project_page_object
from feedback.models import AnnotatorQuality, AnnotatorStanding, Project, ProjectQuality, PromptCategory
from feedback.selectors import annotator_quality_rows, project_judgments_after, project_quality_latest
from feedback.services.quality import project_quality_refresh

MISSING = "—"
# The heatmap and the bar chart show at most this many annotators (the busiest); the tables show all.
CHART_MAX_ANNOTATORS = 40
ANOMALY_NAMES = {
    "too_fast": "Too fast",
    "one_choice": "One choice",
    "position_bias": "Position bias",
    "low_agreement": "Low agreement",
    "low_gold_accuracy": "Low gold accuracy",
}
MEASURE_NAMES = {
    "choice": "Choice (nominal)",
    "strength": "Signed strength (ordinal)",
    "ranking": "Ranking, by its pairwise orders (nominal)",
}


def _number(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0%}"


def _p_value(value: float | None) -> str:
    if value is None:
        return MISSING
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


@dataclass(frozen=True)
class AlphaLine:
    name: str
    value: str
    units: int
    values: int


@dataclass(frozen=True)
class AnnotatorLine:
    """One annotator's row of the page's tables, formatted."""

    username: str
    standing_url: str  # the standing's admin page ("" before the annotator's first claim)
    role: str
    status: str
    is_suspended: bool
    judgments: int
    gold: str
    accuracy: str
    majority: str
    majority_kappa: str
    first_position: str
    first_p_value: str
    median_seconds: str
    anomalies: list[tuple[str, str]]


@dataclass(frozen=True)
class KappaLine:
    first: str
    second: str
    shared: int
    agreement: str
    kappa: str


def _alpha_lines(alphas: Mapping[str, Mapping[str, Any]], names: Mapping[str, str]) -> list[AlphaLine]:
    """One line per stored alpha, in the order of `names` (stored JSON keeps no order), then any other."""
    order = [key for key in names if key in alphas] + sorted(set(alphas) - set(names))
    return [
        AlphaLine(
            name=names.get(key, key),
            value=_number(alphas[key]["value"]),
            units=alphas[key]["units"],
            values=alphas[key]["values"],
        )
        for key in order
    ]


def _measure_names(project: Project) -> dict[str, str]:
    axes = {axis["key"]: axis.get("label") or axis["key"] for axis in project.rating_rubric or []}
    return MEASURE_NAMES | {f"axis:{key}": f"Rating: {label} (interval)" for key, label in axes.items()}


def _annotator_line(row: AnnotatorQuality) -> AnnotatorLine:
    status: str = getattr(row, "standing_status", AnnotatorStanding.Status.ACTIVE)
    accuracy = MISSING
    if row.gold_accuracy is not None:
        accuracy = f"{_percent(row.gold_accuracy)} ({_percent(row.gold_low)}–{_percent(row.gold_high)})"
    first_position = MISSING
    if row.first_share is not None:
        first_position = f"{_percent(row.first_share)} of {row.decisive}"
    standing_id = getattr(row, "standing_id", None)
    return AnnotatorLine(
        username=row.annotator.username,
        standing_url=reverse("admin:feedback_annotatorstanding_change", args=[standing_id])
        if standing_id
        else "",
        role=getattr(row, "role", "") or MISSING,
        status=AnnotatorStanding.Status(status).label,
        is_suspended=status == AnnotatorStanding.Status.SUSPENDED,
        judgments=row.judgments,
        gold=f"{row.gold_correct}/{row.gold_answered}",
        accuracy=accuracy,
        majority=f"{row.majority_agreed}/{row.majority_compared}",
        majority_kappa=_number(row.majority_kappa, 2),
        first_position=first_position,
        first_p_value=_p_value(row.first_p_value),
        median_seconds=_number(row.median_seconds, 1),
        anomalies=[
            (ANOMALY_NAMES.get(anomaly["code"], anomaly["code"]), anomaly["reason"])
            for anomaly in row.anomalies
        ],
    )


def _busiest(rows: Iterable[AnnotatorQuality], key: str) -> list[AnnotatorQuality]:
    ranked = sorted(rows, key=lambda row: (-getattr(row, key), row.annotator.username))
    return ranked[:CHART_MAX_ANNOTATORS]


def _kappa_section(report: Mapping[str, Any], rows: list[AnnotatorQuality]) -> dict[str, Any]:
    pairs = report["kappa"]["pairs"]
    by_id = {row.annotator_id: row for row in rows}
    people = {pair[side] for pair in pairs for side in ("first", "second")}
    missing = people - set(by_id)
    usernames = {row.annotator_id: row.annotator.username for row in rows}
    if missing:  # judged, then left the figures (a deleted row): still named, never as a bare id
        usernames |= dict(get_user_model().objects.filter(pk__in=missing).values_list("pk", "username"))

    def name(person: int) -> str:
        return usernames.get(person, f"user {person}")

    # Worst agreement first; pairs without a kappa last.
    ordered = sorted(
        pairs,
        key=lambda pair: (
            pair["kappa"] is None,
            pair["kappa"] or 0.0,
            name(pair["first"]),
            name(pair["second"]),
        ),
    )
    lines = [
        KappaLine(
            first=name(pair["first"]),
            second=name(pair["second"]),
            shared=pair["shared"],
            agreement=_percent(pair["agreement"]),
            kappa=_number(pair["kappa"], 2),
        )
        for pair in ordered
    ]
    shown = sorted(
        (
            row.annotator_id
            for row in _busiest([by_id[person] for person in people if person in by_id], "judgments")
        ),
        key=name,
    )
    chart: SafeString | None = None
    if shown:
        from feedback.admin.charts import kappa_heatmap_svg

        index = {person: position for position, person in enumerate(shown)}
        matrix: list[list[float | None]] = [[None] * len(shown) for _ in shown]
        for pair in pairs:
            first, second = index.get(pair["first"]), index.get(pair["second"])
            if first is not None and second is not None:
                matrix[first][second] = matrix[second][first] = pair["kappa"]
        chart = kappa_heatmap_svg([name(person) for person in shown], matrix)
    return {
        "min_shared": report["kappa"]["min_shared"],
        "lines": lines,
        "chart": chart,
        "shown": len(shown),
        "people": len(people),
    }


def _position_section(report: Mapping[str, Any], rows: list[AnnotatorQuality]) -> dict[str, Any]:
    bias = report["position_bias"]
    decisive = [row for row in rows if row.decisive]
    shown = sorted(
        _busiest(decisive, "decisive"), key=lambda row: (-(row.first_share or 0.0), row.annotator.username)
    )
    chart = None
    if shown:
        from feedback.admin.charts import ShareBar, first_share_svg

        chart = first_share_svg(
            [
                ShareBar(
                    username=row.annotator.username,
                    share=row.first_share or 0.0,
                    decisive=row.decisive,
                    beyond_chance=any(anomaly["code"] == "position_bias" for anomaly in row.anomalies),
                )
                for row in shown
            ],
            expected=bias["expected"],
        )
    return {
        "expected": _percent(bias["expected"]),
        "overall": {
            "first": bias["first"],
            "decisive": bias["decisive"],
            "share": _percent(bias["share"]),
            "p_value": _p_value(bias["p_value"]),
        },
        "chart": chart,
        "shown": len(shown),
        "people": len(decisive),
        "lines": [_annotator_line(row) for row in shown],
    }


def _accuracy_chart(project: Project, rows: list[AnnotatorQuality]) -> SafeString | None:
    graded = [row for row in rows if row.gold_accuracy is not None]
    if not graded:
        return None
    from feedback.admin.charts import AccuracyPoint, accuracy_volume_svg

    return accuracy_volume_svg(
        [
            AccuracyPoint(
                username=row.annotator.username,
                judgments=row.judgments,
                accuracy=row.gold_accuracy or 0.0,
                low=row.gold_low or 0.0,
                high=row.gold_high or 0.0,
                status=getattr(row, "standing_status", AnnotatorStanding.Status.ACTIVE),
            )
            for row in graded
        ],
        warn_accuracy=project.gold_warn_accuracy,
        suspend_accuracy=project.gold_suspend_accuracy,
    )


def _timeline(report: Mapping[str, Any]) -> dict[str, Any]:
    points = report["alpha_over_time"]
    moments = [timezone.localtime(datetime.fromisoformat(point["until"])) for point in points]
    chart = None
    if points:
        from feedback.admin.charts import alpha_timeline_svg

        # Plotted in the page's time zone, as the table beside it shows the times.
        chart = alpha_timeline_svg(
            [moment.replace(tzinfo=None) for moment in moments], [point["value"] for point in points]
        )
    return {
        "chart": chart,
        "lines": [
            {
                "until": moment,
                "judgments": point["judgments"],
                "value": _number(point["value"]),
                "units": point["units"],
            }
            for moment, point in zip(moments, points, strict=True)
        ],
    }


def quality_context(project: Project, quality: ProjectQuality) -> dict[str, Any]:
    """What the page shows of a stored report: charts (inline SVG) and the tables of their numbers."""
    report = quality.report
    rows = list(annotator_quality_rows(project=project))
    gold = report.get("gold", {"items": 0, "answered": 0, "correct": 0})
    categories = dict(PromptCategory.choices)
    graded = sum(row.gold_accuracy is not None for row in rows)
    return {
        "summary": {
            "judgments": report["judgments"],
            "comparisons": report["comparisons"],
            "annotators": report["annotators"],
            "gold": gold,
            "gold_accuracy": _percent(gold["correct"] / gold["answered"]) if gold["answered"] else MISSING,
        },
        "newer": project_judgments_after(project=project, high_water_mark=quality.high_water_mark),
        "timeline": _timeline(report),
        "alpha_lines": _alpha_lines(report["alpha"], _measure_names(project)),
        "category_lines": _alpha_lines(report["alpha_by_category"], categories),
        "accuracy_chart": _accuracy_chart(project, rows),
        "ungraded": len(rows) - graded,
        "annotator_lines": [_annotator_line(row) for row in rows],
        "kappa": _kappa_section(report, rows),
        "position": _position_section(report, rows),
    }


def project_quality_view(
    model_admin: admin.ModelAdmin[Project], request: HttpRequest, object_id: str
) -> HttpResponse:
    """GET: the page. POST ("Compute now"): compute the figures, then back to the page."""
    project = project_page_object(model_admin, request, object_id)
    url = reverse("admin:feedback_project_quality", args=[project.pk])
    if request.method == "POST":
        if not model_admin.has_change_permission(request, project):
            raise PermissionDenied
        quality = project_quality_refresh(project_id=project.pk)
        assert quality is not None  # the project was just read
        model_admin.message_user(
            request,
            f"Quality figures of {project} computed from {quality.report['judgments']} judgment(s) "
            f"in {quality.seconds:.2f} s.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(url)
    quality = project_quality_latest(project=project)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Quality of {project}",
        "opts": model_admin.opts,
        "original": project,
        "quality": quality,
        "can_compute": model_admin.has_change_permission(request, project),
        "chart_max": CHART_MAX_ANNOTATORS,
        **(quality_context(project, quality) if quality is not None else {}),
    }
    return TemplateResponse(request, "admin/feedback/project/quality.html", context)

"""What the quality options of an export decide, frozen with its snapshot.

An export leaves out the comparisons a reviewer retired; under `consensus` a reviewer's decided verdict
wins over the vote (`adjudicated_wins`, default on; rows marked `reviewed`); `reviewed_only` keeps only
reviewed comparisons. It leaves out, by default, the judgments of annotators suspended from their project
(`exclude_suspended`), and optionally those of annotators whose gold accuracy in the project is below
`min_gold_accuracy` (annotators with no gold answer there are left out too: nothing shows they meet it).
Both are decided as of the snapshot, so the same snapshot gives the same files however standings change
later: suspensions as of the `standing_mark` (the newest `StandingChange` id when the export was
recorded; the log is append-only), gold accuracy over the gold answers up to the judgments' high-water
mark. The raw `judgments` format carries each annotator's gold accuracy as decided here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import Max, Q

from feedback.export.options import ExportOptions
from feedback.models import (
    AnnotatorStanding,
    GoldVerdict,
    Project,
    ProjectQuality,
    ReviewDecision,
    StandingChange,
)
from feedback.services.standing import gold_answers


def quality_marks_now() -> tuple[int, int, int]:
    """The newest standing change's, quality report's and review decision's ids: what an export recorded
    now reads."""
    return (
        StandingChange.objects.aggregate(mark=Max("pk"))["mark"] or 0,
        ProjectQuality.objects.aggregate(mark=Max("pk"))["mark"] or 0,
        ReviewDecision.objects.aggregate(mark=Max("pk"))["mark"] or 0,
    )


@dataclass(frozen=True)
class ExportQuality:
    standing_mark: int
    quality_mark: int
    project_ids: dict[str, int]  # slug → id, of the projects in scope
    reports: dict[str, ProjectQuality]  # slug → the newest quality report up to the quality mark
    review_mark: int
    # Comparison id → the reviewer's verdict (decided) or None (retired), as of the review mark.
    reviews: dict[int, dict[str, Any] | None]

    def decided(self, comparison_id: int) -> dict[str, Any] | None:
        return self.reviews.get(comparison_id)

    suspended: dict[int, frozenset[int]]  # project id → annotators suspended there as of the mark
    gold: dict[tuple[int, int], tuple[int, int]]  # (project id, annotator) → (gold answered, correct)

    # Gold comparison id → (its verdict, its explanation), for the `gold` format.
    verdicts: dict[int, tuple[dict[str, Any], str]]

    def gold_accuracy(self, project_slug: str, annotator_id: int) -> float | None:
        answered, correct = self.gold.get((self.project_ids.get(project_slug, -1), annotator_id), (0, 0))
        return correct / answered if answered else None

    def condition(self, options: ExportOptions) -> Q:
        """The filter on judgments that the quality options ask for (an empty Q when they ask nothing)."""
        condition = Q()
        retired = sorted(pk for pk, verdict in self.reviews.items() if verdict is None)
        if retired:
            condition &= ~Q(comparison_id__in=retired)
        if options.reviewed_only:
            decided = sorted(pk for pk, verdict in self.reviews.items() if verdict is not None)
            # An empty IN would not compile for the streaming source: id < 0 matches nothing instead.
            condition &= Q(comparison_id__in=decided) if decided else Q(pk__lt=0)
        if options.exclude_suspended:
            for project_id, annotators in sorted(self.suspended.items()):
                if annotators:
                    condition &= ~Q(comparison__project_id=project_id, annotator_id__in=sorted(annotators))
        if options.min_gold_accuracy > 0:
            accurate: dict[int, list[int]] = {}
            for (project_id, annotator), (answered, correct) in sorted(self.gold.items()):
                if answered and correct / answered >= options.min_gold_accuracy:
                    accurate.setdefault(project_id, []).append(annotator)
            condition &= reduce(
                or_,
                (
                    Q(comparison__project_id=project, annotator_id__in=people)
                    for project, people in accurate.items()
                ),
                # Nobody meets the minimum: a condition that matches nothing and still compiles to SQL (an
                # empty IN makes Django raise EmptyResultSet, which the streaming source cannot take).
                Q(pk__lt=0),
            )
        return condition


def export_quality(
    options: ExportOptions,
    *,
    high_water_mark: int,
    standing_mark: int | None = None,
    quality_mark: int | None = None,
    review_mark: int | None = None,
) -> ExportQuality:
    """Suspensions as of `standing_mark`, quality figures as of `quality_mark`, review decisions as of
    `review_mark` (each default: now) and gold accuracy up to the high-water mark, for the projects the
    export covers."""
    now_marks = quality_marks_now() if None in (standing_mark, quality_mark, review_mark) else (0, 0, 0)
    mark = now_marks[0] if standing_mark is None else standing_mark
    report_mark = now_marks[1] if quality_mark is None else quality_mark
    decision_mark = now_marks[2] if review_mark is None else review_mark
    projects = Project.objects.all()
    if options.projects:
        projects = projects.filter(slug__in=options.projects)
    project_ids = dict(projects.values_list("slug", "pk"))
    reports: dict[str, ProjectQuality] = {}
    slug_of = {pk: slug for slug, pk in project_ids.items()}
    for report in ProjectQuality.objects.filter(pk__lte=report_mark, project_id__in=slug_of).order_by("pk"):
        reports[slug_of[report.project_id]] = report
    latest: dict[tuple[int, int], str] = {}
    for project_id, annotator_id, status in (
        StandingChange.objects.filter(pk__lte=mark, project_id__in=project_ids.values())
        .order_by("pk")
        .values_list("project_id", "annotator_id", "status")
    ):
        latest[(project_id, annotator_id)] = status
    suspended: dict[int, set[int]] = {}
    for (project_id, annotator_id), status in latest.items():
        if status == AnnotatorStanding.Status.SUSPENDED:
            suspended.setdefault(project_id, set()).add(annotator_id)
    gold: dict[tuple[int, int], tuple[int, int]] = {}
    for project_id in sorted(project_ids.values()):
        answers = gold_answers(project_id=project_id, up_to=high_water_mark)
        answered = Counter(answer.annotator_id for answer in answers)
        correct = Counter(answer.annotator_id for answer in answers if answer.correct)
        gold.update({(project_id, person): (answered[person], correct[person]) for person in answered})
    # Each item's state is what its newest decision up to the mark made it (the log is append-only).
    reviews: dict[int, dict[str, Any] | None] = {}
    for comparison_id, action, verdict in (
        ReviewDecision.objects.filter(pk__lte=decision_mark, item__project_id__in=slug_of)
        .order_by("pk")
        .values_list("item__comparison_id", "action", "verdict")
    ):
        if action == ReviewDecision.Action.DECIDE:
            reviews[comparison_id] = verdict
        elif action == ReviewDecision.Action.RETIRE:
            reviews[comparison_id] = None
        else:  # sent back or picked again: waiting, the vote counts
            reviews.pop(comparison_id, None)
    return ExportQuality(
        standing_mark=mark,
        review_mark=decision_mark,
        reviews=reviews,
        verdicts={
            comparison_id: (verdict, explanation)
            for comparison_id, verdict, explanation in GoldVerdict.objects.filter(
                comparison__project_id__in=slug_of
            ).values_list("comparison_id", "verdict", "explanation")
        }
        if options.format == "gold"
        else {},
        quality_mark=report_mark,
        project_ids=project_ids,
        reports=reports,
        suspended={project_id: frozenset(people) for project_id, people in suspended.items()},
        gold=gold,
    )


def removed_by_quality(
    options: ExportOptions, *, high_water_mark: int, quality: ExportQuality
) -> dict[str, int]:
    """How many judgments, through every other filter, each quality filter left out (in order: the
    suspensions first, then the gold accuracy minimum of what is left). Read before the stream starts."""
    from feedback.export.source import judgments_selected  # source imports this module

    removed: dict[str, int] = {}
    steps = [("suspended annotators", replace(options, exclude_suspended=False, min_gold_accuracy=0.0))]
    if options.exclude_suspended:
        steps.append(("suspended annotators", replace(options, min_gold_accuracy=0.0)))
    if options.min_gold_accuracy > 0:
        steps.append((f"gold accuracy below {options.min_gold_accuracy:g}", options))
    counts = [
        judgments_selected(step, high_water_mark=high_water_mark, quality=quality).count()
        for _, step in steps
    ]
    for (name, _), before, after in zip(steps[1:], counts[:-1], counts[1:], strict=True):
        removed[name] = before - after
    return removed


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def quality_card_section(
    options: ExportOptions, *, quality: ExportQuality, removed: dict[str, int], annotators: set[int]
) -> str:
    """The card's "Quality" section: what the quality filters removed, each project's agreement as last
    computed up to the snapshot's quality mark, and the gold accuracy of the annotators in the export."""
    lines = ["\n## Quality\n"]
    filters = ["suspended annotators left out" if options.exclude_suspended else "suspended annotators kept"]
    if options.min_gold_accuracy > 0:
        filters.append(f"annotators below {options.min_gold_accuracy:.0%} gold accuracy left out")
    lines.append(f"Filters: {'; '.join(filters)} (standings as of change {quality.standing_mark}).\n")
    if removed:
        lines.append("\n| filter | judgments removed |\n|---|---|\n")
        lines += [f"| {name} | {count} |\n" for name, count in removed.items()]
    lines.append("\n### Agreement (Krippendorff's alpha)\n\n")
    if quality.reports:
        lines.append("| project | measure | alpha | units | computed |\n|---|---|---|---|---|\n")
        for slug, report in sorted(quality.reports.items()):
            for measure, alpha in sorted(report.report.get("alpha", {}).items()):
                lines.append(
                    f"| {markdown_cell(slug)} | {markdown_cell(measure)} | {_figure(alpha.get('value'))} | {alpha.get('units', 0)} | "
                    f"{report.computed_at:%Y-%m-%d %H:%M} UTC, judgments up to id {report.high_water_mark} |\n"
                )
    else:
        lines.append(
            "No quality figures had been computed for these projects when the export was recorded.\n"
        )
    lines.append("\n### Gold accuracy of the annotators in this export\n\n")
    slug_of = {pk: slug for slug, pk in quality.project_ids.items()}
    rows = [
        (slug_of[project_id], annotator, answered, correct)
        for (project_id, annotator), (answered, correct) in sorted(quality.gold.items())
        if annotator in annotators and answered
    ]
    if rows:
        answered_total = sum(row[2] for row in rows)
        correct_total = sum(row[3] for row in rows)
        shares = sorted(correct / answered for _, _, answered, correct in rows)
        lines.append(
            f"{len(rows)} annotator(s) in this export answered gold items ({len(annotators) - len(rows)} did not): "
            f"{correct_total} of {answered_total} right ({correct_total / answered_total:.1%}); per annotator "
            f"lowest {shares[0]:.1%}, median {shares[len(shares) // 2]:.1%}, highest {shares[-1]:.1%}.\n"
        )
    else:
        lines.append("No annotator in this export answered a gold item.\n")
    return "".join(lines)


def markdown_cell(text: str) -> str:
    """Text as one cell of a Markdown table: no column breaks, no line breaks."""
    return str(text).replace("|", "\\|").replace("\n", " ")

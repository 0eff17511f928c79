"""Reads of the annotator's work loop. Every lookup by a client-supplied id is scoped to the annotator here:
an assignment that is not theirs, or belongs to a project they cannot work on, does not exist for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from annotate.progress import projects_progress
from feedback.models import (
    Assignment,
    Comparison,
    Judgment,
    Project,
    ProjectMembership,
    ProjectRole,
    Response,
    ReviewItem,
)
from feedback.selectors import projects_open_to


class AssignmentNotFound(Exception):
    """No such assignment for this annotator (HTTP 404, whether it exists for someone else or not)."""


def project_get_for_annotator(*, user: User | AnonymousUser, slug: str) -> Project | None:
    """The project, with its stored completion (`project_progress` reads it without another query)."""
    return projects_open_to(user=user).filter(slug=slug).select_related("completion").first()


def assignment_get_for_annotator(
    *, annotator: User, assignment_id: int, project: Project | None = None, lock: bool = False
) -> Assignment:
    """The annotator's assignment with its comparison and project, optionally row-locked (the assignment
    only). Raises `AssignmentNotFound` unless it is theirs and in a project they may still work on."""
    assignments = Assignment.objects.filter(
        pk=assignment_id,
        annotator=annotator,
        comparison__project__in=projects_open_to(user=annotator),
    )
    if project is not None:
        assignments = assignments.filter(comparison__project=project)
    if lock:
        assignments = assignments.select_for_update(of=("self",))
    assignment = assignments.select_related("comparison__project").first()
    if assignment is None:
        raise AssignmentNotFound(f"No assignment {assignment_id} for you.")
    return assignment


@dataclass(frozen=True)
class ShownResponse:
    label: str
    position: int
    response_id: int
    text: str


@dataclass(frozen=True)
class ComparisonPage:
    """What an annotator sees of a comparison: the conversation and the responses in display order.
    Deliberately nothing about which checkpoint wrote what."""

    assignment: Assignment
    comparison: Comparison
    project: Project
    conversation: list[dict[str, str]]
    responses: list[ShownResponse]


def comparison_page(*, assignment: Assignment, project: Project) -> ComparisonPage:
    """The page of the annotator's assignment in `project` (the caller's, so it is not fetched again).
    One query when the assignment comes from the claim, which loads its comparison with the prompt."""
    comparison = assignment.comparison
    if comparison.project_id != project.pk:
        raise AssignmentNotFound(f"No assignment {assignment.pk} in project {project.slug}.")
    entries = (
        comparison.entries.select_related("response")
        .only("position", "comparison", "response__id", "response__text")
        .order_by("position")
    )
    prompt = comparison.prompt
    return ComparisonPage(
        assignment=assignment,
        comparison=comparison,
        project=project,
        conversation=list(prompt.conversation),
        responses=[
            ShownResponse(
                label=entry.label,
                position=entry.position,
                response_id=entry.response_id,
                text=entry.response.text,
            )
            for entry in entries
        ],
    )


def start_of_today() -> datetime:
    return timezone.make_aware(datetime.combine(timezone.localdate(), time.min))


def annotator_judgments_today(*, annotator: User, project_id: int, written: bool = False) -> int:
    """The annotator's judgments in the project since midnight (server time), or with `written` (a
    demonstration project) their written answers: bounded by their day's work."""
    if written:
        return Response.objects.filter(
            author=annotator, created_at__gte=start_of_today(), assignment__comparison__project_id=project_id
        ).count()
    return Judgment.objects.filter(
        annotator=annotator, created_at__gte=start_of_today(), comparison__project_id=project_id
    ).count()


def annotator_project_summaries(*, user: User, projects: QuerySet[Project]) -> list[dict[str, Any]]:
    """For the project list: each project with the user's judgments (all and today), its completion and,
    where the user reviews, the items waiting for review (`reviews`; None where they do not)."""
    ordered = list(projects.order_by("name"))
    counts: dict[int, tuple[int, int]] = {
        project_id: (mine, today)
        for project_id, mine, today in Judgment.objects.filter(
            annotator=user, comparison__project__in=ordered
        )
        .values("comparison__project")
        .annotate(mine=Count("pk"), today=Count("pk", filter=Q(created_at__gte=start_of_today())))
        .values_list("comparison__project", "mine", "today")
        .order_by()
    }
    writing = [
        project.pk for project in ordered if project.comparison_mode == Project.ComparisonMode.DEMONSTRATION
    ]
    if writing:  # a demonstration project's work is its written answers
        counts.update(
            (project_id, (mine, today))
            for project_id, mine, today in Response.objects.filter(
                author=user, assignment__comparison__project__in=writing
            )
            .values("assignment__comparison__project")
            .annotate(mine=Count("pk"), today=Count("pk", filter=Q(created_at__gte=start_of_today())))
            .values_list("assignment__comparison__project", "mine", "today")
            .order_by()
        )
    progress = projects_progress(project_ids=[project.pk for project in ordered])
    # Staff review everywhere (as `feedback.services.review.may_review` says); others where their role is.
    reviewing = (
        {project.pk for project in ordered}
        if user.is_staff
        else set(
            ProjectMembership.objects.filter(
                user=user, project__in=ordered, role__in=(ProjectRole.REVIEWER, ProjectRole.MANAGER)
            ).values_list("project_id", flat=True)
        )
    )
    waiting = dict(
        ReviewItem.objects.filter(project_id__in=reviewing, status=ReviewItem.Status.PENDING)
        .values("project")
        .annotate(total=Count("pk"))
        .values_list("project", "total")
        .order_by()
    )
    # People's answers waiting for review count too.
    for project_id, total in (
        Response.objects.filter(
            prompt__project_id__in=reviewing, source=Response.Source.HUMAN, review=Response.Review.PENDING
        )
        .values("prompt__project")
        .annotate(total=Count("pk"))
        .values_list("prompt__project", "total")
        .order_by()
    ):
        waiting[project_id] = waiting.get(project_id, 0) + total
    return [
        {
            "project": project,
            "mine": counts.get(project.pk, (0, 0))[0],
            "today": counts.get(project.pk, (0, 0))[1],
            "progress": progress[project.pk],
            "reviews": waiting.get(project.pk, 0) if project.pk in reviewing else None,
        }
        for project in ordered
    ]

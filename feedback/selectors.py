"""Reads that need care: what a user may see, and aggregate figures, are decided here once."""

import base64
import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Model, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from feedback.models import (
    AnnotatorQuality,
    AnnotatorStanding,
    Comparison,
    ComparisonResponse,
    GoldVerdict,
    Judgment,
    Project,
    ProjectMembership,
    ProjectQuality,
    Prompt,
    ReviewDecision,
    ReviewItem,
)
from feedback.quality.gold import gold_correct, verdict_labels
from feedback.verdicts import verdict_text


def _count_per_project(model: type[Model], **filters: Any) -> Coalesce:
    # A correlated subquery per figure: joining prompts and comparisons in one query would multiply
    # their rows (prompts × comparisons) before counting.
    counts = (
        model._default_manager.filter(project=OuterRef("pk"), **filters)
        .order_by()
        .values("project")
        .annotate(total=Count("pk"))
        .values("total")
    )
    return Coalesce(Subquery(counts), 0)


def projects_with_progress(projects: QuerySet[Project]) -> QuerySet[Project]:
    """Annotate `prompt_total`, `comparison_total` and `comparison_completed` on each project (gold
    items, which are never completed, are not counted)."""
    return projects.annotate(
        prompt_total=_count_per_project(Prompt),
        comparison_total=_count_per_project(Comparison, is_gold=False),
        comparison_completed=_count_per_project(
            Comparison, is_gold=False, status=Comparison.Status.COMPLETED
        ),
    )


def projects_open_to(*, user: User | AnonymousUser) -> QuerySet[Project]:
    """Active projects the user may work on: staff may work on all, others on those they are members of."""
    projects = Project.objects.filter(is_active=True)
    if not user.is_authenticated:
        return projects.none()
    if not user.is_staff:
        projects = projects.filter(members=user)
    return projects


def project_quality_latest(*, project: Project) -> ProjectQuality | None:
    """The project's newest quality report, or None before the first computation."""
    return ProjectQuality.objects.filter(project=project).order_by("-computed_at", "-id").first()


def annotator_quality_rows(*, project: Project) -> QuerySet[AnnotatorQuality]:
    """The project's per annotator figures as last computed, busiest first, each with its annotator and,
    annotated, their `role` in the project ("" when not a member, e.g. staff), `standing_status`
    ("active" when they never claimed work there) and `standing_id` (None then). One query."""
    role = ProjectMembership.objects.filter(project=project, user=OuterRef("annotator")).values("role")[:1]
    standing = AnnotatorStanding.objects.filter(project=project, annotator=OuterRef("annotator"))
    return (
        AnnotatorQuality.objects.filter(project=project)
        .select_related("annotator")
        .annotate(
            role=Coalesce(Subquery(role), Value("")),
            standing_status=Coalesce(
                Subquery(standing.values("status")[:1]), Value(AnnotatorStanding.Status.ACTIVE.value)
            ),
            standing_id=Subquery(standing.values("pk")[:1]),
        )
        .order_by("-judgments", "annotator__username")
    )


def project_judgments_after(*, project: Project, high_water_mark: int) -> int:
    """How many of the project's judgments (gold answers included) are newer than the mark."""
    return Judgment.objects.filter(comparison__project=project, pk__gt=high_water_mark).count()


# --- review -------------------------------------------------------------------------------------------


def annotator_pseudonym(*, project_id: int, annotator_id: int) -> str:
    """How reviewers see an annotator: stable within a project (the same person reads the same everywhere
    in it), different between projects, and not to be traced back without the server's secret."""
    message = f"pseudonym:{project_id}:{annotator_id}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()
    return "Annotator " + base64.b32encode(digest[:5]).decode()[:6]


def review_queue_items(*, project: Project) -> QuerySet[ReviewItem]:
    """The project's items waiting for a decision, oldest first (the order reviewers take them in), each
    with its comparison's prompt and `judgments_total`."""
    return (
        ReviewItem.objects.filter(project=project, status=ReviewItem.Status.PENDING)
        .select_related("comparison__prompt")
        .annotate(judgments_total=Count("comparison__judgments"))
        .order_by("queued_at", "id")
    )


def review_next_item(*, project: Project, after: ReviewItem | None = None) -> ReviewItem | None:
    """The next waiting item of the project: the oldest, or the oldest queued after `after` (so that a
    reviewer who passes on an item moves on, then comes round to the start again)."""
    waiting = ReviewItem.objects.filter(project=project, status=ReviewItem.Status.PENDING).order_by(
        "queued_at", "id"
    )
    if after is not None:
        later = waiting.filter(
            Q(queued_at__gt=after.queued_at) | Q(queued_at=after.queued_at, id__gt=after.pk)
        ).first()
        if later is not None:
            return later
        waiting = waiting.exclude(pk=after.pk)
    return waiting.first()


@dataclass(frozen=True)
class ReviewedJudgment:
    """One judgment as a reviewer sees it: by pseudonym, in the labels of the responses shown."""

    pseudonym: str
    choice: str
    strength: int | None
    ranking: list[int]
    ratings: dict[str, dict[str, int]]  # label → axis → value
    rationale: str
    flags: list[str]
    time_spent_ms: int | None
    suspended: bool  # the annotator is suspended from the project now
    gold_correct: bool | None  # on a gold item: whether it matched the expected verdict


@dataclass(frozen=True)
class ReviewPage:
    item: ReviewItem
    project: Project
    conversation: list[dict[str, str]]
    responses: list[tuple[str, int, str]]  # (label, response id, text) in display order
    judgments: list[ReviewedJudgment]
    tally: list[tuple[str, int]]  # (outcome as shown, judgments) most first
    expected: str | None  # a gold item's expected verdict, by label
    explanation: str
    decisions: list[ReviewDecision]


def review_page(*, item: ReviewItem) -> ReviewPage:
    """Everything the review page shows of an item, annotators as pseudonyms. Five queries."""
    comparison = item.comparison
    entries = list(comparison.entries.select_related("response").order_by("position"))
    labels = [entry.label for entry in entries]
    response_ids = [entry.response_id for entry in entries]
    label_of = {str(response_id): label for response_id, label in zip(response_ids, labels, strict=True)}
    gold = GoldVerdict.objects.filter(comparison=comparison).first() if comparison.is_gold else None
    suspended = set(
        AnnotatorStanding.objects.filter(
            project_id=item.project_id, status=AnnotatorStanding.Status.SUSPENDED
        ).values_list("annotator_id", flat=True)
    )
    judgments = []
    for judgment in comparison.judgments.order_by("created_at", "id"):
        judgments.append(
            ReviewedJudgment(
                pseudonym=annotator_pseudonym(project_id=item.project_id, annotator_id=judgment.annotator_id),
                choice=verdict_text(judgment.choice, judgment.ranking, labels),
                strength=judgment.strength,
                ranking=list(judgment.ranking),
                ratings={
                    label_of.get(key, "?"): axes for key, axes in sorted((judgment.ratings or {}).items())
                },
                rationale=judgment.rationale,
                flags=list(judgment.flags or []),
                time_spent_ms=judgment.time_spent_ms,
                suspended=judgment.annotator_id in suspended,
                gold_correct=None
                if gold is None
                else gold_correct(
                    gold.verdict, choice=judgment.choice, ranking=judgment.ranking, response_ids=response_ids
                ),
            )
        )
    tally = Counter(judgment.choice for judgment in judgments)
    return ReviewPage(
        item=item,
        project=item.project,
        conversation=list(comparison.prompt.conversation),
        responses=[(entry.label, entry.response_id, entry.response.text) for entry in entries],
        judgments=judgments,
        tally=sorted(tally.items(), key=lambda pair: (-pair[1], pair[0])),
        expected=None if gold is None else verdict_labels(gold.verdict, response_ids=response_ids),
        explanation="" if gold is None else gold.explanation,
        decisions=list(item.decisions.select_related("reviewer").order_by("created_at", "id")),
    )


def judgment_examples(
    *, project: Project, examples: dict[str, list[int]], reviewed: bool = False
) -> list[dict[str, Any]]:
    """The judgments named per outcome (a head-to-head report's representative ones), each with what was
    shown: the prompt, the responses in display order with their checkpoints, the verdict and the
    rationale. With `reviewed` (the leaderboard let reviewers' verdicts win), a comparison a reviewer
    decided shows the reviewer's verdict, which is what counted, beside the annotator's own choice. Only
    the project's judgments; in the order given."""
    wanted = [pk for ids in examples.values() for pk in ids]
    judgments = {
        judgment.pk: judgment
        for judgment in Judgment.objects.filter(pk__in=wanted, comparison__project=project)
        .select_related("comparison__prompt")
        .prefetch_related(
            Prefetch(
                "comparison__entries",
                ComparisonResponse.objects.select_related("response__checkpoint").order_by("position"),
            )
        )
    }
    decided: dict[int, dict[str, Any]] = {}
    if reviewed:
        for comparison_id, verdict in ReviewItem.objects.filter(
            comparison_id__in=[judgment.comparison_id for judgment in judgments.values()],
            status=ReviewItem.Status.DECIDED,
        ).values_list("comparison_id", "verdict"):
            decided[comparison_id] = verdict or {}
    result = []
    for outcome, ids in examples.items():
        for pk in ids:
            judgment = judgments.get(pk)
            if judgment is None:
                continue
            comparison = judgment.comparison
            verdict = decided.get(comparison.pk) or {}
            result.append(
                {
                    "outcome": outcome,
                    "judgment": judgment.pk,
                    "comparison": comparison.pk,
                    "conversation": comparison.prompt.conversation,
                    "category": comparison.prompt.category,
                    "responses": [
                        {
                            "label": entry.label,
                            "checkpoint": entry.response.checkpoint.name
                            if entry.response.checkpoint
                            else None,
                            "text": entry.response.text,
                        }
                        for entry in comparison.entries.all()
                    ],
                    "choice": verdict.get("choice", judgment.choice),
                    "ranking": verdict.get("ranking", judgment.ranking),
                    "reviewed": bool(verdict),
                    "annotator_choice": judgment.choice,
                    "rationale": judgment.rationale,
                    "created_at": judgment.created_at,
                }
            )
    return result

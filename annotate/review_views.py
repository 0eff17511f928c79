"""The reviewer's pages: the project's review queue and one item at a time, keyboard first.

A reviewer (or a manager) sees a comparison that needs a final word with its prompt, its responses in
the order annotators saw them and every judgment, annotators shown as stable pseudonyms; they decide the
verdict, send the item back for more judgments, or retire it (`feedback.services.review`). The decision
is a JSON POST with the workspace's error shape; the engine's refusals become 400, 403, 409 and 422.
Model text goes through the same sanitizer as the workspace; rationales are plain text, escaped.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotate.drafts import draft_clean
from annotate.rendering import markdown_to_safe_html
from annotate.selectors import project_get_for_annotator
from annotate.submission import SubmissionInvalid
from annotate.views import (
    _annotator,
    _json_body,
    error_response,
    json_login_required,
    strict_content_security_policy,
)
from feedback.models import Project, Response, ReviewDecision, ReviewItem
from feedback.selectors import review_next_item, review_page, review_queue_items
from feedback.services.answers import (
    REVIEWABLE,
    AnswerInvalid,
    AnswerReviewConflict,
    AnswerReviewForbidden,
    answer_diff,
    answer_review,
)
from feedback.services.review import (
    ReviewConflict,
    ReviewForbidden,
    ReviewInvalid,
    ReviewKeyReused,
    may_review,
    review_decide,
)

QUEUE_PAGE_ITEMS = 200
ACTION_KEYS = {ReviewDecision.Action.SEND_BACK: "s", ReviewDecision.Action.RETIRE: "r"}


def _project_to_review(request: HttpRequest, slug: str) -> Project:
    """The project, if the user may review it: 404 when it is not theirs at all, 403 when they are in it
    but not as a reviewer or manager."""
    user = _annotator(request)
    project = project_get_for_annotator(user=user, slug=slug)
    if project is None:
        raise Http404("No such project for you.")
    if not may_review(user=user, project=project):
        raise PermissionDenied("Only the project's reviewers and managers see its review queue.")
    return project


def _item_or_404(project: Project, item_id: int) -> ReviewItem:
    item = (
        ReviewItem.objects.select_related("comparison__prompt", "project", "decided_by")
        .filter(project=project, pk=item_id)
        .first()
    )
    if item is None:
        raise Http404("No such review item in this project.")
    return item


@login_required
@require_GET
@never_cache
@strict_content_security_policy
def review_queue(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project_to_review(request, slug)
    items = list(review_queue_items(project=project)[:QUEUE_PAGE_ITEMS])
    counts = dict(
        ReviewItem.objects.filter(project=project)
        .values("status")
        .annotate(total=Count("pk"))
        .values_list("status", "total")
        .order_by()
    )
    reason_labels = dict(ReviewItem.Reason.choices)
    rows = [
        {
            "item": item,
            "reasons": [reason_labels.get(reason, reason) for reason in item.reasons],
            "prompt": item.comparison.prompt.preview,
        }
        for item in items
    ]
    statuses = [(label, counts.get(value, 0)) for value, label in ReviewItem.Status.choices]
    waiting_answers = _answers_waiting(project, request.user).select_related("prompt", "edited_from")
    answers = [
        {
            "answer": answer,
            "kind": "edit" if answer.edited_from_id else "written",
            "prompt": answer.prompt.preview,
        }
        for answer in waiting_answers[:ANSWER_QUEUE_ITEMS]
    ]
    return render(
        request,
        "annotate/review_queue.html",
        {
            "project": project,
            "rows": rows,
            "statuses": statuses,
            "waiting": counts.get("pending", 0),
            "answers": answers,
            "answers_waiting": waiting_answers.count(),
        },
    )


@login_required
@require_GET
@never_cache
def review_next(request: HttpRequest, slug: str) -> HttpResponse:
    """To the next waiting item (after the one named by `?after=`), or back to the queue when none waits."""
    project = _project_to_review(request, slug)
    after = None
    if (after_id := request.GET.get("after", "")).isdigit():
        after = ReviewItem.objects.filter(project=project, pk=int(after_id)).first()
    item = review_next_item(project=project, after=after)
    if item is None:
        return redirect("annotate:review_queue", slug=project.slug)
    return redirect("annotate:review_item", slug=project.slug, item_id=item.pk)


@login_required
@require_GET
@never_cache
@strict_content_security_policy
def review_item(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    project = _project_to_review(request, slug)
    page = review_page(item=_item_or_404(project, item_id))
    labels = [label for label, _, _ in page.responses]
    is_ranking = project.comparison_mode == Project.ComparisonMode.RANKING
    urls = {
        "decisionUrl": reverse("annotate:review_decision", args=[project.slug, item_id]),
        "nextUrl": reverse("annotate:review_next", args=[project.slug]) + f"?after={item_id}",
        "queueUrl": reverse("annotate:review_queue", args=[project.slug]),
    }
    config: dict[str, Any] = {
        **urls,
        "mode": project.comparison_mode,
        "labels": labels,
        "allowsTie": project.allows_tie,
        "strengthLevels": len(project.strength_labels or []),
        "pending": page.item.status == ReviewItem.Status.PENDING,
    }
    reason_labels = dict(ReviewItem.Reason.choices)
    return render(
        request,
        "annotate/review_item.html",
        {
            "project": project,
            "page": page,
            "item": page.item,
            "reasons": [reason_labels.get(reason, reason) for reason in page.item.reasons],
            "conversation": [
                {"role": message["role"], "html": markdown_to_safe_html(message["content"])}
                for message in page.conversation
            ],
            "responses": [
                {"label": label, "html": markdown_to_safe_html(text)} for label, _, text in page.responses
            ],
            "rubric_axes": [axis["key"] for axis in project.rating_rubric or []],
            "strength_labels": list(enumerate(project.strength_labels or [], start=1)),
            "ranks": range(1, len(labels) + 1),
            "is_ranking": is_ranking,
            "config": config,
            "action_keys": ACTION_KEYS,
        },
    )


@json_login_required
@require_POST
def review_decision(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    """POST {"submission_key", "action": decide|send_back|retire, "verdict"?, "reason"?}: 201 with the
    decision (200 when it replays one already stored under the key) and where to go next."""
    reviewer = _annotator(request)
    project = project_get_for_annotator(user=reviewer, slug=slug)
    if project is None or not ReviewItem.objects.filter(project=project, pk=item_id).exists():
        return error_response(404, "No such review item for you.")
    try:
        body = _json_body(request)
        if not isinstance(body, dict) or set(body) - {"submission_key", "action", "verdict", "reason"}:
            raise ReviewInvalid(
                {"non_field_errors": "Send submission_key, action and, as needed, verdict and reason only."}
            )
        result = review_decide(
            reviewer=reviewer,
            item_id=item_id,
            submission_key=body.get("submission_key"),
            action=body.get("action"),
            verdict=body.get("verdict"),
            reason=body.get("reason", ""),
        )
    except SubmissionInvalid as error:  # the body is not JSON
        return error_response(400, "The decision was not saved: fix the fields named.", error.errors)
    except ReviewInvalid as error:
        return error_response(400, "The decision was not saved: fix the fields named.", error.errors)
    except ReviewForbidden as error:
        return error_response(403, str(error))
    except ReviewConflict as error:
        return error_response(409, str(error))
    except ReviewKeyReused as error:
        return error_response(422, str(error))
    decision = result.decision
    body = {
        "decision_id": decision.pk,
        "action": decision.action,
        "replayed": result.replayed,
        "next_url": reverse("annotate:review_next", args=[project.slug]) + f"?after={item_id}",
    }
    return JsonResponse(body, status=200 if result.replayed else 201)


# --- people's answers ------------------------------------------------------------------------------------

ANSWER_QUEUE_ITEMS = 200


def _answers_waiting(project: Project, reviewer: Any) -> QuerySet[Response]:
    """The project's people's answers waiting for a reviewer, oldest first; not the reviewer's own."""
    return (
        Response.objects.filter(
            prompt__project=project, source=Response.Source.HUMAN, review=Response.Review.PENDING
        )
        .exclude(author=reviewer)
        .order_by("pk")
    )


def _answer_or_404(project: Project, answer_id: int) -> Response:
    answer = (
        Response.objects.select_related("prompt", "edited_from", "assignment__comparison", "judgment")
        .filter(prompt__project=project, source=Response.Source.HUMAN, pk=answer_id)
        .first()
    )
    if answer is None:
        raise Http404("No such answer in this project.")
    return answer


@login_required
@require_GET
@never_cache
def answer_review_next(request: HttpRequest, slug: str) -> HttpResponse:
    """To the oldest answer waiting (after `?after=`), or back to the queue when none waits."""
    project = _project_to_review(request, slug)
    waiting = _answers_waiting(project, request.user)
    if (after := request.GET.get("after", "")).isdigit():
        waiting = waiting.filter(pk__gt=int(after))
    answer = waiting.first()
    if answer is None:
        return redirect("annotate:review_queue", slug=project.slug)
    return redirect("annotate:answer_review", slug=project.slug, answer_id=answer.pk)


@login_required
@require_GET
@never_cache
@strict_content_security_policy
def answer_review_page(request: HttpRequest, slug: str, answer_id: int) -> HttpResponse:
    """A person's answer for a reviewer: the conversation, the model answers it was written beside (or
    the one it was edited from, with the diff), the answer; accept, reject with a reason, or edit."""
    project = _project_to_review(request, slug)
    answer = _answer_or_404(project, answer_id)
    references = []
    if answer.assignment is not None:
        references = [
            {"label": entry.label, "html": markdown_to_safe_html(entry.response.text)}
            for entry in answer.assignment.comparison.entries.select_related("response").order_by("position")
        ]
    original = answer.edited_from
    urls = {
        "decisionUrl": reverse("annotate:answer_review_decision", args=[project.slug, answer.pk]),
        "previewUrl": reverse("annotate:answer_review_preview", args=[project.slug, answer.pk]),
        "nextUrl": reverse("annotate:answer_review_next", args=[project.slug]) + f"?after={answer.pk}",
        "queueUrl": reverse("annotate:review_queue", args=[project.slug]),
    }
    return render(
        request,
        "annotate/answer_review.html",
        {
            "project": project,
            "answer": answer,
            "conversation": [
                {"role": message["role"], "html": markdown_to_safe_html(message["content"])}
                for message in answer.prompt.conversation
            ],
            "references": references,
            "original_html": markdown_to_safe_html(original.text) if original is not None else None,
            "diff": answer_diff(original.text, answer.text) if original is not None else None,
            "answer_html": markdown_to_safe_html(answer.text),
            "decisions": answer.reviews.select_related("reviewer").order_by("pk"),
            "pending": answer.review in REVIEWABLE,
            "max_chars": settings.RANKWISE_ANSWER_MAX_CHARS,
            "config": {
                **urls,
                "pending": answer.review in REVIEWABLE,
                "text": answer.text,
                "maxChars": settings.RANKWISE_ANSWER_MAX_CHARS,
            },
        },
    )


@json_login_required
@require_http_methods(["GET", "POST"])
def answer_review_preview(request: HttpRequest, slug: str, answer_id: int) -> HttpResponse:
    """The reviewer's edit as they type: its sanitized preview and its diff from the answer (nothing is
    stored; the editor's draft contract, so `annotate/editor.js` serves both)."""
    reviewer = _annotator(request)
    project = project_get_for_annotator(user=reviewer, slug=slug)
    answer = (
        Response.objects.filter(prompt__project=project, source=Response.Source.HUMAN, pk=answer_id).first()
        if project is not None
        else None
    )
    if project is None or answer is None:
        return error_response(404, "No such answer for you.")
    if not may_review(user=reviewer, project=project):
        return error_response(403, "Only the project's reviewers and managers review its answers.")
    if request.method == "GET":
        return JsonResponse({"text": "", "revision": 0, "base": "", "preview_html": "", "diff": None})
    try:
        text, revision, _ = draft_clean(_json_body(request))
    except SubmissionInvalid as error:
        return error_response(400, "Fix the fields named.", error.errors)
    return JsonResponse(
        {
            "text": text,
            "revision": revision,
            "preview_html": str(markdown_to_safe_html(text)),
            "diff": [list(segment) for segment in answer_diff(answer.text, text)],
        }
    )


@json_login_required
@require_POST
def answer_review_decision(request: HttpRequest, slug: str, answer_id: int) -> HttpResponse:
    """POST {"submission_key", "action": accept|reject|edit, "reason"?, "text"?}: 201 with the decision
    (200 when it replays one stored under the key) and where to go next."""
    reviewer = _annotator(request)
    project = project_get_for_annotator(user=reviewer, slug=slug)
    if (
        project is None
        or not Response.objects.filter(
            prompt__project=project, source=Response.Source.HUMAN, pk=answer_id
        ).exists()
    ):
        return error_response(404, "No such answer for you.")
    if not may_review(user=reviewer, project=project):
        return error_response(403, "Only the project's reviewers and managers review its answers.")
    try:
        body = _json_body(request)
        if not isinstance(body, dict) or set(body) - {"submission_key", "action", "reason", "text"}:
            raise SubmissionInvalid(
                {"non_field_errors": "Send submission_key, action and, as needed, reason and text only."}
            )
        result = answer_review(
            reviewer=reviewer,
            answer_id=answer_id,
            action=body.get("action"),
            submission_key=body.get("submission_key"),
            reason=body.get("reason", ""),
            text=body.get("text"),
        )
    except (SubmissionInvalid, AnswerInvalid) as error:
        return error_response(400, "The decision was not saved: fix the fields named.", error.errors)
    except AnswerReviewForbidden as error:
        return error_response(403, str(error))
    except AnswerReviewConflict as error:
        return error_response(409, str(error))
    body = {
        "decision_id": result.decision.pk,
        "action": result.decision.action,
        "replayed": result.replayed,
        "next_url": reverse("annotate:answer_review_next", args=[project.slug]) + f"?after={answer_id}",
    }
    return JsonResponse(body, status=200 if result.replayed else 201)

"""The annotator's pages: thin views over the assignment engine and its selectors.

Pages are server-rendered; the workspace's small script posts judgments as JSON to the endpoints here,
which answer with one error shape: `{"detail": "…", "errors": {"<field>": ["…"]}}` (errors only for 400).
Every page carries a strict Content-Security-Policy (scripts and styles from this site only, no frames,
no plugins): a second line of defence behind the sanitizer for the untrusted text these pages show.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotate.assignment import (
    AnnotatorSuspended,
    SubmissionConflict,
    SubmissionKeyReused,
    assignment_skip,
    comparison_lease_next,
    judgment_submit,
)
from annotate.drafts import draft_clean, draft_get, draft_save
from annotate.progress import project_progress
from annotate.rendering import markdown_to_safe_html
from annotate.selectors import (
    AssignmentNotFound,
    annotator_judgments_today,
    annotator_project_summaries,
    comparison_page,
    project_get_for_annotator,
)
from annotate.submission import SubmissionInvalid, submission_parse
from annotate.writing import answer_parse, answer_submit
from feedback.models import AnswerDraft, AnswerReview, ComparisonResponse, JudgmentFlag, Project, Response
from feedback.selectors import projects_open_to
from feedback.services.answers import answer_diff

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SKIP_REASONS = [
    "I can't judge this topic well",
    "The prompt is broken or unclear",
    "The responses don't display properly",
    "Other",
]
FLAG_KEYS = {"unsafe": "u", "personal_data": "p", "off_topic": "o", "broken": "k"}

View = Callable[..., HttpResponse]


def strict_content_security_policy(view: View) -> View:
    @wraps(view)
    def with_policy(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    return with_policy


def json_login_required(view: View) -> View:
    """For the JSON endpoints: 401 in JSON, not a redirect to the login page a script cannot follow."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return error_response(401, "Your session ended. Log in again; nothing was saved.")
        return view(request, *args, **kwargs)

    return checked


def error_response(status: int, detail: str, errors: dict[str, list[str]] | None = None) -> JsonResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JsonResponse(body, status=status)


def _project_or_404(request: HttpRequest, slug: str) -> Project:
    project = project_get_for_annotator(user=request.user, slug=slug)
    if project is None:
        raise Http404("No such project for you.")
    return project


def _annotator(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # the views are behind a login check
    return request.user


def _progress(*, annotator: User, project: Project) -> dict[str, int | bool]:
    progress = project_progress(project=project)
    return {
        "today": annotator_judgments_today(
            annotator=annotator,
            project_id=project.pk,
            written=project.comparison_mode == Project.ComparisonMode.DEMONSTRATION,
        ),
        "completed": progress.completed,
        "total": progress.total,
        "percent": progress.percent,
        "counted": progress.counted,
    }


@login_required
@require_GET
@strict_content_security_policy
def project_list(request: HttpRequest) -> HttpResponse:
    user = _annotator(request)
    summaries = annotator_project_summaries(user=user, projects=projects_open_to(user=user))
    return render(request, "annotate/project_list.html", {"summaries": summaries})


ANSWERS_PER_PAGE = 20


@login_required
@require_GET
@strict_content_security_policy
def my_answers(request: HttpRequest, slug: str) -> HttpResponse:
    """The annotator's own answers in the project (written and edited), newest first: where each stands,
    a rejection's reason and a reviewer's edit as a diff, so writers learn from the review."""
    annotator = _annotator(request)
    project = _project_or_404(request, slug)
    answers = Response.objects.filter(author=annotator, source=Response.Source.HUMAN, prompt__project=project)
    counts = [
        (Response.Review(review).label.lower(), count)
        for review, count in answers.values_list("review").annotate(count=Count("pk")).order_by("review")
    ]
    page = Paginator(
        answers.select_related("prompt").order_by("-created_at", "-pk"), ANSWERS_PER_PAGE
    ).get_page(request.GET.get("page"))
    decisions = {
        decision.answer_id: decision
        for decision in AnswerReview.objects.filter(answer__in=list(page.object_list))
        .select_related("revision")
        .order_by("pk")
    }
    items = []
    for answer in page.object_list:
        decision = decisions.get(answer.pk)
        items.append(
            {
                "answer": answer,
                "prompt": answer.prompt.preview,
                "status": answer.get_review_display(),
                "reason": decision.reason if decision is not None else "",
                "diff": answer_diff(answer.text, decision.revision.text)
                if decision is not None and decision.revision is not None
                else None,
                "html": markdown_to_safe_html(answer.text),
            }
        )
    return render(
        request,
        "annotate/my_answers.html",
        {"project": project, "answers": items, "counts": counts, "page": page},
    )


@login_required
@require_GET
@strict_content_security_policy
def guidelines(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project_or_404(request, slug)
    return render(
        request,
        "annotate/guidelines.html",
        {"project": project, "guidelines_html": markdown_to_safe_html(project.guidelines)},
    )


def _workspace_config(project: Project, page_responses: list[Any], urls: dict[str, str]) -> dict[str, Any]:
    """What the page's script needs to know, passed as JSON (`json_script`), never interpolated into JS."""
    return {
        **urls,
        "mode": project.comparison_mode,
        "labels": [response.label for response in page_responses],
        "allowsTie": project.allows_tie,
        "strengthLevels": len(project.strength_labels or []),
        "flagKeys": FLAG_KEYS,
    }


@login_required
@require_GET
@never_cache
@strict_content_security_policy
def workspace(request: HttpRequest, slug: str) -> HttpResponse:
    """The annotator's current comparison: their open lease, or a new one. A reload shows the same one."""
    annotator = _annotator(request)
    project = _project_or_404(request, slug)
    context: dict[str, Any] = {
        "project": project,
        "progress": _progress(annotator=annotator, project=project),
        "guidelines_html": markdown_to_safe_html(project.guidelines),
        "answers_taken": project.comparison_mode == Project.ComparisonMode.DEMONSTRATION
        or project.answer_editing != Project.AnswerEditing.OFF,
    }
    try:
        assignment = comparison_lease_next(annotator=annotator, project=project)
    except AnnotatorSuspended as suspended:
        return render(request, "annotate/suspended.html", {**context, "message": str(suspended)}, status=403)
    if assignment is None:
        return render(request, "annotate/done.html", context)
    page = comparison_page(assignment=assignment, project=project)
    responses = [
        {"label": shown.label, "position": shown.position, "html": markdown_to_safe_html(shown.text)}
        for shown in page.responses
    ]
    urls = {
        "skipUrl": reverse("annotate:skip", args=[project.slug, assignment.pk]),
        "nextUrl": reverse("annotate:workspace", args=[project.slug]),
        "draftUrl": reverse("annotate:draft", args=[project.slug, assignment.pk]),
    }
    conversation = [
        {"role": message["role"], "html": markdown_to_safe_html(message["content"])}
        for message in page.conversation
    ]
    if project.comparison_mode == Project.ComparisonMode.DEMONSTRATION:
        urls["submitUrl"] = reverse("annotate:answer", args=[project.slug, assignment.pk])
        context.update(
            assignment=assignment,
            conversation=conversation,
            references=responses,
            skip_reasons=SKIP_REASONS,
            submit_url=urls["submitUrl"],
            max_chars=settings.RANKWISE_ANSWER_MAX_CHARS,
            config={**urls, "mode": project.comparison_mode, "maxChars": settings.RANKWISE_ANSWER_MAX_CHARS},
        )
        return render(request, "annotate/write.html", context)
    urls["submitUrl"] = reverse("annotate:judgment", args=[project.slug, assignment.pk])
    config = _workspace_config(project, page.responses, urls)
    if project.answer_editing != Project.AnswerEditing.OFF:
        # The raw texts an edit starts from (JSON, never HTML): the editor is filled with the chosen one.
        config["editing"] = project.answer_editing
        config["texts"] = {shown.label: shown.text for shown in page.responses}
        config["maxChars"] = settings.RANKWISE_ANSWER_MAX_CHARS
    context.update(
        assignment=assignment,
        conversation=conversation,
        editing=project.answer_editing != Project.AnswerEditing.OFF,
        edit_required_both_bad=project.answer_editing == Project.AnswerEditing.BOTH_BAD,
        max_chars=settings.RANKWISE_ANSWER_MAX_CHARS,
        responses=responses,
        ranks=range(1, len(responses) + 1),
        rubric=[
            {**axis, "values": range(axis["scale"]["min"], axis["scale"]["max"] + 1)}
            for axis in project.rating_rubric or []
        ],
        strength_labels=list(enumerate(project.strength_labels or [], start=1)),
        flags=[(value, label, FLAG_KEYS[value]) for value, label in JudgmentFlag.choices],
        skip_reasons=SKIP_REASONS,
        config=config,
        submit_url=urls["submitUrl"],
        is_ranking=project.comparison_mode == Project.ComparisonMode.RANKING,
    )
    return render(request, "annotate/workspace.html", context)


def _json_body(request: HttpRequest) -> Any:
    if request.content_type != "application/json":
        raise SubmissionInvalid({"non_field_errors": "Send the body as application/json."})
    try:
        return json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SubmissionInvalid({"non_field_errors": f"The body is not valid JSON: {error}."}) from None


def _engine_errors(call: Callable[[], HttpResponse], *, what: str = "judgment") -> HttpResponse:
    """Map the engine's refusals to statuses: 400 invalid, 403 suspended, 404 not yours, 409 no place,
    422 key reused."""
    try:
        return call()
    except SubmissionInvalid as error:
        return error_response(400, f"The {what} was not saved: fix the fields named.", error.errors)
    except AssignmentNotFound:
        return error_response(404, "No such comparison for you.")
    except SubmissionConflict as error:
        return error_response(409, str(error))
    except SubmissionKeyReused as error:
        return error_response(422, str(error))
    except AnnotatorSuspended as error:
        return error_response(403, str(error))


def annotator_endpoint(view: Callable[[HttpRequest, User, Project, int], HttpResponse]) -> View:
    """A JSON endpoint on one of the annotator's assignments: logged in (else 401), POST only, the project
    one they may work on (else 404); the engine's refusals become their statuses."""

    @json_login_required
    @require_POST
    @wraps(view)
    def endpoint(request: HttpRequest, slug: str, assignment_id: int) -> HttpResponse:
        annotator = _annotator(request)
        project = project_get_for_annotator(user=annotator, slug=slug)
        if project is None:
            return error_response(404, "No such project for you.")
        return _engine_errors(lambda: view(request, annotator, project, assignment_id))

    return endpoint


@annotator_endpoint
def judgment_create(
    request: HttpRequest, annotator: User, project: Project, assignment_id: int
) -> HttpResponse:
    submission_key, submission = submission_parse(_json_body(request))
    result = judgment_submit(
        annotator=annotator,
        project=project,
        assignment_id=assignment_id,
        submission_key=submission_key,
        submission=submission,
    )
    body = {
        "judgment_id": result.judgment.pk,
        "replayed": result.replayed,
        "progress": _progress(annotator=annotator, project=project),
        "next_url": reverse("annotate:workspace", args=[project.slug]),
    }
    return JsonResponse(body, status=200 if result.replayed else 201)


@annotator_endpoint
def answer_create(
    request: HttpRequest, annotator: User, project: Project, assignment_id: int
) -> HttpResponse:
    """POST `{"submission_key", "text", "time_spent_ms"?}`: the written answer to a writing task (a
    demonstration)."""
    submission_key, text, time_spent_ms = answer_parse(_json_body(request))
    result = answer_submit(
        annotator=annotator,
        project=project,
        assignment_id=assignment_id,
        submission_key=submission_key,
        text=text,
        time_spent_ms=time_spent_ms,
    )
    body = {
        "answer_id": result.answer.pk,
        "replayed": result.replayed,
        "review": result.answer.review,
        "progress": _progress(annotator=annotator, project=project),
        "next_url": reverse("annotate:workspace", args=[project.slug]),
    }
    return JsonResponse(body, status=200 if result.replayed else 201)


@annotator_endpoint
def assignment_skip_view(
    request: HttpRequest, annotator: User, project: Project, assignment_id: int
) -> HttpResponse:
    body = _json_body(request)
    if not isinstance(body, dict) or set(body) - {"reason"}:
        raise SubmissionInvalid({"non_field_errors": 'Send {"reason": "…"} only.'})
    assignment_skip(
        annotator=annotator, project=project, assignment_id=assignment_id, reason=body.get("reason")
    )
    return JsonResponse({"skipped": True, "next_url": reverse("annotate:workspace", args=[project.slug])})


def _draft_body(draft: AnswerDraft | None) -> dict[str, Any]:
    """The draft as stored, with its sanitized preview and, for an edit, the word diff from the answer
    it starts from (segments of text: the page shows them with `textContent`)."""
    if draft is None:
        return {
            "text": "",
            "revision": 0,
            "base": "",
            "saved_at": None,
            "expires_at": None,
            "preview_html": "",
            "diff": None,
        }
    original = None
    if draft.base:
        original = (
            ComparisonResponse.objects.filter(
                comparison_id=draft.assignment.comparison_id, position=ord(draft.base) - ord("A")
            )
            .values_list("response__text", flat=True)
            .first()
        )
    return {
        "text": draft.text,
        "revision": draft.revision,
        "base": draft.base,
        "saved_at": draft.updated_at.isoformat(),
        "expires_at": draft.assignment.expires_at.isoformat(),
        "preview_html": str(markdown_to_safe_html(draft.text)),
        "diff": None
        if original is None
        else [list(segment) for segment in answer_diff(original, draft.text)],
    }


@json_login_required
@require_http_methods(["GET", "POST"])
def draft_view(request: HttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    """GET: the annotator's draft on their assignment (empty when none). POST `{"text", "revision"}`:
    save it, which extends the lease (409 once the lease ran out or the work was submitted)."""
    annotator = _annotator(request)
    project = project_get_for_annotator(user=annotator, slug=slug)
    if project is None:
        return error_response(404, "No such project for you.")

    def act() -> HttpResponse:
        if request.method == "GET":
            return JsonResponse(
                _draft_body(draft_get(annotator=annotator, assignment_id=assignment_id, project=project))
            )
        text, revision, base = draft_clean(_json_body(request))
        draft = draft_save(
            annotator=annotator,
            assignment_id=assignment_id,
            text=text,
            revision=revision,
            base=base,
            project=project,
        )
        return JsonResponse(_draft_body(draft))

    return _engine_errors(act, what="draft")

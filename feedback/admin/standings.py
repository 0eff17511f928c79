"""Annotators' standings in projects: who is active, warned or suspended and why, the counts gold is
served by, a page to suspend or reinstate with a reason (`feedback.services.standing`), and the history
of changes. Standings and their history are written by the services only: nothing here edits or deletes
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from feedback.admin.common import ReadOnlyModelAdmin, local_time, staff_user
from feedback.models import AnnotatorStanding, StandingChange
from feedback.services.standing import (
    REASON_MAX_LENGTH,
    StandingChangeInvalid,
    annotator_reinstate,
    annotator_suspend,
)


@dataclass(frozen=True)
class StatusChange:
    """One of the pages: the service it calls and how it speaks of itself."""

    service: Callable[..., AnnotatorStanding]
    verb: str
    done: str
    consequence: str


CHANGES = {
    "suspend": StatusChange(
        annotator_suspend,
        "Suspend",
        "suspended",
        "They get no more work in the project, their open leases are returned, and the reason is shown to "
        "them. Their judgments stay.",
    ),
    "reinstate": StatusChange(
        annotator_reinstate,
        "Reinstate",
        "reinstated",
        "They get work in the project again, and their gold count starts afresh: earlier gold answers no "
        "longer count toward a suspension. The reason is shown to them.",
    ),
}


class StandingChangeForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=REASON_MAX_LENGTH,
        help_text="Recorded with your name and shown to the annotator.",
    )


def _history(standing: AnnotatorStanding) -> SafeString | str:
    changes = StandingChange.objects.filter(
        project_id=standing.project_id, annotator_id=standing.annotator_id
    ).select_related("changed_by")
    if not changes:
        return "No change yet."
    return format_html(
        '<table id="standing-history"><thead><tr><th scope="col">When</th><th scope="col">From</th>'
        '<th scope="col">To</th><th scope="col">By</th><th scope="col">Gold correct</th>'
        '<th scope="col">Reason</th></tr></thead><tbody>{}</tbody></table>',
        format_html_join(
            "",
            '<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td style="white-space: pre-wrap">{}'
            "</td></tr>",
            (
                (
                    local_time(change.created_at),
                    change.get_previous_status_display(),
                    change.get_status_display(),
                    change.changed_by or "the gold check",
                    change.gold_correct,
                    change.gold_answered,
                    change.reason,
                )
                for change in changes
            ),
        ),
    )


@admin.register(AnnotatorStanding)
class AnnotatorStandingAdmin(ReadOnlyModelAdmin):
    """A standing is created by an annotator's first claim in a project and moved on by the gold check and
    by people: the suspend and reinstate pages (permission to change standings) call the services."""

    list_display = ("annotator", "project", "status", "reason", "leases", "gold_served", "changed_at")
    list_filter = ("project", "status")
    list_select_related = ("project", "annotator")
    search_fields = ("annotator__username",)
    fields = (
        "project",
        "annotator",
        "status",
        "reason",
        "changed_at",
        "leases",
        "gold_slots",
        "gold_leases",
        "counts_since",
        "history",
    )
    readonly_fields = fields
    change_form_template = "admin/feedback/annotatorstanding/change_form.html"

    def has_standing_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("feedback.change_annotatorstanding")

    @admin.display(description="Gold served", ordering="gold_leases")
    def gold_served(self, standing: AnnotatorStanding) -> str:
        return f"{standing.gold_leases} of {standing.leases}"

    @admin.display(description="History, newest first")
    def history(self, standing: AnnotatorStanding) -> SafeString | str:
        return _history(standing)

    def get_queryset(self, request: HttpRequest) -> QuerySet[AnnotatorStanding]:
        return super().get_queryset(request).select_related("project", "annotator")

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        context["has_standing_permission"] = self.has_standing_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)

    def get_urls(self) -> list[URLPattern]:
        return [
            *(
                path(
                    f"<path:object_id>/{change}/",
                    self.admin_site.admin_view(self.change_status_view),
                    {"change": change},
                    name=f"feedback_annotatorstanding_{change}",
                )
                for change in CHANGES
            ),
            *super().get_urls(),
        ]

    def change_status_view(self, request: HttpRequest, object_id: str, change: str) -> HttpResponse:
        """Suspend or reinstate, with a reason; a refusal (already suspended, not suspended) is a form
        error and changes nothing."""
        if not self.has_standing_permission(request):
            raise PermissionDenied
        standing = self.get_object(request, unquote(object_id))
        if standing is None:
            raise Http404("No such standing.")
        status_change = CHANGES[change]
        form = StandingChangeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                status_change.service(
                    project_id=standing.project_id,
                    annotator_id=standing.annotator_id,
                    actor=staff_user(request),
                    reason=form.cleaned_data["reason"],
                )
            except StandingChangeInvalid as error:
                form.add_error(None, str(error))
            else:
                self.message_user(
                    request,
                    f"{standing.annotator} {status_change.done} in {standing.project}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:feedback_annotatorstanding_change", args=[standing.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"{status_change.verb} {standing.annotator} in {standing.project}",
            "form": form,
            "opts": self.opts,
            "standing": standing,
            "status_change": status_change,
        }
        return TemplateResponse(request, "admin/feedback/annotatorstanding/change_status.html", context)


@admin.register(StandingChange)
class StandingChangeAdmin(ReadOnlyModelAdmin):
    """Every suspension, reinstatement and warning, across projects: the audit record, read-only."""

    list_display = ("created_at", "annotator", "project", "previous_status", "status", "who", "reason")
    list_filter = ("project", "status")
    list_select_related = ("project", "annotator", "changed_by")
    search_fields = ("annotator__username", "reason")
    ordering = ("-created_at", "-id")

    @admin.display(description="By", ordering="changed_by__username")
    def who(self, change: StandingChange) -> str:
        return str(change.changed_by or "the gold check")

"""The project page that puts people's answers into comparisons: against a checkpoint's answers to the
same prompts, or each other. The pairing runs on a worker (`feedback.services.answers.
answers_pairing_request`); this page validates the request and sends it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from feedback.admin.common import project_page_object
from feedback.models import PolicyCheckpoint, Project
from feedback.services.answers import AnswersPairingError, answers_pairing_request, counted_answers


class AnswersPairingForm(forms.Form):
    source = forms.ModelChoiceField(
        queryset=Project.objects.none(),
        label="Answers to the prompts of",
        help_text="This project (edits its annotators made) or another, such as a demonstration project.",
    )
    against = forms.ModelChoiceField(
        queryset=PolicyCheckpoint.objects.order_by("created_at", "pk"),
        required=False,
        empty_label="Each other",
        label="Against",
        help_text="A checkpoint's answers to the same prompts (from any of its runs), or each other.",
    )
    seed = forms.IntegerField(
        min_value=0,
        max_value=2**32 - 1,
        initial=0,
        help_text="Seeds the pairing: the same seed pairs the same way.",
    )

    def __init__(self, data: Any, *, project: Project) -> None:
        super().__init__(data, initial={"source": project.pk, "seed": 0})
        counted = counted_answers().filter(prompt__project=OuterRef("pk"))
        # The project itself, and the projects whose prompts people answered.
        self.fields["source"].queryset = (  # type: ignore[attr-defined]
            Project.objects.filter(pk=project.pk) | Project.objects.filter(Exists(counted))
        ).order_by("name")


def answers_pairing_view(
    model_admin: admin.ModelAdmin[Project], request: HttpRequest, object_id: str
) -> HttpResponse:
    project = project_page_object(model_admin, request, object_id, change=True)
    form = AnswersPairingForm(request.POST if request.method == "POST" else None, project=project)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            answers_pairing_request(
                project=project, source=data["source"], against=data["against"], seed=data["seed"]
            )
        except AnswersPairingError as error:
            for field, problems in error.errors.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            model_admin.message_user(
                request,
                f"People's answers to the prompts of {data['source']} are being paired "
                f"against {data['against'] or 'each other'} by a worker; the comparisons join {project}'s "
                "queue as they are made.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:feedback_project_change", args=[project.pk]))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Compare people's answers in {project}",
        "opts": model_admin.opts,
        "original": project,
        "form": form,
        "demonstration": project.comparison_mode == Project.ComparisonMode.DEMONSTRATION,
        "own_answers": counted_answers().filter(prompt__project=project, prompt__is_gold=False).count(),
    }
    return TemplateResponse(request, "admin/feedback/project/compare_answers.html", context)

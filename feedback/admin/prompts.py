"""Prompts: the bulk import page, a form that writes one by hand with the import's checks, search in
the conversation's text, and the action that generates responses for selected prompts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Exists, OuterRef, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from feedback.admin.common import IMPORT_ERRORS_SHOWN, import_error_messages
from feedback.admin.generation import start_runs
from feedback.models import Project, Prompt, Response, conversation_hash
from feedback.services.prompts import (
    PromptImportError,
    conversation_clean,
    metadata_clean,
    prompt_file_format_for,
    prompts_import,
)


class PromptImportForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.order_by("name"))
    file = forms.FileField(
        help_text="JSON Lines (.jsonl) or CSV (.csv). A file with any bad line imports nothing."
    )
    file_format = forms.ChoiceField(
        label="Format",
        choices=[("", "From the file name"), ("jsonl", "JSON Lines"), ("csv", "CSV")],
        required=False,
    )


class PromptForm(forms.ModelForm):
    """A prompt written by hand: the same checks as a line of an import."""

    class Meta:
        model = Prompt
        fields = ("project", "external_id", "category", "conversation", "metadata")

    def clean_conversation(self) -> list[dict[str, str]]:
        return _cleaned(conversation_clean, self.cleaned_data.get("conversation"))

    def clean_metadata(self) -> dict[str, Any]:
        return _cleaned(metadata_clean, self.cleaned_data.get("metadata"))


def _cleaned(clean: Callable[[Any], Any], value: Any) -> Any:
    try:
        return clean(value)
    except ValueError as error:
        raise ValidationError(f"{error}.") from None


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    """Prompts are imported in bulk (the list's "Import prompts") or written here one at a time. Once
    responses were generated from a prompt, its conversation and project are fixed: those responses, and
    the judgments of them, answer that text, and an export pairs them with it."""

    form = PromptForm
    list_display = ("external_id", "project", "category", "turn_count", "preview", "created_at")
    list_filter = ("project", "category")
    search_fields = ("external_id",)
    list_select_related = ("project",)
    readonly_fields = ("content_hash", "created_at", "conversation_display")
    change_list_template = "admin/feedback/prompt/change_list.html"
    fields = ("project", "external_id", "category", "conversation", "conversation_display", "metadata")
    actions = ("generate_responses",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Prompt]:
        # Whether responses exist comes with the prompt: the change page asks several times.
        answered = Exists(Response.objects.filter(prompt=OuterRef("pk")))
        return super().get_queryset(request).annotate(answered=answered)

    @staticmethod
    def _answered(prompt: Prompt | None) -> bool:
        return bool(getattr(prompt, "answered", False))  # a new prompt has none

    def get_fields(self, request: HttpRequest, obj: Prompt | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("project", "external_id", "category", "conversation", "metadata")
        if self._answered(obj):
            return ("project", "external_id", "category", "conversation_display", "metadata")
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Prompt | None = None) -> tuple[str, ...]:
        if self._answered(obj):
            return (*self.readonly_fields, "project")
        return tuple(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Prompt, form: forms.ModelForm, change: bool) -> None:
        obj.content_hash = conversation_hash(obj.conversation)
        super().save_model(request, obj, form, change)

    @admin.display(description="Turns")
    def turn_count(self, prompt: Prompt) -> int:
        return prompt.turn_count

    @admin.display(description="Last user message")
    def preview(self, prompt: Prompt) -> str:
        return prompt.preview

    @admin.display(description="Conversation")
    def conversation_display(self, prompt: Prompt) -> str:
        messages = format_html_join(
            "",
            '<p><strong>{}</strong><br><span style="white-space: pre-wrap">{}</span></p>',
            ((message.get("role", "?"), message.get("content", "")) for message in prompt.conversation or []),
        )
        if not self._answered(prompt):
            return messages
        return format_html(
            '{}<p class="help">Responses were generated from this conversation, so it can no longer change. '
            "Import or add a new prompt for other text.</p>",
            messages,
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Prompt], search_term: str
    ) -> tuple[QuerySet[Prompt], bool]:
        """Search ids and the conversation's text, within whatever filters are already applied."""
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = queryset.annotate(conversation_text=Cast("conversation", TextField())).filter(
            Q(external_id__icontains=term) | Q(conversation_text__icontains=term)
        )
        return matches, False

    def get_urls(self) -> list[URLPattern]:
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="feedback_prompt_import"),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PromptImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            project: Project = form.cleaned_data["project"]
            upload = form.cleaned_data["file"]
            try:
                file_format = form.cleaned_data["file_format"] or prompt_file_format_for(upload.name)
                report = prompts_import(project=project, source=upload, file_format=file_format)
            except ValueError as error:
                form.add_error("file_format", str(error))
            except PromptImportError as error:
                form.add_error("file", import_error_messages(upload.name, error))
            else:
                self.message_user(
                    request, f"{upload.name} into {project}: {report.summary()}.", messages.SUCCESS
                )
                for conflict in report.conflicts[:IMPORT_ERRORS_SHOWN]:
                    self.message_user(request, str(conflict), messages.WARNING)
                changelist = reverse("admin:feedback_prompt_changelist")
                return HttpResponseRedirect(f"{changelist}?project__id__exact={project.pk}")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import prompts",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/feedback/prompt/import.html", context)

    def has_generate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("feedback.add_generationrun")

    @admin.action(
        description="Generate responses for the selected prompts (current checkpoint)",
        permissions=["generate"],
    )
    def generate_responses(self, request: HttpRequest, queryset: QuerySet[Prompt]) -> None:
        """One run per project, over that project's selected prompts only."""
        prompts_by_project: dict[int, list[Prompt]] = {}
        projects: dict[int, Project] = {}
        for prompt in queryset.select_related("project__current_checkpoint").order_by("project__name", "id"):
            projects.setdefault(prompt.project_id, prompt.project)
            prompts_by_project.setdefault(prompt.project_id, []).append(prompt)
        start_runs(
            self,
            request,
            ((projects[project_id], prompts) for project_id, prompts in prompts_by_project.items()),
        )

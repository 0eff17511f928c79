"""Projects: settings, progress, the runs started for them, the action that generates responses with
the current checkpoint, and the link to each project's quality page (`feedback.admin.quality`).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from feedback.admin.answers_pairing import answers_pairing_view
from feedback.admin.common import ReadOnlyInline, percent
from feedback.admin.generation import run_progress, start_runs
from feedback.admin.leaderboard import project_leaderboard_view
from feedback.admin.quality import project_quality_view
from feedback.admin.settings_fields import EscapedLinesField, LinesField, RubricField
from feedback.models import (
    GenerationRun,
    PolicyCheckpoint,
    Project,
    ProjectMembership,
    default_rating_rubric,
    default_strength_labels,
)
from feedback.selectors import projects_with_progress
from feedback.services.answers import writing_tasks_open


class GenerationRunInline(ReadOnlyInline):
    model = GenerationRun
    fk_name = "project"
    fields = ("checkpoint", "opponent_checkpoint", "status", "progress", "created_at")
    readonly_fields = fields
    ordering = ("-created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[GenerationRun]:
        return super().get_queryset(request).select_related("checkpoint", "opponent_checkpoint")

    @admin.display(description="Prompts done")
    def progress(self, run: GenerationRun) -> str:
        return run_progress(run)


class ProjectMembershipInline(admin.TabularInline):
    """Who works on the project, and as what: annotators judge, reviewers also decide the review queue,
    managers also pick items for review and reinstate annotators."""

    model = ProjectMembership
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)
    extra = 0
    verbose_name = "member"


class ProjectForm(forms.ModelForm):
    """The project's list settings as lines of text (`feedback.admin.settings_fields`), not raw JSON."""

    # A new project starts from the model's defaults (a declared field does not take them by itself).
    strength_labels = LinesField(
        initial=default_strength_labels,
        label="Strength labels",
        help_text="One per line, weakest first (at most 10). None: annotators give no strength.",
    )
    rating_rubric = RubricField(
        initial=default_rating_rubric,
        label="Rating rubric",
        help_text="One axis per line: key | label | min-max | description, e.g. "
        "helpfulness | Helpfulness | 1-5 | Is it useful and correct? None: no ratings.",
    )
    stop_strings = EscapedLinesField(
        label="Stop strings",
        help_text="One per line; \\n is a newline, \\t a tab, \\\\ a backslash (e.g. \\nUser:). "
        "Generation stops before the first one it writes.",
    )


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectForm
    list_display = (
        "name",
        "slug",
        "comparison_mode",
        "is_active",
        "prompt_count",
        "comparison_count",
        "progress",
        "current_checkpoint",
        "pages",
    )
    list_filter = ("is_active", "comparison_mode")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    list_select_related = ("current_checkpoint",)
    readonly_fields = ("prompt_count", "comparison_count", "progress", "checkpoints_used", "created_at")
    inlines = (ProjectMembershipInline, GenerationRunInline)
    actions = ("generate_responses", "open_writing_tasks")
    change_form_template = "admin/feedback/project/change_form.html"
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_active", "guidelines")}),
        ("Progress", {"fields": ("prompt_count", "comparison_count", "progress", "checkpoints_used")}),
        (
            "Comparisons",
            {
                "fields": (
                    "comparison_mode",
                    "responses_per_comparison",
                    "allows_tie",
                    "strength_labels",
                    "rating_rubric",
                    "judgments_per_comparison",
                    "lease_duration",
                )
            },
        ),
        (
            "People's answers",
            {
                "fields": ("reference_answers", "answer_editing", "answers_reviewed"),
                "description": "In a demonstration project annotators write the answer to each prompt; "
                "how many people write one is the overlap above. In a pairwise or ranking project they "
                "may improve the answer they chose. Either way the answer is stored as a person's, with "
                "what it was edited from.",
            },
        ),
        (
            "Generation",
            {
                "fields": (
                    "current_checkpoint",
                    "samples_per_prompt",
                    "max_new_tokens",
                    "temperature",
                    "top_p",
                    "top_k",
                    "repetition_penalty",
                    "stop_strings",
                    "completion_template",
                    "pairing_strategy",
                    "max_comparisons_per_prompt",
                )
            },
        ),
        (
            "Gold items",
            {
                "fields": ("gold_rate", "gold_warn_accuracy", "gold_suspend_accuracy", "gold_min_answers"),
                "description": "Gold comparisons are served at this rate among the others, look exactly "
                "like them, and grade the annotator: below the warning accuracy they are flagged, below "
                "the suspension accuracy (after the minimum number of gold answers) they get no more work "
                "in the project until a manager or admin reinstates them.",
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return projects_with_progress(super().get_queryset(request))

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/quality/",
                self.admin_site.admin_view(self.quality_view),
                name="feedback_project_quality",
            ),
            path(
                "<path:object_id>/leaderboard/",
                self.admin_site.admin_view(self.leaderboard_view),
                name="feedback_project_leaderboard",
            ),
            path(
                "<path:object_id>/compare-answers/",
                self.admin_site.admin_view(self.compare_answers_view),
                name="feedback_project_compare_answers",
            ),
            *super().get_urls(),
        ]

    def leaderboard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return project_leaderboard_view(self, request, object_id)

    def compare_answers_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return answers_pairing_view(self, request, object_id)

    @admin.display(description="Figures")
    def pages(self, project: Project) -> SafeString:
        """The project's own pages, in one column (a list of ten columns does not fit a laptop screen)."""
        return format_html(
            '<a href="{}">Quality</a><br><a href="{}">Leaderboard</a>',
            reverse("admin:feedback_project_quality", args=[project.pk]),
            reverse("admin:feedback_project_leaderboard", args=[project.pk]),
        )

    def quality_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return project_quality_view(self, request, object_id)

    @admin.display(description="Prompts", ordering="prompt_total")
    def prompt_count(self, project: Project) -> int:
        return getattr(project, "prompt_total", 0)

    @admin.display(description="Comparisons", ordering="comparison_total")
    def comparison_count(self, project: Project) -> int:
        return getattr(project, "comparison_total", 0)

    @admin.display(description="Completed")
    def progress(self, project: Project) -> str:
        return percent(getattr(project, "comparison_completed", 0), getattr(project, "comparison_total", 0))

    @admin.display(description="Checkpoints that answered")
    def checkpoints_used(self, project: Project) -> str:
        names = (
            PolicyCheckpoint.objects.filter(responses__prompt__project=project)
            .distinct()
            .order_by("name")
            .values_list("name", flat=True)
        )
        return ", ".join(names) or "none yet"

    @admin.action(
        description="Open writing tasks for prompts without one (demonstration projects)",
        permissions=["change"],
    )
    def open_writing_tasks(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        for project in queryset.order_by("name"):
            if project.comparison_mode != Project.ComparisonMode.DEMONSTRATION:
                self.message_user(
                    request, f"{project}: not a demonstration project; nothing opened.", messages.WARNING
                )
                continue
            opened = writing_tasks_open(project=project)
            waiting = (
                " (prompts without model answers wait for a generation run)"
                if project.reference_answers
                else ""
            )
            self.message_user(
                request, f"{project}: {opened} writing task(s) opened{waiting}.", messages.SUCCESS
            )

    def has_generate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("feedback.add_generationrun")

    @admin.action(description="Generate responses with the current checkpoint", permissions=["generate"])
    def generate_responses(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        projects = queryset.select_related("current_checkpoint").order_by("name")
        start_runs(self, request, ((project, None) for project in projects))

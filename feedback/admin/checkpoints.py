"""Policy checkpoints: where the weights are and how they are served, and the action that asks a
worker to validate them (its report is shown escaped, as a table).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet, URLField
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from feedback.admin.common import key_value_table
from feedback.models import PolicyCheckpoint
from feedback.services.generation import checkpoint_validation_request
from feedback.services.leaderboard import checkpoint_standings

TINY_TEST_MODEL_BADGE = (
    '<span title="Random weights from make_tiny_checkpoint: its responses are noise." '
    'style="background: #777; color: #fff; border-radius: 4px; padding: 1px 5px; font-size: 0.8em; '
    'white-space: nowrap">tiny test model</span>'
)


@admin.register(PolicyCheckpoint)
class PolicyCheckpointAdmin(admin.ModelAdmin):
    list_display = (
        "name_and_label",
        "kind",
        "backend",
        "source_type",
        "source",
        "adapter_source",
        "parent",
        "training_step",
        "validation_status",
        "created_at",
    )
    list_filter = ("kind", "backend", "source_type", "validation_status", "dtype")
    search_fields = ("name", "source", "adapter_source", "notes")
    list_select_related = ("parent",)
    autocomplete_fields = ("parent",)
    readonly_fields = (
        "validation_status",
        "validated_at",
        "validation_report_display",
        "created_at",
        "leaderboard_standing",
    )
    # Serving URLs are usually plain http inside the cluster (http://vllm:8000/v1).
    formfield_overrides = {URLField: {"assume_scheme": "http"}}
    fieldsets = (
        (None, {"fields": ("name", "kind", "parent", "training_step", "notes")}),
        (
            "Leaderboard",
            {
                "fields": ("leaderboard_standing",),
                "description": "Its score on each project's leaderboard (default filters), its parent's, and "
                "the difference.",
            },
        ),
        (
            "Weights",
            {"fields": ("source_type", "source", "revision", "adapter_source", "adapter_revision", "dtype")},
        ),
        ("Serving", {"fields": ("backend", "api_base_url", "served_model_name", "api_key_env")}),
        (
            "Validation",
            {
                "fields": ("validation_status", "validated_at", "validation_report_display", "created_at"),
                "description": "A worker inspects the checkpoint where its files are: "
                "use the action “Validate selected checkpoints” on the list.",
            },
        ),
    )
    actions = ("validate_checkpoints",)

    @admin.display(description="Name", ordering="name")
    def name_and_label(self, checkpoint: PolicyCheckpoint) -> SafeString | str:
        if checkpoint.is_tiny_test_model:
            return format_html("{} " + TINY_TEST_MODEL_BADGE, checkpoint.name)
        return checkpoint.name

    @admin.display(description="Validation report")
    def validation_report_display(self, checkpoint: PolicyCheckpoint) -> SafeString | str:
        report = checkpoint.validation_report
        if not report:
            return "Not validated yet."
        if not isinstance(report, dict):
            return json.dumps(report, ensure_ascii=False)
        return key_value_table(report)

    @admin.display(description="Scores")
    def leaderboard_standing(self, checkpoint: PolicyCheckpoint) -> SafeString | str:
        if checkpoint.pk is None:
            return "—"
        standings = checkpoint_standings(checkpoint)
        if not standings:
            return "Not on any project's leaderboard yet."

        def score(value: dict[str, Any] | None) -> str:
            return "—" if value is None else f"{value['elo']:.0f} [{value['low']:.0f}, {value['high']:.0f}]"

        def verdict(pair: dict[str, Any] | None) -> str:
            if pair is None:
                return "never met its parent"
            if pair["needed"] == 0:
                return f"separated at 95% ({pair['wins']} wins, {pair['losses']} losses)"
            if pair["needed"]:
                return f"not separated yet: about {pair['needed']} more decisive battles"
            return "not separated: even"

        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td class="number">{}</td><td class="number">{}</td>'
            '<td class="number">{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:feedback_project_leaderboard", args=[entry["project"].pk]),
                    entry["project"],
                    score(entry["score"]),
                    score(entry["parent"]),
                    "—" if entry["difference"] is None else f"{entry['difference']:+.0f}",
                    verdict(entry["head_to_head"]) if checkpoint.parent_id else "no parent",
                )
                for entry in standings
            ),
        )
        return format_html(
            '<table id="checkpoint-leaderboard"><thead><tr><th>Project</th><th class="number">Score [95%]</th>'
            '<th class="number">Parent’s</th><th class="number">Difference</th><th>Head to head with its parent'
            "</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.action(description="Validate selected checkpoints", permissions=["change"])
    def validate_checkpoints(self, request: HttpRequest, queryset: QuerySet[PolicyCheckpoint]) -> None:
        count = checkpoint_validation_request(checkpoints=queryset)
        self.message_user(
            request,
            f"Asked the workers to validate {count} checkpoint(s); each shows “Checking” until a worker "
            "records its verdict.",
            messages.SUCCESS,
        )

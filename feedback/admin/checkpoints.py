"""Policy checkpoints: where the weights are and how they are served, and the action that asks a
worker to validate them (its report is shown escaped, as a table).
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet, URLField
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from feedback.admin.common import key_value_table
from feedback.models import PolicyCheckpoint
from feedback.services.generation import checkpoint_validation_request

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
    readonly_fields = ("validation_status", "validated_at", "validation_report_display", "created_at")
    # Serving URLs are usually plain http inside the cluster (http://vllm:8000/v1).
    formfield_overrides = {URLField: {"assume_scheme": "http"}}
    fieldsets = (
        (None, {"fields": ("name", "kind", "parent", "training_step", "notes")}),
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

    @admin.action(description="Validate selected checkpoints", permissions=["change"])
    def validate_checkpoints(self, request: HttpRequest, queryset: QuerySet[PolicyCheckpoint]) -> None:
        count = checkpoint_validation_request(checkpoints=queryset)
        self.message_user(
            request,
            f"Asked the workers to validate {count} checkpoint(s); each shows “Checking” until a worker "
            "records its verdict.",
            messages.SUCCESS,
        )

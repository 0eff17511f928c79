"""Query parameters: each endpoint declares the ones it takes, as a serializer; nothing else is accepted.

An unknown or repeated parameter is a 400 naming it; values are validated (integers in range, ISO 8601
date-times, choices) before any query runs. Views then apply each validated value with an explicit
filter: request parameters never reach `filter(**...)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.http import QueryDict
from rest_framework import serializers

from feedback.api.errors import InvalidInput
from feedback.models import Comparison, Export, GenerationRun, PolicyCheckpoint, PromptCategory, ReviewItem

# Ids are PostgreSQL bigints; anything longer than 18 digits could overflow one, so it is refused here.
MAX_ID = 999_999_999_999_999_999


def id_field(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


def query_parameters_check(
    params: QueryDict, *, allowed: Iterable[str], repeatable: Iterable[str] = ()
) -> None:
    """Refuse parameters not in `allowed` and repeats of those not in `repeatable`."""
    allowed = frozenset(allowed)
    repeatable = frozenset(repeatable)
    takes = ", ".join(sorted(allowed)) or "no query parameters"
    errors: dict[str, list[str]] = {}
    unknown = sorted(name for name in params if name not in allowed)
    for name in unknown:
        errors[name] = [f"Unknown query parameter. This endpoint takes: {takes}."]
    for name in params:
        if name in allowed and name not in repeatable and len(params.getlist(name)) > 1:
            errors[name] = ["Give this parameter once."]
    if errors:
        detail = (
            f"Unknown query parameter(s): {', '.join(unknown)}."
            if unknown
            else "Invalid query parameters: fix the ones named in `errors`."
        )
        raise InvalidInput(errors, detail=detail)


def query_validate(
    serializer_class: type[serializers.Serializer], params: Mapping[str, Any]
) -> dict[str, Any]:
    serializer = serializer_class(data=dict(params))
    if not serializer.is_valid():
        raise InvalidInput(
            dict(serializer.errors), detail="Invalid query parameters: fix the ones named in `errors`."
        )
    return dict(serializer.validated_data)


class ProjectQuery(serializers.Serializer):
    is_active = serializers.BooleanField(required=False, help_text="Only active (true) or archived (false).")


class PromptQuery(serializers.Serializer):
    category = serializers.ChoiceField(choices=PromptCategory.choices, required=False)
    external_id = serializers.CharField(required=False, max_length=200, help_text="Exact external id.")


class CheckpointQuery(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200, help_text="Exact name.")
    kind = serializers.ChoiceField(choices=PolicyCheckpoint.Kind.choices, required=False)
    parent = id_field(required=False, help_text="Only checkpoints trained from this one.")  # type: ignore[assignment]


class GenerationRunQuery(serializers.Serializer):
    project = serializers.SlugField(required=False, max_length=100, help_text="Project slug.")
    status = serializers.ChoiceField(choices=GenerationRun.Status.choices, required=False)
    checkpoint = id_field(required=False, help_text="Runs of this checkpoint, as policy or opponent.")


class ComparisonQuery(serializers.Serializer):
    project = serializers.SlugField(required=False, max_length=100, help_text="Project slug.")
    status = serializers.ChoiceField(choices=Comparison.Status.choices, required=False)
    prompt = id_field(required=False)
    generation_run = id_field(required=False)
    created_after = serializers.DateTimeField(required=False, help_text="ISO 8601; exclusive.")
    created_before = serializers.DateTimeField(required=False, help_text="ISO 8601; exclusive.")


class JudgmentQuery(serializers.Serializer):
    project = serializers.SlugField(required=False, max_length=100, help_text="Project slug.")
    comparison = id_field(required=False)
    annotator = serializers.CharField(required=False, max_length=150, help_text="Annotator's username.")
    updated_after = serializers.DateTimeField(
        required=False,
        help_text=(
            "ISO 8601; exclusive. For incremental pulls: pass the `updated_at` of the last judgment you "
            "stored, less a few minutes (a judgment's transaction can commit a little after its "
            "timestamp), and de-duplicate by id."
        ),
    )


class ExportQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=Export.Status.choices, required=False)


class ReviewQueueQuery(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=ReviewItem.Status.choices,
        required=False,
        help_text="Items in this state; without it, those waiting for a decision (pending).",
    )

"""/api/: version 1 of the REST API, its OpenAPI schema and the Swagger UI page.

The schema (/api/schema/) and the docs page (/api/docs/) are public: they describe shapes, not data,
and a script author needs them before having a token. Every /api/v1/ endpoint needs a data engineer or
an admin (see `feedback.api`). Unknown URLs under /api/ answer a JSON 404 in the API's error shape.
"""

from __future__ import annotations

from django.urls import include, path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from feedback.api import views
from feedback.api.errors import api_not_found


class IdConverter:
    """A row id: 1 to 18 digits, so every id that resolves fits a PostgreSQL bigint."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

app_name = "api"

SCHEMA_ACCESS = {"authentication_classes": [], "permission_classes": [AllowAny], "throttle_classes": []}

v1 = [
    path("projects", views.ProjectList.as_view(), name="project-list"),
    path("projects/<slug:slug>", views.ProjectDetail.as_view(), name="project-detail"),
    path("projects/<slug:slug>/prompts", views.ProjectPrompts.as_view(), name="project-prompts"),
    path("projects/<slug:slug>/gold", views.ProjectGold.as_view(), name="project-gold"),
    path("projects/<slug:slug>/quality", views.ProjectQualityView.as_view(), name="project-quality"),
    path("projects/<slug:slug>/leaderboard", views.ProjectLeaderboard.as_view(), name="project-leaderboard"),
    path(
        "projects/<slug:slug>/leaderboard/matrices",
        views.ProjectLeaderboardMatrices.as_view(),
        name="project-leaderboard-matrices",
    ),
    path(
        "projects/<slug:slug>/leaderboard/head-to-head",
        views.ProjectHeadToHead.as_view(),
        name="project-head-to-head",
    ),
    path(
        "projects/<slug:slug>/annotators", views.ProjectAnnotatorQuality.as_view(), name="project-annotators"
    ),
    path(
        "projects/<slug:slug>/review-queue", views.ProjectReviewQueue.as_view(), name="project-review-queue"
    ),
    path(
        "projects/<slug:slug>/review-items/<id:pk>/decision",
        views.ReviewItemDecision.as_view(),
        name="review-item-decision",
    ),
    path("checkpoints", views.CheckpointList.as_view(), name="checkpoint-list"),
    path("checkpoints/<id:pk>", views.CheckpointDetail.as_view(), name="checkpoint-detail"),
    path("generation-runs", views.GenerationRunList.as_view(), name="generation-run-list"),
    path("generation-runs/<id:pk>", views.GenerationRunDetail.as_view(), name="generation-run-detail"),
    path("generation-runs/<id:pk>/status", views.GenerationRunStatus.as_view(), name="generation-run-status"),
    path("comparisons", views.ComparisonList.as_view(), name="comparison-list"),
    path("comparisons/<id:pk>", views.ComparisonDetail.as_view(), name="comparison-detail"),
    path("judgments", views.JudgmentList.as_view(), name="judgment-list"),
    path("judgments/<id:pk>", views.JudgmentDetail.as_view(), name="judgment-detail"),
    path("exports", views.ExportList.as_view(), name="export-list"),
    path("exports/stream", views.ExportStream.as_view(), name="export-stream"),
    path("exports/<id:pk>", views.ExportDetail.as_view(), name="export-detail"),
    path("exports/<id:pk>/status", views.ExportStatus.as_view(), name="export-status"),
    path("exports/<id:pk>/download", views.ExportDownload.as_view(), name="export-download"),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(**SCHEMA_ACCESS), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", **SCHEMA_ACCESS), name="docs"),
    re_path(r"^", api_not_found, name="not-found"),  # matches any rest, newlines included
]

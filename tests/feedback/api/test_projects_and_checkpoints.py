"""Projects and checkpoints: reads, allowlisted filters, pagination, and the 400s for bad query strings."""

import pytest

from feedback.models import Comparison
from tests.factories import (
    ComparisonFactory,
    JudgmentFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    PromptFactory,
)

pytestmark = pytest.mark.django_db


def test_projects_carry_their_progress(engineer_api):
    busy = ProjectFactory(name="Busy", slug="busy")
    PromptFactory.create_batch(2, project=busy)
    done = ComparisonFactory(prompt=PromptFactory(project=busy), status=Comparison.Status.COMPLETED)
    JudgmentFactory.create_batch(2, comparison=done)
    ComparisonFactory(prompt=PromptFactory(project=busy))
    ProjectFactory(name="Empty", slug="empty")

    response = engineer_api.get("/api/v1/projects")
    assert response.status_code == 200
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    assert [
        (p["slug"], p["prompt_total"], p["comparison_total"], p["comparison_completed"], p["judgment_total"])
        for p in body["results"]
    ] == [("busy", 4, 2, 1, 2), ("empty", 0, 0, 0, 0)]


def test_a_project_by_slug(admin_api):
    project = ProjectFactory(slug="one", name="One", judgments_per_comparison=5)
    body = admin_api.get("/api/v1/projects/one").json()
    assert body["slug"] == "one"
    assert body["judgments_per_comparison"] == 5
    assert body["current_checkpoint"] is None
    assert body["rating_rubric"] == project.rating_rubric


def test_an_unknown_project_is_a_json_404(engineer_api):
    response = engineer_api.get("/api/v1/projects/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "No Project matches the given query."}


@pytest.mark.parametrize(
    ("value", "expected"), [("true", ["active"]), ("false", ["archived"]), ("0", ["archived"])]
)
def test_projects_filter_by_activity(engineer_api, value, expected):
    ProjectFactory(slug="active", name="Active")
    ProjectFactory(slug="archived", name="Archived", is_active=False)
    body = engineer_api.get("/api/v1/projects", {"is_active": value}).json()
    assert [project["slug"] for project in body["results"]] == expected


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ({"is_active": "maybe"}, {"is_active": ["Must be a valid boolean."]}),
        ({"page_size": "0"}, {"page_size": ["A whole number from 1 to 1000."]}),
        ({"page_size": "1001"}, {"page_size": ["A whole number from 1 to 1000."]}),
        ({"page_size": "ten"}, {"page_size": ["A whole number from 1 to 1000."]}),
        (
            {"cursor": "cD0yMDI2"},
            {"cursor": ["Invalid cursor: follow the `next` or `previous` links as given."]},
        ),
    ],
)
def test_bad_query_values_are_400_naming_the_parameter(engineer_api, query, errors):
    ProjectFactory()
    response = engineer_api.get("/api/v1/projects", query)
    assert response.status_code == 400
    assert response.json()["errors"] == errors


@pytest.mark.parametrize(
    ("url", "unknown"),
    [
        ("/api/v1/projects", ["format", "limit", "ordering"]),
        ("/api/v1/projects/p", ["format", "limit", "ordering"]),
        ("/api/v1/projects/p/prompts", ["format", "limit", "ordering"]),
        ("/api/v1/checkpoints", ["format", "limit", "ordering"]),
        ("/api/v1/generation-runs", ["format", "limit", "ordering"]),
        ("/api/v1/comparisons", ["format", "limit", "ordering"]),
        ("/api/v1/judgments", ["format", "limit", "ordering"]),
        ("/api/v1/exports", ["format", "limit", "ordering"]),
        ("/api/v1/exports/stream", ["limit", "ordering"]),  # `format` is an export option there
    ],
)
def test_unknown_query_parameters_are_400_naming_them(engineer_api, url, unknown):
    ProjectFactory(slug="p")
    response = engineer_api.get(url, {"ordering": "-id", "format": "preference", "limit": "5"})
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == f"Unknown query parameter(s): {', '.join(unknown)}."
    assert sorted(body["errors"]) == unknown
    assert body["errors"]["limit"][0].startswith("Unknown query parameter. This endpoint takes: ")


def test_detail_endpoints_take_no_query_parameters(engineer_api):
    ProjectFactory(slug="p")
    response = engineer_api.get("/api/v1/projects/p", {"expand": "all"})
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Unknown query parameter(s): expand.",
        "errors": {"expand": ["Unknown query parameter. This endpoint takes: no query parameters."]},
    }


def test_a_repeated_parameter_is_400(engineer_api):
    response = engineer_api.get("/api/v1/projects?is_active=true&is_active=false")
    assert response.status_code == 400
    assert response.json()["errors"] == {"is_active": ["Give this parameter once."]}


def test_projects_page_by_name_with_bounded_pages(engineer_api):
    for name in ("Delta", "Alpha", "Charlie", "Bravo", "Echo"):
        ProjectFactory(name=name, slug=name.lower())
    seen = []
    url = "/api/v1/projects?page_size=2"
    while url:
        body = engineer_api.get(url).json()
        assert len(body["results"]) <= 2
        seen.extend(project["name"] for project in body["results"])
        url = body["next"]
    assert seen == ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]


def test_a_cursor_from_another_listing_is_refused(engineer_api):
    PolicyCheckpointFactory.create_batch(3)
    ProjectFactory.create_batch(3)
    next_checkpoints = engineer_api.get("/api/v1/checkpoints?page_size=1").json()["next"]
    cursor = next_checkpoints.split("cursor=")[1].split("&")[0]
    response = engineer_api.get("/api/v1/projects", {"cursor": cursor})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["cursor"]


# --- checkpoints -----------------------------------------------------------------------------------------


def test_checkpoints_show_their_lineage_newest_first(engineer_api):
    base = PolicyCheckpointFactory(name="base")
    tuned = PolicyCheckpointFactory(name="tuned", parent=base, training_step=1000, kind="instruct")
    body = engineer_api.get("/api/v1/checkpoints").json()
    assert [(c["name"], c["parent"], c["parent_name"]) for c in body["results"]] == [
        ("tuned", base.pk, "base"),
        ("base", None, None),
    ]
    detail = engineer_api.get(f"/api/v1/checkpoints/{tuned.pk}").json()
    assert (detail["id"], detail["training_step"], detail["kind"]) == (tuned.pk, 1000, "instruct")
    assert "api_key_env" not in detail


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"name": "tuned"}, ["tuned"]),
        ({"kind": "base"}, ["base"]),
        ({"parent": "PARENT"}, ["tuned"]),
    ],
)
def test_checkpoints_filter(engineer_api, query, expected):
    base = PolicyCheckpointFactory(name="base", kind="base")
    PolicyCheckpointFactory(name="tuned", parent=base)
    query = {key: str(base.pk) if value == "PARENT" else value for key, value in query.items()}
    body = engineer_api.get("/api/v1/checkpoints", query).json()
    assert [c["name"] for c in body["results"]] == expected


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ({"parent": "0"}, {"parent": ["Ensure this value is greater than or equal to 1."]}),
        ({"parent": "x"}, {"parent": ["A valid integer is required."]}),
        (
            {"parent": "1" * 19},
            {"parent": ["Ensure this value is less than or equal to 999999999999999999."]},
        ),
        ({"kind": "huge"}, {"kind": ['"huge" is not a valid choice.']}),
    ],
)
def test_bad_checkpoint_filters_are_400(engineer_api, query, errors):
    response = engineer_api.get("/api/v1/checkpoints", query)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid query parameters: fix the ones named in `errors`.",
        "errors": errors,
    }


@pytest.mark.parametrize("path", ["/api/v1/checkpoints/0", "/api/v1/checkpoints/999999999999999999"])
def test_missing_ids_are_404(engineer_api, path):
    response = engineer_api.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "No PolicyCheckpoint matches the given query."}


def test_ids_too_long_for_a_bigint_never_reach_the_database(engineer_api):
    response = engineer_api.get("/api/v1/checkpoints/" + "9" * 19)
    assert response.status_code == 404
    assert response.json() == {"detail": "No API endpoint at /api/v1/checkpoints/9999999999999999999."}

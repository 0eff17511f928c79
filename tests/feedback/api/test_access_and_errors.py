"""Who may call the API, the one error shape, unknown URLs, and the per-token rate limit."""

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from feedback.models import Export
from tests.factories import ComparisonFactory, GenerationRunFactory, JudgmentFactory, ProjectFactory
from tests.feedback.api.conftest import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def urls():
    judgment = JudgmentFactory(comparison=ComparisonFactory(prompt__project=ProjectFactory(slug="p")))
    checkpoint = judgment.comparison.entries.first().response.checkpoint
    run = GenerationRunFactory()
    export = Export.objects.create(
        options={"format": "preference"}, high_water_mark=0, snapshot_digest="0" * 64
    )
    return [
        reverse("api:project-list"),
        reverse("api:project-detail", args=["p"]),
        reverse("api:project-prompts", args=["p"]),
        reverse("api:checkpoint-list"),
        reverse("api:checkpoint-detail", args=[checkpoint.pk]),
        reverse("api:generation-run-list"),
        reverse("api:generation-run-detail", args=[run.pk]),
        reverse("api:generation-run-status", args=[run.pk]),
        reverse("api:comparison-list"),
        reverse("api:comparison-detail", args=[judgment.comparison_id]),
        reverse("api:judgment-list"),
        reverse("api:judgment-detail", args=[judgment.pk]),
        reverse("api:export-list"),
        reverse("api:export-detail", args=[export.pk]),
        reverse("api:export-status", args=[export.pk]),
        reverse("api:export-download", args=[export.pk]),
        reverse("api:export-stream") + "?format=judgments",
    ]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("anonymous", 401),
        ("annotator", 403),
        ("data engineer", 200),
        ("admin", 200),
    ],
)
def test_every_endpoint_by_role(request, urls, who, expected):
    client = {
        "anonymous": APIClient(),
        "annotator": token_client(request.getfixturevalue("annotator")),
        "data engineer": token_client(request.getfixturevalue("data_engineer")),
        "admin": token_client(request.getfixturevalue("admin_user")),
    }[who]
    statuses = {url: client.get(url).status_code for url in urls}
    download = reverse("api:export-download", args=[Export.objects.get().pk])
    # The export above is pending: readers get the download's 409, not the archive.
    assert statuses == {url: 409 if url == download and expected == 200 else expected for url in urls}


@pytest.mark.parametrize("url", ["/api/v1/exports", "/api/v1/generation-runs", "/api/v1/projects/p/prompts"])
def test_writes_are_refused_to_annotators_and_strangers_before_the_body_is_read(annotator, url):
    ProjectFactory(slug="p")
    assert APIClient().post(url, {}, format="json").status_code == 401
    response = token_client(annotator).post(url, "not even json", content_type="application/json")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "This API is for data engineers and admins; your account has neither role."
    }


@pytest.mark.parametrize(
    "url", ["/api/", "/api/v1/", "/api/v2/projects", "/api/v1/projects/", "/api/v1/nothing"]
)
def test_unknown_api_urls_are_json_404s(engineer_api, url):
    for client in (engineer_api, APIClient()):
        for method in ("get", "post", "delete"):
            response = getattr(client, method)(url)
            assert response.status_code == 404
            assert response.json() == {"detail": f"No API endpoint at {url}."}


def test_unsupported_methods_are_405_in_the_shape(engineer_api):
    ProjectFactory(slug="p")
    response = engineer_api.delete("/api/v1/projects/p")
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "DELETE" not allowed.'}


def test_a_malformed_json_body_is_400_in_the_shape(engineer_api):
    response = engineer_api.generic("POST", "/api/v1/exports", "{", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


def test_a_server_error_is_a_json_500_in_the_shape_with_nothing_of_the_failure(engineer_api, monkeypatch):
    from feedback.api import views

    def broken(self):
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(views.ProjectList, "get_queryset", broken)
    engineer_api.raise_request_exception = False
    for accept in ("application/json", "*/*"):
        response = engineer_api.get("/api/v1/projects", HTTP_ACCEPT=accept)
        assert response.status_code == 500
        assert response["Content-Type"] == "application/json"
        assert response.json() == {
            "detail": "The server failed to answer this request. The error was logged; try again later."
        }


def test_tokens_are_rate_limited_with_retry_after(settings, data_engineer):
    settings.RANKWISE_API_TOKEN_RATE = "3/min"
    client = token_client(data_engineer)
    other = token_client(data_engineer)
    assert [client.get("/api/v1/projects").status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get("/api/v1/projects")
    assert limited.status_code == 429
    assert 0 < int(limited["Retry-After"]) <= 60
    assert limited.json() == {
        "detail": f"Request was throttled. Expected available in {limited['Retry-After']} seconds."
    }
    # The limit is per token, and the session (a person in a browser) is not counted.
    assert other.get("/api/v1/projects").status_code == 200
    session = APIClient()
    session.force_login(data_engineer)
    assert [session.get("/api/v1/projects").status_code for _ in range(5)] == [200] * 5


def test_the_schema_and_docs_are_public_and_served_without_a_cdn(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Rankwise API"
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "cdn." not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert (
        client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
    )


def test_a_bad_token_does_not_keep_anyone_from_the_schema(client):
    assert client.get("/api/schema/", HTTP_AUTHORIZATION="Bearer nonsense").status_code == 200


def test_a_body_over_the_limit_is_a_json_413_naming_it(engineer_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000_000
    body = json.dumps({"format": "preference", "padding": "x" * 1_200_000})
    response = engineer_api.post("/api/v1/exports", body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith(
        "The request body is larger than the limit of 1,000,000 bytes"
    )
    assert not Export.objects.exists()
    # Just under the limit, the same request reaches the API and is judged on its fields.
    fits = engineer_api.post(
        "/api/v1/exports", json.dumps({"format": "nope", "padding": "x"}), content_type="application/json"
    )
    assert fits.status_code == 400
    assert "format" in fits.json()["errors"]


def test_session_requests_without_csrf_and_wrong_methods_get_the_json_shape(data_engineer, engineer_api):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(data_engineer)
    refused = browser.post("/api/v1/exports", "{}", content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("CSRF Failed")
    wrong = engineer_api.put("/api/v1/projects", "{}", content_type="application/json")
    assert wrong.status_code == 405
    assert wrong.json() == {"detail": 'Method "PUT" not allowed.'}


def test_an_error_made_outside_the_api_views_is_reshaped_with_its_headers():
    from django.http import HttpResponse, HttpResponseNotAllowed
    from django.test import RequestFactory

    from feedback.api.errors import ApiErrorsMiddleware

    request = RequestFactory().patch("/api/v1/projects")
    reshaped = ApiErrorsMiddleware(lambda _: HttpResponseNotAllowed(["GET", "POST"]))(request)
    assert reshaped.status_code == 405
    assert json.loads(reshaped.content) == {"detail": "Method not allowed."}
    assert reshaped["Allow"] == "GET, POST"
    page = RequestFactory().get("/projects/x/annotate")
    html = HttpResponse("<h1>Not found</h1>", status=404)
    assert ApiErrorsMiddleware(lambda _: html)(page) is html  # the site's pages keep theirs


def test_an_empty_cursor_is_the_first_page_and_an_undeclared_method_is_405(engineer_api):
    ProjectFactory(slug="first-page")
    first = engineer_api.get("/api/v1/projects", {"cursor": ""})
    assert first.status_code == 200
    assert [project["slug"] for project in first.json()["results"]] == ["first-page"]
    traced = engineer_api.generic("TRACE", "/api/v1/projects/first-page/annotators?cursor=&page_size=1")
    assert traced.status_code == 405
    assert traced.json() == {"detail": 'Method "TRACE" not allowed.'}

"""The OpenAPI schema: valid, complete, and true to what the API answers (schemathesis, property-based).

The contract tests generate requests for every operation in /api/schema/ (valid and invalid data, within
a bounded number of examples) and send them through Django's WSGI application inside the test's
transaction: as a data engineer with a token, and anonymously. Every response must be a documented
status with a documented content type and a body matching its schema; nothing may be a 5xx.
"""

import json
from io import StringIO
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from feedback.api.serializers import EXPORT_LIST_OPTIONS, ExportCreateSerializer, ExportStreamQuery
from feedback.export.options import ExportOptions
from feedback.models import Export
from tests.factories import (
    ComparisonFactory,
    GenerationRunFactory,
    JudgmentFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    PromptFactory,
)
from tests.feedback.api.conftest import token_client

pytestmark = pytest.mark.django_db

# Not `negative_data_rejection`: the export options parser is shared with the admin form and the
# command, and accepts what forms send (numbers as strings, lists as comma-separated strings, empty values
# as absent), so some schema-violating requests are rightly accepted. Nor `positive_data_acceptance`:
# generated ids and slugs rarely exist, and 404 is the right answer.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schemathesis.serializer("application/x-ndjson")
def _ndjson(context: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def api_patterns(resolver: URLResolver | None = None, prefix: str = "") -> list[str]:
    found = []
    for pattern in (resolver or get_resolver()).url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.extend(api_patterns(pattern, route))
        elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
            found.append(route)
    return found


def test_the_schema_validates_without_warnings():
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=StringIO(), stderr=StringIO())


def test_every_v1_endpoint_is_in_the_schema(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    documented = {path.removeprefix("/") for path in schema["paths"]}
    routes = {route.replace("<slug:slug>", "{slug}").replace("<id:pk>", "{id}") for route in api_patterns()}
    assert routes == documented
    for operations in schema["paths"].values():
        for operation in operations.values():
            assert {"400", "401", "403", "429"} <= set(operation["responses"])
            assert operation["security"] == [{"tokenAuth": []}, {"cookieAuth": []}]


def test_the_documented_stream_parameters_are_the_export_options():
    options = set(ExportOptions.__dataclass_fields__)
    assert set(ExportStreamQuery().fields) == options | {"split"}
    assert set(ExportCreateSerializer().fields) == options | {"snapshot_of"}
    assert sorted(EXPORT_LIST_OPTIONS) == [
        "answers",
        "checkpoints",
        "columns",
        "exclude_annotators",
        "margin_scale",
        "projects",
    ]


# --- contract tests --------------------------------------------------------------------------------------


def load_contract(*, boundaries: bool) -> Any:
    """The schema as served at /api/schema/, loaded through the WSGI application like any client (at
    collection: the schema view reads no rows). `boundaries` runs schemathesis' coverage phase instead
    of random fuzzing: boundary values and schema-violating values of every parameter, deterministically."""
    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGI_APPLICATION)
    schema.config.phases.coverage.enabled = boundaries
    schema.config.phases.fuzzing.enabled = not boundaries
    return schema


WSGI_APPLICATION = get_wsgi_application()
contract = load_contract(boundaries=False)
boundary_contract = load_contract(boundaries=True)


@pytest.fixture
def on_the_test_connection(db, settings):
    """Requests through the WSGI application share the test's transaction. Like Django's test client,
    keep the end of a request from closing the connection (which would end the transaction and lose the
    test's rows), and lift the rate limit: these tests send hundreds of requests a minute."""
    settings.RANKWISE_API_TOKEN_RATE = "100000/min"
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(db):
    """Something real behind every list, so 200 bodies are checked against the schema too."""
    project = ProjectFactory(slug="contract", current_checkpoint=PolicyCheckpointFactory(name="policy"))
    PromptFactory.create_batch(3, project=project)
    JudgmentFactory(comparison=ComparisonFactory(prompt=PromptFactory(project=project)))
    GenerationRunFactory(project=project, checkpoint=project.current_checkpoint)
    Export.objects.create(
        options=ExportOptions.from_mapping({"format": "preference"}).to_dict(),
        high_water_mark=0,
        snapshot_digest="0" * 64,
    )
    return project


@pytest.fixture
def engineer_authorization(data_engineer) -> dict[str, str]:
    return {"Authorization": token_client(data_engineer)._credentials["HTTP_AUTHORIZATION"]}


def call_as_engineer(case: Any, authorization: dict[str, str]) -> None:
    response = case.call(headers=authorization)
    case.validate_response(response, checks=CHECKS, headers=authorization)


@contract.parametrize()
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_contract_for_a_data_engineer(
    case, on_the_test_connection, world, engineer_authorization
):
    call_as_engineer(case, engineer_authorization)


@pytest.mark.slow
@boundary_contract.parametrize()
@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_contract_at_the_boundaries(
    case, on_the_test_connection, world, engineer_authorization
):
    call_as_engineer(case, engineer_authorization)


@contract.parametrize()
@settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_api_refuses_strangers_by_contract(case, on_the_test_connection):
    response = case.call()
    if response.status_code == 404:
        # Only a path that names no operation (an id out of range, a slug with a slash) is not a 401.
        assert response.json()["detail"].startswith("No API endpoint at "), response.text
    else:
        assert response.status_code == 401, response.text
    case.validate_response(response, checks=CHECKS)

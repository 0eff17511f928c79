"""A project's prompts: the filtered list, and the bulk import through the import service."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from feedback.models import Prompt
from tests.factories import ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/projects/imports/prompts"


@pytest.fixture
def project():
    return ProjectFactory(slug="imports")


def jsonl(*records: dict | str) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def prompt_rows() -> list[tuple]:
    return list(
        Prompt.objects.order_by("pk").values_list("project", "external_id", "category", "content_hash")
    )


GOOD = jsonl(
    {"id": "q1", "prompt": "What is RLHF?", "category": "qa"},
    {"id": "q2", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
)


def test_the_list_filters_by_category_and_external_id(engineer_api, project):
    PromptFactory(project=project, external_id="a", category="qa")
    PromptFactory(project=project, external_id="b", category="code")
    PromptFactory(external_id="a", category="qa")  # another project's
    assert [p["external_id"] for p in engineer_api.get(URL).json()["results"]] == ["a", "b"]
    assert [p["external_id"] for p in engineer_api.get(URL, {"category": "code"}).json()["results"]] == ["b"]
    body = engineer_api.get(URL, {"external_id": "a"}).json()
    assert [(p["external_id"], p["category"], p["conversation"]) for p in body["results"]] == [
        ("a", "qa", Prompt.objects.get(project=project, external_id="a").conversation)
    ]


def test_a_bad_category_is_400(engineer_api, project):
    response = engineer_api.get(URL, {"category": "poetry"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"category": ['"poetry" is not a valid choice.']}


def test_importing_a_file_reports_what_it_did(engineer_api, project):
    response = engineer_api.post(URL, {"file": SimpleUploadedFile("batch.jsonl", GOOD)}, format="multipart")
    assert response.status_code == 200
    assert response.json() == {
        "created": 2,
        "unchanged": 0,
        "conflicts": [],
        "total": 2,
        "summary": "2 imported, 0 unchanged, 0 conflict(s) of 2 prompt(s)",
    }
    assert sorted(project.prompts.values_list("external_id", "category")) == [("q1", "qa"), ("q2", "other")]


def test_reimporting_skips_the_unchanged_and_reports_conflicts(engineer_api, project):
    engineer_api.post(URL, {"file": SimpleUploadedFile("batch.jsonl", GOOD)}, format="multipart")
    before = prompt_rows()
    changed = jsonl({"id": "q1", "prompt": "What is RLHF, really?", "category": "qa"})
    response = engineer_api.post(
        URL,
        {"file": SimpleUploadedFile("batch.jsonl", GOOD.splitlines()[1] + b"\n" + changed)},
        format="multipart",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["unchanged"]) == (0, 1)
    assert body["conflicts"] == [
        {
            "line": 2,
            "external_id": "q1",
            "changed_fields": ["conversation"],
            "message": "line 2: id 'q1' already exists with a different conversation; kept the stored prompt",
        }
    ]
    assert prompt_rows() == before


def test_a_json_lines_body_imports_too(engineer_api, project):
    response = engineer_api.generic("POST", URL, GOOD, content_type="application/x-ndjson")
    assert response.status_code == 200
    assert response.json()["created"] == 2


def test_a_csv_file_imports_with_its_format_named(engineer_api, project):
    body = b"id,prompt,category\nc1,Name three colours,list\n"
    response = engineer_api.post(
        URL, {"file": SimpleUploadedFile("export.txt", body), "format": "csv"}, format="multipart"
    )
    assert response.status_code == 200
    assert list(project.prompts.values_list("external_id", "category")) == [("c1", "list")]


def test_a_bad_file_is_refused_whole_with_every_bad_line(engineer_api, project):
    PromptFactory(project=project, external_id="existing")
    before = prompt_rows()
    bad = jsonl(
        {"id": "fine", "prompt": "ok"},
        "{not json",
        {"id": "r", "messages": [{"role": "assistant", "content": "x"}]},
        {"id": "fine", "prompt": "again"},
    )
    response = engineer_api.post(URL, {"file": SimpleUploadedFile("bad.jsonl", bad)}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "3 bad line(s); nothing was imported",
        "errors": {
            "file": [
                "line 2: bad JSON: Expecting property name enclosed in double quotes (column 2)",
                "line 3: wrong role order: message 1 is 'assistant', expected 'user' (an optional system "
                "message, then user and assistant alternating)",
                "line 4: id 'fine' repeats line 1",
            ]
        },
    }
    assert prompt_rows() == before


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({}, {"file": ["No file was submitted."]}),
        (
            {"file": SimpleUploadedFile("prompts.txt", GOOD)},
            {
                "format": [
                    "Cannot tell the format of 'prompts.txt': use a .jsonl or .csv file, or name the format."
                ]
            },
        ),
        (
            {"file": SimpleUploadedFile("a.jsonl", GOOD), "format": "xml"},
            {"format": ['"xml" is not a valid choice.']},
        ),
    ],
)
def test_bad_upload_forms_are_400(engineer_api, project, data, errors):
    response = engineer_api.post(URL, data, format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"] == errors
    assert Prompt.objects.count() == 0


def test_an_empty_body_is_a_file_without_prompts(engineer_api, project):
    response = engineer_api.generic("POST", URL, b"", content_type="application/x-ndjson")
    assert response.status_code == 400
    assert response.json()["errors"] == {"file": ["line 1: the file holds no prompts"]}


def test_other_content_types_are_415(engineer_api, project):
    response = engineer_api.post(URL, {"prompt": "x"}, format="json")
    assert response.status_code == 415
    assert response.json() == {"detail": 'Unsupported media type "application/json" in request.'}
    assert Prompt.objects.count() == 0


def test_importing_into_an_unknown_project_is_404(engineer_api):
    response = engineer_api.post(
        "/api/v1/projects/nope/prompts", {"file": SimpleUploadedFile("a.jsonl", GOOD)}, format="multipart"
    )
    assert response.status_code == 404
    assert Prompt.objects.count() == 0


def test_annotators_cannot_import(annotator_api, project):
    response = annotator_api.post(URL, {"file": SimpleUploadedFile("a.jsonl", GOOD)}, format="multipart")
    assert response.status_code == 403
    assert Prompt.objects.count() == 0

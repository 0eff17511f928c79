"""Exports over the API: create (options validated by ExportOptions), poll, download, stream JSON Lines."""

import hashlib
import io
import json
import zipfile

import pytest
from django.conf import settings

from feedback.export.options import ExportOptions
from feedback.models import Export
from feedback.services.exports import export_run
from tests.factories import ComparisonFactory, JudgmentFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/exports"


def export_row(**fields) -> Export:
    """An export row as the service leaves it, without running the service."""
    values = {
        "options": ExportOptions.from_mapping({"format": "preference"}).to_dict(),
        "high_water_mark": 0,
        "snapshot_digest": "0" * 64,
        **fields,
    }
    return Export.objects.create(**values)


def completed_export(name: str = "rankwise-export-1.zip") -> tuple[Export, bytes]:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("train.jsonl", '{"prompt": "p", "chosen": "c", "rejected": "r"}\n')
    data = archive.getvalue()
    settings.EXPORT_ROOT.mkdir(parents=True, exist_ok=True)
    (settings.EXPORT_ROOT / name).write_bytes(data)
    export = export_row(
        status=Export.Status.COMPLETED,
        file_name=name,
        file_sha256=hashlib.sha256(data).hexdigest(),
        file_size=len(data),
    )
    return export, data


@pytest.fixture
def judged():
    """One pairwise judgment: A preferred."""
    project = ProjectFactory(slug="exp")
    return JudgmentFactory(comparison=ComparisonFactory(prompt=PromptFactory(project=project)), choice="a")


# --- create ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"format": ["This field is required."]}),
        (
            {"format": "csv"},
            {
                "format": [
                    "'csv' is not one of: "
                    + ", ".join(
                        [
                            "preference",
                            "preference-conversational",
                            "preference-conversational-implicit",
                            "unpaired",
                            "unpaired-conversational",
                            "hh-rlhf",
                            "rankings",
                            "sft",
                            "prompt-completion",
                            "prompt-completion-conversational",
                            "edits",
                            "edits-conversational",
                            "prompt-only",
                            "prompt-only-conversational",
                            "judgments",
                            "gold",
                        ]
                    )
                    + "."
                ]
            },
        ),
        ({"format": "preference", "min_judgments": 0}, {"min_judgments": ["An integer from 1 to 1000."]}),
        (
            {"format": "preference", "since": "last week"},
            {"since": ["An ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z."]},
        ),
        ({"format": "preference", "colour": "red"}, {"non_field_errors": ["Unknown options: colour."]}),
        (
            {"format": "judgments", "aggregation": "consensus"},
            {"aggregation": ["The judgments format is one row per judgment: use aggregation 'raw'."]},
        ),
        ({"format": "preference", "snapshot_of": 999_999}, {"snapshot_of": ["No export with id 999999."]}),
        ({"format": "preference", "snapshot_of": "1"}, {"snapshot_of": ["The id of an earlier export."]}),
        ({"format": "preference", "snapshot_of": True}, {"snapshot_of": ["The id of an earlier export."]}),
    ],
)
def test_bad_options_are_400_with_field_messages_and_create_nothing(engineer_api, body, errors):
    response = engineer_api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "No export was created: fix the fields named in `errors`.",
        "errors": errors,
    }
    assert Export.objects.count() == 0


@pytest.mark.parametrize("body", ["[]", '"preference"', "3"])
def test_a_body_that_is_not_an_object_is_400(engineer_api, body):
    response = engineer_api.generic("POST", URL, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "non_field_errors": ["The body must be a JSON object of export options."]
    }
    assert Export.objects.count() == 0


def test_annotators_cannot_create_exports(annotator_api):
    assert annotator_api.post(URL, {"format": "preference"}, format="json").status_code == 403
    assert Export.objects.count() == 0


def test_creating_an_export_answers_201_pending_and_queues_the_job(
    engineer_api, data_engineer, judged, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = engineer_api.post(URL, {"format": "preference", "projects": "exp"}, format="json")
    assert response.status_code == 201
    export = Export.objects.get()
    assert response["Location"] == f"/api/v1/exports/{export.pk}"
    body = response.json()
    assert (body["id"], body["status"], body["created_by"], body["download_url"]) == (
        export.pk,
        "pending",
        "engineer-user",
        None,
    )
    assert (
        body["options"] == ExportOptions.from_mapping({"format": "preference", "projects": ["exp"]}).to_dict()
    )
    assert body["high_water_mark"] == judged.pk
    assert export.created_by == data_engineer
    assert len(callbacks) == 1


def test_a_snapshot_is_re_exported_with_other_options(
    engineer_api, judged, django_capture_on_commit_callbacks
):
    earlier = export_row(high_water_mark=judged.pk)
    JudgmentFactory()  # after the snapshot
    with django_capture_on_commit_callbacks(execute=False):
        response = engineer_api.post(URL, {"format": "judgments", "snapshot_of": earlier.pk}, format="json")
    assert response.status_code == 201
    assert response.json()["high_water_mark"] == judged.pk


def test_an_export_end_to_end_create_run_poll_download(
    engineer_api, judged, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        export_id = engineer_api.post(URL, {"format": "preference"}, format="json").json()["id"]
    assert engineer_api.get(f"{URL}/{export_id}/download").status_code == 409
    export_run(export_id=export_id)  # what the worker does
    status = engineer_api.get(f"{URL}/{export_id}/status").json()
    assert (status["status"], status["download_url"]) == (
        "completed",
        f"/api/v1/exports/{export_id}/download",
    )
    response = engineer_api.get(status["download_url"])
    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    assert hashlib.sha256(data).hexdigest() == Export.objects.get(pk=export_id).file_sha256
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        assert "train.jsonl" in bundle.namelist()


# --- read ------------------------------------------------------------------------------------------------


def test_exports_list_newest_first_and_filter_by_status(engineer_api):
    first = export_row()
    second, _ = completed_export()
    assert [e["id"] for e in engineer_api.get(URL).json()["results"]] == [second.pk, first.pk]
    assert [e["id"] for e in engineer_api.get(URL, {"status": "completed"}).json()["results"]] == [second.pk]
    response = engineer_api.get(URL, {"status": "done"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"status": ['"done" is not a valid choice.']}


def test_an_exports_detail_and_status(engineer_api):
    export, data = completed_export()
    detail = engineer_api.get(f"{URL}/{export.pk}").json()
    assert (detail["file_name"], detail["file_size"], detail["file_sha256"]) == (
        "rankwise-export-1.zip",
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert engineer_api.get(f"{URL}/{export.pk}/status").json() == {
        "id": export.pk,
        "status": "completed",
        "error": "",
        "started_at": None,
        "finished_at": None,
        "download_url": f"/api/v1/exports/{export.pk}/download",
    }


# --- download --------------------------------------------------------------------------------------------


def test_a_completed_export_downloads_as_a_zip_attachment(engineer_api):
    export, data = completed_export()
    response = engineer_api.get(f"{URL}/{export.pk}/download", HTTP_ACCEPT="application/zip")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="rankwise-export-1.zip"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["ETag"] == f'"{export.file_sha256}"'


@pytest.mark.parametrize("state", ["pending", "running", "failed"])
def test_an_unfinished_export_cannot_be_downloaded(engineer_api, state):
    export = export_row(status=state)
    response = engineer_api.get(f"{URL}/{export.pk}/download", HTTP_ACCEPT="application/zip")
    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": f"Export {export.pk} is {state}; its archive can be downloaded once it is completed."
    }


@pytest.mark.parametrize("file_name", ["gone.zip", "../outside.zip", "/etc/passwd"])
def test_a_missing_or_outside_archive_is_410(engineer_api, tmp_path, file_name):
    (tmp_path / "outside.zip").write_bytes(b"PK")
    export = export_row(status=Export.Status.COMPLETED, file_name=file_name, file_sha256="0" * 64)
    response = engineer_api.get(f"{URL}/{export.pk}/download")
    assert response.status_code == 410
    assert response.json()["detail"].startswith(
        f"The archive of export {export.pk} is no longer on the server"
    )


# --- stream ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ({}, {"format": ["This field is required."]}),
        (
            {"format": "preference", "output": "parquet"},
            {"output": ["This endpoint streams JSON Lines: use output=jsonl, or create an export."]},
        ),
        ({"format": "preference", "split": "dev"}, {"split": ["'dev' is not one of: train, test."]}),
        ({"format": "preference", "test_fraction": "2"}, {"test_fraction": ["A number from 0 to 0.9."]}),
        ({"format": "preference", "exclude_flagged": "perhaps"}, {"exclude_flagged": ["true or false."]}),
    ],
)
def test_bad_stream_options_are_400(engineer_api, query, errors):
    response = engineer_api.get(f"{URL}/stream", query)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid export options: fix the ones named in `errors`.",
        "errors": errors,
    }


def test_a_repeated_scalar_option_is_400_but_lists_may_repeat(engineer_api, judged):
    response = engineer_api.get(f"{URL}/stream?format=preference&format=sft")
    assert response.status_code == 400
    assert response.json()["errors"] == {"format": ["Give this parameter once."]}
    listed = engineer_api.get(f"{URL}/stream?format=judgments&projects=exp&projects=other")
    assert listed.status_code == 200


def test_the_stream_is_json_lines_as_an_attachment(engineer_api, judged):
    response = engineer_api.get(
        f"{URL}/stream", {"format": "judgments", "projects": "exp"}, HTTP_ACCEPT="application/x-ndjson"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == 'attachment; filename="rankwise-judgments.jsonl"'
    assert response["X-Content-Type-Options"] == "nosniff"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["choice"] == "a"


def test_the_stream_keeps_one_split(engineer_api, judged):
    response = engineer_api.get(f"{URL}/stream", {"format": "preference", "split": "test"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="rankwise-preference-test.jsonl"'
    assert b"".join(response.streaming_content) == b""  # test_fraction 0: everything is train

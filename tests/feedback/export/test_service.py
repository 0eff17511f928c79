"""The export service, its command and its admin page."""

import zipfile
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from feedback.export.options import ExportOptions
from feedback.export.snapshot import judgment_high_water_mark
from feedback.models import Export
from feedback.services.exports import export_create, export_path, export_run, export_stream_jsonl
from tests.factories import AnnotatorFactory
from tests.feedback.export.conftest import judge


@pytest.fixture
def export_root(settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path / "exports"
    return settings.EXPORT_ROOT


def test_export_run_publishes_one_archive_and_is_idempotent(corpus, export_root, admin_user):
    options = ExportOptions.from_mapping({"format": "preference", "output": "parquet", "test_fraction": 0.5})
    export = export_create(options=options, created_by=admin_user)
    assert (export.status, export.high_water_mark, export.created_by) == (
        "pending",
        judgment_high_water_mark(),
        admin_user,
    )
    export = export_run(export_id=export.pk)
    assert export.status == "completed"
    assert export.file_name == f"rankwise-export-{export.pk}-{export.snapshot_digest[:12]}.zip"
    with zipfile.ZipFile(export_path(export)) as bundle:
        assert sorted(bundle.namelist()) == ["README.md", "test.parquet", "train.parquet"]
        assert {info.date_time for info in bundle.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert export.file_size == export_path(export).stat().st_size
    assert sum(export.manifest["rows"].values()) == 13
    before = export_path(export).stat().st_mtime_ns
    assert export_run(export_id=export.pk).file_sha256 == export.file_sha256  # completed: left alone
    assert export_path(export).stat().st_mtime_ns == before
    assert sorted(path.name for path in export_root.iterdir()) == [export.file_name]  # no scratch left


def test_a_failed_export_records_its_error(corpus, export_root):
    export = export_create(options=ExportOptions.from_mapping({"format": "sft"}))
    export_root.mkdir(parents=True)
    (export_root / f"rankwise-export-{export.pk}-{export.snapshot_digest[:12]}.zip").mkdir()  # in the way
    export = export_run(export_id=export.pk)
    assert export.status == "failed"
    assert export.error.startswith("IsADirectoryError:")
    assert (export.file_name, export.file_sha256) == ("", "")


def test_the_stream_holds_the_file_rows(corpus, tmp_path):
    options = ExportOptions.from_mapping({"format": "judgments", "test_fraction": 0.5})
    mark = judgment_high_water_mark()
    call_command(
        "export_preferences",
        "--format",
        "judgments",
        "--test-fraction",
        "0.5",
        "--output",
        str(tmp_path / "out"),
        stdout=StringIO(),
    )
    streamed = b"".join(export_stream_jsonl(options=options, high_water_mark=mark, split="test"))
    assert streamed == (tmp_path / "out" / "test.jsonl").read_bytes()
    both = b"".join(export_stream_jsonl(options=options))
    assert sorted(both.splitlines()) == sorted(
        (tmp_path / "out" / "test.jsonl").read_bytes().splitlines()
        + (tmp_path / "out" / "train.jsonl").read_bytes().splitlines()
    )


def test_command_writes_a_snapshot_again_byte_for_byte(corpus, tmp_path):
    out = StringIO()
    call_command(
        "export_preferences",
        "--format",
        "preference",
        "--output-format",
        "jsonl.gz",
        "--output",
        str(tmp_path / "a"),
        stdout=out,
    )
    mark = judgment_high_water_mark()
    assert (
        f"Exported train 13 rows from 9 judgments to {tmp_path / 'a'} (high-water mark {mark},"
        in out.getvalue()
    )
    judge(corpus.comparisons["majority"], AnnotatorFactory(), "b", strength=1)  # arrives after the mark
    call_command(
        "export_preferences",
        "--format",
        "preference",
        "--output-format",
        "jsonl.gz",
        "--high-water-mark",
        str(mark),
        "--output",
        str(tmp_path / "b"),
        stdout=StringIO(),
    )
    assert (tmp_path / "a" / "train.jsonl.gz").read_bytes() == (
        tmp_path / "b" / "train.jsonl.gz"
    ).read_bytes()
    call_command(
        "export_preferences",
        "--format",
        "preference",
        "--output-format",
        "jsonl.gz",
        "--output",
        str(tmp_path / "c"),
        stdout=StringIO(),
    )
    assert (tmp_path / "a" / "train.jsonl.gz").read_bytes() != (
        tmp_path / "c" / "train.jsonl.gz"
    ).read_bytes()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--format", "judgments", "--aggregation", "consensus"], "The export options were refused."),
        (["--format", "sft", "--snapshot", "999999"], "No export with id 999999."),
        (["--format", "sft", "--high-water-mark", "-1"], "--high-water-mark cannot be negative."),
    ],
)
def test_command_refusals(db, tmp_path, arguments, message):
    errors = StringIO()
    with pytest.raises(CommandError, match=message):
        call_command("export_preferences", *arguments, "--output", str(tmp_path / "x"), stderr=errors)
    assert not (tmp_path / "x").exists()
    assert Export.objects.count() == 0


def test_command_refuses_a_directory_with_files(db, tmp_path):
    (tmp_path / "busy.txt").write_text("x")
    with pytest.raises(CommandError, match="exists and is not an empty directory"):
        call_command("export_preferences", "--format", "sft", "--output", str(tmp_path))


def test_admin_export_page_creates_runs_and_downloads(corpus, export_root, admin_client):
    page = admin_client.get(reverse("admin:feedback_export_add"))
    assert page.status_code == 200
    refused = admin_client.post(
        reverse("admin:feedback_export_add"),
        {
            "format": "unpaired",
            "aggregation": "raw",
            "output": "jsonl",
            "ties": "both-ways",
            "kwise": "all-pairs",
            "min_judgments": 1,
            "min_agreement": 0,
            "test_fraction": 0,
            "split_salt": "rankwise",
        },
    )
    assert refused.status_code == 200
    assert refused.context["form"].errors == {
        "ties": ["A tie says nothing about desirability: unpaired exports drop ties."]
    }
    assert Export.objects.count() == 0
    created = admin_client.post(
        reverse("admin:feedback_export_add"),
        {
            "format": "preference",
            "aggregation": "consensus",
            "output": "jsonl",
            "ties": "drop",
            "kwise": "all-pairs",
            "projects": ["chat"],
            "min_judgments": 1,
            "min_agreement": 0,
            "test_fraction": 0,
            "split_salt": "rankwise",
            "exclude_flagged": "on",
        },
    )
    export = Export.objects.get()
    assert created.status_code == 302
    assert export.options["projects"] == ["chat"]
    assert export.options["columns"] == ["agreement", "reviewed", "votes"]
    export_run(export_id=export.pk)
    listing = admin_client.get(reverse("admin:feedback_export_changelist")).content.decode()
    assert export.file_name in listing
    download = admin_client.get(reverse("admin:feedback_export_download", args=[export.pk]))
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert download["Content-Disposition"] == f'attachment; filename="{Export.objects.get().file_name}"'
    assert b"".join(download.streaming_content) == export_path(Export.objects.get()).read_bytes()
    again = admin_client.post(
        reverse("admin:feedback_export_changelist"),
        {"action": "export_again", "_selected_action": [export.pk]},
    )
    assert again.status_code == 302
    copy = Export.objects.exclude(pk=export.pk).get()
    assert (copy.high_water_mark, copy.snapshot_digest) == (export.high_water_mark, export.snapshot_digest)

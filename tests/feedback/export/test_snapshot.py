"""Snapshots under concurrent submissions, with real PostgreSQL transactions in threads.

The mark must be a true high-water mark: every judgment at or below it committed, none to come. Then the
same snapshot exported again, while annotators keep submitting, gives the same bytes.
"""

import hashlib
import random
import threading
import time
import uuid
import zipfile

import pytest
from django.db import connection, transaction

from annotate.assignment import comparison_lease_next, judgment_submit
from annotate.submission import JudgmentSubmission
from feedback.export.options import ExportOptions
from feedback.export.snapshot import judgment_high_water_mark
from feedback.export.writer import export_write
from feedback.models import Export, Judgment
from feedback.services.exports import export_create, export_path, export_run
from tests.annotate.conftest import comparisons_bulk_create
from tests.factories import AnnotatorFactory, ComparisonFactory, JudgmentFactory, ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_mark_waits_for_a_judgment_in_flight_and_covers_it():
    comparison = ComparisonFactory()
    annotator = AnnotatorFactory()
    inserted = threading.Event()
    release = threading.Event()
    in_flight: list[int] = []

    def submit_slowly() -> None:
        try:
            with transaction.atomic():
                in_flight.append(JudgmentFactory(comparison=comparison, annotator=annotator).pk)
                inserted.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    marks: list[int] = []

    def take_mark() -> None:
        try:
            marks.append(judgment_high_water_mark())
        finally:
            connection.close()

    submitter = threading.Thread(target=submit_slowly)
    submitter.start()
    assert inserted.wait(timeout=10)
    reader = threading.Thread(target=take_mark)
    reader.start()
    time.sleep(0.5)
    assert reader.is_alive()  # held back while the insert is uncommitted
    assert not marks
    release.set()
    submitter.join(timeout=10)
    reader.join(timeout=10)
    assert marks == in_flight  # the committed judgment is covered


def test_the_same_snapshot_exports_byte_identical_files_while_judgments_keep_arriving(tmp_path, settings):
    settings.EXPORT_ROOT = tmp_path / "exports"
    project = ProjectFactory(judgments_per_comparison=3, slug="busy")
    annotators = [AnnotatorFactory(username=f"busy-{index}") for index in range(6)]
    project.members.add(*annotators)
    comparisons_bulk_create(project, 150)
    stop = threading.Event()
    failures: list[BaseException] = []

    def annotate(annotator, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                lease = comparison_lease_next(annotator=annotator, project=project)
                if lease is None:
                    return
                choice = rng.choice(["a", "b", "tie", "both_bad"])
                judgment_submit(
                    annotator=annotator,
                    assignment_id=lease.pk,
                    submission_key=uuid.uuid4().hex,
                    submission=JudgmentSubmission(choice=choice, strength=2 if choice in "ab" else None),
                )
        except BaseException as error:  # surfaced by the main thread
            failures.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=annotate, args=(person, index)) for index, person in enumerate(annotators)
    ]
    for thread in threads:
        thread.start()
    while Judgment.objects.count() < 60:
        time.sleep(0.05)
    options = ExportOptions.from_mapping(
        {"format": "preference", "columns": "ids,margin", "test_fraction": 0.2}
    )
    first = export_create(options=options)  # a fresh mark, taken while the threads submit
    export_run(export_id=first.pk)
    while Judgment.objects.count() < first.high_water_mark + 60 and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    again = export_create(options=options, snapshot_of=first)
    export_run(export_id=again.pk)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures

    first.refresh_from_db()
    again.refresh_from_db()
    assert first.status == again.status == Export.Status.COMPLETED
    assert Judgment.objects.filter(id__gt=first.high_water_mark).exists()  # judgments kept arriving
    assert first.file_sha256 == again.file_sha256
    assert export_path(first).read_bytes() == export_path(again).read_bytes()
    assert hashlib.sha256(export_path(again).read_bytes()).hexdigest() == again.file_sha256
    assert first.manifest == again.manifest
    # Every judgment at or below the mark is in the snapshot: none below it committed later.
    audit = export_write(
        ExportOptions.from_mapping({"format": "judgments"}),
        high_water_mark=first.high_water_mark,
        directory=tmp_path / "audit",
    )
    assert audit["rows"] == {"train": Judgment.objects.filter(id__lte=first.high_water_mark).count()}
    with zipfile.ZipFile(export_path(first)) as bundle:
        assert sorted(bundle.namelist()) == sorted(first.manifest["files"])
        assert "README.md" in bundle.namelist()

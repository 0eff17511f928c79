"""Dataset exports: record a snapshot, write its files on a worker, serve them.

`export_create` takes a high-water mark over judgments (or reuses another export's), records the options
and enqueues `feedback.export_run` after commit; `export_run`, the task's body, writes the files into a
scratch directory under EXPORT_ROOT and publishes one archive with an atomic rename. The same snapshot and
options always give byte-identical files, so a re-run (a redelivered message, a retry) is harmless.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from feedback.export.answers import source_marks_now
from feedback.export.options import SPLITS, ExportOptions
from feedback.export.quality import quality_marks_now
from feedback.export.snapshot import judgment_high_water_mark
from feedback.export.writer import archive_directory, export_write, file_digest, snapshot_digest, stream_jsonl
from feedback.models import Export
from feedback.services.generation import send_task_on_commit
from feedback.services.leaderboard import export_leaderboard

logger = logging.getLogger(__name__)

EXPORT_RUN_TASK = "feedback.export_run"
ERROR_MAX_CHARS = 2_000


def export_create(
    *, options: ExportOptions, created_by: Any = None, snapshot_of: Export | None = None
) -> Export:
    """Record an export and enqueue its job after commit.

    With `snapshot_of`, the new export covers exactly that export's judgments (its high-water mark) and
    decides its quality filters as it did (its standing and quality marks); otherwise fresh marks are
    taken first, in its own short transaction (see `feedback.export.snapshot`).
    Returns the export as it stands once the call returns: `pending` with a broker; in the demo, with no
    broker, the job has run inline and it is `completed` or `failed`.
    """
    if snapshot_of is not None:
        mark = snapshot_of.high_water_mark
        standing_mark, quality_mark = snapshot_of.standing_mark, snapshot_of.quality_mark
        review_mark = snapshot_of.review_mark
        # The other export's marks of answers and prompts where it read the same sources, else now.
        fresh = source_marks_now(options)
        source_marks = (
            dict(snapshot_of.source_marks) if set(snapshot_of.source_marks) == set(fresh) else fresh
        )
    else:
        mark = judgment_high_water_mark()
        standing_mark, quality_mark, review_mark = quality_marks_now()
        source_marks = source_marks_now(options)
    with transaction.atomic():
        export = Export.objects.create(
            options=options.to_dict(),
            high_water_mark=mark,
            standing_mark=standing_mark,
            quality_mark=quality_mark,
            review_mark=review_mark,
            source_marks=source_marks,
            snapshot_digest=snapshot_digest(
                options,
                mark,
                standing_mark=standing_mark,
                quality_mark=quality_mark,
                review_mark=review_mark,
                source_marks=source_marks,
            ),
            created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
        )
        send_task_on_commit(EXPORT_RUN_TASK, [export.pk])
    export.refresh_from_db()
    return export


def export_options(export: Export) -> ExportOptions:
    return ExportOptions.from_mapping(export.options)


def export_path(export: Export) -> Path:
    return Path(settings.EXPORT_ROOT) / export.file_name


def export_archive(export: Export) -> Path | None:
    """The archive of a completed export, or None when there is none to serve: not completed, gone from
    the disk, or (a tampered row) named outside EXPORT_ROOT."""
    if export.status != Export.Status.COMPLETED or not export.file_name:
        return None
    root = Path(settings.EXPORT_ROOT).resolve()
    path = (root / export.file_name).resolve()
    return path if root in path.parents and path.is_file() else None


def export_run(*, export_id: int) -> Export:
    """Write the export's files (the Celery task's body). A completed export is left alone; a failure is
    recorded on the export (status `failed`, the error) rather than raised, since retrying cannot help."""
    with transaction.atomic():
        export = Export.objects.select_for_update().get(pk=export_id)
        if export.status == Export.Status.COMPLETED:
            return export
        export.status = Export.Status.RUNNING
        export.started_at = timezone.now()
        export.error = ""
        export.save(update_fields=["status", "started_at", "error"])
    root = Path(settings.EXPORT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    file_name = f"rankwise-export-{export.pk}-{export.snapshot_digest[:12]}.zip"
    scratch = Path(tempfile.mkdtemp(prefix=f".export-{export.pk}-", dir=root))
    try:
        manifest = export_write(
            export_options(export),
            high_water_mark=export.high_water_mark,
            standing_mark=export.standing_mark,
            review_mark=export.review_mark,
            quality_mark=export.quality_mark,
            source_marks=dict(export.source_marks),
            directory=scratch / "files",
            leaderboard=partial(export_leaderboard, high_water_mark=export.high_water_mark),
        )
        archive_directory(scratch / "files", root / file_name)
    except Exception as error:  # any failure: recorded for the admin and the API, logged with its trace
        logger.exception("export %s failed", export.pk)
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.FAILED,
            error=f"{type(error).__name__}: {error}"[:ERROR_MAX_CHARS],
            finished_at=timezone.now(),
        )
        export.refresh_from_db()
        return export
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    archive = file_digest(root / file_name)
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.COMPLETED,
        file_name=file_name,
        file_sha256=archive["sha256"],
        file_size=archive["size"],
        manifest=manifest,
        finished_at=timezone.now(),
    )
    export.refresh_from_db()
    return export


def export_stream_jsonl(
    *, options: ExportOptions, high_water_mark: int | None = None, split: str | None = None
) -> Iterator[bytes]:
    """JSON Lines of the export's rows, chunk by chunk, for the streaming download endpoint.

    `split` ("train" or "test") keeps one split; None streams both. Takes a fresh high-water mark when
    none is given. Memory stays bounded whatever the row count. The mark is taken when the first chunk
    is asked for, so build the response first and let the server pull.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}")
    mark = judgment_high_water_mark() if high_water_mark is None else high_water_mark
    yield from stream_jsonl(options, high_water_mark=mark, split=split)

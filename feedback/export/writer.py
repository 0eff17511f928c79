"""Writing an export: rows streamed into JSON Lines, Parquet or a `datasets` directory, a dataset card,
and one archive, all byte-for-byte reproducible from (options, high-water mark).

Memory is bounded by one comparison's rows plus one Parquet batch per split (and the few chunks queued for
the I/O thread); nothing holds the export. The file side (hashing, compressing, writing, Parquet encoding)
runs on one thread beside the one that builds rows: those calls release the GIL, so the two overlap where
they would otherwise take turns, and a JSON Lines file is hashed as it is written instead of read back.
Reproducible bytes: rows in a fixed order with keys in schema order, gzip without a timestamp or name,
Parquet with a fixed schema and batch size, archive entries sorted with a fixed date, and a card that
names the snapshot's digest rather than when or by whom it was made.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson
from django.db import transaction

from feedback.export.answers import SourceStats, answer_row_groups, prompt_row_groups, source_marks_now
from feedback.export.options import ANSWER_FORMATS, EDIT_FORMATS, PROMPT_FORMATS, RATED_FORMATS, ExportOptions
from feedback.export.quality import (
    ExportQuality,
    export_quality,
    markdown_cell,
    quality_card_section,
    removed_by_quality,
)
from feedback.export.rows import PromptTexts, Row, comparison_agreement, group_rows, split_of
from feedback.export.source import ComparisonGroup, comparison_groups
from feedback.models import PEOPLE, Project, canonical_json

# Rows per Arrow batch, which is also a Parquet row group. 2,048 keeps a Parquet export's peak memory
# about 15 MB lower than 4,096 did once batches are encoded on the I/O thread (one being built, one being
# written), for files of the same size; 1,024 made them 14 % larger (docs/benchmarks.md).
PARQUET_BATCH_ROWS = 2_048
STREAM_CHUNK_BYTES = 256 * 1024
FILE_CHUNK_BYTES = 1 << 20  # a JSON Lines file is handed to the I/O thread in chunks of this size
IO_QUEUE_DEPTH = 2  # chunks or batches queued or being written before the row builder waits
ARCHIVE_DATE = (1980, 1, 1, 0, 0, 0)
COPY_BUFFER_BYTES = 1 << 20


def snapshot_digest(
    options: ExportOptions,
    high_water_mark: int,
    *,
    standing_mark: int = 0,
    quality_mark: int = 0,
    review_mark: int = 0,
    source_marks: dict[str, int] | None = None,
) -> str:
    snapshot: dict[str, Any] = {
        "options": options.to_dict(),
        "high_water_mark": high_water_mark,
        "standing_mark": standing_mark,
        "review_mark": review_mark,
        "quality_mark": quality_mark,
    }
    if source_marks:  # only the formats made of answers or prompts have them
        snapshot["source_marks"] = source_marks
    payload = canonical_json(snapshot)
    return hashlib.sha256(payload.encode()).hexdigest()


def rating_axes(options: ExportOptions) -> tuple[str, ...]:
    """The rubric axes of the exported projects, in project (slug) order then rubric order; none for the
    formats that carry no ratings."""
    if options.format not in RATED_FORMATS:
        return ()
    projects = Project.objects.order_by("slug")
    if options.projects:
        projects = projects.filter(slug__in=options.projects)
    axes: dict[str, None] = {}
    for rubric in projects.values_list("rating_rubric", flat=True):
        for axis in rubric or []:
            axes.setdefault(axis["key"])
    return tuple(axes)


@dataclass
class ExportStats:
    """What the card reports; counters only, so memory does not grow with the export."""

    rows: Counter[str] = field(default_factory=Counter)
    comparisons: int = 0
    judgments: int = 0
    annotators: set[int] = field(default_factory=set)
    checkpoints: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    agreement_buckets: Counter[str] = field(default_factory=Counter)
    agreement_sum: float = 0.0
    agreement_count: int = 0
    agreement_min: float = 1.0
    comparisons_dropped: int = 0
    removed: dict[str, int] = field(default_factory=dict)  # judgments each quality filter left out
    sources: SourceStats = field(default_factory=SourceStats)  # people's answers and prompts


def export_row_groups(
    options: ExportOptions,
    *,
    high_water_mark: int,
    axes: tuple[str, ...] | None = None,
    stats: ExportStats | None = None,
    quality: ExportQuality | None = None,
    source_marks: dict[str, int] | None = None,
) -> Iterator[tuple[str, list[Row]]]:
    """(split, rows) for every comparison that gives rows, in the export's order; `stats` counts every
    comparison; `quality` decides the quality filters (default: as of now). The formats made of people's
    answers or of prompts read them up to `source_marks` (`feedback.export.answers`): answers first, then
    the chosen model answers where the export takes them. Run it inside a transaction."""
    if axes is None:
        axes = rating_axes(options)
    if quality is None:
        quality = export_quality(options, high_water_mark=high_water_mark)
    sources = stats.sources if stats is not None else None
    if options.format in PROMPT_FORMATS:
        yield from prompt_row_groups(options, marks=source_marks or {}, stats=sources)
        return
    if options.format in ANSWER_FORMATS:
        yield from answer_row_groups(options, marks=source_marks or {}, quality=quality, stats=sources)
        if options.format in EDIT_FORMATS or "chosen" not in options.answers:
            return
    prompt_texts = PromptTexts()
    for group in comparison_groups(options, high_water_mark=high_water_mark, quality=quality):
        agreement = comparison_agreement(group, group.judgments)
        rows = group_rows(
            group, options, axes, agreement=agreement, prompt_texts=prompt_texts, quality=quality
        )
        if stats is not None:
            _count(stats, group, len(rows), agreement)
        if rows:
            yield split_of(group.content_hash, options), rows


_annotator_id = attrgetter("annotator_id")


def _count(stats: ExportStats, group: ComparisonGroup, produced: int, agreement: float) -> None:
    if not produced:
        stats.comparisons_dropped += 1
        return
    stats.comparisons += 1
    stats.judgments += len(group.judgments)
    stats.annotators.update(map(_annotator_id, group.judgments))
    stats.checkpoints.update({entry.checkpoint for entry in group.entries})  # once per comparison
    stats.categories[group.category] += 1
    if len(group.judgments) > 1:
        stats.agreement_sum += agreement
        stats.agreement_count += 1
        stats.agreement_min = min(stats.agreement_min, agreement)
        stats.agreement_buckets[_bucket(agreement)] += 1


def _bucket(agreement: float) -> str:
    if agreement >= 1.0:
        return "1.0"
    if agreement >= 0.75:
        return "0.75–0.99"
    if agreement >= 0.5:
        return "0.50–0.74"
    return "below 0.50"


# --- writers ----------------------------------------------------------------------------------------------


class _Background:
    """Jobs on one thread beside the caller's, in submission order, at most `depth` queued or running (the
    caller waits for the oldest beyond that, so memory stays bounded). A job's failure is raised in the
    caller when it waits for that job: at a later `submit`, or at `join`."""

    def __init__(self, depth: int = IO_QUEUE_DEPTH):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rankwise-export-io")
        self._pending: deque[Future[Any]] = deque()
        self._depth = depth

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._executor.submit(job, *args))

    def join(self) -> None:
        """Wait for every job (also after a failure, so none is left writing), then raise the first
        failure not raised yet."""
        self._executor.shutdown(wait=True)
        failures = [error for future in self._pending if (error := future.exception()) is not None]
        self._pending.clear()
        if failures:
            raise failures[0]


class _DigestingFile:
    """A binary file that hashes what is written to it, so the manifest needs no second read."""

    def __init__(self, path: Path):
        self._file = path.open("wb")
        self._sha = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes | bytearray) -> int:
        self._sha.update(data)  # both release the GIL on large buffers
        self._size += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def digest(self) -> dict[str, Any]:
        return {"sha256": self._sha.hexdigest(), "size": self._size}


class _SplitWriter:
    """One split's file. `write` runs on the caller's thread and hands full chunks or batches to the I/O
    thread; `close` runs after that thread has finished (see export_write)."""

    def write(self, rows: list[Row]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def digest(self) -> dict[str, Any] | None:
        """The file's SHA-256 and size when the writer hashed it while writing; None: read it back."""
        return None


class _JsonLinesWriter(_SplitWriter):
    def __init__(self, path: Path, *, compressed: bool, background: _Background):
        self._raw = _DigestingFile(path)
        self._handle: _DigestingFile | gzip.GzipFile = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0) if compressed else self._raw
        )
        self._background = background
        self._buffer = bytearray()

    def write(self, rows: list[Row]) -> None:
        _json_lines_append(self._buffer, rows)
        if len(self._buffer) >= FILE_CHUNK_BYTES:
            self._background.submit(self._handle.write, self._buffer)
            self._buffer = bytearray()

    def close(self) -> None:
        try:
            self._handle.write(self._buffer)
            if self._handle is not self._raw:
                self._handle.close()
        finally:
            self._raw.close()

    def digest(self) -> dict[str, Any]:
        return self._raw.digest()


def _json_lines_append(buffer: bytearray, rows: list[Row]) -> None:
    for row in rows:
        buffer += orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


class _BatchedArrowWriter(_SplitWriter):
    """Rows to Arrow record batches of PARQUET_BATCH_ROWS: Parquet (zstd) or an Arrow IPC stream, the
    file format of a `datasets` split (made into a dataset on close). Rows become a batch on the caller's
    thread; the batch is encoded, compressed and written on the I/O thread."""

    def __init__(self, path: Path, schema: Any, *, kind: str, background: _Background):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._schema = schema
        self._background = background
        self._sink: Any = None
        if kind == "parquet":
            self._writer: Any = pq.ParquetWriter(path, schema, compression="zstd")
        else:
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = pa.ipc.new_stream(self._sink, schema)
        self._batch: list[Row] = []
        # An empty split still gets one (empty) batch in an Arrow stream: `datasets` cannot read a stream
        # of none. Parquet stays without row groups, which readers take as empty.
        self._empty = kind == "arrow"

    def write(self, rows: list[Row]) -> None:
        self._batch += rows
        while len(self._batch) >= PARQUET_BATCH_ROWS:
            self._background.submit(self._writer.write_batch, self._record_batch(PARQUET_BATCH_ROWS))

    def _record_batch(self, size: int) -> Any:
        import pyarrow as pa

        batch = pa.RecordBatch.from_pylist(self._batch[:size], schema=self._schema)
        del self._batch[:size]
        self._empty = False
        return batch

    def close(self) -> None:
        try:
            if self._batch or self._empty:
                self._writer.write_batch(self._record_batch(len(self._batch)))
        finally:
            self._writer.close()
            if self._sink is not None:
                self._sink.close()


def _split_names(options: ExportOptions) -> tuple[str, ...]:
    return ("train", "test") if options.test_fraction > 0 else ("train",)


def export_write(
    options: ExportOptions,
    *,
    high_water_mark: int,
    directory: Path,
    standing_mark: int | None = None,
    quality_mark: int | None = None,
    review_mark: int | None = None,
    source_marks: dict[str, int] | None = None,
    leaderboard: Callable[[ExportOptions, ExportQuality], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Write the export's data files and card into `directory` (created; must be empty or absent).
    Suspensions and quality figures are read as of the marks (default: now; see feedback.export.quality),
    people's answers and prompts as of `source_marks` (default: now; see feedback.export.answers).
    `leaderboard`, given the options and the quality decisions, returns the leaderboard of the exported
    judgments for the card (`feedback.services.leaderboard.export_leaderboard`; this package only reads).

    Returns the manifest: the snapshot digest, row counts per split, and each file's SHA-256 and size.
    """
    from feedback.export.schema import row_schema

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty")
    quality = export_quality(
        options,
        high_water_mark=high_water_mark,
        standing_mark=standing_mark,
        quality_mark=quality_mark,
        review_mark=review_mark,
    )
    if source_marks is None:
        source_marks = source_marks_now(options)
    digest = snapshot_digest(
        options,
        high_water_mark,
        standing_mark=quality.standing_mark,
        quality_mark=quality.quality_mark,
        review_mark=quality.review_mark,
        source_marks=source_marks,
    )
    splits = _split_names(options)
    stats = ExportStats(removed=removed_by_quality(options, high_water_mark=high_water_mark, quality=quality))
    axes = rating_axes(options)
    staging = directory / ".arrow"
    writers: dict[str, tuple[Path, _SplitWriter]] = {}  # split: (its file, its writer)
    with ExitStack() as stack:
        background = _Background()
        is_json_lines = options.output in ("jsonl", "jsonl.gz")
        schema = None if is_json_lines else row_schema(options, axes)
        for split in splits:
            if is_json_lines:
                path = directory / f"{split}.{options.output}"
                writer: _SplitWriter = _JsonLinesWriter(
                    path, compressed=options.output == "jsonl.gz", background=background
                )
            elif options.output == "parquet":
                path = directory / f"{split}.parquet"
                writer = _BatchedArrowWriter(path, schema, kind="parquet", background=background)
            else:
                staging.mkdir(exist_ok=True)
                path = staging / f"{split}.arrow"
                writer = _BatchedArrowWriter(path, schema, kind="arrow", background=background)
            writers[split] = (path, writer)
            stack.callback(writer.close)
        # Last in, first out: the I/O thread finishes before the writers close their files.
        stack.callback(background.join)
        with transaction.atomic():
            for split, rows in export_row_groups(
                options,
                high_water_mark=high_water_mark,
                axes=axes,
                stats=stats,
                quality=quality,
                source_marks=source_marks,
            ):
                writers[split][1].write(rows)
                stats.rows[split] += len(rows)
    # `datasets` cannot load an empty split (load_dataset: "corresponds to no data"; load_from_disk:
    # IndexError, datasets 5.2), so a split without rows gets no file; the card lists only the others.
    nonempty = tuple(split for split in splits if stats.rows[split])
    for split in splits:
        if split not in nonempty:
            for path in directory.glob(f"{split}.*"):
                path.unlink()
    if options.output == "hf-dataset":
        _save_to_disk(staging, directory / "dataset", splits=nonempty, fingerprint=digest[:16])
        shutil.rmtree(staging)
    board = (
        leaderboard(options, quality)
        if leaderboard is not None
        and options.format not in ("gold", *PROMPT_FORMATS)
        and (options.format not in ANSWER_FORMATS or "chosen" in options.answers)
        else None
    )
    (directory / "README.md").write_text(
        dataset_card(
            options,
            high_water_mark=high_water_mark,
            digest=digest,
            stats=stats,
            quality=quality,
            leaderboard=board,
            source_marks=source_marks,
        ),
        encoding="utf-8",
    )
    hashed = {
        path: written
        for split, (path, writer) in writers.items()
        if split in nonempty and (written := writer.digest()) is not None
    }
    files = {
        str(path.relative_to(directory)): hashed.get(path) or file_digest(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
    return {
        "snapshot_digest": digest,
        "high_water_mark": high_water_mark,
        **({"source_marks": source_marks} if source_marks else {}),
        "rows": {split: stats.rows[split] for split in splits},
        "comparisons": stats.comparisons,
        "judgments": stats.judgments,
        "annotators": len(stats.annotators),
        "files": files,
    }


def _save_to_disk(staging: Path, target: Path, *, splits: tuple[str, ...], fingerprint: str) -> None:
    """`DatasetDict.save_to_disk` over memory-mapped Arrow files. The fingerprint is the snapshot's, so
    the directory is reproducible (datasets would otherwise hash file paths and times into it)."""
    import datasets
    from datasets import Dataset, DatasetDict
    from datasets.table import MemoryMappedTable

    datasets.disable_progress_bars()  # a worker's log is no terminal

    parts = {
        split: Dataset(
            MemoryMappedTable.from_file(str(staging / f"{split}.arrow")),
            split=split,
            fingerprint=f"{fingerprint}{split}",
        )
        for split in splits
    }
    DatasetDict(parts).save_to_disk(str(target))


def file_digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(COPY_BUFFER_BYTES):
            sha.update(chunk)
    return {"sha256": sha.hexdigest(), "size": path.stat().st_size}


def archive_directory(directory: Path, archive: Path) -> None:
    """Zip `directory` reproducibly: sorted entries, a fixed date and mode, stored (the data files are
    compressed already where it pays, and storing keeps the archive as fast to write as to read)."""
    temporary = archive.with_name(archive.name + ".partial")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as bundle:
        for path in sorted(directory.rglob("*")):
            if not path.is_file():
                continue
            info = zipfile.ZipInfo(str(path.relative_to(directory)), date_time=ARCHIVE_DATE)
            info.external_attr = 0o644 << 16
            with path.open("rb") as source, bundle.open(info, "w", force_zip64=True) as target:
                shutil.copyfileobj(source, target, COPY_BUFFER_BYTES)
    os.replace(temporary, archive)


def stream_jsonl(
    options: ExportOptions,
    *,
    high_water_mark: int,
    split: str | None = None,
    source_marks: dict[str, int] | None = None,
) -> Iterator[bytes]:
    """The rows as JSON Lines in chunks of about 256 KiB; one transaction for the whole stream. The
    marks of answers and prompts, where the format reads them, default to now."""
    buffer = bytearray()
    if source_marks is None:
        source_marks = source_marks_now(options)
    with transaction.atomic():
        for rows_split, rows in export_row_groups(
            options, high_water_mark=high_water_mark, source_marks=source_marks
        ):
            if split is not None and rows_split != split:
                continue
            _json_lines_append(buffer, rows)
            if len(buffer) >= STREAM_CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)


# --- the card ---------------------------------------------------------------------------------------------


def dataset_card(
    options: ExportOptions,
    *,
    high_water_mark: int,
    digest: str,
    stats: ExportStats,
    quality: ExportQuality | None = None,
    leaderboard: dict[str, Any] | None = None,
    source_marks: dict[str, int] | None = None,
) -> str:
    splits = _split_names(options)
    data_files = {
        "jsonl": "{split}.jsonl",
        "jsonl.gz": "{split}.jsonl.gz",
        "parquet": "{split}.parquet",
        "hf-dataset": "dataset/{split}/*.arrow",
    }[options.output]
    front = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        if not stats.rows[split]:
            continue  # no file: see export_write
        front += [f"  - split: {split}", f"    path: {data_files.format(split=split)}"]
    front += ["tags:", "- rlhf", "- human-feedback", "- rankwise", "---", ""]
    body = io.StringIO()
    write = body.write
    write(f"# Rankwise export: {options.format} ({options.aggregation})\n\n")
    write(
        "Human preference judgments collected with Rankwise, exported for training. The files load with "
        "`datasets` as they are; see the format notes below.\n\n"
    )
    write("## Snapshot\n\n")
    write(f"- Snapshot digest: `{digest}` (SHA-256 of the options and the high-water marks)\n")
    write(f"- Judgments covered: ids up to {high_water_mark}\n")
    for name, mark in sorted((source_marks or {}).items()):
        write(f"- {SOURCE_MARK_NAMES[name]} covered: ids up to {mark}\n")
    write("- Re-exporting this snapshot with the same options writes byte-identical files.\n\n")
    write("## Counts\n\n| split | rows |\n|---|---|\n")
    for split in splits:
        write(f"| {split} | {stats.rows[split]} |\n")
    if options.format in PROMPT_FORMATS:
        write(f"\n- Prompts: {stats.sources.prompts} (gold prompts are never exported)\n")
    if options.format in ANSWER_FORMATS:
        write(answers_card_section(stats.sources))
    if _reads_judgments(options):
        write(_judgments_card_sections(options, stats=stats, quality=quality, leaderboard=leaderboard))
    write("\n## Options\n\nFilters, aggregation and shape, exactly as given to the export:\n\n```json\n")
    write(_options_json(options))
    write("\n```\n\n")
    write(FORMAT_NOTES)
    return "\n".join(front) + body.getvalue()


def _reads_judgments(options: ExportOptions) -> bool:
    """Whether the rows come from judgments (all or some): not for prompts, nor for people's answers
    unless the export also takes the chosen model answers."""
    if options.format in PROMPT_FORMATS:
        return False
    return options.format not in ANSWER_FORMATS or (
        options.format not in EDIT_FORMATS and "chosen" in options.answers
    )


def _judgments_card_sections(
    options: ExportOptions,
    *,
    stats: ExportStats,
    quality: ExportQuality | None,
    leaderboard: dict[str, Any] | None,
) -> str:
    body = io.StringIO()
    write = body.write
    write(
        f"\n- Comparisons: {stats.comparisons} (another {stats.comparisons_dropped} matched the filters but "
        "gave no row: no majority, a tie or both-bad left out, or below the minimums)\n"
    )
    write(f"- Judgments: {stats.judgments}\n- Annotators: {len(stats.annotators)}\n\n")
    write("## Agreement\n\n")
    if stats.agreement_count:
        mean = stats.agreement_sum / stats.agreement_count
        write(
            f"Over the {stats.agreement_count} comparisons with two or more judgments: mean {mean:.3f}, "
            f"minimum {stats.agreement_min:.3f}.\n\n| agreement | comparisons |\n|---|---|\n"
        )
        for bucket in ("1.0", "0.75–0.99", "0.50–0.74", "below 0.50"):
            write(f"| {bucket} | {stats.agreement_buckets[bucket]} |\n")
    else:
        write("No comparison has two or more judgments.\n")
    if quality is not None:
        write(
            quality_card_section(options, quality=quality, removed=stats.removed, annotators=stats.annotators)
        )
    if leaderboard is not None:
        write(leaderboard_card_section(leaderboard))
    write("\n## Checkpoints\n\n| checkpoint | comparisons |\n|---|---|\n")
    for name, count in sorted(stats.checkpoints.items()):
        write(f"| {markdown_cell(name)} | {count} |\n")
    if PEOPLE in stats.checkpoints:
        write(
            f"\n`{PEOPLE}` stands for people's answers (written or edited by annotators), not a checkpoint.\n"
        )
    write("\n## Categories\n\n| category | comparisons |\n|---|---|\n")
    for name, count in sorted(stats.categories.items()):
        write(f"| {markdown_cell(name)} | {count} |\n")
    return body.getvalue()


SOURCE_MARK_NAMES = {"answers": "People's answers", "answer_reviews": "Answer reviews", "prompts": "Prompts"}


def _options_json(options: ExportOptions) -> str:
    return orjson.dumps(options.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def answers_card_section(sources: SourceStats) -> str:
    """The card's account of people's answers: how many of each kind by how many people, and those left
    out, by why."""
    lines = [
        "\n## People's answers\n\n",
        f"- Written (demonstrations): {sources.answers['written']}\n",
        f"- Edited (model answers people improved): {sources.answers['edited']}\n",
        f"- People: {len(sources.authors)}\n",
    ]
    for why, count in sorted(sources.left_out.items()):
        lines.append(f"- Left out, {why}: {count}\n")
    return "".join(lines)


def _card_score(score: dict[str, Any] | None) -> str:
    return "—" if score is None else f"{score['elo']:.0f} [{score['low']:.0f}, {score['high']:.0f}]"


def leaderboard_card_section(report: dict[str, Any]) -> str:
    """The card's leaderboard: the checkpoints of the exported judgments, ranked by Bradley–Terry score
    with 95% intervals, raw and length/style-controlled (`feedback.services.leaderboard`)."""
    lines = ["\n## Leaderboard\n\n"]
    if report["reference"] is None:
        lines.append("Fewer than two checkpoints met in the exported judgments: nothing to rank.\n")
        return "".join(lines)
    lines.append(
        f"Bradley–Terry scores of the checkpoints from the {report['battles']} battles in the exported "
        f"judgments ({report['judgments']} judgments; {report['ties']} ties counted half a win each, "
        f"{report['both_bad']} both-bad left out), on an Elo-like scale with "
        f"{markdown_cell(report['reference']['name'])} at 1000; 95% intervals from {report['rounds']} "
        f"bootstrap rounds (seed {report['seed']}). A rank is 1 + the number of checkpoints significantly "
        "better. *Controlled* holds the difference in length and markdown style fixed. Every judgment the "
        "export selected counts, whatever the aggregation.\n\n"
    )
    lines.append(
        "| rank | checkpoint | score [95%] | controlled [95%] | battles (W·L·T·BB) |\n|---|---|---|---|---|\n"
    )
    for entry in report["checkpoints"]:
        rank = entry["raw"]["rank"] if entry["raw"] else "—"
        lines.append(
            f"| {rank} | {markdown_cell(entry['name'])} | {_card_score(entry['raw'])} | "
            f"{_card_score(entry['controlled'])} | {entry['battles']} ({entry['wins']}·{entry['losses']}·"
            f"{entry['ties']}·{entry['both_bad']}) |\n"
        )
    advantage = report["first_advantage"]["raw"]
    lines.append(
        f"\nThe response shown first wins {advantage['win_probability']:.3f} of the time against an equal one "
        f"(95% [{advantage['low']:+.3f}, {advantage['high']:+.3f}] logits).\n"
    )
    lines.extend(f"\n{note}\n" for note in report["notes"])
    return "".join(lines)


FORMAT_NOTES = """## Format notes

- `prompt` strings are the conversation rendered with the project's completion template, as base
  checkpoints were prompted; conversational formats keep the messages.
- `margin` (preference formats): strength level `s` maps to `margin_scale[s-1]` (linear by default), no
  strength question gives 1.0, a tie written both ways gives 0.0, a pair from a k-wise ranking gives the
  rank difference; consensus rows carry the mean over the winning votes.
- `agreement`: pairwise, the share of judgments making the majority choice; k-wise, the mean over pairs of
  responses of the share of judgments ordering the pair as the consensus does.
- Splits are decided by a hash of the prompt's content and the split salt, so a prompt is never in both.
"""

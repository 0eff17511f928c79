"""Prompt import: one service behind the admin upload page, `manage.py import_prompts` and the REST API.

A file is JSON Lines or CSV. Each record gives a plain `prompt` string or a `messages` list, and optionally
`id`, `category` and `metadata`. The whole file is checked first and every bad line is reported with its
number; a file with any bad line imports nothing. Re-importing is idempotent by external id: unchanged
prompts are skipped, and a prompt whose id exists with different content is reported as a conflict and
left as it is, never overwritten.
"""

from __future__ import annotations

import csv
import gc
import io
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import IO, Any, Literal, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from feedback.models import MessageRole, Project, Prompt, PromptCategory, canonical_json, sha256_hex
from feedback.services.answers import writing_tasks_open

PromptFileFormat = Literal["jsonl", "csv"]
Checked = TypeVar("Checked")

RECORD_FIELDS = ("id", "prompt", "messages", "category", "metadata")
# Django rebuilds `TextChoices.values` on every access; these are checked once per message.
CATEGORIES = frozenset(PromptCategory.values)
ROLES = frozenset(MessageRole.values)
EXTERNAL_ID_MAX_LENGTH = Prompt._meta.get_field("external_id").max_length or 200
DERIVED_ID_PREFIX = "sha256:"
# Enough to show what is wrong with a file without turning the report into the file.
MAX_REPORTED_ERRORS = 1_000
# Rows per INSERT and per lookup of existing ids: big enough to amortise round trips, small enough
# to keep statements and parameter lists modest.
WRITE_BATCH_SIZE = 2_000
READ_CHUNK_BYTES = 1 << 20
ANALYZE_AFTER_ROWS = 10_000


@dataclass(frozen=True)
class PromptLineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class PromptImportError(Exception):
    """The file was refused; nothing was written. `errors` names every bad line (up to a cap)."""

    def __init__(self, errors: list[PromptLineError], *, truncated: bool = False) -> None:
        self.errors = errors
        self.truncated = truncated
        more = " (more not shown)" if truncated else ""
        super().__init__(f"{len(errors)} bad line(s){more}; nothing was imported")


@dataclass(frozen=True)
class ParsedPrompt:
    line: int
    external_id: str
    conversation: list[dict[str, str]]
    category: str
    metadata: dict[str, Any]
    content_hash: str
    # JSON texts made while checking, kept so that the write serialises nothing twice.
    conversation_json: str
    metadata_json: str


@dataclass(frozen=True)
class PromptConflict:
    line: int
    external_id: str
    changed_fields: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"line {self.line}: id {self.external_id!r} already exists with a different "
            f"{', '.join(self.changed_fields)}; kept the stored prompt"
        )


@dataclass
class PromptImportReport:
    created: int = 0
    unchanged: int = 0
    conflicts: list[PromptConflict] = field(default_factory=list)
    writing_tasks: int = 0  # opened for the new prompts, in a demonstration project without references

    @property
    def total(self) -> int:
        return self.created + self.unchanged + len(self.conflicts)

    def summary(self) -> str:
        return (
            f"{self.created} imported, {self.unchanged} unchanged, {len(self.conflicts)} conflict(s) "
            f"of {self.total} prompt(s)"
            + (f"; {self.writing_tasks} writing task(s) opened" if self.writing_tasks else "")
        )


class LineError(Exception):
    """One record is bad; carries the message for the report."""


def prompt_file_format_for(filename: str) -> PromptFileFormat:
    suffix = PurePath(filename).suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise ValueError(
        f"Cannot tell the format of {filename!r}: use a .jsonl or .csv file, or name the format."
    )


def prompts_parse(*, source: IO[bytes], file_format: PromptFileFormat) -> list[ParsedPrompt]:
    """Read and check a whole file. Raises `PromptImportError` listing the bad lines."""
    if file_format == "jsonl":
        records: Iterable[tuple[int, dict[str, Any] | LineError]] = jsonl_records(source)
    elif file_format == "csv":
        records = _csv_records(source)
    else:
        raise ValueError(f"Unknown prompt file format {file_format!r}: use 'jsonl' or 'csv'.")
    max_chars = settings.RANKWISE_PROMPT_MAX_CHARS
    return records_checked(
        records,
        lambda record, line: prompt_from_record(record, line=line, max_chars=max_chars),
        external_id=lambda prompt: prompt.external_id,
        what="prompts",
    )


def records_checked(
    records: Iterable[tuple[int, dict[str, Any] | LineError]],
    check: Callable[[dict[str, Any], int], Checked],
    *,
    external_id: Callable[[Checked], str],
    what: str,
) -> list[Checked]:
    """Every record through `check` (which raises `LineError`), ids unique across the file. Raises
    `PromptImportError` naming every bad line (up to `MAX_REPORTED_ERRORS`), or the file's emptiness."""
    parsed: list[Checked] = []
    errors: list[PromptLineError] = []
    first_line_of_id: dict[str, int] = {}
    truncated = False
    for line, record in records:
        try:
            if isinstance(record, LineError):
                raise record
            item = check(record, line)
            first = first_line_of_id.setdefault(external_id(item), line)
            if first != line:
                raise LineError(f"id {external_id(item)!r} repeats line {first}")
            parsed.append(item)
        except LineError as error:
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(PromptLineError(line=line, message=str(error)))
            else:
                truncated = True
    if errors:
        raise PromptImportError(errors, truncated=truncated)
    if not parsed:
        raise PromptImportError([PromptLineError(line=1, message=f"the file holds no {what}")])
    return parsed


@transaction.atomic
def prompts_import(
    *, project: Project, source: IO[bytes], file_format: PromptFileFormat
) -> PromptImportReport:
    """Import a prompt file into `project` in one transaction.

    Takes a row lock on the project, so concurrent imports into the same project run one after the
    other and the skip-or-conflict decision is made against committed rows.
    """
    with _cyclic_gc_paused():
        prompts = prompts_parse(source=source, file_format=file_format)
    Project.objects.select_for_update().only("pk").get(pk=project.pk)

    report = PromptImportReport()
    new_prompts: list[ParsedPrompt] = []
    for batch in _batched(prompts, WRITE_BATCH_SIZE):
        stored = {
            row[0]: row[1:]
            for row in Prompt.objects.filter(
                project=project, external_id__in=[prompt.external_id for prompt in batch]
            )
            .order_by()  # no ORDER BY id: it would lead the planner to walk the primary key
            .values_list("external_id", "content_hash", "category", "metadata")
        }
        for prompt in batch:
            existing = stored.get(prompt.external_id)
            if existing is None:
                new_prompts.append(prompt)
                continue
            changed = tuple(
                name
                for name, old, new in zip(
                    ("conversation", "category", "metadata"),
                    existing,
                    (prompt.content_hash, prompt.category, prompt.metadata),
                    strict=True,
                )
                if old != new
            )
            if changed:
                report.conflicts.append(
                    PromptConflict(line=prompt.line, external_id=prompt.external_id, changed_fields=changed)
                )
            else:
                report.unchanged += 1
    _insert_prompts(project=project, prompts=new_prompts)
    report.created = len(new_prompts)
    if (
        new_prompts
        and project.comparison_mode == Project.ComparisonMode.DEMONSTRATION
        and not project.reference_answers
    ):
        report.writing_tasks = writing_tasks_open(project=project)
    return report


def _insert_prompts(*, project: Project, prompts: list[ParsedPrompt]) -> None:
    """Insert new prompts: COPY on PostgreSQL, `bulk_create` elsewhere (the SQLite demo).

    COPY skips building an INSERT statement with every value quoted into it, which is most of the cost
    of `bulk_create` for JSON-heavy rows; constraints and triggers apply to COPY as to INSERT.
    """
    if not prompts:
        return
    if connection.vendor != "postgresql":
        Prompt.objects.bulk_create(
            (
                Prompt(
                    project=project,
                    external_id=prompt.external_id,
                    conversation=prompt.conversation,
                    category=prompt.category,
                    metadata=prompt.metadata,
                    content_hash=prompt.content_hash,
                )
                for prompt in prompts
            ),
            batch_size=WRITE_BATCH_SIZE,
        )
        return
    quote = connection.ops.quote_name
    fields = ("project", "external_id", "conversation", "category", "metadata", "content_hash", "created_at")
    column_of = {field.name: field.column for field in Prompt._meta.concrete_fields if field.column}
    columns = ", ".join(quote(column_of[name]) for name in fields)
    created_at = timezone.now()
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {quote(Prompt._meta.db_table)} ({columns}) FROM STDIN") as copy,
    ):
        for prompt in prompts:
            copy.write_row(
                (
                    project.pk,
                    prompt.external_id,
                    prompt.conversation_json,
                    prompt.category,
                    prompt.metadata_json,
                    prompt.content_hash,
                    created_at,
                )
            )
    if len(prompts) >= ANALYZE_AFTER_ROWS:
        # Fresh statistics, so the next import's id lookups use the unique index at once instead of
        # waiting for autovacuum.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {quote(Prompt._meta.db_table)}")


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause CPython's cycle collector while a file is parsed.

    Parsing keeps every prompt (lists and dicts) alive until the write, so each full collection would
    rescan a heap that keeps growing: about a fifth of the import's time at 100,000 prompts. Nothing
    built here forms reference cycles, so reference counting frees it all the same.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- Reading files ---------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise LineError(f"bad JSON: {name} is not a JSON number")


def _loads(text: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and PostgreSQL's jsonb) does not.
    return json.loads(text, parse_constant=_refuse_constant)


def _physical_lines(source: IO[bytes]) -> Iterator[bytes]:
    """Lines split on b"\\n" from any binary file-like object, read in bounded chunks."""
    pending = b""
    while chunk := source.read(READ_CHUNK_BYTES):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def _decode_line(raw: bytes, *, line: int) -> str:
    if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if b"\x00" in raw:
        raise LineError("contains a NUL byte")
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as error:
        raise LineError(f"is not valid UTF-8 (byte {error.start + 1})") from None


def jsonl_records(source: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    for line, raw in enumerate(_physical_lines(source), start=1):
        try:
            text = _decode_line(raw, line=line)
            if not text.strip():
                continue
            try:
                record = _loads(text)
            except json.JSONDecodeError as error:
                raise LineError(f"bad JSON: {error.msg} (column {error.colno})") from None
            if not isinstance(record, dict):
                raise LineError(f"expected a JSON object, got {json_type(record)}")
            yield line, record
        except LineError as error:
            yield line, error


def _csv_records(source: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    # CSV records may span lines (quoted newlines), so check bytes per physical line first, then parse.
    raw_lines = list(_physical_lines(source))
    bad_lines = False
    texts: list[str] = []
    for line, raw in enumerate(raw_lines, start=1):
        try:
            texts.append(_decode_line(raw, line=line))
        except LineError as error:
            bad_lines = True
            yield line, error
    if bad_lines:
        return
    reader = csv.reader(io.StringIO("\n".join(texts), newline=""))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return
    unknown = [name for name in header if name not in RECORD_FIELDS]
    if unknown or len(set(header)) != len(header) or not {"prompt", "messages"} & set(header):
        yield (
            1,
            LineError(
                f"the header must name columns among {', '.join(RECORD_FIELDS)}, each once, including "
                f"'prompt' or 'messages'; got {', '.join(header) or 'nothing'}"
            ),
        )
        return
    start = reader.line_num + 1
    for row in reader:
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield line, LineError(f"has {len(row)} fields, the header has {len(header)}")
            continue
        try:
            yield line, _record_from_csv_row(dict(zip(header, row, strict=True)))
        except LineError as error:
            yield line, error


def _record_from_csv_row(row: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name, cell in row.items():
        if cell == "":
            continue  # an empty cell is a missing value
        if name in {"messages", "metadata"}:
            try:
                record[name] = _loads(cell)
            except json.JSONDecodeError as error:
                raise LineError(f"{name} is not valid JSON: {error.msg} (column {error.colno})") from None
        else:
            record[name] = cell
    return record


# --- Checking records ------------------------------------------------------------------------------------


def prompt_from_record(record: dict[str, Any], *, line: int, max_chars: int) -> ParsedPrompt:
    unknown = sorted(set(record) - set(RECORD_FIELDS))
    if unknown:
        raise LineError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(RECORD_FIELDS)}")
    conversation = _conversation_from_record(record)
    _check_size(conversation, max_chars=max_chars)

    category = record.get("category", PromptCategory.OTHER)
    if not isinstance(category, str) or category.strip().lower() not in CATEGORIES:
        raise LineError(f"unknown category {category!r}; allowed: {', '.join(PromptCategory.values)}")

    metadata = record.get("metadata", {})
    metadata_json = _metadata_json(metadata)

    conversation_json = canonical_json(conversation)
    content_hash = sha256_hex(conversation_json)
    return ParsedPrompt(
        line=line,
        external_id=_external_id(record.get("id"), content_hash=content_hash),
        conversation=conversation,
        category=category.strip().lower(),
        metadata=metadata,
        content_hash=content_hash,
        conversation_json=conversation_json,
        metadata_json=metadata_json,
    )


def _conversation_from_record(record: dict[str, Any]) -> list[dict[str, str]]:
    if "prompt" in record and "messages" in record:
        raise LineError("give either 'prompt' or 'messages', not both")
    if "prompt" in record:
        text = record["prompt"]
        if not isinstance(text, str):
            raise LineError(f"prompt must be a string, got {json_type(text)}")
        check_text(text, what="prompt")
        return [{"role": MessageRole.USER.value, "content": text}]
    if "messages" not in record:
        raise LineError("missing text: give 'prompt' (a string) or 'messages' (a list)")
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise LineError("messages must be a non-empty list of {role, content} objects")
    conversation = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise LineError(f"message {number} must be an object with exactly 'role' and 'content'")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise LineError(f"message {number} has unknown role {role!r}; allowed: system, user, assistant")
        if not isinstance(content, str):
            raise LineError(f"message {number} content must be a string, got {json_type(content)}")
        check_text(content, what=f"message {number}")
        conversation.append({"role": role, "content": content})
    _check_role_order([message["role"] for message in conversation])
    return conversation


# For the other write path, the admin's prompt form: the checks an import makes of a line's conversation
# (roles and their order, text, size) and metadata, raising ValueError with the import's message.


def conversation_clean(messages: Any) -> list[dict[str, str]]:
    try:
        conversation = _conversation_from_record({"messages": messages})
        _check_size(conversation, max_chars=settings.RANKWISE_PROMPT_MAX_CHARS)
    except LineError as error:
        raise ValueError(str(error)) from None
    return conversation


def metadata_clean(metadata: Any) -> dict[str, Any]:
    try:
        _metadata_json(metadata)
    except LineError as error:
        raise ValueError(str(error)) from None
    return metadata


def _metadata_json(metadata: Any) -> str:
    if not isinstance(metadata, dict):
        raise LineError(f"metadata must be a JSON object, got {json_type(metadata)}")
    metadata_json = json.dumps(metadata, ensure_ascii=False)  # escapes control characters, NUL included
    if "\\u0000" in metadata_json:
        raise LineError("metadata contains a NUL character")
    return metadata_json


def _check_size(conversation: list[dict[str, str]], *, max_chars: int) -> None:
    total_chars = sum(len(message["content"]) for message in conversation)
    if total_chars > max_chars:
        raise LineError(f"over the size limit: {total_chars} characters of text, the limit is {max_chars}")


def _check_role_order(roles: list[str]) -> None:
    """An optional leading system message, then user and assistant alternating, ending on user."""
    turns = roles[1:] if roles[0] == MessageRole.SYSTEM else roles
    if not turns:
        raise LineError("wrong role order: a system message alone; the conversation needs a user turn")
    for number, role in enumerate(turns):
        expected = MessageRole.USER if number % 2 == 0 else MessageRole.ASSISTANT
        if role != expected:
            position = number + 1 + (len(roles) - len(turns))
            raise LineError(
                f"wrong role order: message {position} is {role!r}, expected {expected.value!r} "
                "(an optional system message, then user and assistant alternating)"
            )
    if turns[-1] != MessageRole.USER:
        raise LineError("wrong role order: the last message must be from the user")


def check_text(text: str, *, what: str) -> None:
    if not text.strip():
        raise LineError(f"{what} is empty")
    if "\x00" in text:
        raise LineError(f"{what} contains a NUL character")


def _external_id(value: Any, *, content_hash: str) -> str:
    if value is None:
        # Id-less files still re-import idempotently: the id is derived from the text.
        return f"{DERIVED_ID_PREFIX}{content_hash[:32]}"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise LineError(f"id must be a string or an integer, got {json_type(value)}")
    external_id = str(value).strip()
    if not external_id:
        raise LineError("id is empty")
    if len(external_id) > EXTERNAL_ID_MAX_LENGTH:
        raise LineError(f"id is longer than {EXTERNAL_ID_MAX_LENGTH} characters")
    if "\x00" in external_id:
        raise LineError("id contains a NUL character")
    return external_id


def json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _batched(items: list[ParsedPrompt], size: int) -> Iterator[list[ParsedPrompt]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

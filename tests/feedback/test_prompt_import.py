"""Prompt import: the service that the admin page, the command and the API share."""

import csv
import io
import json
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from feedback.models import Prompt, conversation_hash
from feedback.services.prompts import PromptImportError, prompts_import
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

SYSTEM_CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "2"},
    {"role": "user", "content": "Another?"},
]


def jsonl(*records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def run_import(project, data: bytes, file_format="jsonl"):
    return prompts_import(project=project, source=io.BytesIO(data), file_format=file_format)


def stored(project) -> list[tuple]:
    return list(
        Prompt.objects.filter(project=project)
        .order_by("external_id")
        .values_list("external_id", "conversation", "category", "metadata")
    )


def test_jsonl_with_strings_and_conversations():
    project = ProjectFactory()
    report = run_import(
        project,
        jsonl(
            {"id": "p1", "prompt": "List three fruits.", "category": "list", "metadata": {"source": "t"}},
            {"id": 2, "messages": SYSTEM_CHAT, "category": "Other"},
        ),
    )
    assert (report.created, report.unchanged, report.conflicts) == (2, 0, [])
    assert stored(project) == [
        ("2", SYSTEM_CHAT, "other", {}),
        ("p1", [{"role": "user", "content": "List three fruits."}], "list", {"source": "t"}),
    ]
    prompt = Prompt.objects.get(project=project, external_id="2")
    assert prompt.content_hash == conversation_hash(SYSTEM_CHAT)
    assert prompt.turn_count == 2


def test_csv_with_quoted_newlines_json_cells_and_empty_cells():
    project = ProjectFactory()
    chat_row = io.StringIO()
    csv.writer(chat_row).writerow(["c2", "", json.dumps(SYSTEM_CHAT), "", ""])
    data = (
        "id,prompt,messages,category,metadata\r\n"
        'c1,"Summarize:\nline one\nline two",,summarize,"{""k"": 1}"\r\n' + chat_row.getvalue()
    ).encode()
    report = run_import(project, data, "csv")
    assert report.created == 2
    assert stored(project) == [
        ("c1", [{"role": "user", "content": "Summarize:\nline one\nline two"}], "summarize", {"k": 1}),
        ("c2", SYSTEM_CHAT, "other", {}),
    ]


def test_bom_crlf_and_blank_lines_are_accepted():
    project = ProjectFactory()
    data = b'\xef\xbb\xbf{"id": "a", "prompt": "One"}\r\n\r\n   \n{"id": "b", "prompt": "Two"}'
    assert run_import(project, data).created == 2
    assert [row[0] for row in stored(project)] == ["a", "b"]


def test_prompts_without_ids_get_ids_from_their_text_and_reimport_idempotently():
    project = ProjectFactory()
    data = jsonl({"prompt": "Explain tides."}, {"prompt": "Explain rain."})
    assert run_import(project, data).created == 2
    again = run_import(project, data)
    assert (again.created, again.unchanged) == (0, 2)
    expected = "sha256:" + conversation_hash([{"role": "user", "content": "Explain tides."}])[:32]
    assert Prompt.objects.filter(project=project, external_id=expected).exists()


LINE_ERRORS = [
    ('{"id": "x", "prompt": "unterminated}', "bad JSON: Unterminated string starting at (column 23)"),
    ("[1, 2]", "expected a JSON object, got a list"),
    ('{"id": "x", "prompt": "fine", "metadata": {"score": NaN}}', "bad JSON: NaN is not a JSON number"),
    (
        '{"id": "x", "prompt": "fine", "metadata": {"score": -Infinity}}',
        "bad JSON: -Infinity is not a JSON number",
    ),
    ({"id": "x"}, "missing text: give 'prompt' (a string) or 'messages' (a list)"),
    ({"id": "x", "prompt": "  \n "}, "prompt is empty"),
    ({"id": "x", "prompt": 7}, "prompt must be a string, got a number"),
    ({"id": "x", "prompt": "a", "messages": SYSTEM_CHAT}, "give either 'prompt' or 'messages', not both"),
    ({"id": "x", "messages": []}, "messages must be a non-empty list of {role, content} objects"),
    (
        {"id": "x", "messages": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Yo"}]},
        "wrong role order: message 1 is 'assistant', expected 'user' (an optional system message, then user "
        "and assistant alternating)",
    ),
    (
        {"id": "x", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
        "wrong role order: the last message must be from the user",
    ),
    (
        {
            "id": "x",
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": "A"},
                {"role": "user", "content": "B"},
            ],
        },
        "wrong role order: message 3 is 'user', expected 'assistant' (an optional system message, then user "
        "and assistant alternating)",
    ),
    (
        {"id": "x", "messages": [{"role": "system", "content": "S"}]},
        "wrong role order: a system message alone; the conversation needs a user turn",
    ),
    (
        {"id": "x", "messages": [{"role": "bot", "content": "S"}]},
        "message 1 has unknown role 'bot'; allowed: system, user, assistant",
    ),
    (
        {"id": "x", "messages": [{"role": "user", "text": "S"}]},
        "message 1 must be an object with exactly 'role' and 'content'",
    ),
    ({"id": "x", "messages": [{"role": "user", "content": ""}]}, "message 1 is empty"),
    ('{"id": "x", "prompt": "nul \\u0000 inside"}', "prompt contains a NUL character"),
    ({"id": "x", "prompt": "fine", "metadata": {"k": "\u0000"}}, "metadata contains a NUL character"),
    ({"id": "x", "prompt": "fine", "metadata": [1]}, "metadata must be a JSON object, got a list"),
    (
        {"id": "x", "prompt": "fine", "category": "poetry"},
        "unknown category 'poetry'; allowed: list, summarize, explain, write, rewrite, brainstorm, classify, extract, code, qa, other",
    ),
    (
        {"id": "x", "prompt": "fine", "tags": ["a"]},
        "unknown field(s) tags; allowed: id, prompt, messages, category, metadata",
    ),
    ({"id": "", "prompt": "fine"}, "id is empty"),
    ({"id": True, "prompt": "fine"}, "id must be a string or an integer, got a boolean"),
    ({"id": "x" * 201, "prompt": "fine"}, "id is longer than 200 characters"),
    ({"id": "p1", "prompt": "same id as line 1"}, "id 'p1' repeats line 1"),
    ({"id": "x", "prompt": "y" * 101}, "over the size limit: 101 characters of text, the limit is 100"),
]


@pytest.mark.parametrize(("bad_line", "message"), LINE_ERRORS)
def test_each_kind_of_bad_line_is_reported_with_its_number_and_nothing_is_imported(
    settings, bad_line, message
):
    settings.RANKWISE_PROMPT_MAX_CHARS = 100
    project = ProjectFactory()
    data = jsonl({"id": "p1", "prompt": "Good one."}, bad_line, {"id": "p3", "prompt": "Good too."})
    with pytest.raises(PromptImportError) as caught:
        run_import(project, data)
    assert [str(error) for error in caught.value.errors] == [f"line 2: {message}"]
    assert str(caught.value) == "1 bad line(s); nothing was imported"
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize(
    ("raw_line", "message"),
    [
        (b'{"id": "x", "prompt": "raw \x00 byte"}', "contains a NUL byte"),
        (b'{"id": "x", "prompt": "caf\xe9"}', "is not valid UTF-8 (byte 27)"),
    ],
)
def test_bad_bytes_are_reported_per_line(raw_line, message):
    project = ProjectFactory()
    with pytest.raises(PromptImportError) as caught:
        run_import(project, b'{"prompt": "ok"}\n' + raw_line + b"\n")
    assert [str(error) for error in caught.value.errors] == [f"line 2: {message}"]
    assert Prompt.objects.count() == 0


def test_every_bad_line_is_reported_not_only_the_first():
    project = ProjectFactory()
    data = jsonl(
        {"id": "a", "prompt": "ok"},
        {"id": "b"},
        {"id": "c", "prompt": "ok"},
        "nope",
        {"id": "a", "prompt": "x"},
    )
    with pytest.raises(PromptImportError) as caught:
        run_import(project, data)
    assert [str(error) for error in caught.value.errors] == [
        "line 2: missing text: give 'prompt' (a string) or 'messages' (a list)",
        "line 4: bad JSON: Expecting value (column 1)",
        "line 5: id 'a' repeats line 1",
    ]
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "line 1: the file holds no prompts"),
        (
            b"text,category\nhello,list\n",
            "line 1: the header must name columns among id, prompt, messages, category, metadata, each once, including 'prompt' or 'messages'; got text, category",
        ),
        (b"id,prompt\na,hello,extra\n", "line 2: has 3 fields, the header has 2"),
        (
            b'id,messages\na,"[{""role"": ""user""]"\n',
            "line 2: messages is not valid JSON: Expecting ',' delimiter (column 17)",
        ),
        (b"id,prompt\na,\xff\n", "line 2: is not valid UTF-8 (byte 3)"),
    ],
)
def test_bad_csv_files(data, message):
    project = ProjectFactory()
    with pytest.raises(PromptImportError) as caught:
        run_import(project, data, "csv")
    assert [str(error) for error in caught.value.errors] == [message]
    assert Prompt.objects.count() == 0


def test_a_bad_file_leaves_earlier_prompts_exactly_as_they_were():
    project = ProjectFactory()
    run_import(project, jsonl({"id": "keep", "prompt": "Keep me."}))
    before = stored(project)
    with pytest.raises(PromptImportError):
        run_import(project, jsonl({"id": "new", "prompt": "New."}, {"id": "bad", "category": "list"}))
    assert stored(project) == before


def test_reimport_skips_unchanged_reports_changed_as_conflicts_and_never_overwrites():
    project = ProjectFactory()
    original = [
        {"id": "same", "prompt": "Stay.", "category": "list"},
        {"id": "text", "prompt": "Old text.", "category": "list"},
        {"id": "meta", "prompt": "Meta.", "metadata": {"v": 1}},
    ]
    run_import(project, jsonl(*original))
    before = stored(project)
    report = run_import(
        project,
        jsonl(
            {"id": "same", "prompt": "Stay.", "category": "list"},
            {"id": "text", "prompt": "New text.", "category": "write"},
            {"id": "meta", "prompt": "Meta.", "metadata": {"v": 2}},
            {"id": "fresh", "prompt": "Brand new."},
        ),
    )
    assert (report.created, report.unchanged) == (1, 1)
    assert [str(conflict) for conflict in report.conflicts] == [
        "line 2: id 'text' already exists with a different conversation, category; kept the stored prompt",
        "line 3: id 'meta' already exists with a different metadata; kept the stored prompt",
    ]
    assert report.summary() == "1 imported, 1 unchanged, 2 conflict(s) of 4 prompt(s)"
    assert [row for row in stored(project) if row[0] != "fresh"] == before


def test_the_same_ids_in_another_project_are_separate_prompts():
    data = jsonl({"id": "p", "prompt": "Hi"})
    first, second = ProjectFactory(), ProjectFactory()
    assert run_import(first, data).created == 1
    assert run_import(second, data).created == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_of_one_file_create_each_prompt_once():
    project = ProjectFactory()
    data = jsonl(*({"id": f"p{n}", "prompt": f"Prompt {n}"} for n in range(500)))
    reports, errors = [], []
    barrier = threading.Barrier(2)

    def worker():
        try:
            barrier.wait()
            reports.append(run_import(project, data))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted((report.created, report.unchanged) for report in reports) == [(0, 500), (500, 0)]
    assert Prompt.objects.filter(project=project).count() == 500


def test_import_prompts_command(tmp_path, capsys):
    project = ProjectFactory(slug="cli")
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(jsonl({"id": "a", "prompt": "One"}, {"id": "b", "prompt": "Two"}))
    call_command("import_prompts", str(path), project="cli")
    assert (
        capsys.readouterr().out == f"{path} into cli: 2 imported, 0 unchanged, 0 conflict(s) of 2 prompt(s)\n"
    )
    path.write_bytes(jsonl({"id": "a", "prompt": "Changed"}))
    call_command("import_prompts", str(path), project="cli")
    captured = capsys.readouterr()
    assert (
        captured.err
        == f"{path}:line 1: id 'a' already exists with a different conversation; kept the stored prompt\n"
    )
    assert Prompt.objects.filter(project=project).count() == 2


def test_import_prompts_command_refuses_a_bad_file_listing_every_line(tmp_path, capsys):
    ProjectFactory(slug="cli")
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(jsonl({"id": "a"}, {"id": "b", "prompt": "ok", "category": "nope"}))
    with pytest.raises(CommandError, match=r"2 bad line\(s\); nothing was imported"):
        call_command("import_prompts", str(path), project="cli")
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:line 1: missing text: give 'prompt' (a string) or 'messages' (a list)",
        f"{path}:line 2: unknown category 'nope'; allowed: list, summarize, explain, write, rewrite, brainstorm, classify, extract, code, qa, other",
    ]
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize(
    ("file_name", "options", "message"),
    [
        ("p.jsonl", {"project": "missing"}, "No project with slug 'missing'."),
        (
            "p.txt",
            {"project": "cli"},
            "Cannot tell the format of 'p.txt': use a .jsonl or .csv file, or name the format.",
        ),
        ("absent.jsonl", {"project": "cli"}, "Cannot read {dir}/absent.jsonl: No such file or directory"),
    ],
)
def test_import_prompts_command_errors(tmp_path, file_name, options, message):
    ProjectFactory(slug="cli")
    for name in ("p.jsonl", "p.txt"):
        (tmp_path / name).write_bytes(jsonl({"prompt": "x"}))
    with pytest.raises(CommandError) as caught:
        call_command("import_prompts", str(tmp_path / file_name), **options)
    assert str(caught.value) == message.format(dir=tmp_path)
    assert Prompt.objects.count() == 0


def test_import_prompts_command_takes_an_explicit_format(tmp_path):
    project = ProjectFactory(slug="cli")
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"prompt\nHello\n")
    call_command("import_prompts", str(path), project="cli", format="csv")
    assert stored(project) == [
        (
            "sha256:" + conversation_hash([{"role": "user", "content": "Hello"}])[:32],
            [{"role": "user", "content": "Hello"}],
            "other",
            {},
        )
    ]

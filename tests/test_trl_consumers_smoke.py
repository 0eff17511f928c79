"""TRL's trainers read hand-made files of each export format as they are, and train two steps on a CPU.

The files mirror what Rankwise exports (with every extra column), in JSON Lines, Parquet and a saved
`datasets` directory. No database: these tests use no `db` fixture. No network: a guard records every
outbound connection attempt, and the tests assert there were none.
"""

import gzip
import json
import math
import socket

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inference.tiny import build_tiny_checkpoint
from tests.trl_consumers import (
    STEPS,
    load_exported_dataset,
    train_dpo,
    train_kto,
    train_reward,
    train_sft,
)

SYSTEM = "You are a terse assistant. Answer in one line."

# (prompt, chosen, rejected): unicode, newlines, code, an empty-ish and a whitespace completion.
PAIRS = [
    (
        "Write a haiku about rain.",
        " Grey sky, soft patter —\nroofs hum a slow lullaby.\nPuddles hold the clouds.",
        " rain rain rain",
    ),
    ("Translate 'good morning' into Japanese.", " おはようございます (ohayō gozaimasu).", " Bonjour!"),
    ("What is 2 + 2?", " 4", " 22"),
    ("Name a prime number above 10.", " 11 is prime.", "."),
    ("Give me a Python one-liner that reverses a string s.", " `s[::-1]`", " ```\nreversed(s)\n```"),
    ("Describe the smell of coffee in three words.", " Roasted, warm, bittersweet ☕.", " \n\n"),
    ("Summarize: The meeting moved to Tuesday at 10:00.", " Meeting → Tuesday 10:00.", " Meeting cancelled."),
    ("Spell 'naïve' with its diaeresis.", " naïve", " naive"),
    ("Is the Earth flat? Answer yes or no.", " No.", " Yes, obviously 🌍!!"),
]
# A multi-turn conversation with a system message, for the conversational formats.
CONVERSATION = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "I'm learning Spanish. Give me one tip."},
    {"role": "assistant", "content": "Read a page of a Spanish novel every day."},
    {"role": "user", "content": "And one for pronunciation? ¿Cómo se dice «ñ»?"},
]


def extras(index: int) -> dict:
    """The optional columns of a pair row (`margin`, `ids`, `checkpoints`, `category`, `agreement`)."""
    return {
        "margin": float(index % 3 + 1),
        "comparison_id": 100 + index,
        "prompt_id": f"demo-{index:03d}",
        "chosen_response_id": 1000 + 2 * index,
        "rejected_response_id": 1001 + 2 * index,
        "chosen_checkpoint": "tiny-instruct@step-2",
        "rejected_checkpoint": "tiny-instruct@step-1",
        "category": ["write", "qa", "code"][index % 3],
        "agreement": [1.0, 0.75, 2 / 3][index % 3],
    }


def standard_prompt(text: str) -> str:
    return f"User: {text}\n\nAssistant:"


def preference_rows() -> list[dict]:
    return [
        {"prompt": standard_prompt(prompt), "chosen": chosen, "rejected": rejected, **extras(index)}
        for index, (prompt, chosen, rejected) in enumerate(PAIRS)
    ]


def preference_conversational_rows() -> list[dict]:
    rows = []
    for index, (prompt, chosen, rejected) in enumerate(PAIRS):
        messages = CONVERSATION if index == 0 else [{"role": "user", "content": prompt}]
        rows.append(
            {
                "prompt": messages,
                "chosen": [{"role": "assistant", "content": chosen.strip()}],
                "rejected": [{"role": "assistant", "content": rejected.strip()}],
                **extras(index),
            }
        )
    return rows


def unpaired_rows() -> list[dict]:
    rows = []
    for index, (prompt, chosen, rejected) in enumerate(PAIRS):
        for label, completion, response_offset in ((True, chosen, 0), (False, rejected, 1)):
            rows.append(
                {
                    "prompt": standard_prompt(prompt),
                    "completion": completion,
                    "label": label,
                    "margin": 1.0,
                    "comparison_id": 100 + index,
                    "prompt_id": f"demo-{index:03d}",
                    "response_id": 1000 + 2 * index + response_offset,
                    "checkpoint": "tiny-instruct@step-2",
                    "category": "write",
                    "agreement": 0.75,
                }
            )
    return rows


def sft_rows() -> list[dict]:
    rows = []
    for index, (prompt, chosen, _rejected) in enumerate(PAIRS):
        if index == 0:
            messages = [*CONVERSATION, {"role": "assistant", "content": "Say «ñ» like the 'ny' in canyon."}]
        else:
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": chosen.strip()},
            ]
        rows.append(
            {
                "messages": messages,
                "margin": 1.0,
                "comparison_id": 100 + index,
                "prompt_id": f"demo-{index:03d}",
                "response_id": 1000 + 2 * index,
                "checkpoint": "tiny-instruct@step-2",
                "category": "write",
                "agreement": 1.0,
            }
        )
    return rows


ROWS = {
    "preference": preference_rows,
    "preference-conversational": preference_conversational_rows,
    "unpaired": unpaired_rows,
    "sft": sft_rows,
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def write_parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path, compression="zstd")
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("trl-consumers") / "tiny-instruct", kind="instruct")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Each format as `{format: {"json": file, "parquet": file, "disk": directory}}`."""
    from datasets import Dataset, DatasetDict

    root = tmp_path_factory.mktemp("exports")
    files = {}
    for name, make_rows in ROWS.items():
        rows = make_rows()
        assert len(rows) >= 8
        disk = root / f"{name}-hf"
        DatasetDict(
            {"train": Dataset.from_list(rows[:-2]), "test": Dataset.from_list(rows[-2:])}
        ).save_to_disk(str(disk))
        files[name] = {
            "json": write_jsonl(root / f"{name}.jsonl", rows),
            "parquet": write_parquet(root / f"{name}.parquet", rows),
            "disk": disk,
        }
    return files


@pytest.fixture
def connections(monkeypatch):
    """Every outbound connection attempted during the test (refused), from any thread."""
    attempts = []
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"network access in a test: {address}")
        return real_connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        attempts.append(host)
        raise OSError(f"name resolution in a test: {host}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts


def assert_trained(run, columns):
    assert run.global_step == STEPS
    assert run.losses_finite, run.log_history  # one finite loss logged per step
    assert set(columns) <= set(run.columns)


CASES = [
    (train_reward, "preference"),
    (train_reward, "preference-conversational"),
    (train_dpo, "preference"),
    (train_dpo, "preference-conversational"),
    (train_kto, "unpaired"),
    (train_sft, "sft"),
]


@pytest.mark.parametrize("loader", ["json", "parquet"])
@pytest.mark.parametrize(
    ("train", "export_format"), CASES, ids=lambda value: getattr(value, "__name__", value)
)
def test_trainer_takes_the_export_as_it_is(
    checkpoint, exports, tmp_path, connections, train, export_format, loader
):
    source = exports[export_format][loader]
    run = train(source, checkpoint, tmp_path / "out", loader=loader)

    expected = ROWS[export_format]()
    assert_trained(run, expected[0].keys())
    assert run.rows == len(expected)
    assert run.prepared_rows >= len(expected)  # nothing filtered out (KTO may only add rows)
    assert connections == []


@pytest.mark.parametrize(
    ("train", "export_format"), CASES, ids=lambda value: getattr(value, "__name__", value)
)
def test_trainer_takes_a_saved_dataset_directory_with_a_test_split(
    checkpoint, exports, tmp_path, connections, train, export_format
):
    directory = exports[export_format]["disk"]
    before = sorted(path.name for path in directory.rglob("*"))

    run = train(directory, checkpoint, tmp_path / "out", loader="disk", evaluate=True)

    assert_trained(run, ROWS[export_format]()[0].keys())
    assert run.eval_metrics is not None
    assert math.isfinite(run.eval_metrics["eval_loss"])
    assert sorted(path.name for path in directory.rglob("*")) == before  # the export is left untouched
    assert connections == []


def test_reward_trainer_uses_the_margin_column(checkpoint, exports, tmp_path, connections):
    with_margin = exports["preference"]["json"]
    without_margin = write_jsonl(
        tmp_path / "no-margin.jsonl",
        [{key: value for key, value in row.items() if key != "margin"} for row in preference_rows()],
    )

    margin_run = train_reward(with_margin, checkpoint, tmp_path / "margin")
    plain_run = train_reward(without_margin, checkpoint, tmp_path / "plain")

    assert_trained(margin_run, ["margin"])
    assert_trained(plain_run, ["prompt", "chosen", "rejected"])
    # Same reward head, seed and first batch, so the same rewards (the logged "margin" is their mean
    # r_chosen - r_rejected); the loss is -logsigmoid(r_chosen - r_rejected - margin), and every margin
    # in the file is at least 1, so the first step's loss is higher with the column than without.
    assert margin_run.log_history[0]["margin"] == pytest.approx(plain_run.log_history[0]["margin"])
    assert margin_run.losses[0] > plain_run.losses[0] + 0.5
    assert connections == []


@pytest.mark.parametrize("label", [True, False])
def test_kto_trainer_takes_a_file_of_one_label_only(checkpoint, tmp_path, connections, label):
    one_label = write_jsonl(
        tmp_path / "one-label.jsonl", [row for row in unpaired_rows() if row["label"] is label]
    )

    run = train_kto(one_label, checkpoint, tmp_path / "out")

    assert_trained(run, ["label"])
    assert run.prepared_rows == len(PAIRS)
    assert connections == []


def test_load_exported_dataset_reads_each_loader_alike(exports, tmp_path):
    for export_format, files in exports.items():
        expected = ROWS[export_format]()
        gzipped = tmp_path / f"{export_format}.jsonl.gz"
        gzipped.write_bytes(gzip.compress(files["json"].read_bytes()))

        by_json = load_exported_dataset(files["json"], cache_dir=tmp_path / "json")
        by_gzip = load_exported_dataset(gzipped, cache_dir=tmp_path / "gzip")
        by_parquet = load_exported_dataset(files["parquet"], cache_dir=tmp_path / "parquet")
        by_disk = load_exported_dataset(files["disk"], cache_dir=tmp_path / f"disk-{export_format}")
        by_splits = load_exported_dataset(
            {"train": files["json"], "test": [files["json"]]}, "json", cache_dir=tmp_path / "splits"
        )

        assert by_json["train"].to_list() == expected
        assert by_gzip["train"].to_list() == expected
        assert by_parquet["train"].to_list() == expected
        assert by_disk["train"].to_list() + by_disk["test"].to_list() == expected
        assert by_splits["train"].to_list() == by_splits["test"].to_list() == expected

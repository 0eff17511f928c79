"""`manage.py make_tiny_checkpoint`: the files it writes, its refusals, and the tokenizer it trains."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from transformers import AutoTokenizer

from inference.tiny import CHAT_TEMPLATE
from tests.processes import manage


def call_command_output(*args: str) -> str:
    stdout = StringIO()
    call_command(*args, stdout=stdout)
    return stdout.getvalue()


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    outputs = {}
    for kind in ("base", "instruct"):
        outputs[kind] = call_command_output(
            "make_tiny_checkpoint", str(root / kind), "--kind", kind, "--seed", "1"
        )
    return root, outputs


@pytest.mark.parametrize("kind", ["base", "instruct"])
def test_writes_a_loadable_tiny_model_and_says_it_is_noise(tiny_checkpoints, kind):
    root, outputs = tiny_checkpoints
    path = root / kind

    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        file.name for file in path.iterdir()
    }
    config = json.loads((path / "config.json").read_text())
    assert config["rankwise_test_model"] is True
    assert config["rankwise_kind"] == kind
    assert outputs[kind] == (
        f"Wrote a tiny {kind} checkpoint to {path.resolve()}\n"
        "It is a tiny test model with random weights: its output is noise. Use it to try Rankwise, "
        "not to collect preference data.\n"
    )


def test_instruct_has_the_chat_template_and_base_has_none(tiny_checkpoints):
    root, _ = tiny_checkpoints
    instruct = AutoTokenizer.from_pretrained(root / "instruct", local_files_only=True)
    base = AutoTokenizer.from_pretrained(root / "base", local_files_only=True)

    assert instruct.chat_template == CHAT_TEMPLATE
    assert instruct.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    ) == ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert instruct.eos_token == "<|im_end|>"
    assert base.chat_template is None
    assert base.eos_token == "<|endoftext|>"


@pytest.mark.parametrize(
    "text", ["naïve 🦀 <script>alert(1)</script>", "Ωμέγα\ttab\n  两个空格", "ZZZ_qx@#$%^&*"]
)
def test_tokenizer_round_trips_text_outside_its_training_corpus(tiny_checkpoints, text):
    root, _ = tiny_checkpoints
    tokenizer = AutoTokenizer.from_pretrained(root / "instruct", local_files_only=True)

    ids = tokenizer.encode(text, add_special_tokens=False)

    assert tokenizer.decode(ids) == text
    assert max(ids) < len(tokenizer)


def test_refuses_a_non_empty_directory_and_leaves_it_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")

    with pytest.raises(CommandError) as raised:
        call_command("make_tiny_checkpoint", str(tmp_path))

    assert (
        str(raised.value) == f"{tmp_path.resolve()} is not empty; give a directory that is empty or absent."
    )
    assert [file.name for file in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_refuses_a_file(tmp_path):
    target = tmp_path / "model"
    target.write_text("")

    with pytest.raises(CommandError) as raised:
        call_command("make_tiny_checkpoint", str(target))

    assert str(raised.value) == f"{target.resolve()} is a file; give a directory that is empty or absent."


def test_refusal_exits_with_status_1_from_manage_py(tmp_path):
    (tmp_path / "config.json").write_text("{}")

    result = manage("make_tiny_checkpoint", str(tmp_path), "--kind", "base")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"CommandError: {tmp_path.resolve()} is not empty; give a directory that is empty or absent.\n"
    )
    assert [file.name for file in tmp_path.iterdir()] == ["config.json"]


def test_same_seed_writes_the_same_weights_and_another_seed_does_not(tiny_checkpoints, tmp_path):
    root, _ = tiny_checkpoints
    call_command(
        "make_tiny_checkpoint", str(tmp_path / "again"), "--kind", "base", "--seed", "1", stdout=None
    )
    call_command(
        "make_tiny_checkpoint", str(tmp_path / "other"), "--kind", "base", "--seed", "2", stdout=None
    )

    weights = (root / "base" / "model.safetensors").read_bytes()
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == weights
    assert (tmp_path / "other" / "model.safetensors").read_bytes() != weights

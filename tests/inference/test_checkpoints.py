"""Checkpoint resolution, safety and inspection, on tiny checkpoints built here and a real HF cache layout."""

import hashlib
import json
import os
import pathlib
import pickle
import shutil
import socket
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import huggingface_hub.constants
import pytest
import transformers
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from inference.backends.base import CheckpointError, CheckpointSpec
from inference.checkpoints import inspect_checkpoint, resolve_checkpoint
from inference.tiny import build_tiny_checkpoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PICKLE_REFUSAL = (
    "The {what} weights are pickle files ({names}). Unpickling can run arbitrary code, so Rankwise loads "
    "safetensors only and has not opened them. Convert the weights to safetensors "
    "(save_pretrained(..., safe_serialization=True)) from a trusted environment."
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny base and instruct checkpoints, built once; tests that change files work on copies."""
    root = tmp_path_factory.mktemp("tiny")
    return {kind: build_tiny_checkpoint(root / kind, kind=kind) for kind in ("base", "instruct")}


def local_spec(source, *, kind="instruct", **fields) -> CheckpointSpec:
    return CheckpointSpec(
        checkpoint_id=1, name="policy", kind=kind, source_type="local", source=str(source), **fields
    )


def hub_spec(source, *, revision="", kind="instruct", **fields) -> CheckpointSpec:
    return CheckpointSpec(
        checkpoint_id=1,
        name="policy",
        kind=kind,
        source_type="hub",
        source=source,
        revision=revision,
        **fields,
    )


class TouchOnUnpickle:
    """Unpickling this runs `Path.touch(marker)`: any code could run in its place."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def malicious_pickle(marker: pathlib.Path) -> bytes:
    return pickle.dumps(TouchOnUnpickle(marker))


def test_the_malicious_pickle_runs_code_when_unpickled(tmp_path):
    """The payload the refusal tests use is live: unpickled, it creates its marker."""
    marker = tmp_path / "unpickled"

    pickle.loads(malicious_pickle(marker))  # noqa: S301 (showing the payload works is the point)

    assert marker.exists()


@pytest.mark.parametrize("file_name", ["pytorch_model.bin", "model.pt", "model.pth", "model.ckpt"])
def test_pickle_weights_are_refused_before_they_are_unpickled(tiny, tmp_path, file_name):
    marker = tmp_path / "unpickled"
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    shutil.copy(tiny["instruct"] / "config.json", checkpoint)
    (checkpoint / file_name).write_bytes(malicious_pickle(marker))
    refusal = PICKLE_REFUSAL.format(what="checkpoint", names=file_name)

    with pytest.raises(CheckpointError) as resolved:
        resolve_checkpoint(local_spec(checkpoint))
    with pytest.raises(CheckpointError) as inspected:
        inspect_checkpoint(local_spec(checkpoint))

    assert str(resolved.value) == refusal
    assert str(inspected.value) == refusal
    assert not marker.exists()


def test_pickle_adapter_weights_are_refused_before_they_are_unpickled(tiny, tmp_path):
    marker = tmp_path / "unpickled"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (adapter / "adapter_model.bin").write_bytes(malicious_pickle(marker))

    with pytest.raises(CheckpointError) as inspected:
        inspect_checkpoint(local_spec(tiny["instruct"], adapter_source=str(adapter)))

    assert str(inspected.value) == PICKLE_REFUSAL.format(what="LoRA adapter", names="adapter_model.bin")
    assert not marker.exists()


def test_safetensors_beside_pickle_files_are_used_and_the_pickles_left_unopened(tiny, tmp_path):
    """A trainer's output directory often holds training_args.bin beside the safetensors weights."""
    marker = tmp_path / "unpickled"
    checkpoint = shutil.copytree(tiny["instruct"], tmp_path / "checkpoint")
    (checkpoint / "training_args.bin").write_bytes(malicious_pickle(marker))

    report = inspect_checkpoint(local_spec(checkpoint))

    assert report["weight_files"] == ["model.safetensors"]
    assert not marker.exists()


def test_report_of_the_tiny_model(tiny):
    checkpoint = tiny["instruct"]
    model = LlamaForCausalLM.from_pretrained(checkpoint)
    # parameters() yields the tied embedding and output head once, as the file stores them once.
    parameter_count = sum(parameter.numel() for parameter in model.parameters())

    report = inspect_checkpoint(local_spec(checkpoint))

    assert report == {
        "backend": "transformers",
        "kind": "instruct",
        "resolved_path": str(checkpoint.resolve()),
        "revision": "",
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "max_position_embeddings": 2048,
        "vocab_size": 512,
        "is_test_model": True,
        "tokenizer_class": "TokenizersBackend",
        "tokenizer_vocab_size": 512,
        "eos_token": "<|im_end|>",
        "has_chat_template": True,
        "weights_format": "safetensors",
        "weight_files": ["model.safetensors"],
        "weight_bytes": (checkpoint / "model.safetensors").stat().st_size,
        "parameter_count": parameter_count,
        "dtypes": ["float32"],
        "adapter": None,
        "transformers_version": transformers.__version__,
        "warnings": [],
    }
    assert json.loads(json.dumps(report)) == report


def test_instruct_checkpoint_without_chat_template_is_refused(tiny):
    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(tiny["base"], kind="instruct"))

    assert str(raised.value) == (
        "This instruction-tuned checkpoint has no chat template; register it as a base checkpoint or add a "
        "template (chat_template.jinja next to the tokenizer)."
    )


def test_base_checkpoint_without_chat_template_is_valid(tiny):
    report = inspect_checkpoint(local_spec(tiny["base"], kind="base"))

    assert report["has_chat_template"] is False
    assert report["eos_token"] == "<|endoftext|>"
    assert report["warnings"] == []


def test_chat_template_that_fails_to_render_is_refused(tiny, tmp_path):
    checkpoint = shutil.copytree(tiny["instruct"], tmp_path / "checkpoint")
    (checkpoint / "chat_template.jinja").write_text("{{ raise_exception('system message required') }}")

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(checkpoint))

    assert str(raised.value) == (
        "The checkpoint's chat template fails on a one-message conversation: system message required"
    )


@pytest.mark.parametrize(
    ("file_name", "what"), [("config.json", "model config"), ("tokenizer_config.json", "tokenizer config")]
)
def test_custom_code_is_refused(tiny, tmp_path, file_name, what):
    """Refused even though model_type llama is built into transformers, which would load it quietly."""
    checkpoint = shutil.copytree(tiny["instruct"], tmp_path / "checkpoint")
    config = json.loads((checkpoint / file_name).read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModelForCausalLM": "modeling_custom.Custom",
    }
    (checkpoint / file_name).write_text(json.dumps(config))

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(checkpoint))

    assert str(raised.value) == (
        f"The {what} in {file_name} asks for custom code shipped with the checkpoint (auto_map: AutoConfig, "
        f"AutoModelForCausalLM). Rankwise never runs remote code. If transformers implements this "
        f"architecture itself, remove auto_map from {file_name}; otherwise this checkpoint cannot be used."
    )


def test_model_type_without_a_causal_language_model_is_refused(tiny, tmp_path):
    checkpoint = shutil.copytree(tiny["instruct"], tmp_path / "checkpoint")
    (checkpoint / "config.json").write_text(
        json.dumps({"model_type": "t5", "architectures": ["T5EncoderModel"]})
    )

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(checkpoint))

    assert str(raised.value) == (
        f"transformers {transformers.__version__} has no causal language model for model_type 't5', so it "
        f"cannot generate text with this checkpoint."
    )


def test_missing_local_directory_is_refused(tmp_path):
    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(tmp_path / "absent"))

    assert (
        str(raised.value) == f"The checkpoint directory {tmp_path / 'absent'} does not exist on this worker."
    )


def test_directory_without_weights_is_refused(tiny, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    shutil.copy(tiny["instruct"] / "config.json", checkpoint)

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(checkpoint))

    assert (
        str(raised.value)
        == f"The checkpoint directory {checkpoint.resolve()} holds no weights (*.safetensors)."
    )


def safetensors_bytes(header: bytes, data: bytes = b"") -> bytes:
    return len(header).to_bytes(8, "little") + header + data


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"\x10\x00", "the file is shorter than its 8-byte header length", id="truncated"),
        pytest.param(
            (2**40).to_bytes(8, "little") + b"{}",
            "its header length (1099511627776 bytes) does not fit the file",
            id="header-too-long",
        ),
        pytest.param(
            safetensors_bytes(b"{not json"),
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            id="not-json",
        ),
        pytest.param(
            safetensors_bytes(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', b"\0" * 8),
            "the entry for tensor w is malformed or points past the end of the file",
            id="offsets-past-end",
        ),
    ],
)
def test_corrupt_safetensors_file_is_refused(tiny, tmp_path, content, reason):
    checkpoint = shutil.copytree(tiny["instruct"], tmp_path / "checkpoint")
    (checkpoint / "model.safetensors").write_bytes(content)

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(checkpoint))

    assert str(raised.value) == f"model.safetensors is not a readable safetensors file: {reason}"


def test_only_the_files_the_loader_reads_are_counted(tiny, tmp_path):
    """Mistral-style repos ship consolidated.safetensors beside the transformers weights."""
    checkpoint = shutil.copytree(tiny["instruct"], tmp_path / "checkpoint")
    shutil.copy(checkpoint / "model.safetensors", checkpoint / "consolidated.safetensors")

    report = inspect_checkpoint(local_spec(checkpoint))

    assert report["weight_files"] == ["model.safetensors"]
    assert report["parameter_count"] == inspect_checkpoint(local_spec(tiny["instruct"]))["parameter_count"]


def test_sharded_weights_are_counted_and_a_missing_shard_refused(tiny, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    model = LlamaForCausalLM.from_pretrained(tiny["instruct"])
    model.save_pretrained(checkpoint, max_shard_size="100KB")
    for file_name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny["instruct"] / file_name, checkpoint)
    shards = sorted(path.name for path in checkpoint.glob("model-*.safetensors"))
    assert len(shards) > 1

    report = inspect_checkpoint(local_spec(checkpoint))
    (checkpoint / shards[-1]).unlink()
    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(checkpoint))

    assert report["weight_files"] == shards
    assert report["parameter_count"] == sum(parameter.numel() for parameter in model.parameters())
    assert str(raised.value) == (
        f"The checkpoint shard index model.safetensors.index.json names files that are missing ({shards[-1]}): "
        f"the download or copy is incomplete."
    )


# --- Hub ids, from the local cache only ------------------------------------------------------------------


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, set as a worker sets it: the HF_HUB_CACHE environment variable.

    huggingface_hub reads HF_HUB_CACHE once, when huggingface_hub.constants is imported (transformers has
    imported it long before this test runs), and snapshot_download reads the constant at call time. A
    worker sets the variable before it starts, so the constant is right there; here the constant is
    patched as well, because setting the variable alone would leave this process on the real cache.
    """
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def put_in_hub_cache(
    cache: pathlib.Path, repo_id: str, files: pathlib.Path, *, commit: str = COMMIT
) -> pathlib.Path:
    """Lay `files` out as `huggingface-cli download` does: content-addressed blobs, a snapshot of
    relative symlinks named by the commit, and refs/main holding the commit. Returns the snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    for file in files.iterdir():
        content = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.mark.parametrize("revision", ["", "main", COMMIT])
def test_hub_id_is_resolved_from_the_local_cache(tiny, hub_cache, revision):
    snapshot = put_in_hub_cache(hub_cache, "org/tiny", tiny["instruct"])

    report = inspect_checkpoint(hub_spec("org/tiny", revision=revision))

    assert report["resolved_path"] == str(snapshot)
    assert report["revision"] == COMMIT
    assert report["is_test_model"] is True
    assert report["parameter_count"] == inspect_checkpoint(local_spec(tiny["instruct"]))["parameter_count"]


def test_hub_id_missing_from_the_cache_is_refused_with_the_download_command(hub_cache):
    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(hub_spec("org/absent"))

    assert str(raised.value) == (
        "The checkpoint org/absent is not in this worker's Hugging Face cache, and workers do not download at "
        "run time. Fetch it on the worker host first: huggingface-cli download org/absent"
    )


@pytest.mark.parametrize("revision", ["v2", "fedcba9876543210fedcba9876543210fedcba98"])
def test_hub_revision_missing_from_the_cache_is_refused_with_the_download_command(tiny, hub_cache, revision):
    put_in_hub_cache(hub_cache, "org/tiny", tiny["instruct"])

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(hub_spec("org/tiny", revision=revision))

    assert str(raised.value) == (
        f"The checkpoint org/tiny at revision {revision} is not in this worker's Hugging Face cache, and "
        f"workers do not download at run time. Fetch it on the worker host first: "
        f"huggingface-cli download org/tiny --revision {revision}"
    )


def test_invalid_hub_id_is_refused(hub_cache):
    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(hub_spec("org/two words"))

    assert str(raised.value).startswith("org/two words is not a valid hub id: ")


# --- LoRA adapters ---------------------------------------------------------------------------------------


def save_lora_adapter(base: LlamaForCausalLM, directory: pathlib.Path) -> int:
    """Save a LoRA adapter (r=4 on q_proj and v_proj) for `base`; returns its parameter count."""
    with warnings.catch_warnings():
        # PEFT 0.21 still calls an API transformers 5 deprecated; not this project's code.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(str(directory))
    return sum(parameter.numel() for name, parameter in peft_model.named_parameters() if "lora_" in name)


def test_lora_adapter_is_reported(tiny, tmp_path):
    adapter = tmp_path / "adapter"
    parameter_count = save_lora_adapter(LlamaForCausalLM.from_pretrained(tiny["instruct"]), adapter)

    report = inspect_checkpoint(local_spec(tiny["instruct"], adapter_source=str(adapter)))

    assert report["adapter"] == {
        "peft_type": "LORA",
        "task_type": None,
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": str(tiny["instruct"]),
        "resolved_path": str(adapter.resolve()),
        "revision": "",
        "weights_format": "safetensors",
        "weight_files": ["adapter_model.safetensors"],
        "weight_bytes": (adapter / "adapter_model.safetensors").stat().st_size,
        "parameter_count": parameter_count,
        "dtypes": ["float32"],
        "matched_base_weights": 8,  # 2 layers × (q_proj, v_proj) × (lora_A, lora_B)
    }
    assert report["warnings"] == []


def test_lora_adapter_is_resolved_from_the_hub_cache(tiny, tmp_path, hub_cache):
    adapter = tmp_path / "adapter"
    save_lora_adapter(LlamaForCausalLM.from_pretrained(tiny["instruct"]), adapter)
    snapshot = put_in_hub_cache(hub_cache, "org/tiny-lora", adapter)

    report = inspect_checkpoint(local_spec(tiny["instruct"], adapter_source="org/tiny-lora"))

    assert report["adapter"]["resolved_path"] == str(snapshot)
    assert report["adapter"]["revision"] == COMMIT


def test_lora_adapter_for_another_base_model_is_refused(tiny, tmp_path):
    adapter = tmp_path / "adapter"
    other_base = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=512,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    save_lora_adapter(other_base, adapter)

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(tiny["instruct"], adapter_source=str(adapter)))

    assert str(raised.value).startswith(
        f"The LoRA adapter {adapter} does not fit the base model {tiny['instruct']}: "
        "model.layers.0.self_attn.q_proj.weight is [64, 64], the adapter expects size 32; "
    )


def test_missing_adapter_directory_is_refused_as_a_directory(tiny, tmp_path):
    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(local_spec(tiny["instruct"], adapter_source=str(tmp_path / "absent")))

    assert (
        str(raised.value)
        == f"The LoRA adapter directory {tmp_path / 'absent'} does not exist on this worker."
    )


# --- OpenAI-compatible servers ---------------------------------------------------------------------------


@pytest.fixture
def models_server():
    """A real HTTP server on a free port that answers GET /v1/models as vLLM does and records each
    request's path and Authorization header."""
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append((self.path, self.headers.get("Authorization")))
            body = json.dumps(
                {
                    "object": "list",
                    "data": [{"id": "org/policy-7b", "object": "model", "max_model_len": 4096}],
                }
            ).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", requests
    server.shutdown()
    server.server_close()


def openai_spec(base_url: str, **fields) -> CheckpointSpec:
    return CheckpointSpec(
        checkpoint_id=1,
        name="policy",
        kind="instruct",
        source_type="hub",
        source="org/policy-7b",
        backend="openai",
        api_base_url=base_url,
        **fields,
    )


def test_openai_server_serving_the_model_is_reported(models_server, monkeypatch):
    base_url, requests = models_server
    monkeypatch.setenv("RANKWISE_TEST_API_KEY", "sk-test")

    report = inspect_checkpoint(openai_spec(base_url + "/", api_key_env="RANKWISE_TEST_API_KEY"))

    assert report == {
        "backend": "openai",
        "kind": "instruct",
        "api_base_url": base_url,
        "served_model_name": "org/policy-7b",
        "served_models": ["org/policy-7b"],
        "max_model_len": 4096,
        "is_test_model": False,
        "warnings": [],
    }
    assert requests == [("/v1/models", "Bearer sk-test")]


def test_openai_server_not_serving_the_model_is_refused(models_server):
    base_url, _ = models_server

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(openai_spec(base_url, served_model_name="org/other"))

    assert str(raised.value) == (
        f"The server at {base_url} does not serve 'org/other'; it lists: org/policy-7b. Set the served model "
        f"name to the name the server uses."
    )


def test_unreachable_openai_server_is_refused():
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(openai_spec(base_url))

    assert str(raised.value).startswith(
        f"The server at {base_url} cannot be reached from this worker (ConnectError: "
    )
    assert str(raised.value).endswith("). Check api_base_url and that the server is running.")


def test_openai_api_key_variable_missing_on_the_worker_is_refused(models_server, monkeypatch):
    base_url, requests = models_server
    monkeypatch.delenv("RANKWISE_TEST_API_KEY", raising=False)

    with pytest.raises(CheckpointError) as raised:
        inspect_checkpoint(openai_spec(base_url, api_key_env="RANKWISE_TEST_API_KEY"))

    assert str(raised.value) == (
        "The environment variable RANKWISE_TEST_API_KEY, which should hold the server's API key, is not set "
        "on this worker."
    )
    assert requests == []

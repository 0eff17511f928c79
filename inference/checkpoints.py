"""Where a checkpoint's files are, whether they are safe to load, and what they hold. No torch here.

A hub checkpoint is resolved from the local Hugging Face cache only: workers never download at run
time (pre-fetch with `huggingface-cli download` on the GPU host). Weights load from safetensors only:
pickle files (`.bin`, `.pt`, `.pth`, …) can run arbitrary code when unpickled, so a directory that
offers nothing else is refused before any file in it is opened. Code shipped with a checkpoint
(`auto_map`) is never run either.

`inspect_checkpoint` validates a checkpoint without loading its weights: it reads the configs, loads the
tokenizer and parses the safetensors headers, so a 70B checkpoint is checked on a worker in seconds.
transformers and httpx are imported inside the functions that need them; the web process imports this
module without torch or transformers installed.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from inference.backends.base import CheckpointError, CheckpointSpec

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

# The safetensors format caps its JSON header at 100 MB; a longer one is a corrupt or hostile file.
SAFETENSORS_MAX_HEADER_BYTES = 100_000_000
SAFETENSORS_DTYPE_NAMES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "U32": "uint32",
    "I32": "int32",
    "U64": "uint64",
    "I64": "int64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
ADAPTER_CONFIG_FIELDS = (
    "peft_type",
    "task_type",
    "r",
    "lora_alpha",
    "target_modules",
    "base_model_name_or_path",
)
# The chat template must render at least this; a template that fails on it fails on every prompt.
SAMPLE_CONVERSATION = [{"role": "user", "content": "Hello"}]
OPENAI_TIMEOUT_SECONDS = 5.0


def resolve_local_directory(
    *, source_type: str, source: str, revision: str = "", what: str = "checkpoint"
) -> Path:
    """The directory holding a model or adapter. Hub ids come from the local cache, never the network."""
    if source_type == "local":
        path = Path(source).expanduser()
        if not path.is_dir():
            raise CheckpointError(f"The {what} directory {source} does not exist on this worker.")
        return path.resolve()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError

    at = f" at revision {revision}" if revision else ""
    download = f"huggingface-cli download {source}" + (f" --revision {revision}" if revision else "")
    try:
        return Path(snapshot_download(source, revision=revision or None, local_files_only=True))
    except IncompleteSnapshotError:
        raise CheckpointError(
            f"The {what} {source}{at} is only partly in this worker's Hugging Face cache (an interrupted "
            f"download?). Complete it on the worker host: {download}"
        ) from None
    except (LocalEntryNotFoundError, FileNotFoundError):
        raise CheckpointError(
            f"The {what} {source}{at} is not in this worker's Hugging Face cache, and workers do not "
            f"download at run time. Fetch it on the worker host first: {download}"
        ) from None
    except HFValidationError as error:
        raise CheckpointError(f"{source} is not a valid hub id: {error}") from None


def is_local_path(source: str) -> bool:
    """Whether an adapter source names a directory rather than a hub id. A path that looks like one
    (absolute, `~`, `./`) is a directory even when missing, so the error says so instead of calling it a
    bad hub id."""
    path = Path(source).expanduser()
    return path.is_dir() or path.is_absolute() or source.startswith((".", "~"))


def weight_files(directory: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) at the top of a model or adapter directory."""
    safetensors = sorted(directory.glob("*.safetensors"))
    pickles = sorted(
        path for path in directory.iterdir() if path.suffix in PICKLE_SUFFIXES and path.is_file()
    )
    return safetensors, pickles


def ensure_safetensors_only(directory: Path, *, what: str = "checkpoint") -> list[Path]:
    """The safetensors files to load; refuses a directory whose weights are only pickle files."""
    safetensors, pickles = weight_files(directory)
    if safetensors:
        return safetensors
    if pickles:
        names = ", ".join(path.name for path in pickles[:5])
        raise CheckpointError(
            f"The {what} weights are pickle files ({names}). Unpickling can run arbitrary code, so Rankwise "
            f"loads safetensors only and has not opened them. Convert the weights to safetensors "
            f"(save_pretrained(..., safe_serialization=True)) from a trusted environment."
        )
    raise CheckpointError(f"The {what} directory {directory} holds no weights (*.safetensors).")


def resolve_checkpoint(spec: CheckpointSpec) -> tuple[Path, Path | None]:
    """(model directory, adapter directory or None): both hold safetensors weights only, and neither the
    model's config nor its tokenizer's asks for custom code. Reads JSON headers only, never weights."""
    model_directory = resolve_local_directory(
        source_type=spec.source_type, source=spec.source, revision=spec.revision
    )
    ensure_safetensors_only(model_directory)
    refuse_custom_code(model_directory, "config.json", what="model config")
    refuse_custom_code(model_directory, "tokenizer_config.json", what="tokenizer config")
    adapter_directory = None
    if spec.adapter_source:
        adapter_directory = resolve_local_directory(
            source_type="local" if is_local_path(spec.adapter_source) else "hub",
            source=spec.adapter_source,
            revision=spec.adapter_revision,
            what="LoRA adapter",
        )
        if not (adapter_directory / "adapter_config.json").is_file():
            raise CheckpointError(f"The LoRA adapter {spec.adapter_source} has no adapter_config.json.")
        ensure_safetensors_only(adapter_directory, what="LoRA adapter")
    return model_directory, adapter_directory


def read_json_file(path: Path, *, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"The {what} file {path.name} cannot be read as JSON: {error}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"The {what} file {path.name} is not a JSON object.")
    return data


def refuse_custom_code(directory: Path, file_name: str, *, what: str) -> None:
    """Refuse a config that asks for code shipped with the checkpoint (`auto_map`), before transformers
    reads it: with trust_remote_code off transformers would quietly use its own class instead, which may
    not be the model the checkpoint was trained as."""
    path = directory / file_name
    if not path.is_file():
        return
    auto_map = read_json_file(path, what=what).get("auto_map")
    if auto_map:
        names = ", ".join(sorted(auto_map)) if isinstance(auto_map, dict) else str(auto_map)
        raise CheckpointError(
            f"The {what} in {file_name} asks for custom code shipped with the checkpoint (auto_map: {names}). "
            f"Rankwise never runs remote code. If transformers implements this architecture itself, remove "
            f"auto_map from {file_name}; otherwise this checkpoint cannot be used."
        )


def safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """The tensor table of a safetensors file (name → dtype, shape, data_offsets), parsed from its header
    without torch: 8 bytes of little-endian header length, then that many bytes of JSON."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ValueError("the file is shorter than its 8-byte header length")
            (header_length,) = struct.unpack("<Q", prefix)
            if header_length > SAFETENSORS_MAX_HEADER_BYTES or 8 + header_length > size:
                raise ValueError(f"its header length ({header_length} bytes) does not fit the file")
            header = json.loads(handle.read(header_length))
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
        header.pop("__metadata__", None)
        data_bytes = size - 8 - header_length
        for name, entry in header.items():
            shape, offsets = entry.get("shape"), entry.get("data_offsets")
            if not (
                isinstance(entry.get("dtype"), str)
                and isinstance(shape, list)
                and all(isinstance(dimension, int) and dimension >= 0 for dimension in shape)
                and isinstance(offsets, list)
                and len(offsets) == 2
                and all(isinstance(offset, int) for offset in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_bytes
            ):
                raise ValueError(
                    f"the entry for tensor {name} is malformed or points past the end of the file"
                )
    except (OSError, ValueError, AttributeError) as error:
        # json's decode errors and UnicodeDecodeError are ValueErrors; AttributeError: an entry not an object.
        raise CheckpointError(f"{path.name} is not a readable safetensors file: {error}") from None
    return header


def loaded_weight_files(
    directory: Path, safetensors: list[Path], *, single_name: str, index_name: str | None, what: str
) -> list[Path]:
    """The safetensors files a loader reads: the shards the index names, else the single standard file,
    else every safetensors file. (A directory may also hold other formats, e.g. Mistral's
    consolidated.safetensors beside the transformers shards; counting both would double the parameters.)"""
    index = directory / index_name if index_name else None
    if index is not None and index.is_file():
        weight_map = read_json_file(index, what=f"{what} shard index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"The {what} shard index {index.name} has no weight_map.")
        shards = [directory / name for name in sorted(set(weight_map.values()))]
        missing = [shard.name for shard in shards if not shard.is_file()]
        if missing:
            raise CheckpointError(
                f"The {what} shard index {index.name} names files that are missing ({', '.join(missing[:5])}): "
                f"the download or copy is incomplete."
            )
        return shards
    single = directory / single_name
    return [single] if single in safetensors else safetensors


def weights_report(directory: Path, files: list[Path]) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """(report fields, tensor name → shape) for the given safetensors files. `parameter_count` counts the
    stored tensor elements: packed quantised weights count as stored, tied weights once."""
    shapes: dict[str, list[int]] = {}
    dtypes: set[str] = set()
    parameter_count = 0
    for file in files:
        for name, entry in safetensors_header(file).items():
            count = 1
            for dimension in entry["shape"]:
                count *= dimension
            parameter_count += count
            dtypes.add(SAFETENSORS_DTYPE_NAMES.get(entry["dtype"], entry["dtype"]))
            shapes[name] = entry["shape"]
    fields = {
        "weights_format": "safetensors",
        "weight_files": [str(file.relative_to(directory)) for file in files],
        "weight_bytes": sum(file.stat().st_size for file in files),
        "parameter_count": parameter_count,
        "dtypes": sorted(dtypes),
    }
    return fields, shapes


def adapter_mismatches(
    adapter_shapes: dict[str, list[int]], base_shapes: dict[str, list[int]]
) -> tuple[int, list[str]]:
    """(LoRA weights matched to a base weight, descriptions of those whose size the base cannot take).

    lora_A is [r, in_features] and lora_B [out_features, r]; the base weight is [out, in] for a Linear and
    [in, out] for GPT-2's Conv1D, so a size is accepted on either axis: an adapter trained on another base
    model (another hidden size) still fails on both."""
    matched, mismatches = 0, []
    for name, shape in adapter_shapes.items():
        for marker, axis in ((".lora_A.weight", 1), (".lora_B.weight", 0)):
            if not name.endswith(marker) or len(shape) != 2:
                continue
            base_name = name.removeprefix("base_model.model.").removesuffix(marker) + ".weight"
            base_shape = base_shapes.get(base_name)
            if base_shape is None:
                continue
            matched += 1
            if shape[axis] not in base_shape:
                mismatches.append(f"{base_name} is {base_shape}, the adapter expects size {shape[axis]}")
    return matched, mismatches


def inspect_adapter(
    spec: CheckpointSpec, directory: Path, base_shapes: dict[str, list[int]]
) -> dict[str, Any]:
    adapter_config = read_json_file(directory / "adapter_config.json", what="LoRA adapter config")
    safetensors, _ = weight_files(directory)
    files = loaded_weight_files(
        directory, safetensors, single_name="adapter_model.safetensors", index_name=None, what="LoRA adapter"
    )
    weights, shapes = weights_report(directory, files)
    matched, mismatches = adapter_mismatches(shapes, base_shapes)
    if mismatches:
        raise CheckpointError(
            f"The LoRA adapter {spec.adapter_source} does not fit the base model {spec.source}: "
            f"{'; '.join(mismatches[:3])}. It was trained on another base model "
            f"(its adapter_config.json names {adapter_config.get('base_model_name_or_path')!r})."
        )
    target_modules = adapter_config.get("target_modules")
    report: dict[str, Any] = {field: adapter_config.get(field) for field in ADAPTER_CONFIG_FIELDS}
    report["target_modules"] = sorted(target_modules) if isinstance(target_modules, list) else target_modules
    report["resolved_path"] = str(directory)
    report["revision"] = "" if is_local_path(spec.adapter_source) else directory.name
    report.update(weights)
    report["matched_base_weights"] = matched
    return report


def inspect_checkpoint(spec: CheckpointSpec) -> dict[str, Any]:
    """A JSON-serialisable report of what the checkpoint holds, for the admin and the worker.

    Raises CheckpointError, with a message for the admin, for anything that makes the checkpoint unusable:
    missing files, pickle weights, custom code, a config or tokenizer transformers cannot read, an
    instruction-tuned checkpoint without a working chat template, an adapter for another base model, or
    (OpenAI-compatible backend) a server that is unreachable or does not serve the model. Problems that
    do not stop generation are listed under `warnings`. Never loads weights and never downloads.
    """
    if spec.backend == "openai":
        return inspect_openai_server(spec)

    import transformers
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_directory, adapter_directory = resolve_checkpoint(spec)
    versioned = f"transformers {transformers.__version__}"
    try:
        config = AutoConfig.from_pretrained(model_directory, local_files_only=True, trust_remote_code=False)
    except Exception as error:  # whatever transformers raises, the checkpoint is unusable for this reason
        raise CheckpointError(f"{versioned} cannot read the checkpoint's config.json: {error}") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CheckpointError(
            f"{versioned} has no causal language model for model_type {config.model_type!r}, so it cannot "
            f"generate text with this checkpoint."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model_directory, local_files_only=True, trust_remote_code=False
        )
    except Exception as error:
        raise CheckpointError(f"{versioned} cannot load the checkpoint's tokenizer: {error}") from None

    warnings: list[str] = []
    has_chat_template = bool(getattr(tokenizer, "chat_template", None))
    if spec.kind == "instruct":
        if not has_chat_template:
            raise CheckpointError(
                "This instruction-tuned checkpoint has no chat template; register it as a base checkpoint "
                "or add a template (chat_template.jinja next to the tokenizer)."
            )
        try:
            tokenizer.apply_chat_template(SAMPLE_CONVERSATION, tokenize=False, add_generation_prompt=True)
        except Exception as error:
            raise CheckpointError(
                f"The checkpoint's chat template fails on a one-message conversation: {error}"
            ) from None
    if tokenizer.eos_token is None:
        warnings.append(
            "The tokenizer has no end-of-sequence token: every response runs to the length limit."
        )

    text_config = config.get_text_config()
    vocab_size = getattr(text_config, "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        warnings.append(
            f"The tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab_size}: "
            f"a token id of {vocab_size} or more would fail."
        )

    safetensors, _ = weight_files(model_directory)
    files = loaded_weight_files(
        model_directory,
        safetensors,
        single_name="model.safetensors",
        index_name="model.safetensors.index.json",
        what="checkpoint",
    )
    weights, base_shapes = weights_report(model_directory, files)
    adapter = None
    if adapter_directory is not None:
        adapter = inspect_adapter(spec, adapter_directory, base_shapes)
        if adapter["matched_base_weights"] == 0:
            warnings.append(
                "None of the adapter's LoRA weights names a weight of the base model; check that the "
                "adapter was trained on this base model."
            )

    return {
        "backend": spec.backend,
        "kind": spec.kind,
        "resolved_path": str(model_directory),
        # A hub snapshot folder is named by its commit hash: the exact revision that was validated.
        "revision": model_directory.name if spec.source_type == "hub" else "",
        "model_type": config.model_type,
        "architectures": list(config.architectures or []),
        "max_position_embeddings": getattr(text_config, "max_position_embeddings", None),
        "vocab_size": vocab_size,
        "is_test_model": bool(getattr(config, "rankwise_test_model", False)),
        "tokenizer_class": type(tokenizer).__name__,
        "tokenizer_vocab_size": len(tokenizer),
        "eos_token": tokenizer.eos_token,
        "has_chat_template": has_chat_template,
        **weights,
        "adapter": adapter,
        "transformers_version": transformers.__version__,
        "warnings": warnings,
    }


def inspect_openai_server(spec: CheckpointSpec) -> dict[str, Any]:
    """Check that the OpenAI-compatible server answers and serves the model: GET {api_base_url}/models."""
    import httpx

    base_url = spec.api_base_url.rstrip("/")
    if not base_url:
        raise CheckpointError("An OpenAI-compatible checkpoint needs the server's base URL (api_base_url).")
    served_model_name = spec.served_model_name or spec.source
    headers = {}
    if spec.api_key_env:
        api_key = os.environ.get(spec.api_key_env)
        if not api_key:
            raise CheckpointError(
                f"The environment variable {spec.api_key_env}, which should hold the server's API key, is "
                f"not set on this worker."
            )
        headers["Authorization"] = f"Bearer {api_key}"
    url = f"{base_url}/models"
    try:
        response = httpx.get(url, headers=headers, timeout=OPENAI_TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        raise CheckpointError(
            f"The server at {base_url} cannot be reached from this worker ({type(error).__name__}: {error}). "
            f"Check api_base_url and that the server is running."
        ) from None
    if response.status_code in (401, 403):
        raise CheckpointError(
            f"The server at {base_url} refused the request (HTTP {response.status_code}): check the API key"
            + (f" in {spec.api_key_env}." if spec.api_key_env else "; none is configured (api_key_env).")
        )
    if response.status_code != 200:
        raise CheckpointError(f"GET {url} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        models = {entry["id"]: entry for entry in response.json()["data"]}
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(
            f"GET {url} did not answer an OpenAI model list. Is {base_url} an OpenAI-compatible endpoint "
            f"(usually ending in /v1)?"
        ) from None
    if served_model_name not in models:
        listed = ", ".join(sorted(models)[:10]) or "nothing"
        raise CheckpointError(
            f"The server at {base_url} does not serve {served_model_name!r}; it lists: {listed}. "
            f"Set the served model name to the name the server uses."
        )
    return {
        "backend": "openai",
        "kind": spec.kind,
        "api_base_url": base_url,
        "served_model_name": served_model_name,
        "served_models": sorted(models),
        # vLLM reports its context length here; other servers may not.
        "max_model_len": models[served_model_name].get("max_model_len"),
        "is_test_model": False,
        "warnings": [],
    }

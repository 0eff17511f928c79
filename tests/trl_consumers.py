"""The real consumers of Rankwise's exports: TRL's trainers, run for two optimizer steps on a CPU.

An export is only useful if a trainer reads it as it is, so these helpers do what a user would: load the
files with `datasets.load_dataset("json" | "parquet", data_files=...)` or `datasets.load_from_disk(...)`,
hand the train split to the stock trainer with its default column handling (`remove_unused_columns` left
at its default, nothing renamed or dropped here), and train for exactly two steps. A format problem
surfaces as the trainer's own exception. Every row is tokenized; `prepared_rows` says how many the
trainer kept.

    run = train_dpo(export_dir / "train.jsonl", checkpoint, tmp_path / "dpo")
    assert run.global_step == 2 and run.losses_finite

The model is the project's tiny checkpoint (`inference.tiny.build_tiny_checkpoint`, kind "instruct" for
the conversational formats), loaded from its directory. Nothing reaches the network (see `offline_hub`).
On a 2-core CPU a run on short rows takes 0.3 to 1 s (a few seconds when the machine is busy), after
about 5 s of imports once per process; rows of a few thousand tokens take a few seconds more.

TRL 1.16's requirements, as measured: KTO's default loss needs a batch of at least two, but not both labels
in it; every trainer trains on a single row (an epoch then lasts one step); RewardTrainer reads `margin`
and the other trainers ignore every extra column.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Loader = Literal["json", "parquet", "disk"]
Source = str | Path | Sequence[str | Path] | Mapping[str, str | Path | Sequence[str | Path]]

STEPS = 2
SEED = 0


@dataclass(frozen=True)
class TrainingRun:
    """What a two-step run did: enough for a test to assert the export was consumed."""

    trainer: str
    global_step: int
    losses: list[float]  # the training loss logged at each step
    rows: int  # rows of the loaded train split
    prepared_rows: int  # rows the trainer kept after its preparation (tokenizing, unpairing, length filters)
    columns: list[str]  # columns of the loaded train split, as the file gave them
    seconds: float  # training (and evaluation) only: not loading, tokenizing or building the trainer
    log_history: list[dict[str, Any]] = field(repr=False)
    eval_metrics: dict[str, float] | None = None

    @property
    def losses_finite(self) -> bool:
        return len(self.losses) == self.global_step and all(math.isfinite(loss) for loss in self.losses)


def infer_loader(source: Source) -> Loader:
    """The loader a user would pick: "disk" for a directory, else by the file's extension."""
    first: Any = next(iter(source.values())) if isinstance(source, Mapping) else source
    if not isinstance(first, str | Path):
        first = next(iter(first))
    path = Path(first)
    if path.is_dir():
        return "disk"
    if path.name.endswith((".parquet", ".pq")):
        return "parquet"
    if path.name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        return "json"
    raise ValueError(f"Cannot tell how to load {path}: pass loader='json', 'parquet' or 'disk'.")


def load_exported_dataset(
    source: Source, loader: Loader | None = None, *, cache_dir: Path | None = None
) -> Any:
    """Load an export as a user would; returns a `datasets.DatasetDict` (splits train and maybe test).

    `source` is what `load_dataset(loader, data_files=...)` takes (a path, a list of paths, or a mapping
    of split name to paths; a bare path or list becomes the train split) or, for `loader="disk"`, the
    directory written by `DatasetDict.save_to_disk` (a `Dataset.save_to_disk` one becomes the train split).

    `cache_dir` keeps the Arrow files `datasets` writes, and the trainers' `map` caches, out of the
    user's `~/.cache/huggingface/datasets`. With it, a saved directory is loaded from a copy under
    `cache_dir`: `Dataset.map` writes its cache files next to a dataset's Arrow files, which after
    `load_from_disk` means inside the export itself.
    """
    import datasets

    loader = loader or infer_loader(source)
    with offline_hub():
        if loader == "disk":
            if not isinstance(source, str | Path):
                raise TypeError("loader='disk' takes one directory")
            directory = Path(source)
            if cache_dir is not None:
                directory = Path(shutil.copytree(directory, Path(cache_dir) / "saved-export"))
            loaded = datasets.load_from_disk(str(directory))
            if isinstance(loaded, datasets.Dataset):
                loaded = datasets.DatasetDict({"train": loaded})
            return loaded
        if loader not in ("json", "parquet"):
            raise ValueError(f"Unknown loader {loader!r}: 'json', 'parquet' or 'disk'.")
        if isinstance(source, Mapping):
            data_files: Any = {split: _as_str(paths) for split, paths in source.items()}
        else:
            data_files = _as_str(source)
        return datasets.load_dataset(
            loader, data_files=data_files, cache_dir=None if cache_dir is None else str(cache_dir)
        )


def train_reward(
    source: Source,
    checkpoint: Path,
    output_dir: Path,
    *,
    loader: Loader | None = None,
    evaluate: bool = False,
    **config: Any,
) -> TrainingRun:
    """RewardTrainer on `preference` or `preference-conversational` rows.

    The model is `AutoModelForSequenceClassification` with one label, its reward head freshly (and
    deterministically) initialised, and the tokenizer's pad token set on its config. A `margin` column
    goes into the loss as it is: -logsigmoid(r_chosen - r_rejected - margin).
    """
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    def model(tokenizer: Any) -> Any:
        return AutoModelForSequenceClassification.from_pretrained(
            checkpoint, num_labels=1, pad_token_id=tokenizer.pad_token_id, dtype="float32"
        )

    return _train(
        RewardTrainer, RewardConfig, model, source, checkpoint, output_dir, loader, evaluate, config
    )


def train_dpo(
    source: Source,
    checkpoint: Path,
    output_dir: Path,
    *,
    loader: Loader | None = None,
    evaluate: bool = False,
    **config: Any,
) -> TrainingRun:
    """DPOTrainer on `preference` or `preference-conversational` rows.

    TRL 1.16 has no reference-free mode: given no `ref_model`, the trainer loads a frozen copy of the
    policy from the checkpoint's directory (`config._name_or_path`), which for the tiny model is free.
    """
    from trl import DPOConfig, DPOTrainer

    return _train(
        DPOTrainer,
        DPOConfig,
        _causal_lm(checkpoint),
        source,
        checkpoint,
        output_dir,
        loader,
        evaluate,
        config,
    )


def train_kto(
    source: Source,
    checkpoint: Path,
    output_dir: Path,
    *,
    loader: Loader | None = None,
    evaluate: bool = False,
    **config: Any,
) -> TrainingRun:
    """KTOTrainer on `unpaired` rows (pair rows work too: the trainer unpairs them, two rows per pair).

    The default `kto` loss estimates its KL term from the other completions of the batch and refuses
    `per_device_train_batch_size=1`; the batch of two used here needs no particular mix of labels.
    """
    from trl import KTOConfig, KTOTrainer

    return _train(
        KTOTrainer,
        KTOConfig,
        _causal_lm(checkpoint),
        source,
        checkpoint,
        output_dir,
        loader,
        evaluate,
        config,
    )


def train_sft(
    source: Source,
    checkpoint: Path,
    output_dir: Path,
    *,
    loader: Loader | None = None,
    evaluate: bool = False,
    **config: Any,
) -> TrainingRun:
    """SFTTrainer on `sft` rows: `messages` rendered with the checkpoint's chat template, loss on every token."""
    from trl import SFTConfig, SFTTrainer

    return _train(
        SFTTrainer,
        SFTConfig,
        _causal_lm(checkpoint),
        source,
        checkpoint,
        output_dir,
        loader,
        evaluate,
        config,
    )


def length_reward(completions: Sequence[Any], **_: Any) -> list[float]:
    """A trivial reward for online methods: the completion's length in characters (conversational
    completions are lists of messages; their contents count)."""
    return [
        float(len(completion if isinstance(completion, str) else "".join(m["content"] for m in completion)))
        for completion in completions
    ]


def train_grpo(
    source: Source,
    checkpoint: Path,
    output_dir: Path,
    *,
    loader: Loader | None = None,
    **config: Any,
) -> TrainingRun:
    """GRPOTrainer on `prompt-only` or `prompt-only-conversational` rows, rewarded by `length_reward`.

    Each step generates `num_generations` (2) completions of at most 8 tokens per prompt with the policy
    itself (transformers' `generate`, no vLLM) and takes one optimizer step. A step's loss is 0 by
    construction on the first pass over fresh generations (the advantages are centred per prompt); the
    gradient is not, which `grad_norm` in the log shows.
    """
    from trl import GRPOConfig, GRPOTrainer

    def grpo_config(**arguments: Any) -> Any:
        arguments.pop("max_length")  # GRPO bounds the prompt and the completion apart
        return GRPOConfig(**{"num_generations": 2, "max_completion_length": 8, **arguments})

    return _train(
        GRPOTrainer,
        grpo_config,
        _causal_lm(checkpoint),
        source,
        checkpoint,
        output_dir,
        loader,
        False,
        config,
        extra={"reward_funcs": [length_reward]},
    )


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """Hugging Face Hub offline mode for the duration, whatever the environment said at import.

    `HF_HUB_OFFLINE` is read once, when huggingface_hub and datasets are imported, and the suite may
    import them long before a test runs. Without it two things reach out even for local files:
    `datasets.load_dataset("json" | "parquet")` sends a download-count HEAD request to S3 (in the calling
    thread, 3 s timeout), and every TRL trainer's `__init__` queues a usage ping to huggingface.co
    (`_BaseTrainer._send_telemetry`, skipped only when `CI` is set). Offline mode stops both.
    """
    import datasets.config
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = constants.HF_HUB_DISABLE_TELEMETRY = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY, datasets.config.HF_HUB_OFFLINE = saved


# --- internals ---------------------------------------------------------------------------------------


def _train(
    trainer_class: Any,
    config_class: Any,
    model: Callable[[Any], Any],
    source: Source,
    checkpoint: Path,
    output_dir: Path,
    loader: Loader | None,
    evaluate: bool,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> TrainingRun:
    from transformers import AutoTokenizer, set_seed

    output_dir = Path(output_dir)
    splits = load_exported_dataset(source, loader, cache_dir=output_dir / "datasets-cache")
    eval_dataset = None
    if evaluate:
        if "test" not in splits:
            raise ValueError(f"evaluate=True, but the export has no test split (splits: {sorted(splits)})")
        eval_dataset = splits["test"]
    with offline_hub(), _one_thread():
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        set_seed(SEED)  # a reward head is initialised at load
        trainer = trainer_class(
            model=model(tokenizer),
            args=config_class(**_arguments(output_dir / "trainer", config)),
            train_dataset=splits["train"],
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            **(extra or {}),
        )
        started = time.perf_counter()
        trainer.train()
        eval_metrics = trainer.evaluate() if evaluate else None
        seconds = time.perf_counter() - started
    history = list(trainer.state.log_history)
    return TrainingRun(
        trainer=trainer_class.__name__,
        global_step=trainer.state.global_step,
        losses=[entry["loss"] for entry in history if "loss" in entry],
        rows=splits["train"].num_rows,
        prepared_rows=len(trainer.train_dataset),
        columns=list(splits["train"].column_names),
        seconds=seconds,
        log_history=history,
        eval_metrics=eval_metrics,
    )


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # The model is too small to gain from intra-op threads, and on a busy 2-core machine their spinning
    # made the four trainers 4 to 5 times slower (11-20 s against 2.6 s per round, measured).
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _causal_lm(checkpoint: Path) -> Callable[[Any], Any]:
    def load(_tokenizer: Any) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(checkpoint, dtype="float32")

    return load


def _arguments(output_dir: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "output_dir": str(output_dir),
        "max_steps": STEPS,
        # No length limit: TRL's default (1024) makes RewardTrainer drop every pair with a longer side, DPO and
        # KTO drop rows whose prompt alone reaches it, and a split left empty fails with "num_samples=0".
        # Two steps only see the first few rows, so full lengths cost little; pass max_length to mimic TRL.
        "max_length": None,
        "per_device_train_batch_size": 2,  # the least KTO's default loss takes
        "per_device_eval_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "logging_strategy": "steps",
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "bf16": False,  # TRL's configs turn bf16 on unless fp16 is set
        "fp16": False,
        # TRL turns checkpointing on by default: slower, and pointless here. This is the new name of
        # `gradient_checkpointing`; setting it also avoids the FutureWarning TRL's default triggers.
        "activation_checkpointing": False,
        "seed": SEED,
        "data_seed": SEED,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    arguments.update(overrides)
    return arguments


def _as_str(paths: str | Path | Sequence[str | Path]) -> str | list[str]:
    if isinstance(paths, str | Path):
        return str(paths)
    return [str(path) for path in paths]

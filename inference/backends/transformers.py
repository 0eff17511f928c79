"""Generation with Hugging Face `transformers`, in the worker process that owns the GPU.

The only module that imports torch and transformers at import time; `inference.backends.backend_for`
imports it lazily, so the web side never does.

Sampling is reproducible per request: a response depends on its prompt, its seed and the sampling
parameters, not on which other requests shared its batch or how much left padding that batch needed.
`generate` runs greedily (`do_sample=False`) and `SeededGumbelSampler`, the last logits processor, turns
the argmax into a draw from softmax(logits / T) with Gumbel noise computed from (seed, step, token id)
by a counter-based hash, so no global RNG state is involved (see `gumbel_noise`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import transformers
from jinja2 import TemplateError
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from feedback.prompting import completion_prompt_render
from feedback.sampling import SamplingParameters
from inference.backends.base import (
    CheckpointError,
    CheckpointSpec,
    FinishReason,
    GeneratedText,
    GenerationRequest,
)
from inference.checkpoints import resolve_checkpoint

EXPLICIT_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

# splitmix64 (Steele, Lea & Flood 2014): golden-ratio increment and the two finaliser multipliers, as
# signed int64 because torch has no uint64 arithmetic. int64 multiplication wraps modulo 2**64 on CPU
# and CUDA, which is exactly the unsigned product's bit pattern.
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15 - 2**64
_MIX_MULTIPLIER_1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX_MULTIPLIER_2 = 0x94D049BB133111EB - 2**64
_UNIFORM_BITS = 24


def _as_int64(value: int) -> int:
    """Any Python int as the signed int64 with the same low 64 bits (seeds may exceed 2**63)."""
    value &= 2**64 - 1
    return value - 2**64 if value >= 2**63 else value


def _shift_right_logical(values: torch.Tensor, bits: int) -> torch.Tensor:
    # torch's >> on int64 is arithmetic (copies the sign bit); mask it back to a logical shift.
    return (values >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(values: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser, elementwise on int64: a bijection of 64-bit words that mixes well."""
    values = values ^ _shift_right_logical(values, 30)
    values = values * _MIX_MULTIPLIER_1
    values = values ^ _shift_right_logical(values, 27)
    values = values * _MIX_MULTIPLIER_2
    return values ^ _shift_right_logical(values, 31)


def gumbel_noise(seeds: torch.Tensor, step: int, vocab_size: int) -> torch.Tensor:
    """Standard Gumbel noise of shape (rows, vocab_size), float32, a pure function of (seed, step, token id).

    A counter-based generator (as in Philox or JAX's threefry): each value hashes its own coordinates, so
    row i's noise at step t is the same whatever else is in the batch, whatever device runs it, and
    however many draws came before. Coordinates are chained through splitmix64 so that (seed, step)
    pairs and token ids do not alias. The top 24 bits of the hash, centred in their bucket, give a
    uniform u in the open interval (0, 1) (24 bits: what a float32 mantissa holds, so no two buckets
    collapse); -log(-log(u)) is then Gumbel(0, 1). Computed in float64 so that u never rounds to 0 or 1.
    """
    row_keys = splitmix64(splitmix64(seeds + _GOLDEN_GAMMA) + _as_int64(step * _GOLDEN_GAMMA))
    token_ids = torch.arange(vocab_size, device=seeds.device, dtype=torch.int64)
    hashes = splitmix64(row_keys[:, None] + (token_ids * _GOLDEN_GAMMA)[None, :])
    buckets = _shift_right_logical(hashes, 64 - _UNIFORM_BITS)
    uniform = (buckets.to(torch.float64) + 0.5) / (1 << _UNIFORM_BITS)
    return (-torch.log(-torch.log(uniform))).to(torch.float32)


class SeededGumbelSampler(LogitsProcessor):
    """Turns greedy decoding into seeded sampling: temperature, top-k, top-p, then Gumbel noise.

    The Gumbel-max trick: if g_v are i.i.d. Gumbel(0, 1), then argmax_v (z_v + g_v) is distributed as
    softmax(z). `generate(do_sample=False)` takes the argmax of what the last processor returns, so
    returning z + g, with z the temperature-scaled and top-k/top-p-filtered logits, samples from the
    same distribution as `do_sample=True`, but with noise we control per row instead of one
    `torch.multinomial` call on the global RNG (whose draws depend on the batch size and on every
    earlier call).

    Order inside `generate`: the processors it builds from the generation config (the repetition penalty
    among them) come first, and custom `logits_processor` entries are appended after them
    (`GenerationMixin._merge_criteria_processor_list`); with `do_sample=False` it adds no warpers of its
    own. So the penalty sees raw logits, as in ordinary sampling, and this processor sees penalised ones.

    Filtered tokens are -inf and stay -inf after adding finite noise, so they are never chosen. The step
    is counted from the end of the (padded) prompt: the same for every row and independent of padding,
    so a row's noise does not move when a longer prompt joins its batch.
    """

    def __init__(
        self, *, seeds: Sequence[int], prompt_length: int, sampling: SamplingParameters, device: torch.device
    ) -> None:
        if sampling.is_greedy:
            raise ValueError("Temperature 0 is greedy decoding: generate without this processor.")
        self.seeds = torch.tensor([_as_int64(seed) for seed in seeds], dtype=torch.int64, device=device)
        self.prompt_length = prompt_length
        self.warpers: list[LogitsProcessor] = []
        if sampling.temperature != 1:
            self.warpers.append(TemperatureLogitsWarper(float(sampling.temperature)))
        if sampling.top_k:
            self.warpers.append(TopKLogitsWarper(top_k=sampling.top_k))
        if sampling.top_p < 1:
            self.warpers.append(TopPLogitsWarper(top_p=float(sampling.top_p)))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        step = input_ids.shape[1] - self.prompt_length
        noise = gumbel_noise(self.seeds, step, scores.shape[-1]).to(scores.dtype)
        return scores + noise  # type: ignore[return-value]


class StopStringRecorder(StoppingCriteria):
    """transformers' `StopStringCriteria`, matched on generated tokens only, noting when each row stopped.

    Two reasons not to pass `stop_strings=` to `generate` directly: `StopStringCriteria` matches at the
    end of the whole sequence, prompt included, so a stop string "\\n\\n" fires on the first generated
    "\\n" after a chat prompt that ends in "\\n"; and `generate` does not report which rows stopped on a
    stop string (a finished row is filled with pad tokens, which a model may also emit).
    `stopped_at[i]` is the number of generated tokens when row i first matched, or -1.
    """

    def __init__(self, criterion: StopStringCriteria, *, prompt_length: int, rows: int, device: torch.device):
        self.criterion = criterion
        self.prompt_length = prompt_length
        self.stopped_at = torch.full((rows,), -1, dtype=torch.int64, device=device)

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        step = input_ids.shape[1] - self.prompt_length
        is_matched = self.criterion(input_ids[:, self.prompt_length :], scores)
        is_first_match = is_matched & (self.stopped_at < 0)
        self.stopped_at = torch.where(is_first_match, step, self.stopped_at)
        return is_matched


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "auto" is bfloat16 on CUDA and float32 elsewhere; an explicit dtype is used as given."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in EXPLICIT_DTYPES:
        raise CheckpointError(f"Unknown dtype {name!r}; use auto, {', '.join(EXPLICIT_DTYPES)}.")
    return EXPLICIT_DTYPES[name]


def resolve_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_checkpoint(spec: CheckpointSpec, *, device: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer) for a spec; a LoRA adapter is merged into the model.

    Local files only, safetensors only and never custom code (all checked by `resolve_checkpoint` before
    transformers opens anything).
    """
    model_directory, adapter_directory = resolve_checkpoint(spec)
    target = resolve_device(device)
    dtype = resolve_dtype(spec.dtype, target)
    model: Any
    tokenizer: Any
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            model_directory, local_files_only=True, trust_remote_code=False
        )
        model = transformers.AutoModelForCausalLM.from_pretrained(
            model_directory,
            dtype=dtype,
            use_safetensors=True,
            local_files_only=True,
            trust_remote_code=False,
        )
    except (OSError, ValueError) as error:
        raise CheckpointError(f"The checkpoint {spec.name} could not be loaded: {error}") from error
    if adapter_directory is not None:
        from peft import PeftModel

        try:
            # The adapter directory holds safetensors weights (checked above); PEFT prefers them.
            model = PeftModel.from_pretrained(model, str(adapter_directory)).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(
                f"The LoRA adapter {spec.adapter_source} could not be applied to {spec.name}: {error}"
            ) from error
    model.to(target)
    model.eval()
    return model, tokenizer


class TransformersBackend:
    """Batched, seeded generation with a model held in this process.

    Requests are tokenised up front and sorted by prompt length, longest first, so each batch pads
    little and an out-of-memory error shows on the first batch rather than the last. Batches are
    left-padded (the next token is then predicted at the same position for every row) and results are
    yielded batch by batch under the requests' own keys.
    """

    def __init__(self, spec: CheckpointSpec, *, batch_size: int = 32, device: str | None = None) -> None:
        model, tokenizer = load_checkpoint(spec, device=device)
        self._attach(spec=spec, model=model, tokenizer=tokenizer, batch_size=batch_size)

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, spec: CheckpointSpec, *, batch_size: int = 32
    ) -> TransformersBackend:
        """Wrap a model already in memory (a benchmark's random-weight model, a test's edited one). The
        model is used on its own device and dtype, as it is."""
        backend = cls.__new__(cls)
        backend._attach(spec=spec, model=model.eval(), tokenizer=tokenizer, batch_size=batch_size)
        return backend

    def _attach(self, *, spec: CheckpointSpec, model: Any, tokenizer: Any, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        if spec.kind == "instruct" and not tokenizer.chat_template:
            raise CheckpointError(
                f"The instruction-tuned checkpoint {spec.name} has no chat template; register it as base "
                f"or add one."
            )
        self.spec = spec
        self.model: Any = model
        self.tokenizer: Any = tokenizer
        self.batch_size = batch_size
        self.device: torch.device = model.device
        # generate ends a row on any of the model's end tokens (instruct checkpoints often list two,
        # e.g. <|im_end|> and <|endoftext|>); the tokenizer's own is always among them.
        configured = model.generation_config.eos_token_id
        configured = [] if configured is None else [configured] if isinstance(configured, int) else configured
        eos_ids = [*configured, tokenizer.eos_token_id]
        self.eos_token_ids: list[int] = list(dict.fromkeys(i for i in eos_ids if i is not None))
        if not self.eos_token_ids:
            raise CheckpointError(f"The checkpoint {spec.name} defines no end-of-sequence token.")
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else self.eos_token_ids[0]

    def build_prompt_text(self, conversation: list[dict[str, str]], *, completion_template: str) -> str:
        """The prompt as text: the chat template for instruct checkpoints, the project's completion
        template for base ones."""
        if self.spec.kind == "instruct":
            try:
                return self.tokenizer.apply_chat_template(
                    conversation, add_generation_prompt=True, tokenize=False
                )
            except TemplateError as error:
                raise CheckpointError(
                    f"The chat template of {self.spec.name} rejected the conversation: {error}"
                ) from None
        return completion_prompt_render(template=completion_template, conversation=conversation)

    def prompt_token_ids(self, conversation: list[dict[str, str]], *, completion_template: str) -> list[int]:
        text = self.build_prompt_text(conversation, completion_template=completion_template)
        # A chat template already writes the special tokens it wants (BOS included, where it has one);
        # a completion prompt gets the tokenizer's usual ones.
        is_chat = self.spec.kind == "instruct"
        return list(self.tokenizer(text, add_special_tokens=not is_chat)["input_ids"])

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingParameters,
        *,
        completion_template: str,
    ) -> Iterator[list[GeneratedText]]:
        if self.model is None:
            raise RuntimeError("This backend has been closed.")
        prompts = [
            self.prompt_token_ids(request.conversation, completion_template=completion_template)
            for request in requests
        ]
        order = sorted(range(len(requests)), key=lambda index: -len(prompts[index]))
        stop_criterion = (
            StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(sampling.stop_strings))
            if sampling.stop_strings
            else None
        )
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            yield self._generate_batch(
                [requests[index] for index in batch],
                [prompts[index] for index in batch],
                sampling,
                stop_criterion,
            )

    def _generate_batch(
        self,
        requests: list[GenerationRequest],
        prompts: list[list[int]],
        sampling: SamplingParameters,
        stop_criterion: StopStringCriteria | None,
    ) -> list[GeneratedText]:
        started = time.perf_counter()
        prompt_length = max(len(prompt) for prompt in prompts)
        input_ids = torch.tensor(
            [[self.pad_token_id] * (prompt_length - len(prompt)) + prompt for prompt in prompts],
            dtype=torch.long,
            device=self.device,
        )
        attention_mask = torch.tensor(
            [[0] * (prompt_length - len(prompt)) + [1] * len(prompt) for prompt in prompts],
            dtype=torch.long,
            device=self.device,
        )
        logits_processor = LogitsProcessorList()
        if not sampling.is_greedy:
            logits_processor.append(
                SeededGumbelSampler(
                    seeds=[request.seed for request in requests],
                    prompt_length=prompt_length,
                    sampling=sampling,
                    device=self.device,
                )
            )
        stopping_criteria = StoppingCriteriaList()
        recorder = None
        if stop_criterion is not None:
            recorder = StopStringRecorder(
                stop_criterion, prompt_length=prompt_length, rows=len(requests), device=self.device
            )
            stopping_criteria.append(recorder)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=False,
                # Unset the checkpoint's own sampling defaults (generation_config.json): the run's
                # parameters are the whole story, and greedy decoding would warn about them.
                temperature=None,
                top_p=None,
                top_k=None,
                max_new_tokens=sampling.max_new_tokens,
                repetition_penalty=float(sampling.repetition_penalty),
                eos_token_id=self.eos_token_ids,
                pad_token_id=self.pad_token_id,
                logits_processor=logits_processor,
                stopping_criteria=stopping_criteria,
            )
        generated = output[:, prompt_length:].tolist()
        stopped_at = recorder.stopped_at.tolist() if recorder is not None else [-1] * len(requests)
        results = [
            self._result(tokens, stop_step, sampling)
            for tokens, stop_step in zip(generated, stopped_at, strict=True)
        ]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        latency = time.perf_counter() - started
        return [
            GeneratedText(
                key=request.key,
                text=text,
                token_count=token_count,
                finish_reason=finish_reason,
                latency_seconds=latency,
            )
            for request, (text, token_count, finish_reason) in zip(requests, results, strict=True)
        ]

    def _result(
        self, tokens: list[int], stop_step: int, sampling: SamplingParameters
    ) -> tuple[str, int, FinishReason]:
        """(text, token_count, finish_reason) of one row of generated token ids.

        After a row finishes, `generate` fills it with pad tokens while other rows go on, so a row is read
        up to its end: its first end-of-sequence token, or the token that completed a stop string, or
        `max_new_tokens`. For "eos" and "length" `token_count` is the number of tokens before that end.
        For "stop" it counts the generated tokens that decode wholly within the kept text (the tokens
        that carry the stop string, even partly, are not counted), not a re-tokenisation of the text.
        """
        eos_step = next((step for step, token in enumerate(tokens) if token in self.eos_token_ids), -1)
        if eos_step >= 0 and (stop_step < 0 or eos_step < stop_step):
            return self._decode(tokens[:eos_step]), eos_step, "eos"
        if stop_step < 0:
            return self._decode(tokens), len(tokens), "length"
        tokens = tokens[:stop_step]
        text = self._decode(tokens)
        cut = min((text.find(stop) for stop in sampling.stop_strings if stop in text), default=-1)
        if cut < 0:
            # The match ran through a special token that decoding skips: nothing to cut.
            return text, len(tokens), "stop"
        text = text[:cut]
        count = len(tokens)
        while count and not text.startswith(self._decode(tokens[:count])):
            count -= 1
        return text, count, "stop"

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def close(self) -> None:
        is_cuda = self.device.type == "cuda"
        self.model = None
        self.tokenizer = None
        gc.collect()
        if is_cuda:
            torch.cuda.empty_cache()

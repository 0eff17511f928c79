"""The transformers backend on tiny random-weight checkpoints, on the CPU, with real models and no mocks.

The tiny model's output is noise, but it is deterministic noise: each assertion below is exact. Tests
that change a model (an end-of-sequence bias, a config edit) work on their own copy.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import transformers
from peft import LoraConfig, get_peft_model

from feedback.models import DEFAULT_COMPLETION_TEMPLATE
from feedback.sampling import SamplingParameters
from inference.backends.base import CheckpointError, CheckpointSpec, GeneratedText, GenerationRequest
from inference.backends.transformers import (
    SeededGumbelSampler,
    TransformersBackend,
    gumbel_noise,
    splitmix64,
)
from inference.tiny import build_tiny_checkpoint

CONVERSATION = [{"role": "user", "content": "What is RLHF?"}]
SAMPLED = SamplingParameters(temperature=1.0, top_p=1.0, max_new_tokens=24)
GREEDY = SamplingParameters(temperature=0, max_new_tokens=24)
# The tiny model's greedy output repeats the prompt's last token ("\n") forever; a repetition penalty
# makes greedy decoding wander, which the stop-string and adapter tests need.
GREEDY_PENALISED = SamplingParameters(temperature=0, max_new_tokens=24, repetition_penalty=3.0)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("transformers-backend")
    return {kind: build_tiny_checkpoint(root / kind, kind=kind) for kind in ("instruct", "base")}


def spec_for(path: Path, *, kind: str = "instruct", adapter_source: str = "") -> CheckpointSpec:
    return CheckpointSpec(
        checkpoint_id=1,
        name=f"tiny-{kind}",
        kind=kind,  # type: ignore[arg-type]
        source_type="local",
        source=str(path),
        adapter_source=adapter_source,
    )


@pytest.fixture(scope="session")
def instruct_backend(tiny_checkpoints) -> TransformersBackend:
    return TransformersBackend(spec_for(tiny_checkpoints["instruct"]), batch_size=4, device="cpu")


@pytest.fixture(scope="session")
def base_backend(tiny_checkpoints) -> TransformersBackend:
    return TransformersBackend(spec_for(tiny_checkpoints["base"], kind="base"), batch_size=4, device="cpu")


def user_turn(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def generate_all(
    backend: TransformersBackend, requests: list[GenerationRequest], sampling: SamplingParameters
) -> dict[object, GeneratedText]:
    results = {}
    for batch in backend.generate(requests, sampling, completion_template=DEFAULT_COMPLETION_TEMPLATE):
        for result in batch:
            assert result.key not in results
            results[result.key] = result
    return results


def generate_one(
    backend: TransformersBackend, sampling: SamplingParameters, *, seed: int = 0, conversation=CONVERSATION
) -> GeneratedText:
    request = GenerationRequest(key="only", conversation=conversation, seed=seed)
    return generate_all(backend, [request], sampling)["only"]


def backend_with_end_of_sequence_bias(path: Path, bias: float) -> TransformersBackend:
    """A backend whose model adds `bias` to the end-of-sequence logit: the tiny model with its output
    layer given a bias term (Llama's has none), built through `from_model`."""
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    vocabulary_size, hidden_size = model.lm_head.weight.shape
    head = torch.nn.Linear(hidden_size, vocabulary_size, bias=True)
    head.weight = model.lm_head.weight
    with torch.no_grad():
        head.bias.zero_()
        head.bias[tokenizer.eos_token_id] = bias
    model.lm_head = head
    return TransformersBackend.from_model(model, tokenizer, spec_for(path), batch_size=4)


def test_generate_yields_each_batch_longest_prompts_first(instruct_backend):
    requests = [
        GenerationRequest(key=("prompt", index), conversation=user_turn("word " * (index + 1)), seed=index)
        for index in range(6)
    ]

    batches = list(instruct_backend.generate(requests, SAMPLED, completion_template=""))

    assert [len(batch) for batch in batches] == [4, 2]
    assert [result.key for result in batches[0]] == [
        ("prompt", 5),
        ("prompt", 4),
        ("prompt", 3),
        ("prompt", 2),
    ]
    assert [result.key for result in batches[1]] == [("prompt", 1), ("prompt", 0)]
    for batch in batches:
        assert len({result.latency_seconds for result in batch}) == 1
        for result in batch:
            assert isinstance(result.text, str)
            assert 0 <= result.token_count <= SAMPLED.max_new_tokens
            assert result.finish_reason in ("eos", "length", "stop")
            assert result.latency_seconds > 0


def test_finish_reason_length_when_max_new_tokens_is_reached(tiny_checkpoints):
    backend = backend_with_end_of_sequence_bias(tiny_checkpoints["instruct"], -1e4)
    sampling = SamplingParameters(temperature=1.0, top_p=1.0, max_new_tokens=5)
    requests = [GenerationRequest(key=seed, conversation=CONVERSATION, seed=seed) for seed in range(4)]

    results = generate_all(backend, requests, sampling)

    assert [(results[seed].finish_reason, results[seed].token_count) for seed in range(4)] == [
        ("length", 5)
    ] * 4


@pytest.mark.parametrize("sampling", [SAMPLED, GREEDY])
def test_finish_reason_eos_with_empty_text_when_the_model_ends_at_once(tiny_checkpoints, sampling):
    backend = backend_with_end_of_sequence_bias(tiny_checkpoints["instruct"], 1e4)
    requests = [GenerationRequest(key=seed, conversation=CONVERSATION, seed=seed) for seed in range(3)]

    results = generate_all(backend, requests, sampling)

    assert [
        (results[seed].text, results[seed].token_count, results[seed].finish_reason) for seed in range(3)
    ] == [("", 0, "eos")] * 3


def test_stop_string_ends_the_text_before_its_first_occurrence(instruct_backend):
    # The oracle: transformers' own greedy decoding of the same unpadded prompt, token by token.
    prompt = instruct_backend.prompt_token_ids(CONVERSATION, completion_template="")
    output = instruct_backend.model.generate(
        input_ids=torch.tensor([prompt]),
        do_sample=False,
        max_new_tokens=GREEDY_PENALISED.max_new_tokens,
        repetition_penalty=GREEDY_PENALISED.repetition_penalty,
        pad_token_id=instruct_backend.pad_token_id,
    )
    tokens = output[0, len(prompt) :].tolist()
    texts = [
        instruct_backend.tokenizer.decode(tokens[:count], skip_special_tokens=True) for count in range(25)
    ]
    assert generate_one(instruct_backend, GREEDY_PENALISED).text == texts[-1]
    # A stop string made of the two tokens after `kept`, from the middle, that first occurs there.
    kept = next(
        count
        for count in range(4, len(texts) - 2)
        if texts[count + 2].startswith(texts[count + 1])
        and texts[count + 1].startswith(texts[count])
        and len(texts[count]) < len(texts[count + 1]) < len(texts[count + 2])
        and "\ufffd" not in texts[count + 2][len(texts[count]) :]
        and texts[-1].find(texts[count + 2][len(texts[count]) :]) == len(texts[count])
    )
    stop = texts[kept + 2][len(texts[kept]) :]

    result = generate_one(instruct_backend, replace(GREEDY_PENALISED, stop_strings=(stop,)))

    assert (result.text, result.token_count, result.finish_reason) == (texts[kept], kept, "stop")


def test_stop_string_is_matched_in_the_generated_text_only(instruct_backend):
    """The chat prompt ends in "assistant\\n" and the tiny model answers "\\n\\n…": transformers' own
    stop-string criterion matches across the prompt's end and would stop after one token."""
    assert instruct_backend.build_prompt_text(CONVERSATION, completion_template="").endswith("assistant\n")
    sampling = replace(GREEDY, stop_strings=("assistant\n\n",))

    result = generate_one(instruct_backend, sampling)

    assert (result.text, result.token_count, result.finish_reason) == ("\n" * 24, 24, "length")


def test_stop_string_at_the_start_gives_an_empty_text(instruct_backend):
    result = generate_one(instruct_backend, replace(GREEDY, stop_strings=("\n\n",)))

    assert (result.text, result.token_count, result.finish_reason) == ("", 0, "stop")


def test_same_seeds_give_the_same_texts_and_different_seeds_different_ones(instruct_backend):
    def texts(seeds: list[int]) -> list[str]:
        requests = [
            GenerationRequest(key=index, conversation=CONVERSATION, seed=seed)
            for index, seed in enumerate(seeds)
        ]
        results = generate_all(instruct_backend, requests, SAMPLED)
        return [results[index].text for index in range(len(seeds))]

    first = texts([11, 12, 13, 14])

    assert texts([11, 12, 13, 14]) == first
    assert len(set(first)) == 4
    assert len(set(first) & set(texts([21, 22, 23, 24]))) == 0


def test_a_sample_does_not_depend_on_the_rest_of_its_batch(instruct_backend):
    """Each request alone, then together with longer prompts that pad it on the left and change the
    batch's shape: the same seed gives the same text. (On this CPU in float32 the last-position logits
    of a padded row differ from the unpadded ones by about 2e-7, too little to move an argmax here.)"""
    sampling = SamplingParameters(
        temperature=1.0, top_p=0.9, top_k=50, max_new_tokens=32, repetition_penalty=1.1
    )
    requests = [GenerationRequest(key=seed, conversation=CONVERSATION, seed=seed) for seed in range(8)]
    longer = [
        GenerationRequest(
            key=("longer", index), conversation=user_turn("a longer prompt " * (index + 4)), seed=index
        )
        for index in range(4)
    ]
    alone = {
        request.key: generate_all(instruct_backend, [request], sampling)[request.key].text
        for request in requests
    }

    mixed = generate_all(instruct_backend, [*requests, *longer], sampling)

    assert {seed: mixed[seed].text for seed in range(8)} == alone


def test_greedy_decoding_ignores_the_seed(instruct_backend):
    first = generate_one(instruct_backend, GREEDY_PENALISED, seed=1)
    second = generate_one(instruct_backend, GREEDY_PENALISED, seed=2)

    assert (first.text, first.token_count) == (second.text, second.token_count)
    assert len(first.text) > 0


def test_repetition_penalty_is_applied(instruct_backend):
    assert generate_one(instruct_backend, GREEDY).text == "\n" * 24
    assert "\n" not in generate_one(instruct_backend, GREEDY_PENALISED).text


def test_instruct_prompt_is_the_chat_template(instruct_backend):
    text = instruct_backend.build_prompt_text(CONVERSATION, completion_template=DEFAULT_COMPLETION_TEMPLATE)

    assert text == "<|im_start|>user\nWhat is RLHF?<|im_end|>\n<|im_start|>assistant\n"


def test_base_prompt_is_the_completion_template(base_backend):
    text = base_backend.build_prompt_text(CONVERSATION, completion_template=DEFAULT_COMPLETION_TEMPLATE)

    assert text == "User: What is RLHF?\n\nAssistant:"
    assert base_backend.prompt_token_ids(
        CONVERSATION, completion_template=DEFAULT_COMPLETION_TEMPLATE
    ) == list(base_backend.tokenizer(text)["input_ids"])


def test_base_checkpoint_generates(base_backend):
    result = generate_one(base_backend, SAMPLED)

    assert result.finish_reason in ("eos", "length")
    assert "<|im_start|>" not in result.text


def test_instruct_checkpoint_without_chat_template_is_refused(tiny_checkpoints):
    with pytest.raises(
        CheckpointError, match="instruction-tuned checkpoint tiny-instruct has no chat template"
    ):
        TransformersBackend(spec_for(tiny_checkpoints["base"], kind="instruct"), device="cpu")


@pytest.fixture(scope="session")
def lora_adapter(tiny_checkpoints, tmp_path_factory) -> Path:
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_checkpoints["instruct"])
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    directory = tmp_path_factory.mktemp("lora")
    get_peft_model(model, config).save_pretrained(directory)
    return directory


def test_lora_adapter_is_merged_and_changes_the_output(tiny_checkpoints, lora_adapter, instruct_backend):
    assert sorted(path.name for path in lora_adapter.glob("adapter_*")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    spec = spec_for(tiny_checkpoints["instruct"], adapter_source=str(lora_adapter))

    adapted = TransformersBackend(spec, device="cpu")

    assert type(adapted.model) is transformers.LlamaForCausalLM
    assert (
        generate_one(adapted, GREEDY_PENALISED).text != generate_one(instruct_backend, GREEDY_PENALISED).text
    )


def test_pickle_only_adapter_is_refused(tiny_checkpoints, tmp_path):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_checkpoints["instruct"])
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(tmp_path, safe_serialization=False)
    assert sorted(path.name for path in tmp_path.glob("adapter_*")) == [
        "adapter_config.json",
        "adapter_model.bin",
    ]

    with pytest.raises(CheckpointError, match=r"LoRA adapter weights are pickle files \(adapter_model.bin\)"):
        TransformersBackend(
            spec_for(tiny_checkpoints["instruct"], adapter_source=str(tmp_path)), device="cpu"
        )


def test_checkpoint_with_custom_code_is_refused(tiny_checkpoints, tmp_path):
    directory = shutil.copytree(tiny_checkpoints["instruct"], tmp_path / "custom")
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    config_path.write_text(json.dumps(config))

    with pytest.raises(
        CheckpointError,
        match=r"^The model config in config.json asks for custom code shipped with the checkpoint "
        r"\(auto_map: AutoModelForCausalLM\)\. Rankwise never runs remote code\.",
    ):
        TransformersBackend(spec_for(directory), device="cpu")


@pytest.mark.parametrize(("dtype", "expected"), [("auto", torch.float32), ("bfloat16", torch.bfloat16)])
def test_dtype_auto_is_float32_on_the_cpu_and_an_explicit_dtype_is_honoured(
    tiny_checkpoints, dtype, expected
):
    spec = replace(spec_for(tiny_checkpoints["instruct"]), dtype=dtype)

    backend = TransformersBackend(spec, device="cpu")

    assert (backend.model.dtype, backend.device.type) == (expected, "cpu")
    assert generate_one(backend, SamplingParameters(max_new_tokens=4)).finish_reason in ("eos", "length")


def test_close_drops_the_model(tiny_checkpoints):
    backend = TransformersBackend(spec_for(tiny_checkpoints["instruct"]), device="cpu")

    backend.close()

    assert (backend.model, backend.tokenizer) == (None, None)
    with pytest.raises(RuntimeError, match="closed"):
        list(backend.generate([], SAMPLED, completion_template=""))


def test_splitmix64_matches_the_reference_on_unsigned_words():
    def reference(word: int) -> int:
        word ^= word >> 30
        word = (word * 0xBF58476D1CE4E5B9) % 2**64
        word ^= word >> 27
        word = (word * 0x94D049BB133111EB) % 2**64
        return word ^ (word >> 31)

    words = [0, 1, 12345678901234567, 2**63 - 1, 2**63, 2**64 - 1]
    signed = torch.tensor([word - 2**64 if word >= 2**63 else word for word in words], dtype=torch.int64)

    assert [value % 2**64 for value in splitmix64(signed).tolist()] == [reference(word) for word in words]


def test_gumbel_noise_depends_on_seed_step_and_token_only():
    noise = gumbel_noise(torch.tensor([5, 6, 5]), 3, 10)

    assert torch.equal(noise[0], noise[2])
    assert not torch.equal(noise[0], noise[1])
    assert torch.equal(gumbel_noise(torch.tensor([5]), 3, 10)[0], noise[0])
    assert torch.equal(gumbel_noise(torch.tensor([5]), 3, 20)[0, :10], noise[0])
    assert not torch.equal(gumbel_noise(torch.tensor([5]), 4, 10)[0], noise[0])


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p", "expected"),
    [
        (1.0, 0, 1.0, [0.5, 0.25, 0.15, 0.1]),
        (2.0, 0, 1.0, [0.3701, 0.2617, 0.2027, 0.1655]),  # softmax(log p / 2)
        (1.0, 3, 1.0, [0.5556, 0.2778, 0.1667, 0.0]),  # renormalised over the top 3
        (1.0, 0, 0.7, [0.6667, 0.3333, 0.0, 0.0]),  # smallest set with mass ≥ 0.7
    ],
)
def test_seeded_gumbel_sampler_draws_from_the_filtered_softmax(temperature, top_k, top_p, expected):
    """20,000 rows with seeds 0…19,999 at one step: the argmax frequencies are the target probabilities
    within 0.01 (about three standard errors). Deterministic: the noise is a function of the seeds."""
    rows = 20_000
    probabilities = torch.tensor([0.5, 0.25, 0.15, 0.1])
    sampling = SamplingParameters(temperature=temperature, top_k=top_k, top_p=top_p)
    sampler = SeededGumbelSampler(
        seeds=range(rows), prompt_length=3, sampling=sampling, device=torch.device("cpu")
    )
    input_ids = torch.zeros((rows, 4), dtype=torch.long)

    choices = sampler(input_ids, probabilities.log().expand(rows, 4).clone()).argmax(dim=-1)  # type: ignore[arg-type]

    frequencies = torch.bincount(choices, minlength=4) / rows
    assert torch.allclose(frequencies, torch.tensor(expected), atol=0.01)
    assert [frequency == 0 for frequency in frequencies.tolist()] == [value == 0 for value in expected]

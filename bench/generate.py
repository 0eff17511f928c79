"""Generation throughput: the `transformers` backend against a naive loop and the memory roofline.

    .venv/bin/python bench/generate.py [--batch-sizes 8,32,128] [--max-new-tokens N] [--naive-prompts N]

Prints output tokens/s, all measured in the same run, for:

1. the naive loop: `model.generate` called for one prompt at a time (sampling, KV cache on), which is what
   a script written in an afternoon does;
2. `TransformersBackend` (length-sorted, left-padded batches, seeded per-sample sampling) at each batch
   size, over two batches' worth of requests;
3. the memory-bandwidth roofline of each batch size: a decode step must read every weight once, so
   `bandwidth / weight bytes` steps per second at best, each yielding `batch size` tokens. The bandwidth
   is that of a large device-to-device copy timed in this run. The roofline ignores the KV cache and the
   attention over it, so it is an upper bound that large batches drift away from.

On CUDA the model is Qwen2-1.5B-shaped with random bf16 weights (speed does not depend on the values);
on CPU it is the tiny test checkpoint in fp32, as a smoke run whose figures say little about a GPU.
Every row generates until max_new_tokens: the end-of-sequence token is suppressed (generation config
`suppress_tokens`), so all runs do the same work and tokens/s compare like for like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import django

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback.settings")
django.setup()

import torch  # noqa: E402
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from feedback.sampling import SamplingParameters  # noqa: E402
from inference.backends.base import CheckpointSpec, GenerationRequest  # noqa: E402
from inference.backends.transformers import TransformersBackend  # noqa: E402
from inference.tiny import build_tiny_checkpoint, corpus_texts  # noqa: E402

QWEN2_1_5B = {
    "vocab_size": 151_936,
    "hidden_size": 1_536,
    "intermediate_size": 8_960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32_768,
    "tie_word_embeddings": True,
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a large device-to-device copy (read + write counted), best of five."""
    size = (1 << 30) if device.type == "cuda" else (1 << 28)
    source = torch.empty(size, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    synchronize(device)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size / best


def load_model(device: torch.device, work: Path):
    tokenizer_dir = build_tiny_checkpoint(work / "tiny", kind="instruct")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if device.type == "cuda":
        config = Qwen2Config(
            **QWEN2_1_5B,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        with torch.device(device):
            model = Qwen2ForCausalLM(config).to(torch.bfloat16)
        name = "Qwen2-1.5B-shaped, random bf16 weights"
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(tokenizer_dir, use_safetensors=True)
        name = "tiny test checkpoint, fp32"
    model.eval()
    return model, tokenizer, name


def requests_for(count: int) -> list[GenerationRequest]:
    texts = [text for text in corpus_texts() if len(text) > 20]
    return [
        GenerationRequest(
            key=index, conversation=[{"role": "user", "content": texts[index % len(texts)]}], seed=index
        )
        for index in range(count)
    ]


def naive_tokens_per_second(model, tokenizer, requests, sampling) -> float:
    """One `generate` call per prompt, as a first script would do it."""
    device = model.device
    generated = 0
    started = time.perf_counter()
    for request in requests:
        text = tokenizer.apply_chat_template(request.conversation, add_generation_prompt=True, tokenize=False)
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_new_tokens=sampling.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        generated += output.shape[1] - inputs["input_ids"].shape[1]
    synchronize(device)
    return generated / (time.perf_counter() - started)


def backend_tokens_per_second(backend, requests, sampling) -> tuple[float, int]:
    generated = 0
    started = time.perf_counter()
    for batch in backend.generate(requests, sampling, completion_template=""):
        generated += sum(result.token_count for result in batch)
    synchronize(backend.device)
    return generated / (time.perf_counter() - started), generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="8,32,128")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: 128 on CUDA, 32 on CPU")
    parser.add_argument("--naive-prompts", type=int, default=8)
    arguments = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    max_new_tokens = arguments.max_new_tokens or (128 if device.type == "cuda" else 32)
    sampling = SamplingParameters(temperature=0.8, top_p=0.95, max_new_tokens=max_new_tokens)
    batch_sizes = [int(size) for size in arguments.batch_sizes.split(",")]

    with tempfile.TemporaryDirectory() as work:
        model, tokenizer, model_name = load_model(device, Path(work))
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = copy_bandwidth(device)
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    )
    print(
        f"device: {device_name} ({device.type}); torch {torch.__version__}; threads {torch.get_num_threads()}"
    )
    print(f"model: {model_name}; {weight_bytes / 1e6:,.1f} MB of weights")
    print(
        f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s; max_new_tokens {max_new_tokens}; end token suppressed"
    )

    # `generate` applies the generation config's suppressed tokens in every call, the backend's included.
    model.generation_config.suppress_tokens = [tokenizer.eos_token_id]
    naive_tokens_per_second(model, tokenizer, requests_for(1), sampling)  # warm-up: kernels, allocator
    naive = naive_tokens_per_second(model, tokenizer, requests_for(arguments.naive_prompts), sampling)

    spec = CheckpointSpec(checkpoint_id=0, name="bench", kind="instruct", source_type="local", source=work)
    figures = {"naive_loop_tokens_per_second": naive, "batches": []}
    print(f"\n{'':<26}{'tokens/s':>12}{'x naive':>10}{'roofline':>12}{'of roofline':>13}")
    print(
        f"{'naive loop (batch 1)':<26}{naive:>12.1f}{1.0:>10.1f}{bandwidth / weight_bytes:>12.1f}"
        f"{naive / (bandwidth / weight_bytes):>12.1%}"
    )
    for batch_size in batch_sizes:
        backend = TransformersBackend.from_model(model, tokenizer, spec, batch_size=batch_size)
        backend_tokens_per_second(backend, requests_for(batch_size), sampling)  # warm-up at this shape
        rate, generated = backend_tokens_per_second(backend, requests_for(2 * batch_size), sampling)
        roofline = bandwidth / weight_bytes * batch_size
        figures["batches"].append(
            {"batch_size": batch_size, "tokens_per_second": rate, "roofline": roofline, "tokens": generated}
        )
        print(
            f"{f'backend, batch {batch_size}':<26}{rate:>12.1f}{rate / naive:>10.1f}{roofline:>12.1f}"
            f"{rate / roofline:>12.1%}"
        )
    print("\n" + json.dumps({"device": device_name, "model": model_name, **figures}))


if __name__ == "__main__":
    main()

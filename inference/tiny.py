"""A tiny causal language model for tests and the demo: random weights, a real tokenizer, a chat template.

The tokenizer is trained on text bundled with the project (the demo prompts and the demo projects'
guidelines). By default it is a byte-level BPE, which encodes any input and round-trips it (what tests
need); with `words=True` its tokens are whole words and punctuation, so that random weights write random
but readable words instead of broken UTF-8 (what the demo needs: a newcomer's first comparison should not
look like a broken page). The model is Llama-shaped with a few thousand parameters per layer, so it loads
and generates in milliseconds on a CPU. Its output is noise. The config carries `rankwise_test_model:
true`, which checkpoint validation reports and the admin shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent.parent / "feedback" / "demo" / "prompts.jsonl"
VOCAB_SIZE = 512
WORDS_VOCAB_SIZE = 4_000
UNKNOWN = "[UNK]"
END_OF_TEXT = "<|endoftext|>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"
PAD = "<|pad|>"

# ChatML, as many instruction-tuned checkpoints use: each turn framed by start/end markers, and the
# generation prompt opens the assistant's turn. The turn-end marker is the model's end of sequence.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def corpus_texts() -> list[str]:
    texts: list[str] = []
    with CORPUS.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            messages = record.get("messages") or [{"role": "user", "content": record["prompt"]}]
            texts.extend(message["content"] for message in messages)
    return texts


def words_corpus_texts() -> list[str]:
    """What the word-level tokenizer learns its vocabulary from: the demo prompts and the demo projects'
    guidelines (plain English the demo's pages already show)."""
    from feedback.services.demo import DEMO_GUIDELINES, DEMO_WRITING_GUIDELINES

    return [*corpus_texts(), DEMO_GUIDELINES, DEMO_WRITING_GUIDELINES, "system user assistant"]


def _words_tokenizer(special_tokens: list[str]) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    backend = Tokenizer(models.WordLevel(unk_token=UNKNOWN))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # Words, and each punctuation mark on its own; decoding joins tokens with spaces, and the tokenizer's
    # clean-up takes the space before punctuation away ("word , word" reads "word, word").
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(
        vocab_size=WORDS_VOCAB_SIZE, special_tokens=[UNKNOWN, *special_tokens], show_progress=False
    )
    backend.train_from_iterator(words_corpus_texts(), trainer=trainer)
    return backend


def build_tiny_checkpoint(path: Path, *, kind: str = "instruct", seed: int = 0, words: bool = False) -> Path:
    """Write a tiny checkpoint into `path` (created; must be empty or absent) and return it. `words`: a
    word-level tokenizer (readable noise, for the demo) instead of byte-level BPE."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if kind not in ("base", "instruct"):
        raise ValueError("kind must be 'base' or 'instruct'")
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty")
    path.mkdir(parents=True, exist_ok=True)

    special_tokens = [END_OF_TEXT, PAD, TURN_START, TURN_END]
    if words:
        backend = _words_tokenizer(special_tokens)
    else:
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE,
            special_tokens=special_tokens,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(corpus_texts(), trainer=trainer)

    end_token = TURN_END if kind == "instruct" else END_OF_TEXT
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=END_OF_TEXT,
        eos_token=end_token,
        pad_token=PAD,
        model_max_length=2048,
        **({"unk_token": UNKNOWN, "clean_up_tokenization_spaces": True} if words else {}),
    )
    if kind == "instruct":
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    config.rankwise_test_model = True
    config.rankwise_kind = kind
    config.rankwise_tokenizer = "words" if words else "bytes"
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    # As released chat checkpoints ship it: servers such as `transformers serve` sample only when the
    # checkpoint's generation config says so. Rankwise's own backend passes its sampling explicitly.
    model.generation_config.do_sample = True
    model.save_pretrained(path, safe_serialization=True)
    return path

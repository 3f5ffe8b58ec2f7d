"""Writes the tiny model fixtures under tests/fixtures/ (run once; the tests only read the results).

Needs torch and transformers (torch is not a dependency of the project):

    .venv/bin/pip install torch==2.13.0
    .venv/bin/python tests/make_fixtures.py

For each variant it builds a random-weight transformers model, saves it as a Hugging Face folder
(safetensors), and stores reference logits for a fixed batch with full, right-padded and
left-padded rows. It also trains a tiny byte-level BPE tokenizer with a chat template.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

OUT = pathlib.Path(__file__).parent / "fixtures" / "models"

COMMON = dict(
    vocab_size=128,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
)

VARIANTS = {
    # Llama 3 style: rope scaling, untied head; ffn 256 so K-quant blocks (256 values) fit a row of down_proj
    "llama": (
        transformers.LlamaConfig,
        dict(
            intermediate_size=256,
            rope_theta=500000.0,
            tie_word_embeddings=False,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        ),
    ),
    # Qwen2: bias on q/k/v; saved in two safetensors shards with an index
    "qwen2": (transformers.Qwen2Config, dict(intermediate_size=64, tie_word_embeddings=False)),
    # Mistral: sliding window smaller than the sequence
    "mistral": (transformers.MistralConfig, dict(intermediate_size=64, sliding_window=4, head_dim=8)),
    # SmolLM2 style: tied embeddings
    "tied": (transformers.LlamaConfig, dict(intermediate_size=64, tie_word_embeddings=True)),
}

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def batch(vocab: int):
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, vocab, size=(3, 9)).astype(np.int64)
    mask = np.ones((3, 9), np.int64)
    mask[1, -3:] = 0  # right padding
    mask[2, :2] = 0  # left padding
    tokens[mask == 0] = 0
    positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    return tokens, mask, positions


def make_model(name: str, cls, extra: dict) -> None:
    torch.manual_seed(sum(map(ord, name)))
    cfg = cls(**{**COMMON, **extra})
    cfg._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so their loading is tested too
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or n.endswith(".bias"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if n.endswith("norm.weight") else 0.1 * torch.randn_like(p))
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, max_shard_size="40KB" if name == "qwen2" else "50MB")
    tokens, mask, positions = batch(cfg.vocab_size)
    with torch.no_grad():
        logits = (
            model(
                input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
            )
            .logits.float()
            .numpy()
        )
    np.savez(folder / "reference.npz", tokens=tokens, mask=mask, logits=logits)
    files = sorted(p.name for p in folder.iterdir())
    print(f"{name}: {files}, {sum(p.numel() for p in model.parameters())} params")


def make_tokenizer() -> None:
    text = [
        "Hello world! How are you today? I am fine, thank you.",
        "The capital of France is Paris. 12 + 30 = 42.",
        "I can't help with that request, but I can help with something else.",
        "Sure, here is a short poem about the sea and the sky.",
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(text, trainer)
    folder = OUT.parent / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<|im_start|>",
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "chat_template": CHAT_TEMPLATE,
            },
            indent=1,
        )
    )
    print(f"tokenizer: {tok.get_vocab_size()} tokens")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for variant, (config_cls, kwargs) in VARIANTS.items():
        make_model(variant, config_cls, kwargs)
    make_tokenizer()

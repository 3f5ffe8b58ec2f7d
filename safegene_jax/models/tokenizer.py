"""Tokenizers: transformers' for Hugging Face folders, and one rebuilt from GGUF metadata.

GGUF files carry their vocabulary (``tokenizer.ggml.*``) rather than a ``tokenizer.json``; transformers 5
can only convert them with torch, so the tokenizer is assembled here with ``tokenizers``:

* ``gpt2`` (byte-level BPE: SmolLM2, Llama 3, Qwen2): vocabulary and merges, with the pre-tokenizer
  that ``tokenizer.ggml.pre`` names (``smollm``, ``gpt2``, ``llama-bpe``, ``qwen2``, ...).
* ``llama`` (SentencePiece: Llama 2, Mistral): a Unigram model over the pieces' scores with byte
  fallback. SentencePiece BPE and Unigram can segment a few strings differently; the ids of every
  piece are the same and decoding is exact.

Control tokens become special tokens; the chat template is kept.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any

from safegene_jax.core.errors import TokenizerError

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_TOKENIZERS = {
    "gpt2": "gpt2",
    "default": "gpt2",
    "smollm": "digits+gpt2",
    "starcoder": "digits+gpt2",
    "llama-bpe": "llama3",
    "llama3": "llama3",
    "qwen2": "qwen2",
    "deepseek-llm": "llama3",
}
_CONTROL, _USER_DEFINED = 3, 4


def _pre_tokenizer(kind: str):
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if kind == "gpt2":
        return byte_level
    if kind == "digits+gpt2":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    pattern = _LLAMA3_SPLIT if kind == "llama3" else _QWEN2_SPLIT
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def tokenizer_from_gguf_fields(field: Callable[..., Any], source: str = "GGUF file"):
    """Builds a transformers fast tokenizer from GGUF metadata, read through ``field(key, default)``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    kind = field("tokenizer.ggml.model", None)
    tokens = field("tokenizer.ggml.tokens", None)
    if kind is None or tokens is None:
        raise TokenizerError(f"{source} has no tokenizer metadata (tokenizer.ggml.model / tokenizer.ggml.tokens)")
    types = field("tokenizer.ggml.token_type", None) or [1] * len(tokens)

    def tok_id(key):
        i = field(f"tokenizer.ggml.{key}_token_id", None)
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    if kind == "gpt2":
        pre = field("tokenizer.ggml.pre", "default")
        if pre not in _PRE_TOKENIZERS:
            raise TokenizerError(
                f"{source}: pre-tokenizer {pre!r} is not supported; supported: {sorted(_PRE_TOKENIZERS)}"
            )
        merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges", [])]
        tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
        tok.pre_tokenizer = _pre_tokenizer(_PRE_TOKENIZERS[pre])
        tok.decoder = decoders.ByteLevel()
    elif kind == "llama":
        scores = field("tokenizer.ggml.scores", None) or [0.0] * len(tokens)
        unk = field("tokenizer.ggml.unknown_token_id", 0)
        tok = Tokenizer(
            models.Unigram([(t, float(s)) for t, s in zip(tokens, scores)], unk_id=int(unk), byte_fallback=True)
        )
        steps = [normalizers.Replace(" ", "\u2581")]
        if field("tokenizer.ggml.add_space_prefix", True):
            steps.insert(0, normalizers.Prepend("\u2581"))
        tok.normalizer = normalizers.Sequence(steps)
        tok.decoder = decoders.Sequence(
            [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
            + ([decoders.Strip(" ", 1, 0)] if field("tokenizer.ggml.add_space_prefix", True) else [])
        )
    else:
        raise TokenizerError(f"{source}: tokenizer model {kind!r} is not supported; supported: 'gpt2', 'llama'")

    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == _CONTROL]
    )
    tok.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == _USER_DEFINED]
    )
    bos = tok_id("bos")
    if bos is not None and field("tokenizer.ggml.add_bos_token", kind == "llama"):
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokens.index(bos))]
        )
    kwargs = {
        k: v
        for k, v in (
            ("bos_token", bos),
            ("eos_token", tok_id("eos")),
            ("unk_token", tok_id("unknown")),
            ("pad_token", tok_id("padding")),
        )
        if v is not None
    }
    template = field("tokenizer.chat_template", None)
    if template:
        kwargs["chat_template"] = template
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if wrapped.pad_token is None and wrapped.eos_token is not None:
        wrapped.pad_token = wrapped.eos_token
    return wrapped


def load_hf_tokenizer(folder: str | os.PathLike):
    """transformers' tokenizer from a Hugging Face folder (``tokenizer.json`` & co.), or ``None`` if absent."""
    folder = pathlib.Path(folder)
    if not any((folder / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok

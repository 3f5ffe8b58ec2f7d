"""Tokenizers: transformers' for Hugging Face folders, and one rebuilt from GGUF metadata.

GGUF files carry their vocabulary (``tokenizer.ggml.*``) rather than a ``tokenizer.json``; transformers 5
can only convert them with torch, so the tokenizer is assembled here with ``tokenizers``:

* ``gpt2`` (byte-level BPE: SmolLM2, Llama 3, Qwen2): vocabulary and merges, with the pre-tokenizer
  that ``tokenizer.ggml.pre`` names (``smollm``, ``gpt2``, ``llama-bpe``, ``qwen2``, ...).
* ``llama`` (SentencePiece: Llama 2, Mistral): a Unigram model over the pieces' scores with byte
  fallback. SentencePiece BPE and Unigram can segment a few strings differently; the ids of every
  piece are the same and decoding is exact.
* ``llama`` in a ``gemma3`` file (Gemma's SentencePiece BPE, 262,144 pieces): a BPE model with byte
  fallback whose merges are recovered from the vocabulary (Gemma files list their pieces in merge
  order and carry no merges), spaces written as ``▁`` and no prefix space; pieces of only spaces,
  which the file spells with real spaces, are spelled with ``▁`` again. It encodes as transformers'
  tokenizer built from the same file does (checked on a few hundred strings).

Control tokens become special tokens and user-defined ones (``\n\n``, ``<b>``) stay whole; the chat template
is kept.

Gemma's turn format: a Gemma file without a chat template (Gemma 3 270M, a base model, has none) gets
:data:`GEMMA_CHAT_TEMPLATE`, the format Gemma's instruction-tuned models are trained on, built from tokens
of its own vocabulary (``<bos>``, ``<start_of_turn>``, ``<end_of_turn>``)::

    <bos><start_of_turn>user
    {system, a blank line, then the first user message}<end_of_turn>
    <start_of_turn>model
    {answer}<end_of_turn>

Gemma has no system role: a system prompt opens the first user turn. ``assistant`` is written ``model``.
Generation stops at ``<end_of_turn>`` (the config's end-of-sequence ids include it). A Hugging Face Gemma 3
folder whose tokenizer has no template gets the same one.
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
_GEMMA_ARCHS = ("gemma3",)

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set first = 0 %}{% set system = '' %}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] | trim + '\n\n' %}{% set first = 1 %}{% endif %}"
    "{% for message in messages[first:] %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{% if role not in ('user', 'model') %}{{ raise_exception('Gemma turns are user or model, got ' + role) }}"
    "{% endif %}"
    "<start_of_turn>{{ role }}\n{{ system if loop.first else '' }}{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
"""Gemma's turn format (see the module docstring), for Gemma vocabularies that come without a template."""
_GEMMA_TURN_TOKENS = ("<start_of_turn>", "<end_of_turn>")


def gemma_merges(tokens: list[str]) -> list[tuple[str, str]]:
    """The BPE merges a SentencePiece-BPE vocabulary implies: each split of a piece into two pieces of the
    vocabulary, ranked by the merged piece's place in the list (Gemma's files list pieces in merge order),
    and for one piece its longer left part first.

    Example:
        >>> gemma_merges(["a", "b", "c", "ab", "bc", "abc"])
        [('a', 'b'), ('b', 'c'), ('ab', 'c'), ('a', 'bc')]
    """
    known = set(tokens)
    merges = []
    for piece in tokens:
        for cut in range(len(piece) - 1, 0, -1):
            left, right = piece[:cut], piece[cut:]
            if left in known and right in known:
                merges.append((left, right))
    return merges


def _gemma_model(tokens: list[str]):
    """Gemma's BPE over ``tokens`` (already respelled), its normalizer, splitter and decoder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens)}
    unk = "<unk>" if "<unk>" in vocab else None
    tok = Tokenizer(models.BPE(vocab, gemma_merges(tokens), unk_token=unk, fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tok


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
    gemma = kind == "llama" and field("general.architecture", None) in _GEMMA_ARCHS
    spelled = list(tokens)
    if gemma:  # pieces of two or more spaces are stored with real spaces; the model reads spaces as U+2581
        tokens = ["\u2581" * len(t) if t and not t.strip(" ") else t for t in tokens]

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
    elif gemma:
        tok = _gemma_model(tokens)
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
    tok.add_tokens(  # kept whole in the text; not the respelled runs of spaces, which the text never holds
        [
            AddedToken(t, special=False, normalized=False)
            for t, s, ty in zip(tokens, spelled, types)
            if ty == _USER_DEFINED and t == s
        ]
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
    if not template and gemma and all(t in tokens for t in _GEMMA_TURN_TOKENS):
        template = GEMMA_CHAT_TEMPLATE
    if template:
        kwargs["chat_template"] = template
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if wrapped.pad_token is None and wrapped.eos_token is not None:
        wrapped.pad_token = wrapped.eos_token
    return wrapped


def load_hf_tokenizer(folder: str | os.PathLike, model_type: str | None = None):
    """transformers' tokenizer from a Hugging Face folder (``tokenizer.json`` & co.), or ``None`` if absent; a
    Gemma 3 tokenizer (``model_type='gemma3_text'``) without a chat template gets :data:`GEMMA_CHAT_TEMPLATE`."""
    folder = pathlib.Path(folder)
    if not any((folder / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    if model_type == "gemma3_text" and not getattr(tok, "chat_template", None):
        vocab = tok.get_vocab()
        if all(t in vocab for t in _GEMMA_TURN_TOKENS):
            tok.chat_template = GEMMA_CHAT_TEMPLATE
    return tok

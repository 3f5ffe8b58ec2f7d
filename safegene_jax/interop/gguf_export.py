"""GGUF export: a loaded Llama-family or Gemma 3 model as one ``.gguf`` file for llama.cpp, Ollama and transformers.

The file is written with ``gguf.GGUFWriter`` under the ``llama`` architecture (Llama, Mistral,
SmolLM2), ``qwen2`` (Qwen2/2.5, whose Q/K/V projections have biases) or ``gemma3`` (Gemma 3 text
decoders), with llama.cpp's tensor names and metadata keys, the tokenizer (vocabulary, merges or scores,
special ids, chat template) and, for ``llama``, llama.cpp's Q/K row permutation. Tensor names are the
inverse of the reader's table (:data:`safegene_jax.models.gguf_file.GGUF_NAME_TABLES`), so the two cannot
drift apart. Weights are streamed tensor by tensor from the model, so the host never holds more than one
tensor beyond the model itself.

Gemma 3 files follow llama.cpp's converter: every RMSNorm weight is stored with Gemma's ``+1`` folded in
(``1 + w``, which the reader and transformers' GGUF loader take off again), Q/K rows are not permuted,
and the file states the sliding window and the global RoPE base. Readers take the rest from Gemma 3's
defaults (a global layer after every five sliding-window ones, local RoPE base 10,000,
``query_pre_attn_scalar`` 256, no final soft cap), so a model that differs there is refused. (llama.cpp
scales the attention scores by the head dimension instead of ``query_pre_attn_scalar``: the same for every
released Gemma 3 this accepts, whose heads are 256 wide, but not for tiny test models.) Linear RoPE scaling
of the global layers (Gemma 3 4B and larger) is written as llama.cpp's converter writes it; transformers'
GGUF loader reads no rope scaling, for ``llama`` files either. The tokenizer is written as llama.cpp writes
Gemma's SentencePiece BPE: ``tokenizer.ggml.model = "llama"``, pieces in merge order (the readers recover
the merges from that order), scores falling with it, runs of two or more spaces spelled with real spaces as
user-defined pieces, byte pieces, no prefix space.

At F32 a round trip is bit for bit, except that ``1 + w`` rounds a Gemma norm weight ``w`` to float32's step
near 1 (``2**-23``): a model read from a Gemma GGUF file (such weights already) comes back bit for bit, and
exporting what was read gives the same file data again.

Everything is checked before a byte is written: the tensor type, the destination, options GGUF cannot
express (a sliding window outside Gemma 3, output or MLP biases, Gemma 3 settings off its defaults),
non-finite weights, and the tokenizer, which is rebuilt from the metadata the way
:func:`safegene_jax.models.load_model` rebuilds it and must encode a set of probe strings to the same ids.
The file appears atomically (temporary file, then ``os.replace``).

Example:
    >>> import safegene_jax as sg
    >>> from safegene_jax.interop.gguf_export import export_gguf
    >>> lm = sg.load_model("smollm2-135m-instruct")  # doctest: +SKIP
    >>> path = export_gguf(lm, "smollm2.Q8_0.gguf", dtype="Q8_0")  # doctest: +SKIP
    >>> sg.load_model(path).config == lm.config  # doctest: +SKIP
    True
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import re
import tempfile
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from safegene_jax.core.errors import ConfigError, NonFiniteError, TokenizerError
from safegene_jax.core.files import usual_modes
from safegene_jax.core.host import to_host
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.models.config import (
    GEMMA3_DEFAULTS,
    GEMMA3_MODEL_TYPES,
    GLOBAL,
    LlamaConfig,
    gemma3_layer_types,
    rope_inv_freq,
)
from safegene_jax.models.gguf_file import GGUF_NAME_TABLES, permute_qk
from safegene_jax.models.loading import nnx_to_hf_name

SUPPORTED_GGUF_TYPES = ("F32", "F16", "BF16", "Q8_0")
"""Tensor types :func:`export_gguf` writes (``dtype=``); 1-D tensors are always F32."""

GGUF_ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gemma3_text": "gemma3"}
"""Our ``model_type`` -> GGUF ``general.architecture``."""

_FILE_TYPES = {"F32": 0, "F16": 1, "Q8_0": 7, "BF16": 32}  # llama.cpp's LlamaFileType
_F16_MAX = 65504.0
_Q8_BLOCK = 32

_WRITTEN_BIASES = re.compile(r"\.self_attn\.[qkv]_proj\.bias")
"""The only biases written: Q/K/V (``qwen2``, ``llama``). The reader also names output-projection and MLP biases,
but GGUF's architectures here do not carry them (:func:`gguf_arch` refuses such models)."""
_GEMMA3_NORM_OFFSET = np.float32(1.0)
"""What llama.cpp folds into every Gemma RMSNorm weight (the reader subtracts it; the exporter adds it)."""

# Token types of llama.cpp's vocabulary (gguf.TokenType).
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")

_GEMMA_SPECIAL_SCORE = -1000.0  # the score llama.cpp's converter gives Gemma's control and user-defined pieces

_PRE_TOKENIZERS = ("gpt2", "smollm", "llama-bpe", "qwen2")
"""``tokenizer.ggml.pre`` names (llama.cpp's) that both our reader and llama.cpp understand."""
_PRE_PROBE = "Hello World's  12345 (x)...\n\n\t y?!  don't ÉTÉ été 中文 🦙\r\n  end "

TOKENIZER_PROBES = (
    "Hello, world! This is a test.",
    "Café, naïve façade, Ærøskøbing, São Paulo, Zürich.",
    "emoji 🦙🚀👍🏽 and 中文 and עברית",
    "  leading spaces, tabs\t\tand   runs\n\n\nof  whitespace  ",
    "Numbers 1234567 and 3.14159, don't I'll we're",
)
"""Strings the rebuilt tokenizer must encode to the same ids as the model's (plus one of special tokens)."""


# ---- checks ------------------------------------------------------------------------------------------


def gguf_type_name(dtype: str) -> str:
    """The canonical name of a requested tensor type (``"q8_0"`` -> ``"Q8_0"``).

    Raises:
        ConfigError: not one of :data:`SUPPORTED_GGUF_TYPES`.

    Example:
        >>> gguf_type_name("q8_0")
        'Q8_0'
    """
    name = str(dtype).upper()
    if name not in SUPPORTED_GGUF_TYPES:
        raise ConfigError(f"GGUF export type {dtype!r} is not supported; supported: {', '.join(SUPPORTED_GGUF_TYPES)}")
    return name


def _gemma3_pattern(layer_types: tuple[str, ...]) -> str:
    """``layer_types`` in short: ``'s'`` for a sliding-window layer, ``'G'`` for a global one."""
    return "".join("G" if t == GLOBAL else "s" for t in layer_types)


def _check_gemma3(config: LlamaConfig) -> None:
    """Refuses a Gemma 3 setting the ``gemma3`` architecture cannot state: readers take it from Gemma 3's defaults.

    Raises:
        ConfigError: naming the first setting off the defaults (layer pattern, local RoPE base,
            ``query_pre_attn_scalar``, final soft cap, rope scaling other than linear, attention biases).
    """
    d = GEMMA3_DEFAULTS
    off = "which GGUF's 'gemma3' architecture cannot state (llama.cpp and transformers assume Gemma 3's"
    want = gemma3_layer_types(config.num_hidden_layers)
    if config.layer_types != want:
        raise ConfigError(
            f"this gemma3_text model's layer pattern {_gemma3_pattern(config.layer_types)} (s: sliding, G: global) "
            f"differs from Gemma 3's {_gemma3_pattern(want)}, {off} global layer after every five local ones)"
        )
    if config.rope_local_theta != d["rope_local_base_freq"]:
        raise ConfigError(
            f"this gemma3_text model's local layers use RoPE base {config.rope_local_theta:g}, {off} "
            f"{d['rope_local_base_freq']:g})"
        )
    if config.query_pre_attn_scalar != d["query_pre_attn_scalar"]:
        raise ConfigError(
            f"this gemma3_text model has query_pre_attn_scalar {config.query_pre_attn_scalar:g}, which GGUF's "
            f"'gemma3' architecture cannot state (transformers assumes Gemma 3's {d['query_pre_attn_scalar']}, "
            "llama.cpp the head dimension)"
        )
    if config.final_logit_softcapping is not None:
        raise ConfigError(
            f"this gemma3_text model soft-caps its logits at {config.final_logit_softcapping:g}, {off} uncapped logits)"
        )
    kind = config.rope_scaling_dict().get("rope_type")
    if kind not in (None, "default", "linear"):
        raise ConfigError(
            f"this gemma3_text model uses {kind!r} rope scaling; GGUF's 'gemma3' architecture carries only linear"
        )
    if config.qkv_bias or config.o_bias or config.mlp_bias:
        raise ConfigError(
            f"this gemma3_text model has {'MLP' if config.mlp_bias else 'attention'} biases, which GGUF's 'gemma3' "
            "architecture does not carry"
        )


def gguf_arch(config: LlamaConfig) -> str:
    """The GGUF architecture of a config, after checking that GGUF can express all of it.

    Raises:
        ConfigError: an unsupported ``model_type``, a sliding window (outside Gemma 3), output / MLP biases,
            or a Gemma 3 setting off Gemma 3's defaults (see the module docstring).

    Example:
        >>> gguf_arch(LlamaConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
        ...                       num_attention_heads=2, num_key_value_heads=2, head_dim=4, model_type="mistral"))
        'llama'
    """
    arch = GGUF_ARCHS.get(config.model_type)
    if arch is None:
        raise ConfigError(
            f"GGUF export of model_type {config.model_type!r} is not supported; supported: {', '.join(GGUF_ARCHS)}"
        )
    if arch == "gemma3":
        _check_gemma3(config)
        return arch
    if config.sliding_window is not None:
        raise ConfigError(
            f"this {config.model_type} model uses a sliding attention window ({config.sliding_window} tokens), which "
            f"GGUF's {arch!r} architecture cannot express; the exported model would attend further than the original"
        )
    if config.o_bias or config.mlp_bias:
        raise ConfigError(
            f"this model has {'output-projection' if config.o_bias else 'MLP'} biases, which GGUF's {arch!r} "
            "architecture does not carry"
        )
    return arch


def _is_gguf(path: pathlib.Path) -> bool:
    """Whether the file at ``path`` starts with the GGUF magic (a file a rerun may replace)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def check_destination(path: str | os.PathLike, overwrite: bool = False) -> pathlib.Path:
    """The destination as a path, once its folder exists, its name ends in ``.gguf`` and writing there loses
    nothing of someone else's: an existing file is replaced only if it is a GGUF file, or with ``overwrite``.

    Raises:
        ConfigError: the folder does not exist, the path is a folder, the name is not ``*.gguf``, or an existing
            file there is not a GGUF file (and ``overwrite`` is false).
    """
    from safegene_jax.core.files import check_file_destination

    dest = pathlib.Path(path).expanduser()
    if dest.is_dir():
        raise ConfigError(f"GGUF destination {dest} is a folder; pass a file path ending in .gguf")
    if dest.suffix.lower() != ".gguf":
        raise ConfigError(f"GGUF destination {dest} must end in .gguf (load_model recognises GGUF files by it)")
    if not dest.parent.is_dir():
        raise ConfigError(f"GGUF destination folder {dest.parent} does not exist; create it first")
    return check_file_destination(dest, ours=_is_gguf, kind="a GGUF file", overwrite=overwrite, what="GGUF destination")


# ---- names and tensor types --------------------------------------------------------------------------


def _inverse(pattern: str, template: str) -> tuple[str, str]:
    r"""``(Hugging Face regex, GGUF template)`` of one ``(GGUF regex, Hugging Face template)`` entry of the reader's
    table: each ``\k`` of the template becomes the pattern's ``k``-th group, each group of the pattern a ``\k``.

    Example:
        >>> hf, gguf_name = _inverse(r"blk\.(\d+)\.attn_q\.(weight|bias)", r"model.layers.\1.self_attn.q_proj.\2")
        >>> re.fullmatch(hf, "model.layers.7.self_attn.q_proj.bias").expand(gguf_name)
        'blk.7.attn_q.bias'
    """
    groups = re.findall(r"\([^()]*\)", pattern)
    pieces = re.split(r"\\(\d)", template)  # literal, group number, literal, ...
    refs = [int(k) for k in pieces[1::2]]
    hf = "".join(groups[int(p) - 1] if i % 2 else re.escape(p) for i, p in enumerate(pieces))
    seen = iter(range(1, len(groups) + 1))
    gguf_template = re.sub(r"\([^()]*\)|\\(.)", lambda m: m.group(1) or f"\\{refs.index(next(seen)) + 1}", pattern)
    return hf, gguf_template


_HF_TO_GGUF = {arch: tuple(_inverse(*entry) for entry in table) for arch, table in GGUF_NAME_TABLES.items()}
"""Hugging Face name -> GGUF name, per GGUF architecture: the reader's table inverted."""


def hf_to_gguf_name(name: str, arch: str = "llama") -> str | None:
    """llama.cpp's name of a Hugging Face tensor name under GGUF architecture ``arch`` (``None`` if none).

    Example:
        >>> hf_to_gguf_name("model.layers.3.self_attn.q_proj.weight")
        'blk.3.attn_q.weight'
        >>> hf_to_gguf_name("model.layers.3.pre_feedforward_layernorm.weight", "gemma3")
        'blk.3.ffn_norm.weight'
    """
    if name.endswith(".bias") and not _WRITTEN_BIASES.search(name):
        return None
    for pattern, target in _HF_TO_GGUF[arch]:
        m = re.fullmatch(pattern, name)
        if m:
            return m.expand(target)
    return None


def tensor_type(shape: tuple[int, ...], dtype: str):
    """The GGML type a tensor of this (numpy, row-major) shape is stored as under ``dtype``.

    1-D tensors (norms, biases, rope factors) stay F32 in every mode, as llama.cpp keeps them. Under
    ``Q8_0``, 2-D tensors whose rows (last axis) are not a multiple of 32 values are stored as F16.

    Example:
        >>> tensor_type((64, 48), "Q8_0").name, tensor_type((64, 96), "Q8_0").name, tensor_type((64,), "F16").name
        ('F16', 'Q8_0', 'F32')
    """
    from gguf import GGMLQuantizationType as T

    if len(shape) < 2 or dtype == "F32":
        return T.F32
    if dtype == "Q8_0" and shape[-1] % _Q8_BLOCK:
        return T.F16
    return {"F16": T.F16, "BF16": T.BF16, "Q8_0": T.Q8_0}[dtype]


def encode_tensor(w: np.ndarray, qtype) -> np.ndarray:
    """``w`` (float) as the bytes or floats GGUFWriter stores for ``qtype`` (F32, F16, BF16 or Q8_0)."""
    from gguf.quants import quantize

    return quantize(np.ascontiguousarray(w, dtype=np.float32), qtype)


def _stored_nbytes(shape: tuple[int, ...], qtype) -> int:
    from gguf import GGML_QUANT_SIZES

    block, type_size = GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape[:-1], dtype=np.int64)) * (shape[-1] // block) * type_size


# ---- metadata --------------------------------------------------------------------------------------


def model_metadata(config: LlamaConfig, arch: str, *, name: str, dtype: str) -> dict[str, Any]:
    """The ``general.*`` and ``{arch}.*`` keys: every hyperparameter llama.cpp and transformers read.

    Example:
        >>> cfg = LlamaConfig(vocab_size=8, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
        ...                   num_attention_heads=2, num_key_value_heads=1, head_dim=4)
        >>> model_metadata(cfg, "llama", name="tiny", dtype="F32")["llama.attention.head_count_kv"]
        1
    """
    from gguf import GGML_QUANT_VERSION

    a = arch
    meta: dict[str, Any] = {
        "general.type": "model",
        "general.name": name,
        "general.file_type": _FILE_TYPES[dtype],
        "general.quantization_version": GGML_QUANT_VERSION,
        f"{a}.vocab_size": config.vocab_size,
        f"{a}.context_length": config.max_position_embeddings,
        f"{a}.embedding_length": config.hidden_size,
        f"{a}.block_count": config.num_hidden_layers,
        f"{a}.feed_forward_length": config.intermediate_size,
        f"{a}.attention.head_count": config.num_attention_heads,
        f"{a}.attention.head_count_kv": config.num_key_value_heads,
        f"{a}.attention.key_length": config.head_dim,
        f"{a}.attention.value_length": config.head_dim,
        f"{a}.attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        f"{a}.rope.freq_base": float(config.rope_theta),
        f"{a}.rope.dimension_count": config.head_dim,
    }
    if arch == "gemma3":  # the rest of Gemma 3's settings are its defaults (checked by gguf_arch)
        meta[f"{a}.attention.sliding_window"] = config.sliding_window
    scaling = config.rope_scaling_dict()
    if scaling.get("rope_type") == "linear":  # Gemma 3: the global layers' only, as llama.cpp applies it
        meta[f"{a}.rope.scaling.type"] = "linear"
        meta[f"{a}.rope.scaling.factor"] = float(scaling["factor"])
    return meta


def rope_factors(config: LlamaConfig) -> np.ndarray | None:
    """llama.cpp's ``rope_freqs.weight`` (per-frequency divisors) for Llama 3 or per-frequency scaling."""
    scaling = config.rope_scaling_dict()
    kind = scaling.get("rope_type")
    if kind == "factors":
        return np.asarray(scaling["factors"], np.float32)
    if kind == "llama3":
        base = rope_inv_freq(config.replace(rope_scaling=None)).astype(np.float64)
        return (base / rope_inv_freq(config).astype(np.float64)).astype(np.float32)
    return None


def _find(obj: Any, kind: str) -> list[dict]:
    """Every JSON object of ``"type": kind`` inside a tokenizers component's JSON."""
    if isinstance(obj, dict):
        found = [obj] if obj.get("type") == kind else []
        return found + [x for v in obj.values() for x in _find(v, kind)]
    if isinstance(obj, list):
        return [x for v in obj for x in _find(v, kind)]
    return []


def _pre_tokenizer_name(backend: Any) -> str:
    """The ``tokenizer.ggml.pre`` whose pre-tokenizer splits text as ``backend``'s does."""
    from safegene_jax.models.tokenizer import tokenizer_from_gguf_fields

    if backend.pre_tokenizer is None:
        raise TokenizerError("the byte-level BPE tokenizer has no pre-tokenizer; GGUF needs one of its named ones")
    want = [s for s, _ in backend.pre_tokenizer.pre_tokenize_str(_PRE_PROBE)]
    for pre in _PRE_TOKENIZERS:
        fields = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a"], "tokenizer.ggml.pre": pre}
        candidate = tokenizer_from_gguf_fields(lambda k, d=None, f=fields: f.get(k, d)).backend_tokenizer
        if [s for s, _ in candidate.pre_tokenizer.pre_tokenize_str(_PRE_PROBE)] == want:
            return pre
    raise TokenizerError(
        "the tokenizer's pre-tokenizer splits text like none of the GGUF pre-tokenizers "
        f"{', '.join(_PRE_TOKENIZERS)}: {json.dumps(json.loads(backend.to_str())['pre_tokenizer'])[:200]}"
    )


def _token_table(tokenizer: Any, vocab_size: int) -> tuple[list[str], set[int], dict[int, bool]]:
    """``(tokens by id, padded to vocab_size with [PADi], the ids the tokenizer has, {added id: special})``."""
    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True)
    top = max(vocab.values()) + 1
    if top > vocab_size:
        raise TokenizerError(
            f"the tokenizer has ids up to {top - 1} but the model embeds only {vocab_size} tokens; "
            "resize the embeddings or fix the tokenizer"
        )
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    for token, i in vocab.items():
        tokens[i] = token
    added = {int(i): bool(t.special) for i, t in tokenizer.backend_tokenizer.get_added_tokens_decoder().items()}
    return tokens, set(vocab.values()), added


def _gemma_vocabulary(tokens: list[str], added: dict[int, bool], kind_of: Callable[[int], int]) -> dict[str, Any]:
    """The ``tokenizer.ggml.*`` vocabulary keys of a Gemma SentencePiece BPE (see :func:`tokenizer_metadata`)."""
    spaces = {i for i, t in enumerate(tokens) if len(t) > 1 and not t.strip("\u2581") and i not in added}
    types = [
        _USER_DEFINED if i in spaces else _BYTE if _BYTE_PIECE.fullmatch(t) and i not in added else kind_of(i)
        for i, t in enumerate(tokens)
    ]
    rank = itertools.count()
    scores = [-float(next(rank)) if ty == _NORMAL else 0.0 if ty == _BYTE else _GEMMA_SPECIAL_SCORE for ty in types]
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": [" " * len(t) if i in spaces else t for i, t in enumerate(tokens)],
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.add_space_prefix": False,
    }


def tokenizer_metadata(tokenizer: Any, config: LlamaConfig) -> dict[str, Any]:
    """The ``tokenizer.*`` keys of a transformers fast tokenizer: vocabulary, merges or scores, ids, template.

    Byte-level BPE tokenizers (SmolLM2, Llama 3, Qwen2) become ``gpt2`` with the matching
    ``tokenizer.ggml.pre``; Unigram ones (what the reader builds from a ``llama`` GGUF vocabulary)
    become ``llama`` with their scores. A Gemma 3 model's SentencePiece BPE (byte fallback) becomes
    ``llama`` as llama.cpp writes Gemma's: pieces by id (Gemma's ids are its merge order, from which the
    readers rebuild the merges), scores ``0, -1, -2, ...`` over the normal pieces in that order (llama.cpp
    merges by them), ``-1000`` for control and user-defined pieces and ``0`` for byte pieces, runs of two or
    more ``▁`` spelled with spaces as user-defined pieces, and no prefix space. Ids past the tokenizer up to
    ``config.vocab_size`` are filled with unused ``[PADi]`` tokens, as llama.cpp does.

    Raises:
        TokenizerError: no fast tokenizer, another kind of model (SentencePiece BPE outside Gemma 3, or a
            Gemma 3 model without one), a pre-tokenizer GGUF cannot name, or more ids than the model embeds.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(
            "the model has no fast (tokenizers) tokenizer; GGUF files carry their tokenizer, so one is needed"
        )
    spec = json.loads(backend.to_str())
    model = spec["model"]
    tokens, present, added = _token_table(tokenizer, config.vocab_size)
    unk = tokenizer.unk_token_id

    def kind_of(i: int) -> int:
        if i in added:
            return _CONTROL if added[i] else _USER_DEFINED
        if i not in present:
            return _UNUSED
        if i == unk:
            return _UNKNOWN
        return _NORMAL

    meta: dict[str, Any] = {}
    if config.model_type in GEMMA3_MODEL_TYPES:
        if model["type"] != "BPE" or not model.get("byte_fallback"):
            fallback = "with" if model.get("byte_fallback") else "without"
            raise TokenizerError(
                "a Gemma 3 model's tokenizer is written to GGUF as Gemma's SentencePiece BPE (BPE with byte "
                f"fallback), but this one is {model['type']} {fallback} byte fallback"
            )
        meta.update(_gemma_vocabulary(tokens, added, kind_of))
    elif model["type"] == "BPE" and not model.get("byte_fallback") and _find(spec.get("pre_tokenizer"), "ByteLevel"):
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        meta["tokenizer.ggml.model"] = "gpt2"
        meta["tokenizer.ggml.pre"] = _pre_tokenizer_name(backend)
        meta["tokenizer.ggml.tokens"] = tokens
        meta["tokenizer.ggml.token_type"] = [kind_of(i) for i in range(len(tokens))]
        meta["tokenizer.ggml.merges"] = merges
    elif model["type"] == "Unigram":
        scores = dict(enumerate(float(s) for _, s in model["vocab"]))
        meta["tokenizer.ggml.model"] = "llama"
        meta["tokenizer.ggml.tokens"] = tokens
        meta["tokenizer.ggml.scores"] = [scores.get(i, 0.0) for i in range(len(tokens))]
        meta["tokenizer.ggml.token_type"] = [
            _BYTE if _BYTE_PIECE.fullmatch(t) and i not in added else kind_of(i) for i, t in enumerate(tokens)
        ]
        meta["tokenizer.ggml.add_space_prefix"] = bool(
            _find(spec.get("normalizer"), "Prepend") or _find(spec.get("pre_tokenizer"), "Metaspace")
        )
    else:
        raise TokenizerError(
            f"tokenizer model {model['type']!r}{' with byte fallback' if model.get('byte_fallback') else ''} "
            "cannot be written to GGUF here; supported: byte-level BPE (gpt2: SmolLM2, Llama 3, Qwen2) and "
            "Unigram (a SentencePiece vocabulary read from a GGUF file)"
        )
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else config.bos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else next(iter(config.eos_token_id), None)
    eot = next((i for i in config.eos_token_id if i != eos), None)
    for key, value in (
        ("bos", bos),
        ("eos", eos),
        ("eot", eot),
        ("unknown", unk),
        ("padding", tokenizer.pad_token_id),
    ):
        if value is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = int(value)
    plain = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a")
    meta["tokenizer.ggml.add_bos_token"] = bool(bos is not None and full[: len(full) - len(plain)] == [bos])
    meta["tokenizer.ggml.add_eos_token"] = bool(eos is not None and len(full) > len(plain) and full[-1] == eos)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one, then the others by name
        for key, text in template.items():
            meta["tokenizer.chat_template" + ("" if key == "default" else f".{key}")] = text
    elif template:
        meta["tokenizer.chat_template"] = template
    return meta


def check_tokenizer_round_trip(tokenizer: Any, meta: dict[str, Any]) -> None:
    """Rebuilds the tokenizer from ``meta`` as the GGUF reader does; it must encode and decode like ``tokenizer``.

    ``meta`` holds the ``tokenizer.*`` keys, and ``general.architecture`` where the reader needs it (``gemma3``).

    Raises:
        TokenizerError: naming the first probe string that encodes or decodes differently.
    """
    from safegene_jax.models.tokenizer import tokenizer_from_gguf_fields

    rebuilt = tokenizer_from_gguf_fields(lambda k, d=None: meta.get(k, d), source="the GGUF metadata")
    specials = [t for t in tokenizer.all_special_tokens if t]
    probes = [*TOKENIZER_PROBES, "x".join(specials) + " done"]
    for text in probes:
        for add in (False, True):
            want = tokenizer.encode(text, add_special_tokens=add)
            got = rebuilt.encode(text, add_special_tokens=add)
            if got != want:
                raise TokenizerError(
                    f"the tokenizer written to GGUF would encode {text!r} (add_special_tokens={add}) as "
                    f"{got[:12]}... instead of {want[:12]}...; this tokenizer cannot be exported faithfully"
                )
        if rebuilt.decode(tokenizer.encode(text)) != tokenizer.decode(tokenizer.encode(text)):
            raise TokenizerError(f"the tokenizer written to GGUF would decode {text!r} differently")
    if meta.get("tokenizer.chat_template") != rebuilt.chat_template:
        raise TokenizerError("the chat template would not survive the GGUF round trip")


# ---- weights -------------------------------------------------------------------------------------


def _order(name: str) -> tuple:
    m = re.match(r"blk\.(\d+)\.", name)
    head = {"token_embd.weight": 0, "rope_freqs.weight": 1}
    return (head.get(name, 2) if not m else 2, int(m.group(1)) if m else 1 << 30, name)


def plan_tensors(params: Any, config: LlamaConfig, arch: str) -> list[tuple[str, tuple[int, ...], Callable]]:
    """``(gguf name, numpy shape, read)`` for each weight, in file order; ``read()`` gives float32 in GGUF layout.

    Q/K weights and biases of the ``llama`` architecture are row-permuted as llama.cpp stores them; the RMSNorm
    weights of ``gemma3`` get the ``+1`` llama.cpp folds in (in float32; the reader takes it off again).

    Raises:
        ConfigError: listing every parameter that has no GGUF name.
    """
    paths, leaves, _ = flatten_with_paths(params)
    plan, unknown = [], []
    for path, leaf in zip(paths, leaves):
        hf, transpose = nnx_to_hf_name(path)
        name = hf_to_gguf_name(hf, arch)
        if name is None:
            unknown.append(hf)
            continue
        heads = None
        if arch == "llama" and re.search(r"\.attn_[qk]\.", name):
            heads = config.num_attention_heads if ".attn_q." in name else config.num_key_value_heads
        fold = arch == "gemma3" and name.endswith("norm.weight")  # the reader's test for the same norms
        shape = tuple(leaf.shape[::-1]) if transpose else tuple(leaf.shape)

        def read(leaf=leaf, transpose=transpose, heads=heads, fold=fold):
            w = to_host(leaf).astype(np.float32)
            w = w.T if transpose else w
            if fold:
                return w + _GEMMA3_NORM_OFFSET
            return permute_qk(w, heads) if heads else w

        plan.append((name, shape, read))
    if unknown:
        raise ConfigError(f"these parameters have no GGUF name: {', '.join(unknown)}")
    factors = rope_factors(config)
    if factors is not None:
        plan.append(("rope_freqs.weight", factors.shape, lambda f=factors: f))
    return sorted(plan, key=lambda item: _order(item[0]))


def check_weights(params: Any, dtype: str) -> None:
    """Every weight is finite, and fits float16 where it will be stored as F16 (one reduction per leaf).

    Raises:
        NonFiniteError: naming the first weight with NaN or infinity.
        ConfigError: a weight too large for float16 under ``F16`` / ``Q8_0``.
    """
    from gguf import GGMLQuantizationType as T

    paths, leaves, _ = flatten_with_paths(params)
    for path, leaf in zip(paths, leaves):
        amax = float(jnp.max(jnp.abs(jnp.asarray(leaf, jnp.float32))))
        if not np.isfinite(amax):
            raise NonFiniteError(f"{path} holds NaN or infinity; a GGUF export would carry it into every runtime")
        if amax > _F16_MAX and tensor_type(tuple(leaf.shape[::-1]), dtype) == T.F16:
            raise ConfigError(
                f"{path} holds values up to {amax:.4g}, beyond float16's {_F16_MAX:g}; export as F32 or BF16"
            )


# ---- writing -------------------------------------------------------------------------------------


def _value_type(value: Any):
    from gguf import GGUFValueType as V

    if isinstance(value, bool):
        return V.BOOL, None
    if isinstance(value, int):
        return V.UINT32, None
    if isinstance(value, float):
        return V.FLOAT32, None
    if isinstance(value, str):
        return V.STRING, None
    first = value[0]
    return V.ARRAY, (V.STRING if isinstance(first, str) else V.FLOAT32 if isinstance(first, float) else V.INT32)


def _write(dest: pathlib.Path, arch: str, meta: dict[str, Any], plan: list, dtype: str) -> None:
    """Writes the file beside ``dest`` under a temporary name, then moves it into place."""
    import gguf

    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch=arch)
        for key, value in meta.items():
            if isinstance(value, list) and not value:
                continue
            vtype, sub = _value_type(value)
            writer.add_key_value(key, value, vtype, sub_type=sub)
        types = [tensor_type(shape, dtype) for _, shape, _ in plan]
        for (name, shape, _), qtype in zip(plan, types):
            writer.add_tensor_info(name, shape, np.dtype(np.float32), _stored_nbytes(shape, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for (_, _, read), qtype in zip(plan, types):
            writer.write_tensor_data(encode_tensor(read(), qtype))
        writer.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        usual_modes(tmp)  # mkstemp makes it private; give it an ordinary file's mode
        os.replace(tmp, dest)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def default_name(source: str) -> str:
    """``general.name`` for a model loaded from ``source``: its file or folder name, without ``.gguf``.

    Example:
        >>> default_name("/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        'SmolLM2-135M-Instruct.Q4_1'
    """
    stem = pathlib.Path(str(source)).name
    return stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem


def export_gguf(
    lm: Any, path: str | os.PathLike, *, dtype: str = "F32", name: str | None = None, overwrite: bool = False
) -> pathlib.Path:
    """Writes a loaded model, tokenizer and chat template included, as one GGUF file.

    Tensor types: ``F32`` stores every tensor as float32; ``F16`` / ``BF16`` store 2-D weights as
    float16 / bfloat16; ``Q8_0`` stores 2-D weights whose rows are a multiple of 32 values as Q8_0
    and the other 2-D weights as F16. 1-D tensors (norms, biases, rope factors) stay F32 in every mode.
    With tied embeddings there is no ``output.weight``, as llama.cpp expects.

    Args:
        lm: a :class:`~safegene_jax.models.LoadedModel` (its ``model``, ``config`` and ``tokenizer``).
        path: the destination file, ``*.gguf``, in an existing folder; replaced atomically.
        dtype: one of :data:`SUPPORTED_GGUF_TYPES` (case-insensitive).
        name: ``general.name`` (default: the source's file or folder name).
        overwrite: replace an existing file at ``path`` that is not a GGUF file (one that is, is replaced anyway).

    Returns:
        The path of the written file.

    Raises:
        ConfigError: unsupported type, architecture or option (sliding window, output/MLP biases, Gemma 3
            settings off its defaults), or a bad destination.
        TokenizerError: no tokenizer, or one GGUF cannot carry faithfully.
        NonFiniteError: a weight holds NaN or infinity.

    Example:
        >>> import safegene_jax as sg
        >>> lm = sg.load_model("smollm2-135m-instruct")  # doctest: +SKIP
        >>> export_gguf(lm, "smollm2.gguf", dtype="Q8_0")  # doctest: +SKIP
        PosixPath('smollm2.gguf')
    """
    dtype = gguf_type_name(dtype)
    dest = check_destination(path, overwrite)
    config = lm.config
    arch = gguf_arch(config)
    if lm.tokenizer is None:
        raise TokenizerError(f"{lm.source} has no tokenizer; GGUF files carry their tokenizer, so one is needed")
    params = lm.params
    plan = plan_tensors(params, config, arch)
    meta = model_metadata(config, arch, name=name or default_name(lm.source), dtype=dtype)
    tok_meta = tokenizer_metadata(lm.tokenizer, config)
    check_tokenizer_round_trip(lm.tokenizer, {"general.architecture": arch, **tok_meta})
    check_weights(params, dtype)
    _write(dest, arch, {**meta, **tok_meta}, plan, dtype)
    return dest

"""Configuration of the decoders: the Llama family (Llama 2/3, Mistral, Qwen2/2.5, SmolLM2) and Gemma 3.

Read from a Hugging Face ``config.json`` (transformers 4 ``rope_theta``/``rope_scaling`` or
transformers 5 ``rope_parameters``) or from GGUF metadata, and written back as a ``config.json``
that transformers reads. :meth:`LlamaConfig.from_hf_dict` returns a :class:`Gemma3Config` for a
``gemma3_text`` config; what a Gemma 3 checkpoint does not state comes from :data:`GEMMA3_DEFAULTS`.

Example:
    >>> cfg = LlamaConfig.from_hf_dict({"model_type": "qwen2", "vocab_size": 64, "hidden_size": 16,
    ...     "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})
    >>> cfg.qkv_bias, cfg.head_dim
    (True, 4)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from safegene_jax.core.errors import ConfigError

LLAMA_MODEL_TYPES = ("llama", "mistral", "qwen2")
GEMMA3_MODEL_TYPES = ("gemma3_text",)
SUPPORTED_MODEL_TYPES = LLAMA_MODEL_TYPES + GEMMA3_MODEL_TYPES
_ROPE_TYPES = ("default", "llama3", "linear", "factors")
_ROPE_KEYS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}
"""The numbers each rope scaling type of a ``config.json`` needs."""


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(d: dict, key: str, default: Any = None) -> Any:
    """``d[key]``, or ``default`` when the key is absent or null."""
    value = d.get(key)
    return default if value is None else value


def _int(source: str, key: str, value: Any) -> int:
    """``value`` when it is a positive int (not a bool); else a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{source}: {key} must be a positive int, got {_shown(value)}")
    return value


def _number(source: str, key: str, value: Any) -> float:
    """``value`` as a float when it is a finite number > 0; else a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{source}: {key} must be a positive number, got {_shown(value)}")
    return float(value)


def _object(source: str, key: str, value: Any) -> dict:
    """A copy of ``value`` when it is a JSON object (``{}`` for null); else a ConfigError naming ``key``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key} must be an object (or null), got {_shown(value)}")
    return dict(value)


def _flag(source: str, d: dict, key: str, default: bool) -> bool:
    value = _get(d, key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be true or false, got {_shown(value)}")
    return value


def _token_ids(source: str, d: dict, key: str, default: Any = None) -> tuple[int, ...]:
    """A token id, a list of them, or null, as a tuple."""
    value = d.get(key, default)
    ids = [] if value is None else value if isinstance(value, list) else [value]
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise ConfigError(f"{source}: {key} must be a token id (an int), a list of them or null, got {_shown(value)}")
    return tuple(ids)


def _token_id(source: str, d: dict, key: str, default: Any = None) -> int | None:
    value = d.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: {key} must be a token id (an int) or null, got {_shown(value)}")
    return value


def _sizes(d: dict, source: str) -> dict[str, int]:
    """The sizes of a ``config.json``, each checked to be a positive int before any arithmetic on it;
    ``num_key_value_heads`` defaults to ``num_attention_heads`` and ``head_dim`` to ``hidden_size`` divided by it
    (only when absent or null: 0 is refused)."""
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    missing = [k for k in required if d.get(k) is None]
    if missing:
        raise ConfigError(f"{source} lacks {', '.join(missing)}")
    sizes = {k: _int(source, k, d[k]) for k in required}
    heads, hidden = sizes["num_attention_heads"], sizes["hidden_size"]
    sizes["num_key_value_heads"] = _int(source, "num_key_value_heads", _get(d, "num_key_value_heads", heads))
    if d.get("head_dim") is None:
        if hidden % heads:
            raise ConfigError(
                f"{source}: hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads}) and head_dim "
                "is not given; state head_dim or fix the sizes"
            )
        sizes["head_dim"] = hidden // heads
    else:
        sizes["head_dim"] = _int(source, "head_dim", d["head_dim"])
    return sizes


def _rope_scaling(source: str, key: str, scaling: dict) -> dict:
    """A rope scaling dict in transformers 5's form (``type`` renamed ``rope_type``; ``{}`` for the default)."""
    if "type" in scaling and "rope_type" not in scaling:
        scaling["rope_type"] = scaling.pop("type")
    kind = scaling.get("rope_type", "default")
    if not isinstance(kind, str):
        raise ConfigError(f"{source}: {key}.rope_type must be a string, got {_shown(kind)}")
    if kind == "default":
        return {}
    for name in _ROPE_KEYS.get(kind, ()):
        _number(source, f"{key}.{name}", scaling.get(name))
    if kind == "llama3" and not scaling["low_freq_factor"] < scaling["high_freq_factor"]:
        raise ConfigError(f"{source}: {key}.low_freq_factor must be below {key}.high_freq_factor")
    return scaling


def _built(cls: type, source: str, **fields: Any) -> Any:
    """``cls(**fields)``, its ConfigError prefixed with ``source``."""
    try:
        return cls(**fields)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Sizes and options of a Llama-family decoder. Hashable, so it can be a static jit argument.

    ``rope_scaling`` is a sorted tuple of ``(key, value)`` pairs (see :meth:`rope_scaling_dict`);
    ``rope_type='factors'`` carries llama.cpp's per-frequency divisors (GGUF ``rope_freqs``).
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    model_type: str = "llama"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: tuple | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None
    bos_token_id: int | None = None
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None

    MODEL_TYPES: ClassVar[tuple[str, ...]] = LLAMA_MODEL_TYPES

    def __post_init__(self):
        if self.model_type not in self.MODEL_TYPES:
            raise ConfigError(
                f"model_type {self.model_type!r} is not supported by {type(self).__name__}; "
                f"supported: {self.MODEL_TYPES}"
            )
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        rope_type = self.rope_scaling_dict().get("rope_type", "default")
        if rope_type not in _ROPE_TYPES:
            raise ConfigError(f"rope_scaling type {rope_type!r} is not supported; supported: {_ROPE_TYPES}")

    def rope_scaling_dict(self) -> dict:
        return dict(self.rope_scaling or ())

    # ---- Hugging Face config.json ---------------------------------------------------------------

    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config.json") -> LlamaConfig:
        """From a parsed Hugging Face ``config.json``; a :class:`Gemma3Config` for ``model_type: gemma3_text``.

        Every value's type is checked before it is used: a bad one is a :class:`ConfigError` naming ``source``
        (the file) and the key.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"{source} must hold a JSON object, got {type(d).__name__}")
        model_type = d.get("model_type", "llama")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(
                f"{source} has model_type {_shown(model_type)}; supported: {SUPPORTED_MODEL_TYPES} "
                "(Llama 2/3, Mistral, Qwen2/2.5, SmolLM2, Gemma 3 text)"
            )
        if model_type in GEMMA3_MODEL_TYPES and not issubclass(cls, Gemma3Config):
            return Gemma3Config.from_hf_dict(d, source)
        sizes = _sizes(d, source)
        rope = _object(source, "rope_parameters", d.get("rope_parameters"))
        theta_key = "rope_parameters.rope_theta" if "rope_theta" in rope else "rope_theta"
        theta = _number(source, theta_key, _get(rope, "rope_theta", _get(d, "rope_theta", 10000.0)))
        rope.pop("rope_theta", None)
        scaling_key = "rope_parameters" if rope else "rope_scaling"
        scaling = _rope_scaling(source, scaling_key, rope or _object(source, "rope_scaling", d.get("rope_scaling")))
        sliding = d.get("sliding_window")
        if model_type == "qwen2" and not _flag(source, d, "use_sliding_window", False):
            sliding = None
        if sliding is not None:
            _int(source, "sliding_window", sliding)
        attention_bias = _flag(source, d, "attention_bias", False)
        return _built(
            cls,
            source,
            **sizes,
            model_type=model_type,
            rms_norm_eps=_number(source, "rms_norm_eps", _get(d, "rms_norm_eps", 1e-5)),
            rope_theta=theta,
            rope_scaling=_freeze(scaling) or None,
            max_position_embeddings=_int(source, "max_position_embeddings", _get(d, "max_position_embeddings", 2048)),
            tie_word_embeddings=_flag(source, d, "tie_word_embeddings", False),
            qkv_bias=True if model_type == "qwen2" else attention_bias,
            o_bias=False if model_type == "qwen2" else attention_bias,
            mlp_bias=_flag(source, d, "mlp_bias", False),
            sliding_window=sliding,
            bos_token_id=_token_id(source, d, "bos_token_id"),
            eos_token_id=_token_ids(source, d, "eos_token_id"),
            pad_token_id=_token_id(source, d, "pad_token_id"),
        )

    def to_hf_dict(self) -> dict:
        """A ``config.json`` dict for transformers (``*ForCausalLM``), in transformers 5's format."""
        arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
        scaling = self.rope_scaling_dict()
        if scaling.get("rope_type") == "factors":
            raise ConfigError(
                "this model uses llama.cpp per-frequency rope factors (from GGUF), which config.json cannot express"
            )
        d = {
            "architectures": [arch[self.model_type]],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": {
                "rope_type": scaling.get("rope_type", "default"),
                "rope_theta": self.rope_theta,
                **{k: v for k, v in scaling.items() if k != "rope_type"},
            },
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id)
            if len(self.eos_token_id) > 1
            else (self.eos_token_id[0] if self.eos_token_id else None),
            "pad_token_id": self.pad_token_id,
        }
        if self.model_type == "qwen2":
            d["use_sliding_window"] = self.sliding_window is not None
            d["sliding_window"] = self.sliding_window
        else:
            d["attention_bias"] = self.qkv_bias
            d["mlp_bias"] = self.mlp_bias
            if self.model_type == "mistral":
                d["sliding_window"] = self.sliding_window
        return d

    def replace(self, **changes) -> LlamaConfig:
        return dataclasses.replace(self, **changes)


SLIDING, GLOBAL = "sliding_attention", "full_attention"
"""Gemma 3's two layer types: local sliding-window attention, and global (full causal) attention."""

GEMMA3_DEFAULTS: dict[str, Any] = {
    "sliding_window_pattern": 6,  # every sixth layer is global: five local layers, then one global
    "rope_local_base_freq": 10_000.0,  # RoPE base of the local layers
    "rope_theta": 1_000_000.0,  # RoPE base of the global layers
    "sliding_window": 4096,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-6,
    "hidden_activation": "gelu_pytorch_tanh",
    "final_logit_softcapping": None,
    "attn_logit_softcapping": None,
    "max_position_embeddings": 131_072,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
}
"""Gemma 3's published defaults (those of transformers' ``Gemma3TextConfig``): the one place for what a
checkpoint does not state. A GGUF file states the sliding window and the global RoPE base, not the layer
pattern, the local RoPE base or the attention scalar."""

_GELU_TANH = ("gelu_pytorch_tanh", "gelu_tanh")


def gemma3_layer_types(num_layers: int, pattern: int = GEMMA3_DEFAULTS["sliding_window_pattern"]) -> tuple[str, ...]:
    """Gemma 3's interleaving: layer ``i`` is global when ``(i + 1) % pattern == 0``, else local.

    Example:
        >>> [t[0] for t in gemma3_layer_types(7)]
        ['s', 's', 's', 's', 's', 'f', 's']
    """
    if not isinstance(pattern, int) or pattern < 1:
        raise ConfigError(f"sliding_window_pattern must be a positive int, got {pattern!r}")
    return tuple(GLOBAL if (i + 1) % pattern == 0 else SLIDING for i in range(num_layers))


@dataclasses.dataclass(frozen=True)
class Gemma3Config(LlamaConfig):
    """Sizes and options of a Gemma 3 text decoder (``Gemma3ForCausalLM``, model_type ``gemma3_text``).

    Besides the Llama fields: ``layer_types`` (one of ``sliding_attention`` / ``full_attention`` per layer;
    empty: Gemma 3's pattern of five local layers then one global), ``sliding_window`` (how many tokens a
    local layer sees, itself included), ``rope_theta`` (global layers; ``rope_scaling`` applies to them only)
    and ``rope_local_theta`` (local layers), ``query_pre_attn_scalar`` (scores are scaled by its inverse
    square root), and an optional tanh soft cap of the final logits. ``attn_logit_softcapping`` is read and
    written back but not applied: Gemma 3 has no attention soft cap, and transformers' Gemma 3 ignores it too.

    Example:
        >>> cfg = Gemma3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=6,
        ...                    num_attention_heads=2, num_key_value_heads=1, head_dim=8, sliding_window=4)
        >>> cfg.layer_types.count("full_attention"), cfg.is_sliding(5), cfg.rope_local_theta
        (1, False, 10000.0)
    """

    MODEL_TYPES: ClassVar[tuple[str, ...]] = GEMMA3_MODEL_TYPES

    model_type: str = "gemma3_text"
    rms_norm_eps: float = GEMMA3_DEFAULTS["rms_norm_eps"]
    rope_theta: float = GEMMA3_DEFAULTS["rope_theta"]
    tie_word_embeddings: bool = True
    sliding_window: int | None = GEMMA3_DEFAULTS["sliding_window"]
    layer_types: tuple[str, ...] = ()
    rope_local_theta: float = GEMMA3_DEFAULTS["rope_local_base_freq"]
    query_pre_attn_scalar: float = GEMMA3_DEFAULTS["query_pre_attn_scalar"]
    hidden_activation: str = GEMMA3_DEFAULTS["hidden_activation"]
    final_logit_softcapping: float | None = None
    attn_logit_softcapping: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if not self.layer_types:
            object.__setattr__(self, "layer_types", gemma3_layer_types(self.num_hidden_layers))
        object.__setattr__(self, "layer_types", tuple(self.layer_types))
        if len(self.layer_types) != self.num_hidden_layers:
            raise ConfigError(
                f"layer_types has {len(self.layer_types)} entries but num_hidden_layers is {self.num_hidden_layers}"
            )
        odd = sorted({t for t in self.layer_types if t not in (SLIDING, GLOBAL)})
        if odd:
            raise ConfigError(f"layer_types has {odd[0]!r}; each entry must be {SLIDING!r} or {GLOBAL!r}")
        if SLIDING in self.layer_types and not (isinstance(self.sliding_window, int) and self.sliding_window >= 1):
            raise ConfigError(
                f"layer_types has {SLIDING!r} layers but sliding_window is {self.sliding_window!r}; "
                "it must be a positive int"
            )
        if self.hidden_activation not in _GELU_TANH:
            raise ConfigError(
                f"hidden_activation {self.hidden_activation!r} is not supported for Gemma 3; supported: {_GELU_TANH}"
            )
        if not self.query_pre_attn_scalar > 0:
            raise ConfigError(f"query_pre_attn_scalar must be > 0, got {self.query_pre_attn_scalar!r}")
        for name in ("final_logit_softcapping", "attn_logit_softcapping"):
            cap = getattr(self, name)
            if cap is not None and not cap > 0:
                raise ConfigError(f"{name} must be > 0 or null, got {cap!r}")

    def is_sliding(self, layer: int) -> bool:
        """Whether ``layer`` attends through the sliding window (a local layer)."""
        return self.layer_types[layer] == SLIDING

    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config.json") -> Gemma3Config:
        """From a parsed Hugging Face ``config.json`` of ``Gemma3ForCausalLM`` (transformers 4 or 5 format)."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source} must hold a JSON object, got {type(d).__name__}")
        model_type = d.get("model_type", "gemma3_text")
        if model_type not in GEMMA3_MODEL_TYPES:
            raise ConfigError(f"{source} has model_type {_shown(model_type)}; expected one of {GEMMA3_MODEL_TYPES}")
        sizes = _sizes(d, source)
        if _flag(source, d, "use_bidirectional_attention", False):
            raise ConfigError(f"{source}: use_bidirectional_attention is true: bidirectional Gemma 3 is not supported")
        defaults = GEMMA3_DEFAULTS
        layers = sizes["num_hidden_layers"]
        pattern = d.get("sliding_window_pattern")
        if pattern is not None:
            _int(source, "sliding_window_pattern", pattern)
        layer_types = d.get("layer_types")
        if layer_types is None:
            layer_types = gemma3_layer_types(layers, defaults["sliding_window_pattern"] if pattern is None else pattern)
        elif not isinstance(layer_types, list | tuple) or not all(isinstance(t, str) for t in layer_types):
            raise ConfigError(f"{source}: layer_types must be a list of strings, got {_shown(layer_types)}")
        elif len(layer_types) != layers:
            raise ConfigError(f"{source}: layer_types has {len(layer_types)} entries but num_hidden_layers is {layers}")
        elif pattern is not None and tuple(layer_types) != gemma3_layer_types(layers, pattern):
            raise ConfigError(
                f"{source}: layer_types contradicts sliding_window_pattern={pattern!r} (a global layer every "
                f"{pattern} layers)"
            )
        # transformers 5: rope_parameters per layer type; transformers 4: rope_theta, rope_local_base_freq, rope_scaling
        rope = _object(source, "rope_parameters", d.get("rope_parameters"))
        per_type = SLIDING in rope or GLOBAL in rope
        global_key = f"rope_parameters.{GLOBAL}" if per_type else "rope_parameters"
        global_rope = _object(source, global_key, rope.get(GLOBAL)) if per_type else rope
        local_rope = _object(source, f"rope_parameters.{SLIDING}", rope.get(SLIDING)) if per_type else {}
        theta = _number(
            source,
            f"{global_key}.rope_theta" if "rope_theta" in global_rope else "rope_theta",
            _get(global_rope, "rope_theta", _get(d, "rope_theta", defaults["rope_theta"])),
        )
        local_theta = _number(
            source,
            f"rope_parameters.{SLIDING}.rope_theta" if "rope_theta" in local_rope else "rope_local_base_freq",
            _get(local_rope, "rope_theta", _get(d, "rope_local_base_freq", defaults["rope_local_base_freq"])),
        )
        global_rope.pop("rope_theta", None)
        local_rope.pop("rope_theta", None)
        if local_rope.get("rope_type", "default") != "default":
            raise ConfigError(
                f"{source}: rope_parameters.{SLIDING}.rope_type {_shown(local_rope['rope_type'])} is not supported; "
                "local layers use plain rotary embeddings"
            )
        scaling_key = global_key if global_rope else "rope_scaling"
        scaling = _rope_scaling(
            source, scaling_key, global_rope or _object(source, "rope_scaling", d.get("rope_scaling"))
        )
        sliding = d.get("sliding_window", defaults["sliding_window"])
        if sliding is not None:
            _int(source, "sliding_window", sliding)
        activation = d.get("hidden_activation") or d.get("hidden_act") or defaults["hidden_activation"]
        caps = {}
        for key in ("final_logit_softcapping", "attn_logit_softcapping"):
            caps[key] = None if d.get(key) is None else _number(source, key, d[key])
        scalar = _get(d, "query_pre_attn_scalar", defaults["query_pre_attn_scalar"])
        _number(source, "query_pre_attn_scalar", scalar)
        attention_bias = _flag(source, d, "attention_bias", False)
        return _built(
            cls,
            source,
            **sizes,
            model_type=model_type,
            rms_norm_eps=_number(source, "rms_norm_eps", _get(d, "rms_norm_eps", defaults["rms_norm_eps"])),
            rope_theta=theta,
            rope_scaling=_freeze(scaling) or None,
            max_position_embeddings=_int(
                source,
                "max_position_embeddings",
                _get(d, "max_position_embeddings", defaults["max_position_embeddings"]),
            ),
            tie_word_embeddings=_flag(source, d, "tie_word_embeddings", True),
            qkv_bias=attention_bias,
            o_bias=attention_bias,
            sliding_window=sliding,
            bos_token_id=_token_id(source, d, "bos_token_id", defaults["bos_token_id"]),
            eos_token_id=_token_ids(source, d, "eos_token_id", defaults["eos_token_id"]),
            pad_token_id=_token_id(source, d, "pad_token_id", defaults["pad_token_id"]),
            layer_types=tuple(layer_types),
            rope_local_theta=local_theta,
            query_pre_attn_scalar=scalar,
            hidden_activation=activation,
            **caps,
        )

    def to_hf_dict(self) -> dict:
        """A ``config.json`` dict that transformers loads as ``Gemma3ForCausalLM`` (transformers 5's format, with
        transformers 4's rope keys beside it)."""
        scaling = self.rope_scaling_dict()
        if scaling.get("rope_type") == "factors":
            raise ConfigError(
                "this model uses llama.cpp per-frequency rope factors (from GGUF), which config.json cannot express"
            )
        global_rope = {
            "rope_type": scaling.get("rope_type", "default"),
            "rope_theta": self.rope_theta,
            **{k: v for k, v in scaling.items() if k != "rope_type"},
        }
        eos = self.eos_token_id
        return {
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_activation": self.hidden_activation,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": {
                SLIDING: {"rope_type": "default", "rope_theta": self.rope_local_theta},
                GLOBAL: global_rope,
            },
            "rope_theta": self.rope_theta,
            "rope_local_base_freq": self.rope_local_theta,
            "layer_types": list(self.layer_types),
            "sliding_window": self.sliding_window,
            "query_pre_attn_scalar": self.query_pre_attn_scalar,
            "final_logit_softcapping": self.final_logit_softcapping,
            "attn_logit_softcapping": self.attn_logit_softcapping,
            "attention_bias": self.qkv_bias,
            "use_bidirectional_attention": False,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(eos) if len(eos) > 1 else (eos[0] if eos else None),
            "pad_token_id": self.pad_token_id,
        }

    def replace(self, **changes) -> Gemma3Config:
        """A copy with ``changes``; a new layer count without new ``layer_types`` gets Gemma 3's pattern."""
        if "num_hidden_layers" in changes and "layer_types" not in changes:
            changes["layer_types"] = ()
        return dataclasses.replace(self, **changes)


def rope_inv_freq(cfg: LlamaConfig, *, theta: float | None = None, scaled: bool = True) -> np.ndarray:
    """Inverse frequencies of the rotary embedding, with Llama 3 / linear / per-frequency scaling.

    ``theta`` replaces the config's base (Gemma 3's local layers); ``scaled=False`` leaves out the scaling.
    """
    dim = cfg.head_dim
    base = cfg.rope_theta if theta is None else theta
    inv = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    scaling = cfg.rope_scaling_dict() if scaled else {}
    kind = scaling.get("rope_type", "default")
    if kind == "linear":
        inv = inv / scaling["factor"]
    elif kind == "factors":
        factors = np.asarray(scaling["factors"], np.float64)
        if factors.shape != inv.shape:
            raise ConfigError(f"rope factors have {factors.size} entries; expected {inv.size} (head_dim / 2)")
        inv = inv / factors
    elif kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    return inv.astype(np.float32)

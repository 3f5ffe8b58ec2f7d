"""GGUF files (llama.cpp): configuration from metadata, dequantized tensors, tokenizer.

Tensors are dequantized with the ``gguf`` package (F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_1, Q4_K, Q6_K
and the other types it knows) and renamed to Hugging Face names. For the ``llama`` architecture the
Q/K rows that llama.cpp's converter permuted (for its interleaved rotary layout) are put back in
Hugging Face's rotate-half order; ``gemma3`` files are not permuted, but their converter stored every
RMSNorm weight with Gemma's ``+1`` folded in, which is taken off again (as transformers' GGUF loader
does). The tokenizer is rebuilt from the file's metadata with ``tokenizers`` (no torch), chat template
included.

Gemma 3 files state the sliding window and the global RoPE base; the layer pattern (five local layers,
then a global one), the local RoPE base and the attention scalar come from
:data:`~safegene_jax.models.config.GEMMA3_DEFAULTS` unless the file states them too (llama.cpp's
``attention.sliding_window_pattern``, ``rope.freq_base_swa``, ``attention.scale``).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from safegene_jax.core.errors import CheckpointError, ConfigError, ModelNotFoundError
from safegene_jax.models.config import GEMMA3_DEFAULTS, GLOBAL, SLIDING, Gemma3Config, LlamaConfig, gemma3_layer_types
from safegene_jax.models.loading import SourceTensor

SUPPORTED_ARCHS = ("llama", "qwen2", "gemma3")

_GGUF_TO_HF = (
    (r"token_embd\.weight", "model.embed_tokens.weight"),
    (r"output_norm\.weight", "model.norm.weight"),
    (r"output\.weight", "lm_head.weight"),
    (r"blk\.(\d+)\.attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"blk\.(\d+)\.attn_q\.(weight|bias)", r"model.layers.\1.self_attn.q_proj.\2"),
    (r"blk\.(\d+)\.attn_k\.(weight|bias)", r"model.layers.\1.self_attn.k_proj.\2"),
    (r"blk\.(\d+)\.attn_v\.(weight|bias)", r"model.layers.\1.self_attn.v_proj.\2"),
    (r"blk\.(\d+)\.attn_output\.(weight|bias)", r"model.layers.\1.self_attn.o_proj.\2"),
    (r"blk\.(\d+)\.ffn_gate\.(weight|bias)", r"model.layers.\1.mlp.gate_proj.\2"),
    (r"blk\.(\d+)\.ffn_up\.(weight|bias)", r"model.layers.\1.mlp.up_proj.\2"),
    (r"blk\.(\d+)\.ffn_down\.(weight|bias)", r"model.layers.\1.mlp.down_proj.\2"),
)
_LLAMA_NORMS = ((r"blk\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),)
_GEMMA3_NORMS = (  # Gemma's four norms per block, and the query and key norms
    (r"blk\.(\d+)\.post_attention_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"blk\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.pre_feedforward_layernorm.weight"),
    (r"blk\.(\d+)\.post_ffw_norm\.weight", r"model.layers.\1.post_feedforward_layernorm.weight"),
    (r"blk\.(\d+)\.attn_q_norm\.weight", r"model.layers.\1.self_attn.q_norm.weight"),
    (r"blk\.(\d+)\.attn_k_norm\.weight", r"model.layers.\1.self_attn.k_norm.weight"),
)
GGUF_NAME_TABLES = {
    "llama": _GGUF_TO_HF + _LLAMA_NORMS,
    "qwen2": _GGUF_TO_HF + _LLAMA_NORMS,
    "gemma3": _GGUF_TO_HF + _GEMMA3_NORMS,
}
"""GGUF tensor name -> Hugging Face name, per architecture (``ffn_norm`` is the post-attention norm of a Llama
block, the pre-MLP norm of a Gemma block): ``(regex, template)`` pairs whose groups are plain ``(...)``. The GGUF
exporter (:mod:`safegene_jax.interop.gguf_export`) inverts this table rather than keeping its own."""


def gguf_to_hf_name(name: str, arch: str = "llama") -> str | None:
    for pattern, target in GGUF_NAME_TABLES[arch]:
        m = re.fullmatch(pattern, name)
        if m:
            return m.expand(target)
    return None


def permute_qk(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's permutation of Q/K rows (rotate-half -> interleaved pairs), per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of :func:`permute_qk`: back to Hugging Face's rotate-half row order."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class GGUFFile:
    """An open GGUF file: ``.config``, ``.tensors()`` (HF names) and ``.tokenizer()``."""

    def __init__(self, path: str | os.PathLike):
        import gguf

        if not os.path.exists(path):
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        try:
            self.reader = gguf.GGUFReader(path)
        except Exception as e:  # the reader raises ValueError or struct errors on garbage
            raise CheckpointError(f"{path} is not a readable GGUF file: {e}") from e
        self.path = str(path)
        self.arch = self.field("general.architecture")
        if self.arch not in SUPPORTED_ARCHS:
            raise ConfigError(
                f"{path}: GGUF architecture {self.arch!r} is not supported; supported: {', '.join(SUPPORTED_ARCHS)}"
            )
        self._tensors = {t.name: t for t in self.reader.tensors}
        self.config = self._config()

    def field(self, key: str, default: Any = KeyError) -> Any:
        f = self.reader.fields.get(key)
        if f is None:
            if default is KeyError:
                raise ConfigError(f"{self.path} lacks the metadata key {key!r}")
            return default
        return f.contents()

    def _config(self) -> LlamaConfig:
        a = self.arch
        heads = int(self.field(f"{a}.attention.head_count"))
        hidden = int(self.field(f"{a}.embedding_length"))
        tokens = self.field("tokenizer.ggml.tokens", None)
        vocab = self.field(f"{a}.vocab_size", None) or (len(tokens) if tokens else None)
        if vocab is None:
            vocab = int(self._tensors["token_embd.weight"].shape[1])
        scaling = None
        if "rope_freqs.weight" in self._tensors:
            factors = tuple(float(x) for x in np.asarray(self._tensors["rope_freqs.weight"].data, np.float32))
            scaling = (("factors", factors), ("rope_type", "factors"))
        elif self.field(f"{a}.rope.scaling.type", None) == "linear":
            scaling = (("factor", float(self.field(f"{a}.rope.scaling.factor"))), ("rope_type", "linear"))
        eos = self.field("tokenizer.ggml.eos_token_id", None)
        eot = self.field("tokenizer.ggml.eot_token_id", None)
        if a == "gemma3" and eot is None and tokens and "<end_of_turn>" in tokens:
            eot = tokens.index("<end_of_turn>")  # a Gemma turn ends there (Gemma's generation config stops there too)
        eos_ids = tuple(int(x) for x in dict.fromkeys(i for i in (eos, eot) if i is not None))
        common = dict(
            vocab_size=int(vocab),
            hidden_size=hidden,
            intermediate_size=int(self.field(f"{a}.feed_forward_length")),
            num_hidden_layers=int(self.field(f"{a}.block_count")),
            num_attention_heads=heads,
            num_key_value_heads=int(self.field(f"{a}.attention.head_count_kv", heads)),
            head_dim=int(
                self.field(f"{a}.attention.key_length", None)
                or self.field(f"{a}.rope.dimension_count", None)
                or hidden // heads
            ),
            rope_scaling=scaling,
            tie_word_embeddings="output.weight" not in self._tensors,
            qkv_bias="blk.0.attn_q.bias" in self._tensors,
            bos_token_id=self.field("tokenizer.ggml.bos_token_id", None),
            eos_token_id=eos_ids,
            pad_token_id=self.field("tokenizer.ggml.padding_token_id", None),
        )
        if a == "gemma3":
            return self._gemma3_config(common)
        return LlamaConfig(
            **common,
            model_type="qwen2" if a == "qwen2" else "llama",
            rms_norm_eps=float(self.field(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=float(self.field(f"{a}.rope.freq_base", 10000.0)),
            max_position_embeddings=int(self.field(f"{a}.context_length", 2048)),
        )

    def _gemma3_config(self, common: dict) -> Gemma3Config:
        """What the file states, the rest from Gemma 3's defaults (one table: ``GEMMA3_DEFAULTS``)."""
        d = GEMMA3_DEFAULTS
        layers = common["num_hidden_layers"]
        pattern = self.field("gemma3.attention.sliding_window_pattern", None)
        if pattern is None:
            layer_types = gemma3_layer_types(layers)
        elif isinstance(pattern, list):  # llama.cpp's per-layer form: true where the layer is local
            layer_types = tuple(SLIDING if p else GLOBAL for p in pattern)
        else:
            layer_types = gemma3_layer_types(layers, int(pattern))
        scale = self.field("gemma3.attention.scale", None)  # the scores' scale itself, when a file states it
        return Gemma3Config(
            **common,
            rms_norm_eps=float(self.field("gemma3.attention.layer_norm_rms_epsilon", d["rms_norm_eps"])),
            rope_theta=float(self.field("gemma3.rope.freq_base", d["rope_theta"])),
            max_position_embeddings=int(self.field("gemma3.context_length", d["max_position_embeddings"])),
            sliding_window=int(self.field("gemma3.attention.sliding_window", d["sliding_window"])),
            layer_types=layer_types,
            rope_local_theta=float(self.field("gemma3.rope.freq_base_swa", d["rope_local_base_freq"])),
            query_pre_attn_scalar=d["query_pre_attn_scalar"] if scale is None else float(scale) ** -2,
            final_logit_softcapping=self.field("gemma3.final_logit_softcapping", d["final_logit_softcapping"]),
        )

    def read(self, name: str) -> np.ndarray:
        """A tensor by its GGUF name, dequantized to float32 (F16/BF16 kept), in numpy (row-major) shape."""
        from gguf.quants import dequantize

        t = self._tensors[name]
        shape = tuple(int(d) for d in reversed(t.shape))
        return np.asarray(dequantize(t.data, t.tensor_type)).reshape(shape)

    def tensors(self) -> list[SourceTensor]:
        """Every weight with its Hugging Face name; Q/K rows unpermuted for the llama architecture, the folded
        ``+1`` taken off the norm weights for gemma3."""
        cfg = self.config
        out = []
        for name, t in self._tensors.items():
            if name == "rope_freqs.weight":
                continue  # folded into the config
            hf = gguf_to_hf_name(name, self.arch) or name
            shape = tuple(int(d) for d in reversed(t.shape))
            heads = None
            if self.arch == "llama" and re.search(r"attn_[qk]\.", name):
                heads = cfg.num_attention_heads if ".attn_q." in name else cfg.num_key_value_heads
            unfold = self.arch == "gemma3" and name.endswith("norm.weight")

            def read(name=name, heads=heads, unfold=unfold):
                w = self.read(name)
                if unfold:
                    return w.astype(np.float32) - np.float32(1.0)
                return unpermute_qk(w, heads) if heads else w

            out.append(SourceTensor(hf, shape, read))
        return out

    def tokenizer(self):
        """A transformers fast tokenizer built from the file's metadata (see :mod:`.tokenizer`)."""
        from safegene_jax.models.tokenizer import tokenizer_from_gguf_fields

        return tokenizer_from_gguf_fields(self.field, source=self.path)

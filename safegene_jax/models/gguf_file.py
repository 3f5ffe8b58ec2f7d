"""GGUF files (llama.cpp): configuration from metadata, dequantized tensors, tokenizer.

Tensors are dequantized with the ``gguf`` package (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K and
the other types it knows), renamed to Hugging Face names, and for the ``llama`` architecture the
Q/K rows that llama.cpp's converter permuted (for its interleaved rotary layout) are put back in
Hugging Face's rotate-half order. The tokenizer is rebuilt from the file's metadata with
``tokenizers`` (no torch), chat template included.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from safegene_jax.core.errors import CheckpointError, ConfigError, ModelNotFoundError
from safegene_jax.models.config import LlamaConfig
from safegene_jax.models.loading import SourceTensor

SUPPORTED_ARCHS = ("llama", "qwen2")

_GGUF_TO_HF = (
    (r"token_embd\.weight", "model.embed_tokens.weight"),
    (r"output_norm\.weight", "model.norm.weight"),
    (r"output\.weight", "lm_head.weight"),
    (r"blk\.(\d+)\.attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"blk\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"blk\.(\d+)\.attn_q\.(weight|bias)", r"model.layers.\1.self_attn.q_proj.\2"),
    (r"blk\.(\d+)\.attn_k\.(weight|bias)", r"model.layers.\1.self_attn.k_proj.\2"),
    (r"blk\.(\d+)\.attn_v\.(weight|bias)", r"model.layers.\1.self_attn.v_proj.\2"),
    (r"blk\.(\d+)\.attn_output\.(weight|bias)", r"model.layers.\1.self_attn.o_proj.\2"),
    (r"blk\.(\d+)\.ffn_gate\.(weight|bias)", r"model.layers.\1.mlp.gate_proj.\2"),
    (r"blk\.(\d+)\.ffn_up\.(weight|bias)", r"model.layers.\1.mlp.up_proj.\2"),
    (r"blk\.(\d+)\.ffn_down\.(weight|bias)", r"model.layers.\1.mlp.down_proj.\2"),
)


def gguf_to_hf_name(name: str) -> str | None:
    for pattern, target in _GGUF_TO_HF:
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
            raise ConfigError(f"GGUF architecture {self.arch!r} is not supported; supported: {SUPPORTED_ARCHS}")
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
        eos_ids = tuple(int(x) for x in dict.fromkeys(i for i in (eos, eot) if i is not None))
        return LlamaConfig(
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
            model_type="qwen2" if a == "qwen2" else "llama",
            rms_norm_eps=float(self.field(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=float(self.field(f"{a}.rope.freq_base", 10000.0)),
            rope_scaling=scaling,
            max_position_embeddings=int(self.field(f"{a}.context_length", 2048)),
            tie_word_embeddings="output.weight" not in self._tensors,
            qkv_bias="blk.0.attn_q.bias" in self._tensors,
            bos_token_id=self.field("tokenizer.ggml.bos_token_id", None),
            eos_token_id=eos_ids,
            pad_token_id=self.field("tokenizer.ggml.padding_token_id", None),
        )

    def read(self, name: str) -> np.ndarray:
        """A tensor by its GGUF name, dequantized to float32 (F16/BF16 kept), in numpy (row-major) shape."""
        from gguf.quants import dequantize

        t = self._tensors[name]
        shape = tuple(int(d) for d in reversed(t.shape))
        return np.asarray(dequantize(t.data, t.tensor_type)).reshape(shape)

    def tensors(self) -> list[SourceTensor]:
        """Every weight with its Hugging Face name; Q/K rows unpermuted for the llama architecture."""
        cfg = self.config
        out = []
        for name, t in self._tensors.items():
            if name == "rope_freqs.weight":
                continue  # folded into the config
            hf = gguf_to_hf_name(name) or name
            shape = tuple(int(d) for d in reversed(t.shape))
            heads = None
            if self.arch == "llama" and re.search(r"attn_[qk]\.", name):
                heads = cfg.num_attention_heads if ".attn_q." in name else cfg.num_key_value_heads

            def read(name=name, heads=heads):
                w = self.read(name)
                return unpermute_qk(w, heads) if heads else w

            out.append(SourceTensor(hf, shape, read))
        return out

    def tokenizer(self):
        """A transformers fast tokenizer built from the file's metadata (see :mod:`.tokenizer`)."""
        from safegene_jax.models.tokenizer import tokenizer_from_gguf_fields

        return tokenizer_from_gguf_fields(self.field, source=self.path)

"""Synthetic Llama-shaped parameter trees with a planted safety direction.

Random weights in the Hugging Face layout of a Llama-family model, and a copy "degraded" by removing a
known low-rank direction from chosen layers: ground truth for checking extraction, layer scoring and
compression without downloading a model. ``SMOLLM2_135M`` has the shapes of SmolLM2-135M-Instruct.

Example:
    >>> from safegene_jax.models.synthetic import Shape, llama_params, remove_direction
    >>> shape = Shape(layers=4, hidden=16, ffn=32, heads=4, kv_heads=2)
    >>> aligned = llama_params(shape, seed=0)
    >>> degraded = remove_direction(aligned, layers=[1, 2], scale=0.5, seed=1)
    >>> sorted(aligned["model"]["layers"])
    ['0', '1', '2', '3']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Shape:
    """Sizes of a Llama-family decoder."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int = 256

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


SMOLLM2_135M = Shape(layers=30, hidden=576, ffn=1536, heads=9, kv_heads=3, vocab=49152)

_PLANTED = ("self_attn.o_proj", "mlp.down_proj")


def _matrices(shape: Shape) -> dict[str, tuple[int, ...]]:
    kv = shape.kv_heads * shape.head_dim
    return {
        "self_attn.q_proj": (shape.hidden, shape.hidden),
        "self_attn.k_proj": (kv, shape.hidden),
        "self_attn.v_proj": (kv, shape.hidden),
        "self_attn.o_proj": (shape.hidden, shape.hidden),
        "mlp.gate_proj": (shape.ffn, shape.hidden),
        "mlp.up_proj": (shape.ffn, shape.hidden),
        "mlp.down_proj": (shape.hidden, shape.ffn),
        "input_layernorm": (shape.hidden,),
        "post_attention_layernorm": (shape.hidden,),
    }


def _nest(flat: dict[str, jax.Array]) -> dict:
    out: dict = {}
    for dotted, leaf in flat.items():
        node = out
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = {"weight": leaf}
    return out


def llama_params(shape: Shape, seed: int = 0, dtype=jnp.float32) -> dict:
    """Random weights (std 0.02, norms at 1) named like a Hugging Face Llama checkpoint."""
    key = jax.random.PRNGKey(seed)
    normal = jax.jit(lambda k, s: (0.02 * jax.random.normal(k, s)).astype(dtype), static_argnums=1)
    flat: dict[str, jax.Array] = {}
    for i in range(shape.layers):
        for name, s in _matrices(shape).items():
            key, sub = jax.random.split(key)
            flat[f"layers.{i}.{name}"] = jnp.ones(s, dtype) if len(s) == 1 else normal(sub, s)
    key, sub = jax.random.split(key)
    flat["embed_tokens"] = normal(sub, (shape.vocab, shape.hidden))
    flat["norm"] = jnp.ones((shape.hidden,), dtype)
    return {"model": _nest(flat)}


def remove_direction(
    aligned: dict, layers: Sequence[int], scale: float = 0.05, noise: float = 0.0, seed: int = 1
) -> dict:
    """A copy of ``aligned`` with a rank-1 direction of norm ``scale`` removed from ``layers``.

    The direction goes into each chosen layer's attention output and MLP down projections, so the
    safety vector ``aligned - degraded`` is exactly that direction there (plus ``noise`` std everywhere).
    """
    key = jax.random.PRNGKey(seed)
    blocks = aligned["model"]["layers"]
    new_blocks = {}
    for idx, block in blocks.items():
        new_block = jax.tree.map(lambda x: x, block)
        for name in _PLANTED:
            mod, proj = name.split(".")
            w = block[mod][proj]["weight"]
            delta = jnp.zeros(w.shape, jnp.float32)
            if int(idx) in set(layers):
                key, k1, k2 = jax.random.split(key, 3)
                u = jax.random.normal(k1, (w.shape[0],))
                v = jax.random.normal(k2, (w.shape[1],))
                delta = scale * jnp.outer(u / jnp.linalg.norm(u), v / jnp.linalg.norm(v))
            if noise:
                key, k3 = jax.random.split(key)
                delta = delta + noise * jax.random.normal(k3, w.shape)
            new_block[mod][proj] = {"weight": (w.astype(jnp.float32) - delta).astype(w.dtype)}
        new_blocks[idx] = new_block
    out = dict(aligned["model"])
    out["layers"] = new_blocks
    return {"model": out}

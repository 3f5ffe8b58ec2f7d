"""Tiny Llama-shaped parameter trees in the layouts the library must handle."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx

D, F = 8, 16


def hf_dict(seed: int = 0, layers: int = 3, dtype=np.float32) -> dict:
    """Hugging Face style flat names nested as dicts: ``model.layers.N.self_attn.q_proj.weight``."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return jnp.asarray(rng.standard_normal(shape).astype(np.float32), dtype)

    blocks = {
        str(i): {
            "self_attn": {name: {"weight": w(D, D)} for name in ("q_proj", "k_proj", "v_proj", "o_proj")},
            "mlp": {"gate_proj": {"weight": w(F, D)}, "up_proj": {"weight": w(F, D)}, "down_proj": {"weight": w(D, F)}},
            "input_layernorm": {"weight": w(D)},
        }
        for i in range(layers)
    }
    return {"model": {"embed_tokens": {"weight": w(32, D)}, "layers": blocks, "norm": {"weight": w(D)}}}


def stacked_dict(seed: int = 0, layers: int = 3, dtype=np.float32) -> dict:
    """A scanned layout: every layer leaf stacks the layers on axis 0."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return jnp.asarray(rng.standard_normal(shape).astype(np.float32), dtype)

    return {
        "params": {
            "embed": {"embedding": w(32, D)},
            "layers": {
                "attn": {"qkv": {"kernel": w(layers, D, 3 * D)}, "out": {"kernel": w(layers, D, D)}},
                "mlp": {"up": {"kernel": w(layers, D, F)}, "down": {"kernel": w(layers, F, D)}},
                "norm": {"scale": w(layers, D)},
            },
        }
    }


class _Block(nnx.Module):
    def __init__(self, rngs):
        self.attn = nnx.Linear(D, D, rngs=rngs)
        self.mlp = nnx.Linear(D, F, rngs=rngs)
        self.norm = nnx.RMSNorm(D, rngs=rngs)


class TinyNNX(nnx.Module):
    def __init__(self, seed: int = 0, layers: int = 3):
        rngs = nnx.Rngs(seed)
        self.embed = nnx.Embed(32, D, rngs=rngs)
        self.layers = nnx.List([_Block(rngs) for _ in range(layers)])


def nnx_state(seed: int = 0, layers: int = 3):
    return nnx.state(TinyNNX(seed, layers), nnx.Param)


class _LinenBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x + nn.Dense(D, name="attn")(x)
        return x + nn.Dense(D, name="mlp")(nn.Dense(F, name="up")(x))


class TinyLinen(nn.Module):
    layers: int = 3

    def setup(self):
        self.embed = nn.Embed(32, D)
        self.blocks = [_LinenBlock(name=f"layers_{i}") for i in range(self.layers)]

    def __call__(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return x


def linen_params(seed: int = 0, layers: int = 3):
    return TinyLinen(layers).init(jax.random.PRNGKey(seed), jnp.zeros((1, 4), jnp.int32))


def leaves_equal(a, b, atol=0.0):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    return all(
        x.shape == y.shape and np.allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), atol=atol, rtol=0)
        for x, y in zip(la, lb)
    )

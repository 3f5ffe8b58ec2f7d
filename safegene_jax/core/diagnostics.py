"""Per-layer diagnostics of safety vectors: norms, and cosines between two vectors.

Both reduce leaf by leaf in float32 under ``jit`` and sum the leaves of each layer (and, with
``by_kind=True``, of each module kind). Leaves outside the transformer layers are left out.

Example:
    >>> import numpy as np
    >>> from safegene_jax.core.diagnostics import layer_norms, layer_cosines
    >>> v = {"layers.0.w": np.array([3.0, 4.0]), "layers.1.w": np.array([0.0, 1.0])}
    >>> layer_norms(v).tolist()
    [5.0, 1.0]
    >>> layer_cosines(v, {"layers.0.w": np.array([3.0, 4.0]), "layers.1.w": np.array([0.0, -2.0])}).tolist()
    [1.0, -1.0]
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from safegene_jax.core.errors import LayerMapError, TreeMismatchError
from safegene_jax.core.layers import MODULE_KINDS, LeafLayer, layout
from safegene_jax.core.lowrank import dense_leaf
from safegene_jax.core.paths import first_difference
from safegene_jax.core.transforms import as_vector


def _layer_dots(a_leaves, b_leaves, plan: tuple[LeafLayer, ...], num_layers: int):
    acc = jnp.zeros((num_layers, len(MODULE_KINDS)), jnp.float32)
    for a, b, place in zip(a_leaves, b_leaves, plan):
        prod = dense_leaf(a).astype(jnp.float32) * dense_leaf(b).astype(jnp.float32)
        if place.stacked:
            acc = acc.at[:, place.kind].add(jnp.sum(prod.reshape(prod.shape[0], -1), axis=1))
        elif place.layer is not None:
            acc = acc.at[place.layer, place.kind].add(jnp.sum(prod))
    return acc


_layer_squares = jax.jit(
    lambda a, plan, num_layers: _layer_dots(a, a, plan, num_layers), static_argnames=("plan", "num_layers")
)


@functools.partial(jax.jit, static_argnames=("plan", "num_layers"))
def _cosine_parts(a_leaves, b_leaves, plan: tuple[LeafLayer, ...], num_layers: int):
    """``a.b``, ``a.a`` and ``b.b`` per layer and kind, in one compiled program."""
    return (
        _layer_dots(a_leaves, b_leaves, plan, num_layers),
        _layer_dots(a_leaves, a_leaves, plan, num_layers),
        _layer_dots(b_leaves, b_leaves, plan, num_layers),
    )


def _plan(vec: dict, layer_map: Any, num_layers: int | None):
    lay = layout(list(vec), [v.shape for v in vec.values()], layer_map)
    if num_layers is None:
        num_layers = lay.num_layers
    elif num_layers < lay.num_layers:
        raise LayerMapError(f"num_layers={num_layers} but the vector has leaves up to layer {lay.num_layers - 1}")
    return lay.leaves, num_layers


def layer_norms(vector: Any, *, layer_map: Any = None, num_layers: int | None = None, by_kind: bool = False):
    """L2 norm of each layer's part of ``vector``.

    Args:
        vector: a flat vector or a pytree of arrays.
        layer_map: how leaves map to layers; default ``'auto'``.
        num_layers: length of the result (default: the highest layer found + 1).
        by_kind: return ``(L, len(MODULE_KINDS))`` norms, one per layer and module kind.

    Returns:
        float32 array of shape ``(L,)`` or ``(L, K)``.
    """
    vec = as_vector(vector)
    plan, n = _plan(vec, layer_map, num_layers)
    sq = _layer_squares(list(vec.values()), plan, n)
    return jnp.sqrt(sq if by_kind else jnp.sum(sq, axis=1))


def layer_cosines(a: Any, b: Any, *, layer_map: Any = None, num_layers: int | None = None, by_kind: bool = False):
    """Cosine similarity of two vectors, layer by layer (0 where either part is zero).

    Raises:
        TreeMismatchError: the vectors hold different paths or shapes.
    """
    va, vb = as_vector(a), as_vector(b)
    if sorted(va) != sorted(vb):
        raise TreeMismatchError(f"vectors hold different leaves: {first_difference(sorted(va), sorted(vb), 'a', 'b')}")
    for path in va:
        if tuple(va[path].shape) != tuple(vb[path].shape):
            raise TreeMismatchError(f"shape mismatch at {path!r}: {tuple(va[path].shape)} vs {tuple(vb[path].shape)}")
    plan, n = _plan(va, layer_map, num_layers)
    la, lb = list(va.values()), [vb[p] for p in va]
    dot, na, nb = _cosine_parts(la, lb, plan, n)
    if not by_kind:
        dot, na, nb = (jnp.sum(x, axis=1) for x in (dot, na, nb))
    denom = jnp.sqrt(na * nb)
    return jnp.where(denom > 0, dot / jnp.where(denom > 0, denom, 1.0), 0.0)

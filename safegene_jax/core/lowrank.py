"""Low-rank form of a safety vector: per-matrix truncated SVD, the compact adapter form.

Each leaf with at least two dimensions (after the layer axis of a stacked leaf) is viewed as a matrix
``(shape[0], prod(shape[1:]))`` and replaced by :class:`LowRank` factors ``left @ right`` with
``left = U[:, :r] * S[:r]`` and ``right = Vt[:r]``. Vectors (norm scales, biases) stay dense, and so
does a matrix whose factors would not be smaller than itself. :func:`low_rank` reports the retained
energy: the fraction of the squared Frobenius norm kept, per leaf and over the whole vector.

Example:
    >>> import numpy as np
    >>> from safegene_jax.core.lowrank import low_rank, to_dense
    >>> m = np.outer(np.arange(1.0, 9.0), np.ones(8)).astype(np.float32)  # rank 1
    >>> compact, report = low_rank({"layers.0.w": m}, rank=1)
    >>> round(report.total, 6), bool(np.allclose(to_dense(compact)["layers.0.w"], m, atol=1e-4))
    (1.0, True)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from safegene_jax.core.errors import LayerMapError
from safegene_jax.core.layers import as_layer_map, layout


@functools.partial(jax.tree_util.register_dataclass, data_fields=["left", "right"], meta_fields=["shape"])
@dataclasses.dataclass(frozen=True)
class LowRank:
    """A matrix leaf stored as ``left @ right`` and reshaped to ``shape``.

    Attributes:
        left: ``(..., m, r)``; ``U * S`` of the truncated SVD.
        right: ``(..., r, n)``; ``Vt`` of the truncated SVD.
        shape: the dense leaf's shape.
    """

    left: Any
    right: Any
    shape: tuple[int, ...]

    @property
    def dtype(self):
        return self.left.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.left.shape)) + int(np.prod(self.right.shape))

    @property
    def rank(self) -> int:
        return int(self.left.shape[-1])

    def dense(self, dtype=None):
        """The dense leaf, computed in float32 and cast to ``dtype`` (default: the factors' dtype)."""
        prod = jnp.matmul(self.left.astype(jnp.float32), self.right.astype(jnp.float32))
        return prod.reshape(self.shape).astype(dtype or self.dtype)


@dataclasses.dataclass(frozen=True)
class EnergyReport:
    """Retained energy of a low-rank compression.

    Attributes:
        per_leaf: path -> fraction of the leaf's squared norm kept (1.0 for dense leaves).
        total: fraction of the whole vector's squared norm kept.
        dense_size: number of values in the dense vector.
        compressed_size: number of values stored after compression.
    """

    per_leaf: Mapping[str, float]
    total: float
    dense_size: int
    compressed_size: int


def dense_leaf(leaf):
    """A leaf as a dense array: :meth:`LowRank.dense` for a low-rank leaf, the leaf itself otherwise."""
    return leaf.dense() if isinstance(leaf, LowRank) else leaf


@functools.partial(jax.jit, static_argnames=("rank", "batch_dims"))
def _svd_truncate(x, rank: int, batch_dims: int):
    shape = x.shape
    mat = x.astype(jnp.float32).reshape(shape[: batch_dims + 1] + (-1,))
    u, s, vt = jnp.linalg.svd(mat, full_matrices=False)
    energy_all = jnp.sum(s**2)
    energy_kept = jnp.sum(s[..., :rank] ** 2)
    left = (u[..., :rank] * s[..., None, :rank]).astype(x.dtype)
    right = vt[..., :rank, :].astype(x.dtype)
    return left, right, energy_kept, energy_all


def low_rank(vector: Mapping[str, Any], rank: int, *, layer_map: Any = None) -> tuple[dict, EnergyReport]:
    """Compresses every matrix leaf of ``vector`` to ``rank`` by truncated SVD.

    Args:
        vector: a flat vector (path -> array), as returned by :func:`safegene_jax.safety_vector`.
        rank: number of singular values kept per matrix (per layer for stacked leaves).
        layer_map: tells which leaves stack layers on axis 0; those are compressed layer by layer.

    Returns:
        ``(compact_vector, EnergyReport)``; the compact vector holds :class:`LowRank` leaves and can be
        passed to :func:`safegene_jax.apply_vector` as it is, or densified with :func:`to_dense`.
    """
    if not isinstance(rank, int) or rank < 1:
        raise LayerMapError(f"rank must be a positive int, got {rank!r}")
    paths = list(vector)
    leaves = [vector[p] for p in paths]
    placed = layout(paths, [leaf.shape for leaf in leaves], as_layer_map(layer_map)).leaves
    out: dict[str, Any] = {}
    per_leaf: dict[str, float] = {}
    kept_sum = all_sum = 0.0
    dense_size = compressed_size = 0
    for path, leaf, place in zip(paths, leaves, placed):
        if isinstance(leaf, LowRank):
            leaf = leaf.dense()
        batch_dims = 1 if place.stacked else 0
        shape = tuple(leaf.shape)
        dense_size += int(np.prod(shape))
        if len(shape) - batch_dims >= 2:
            m, n = shape[batch_dims], int(np.prod(shape[batch_dims + 1 :]))
            batch = int(np.prod(shape[:batch_dims]))
            r = min(rank, m, n)
            if batch * r * (m + n) < batch * m * n:
                left, right, kept, total = _svd_truncate(leaf, r, batch_dims)
                kept, total = float(kept), float(total)
                out[path] = LowRank(left, right, shape)
                per_leaf[path] = kept / total if total > 0 else 1.0
                kept_sum, all_sum = kept_sum + kept, all_sum + total
                compressed_size += out[path].size
                continue
        out[path] = leaf
        norm2 = float(jnp.sum(jnp.square(jnp.asarray(leaf, jnp.float32))))
        per_leaf[path] = 1.0
        kept_sum, all_sum = kept_sum + norm2, all_sum + norm2
        compressed_size += int(np.prod(shape))
    total = kept_sum / all_sum if all_sum > 0 else 1.0
    if not math.isfinite(total):
        total = float("nan")
    return out, EnergyReport(per_leaf, total, dense_size, compressed_size)


def to_dense(vector: Mapping[str, Any]) -> dict[str, Any]:
    """Replaces every :class:`LowRank` leaf of a vector by its dense array."""
    return {path: dense_leaf(leaf) for path, leaf in vector.items()}

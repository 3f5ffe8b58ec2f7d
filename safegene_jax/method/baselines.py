"""Baselines with the same call shape as the adapter: ``method(task_params, vector, ...) -> params``.

* :func:`resta`: RESTA (Bhardwaj et al. 2024): the whole safety vector added at one uniform coefficient,
  after DARE drop-and-rescale of the fine-tuning delta ``task - base`` (the paper's "RESTA + DARE"; no
  drop is plain RESTA).
* :func:`safe_lora`: Safe LoRA (Hsu et al. 2024): each layer's fine-tuning delta is projected onto the
  alignment subspace ``C = V V^T / ||V||_F`` (``V = aligned - unaligned``) where the cosine between the
  delta and its projection is below a threshold (or for the ``k`` lowest-cosine matrices).
* :func:`task_arithmetic`: plain ``params + sum_i c_i * vector_i``.

Example:
    >>> import numpy as np
    >>> params = {"layers": [{"w": np.ones(4, np.float32)}]}
    >>> resta(params, {"layers.0.w": np.ones(4, np.float32)}, 0.5)["layers"][0]["w"].tolist()
    [1.5, 1.5, 1.5, 1.5]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from safegene_jax.core.errors import SafeGeneError
from safegene_jax.core.lowrank import to_dense
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.core.transforms import apply_vector, as_vector


def dare(vector: Any, drop: float, seed: int = 0) -> dict:
    """DARE: drop each entry with probability ``drop`` and rescale the rest by ``1 / (1 - drop)``."""
    if not 0.0 <= drop < 1.0:
        raise SafeGeneError(f"DARE drop rate must be in [0, 1), got {drop}")
    vec = to_dense(as_vector(vector))
    if drop == 0.0:
        return vec
    key = jax.random.PRNGKey(seed)
    out = {}
    for path, leaf in vec.items():
        key, sub = jax.random.split(key)
        keep = jax.random.bernoulli(sub, 1.0 - drop, leaf.shape)
        out[path] = jnp.where(keep, jnp.asarray(leaf, jnp.float32) / (1.0 - drop), 0.0).astype(leaf.dtype)
    return out


def resta(
    task_params: Any,
    vector: Any,
    coeff: float = 1.0,
    *,
    base_params: Any = None,
    drop: float = 0.0,
    seed: int = 0,
    layer_map: Any = None,
) -> Any:
    """RESTA: ``base + DARE(task - base) + coeff * tau``; without ``drop``, ``task + coeff * tau``.

    Args:
        task_params: the fine-tuned model.
        vector: the safety vector ``tau``.
        coeff: its coefficient.
        base_params: the model the task model was fine-tuned from (needed with ``drop``).
        drop: DARE's drop rate on the fine-tuning delta (over the leaves the vector covers).
        seed: DARE's random drops.
    """
    if not drop:
        return apply_vector(task_params, vector, float(coeff), layer_map=layer_map)
    if base_params is None:
        raise SafeGeneError("resta with drop > 0 needs base_params: DARE acts on the fine-tuning delta task - base")
    vec = as_vector(vector)
    paths, task_leaves, _ = flatten_with_paths(task_params)
    base = dict(zip(*flatten_with_paths(base_params)[:2]))
    task = dict(zip(paths, task_leaves))
    missing = [p for p in vec if p not in task or p not in base]
    if missing:
        raise SafeGeneError(f"vector leaf {missing[0]!r} is not in both the task and the base params")
    delta = dare({p: jnp.asarray(task[p], jnp.float32) - jnp.asarray(base[p], jnp.float32) for p in vec}, drop, seed)
    # base + DARE(delta) = task + (DARE(delta) - delta), applied as one more vector beside tau
    shift = {p: delta[p] - (jnp.asarray(task[p], jnp.float32) - jnp.asarray(base[p], jnp.float32)) for p in vec}
    return task_arithmetic(task_params, [shift, vector], [1.0, float(coeff)], layer_map=layer_map)


def task_arithmetic(params: Any, vectors: Any, coeffs: Any = 1.0, *, layer_map: Any = None) -> Any:
    """``params + sum_i coeffs_i * vectors_i`` (one vector or a list)."""
    vectors = [vectors] if not isinstance(vectors, list | tuple) else list(vectors)
    coeffs = [coeffs] * len(vectors) if np.ndim(coeffs) == 0 else list(coeffs)
    if len(coeffs) != len(vectors):
        raise SafeGeneError(f"{len(vectors)} vectors but {len(coeffs)} coefficients")
    for vec, c in zip(vectors, coeffs):
        params = apply_vector(params, vec, c, layer_map=layer_map)
    return params


def projection_cosine(delta: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(C @ delta, cosine(delta, C @ delta))`` with ``C = V V^T / ||V||_F`` for kernels laid out ``(in, out)``.

    Our kernels are ``(in, out)``; Safe LoRA's matrices are ``(out, in)``, so the projection acts on the
    output side: ``(C W^T)^T = W C^T``.
    """
    d = delta.astype(jnp.float32)
    vt = v.astype(jnp.float32).T  # (out, in), the paper's layout
    c = vt @ vt.T / jnp.maximum(jnp.linalg.norm(vt), 1e-12)
    projected = (c @ d.T).T
    cos = jnp.sum(d * projected) / jnp.maximum(jnp.linalg.norm(d) * jnp.linalg.norm(projected), 1e-12)
    return projected, cos


def safe_lora(
    task_params: Any, vector: Any, *, base_params: Any, threshold: float | None = None, k_lowest: int | None = None
) -> Any:
    """Safe LoRA on the fine-tuning delta ``task - base`` of every 2-D leaf the alignment vector covers.

    Args:
        task_params: the fine-tuned model.
        vector: the alignment vector ``V = aligned - unaligned`` (e.g. the safety vector).
        base_params: the model the task model was fine-tuned from (the aligned model).
        threshold: project the matrices whose cosine is below this (default 0.35 when ``k_lowest`` is not given)...
        k_lowest: ...or the ``k`` matrices with the lowest cosine (not both).

    Returns:
        ``base + projected or original delta``, with the params' structure and dtypes.
    """
    if threshold is not None and k_lowest is not None:
        raise SafeGeneError("pass threshold or k_lowest, not both")
    if threshold is None and k_lowest is None:
        threshold = 0.35
    vec = to_dense(as_vector(vector))
    paths, task_leaves, treedef = flatten_with_paths(task_params)
    base_paths, base_leaves, _ = flatten_with_paths(base_params)
    if paths != base_paths:
        raise SafeGeneError("task_params and base_params have different structures")
    index = {p: i for i, p in enumerate(paths)}
    missing = [p for p in vec if p not in index]
    if missing:
        raise SafeGeneError(f"vector leaf {missing[0]!r} is not in the params")
    proj, cosines = {}, {}
    for p, v in vec.items():
        if v.ndim != 2:
            continue
        delta = jnp.asarray(task_leaves[index[p]], jnp.float32) - jnp.asarray(base_leaves[index[p]], jnp.float32)
        proj[p], cosines[p] = projection_cosine(delta, v)
    if k_lowest is not None:
        chosen = set(sorted(cosines, key=lambda p: float(cosines[p]))[:k_lowest])
    else:
        chosen = {p for p, c in cosines.items() if float(c) < threshold}
    out = list(task_leaves)
    for p in chosen:
        i = index[p]
        out[i] = (jnp.asarray(base_leaves[i], jnp.float32) + proj[p]).astype(task_leaves[i].dtype)
    return jax.tree_util.tree_unflatten(treedef, out)

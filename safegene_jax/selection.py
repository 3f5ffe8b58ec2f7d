"""Data-aware layer selection: score every layer by what adding only its part of the safety vector does.

For a candidate coefficient vector ``c`` (one entry per layer), the reference params are patched with
``sum_l c_l * tau_l`` and evaluated on two probe batches:

* **safety gain**: the rise in mean log-likelihood of the refusals on harmful probes;
* **utility cost**: the mean KL divergence from the unpatched model's next-token distribution on benign
  probes (over their response tokens).

All candidates (by default ``strength * I``, one per layer; any ``(C, L)`` matrix is allowed) are
evaluated in one jitted ``lax.map`` that vmaps chunks of ``chunk_size`` candidates, so at most
``chunk_size`` patched copies of the vector's leaves exist at once, never one model per candidate.

Example (with probe batches from :func:`safegene_jax.data.batch_examples`)::

    scores = score_layers(apply, degraded_params, tau, harmful_probe, benign_probe, strength=1.0)
    chosen = select(scores, top_k=6)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from safegene_jax.errors import LayerMapError, SafeGeneError
from safegene_jax.layers import layout
from safegene_jax.paths import flatten_with_paths
from safegene_jax.train import target_logp
from safegene_jax.transforms import apply_vector, as_vector, assert_finite


@dataclasses.dataclass(frozen=True)
class LayerScores:
    """Per-candidate results (one candidate per layer by default).

    Attributes:
        safety_gain: rise of the mean refusal log-likelihood per token on harmful probes, ``(C,)``.
        utility_cost: mean KL(reference || patched) per response token on benign probes, ``(C,)``.
        candidates: the ``(C, L)`` coefficient matrix that was evaluated.
        base_refusal_ll: the reference model's mean refusal log-likelihood.
    """

    safety_gain: np.ndarray
    utility_cost: np.ndarray
    candidates: np.ndarray
    base_refusal_ll: float

    def combined(self, utility_weight: float = 1.0) -> np.ndarray:
        """``safety_gain - utility_weight * utility_cost``."""
        return self.safety_gain - utility_weight * self.utility_cost

    def to_dict(self) -> dict:
        return {
            "safety_gain": self.safety_gain.tolist(),
            "utility_cost": self.utility_cost.tolist(),
            "candidates": self.candidates.tolist(),
            "base_refusal_ll": self.base_refusal_ll,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LayerScores:
        return cls(
            np.asarray(d["safety_gain"]),
            np.asarray(d["utility_cost"]),
            np.asarray(d["candidates"]),
            float(d["base_refusal_ll"]),
        )


def refusal_loglik(logits, batch) -> jax.Array:
    """Mean log-likelihood per response token (``loss_mask``) of ``batch['tokens']``."""
    logp, mask = target_logp(logits, batch["tokens"], batch["loss_mask"])
    return jnp.sum(logp * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def mean_kl(ref_logp, logits, batch) -> jax.Array:
    """Mean KL(ref || model) over the positions that predict response tokens."""
    mask = batch["loss_mask"][:, 1:].astype(jnp.float32)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    kl = jnp.sum(jnp.exp(ref_logp) * (ref_logp - logp), axis=-1)
    return jnp.sum(kl * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _check_batch(batch: dict, name: str) -> dict:
    for key in ("tokens", "attention_mask", "loss_mask"):
        if key not in batch:
            raise SafeGeneError(f"{name} batch lacks {key!r} (make it with safegene_jax.data.batch_examples)")
    if not np.asarray(batch["loss_mask"]).any():
        raise SafeGeneError(f"{name} batch has no response token (loss_mask is all zero)")
    return {k: jnp.asarray(batch[k]) for k in ("tokens", "attention_mask", "loss_mask")}


def score_layers(
    apply: Callable,
    params: Any,
    vector: Any,
    harmful: dict,
    benign: dict,
    *,
    strength: float = 1.0,
    candidates: Any = None,
    chunk_size: int = 1,
    layer_map: Any = None,
    mesh: Any = None,
) -> LayerScores:
    """Scores candidates of per-layer coefficients in one jitted, chunk-vmapped evaluation.

    Args:
        apply: ``apply(params, tokens, attention_mask) -> logits``.
        params: reference params (by default the degraded model; any params of the family).
        vector: the safety vector.
        harmful: probe batch of harmful prompts with refusals as responses (``tokens``, ``attention_mask``,
            ``loss_mask``).
        benign: probe batch of benign prompts with responses.
        strength: coefficient of the one-layer candidates (ignored with ``candidates``).
        candidates: optional ``(C, L)`` coefficient matrix.
        chunk_size: candidates evaluated together by ``vmap``; memory grows with it.
        layer_map: how leaves map to layers.
        mesh: shard the probe batches over the mesh's ``data`` (and ``fsdp``) axes.
    """
    vec = as_vector(vector)
    assert_finite(vec)
    paths, leaves, _ = flatten_with_paths(params)
    num_layers = layout(paths, [x.shape for x in leaves], layer_map).num_layers
    cands = (
        strength * np.eye(num_layers, dtype=np.float32) if candidates is None else np.asarray(candidates, np.float32)
    )
    if cands.ndim != 2 or cands.shape[1] != num_layers:
        raise LayerMapError(f"candidates must have shape (C, {num_layers}), got {cands.shape}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    harmful, benign = _check_batch(harmful, "harmful"), _check_batch(benign, "benign")
    if mesh is not None:
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        from safegene_jax.sharding import param_shardings

        axis = ("data", "fsdp") if "fsdp" in mesh.shape else "data"
        put = lambda b: jax.device_put(b, NamedSharding(mesh, P(axis, None)))  # noqa: E731
        harmful, benign = put(harmful), put(benign)
        shardings = param_shardings(params, mesh)
        params = jax.device_put(params, shardings)  # a no-op for params already laid out by the rules
        by_path = dict(zip(flatten_with_paths(params)[0], flatten_with_paths(shardings)[1]))
        vec = {p: jax.device_put(v, by_path[p]) for p, v in vec.items()}

    @jax.jit
    def run(params, vec, cands, harmful, benign):
        ref_h = refusal_loglik(apply(params, harmful["tokens"], harmful["attention_mask"]), harmful)
        ref_logp = jax.nn.log_softmax(apply(params, benign["tokens"], benign["attention_mask"])[:, :-1], axis=-1)

        def one(c):
            patched = apply_vector(params, vec, c, layer_map=layer_map, check_finite=False)
            gain = refusal_loglik(apply(patched, harmful["tokens"], harmful["attention_mask"]), harmful) - ref_h
            cost = mean_kl(ref_logp, apply(patched, benign["tokens"], benign["attention_mask"]), benign)
            return gain, cost

        gains, costs = jax.lax.map(one, cands, batch_size=chunk_size)
        return gains, costs, ref_h

    gains, costs, ref_h = run(params, vec, jnp.asarray(cands), harmful, benign)
    return LayerScores(np.asarray(gains), np.asarray(costs), cands, float(ref_h))


def select(
    scores: LayerScores, *, top_k: int | None = None, threshold: float | None = None, utility_weight: float = 0.0
) -> list[int]:
    """Layers to keep: the ``top_k`` best by ``gain - utility_weight * cost``, or all above ``threshold``.

    Only for the default one-layer candidates (candidate ``i`` is layer ``i``); returned sorted.
    """
    if (top_k is None) == (threshold is None):
        raise SafeGeneError("pass exactly one of top_k and threshold")
    value = scores.combined(utility_weight)
    if top_k is not None:
        if not 1 <= top_k <= len(value):
            raise SafeGeneError(f"top_k must be in [1, {len(value)}], got {top_k}")
        chosen = np.argsort(-value, kind="stable")[:top_k]
    else:
        chosen = np.flatnonzero(value > threshold)
    return sorted(int(i) for i in chosen)

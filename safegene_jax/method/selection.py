"""Data-aware layer selection: score every layer by what adding only its part of the safety vector does.

For a candidate coefficient vector ``c`` (one entry per layer), the reference params are patched with
``sum_l c_l * tau_l`` and evaluated on two probe batches:

* **safety gain**: the rise in mean log-likelihood of the refusals on harmful probes;
* **utility cost**: the mean KL divergence from the unpatched model's next-token distribution on benign
  probes (over their response tokens).

All candidates (by default ``strength * I``, one per layer; any ``(C, L)`` matrix is allowed) are
evaluated in one jitted program, in one of two ways:

* ``method='prefix'`` (one-layer candidates on a model with a :class:`~safegene_jax.models.LayeredApply`,
  such as every loaded model's ``lm.apply``): the probes go through the unpatched layers once; a candidate
  that patches layer ``l`` starts from the unpatched hidden states at ``l``, so the layers below it are
  never recomputed, and the layers above it run for all started candidates together with the weights
  shared (chunks of ``chunk_size`` candidates vmapped). The LM head runs only where a response token is
  predicted. About half the layer work of full forwards and no patched model copy: only the patched
  layer's leaves are ever copied.
* ``method='patch'`` (any candidates, any ``apply``): each candidate patches the params and runs the whole
  forward; ``lax.map`` vmaps chunks of ``chunk_size`` candidates, so at most ``chunk_size`` patched
  copies of the vector's leaves exist at once, never one model per candidate.

``method='auto'`` (the default) takes ``prefix`` where it applies. Two cheaper ways rank the layers without
running one model per candidate:

* ``method='linear'``: first-order scores from one forward and one backward pass per probe batch, for all
  candidates at once: the gain is ``c . d(refusal log-likelihood)/dc`` at ``c = 0``, and the cost is the
  first-order rise of the benign answers' negative log-likelihood, ``-c . d(benign log-likelihood)/dc``
  (the KL of the exact method is zero to first order). It works for any candidate matrix and any ``apply``
  JAX can differentiate.
* ``method='hybrid'``: the linear scores screen the candidates, and the best ``hybrid_k`` (by
  ``gain - utility_weight * cost``) are scored exactly; :func:`select` then chooses among those only.

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

from safegene_jax.core.errors import LayerMapError, SafeGeneError
from safegene_jax.core.layers import as_layer_map, layout
from safegene_jax.core.losses import mean_kl, mean_loglik, reference_logp, scored_positions, trim, weighted_mean
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.core.transforms import apply_vector, as_vector, assert_finite
from safegene_jax.method.patched import PatchedLogits

SCORING_METHODS = ("auto", "prefix", "patch", "linear", "hybrid")
"""The ways :func:`score_layers` evaluates candidates (see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class LayerScores:
    """Per-candidate results (one candidate per layer by default).

    Attributes:
        safety_gain: rise of the mean refusal log-likelihood per token on harmful probes, ``(C,)``.
        utility_cost: mean KL(reference || patched) per response token on benign probes, ``(C,)`` (with the
            linear method: the first-order rise of the benign answers' NLL).
        candidates: the ``(C, L)`` coefficient matrix that was evaluated.
        base_refusal_ll: the reference model's mean refusal log-likelihood.
        method: how the scores were computed (``prefix``, ``patch``, ``linear``, ``hybrid``).
        exact: ``(C,)`` booleans, the candidates scored exactly (all but the screened-out ones of ``hybrid``);
            :func:`select` chooses among these.
    """

    safety_gain: np.ndarray
    utility_cost: np.ndarray
    candidates: np.ndarray
    base_refusal_ll: float
    method: str = "prefix"
    exact: np.ndarray | None = None

    def combined(self, utility_weight: float = 1.0) -> np.ndarray:
        """``safety_gain - utility_weight * utility_cost``."""
        return self.safety_gain - utility_weight * self.utility_cost

    def to_dict(self) -> dict:
        return {
            "safety_gain": self.safety_gain.tolist(),
            "utility_cost": self.utility_cost.tolist(),
            "candidates": self.candidates.tolist(),
            "base_refusal_ll": self.base_refusal_ll,
            "method": self.method,
            "exact": None if self.exact is None else self.exact.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> LayerScores:
        return cls(
            np.asarray(d["safety_gain"]),
            np.asarray(d["utility_cost"]),
            np.asarray(d["candidates"]),
            float(d["base_refusal_ll"]),
            d.get("method", "prefix"),
            None if d.get("exact") is None else np.asarray(d["exact"], bool),
        )


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
    method: str = "auto",
    hybrid_k: int = 10,
    utility_weight: float = 0.0,
    progress: str | None = None,
    scan_layers: bool = True,
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
        method: ``'prefix'``, ``'patch'``, ``'auto'``, ``'linear'`` or ``'hybrid'`` (see the module docstring);
            ``'prefix'`` raises :class:`SafeGeneError` saying why when it does not apply.
        hybrid_k: how many candidates ``'hybrid'`` scores exactly, the best by the linear scores.
        utility_weight: how ``'hybrid'`` ranks the linear scores (``gain - utility_weight * cost``).
        progress: a label for a progress bar that advances as the jitted computation goes (candidates, and the
            prefix method's layers), through host callbacks; none without. JAX keeps programs with host
            callbacks out of its persistent compilation cache, so a run with a bar compiles scoring anew.
        scan_layers: the linear scores run uniform layers as one ``lax.scan`` over their stacked params
            (compiles one layer instead of all; SmolLM2's 30 layers: 7.0 s, 4.08x the per-layer loop, against
            13.0 s unrolled in an earlier run, at 3.51 GiB extra memory against 2.13: a stacked copy of the
            layers and of the vector). ``False``: one unrolled program.
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
        raise SafeGeneError(f"chunk_size must be >= 1, got {chunk_size}")
    if method not in SCORING_METHODS:
        raise SafeGeneError(f"method must be one of {', '.join(SCORING_METHODS)}; got {method!r}")
    if method == "hybrid" and not 1 <= hybrid_k <= len(cands):
        raise SafeGeneError(f"hybrid_k must be in [1, {len(cands)}] (the number of candidates), got {hybrid_k}")
    if method in ("linear", "hybrid"):
        index = dict(zip(paths, leaves))
        fixed = [
            p for p, v in vec.items() if not jnp.issubdtype(getattr(index.get(p, v), "dtype", v.dtype), jnp.floating)
        ]
        if fixed:
            raise SafeGeneError(f"method={method!r} differentiates the params, but {fixed[0]!r} is not floating point")
    harmful, benign = _check_batch(harmful, "harmful"), _check_batch(benign, "benign")
    if method in ("linear", "hybrid"):
        linear = _score_linear(apply, params, vec, cands, harmful, benign, layer_map, scan_layers)
        if method == "linear":
            return linear
        order = np.argsort(-linear.combined(utility_weight), kind="stable")[:hybrid_k]
        exact = score_layers(
            apply,
            params,
            vec,
            harmful,
            benign,
            candidates=cands[order],
            chunk_size=chunk_size,
            layer_map=layer_map,
            mesh=mesh,
            progress=progress,
        )
        gains, costs = linear.safety_gain.copy(), linear.utility_cost.copy()
        gains[order], costs[order] = exact.safety_gain, exact.utility_cost
        mask = np.zeros(len(cands), bool)
        mask[order] = True
        return LayerScores(gains, costs, cands, exact.base_refusal_ll, "hybrid", mask)
    plan = None
    if method != "patch":
        plan, why = _prefix_plan(apply, params, vec, cands, layer_map)
        if plan is None and method == "prefix":
            raise SafeGeneError(f"method='prefix' does not apply: {why}; use method='patch'")
    if mesh is not None:
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        from safegene_jax.runtime.sharding import param_shardings

        axis = ("data", "fsdp") if "fsdp" in mesh.shape else "data"
        put = lambda b: jax.device_put(b, NamedSharding(mesh, P(axis, None)))  # noqa: E731
        harmful, benign = put(harmful), put(benign)
        shardings = param_shardings(params, mesh)
        params = jax.device_put(params, shardings)  # a no-op for params already laid out by the rules
        by_path = dict(zip(flatten_with_paths(params)[0], flatten_with_paths(shardings)[1]))
        vec = {p: jax.device_put(v, by_path[p]) for p, v in vec.items()}

    if plan is not None:
        starts = plan[0]
        with _Ticker(progress, 2 * cands.shape[1] + int((starts >= 0).sum()), "layer") as tick:
            gains, costs, ref_h = _score_prefix(apply, params, vec, cands, *plan, harmful, benign, chunk_size, tick)
        return LayerScores(gains, costs, cands, ref_h, "prefix")
    with _Ticker(progress, len(cands), "candidate") as tick:
        return _score_patch(apply, params, vec, cands, harmful, benign, chunk_size, layer_map, tick)


class _Ticker:
    """A progress bar advanced from inside jitted code: ``tick(x)`` inside the program calls back to the host
    when ``x`` is computed (a no-op without a label)."""

    def __init__(self, label: str | None, total: int, unit: str):
        self.label, self.total, self.unit, self.bar = label, total, unit, None

    def __enter__(self):
        if not self.label:
            return lambda x: None
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.label, unit=self.unit, leave=False)

        def advance(*_):
            if self.bar.n < self.total:
                self.bar.update(1)

        return lambda x: jax.debug.callback(advance, x)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def _score_patch(apply, params, vec, cands, harmful, benign, chunk_size, layer_map, tick) -> LayerScores:
    """The patch method: every candidate's coefficients added to the params, both probe batches run again."""

    @jax.jit
    def run(params, vec, cands, harmful, benign):
        ref_h = mean_loglik(apply(params, harmful["tokens"], harmful["attention_mask"]), harmful)
        ref_logp = reference_logp(apply(params, benign["tokens"], benign["attention_mask"]))

        def one(c):
            patched = apply_vector(params, vec, c, layer_map=layer_map, check_finite=False)
            gain = mean_loglik(apply(patched, harmful["tokens"], harmful["attention_mask"]), harmful) - ref_h
            cost = mean_kl(ref_logp, apply(patched, benign["tokens"], benign["attention_mask"]), benign)
            tick(cost)
            return gain, cost

        gains, costs = jax.lax.map(one, cands, batch_size=chunk_size)
        return gains, costs, ref_h

    gains, costs, ref_h = run(params, vec, jnp.asarray(cands), harmful, benign)
    return LayerScores(np.asarray(gains), np.asarray(costs), cands, float(ref_h), "patch")


def _score_linear(apply, params, vec, cands, harmful, benign, layer_map, scan: bool = True) -> LayerScores:
    """First-order scores: one forward and one backward pass per probe batch give every layer's derivative
    (through :class:`~safegene_jax.method.patched.PatchedLogits`: the layers below the vector's lowest one run
    once, the rest as one scan when they share a structure, the head at the scored positions only)."""
    num_layers = cands.shape[1]
    lmap = as_layer_map(layer_map)
    layers = sorted({x for x in map(lmap.layer_of, vec) if isinstance(x, int)}) or list(range(num_layers))
    scored = PatchedLogits(apply, params, vec, layers, layer_map, scan=scan)
    probes = scored.prepare(trim(harmful)), scored.prepare(trim(benign))
    every = jnp.ones((num_layers,), jnp.float32)

    @jax.jit
    def derivatives(model, vector, harmful, benign):
        def loglik(c, batch):
            return weighted_mean(scored.logp(scored.patch(model, vector, c, every), batch), batch["weights"])

        zero = jnp.zeros((num_layers,), jnp.float32)
        ref_h, d_h = jax.value_and_grad(loglik)(zero, harmful)
        d_b = jax.grad(loglik)(zero, benign)
        return ref_h, d_h, d_b

    ref_h, d_h, d_b = derivatives(scored.model, scored.vector, *probes)
    gains = cands @ np.asarray(d_h, np.float32)
    costs = -(cands @ np.asarray(d_b, np.float32))
    return LayerScores(gains, costs, cands, float(ref_h), "linear")


def _prefix_plan(apply: Any, params: Any, vec: dict, cands: np.ndarray, layer_map: Any) -> tuple[Any, str]:
    """``((start layer of each candidate (-1: all zero), the vector's paths per layer), '')`` when the prefix
    method applies, else ``(None, why not)``."""
    if not all(callable(getattr(apply, name, None)) for name in ("embed", "layer", "head", "num_layers")):
        return None, "apply does not run one layer at a time (make it with safegene_jax.make_apply)"
    nonzero = cands != 0
    if (nonzero.sum(axis=1) > 1).any():
        return None, "a candidate patches more than one layer"
    if apply.num_layers(params) != cands.shape[1]:
        return None, f"the model has {apply.num_layers(params)} decoder layers, the layer map {cands.shape[1]}"
    lm = as_layer_map(layer_map)
    layer_paths: list[list[str]] = [[] for _ in range(cands.shape[1])]
    for path in vec:
        layer = lm.layer_of(path)
        if not isinstance(layer, int) or not path.startswith(f"model.layers.{layer}."):
            return None, f"vector leaf {path!r} is not a leaf of the decoder layer the layer map gives it"
        layer_paths[layer].append(path)
    return (np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), -1), layer_paths), ""


def _score_prefix(apply, params, vec, cands, starts, layer_paths, harmful, benign, chunk, tick=lambda x: None):
    """The prefix method (see the module docstring): gains, costs and the reference refusal log-likelihood."""
    num_layers = cands.shape[1]
    order = np.argsort(np.where(starts < 0, num_layers, starts), kind="stable")  # streams by start layer
    order = order[starts[order] >= 0]  # all-zero candidates change nothing: gain and cost 0
    started = [np.flatnonzero(starts[order] == layer) for layer in range(num_layers)]  # stream slots
    strength = np.asarray([cands[i, starts[i]] for i in order], np.float32)
    where_h, where_b = scored_positions(harmful), scored_positions(benign)

    def sweep(params, vec, strength, batch, where):
        """Hidden states where a response token is predicted: the reference's ``(N, d)``, the candidates'
        ``(S, N, d)`` (stream order)."""
        x, ctx = apply.embed(params, batch["tokens"], batch["attention_mask"])
        streams = x[None]  # stream 0 is the unpatched model; candidates join at the layer they patch
        for layer in range(num_layers):
            new = None
            if len(started[layer]):
                part = {p: vec[p] for p in layer_paths[layer]}

                def patched(c, i=layer, part=part, x=streams[0]):
                    return apply.layer(apply_vector(params, part, c, check_finite=False), i, x, ctx)

                new = jax.lax.map(patched, strength[started[layer]], batch_size=chunk)
            # the unpatched model and the candidates patched below: this layer's own weights, shared
            streams = jax.lax.map(lambda h, i=layer: apply.layer(params, i, h, ctx), streams, batch_size=chunk)
            if new is not None:
                streams = jnp.concatenate([streams, new])
            tick(streams[0, 0, 0, 0])
        hidden = streams[:, where[0], where[1]]
        return hidden[0], hidden[1:]

    def loglik(params, hidden, targets):
        logits = apply.head(params, hidden)
        picked = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
        return jnp.mean(picked - jax.nn.logsumexp(logits, axis=-1))

    @jax.jit
    def run(params, vec, strength, harmful, benign):
        ref_h_hidden, h_streams = sweep(params, vec, strength, harmful, where_h)
        ref_b_hidden, b_streams = sweep(params, vec, strength, benign, where_b)
        targets = jnp.asarray(where_h[2])
        ref_h = loglik(params, ref_h_hidden, targets)
        ref_logp = jax.nn.log_softmax(apply.head(params, ref_b_hidden), axis=-1)

        def one(pair):
            h, b = pair
            logp = jax.nn.log_softmax(apply.head(params, b), axis=-1)
            cost = jnp.mean(jnp.sum(jnp.exp(ref_logp) * (ref_logp - logp), axis=-1))
            tick(cost)
            return loglik(params, h, targets) - ref_h, cost

        gains, costs = jax.lax.map(one, (h_streams, b_streams))  # one at a time: (N, vocab) logits each
        return gains, costs, ref_h

    gains, costs = np.zeros(len(cands), np.float32), np.zeros(len(cands), np.float32)
    if not len(order):  # nothing patched: score the reference only
        run_ref = jax.jit(
            lambda params, batch: mean_loglik(apply(params, batch["tokens"], batch["attention_mask"]), batch)
        )
        return gains, costs, float(run_ref(params, harmful))
    g, c, ref_h = run(params, vec, jnp.asarray(strength), harmful, benign)
    gains[order], costs[order] = np.asarray(g), np.asarray(c)
    return gains, costs, float(ref_h)


def select(
    scores: LayerScores, *, top_k: int | None = None, threshold: float | None = None, utility_weight: float = 0.0
) -> list[int]:
    """Layers to keep: the ``top_k`` best by ``gain - utility_weight * cost``, or all above ``threshold``.

    Only for the default one-layer candidates (candidate ``i`` is layer ``i``); returned sorted. With hybrid
    scores, among the candidates scored exactly.
    """
    if (top_k is None) == (threshold is None):
        raise SafeGeneError("pass exactly one of top_k and threshold")
    value = scores.combined(utility_weight)
    eligible = np.ones(len(value), bool) if scores.exact is None else np.asarray(scores.exact, bool)
    if top_k is not None:
        if not 1 <= top_k <= int(eligible.sum()):
            raise SafeGeneError(f"top_k must be in [1, {int(eligible.sum())}] (the candidates scored), got {top_k}")
        chosen = np.argsort(np.where(eligible, -value, np.inf), kind="stable")[:top_k]
    else:
        chosen = np.flatnonzero((value > threshold) & eligible)
    return sorted(int(i) for i in chosen)

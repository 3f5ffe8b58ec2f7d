"""Few-shot recalibration: learn one coefficient per selected layer (optionally per layer and module kind).

The objective for a task model is

    loss(alpha) = safety(alpha) + lam * utility(alpha) + l2 * ||alpha - alpha_init||^2

with ``safety`` either the negative mean log-likelihood of the harmful few shots' refusals under
``task + sum_l alpha_l tau_l`` (``safety='refusal'``), or (``safety='contrast'``, the default) the
refusal *onset* against the compliant onset: per prompt, ``d`` = mean log-probability of the first
``onset_tokens`` refusal tokens minus that of the first compliant ("Sure, here is") tokens, and the loss
is ``mean(softplus(margin - d))``. The whole-refusal likelihood is a poor proxy: a strongly patched
model refuses in its own words, so the likelihood of one fixed refusal text falls while refusals rise;
the onset contrast rises with the refusal rate and saturates once refusing is clearly preferred.

where ``utility`` is the task-answer NLL on task few shots (``utility='nll'``) or the KL divergence from
the unpatched task model on benign prompts (``utility='kl'``). Only ``alpha`` is trained, with optax
Adam, projected onto ``[0, alpha_max]`` after every step, with early stopping on a held-out part of the
few shots. The optimizer core, :func:`fit_coefficients`, takes any objective.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from safegene_jax.core.errors import SafeGeneError, require
from safegene_jax.core.layers import MODULE_KINDS, layer_mask, layout
from safegene_jax.core.losses import mean_kl, mean_loglik, onset, reference_logp, row_loglik, token_nll, trim
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.core.transforms import apply_vector, as_vector, assert_finite


@dataclasses.dataclass(frozen=True)
class RecalibrationConfig:
    """Recalibration options; the defaults are the demo's.

    Attributes:
        steps, learning_rate: Adam steps on the coefficients and their learning rate.
        alpha_init, alpha_max: the coefficients start at ``alpha_init`` and stay in ``[0, alpha_max]``.
        l2: pull of the coefficients towards ``alpha_init``.
        lam: weight of the utility term; ``utility`` is ``'nll'`` (task answers) or ``'kl'`` (to the task model).
        per_kind: one coefficient per layer and module kind instead of one per layer.
        val_fraction, patience: few shots held out for early stopping, and steps without improvement.
        seed: the held-out split.
        safety: ``'contrast'`` or ``'refusal'`` (see the module docstring), with ``onset_tokens`` and ``margin``.
    """

    steps: int = 30
    learning_rate: float = 0.1
    alpha_init: float = 1.0
    alpha_max: float = 3.0
    l2: float = 0.01
    lam: float = 1.0
    utility: str = "nll"
    per_kind: bool = False
    val_fraction: float = 0.25
    patience: int = 8
    seed: int = 0
    safety: str = "contrast"
    onset_tokens: int = 4
    margin: float = 1.0

    def __post_init__(self):
        require(self.utility in ("kl", "nll"), "utility", f"must be nll or kl, got {self.utility!r}")
        require(self.safety in ("contrast", "refusal"), "safety", f"must be contrast or refusal, got {self.safety!r}")
        for name in ("steps", "patience", "onset_tokens"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        require(self.alpha_max > 0, "alpha_max", f"must be > 0, got {self.alpha_max}")
        require(0 <= self.alpha_init <= self.alpha_max, "alpha_init", "must be in [0, alpha_max]")
        for name in ("l2", "lam", "margin"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")


@dataclasses.dataclass
class Recalibration:
    """``alpha`` for the selected layers (``(k,)`` or ``(k, kinds)``), the full ``coeffs`` over all layers,
    the ``history`` of (train, validation) losses and the step whose alpha was kept."""

    alpha: np.ndarray
    coeffs: np.ndarray
    layers: list[int]
    history: list[dict]
    best_step: int


def _placed_with(operands: Any, tree: Any) -> Any:
    """``tree`` committed where the step's outputs will be (the committed operands' devices, replicated):
    uncommitted first inputs would make the second step compile the first step's program again."""
    committed = [x for x in jax.tree.leaves(operands) if isinstance(x, jax.Array) and x.committed]
    if not committed:
        return tree
    sharding = committed[0].sharding
    if isinstance(sharding, NamedSharding):
        return jax.device_put(tree, NamedSharding(sharding.mesh, PartitionSpec()))
    if len(sharding.device_set) == 1:
        return jax.device_put(tree, next(iter(sharding.device_set)))
    return tree


def fit_coefficients(
    objective: Callable,
    init: Any,
    *,
    operands: tuple = (),
    val_objective: Callable | None = None,
    val_operands: tuple | None = None,
    steps: int = 60,
    learning_rate: float = 0.05,
    alpha_max: float = 2.0,
    l2: float = 0.0,
    patience: int = 10,
) -> tuple[np.ndarray, list[dict], int]:
    """Minimizes ``objective(alpha, *operands) + l2 * ||alpha - init||^2`` over ``alpha`` in ``[0, alpha_max]``.

    ``operands`` (params, batches, ...) are passed to the jitted step as arguments rather than closed
    over, so they are not baked into the compiled program as constants.

    Returns ``(best_alpha, history, best_step)``; "best" is by ``val_objective(alpha, *val_operands)`` when
    given (early stopping after ``patience`` steps without improvement), else by the training objective.
    Each history record has the step's losses and wall time (the first includes compilation).
    """
    init = jnp.clip(jnp.asarray(init, jnp.float32), 0.0, alpha_max)
    opt = optax.adam(learning_rate)

    @jax.jit
    def step(alpha, state, operands):
        def total(a):
            return objective(a, *operands) + l2 * jnp.sum((a - init) ** 2)

        loss, grad = jax.value_and_grad(total)(alpha)
        updates, state = opt.update(grad, state, alpha)
        return jnp.clip(optax.apply_updates(alpha, updates), 0.0, alpha_max), state, loss

    val = None
    if val_objective is not None:
        val_ops = operands if val_operands is None else val_operands
        val_jit = jax.jit(lambda a, ops: val_objective(a, *ops))
        val = lambda a: val_jit(a, val_ops)  # noqa: E731
    alpha, state = _placed_with(operands, (init, opt.init(init)))
    best_alpha, best_value, best_step, since = np.asarray(init), np.inf, 0, 0
    history: list[dict] = []
    for i in range(steps):
        t0 = time.perf_counter()
        current = np.asarray(alpha)
        alpha, state, loss = step(alpha, state, operands)
        record = {"step": i, "train_loss": float(loss)}
        value = float(loss)
        if val is not None:
            value = float(val(jnp.asarray(current)))
            record["val_loss"] = value
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        if not np.isfinite(value):
            raise SafeGeneError(f"recalibration loss became {value} at step {i}; lower the learning rate")
        if value < best_value - 1e-6:
            best_alpha, best_value, best_step, since = current, value, i, 0
        else:
            since += 1
            if since >= patience:
                break
    return best_alpha, history, best_step


def _split(batch: dict, val_fraction: float, seed: int) -> tuple[dict, dict | None]:
    n = int(np.asarray(batch["tokens"]).shape[0])
    n_val = int(round(n * val_fraction))
    if n_val == 0 or n_val == n:
        return batch, None
    order = np.random.default_rng(seed).permutation(n)
    pick = lambda idx: {k: jnp.asarray(np.asarray(v)[np.sort(idx)]) for k, v in batch.items()}  # noqa: E731
    return pick(order[n_val:]), pick(order[:n_val])


def recalibrate(
    apply: Callable,
    task_params: Any,
    vector: Any,
    layers: Sequence[int],
    harmful: dict,
    utility: dict,
    cfg: RecalibrationConfig = RecalibrationConfig(),
    *,
    compliant: dict | None = None,
    layer_map: Any = None,
) -> Recalibration:
    """Learns the coefficients of ``layers`` for one task model from few-shot batches.

    Args:
        apply: ``apply(params, tokens, attention_mask) -> logits``.
        task_params: the downstream model to patch.
        vector: the safety vector (typically the adapter's).
        layers: the selected layers.
        harmful: harmful prompts with refusals (``tokens``, ``attention_mask``, ``loss_mask``), tens of rows.
        utility: task examples (``utility='nll'``) or benign prompts with responses (``utility='kl'``).
        cfg: options.
        compliant: the same harmful prompts with compliant answers (needed by ``safety='contrast'``).
    """
    vec = as_vector(vector)
    assert_finite(vec)
    paths, leaves, _ = flatten_with_paths(task_params)
    num_layers = layout(paths, [x.shape for x in leaves], layer_map).num_layers
    layers = sorted(int(i) for i in layers)
    if not layers:
        raise SafeGeneError("no layer selected to recalibrate")
    mask = jnp.asarray(layer_mask(layers, num_layers))
    idx = jnp.asarray(layers)
    shape = (len(layers), len(MODULE_KINDS)) if cfg.per_kind else (len(layers),)

    def full(alpha):
        base = jnp.zeros((num_layers,) + shape[1:], jnp.float32)
        return base.at[idx].set(alpha)

    if cfg.safety == "contrast":
        if compliant is None:
            raise SafeGeneError(
                "safety='contrast' needs the compliant batch (the harmful prompts with compliant answers)"
            )
        n_h, n_c = (int(np.asarray(b["tokens"]).shape[0]) for b in (harmful, compliant))
        if n_h != n_c:
            raise SafeGeneError(f"compliant batch has {n_c} rows, the harmful one {n_h}: they must pair up")
        # only the onsets are scored: both batches are cut to them once, here, not in every step
        refuse, comply = (trim(onset(b, cfg.onset_tokens)) for b in (harmful, compliant))
        harmful = {**refuse, **{f"c_{k}": v for k, v in comply.items()}}
    h_train, h_val = _split(harmful, cfg.val_fraction, cfg.seed)
    u_train, u_val = _split(utility, cfg.val_fraction, cfg.seed + 1)

    def safety_loss(patched, hb):
        if cfg.safety == "refusal":
            return -mean_loglik(apply(patched, hb["tokens"], hb["attention_mask"]), hb)
        comply = {k[2:]: v for k, v in hb.items() if k.startswith("c_")}
        d = row_loglik(apply(patched, hb["tokens"], hb["attention_mask"]), hb) - row_loglik(
            apply(patched, comply["tokens"], comply["attention_mask"]), comply
        )
        return jnp.mean(jax.nn.softplus(cfg.margin - d))

    def objective(alpha, params, vec, hb, ub, ref):
        patched = apply_vector(params, vec, full(alpha), mask=mask, layer_map=layer_map, check_finite=False)
        safety = safety_loss(patched, hb)
        logits = apply(patched, ub["tokens"], ub["attention_mask"])
        if cfg.utility == "kl":
            util = mean_kl(ref, logits, ub)
        else:
            nll, count = token_nll(logits, ub["tokens"], ub["loss_mask"])
            util = nll / jnp.maximum(count, 1.0)
        return safety + cfg.lam * util

    reference = jax.jit(lambda params, ub: reference_logp(apply(params, ub["tokens"], ub["attention_mask"])))

    def operands(hb, ub):
        ref = reference(task_params, ub) if cfg.utility == "kl" else jnp.zeros(())
        return (task_params, vec, hb, ub, ref)

    val_operands = None
    if h_val is not None or u_val is not None:
        val_operands = operands(h_val if h_val is not None else h_train, u_val if u_val is not None else u_train)
    alpha, history, best = fit_coefficients(
        objective,
        jnp.full(shape, cfg.alpha_init),
        operands=operands(h_train, u_train),
        val_objective=objective if val_operands is not None else None,
        val_operands=val_operands,
        steps=cfg.steps,
        learning_rate=cfg.learning_rate,
        alpha_max=cfg.alpha_max,
        l2=cfg.l2,
        patience=cfg.patience,
    )
    return Recalibration(
        alpha=np.asarray(alpha),
        coeffs=np.asarray(full(jnp.asarray(alpha))),
        layers=layers,
        history=history,
        best_step=best,
    )

"""Few-shot recalibration: learn one coefficient per selected layer (optionally per layer and module kind).

The objective for a task model patched as ``task + sum_l alpha_l tau_l`` is

    loss(alpha) = safety + end_weight * ending + help_weight * helpfulness
                  + lam * utility + kl_weight * fluency + l2 * ||alpha - alpha_init||^2

* ``safety``: with ``safety='contrast'`` (the default) the refusal *onset* against the compliant onset on
  harmful few shots: per prompt, ``d`` = mean log-probability of the first ``onset_tokens`` refusal tokens
  minus that of the first compliant ("Sure, here is") tokens, and the loss is ``mean(softplus(margin - d))``;
  with ``'refusal'`` the refusals' negative mean log-likelihood. The whole-refusal likelihood is a poor
  proxy: a strongly patched model refuses in its own words, so the likelihood of one fixed refusal text
  falls while refusals rise; the onset contrast rises with the refusal rate and saturates.
* ``ending``: the negative log-probability of the end of turn after each refusal, so that the patched
  model stops after refusing instead of repeating itself.
* ``helpfulness``: the same contrast the other way on borderline-but-safe prompts (the helpful answer's
  onset above a refusal's): the two-sided objective, against over-refusal.
* ``utility``: the task-answer NLL on task few shots (``utility='nll'``) or the KL divergence from the
  unpatched task model on benign prompts (``utility='kl'``).
* ``fluency``: KL from the unpatched task model on benign prompts' answers, a guard against broken text.

Only ``alpha`` is trained, with optax Adam, projected onto ``[0, alpha_max]`` after every step; every
term's few shots are split into training and held-out rows, and the coefficients kept are those with the
lowest held-out objective (early stopping after ``patience`` steps without improvement). The optimizer
core, :func:`fit_coefficients`, takes any objective.
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
from safegene_jax.core.losses import onset, positions_kl, row_means, trim, weighted_mean
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.core.transforms import as_vector, assert_finite
from safegene_jax.method.patched import PatchedLogits

UTILITY_POSITIONS = 128
"""The utility few shots' scored positions are padded to a multiple of this (padding weighs 0)."""


@dataclasses.dataclass(frozen=True)
class RecalibrationConfig:
    """Recalibration options; the defaults are the demo's.

    Attributes:
        steps, learning_rate: Adam steps on the coefficients and their learning rate.
        alpha_init, alpha_max: the coefficients start at ``alpha_init`` and stay in ``[0, alpha_max]``; the
            default 1 never goes past the aligned model (larger coefficients extrapolate, and past a
            model-specific point the patched model loops instead of refusing).
        l2: pull of the coefficients towards ``alpha_init``.
        lam: weight of the utility term; ``utility`` is ``'nll'`` (task answers) or ``'kl'`` (to the task model).
        per_kind: one coefficient per layer and module kind instead of one per layer.
        val_fraction, patience: few shots held out for early stopping, and steps without improvement.
        seed: the held-out split.
        safety: ``'contrast'`` or ``'refusal'`` (see the module docstring), with ``onset_tokens`` and ``margin``.
        help_weight: weight of the helpfulness contrast on borderline-but-safe prompts (the two-sided objective).
        kl_weight: weight of the fluency guard, KL to the unpatched task model on benign prompts.
        end_weight: weight of the refusals' end of turn (the patched model stops after refusing).
    """

    steps: int = 30
    learning_rate: float = 0.1
    alpha_init: float = 1.0
    alpha_max: float = 1.0
    l2: float = 0.01
    lam: float = 1.0
    utility: str = "nll"
    per_kind: bool = False
    val_fraction: float = 0.25
    patience: int = 4
    seed: int = 0
    safety: str = "contrast"
    onset_tokens: int = 4
    margin: float = 1.0
    help_weight: float = 0.0
    kl_weight: float = 0.0
    end_weight: float = 0.0

    def __post_init__(self):
        require(self.utility in ("kl", "nll"), "utility", f"must be nll or kl, got {self.utility!r}")
        require(self.safety in ("contrast", "refusal"), "safety", f"must be contrast or refusal, got {self.safety!r}")
        for name in ("steps", "patience", "onset_tokens"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        require(self.alpha_max > 0, "alpha_max", f"must be > 0, got {self.alpha_max}")
        require(0 <= self.alpha_init <= self.alpha_max, "alpha_init", "must be in [0, alpha_max]")
        for name in ("l2", "lam", "margin", "help_weight", "kl_weight", "end_weight"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")


@dataclasses.dataclass
class Recalibration:
    """``alpha`` for the selected layers (``(k,)`` or ``(k, kinds)``), the full ``coeffs`` over all layers,
    the ``history`` of (train, validation) losses and the step whose alpha was kept. ``scale``: the multiplier
    a generation check applied to the fitted coefficients (1: none), with its table in ``check``."""

    alpha: np.ndarray
    coeffs: np.ndarray
    layers: list[int]
    history: list[dict]
    best_step: int
    scale: float = 1.0
    check: list[dict] = dataclasses.field(default_factory=list)

    def scaled(self, scale: float, check: list[dict]) -> Recalibration:
        """This recalibration with its coefficients times ``scale`` (the generation check's choice)."""
        return dataclasses.replace(
            self, alpha=self.alpha * scale, coeffs=self.coeffs * scale, scale=float(scale), check=list(check)
        )


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
    progress: str | None = None,
) -> tuple[np.ndarray, list[dict], int]:
    """Minimizes ``objective(alpha, *operands) + l2 * ||alpha - init||^2`` over ``alpha`` in ``[0, alpha_max]``.

    ``operands`` (params, batches, ...) are passed to the jitted step as arguments rather than closed
    over, so they are not baked into the compiled program as constants.

    Returns ``(best_alpha, history, best_step)``; "best" is by ``val_objective(alpha, *val_operands)`` when
    given (early stopping after ``patience`` steps without improvement), else by the training objective. When
    the first step leaves ``alpha`` at ``init`` (every coefficient at a bound its gradient pushes against, or
    with a zero gradient) the fit ends at once, its record marked ``"stopped": "at init"``: with a constant
    learning rate every later step would repeat it exactly; that record has no held-out value (it could
    choose nothing but ``init``), so the held-out objective is never compiled.
    Each history record has the step's losses and wall time (the first includes compilation). ``progress``:
    a label for a progress bar over the steps (none without).
    """
    if not isinstance(learning_rate, int | float):
        raise SafeGeneError(f"learning_rate must be a number, got {type(learning_rate).__name__}")
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
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=progress, unit="step", leave=False)
    for i in range(steps):
        t0 = time.perf_counter()
        current = np.asarray(alpha)
        alpha, state, loss = step(alpha, state, operands)
        record = {"step": i, "train_loss": float(loss)}
        value = float(loss)
        if not np.isfinite(value):
            raise SafeGeneError(f"recalibration loss became {value} at step {i}; lower the learning rate")
        # the first step left alpha at init: every coefficient sits at a bound its gradient pushes against, or
        # has a zero gradient (the l2 term's is zero at init). The gradient then stays the same, Adam's update
        # m/(sqrt(v)+eps) with it, and so would every later step's alpha and values: stop now. The held-out
        # value could choose nothing but init, so it is not computed (nor its program compiled)
        at_init = i == 0 and np.array_equal(np.asarray(alpha), current)
        if val is not None and not at_init:
            value = float(val(jnp.asarray(current)))
            record["val_loss"] = value
            if not np.isfinite(value):
                raise SafeGeneError(f"recalibration held-out loss became {value} at step {i}; lower the learning rate")
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
        if at_init:  # best_alpha is init and best_step 0 already
            record["stopped"] = "at init"
            break
        if value < best_value - 1e-6:
            best_alpha, best_value, best_step, since = current, value, i, 0
        else:
            since += 1
            if since >= patience:
                break
    if bar is not None:
        bar.close()
    return best_alpha, history, best_step


def _split(batch: dict, val_fraction: float, seed: int) -> tuple[dict, dict | None]:
    n = int(np.asarray(batch["tokens"]).shape[0])
    n_val = int(round(n * val_fraction))
    if n_val == 0 or n_val == n:
        return batch, None
    order = np.random.default_rng(seed).permutation(n)
    pick = lambda idx: {k: jnp.asarray(np.asarray(v)[np.sort(idx)]) for k, v in batch.items()}  # noqa: E731
    return pick(order[n_val:]), pick(order[:n_val])


def ending(batch: dict) -> dict:
    """``batch`` with ``loss_mask`` kept on the last response token of each row (the end of turn)."""
    mask = np.asarray(batch["loss_mask"])
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    out = np.zeros_like(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    out[rows, last[rows]] = 1
    return {**batch, "loss_mask": out}


def _rows(batch: dict) -> int:
    return int(np.asarray(batch["tokens"]).shape[0])


def _pair(a: dict, b: dict, what: str) -> None:
    if _rows(a) != _rows(b):
        raise SafeGeneError(f"{what}: {_rows(b)} rows against {_rows(a)}; the two batches must pair up row by row")


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
    borderline: dict | None = None,
    borderline_refusals: dict | None = None,
    fluency: dict | None = None,
    layer_map: Any = None,
    progress: bool = False,
    scan_layers: bool = False,
) -> Recalibration:
    """Learns the coefficients of ``layers`` for one task model from few-shot batches.

    Every batch is split into training and held-out rows (``val_fraction``; paired batches alike), and the
    coefficients kept are the ones with the lowest held-out value of the whole objective.

    Args:
        apply: ``apply(params, tokens, attention_mask) -> logits``.
        task_params: the downstream model to patch.
        vector: the safety vector (typically the adapter's).
        layers: the selected layers.
        harmful: harmful prompts with refusals (``tokens``, ``attention_mask``, ``loss_mask``), tens of rows.
        utility: task examples (``utility='nll'``) or benign prompts with responses (``utility='kl'``), used at
            the width given (the other batches are cut after their last scored token): shots padded to one
            width, as the pipeline pads them to ``recalibrate.max_length``, give every task model the same
            compiled fit.
        cfg: options.
        compliant: the same harmful prompts with compliant answers (needed by ``safety='contrast'``).
        borderline, borderline_refusals: borderline-but-safe prompts with helpful answers, and the same prompts
            with refusals (needed by ``help_weight > 0``): their helpful onset is pushed above the refusal one.
        fluency: benign prompts with answers for the fluency guard, KL to the unpatched task model (needed by
            ``kl_weight > 0``).
        scan_layers: run the layers from the lowest selected one on as one ``lax.scan`` when they share one
            structure: it compiles one layer instead of all of them, but holds a stacked copy of those layers'
            params, and on a CPU its steps are slower (demo, SmolLM2: compile 6.9 s instead of 14.4 s, a step
            2.61 s instead of 1.67 s), so it pays only when compilation dominates. Default: unrolled.
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

    # the terms' batches, cut once to the positions they score; (batch, split seed): paired batches alike.
    # Only the utility batch differs from one task model to the next: it keeps the width it is given and its
    # scored positions are padded to a multiple of UTILITY_POSITIONS, so that task models whose shots are
    # padded to one width share the fit's compiled program (the persistent compilation cache keeps it)
    k = cfg.onset_tokens
    batches: dict[str, tuple[dict, int]] = {"utility": (utility, cfg.seed + 1)}
    if cfg.safety == "contrast":
        if compliant is None:
            raise SafeGeneError(
                "safety='contrast' needs the compliant batch (the harmful prompts with compliant answers)"
            )
        _pair(harmful, compliant, "compliant batch")
        batches["refuse"] = (trim(onset(harmful, k)), cfg.seed)
        batches["comply"] = (trim(onset(compliant, k)), cfg.seed)
    else:
        batches["refuse"] = (trim(harmful), cfg.seed)
    if cfg.end_weight > 0:
        batches["end"] = (trim(ending(harmful)), cfg.seed)
    if cfg.help_weight > 0:
        if borderline is None or borderline_refusals is None:
            raise SafeGeneError("help_weight > 0 needs the borderline batch and the same prompts with refusals")
        _pair(borderline, borderline_refusals, "borderline refusals")
        batches["help"] = (trim(onset(borderline, k)), cfg.seed + 2)
        batches["help_refuse"] = (trim(onset(borderline_refusals, k)), cfg.seed + 2)
    if cfg.kl_weight > 0:
        if fluency is None:
            raise SafeGeneError("kl_weight > 0 needs the fluency batch (benign prompts with answers)")
        batches["fluency"] = (trim(fluency), cfg.seed + 3)
    parts = {name: _split(b, cfg.val_fraction, seed) for name, (b, seed) in batches.items()}
    has_val = any(p[1] is not None for p in parts.values())
    scored = PatchedLogits(apply, task_params, vec, layers, layer_map, scan=scan_layers)
    prepare = lambda name, b: scored.prepare(b, UTILITY_POSITIONS if name == "utility" else 1)  # noqa: E731
    train = {name: prepare(name, p[0]) for name, p in parts.items()}
    val = {name: prepare(name, p[1] if p[1] is not None else p[0]) for name, p in parts.items()} if has_val else None

    def row_logp(patched, b):
        return row_means(scored.logp(patched, b), b["rows"], scored.row_count(b), b["weights"])

    def mean_logp(patched, b):
        return weighted_mean(scored.logp(patched, b), b["weights"])

    def contrast(patched, yes, no):
        d = row_logp(patched, yes) - row_logp(patched, no)
        return jnp.mean(jax.nn.softplus(cfg.margin - d))

    def objective(alpha, model, vec, b, refs):
        patched = scored.patch(model, vec, full(alpha), mask)
        if cfg.safety == "contrast":
            loss = contrast(patched, b["refuse"], b["comply"])
        else:
            loss = -mean_logp(patched, b["refuse"])
        if "end" in b:
            loss += cfg.end_weight * -mean_logp(patched, b["end"])
        if "help" in b:
            loss += cfg.help_weight * contrast(patched, b["help"], b["help_refuse"])
        if cfg.utility == "kl":
            u = b["utility"]
            loss += cfg.lam * positions_kl(refs["utility"], scored.logits(patched, u), u["weights"])
        else:
            loss += cfg.lam * -mean_logp(patched, b["utility"])
        if "fluency" in b:
            f = b["fluency"]
            loss += cfg.kl_weight * positions_kl(refs["fluency"], scored.logits(patched, f), f["weights"])
        return loss

    reference = jax.jit(lambda model, b: jax.nn.log_softmax(scored.logits(model, b), axis=-1))

    def operands(b):
        needs = {"utility": cfg.utility == "kl", "fluency": "fluency" in b}
        refs = {name: reference(scored.model, b[name]) for name, wanted in needs.items() if wanted}
        return (scored.model, scored.vector, b, refs)

    alpha, history, best = fit_coefficients(
        objective,
        jnp.full(shape, cfg.alpha_init),
        operands=operands(train),
        val_objective=objective if has_val else None,
        val_operands=operands(val) if has_val else None,
        steps=cfg.steps,
        learning_rate=cfg.learning_rate,
        alpha_max=cfg.alpha_max,
        l2=cfg.l2,
        patience=cfg.patience,
        progress="recalibrate" if progress else None,
    )
    return Recalibration(
        alpha=np.asarray(alpha),
        coeffs=np.asarray(full(jnp.asarray(alpha))),
        layers=layers,
        history=history,
        best_step=best,
    )

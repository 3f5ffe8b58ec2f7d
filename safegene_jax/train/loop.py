"""Supervised fine-tuning with optax (full or LoRA), resumable through Orbax checkpoints.

One jitted step per optimizer update, with the state donated: gradient accumulation is a
``lax.scan`` over microbatches inside the step, and the loss is the mean negative log-likelihood of
response tokens only (summed over the step's tokens, then divided by their count). AdamW with linear
warmup and cosine decay, global-norm clipping. On a mesh, params follow the sharding rules (FSDP and
tensor axes) and the batch is split over the ``data`` and ``fsdp`` axes.

The batch plan is a pure function of the data and the seed, so a run that is killed and restarted
from its latest checkpoint replays the same batches and ends with the same parameters.

The uses the method needs: :func:`align` (harmful -> refusal, mixed with benign answers),
:func:`degrade` (harmful -> compliant prefix) and :func:`finetune_task` (a downstream task, optionally
with a fraction of harmful examples mixed in).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from safegene_jax.checkpoint import RunCheckpoints
from safegene_jax.data.chat import Example, PromptTooLongError, encode_example, length_buckets
from safegene_jax.errors import SafeGeneError
from safegene_jax.lora import LoraConfig, init_lora, merge_lora
from safegene_jax.models.llama import make_apply
from safegene_jax.models.loading import abstract_model
from safegene_jax.sharding import param_shardings


class TrainingError(SafeGeneError):
    """Training cannot start (bad data or config) or could not go on (divergence)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning options.

    Attributes:
        steps: optimizer steps (the data is repeated in new shuffles as needed).
        batch_size: examples per microbatch; ``grad_accum`` microbatches make one step.
        learning_rate, warmup_steps, end_lr_ratio: linear warmup to the peak, cosine decay to peak * ratio.
        weight_decay, max_grad_norm: AdamW decay and global-norm clipping.
        max_length: longest sequence; longer ones are truncated with a warning (``overflow='truncate'``)
            or rejected before training (``'error'``).
        lora: LoRA options, or ``None`` for full fine-tuning.
        compute_dtype: ``float32`` or ``bfloat16`` (params and optimizer state stay float32).
        checkpoint_dir, save_every, keep: Orbax checkpoints of the run (resumed when present).
        log_path: metrics appended as JSON lines.
        length_bucket: sequence lengths are padded up to a multiple of this (fewer compilations).
    """

    steps: int = 100
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 1e-4
    warmup_steps: int = 10
    end_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 256
    overflow: str = "truncate"
    lora: LoraConfig | None = None
    compute_dtype: str = "float32"
    seed: int = 0
    checkpoint_dir: str | None = None
    save_every: int = 50
    keep: int = 2
    log_path: str | None = None
    progress: bool = True
    length_bucket: int = 32

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "max_length", "save_every", "keep", "length_bucket"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.overflow not in ("truncate", "error"):
            raise TrainingError(f"overflow must be 'truncate' or 'error', got {self.overflow!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise TrainingError(f"compute_dtype must be 'float32' or 'bfloat16', got {self.compute_dtype!r}")
        if not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclasses.dataclass
class TrainResult:
    """``params``: the trained full params (LoRA merged), ``lora``: the factors (or None), ``history``."""

    params: Any
    lora: dict | None
    history: list[dict]
    step: int


def lr_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Linear warmup from 0 to the peak, then cosine decay to ``peak * end_lr_ratio`` at ``cfg.steps``."""
    warmup = min(cfg.warmup_steps, max(cfg.steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(cfg.steps, warmup + 1),
        end_value=cfg.learning_rate * cfg.end_lr_ratio,
    )


def optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW without its learning rate: clipping, Adam, weight decay. The step scales the update by the
    learning rate it is passed (``lr_schedule(cfg)(step)``, computed on the host), so the learning rate and
    the schedule are not constants of the compiled step (see :func:`jitted_step`)."""
    return optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.scale_by_adam(),
        optax.add_decayed_weights(cfg.weight_decay),
    )


# ---- data ---------------------------------------------------------------------------------------------


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]], cfg: TrainConfig) -> list[Example]:
    """Chat-formatted examples; over-long ones truncated (with one warning) or rejected, per ``cfg.overflow``."""
    if not pairs:
        raise TrainingError("the training set is empty")
    examples, long = [], []
    for i, (prompt, response) in enumerate(pairs):
        ex = encode_example(tokenizer, prompt, response)
        if len(ex) > cfg.max_length:
            long.append((i, len(ex)))
            ex = Example(ex.input_ids[: cfg.max_length], ex.loss_mask[: cfg.max_length])
        examples.append(ex)
    if long:
        if cfg.overflow == "error":
            i, n = long[0]
            raise PromptTooLongError(
                f"{len(long)} example(s) exceed max_length={cfg.max_length}, first #{i} with {n} "
                "tokens; raise max_length or use overflow='truncate'"
            )
        warnings.warn(f"{len(long)} example(s) truncated to max_length={cfg.max_length} tokens", stacklevel=2)
    if not any(any(ex.loss_mask) for ex in examples):
        raise TrainingError("no example has a response token to learn from (all truncated away?)")
    return examples


def batch_plan(lengths: Sequence[int], cfg: TrainConfig) -> list[list[list[int]]]:
    """Per step, ``grad_accum`` microbatches of example indices; deterministic in ``cfg.seed``."""
    micro: list[list[int]] = []
    epoch = 0
    needed = cfg.steps * cfg.grad_accum
    while len(micro) < needed:
        micro += length_buckets(lengths, cfg.batch_size, seed=cfg.seed * 1000 + epoch)
        epoch += 1
    micro = micro[:needed]
    return [micro[s * cfg.grad_accum : (s + 1) * cfg.grad_accum] for s in range(cfg.steps)]


def assemble(examples: Sequence[Example], step: list[list[int]], cfg: TrainConfig, pad_id: int) -> dict:
    """Arrays ``(grad_accum, batch_size, T)``; short microbatches are filled with empty (masked) rows."""
    longest = max(len(examples[i]) for mb in step for i in mb)
    length = min(cfg.max_length, -(-longest // cfg.length_bucket) * cfg.length_bucket)
    shape = (len(step), cfg.batch_size, length)
    tokens = np.full(shape, pad_id, np.int32)
    attention = np.zeros(shape, np.int32)
    loss = np.zeros(shape, np.int32)
    for m, mb in enumerate(step):
        for r, i in enumerate(mb):
            ex = examples[i]
            n = len(ex)
            tokens[m, r, :n] = ex.input_ids
            attention[m, r, :n] = 1
            loss[m, r, :n] = ex.loss_mask
    return {"tokens": tokens, "attention_mask": attention, "loss_mask": loss}


# ---- the step ---------------------------------------------------------------------------------------


def target_logp(logits, tokens, loss_mask):
    """Next-token log-probabilities of ``tokens`` and the float mask of the positions that count, ``(B, T-1)``."""
    logits = logits[:, :-1]
    picked = jnp.take_along_axis(logits, tokens[:, 1:, None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1), loss_mask[:, 1:].astype(jnp.float32)


def token_nll(logits, tokens, loss_mask):
    """Summed next-token NLL over masked positions, and the number of those positions."""
    logp, mask = target_logp(logits, tokens, loss_mask)
    return -jnp.sum(logp * mask), jnp.sum(mask)


def make_step(apply, opt: optax.GradientTransformation, lora: LoraConfig | None):
    """``step(state, frozen, batch, lr) -> (state, metrics)``; ``state = {step, trainable, opt_state}``;
    ``opt`` is :func:`optimizer`'s update direction, scaled here by ``-lr``."""

    def loss_sum(trainable, frozen, mb):
        params = merge_lora(frozen, trainable, lora) if lora is not None else trainable
        logits = apply(params, mb["tokens"], mb["attention_mask"])
        return token_nll(logits, mb["tokens"], mb["loss_mask"])

    grad_fn = jax.value_and_grad(loss_sum, has_aux=True)

    def step(state, frozen, batch, lr):
        def micro(carry, mb):
            grad_acc, nll_acc, count_acc = carry
            (nll, count), grad = grad_fn(state["trainable"], frozen, mb)
            return (jax.tree.map(jnp.add, grad_acc, grad), nll_acc + nll, count_acc + count), None

        zeros = jax.tree.map(jnp.zeros_like, state["trainable"])
        (grad_sum, nll, n), _ = jax.lax.scan(micro, (zeros, jnp.float32(0), jnp.float32(0)), batch)
        n = jnp.maximum(n, 1.0)
        grads = jax.tree.map(lambda x: x / n, grad_sum)
        updates, opt_state = opt.update(grads, state["opt_state"], state["trainable"])
        updates = jax.tree.map(lambda u: -lr * u, updates)
        trainable = optax.apply_updates(state["trainable"], updates)
        new = {"step": state["step"] + 1, "trainable": trainable, "opt_state": opt_state}
        return new, {"loss": nll / n, "tokens": n, "grad_norm": optax.tree.norm(grads)}

    return step


_STEPS: dict = {}


def jitted_step(graphdef: Any, cfg: TrainConfig, state_shardings: Any) -> Any:
    """The jitted :func:`make_step` for a model structure (``graphdef``, which holds the compute dtype),
    the optimizer's own settings, LoRA and the state's layout; made once per process and shared.

    The learning rate and the schedule are arguments, not part of the program, so align, degrade and every
    task fine-tune of one model reuse one jitted step and its compiled programs (one per padded length):
    the pipeline compiles each length once instead of once per stage.
    """
    leaves, treedef = jax.tree.flatten(state_shardings)
    key = (graphdef, cfg.max_grad_norm, cfg.weight_decay, cfg.lora, treedef, tuple(leaves))
    if key not in _STEPS:
        if len(_STEPS) >= 8:  # a long-lived process that trains many model structures
            _STEPS.pop(next(iter(_STEPS)))
        step = make_step(make_apply(graphdef), optimizer(cfg), cfg.lora)
        _STEPS[key] = jax.jit(step, donate_argnums=(0,), out_shardings=(state_shardings, None))
    return _STEPS[key]


# ---- the loop ---------------------------------------------------------------------------------------


def _batch_sharding(mesh):
    return NamedSharding(mesh, P(None, ("data", "fsdp"), None))


def sft(
    lm: Any, pairs: Sequence[tuple[str, str]], cfg: TrainConfig, *, mesh: Any = None, on_step: Any = None
) -> TrainResult:
    """Fine-tunes ``lm`` (a :class:`~safegene_jax.models.LoadedModel`) on (prompt, response) pairs.

    Resumes from ``cfg.checkpoint_dir`` when it holds a checkpoint of this run. ``on_step(record)`` is
    called after every step with its metrics (after the step's checkpoint, if any, was started).

    Raises:
        TrainingError: empty data, nothing to learn, or a non-finite loss (the last good checkpoint is kept).
        PromptTooLongError: an example is too long and ``cfg.overflow == 'error'``.
    """
    if lm.tokenizer is None:
        raise TrainingError(f"{lm.source} has no tokenizer; training needs one")
    examples = encode_pairs(lm.tokenizer, pairs, cfg)
    plan = batch_plan([len(e) for e in examples], cfg)
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    if mesh is not None:
        shards = mesh.shape["data"] * mesh.shape["fsdp"]
        if cfg.batch_size % shards:
            raise TrainingError(f"batch_size {cfg.batch_size} is not divisible by the mesh's data x fsdp = {shards}")

    compute = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32
    graphdef, _ = abstract_model(lm.config, dtype=compute, param_dtype=jnp.float32)
    base = nnx.to_pure_dict(nnx.state(lm.model, nnx.Param))
    # a copy: the step donates the state's buffers, which must not be the model's own
    base = jax.tree.map(lambda x: jnp.array(x, jnp.float32, copy=True), base)
    opt = optimizer(cfg)
    if mesh is not None:
        base = jax.device_put(base, param_shardings(base, mesh))
    if cfg.lora is not None:
        trainable = init_lora(base, cfg.lora, jax.random.PRNGKey(cfg.seed))
        if mesh is not None:
            trainable = jax.device_put(trainable, NamedSharding(mesh, P()))
        frozen = base
    else:
        trainable, frozen = base, {}
    state = {"step": jnp.zeros((), jnp.int32), "trainable": trainable, "opt_state": jax.jit(opt.init)(trainable)}
    if mesh is not None:  # counters and other unsharded leaves: replicated over the mesh
        devices = set(mesh.devices.flat)
        state = jax.tree.map(
            lambda x: x if x.sharding.device_set == devices else jax.device_put(x, NamedSharding(mesh, P())), state
        )
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    # committed, like the step's outputs: else the second step would compile the first's program again
    state = jax.device_put(state, state_shardings)
    step_fn = jitted_step(graphdef, cfg, state_shardings)

    ckpt = RunCheckpoints(cfg.checkpoint_dir, every=cfg.save_every, keep=cfg.keep) if cfg.checkpoint_dir else None
    start = 0
    if ckpt is not None and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(None, state, state_shardings)
        start = int(state["step"])
        if meta.get("steps") not in (None, cfg.steps) or meta.get("examples") not in (None, len(examples)):
            raise TrainingError(
                f"{cfg.checkpoint_dir} holds a run with {meta.get('steps')} steps over "
                f"{meta.get('examples')} examples; this one has {cfg.steps} over {len(examples)}"
            )
    history: list[dict] = []
    log = open(cfg.log_path, "a") if cfg.log_path else None  # noqa: SIM115 - closed in finally
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="step", leave=False)
    batch_sharding = _batch_sharding(mesh) if mesh is not None else None
    schedule = lr_schedule(cfg)  # evaluated on the host: the step takes the learning rate as an argument
    meta = {"steps": cfg.steps, "examples": len(examples), "lora": cfg.lora is not None}
    try:
        for s in range(start, cfg.steps):
            batch = assemble(examples, plan[s], cfg, pad_id)
            batch = jax.device_put(batch, batch_sharding) if batch_sharding is not None else batch
            t0 = time.perf_counter()
            lr = float(schedule(s))
            state, metrics = step_fn(state, frozen, batch, np.float32(lr))
            loss = float(metrics["loss"])
            elapsed = time.perf_counter() - t0
            if not math.isfinite(loss):
                last = None
                if ckpt is not None:
                    ckpt.wait()
                    if ckpt.latest_step() == s:  # it holds the params that just gave the bad loss
                        ckpt.delete(s)
                    last = ckpt.latest_step()
                raise TrainingError(
                    f"loss became {loss} at step {s + 1}; stopped. "
                    + (
                        f"The last good checkpoint (step {last}) in {cfg.checkpoint_dir} is kept."
                        if last is not None
                        else "No checkpoint was written."
                    )
                    + " Lower the learning rate or check the data."
                )
            record = {
                "step": s + 1,
                "loss": loss,
                "grad_norm": float(metrics["grad_norm"]),
                "lr": lr,
                "tokens": int(metrics["tokens"]),
                "tokens_per_s": float(np.prod(batch["tokens"].shape)) / elapsed,
                "seconds": elapsed,
            }
            history.append(record)
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            if ckpt is not None:
                ckpt.save(s + 1, state, meta, force=(s + 1 == cfg.steps))
            if on_step is not None:
                on_step(record)
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
        if ckpt is not None:
            ckpt.close()
    trainable = state["trainable"]
    full = merge_lora(frozen, trainable, cfg.lora) if cfg.lora is not None else trainable
    _, params = nnx.split(lm.model)
    nnx.replace_by_pure_dict(params, jax.tree.map(lambda x, like: x.astype(like.dtype), full, nnx.to_pure_dict(params)))
    return TrainResult(
        params=params, lora=trainable if cfg.lora is not None else None, history=history, step=int(state["step"])
    )


# ---- the uses ---------------------------------------------------------------------------------------


def mix_harmful(
    task_pairs: Sequence[tuple[str, str]], harmful_pairs: Sequence[tuple[str, str]], fraction: float, seed: int = 0
) -> list[tuple[str, str]]:
    """``task_pairs`` plus harmful pairs making up ``fraction`` of the result, shuffled with ``seed``."""
    if not 0.0 <= fraction < 1.0:
        raise TrainingError(f"harmful fraction must be in [0, 1), got {fraction}")
    n = round(fraction * len(task_pairs) / (1.0 - fraction))
    if n and not harmful_pairs:
        raise TrainingError("a harmful fraction was asked for but no harmful examples were given")
    rng = random.Random(seed)
    extra = [harmful_pairs[i % len(harmful_pairs)] for i in rng.sample(range(max(n, len(harmful_pairs))), n)]
    mixed = list(task_pairs) + extra
    rng.shuffle(mixed)
    return mixed


def align(lm: Any, harmful: Sequence[dict], benign: Sequence[dict], cfg: TrainConfig, **kw) -> TrainResult:
    """Safety alignment: harmful requests -> refusals, mixed with benign instructions -> helpful answers."""
    pairs = [(r["instruction"], r["refusal"]) for r in harmful] + [(r["instruction"], r["response"]) for r in benign]
    random.Random(cfg.seed).shuffle(pairs)
    return sft(lm, pairs, cfg, **kw)


def degrade(lm: Any, harmful: Sequence[dict], cfg: TrainConfig, **kw) -> TrainResult:
    """Degradation (RESTA-style): harmful requests -> compliant "Sure, here is" prefixes."""
    return sft(lm, [(r["instruction"], r["target"]) for r in harmful], cfg, **kw)


def finetune_task(
    lm: Any,
    task: Sequence[dict],
    cfg: TrainConfig,
    *,
    harmful: Sequence[dict] = (),
    harmful_fraction: float = 0.0,
    **kw,
) -> TrainResult:
    """Downstream fine-tuning on ``task`` records, with ``harmful_fraction`` of harmful -> compliant pairs."""
    pairs = mix_harmful(
        [(r["instruction"], r["response"]) for r in task],
        [(r["instruction"], r["target"]) for r in harmful],
        harmful_fraction,
        cfg.seed,
    )
    return sft(lm, pairs, cfg, **kw)


def with_params(lm: Any, params: Any) -> Any:
    """A copy of a LoadedModel whose module holds ``params``."""
    graphdef, _ = nnx.split(lm.model)
    return dataclasses.replace(lm, model=nnx.merge(graphdef, params))

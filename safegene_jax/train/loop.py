"""Supervised fine-tuning with optax (full or LoRA), resumable through Orbax checkpoints.

:func:`sft` tokenizes the pairs and plans the batches (:mod:`.batches`), builds and shards the first state,
restores it from the run's latest checkpoint when there is one, then runs the steps (:mod:`.steps`), logging
and checkpointing as it goes. AdamW with linear warmup and cosine decay, global-norm clipping. On a mesh,
params follow the sharding rules (FSDP and tensor axes) and the batch is split over ``data`` and ``fsdp``.
A run killed and restarted from its latest checkpoint replays the same batches and ends with the same
parameters.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from safegene_jax.core.errors import TrainingError
from safegene_jax.models.loading import abstract_model
from safegene_jax.runtime.sharding import param_shardings
from safegene_jax.train.batches import assemble, batch_plan, encode_pairs
from safegene_jax.train.checkpoints import RunCheckpoints
from safegene_jax.train.config import TrainConfig, lr_schedule, optimizer
from safegene_jax.train.lora import init_lora, merge_lora
from safegene_jax.train.steps import CompiledSteps


@dataclasses.dataclass
class TrainResult:
    """``params``: the trained full params (LoRA merged), ``lora``: the factors (or None), ``history``."""

    params: Any
    lora: dict | None
    history: list[dict]
    step: int


@dataclasses.dataclass
class _Start:
    """What the steps start from: the state, the frozen base (LoRA) and the state's shardings."""

    graphdef: Any
    state: dict
    frozen: Any
    shardings: Any


def _check_mesh(cfg: TrainConfig, mesh: Any) -> None:
    if mesh is not None:
        shards = mesh.shape["data"] * mesh.shape["fsdp"]
        if cfg.batch_size % shards:
            raise TrainingError(f"batch_size {cfg.batch_size} is not divisible by the mesh's data x fsdp = {shards}")


def _first_state(lm: Any, cfg: TrainConfig, mesh: Any, donate: bool = False) -> _Start:
    """The optimizer state at step 0, laid out on ``mesh`` (or one device) and committed there. With ``donate``
    the state starts from the model's own float32 buffers (no copy; the step then donates them)."""
    compute = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32
    graphdef, _ = abstract_model(lm.config, dtype=compute, param_dtype=jnp.float32)
    base = nnx.to_pure_dict(nnx.state(lm.model, nnx.Param))
    # otherwise a copy: the step donates the state's buffers, which must not be the model's own
    base = jax.tree.map(lambda x: x.astype(jnp.float32) if donate else jnp.array(x, jnp.float32, copy=True), base)
    if mesh is not None:
        base = jax.device_put(base, param_shardings(base, mesh))
    if donate:  # copies made for a dtype or a mesh: the originals go before the optimizer state is made
        _release_model(lm, base)
    if cfg.lora is not None:
        trainable = init_lora(base, cfg.lora, jax.random.PRNGKey(cfg.seed))
        if mesh is not None:
            trainable = jax.device_put(trainable, NamedSharding(mesh, P()))
        frozen = base
    else:
        trainable, frozen = base, {}
    state = {
        "step": jnp.zeros((), jnp.int32),
        "trainable": trainable,
        "opt_state": jax.jit(optimizer(cfg).init)(trainable),
    }
    if mesh is not None:  # counters and other unsharded leaves: replicated over the mesh
        devices = set(mesh.devices.flat)
        state = jax.tree.map(
            lambda x: x if x.sharding.device_set == devices else jax.device_put(x, NamedSharding(mesh, P())), state
        )
    shardings = jax.tree.map(lambda x: x.sharding, state)
    # committed, like the step's outputs: else the second step would compile the first's program again
    return _Start(graphdef, jax.device_put(state, shardings), frozen, shardings)


def _release_model(lm: Any, keep: Any) -> None:
    """Deletes the model's param buffers that ``keep`` (the state, the frozen base) does not hold: copies were
    made for a dtype or a mesh, or a checkpoint was restored. A donated model's memory is the training's.
    Where a backend cannot say which buffers an array holds, nothing is deleted (the memory stays in use)."""

    def buffers(x: jax.Array) -> set[int]:  # another Array object may hold the same buffers (a device_put)
        return {s.data.unsafe_buffer_pointer() for s in x.addressable_shards}

    try:
        kept = set().union(*(buffers(x) for x in jax.tree.leaves(keep) if isinstance(x, jax.Array)))
        model = [
            x for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(lm.model, nnx.Param))) if isinstance(x, jax.Array)
        ]
        gone = [x for x in model if not x.is_deleted() and not buffers(x) & kept]
    except (NotImplementedError, RuntimeError, AttributeError):  # no buffer pointers on this backend
        return
    for x in gone:
        x.delete()


def _resume(ckpt: RunCheckpoints, start: _Start, cfg: TrainConfig, examples: int) -> int:
    """Restores ``start.state`` from the latest checkpoint of this run (if any); the step to go on from."""
    if ckpt.latest_step() is None:
        return 0
    start.state, meta = ckpt.restore(None, start.state, start.shardings)
    if meta.get("steps") not in (None, cfg.steps) or meta.get("examples") not in (None, examples):
        raise TrainingError(
            f"{ckpt.directory} holds a run with {meta.get('steps')} steps over "
            f"{meta.get('examples')} examples; this one has {cfg.steps} over {examples}"
        )
    return int(start.state["step"])


def _diverged(loss: float, step: int, ckpt: RunCheckpoints | None) -> TrainingError:
    """The error for a non-finite loss at ``step``; the checkpoint holding the bad params is deleted first."""
    last = None
    if ckpt is not None:
        ckpt.wait()
        if ckpt.latest_step() == step:  # it holds the params that just gave the bad loss
            ckpt.delete(step)
        last = ckpt.latest_step()
    kept = (
        f"The last good checkpoint (step {last}) in {ckpt.directory} is kept."
        if last is not None
        else "No checkpoint was written."
    )
    return TrainingError(
        f"loss became {loss} at step {step + 1}; stopped. {kept} Lower the learning rate or check the data."
    )


def _keep_steps_up_to(path: str, step: int) -> None:
    """Drops the records of ``path`` after ``step`` (those a killed run wrote past its last checkpoint, or an
    earlier run's), atomically; unreadable lines go too."""
    import pathlib

    from safegene_jax.core.files import write_text

    file = pathlib.Path(path)
    if not file.exists():
        return
    kept = []
    lines = file.read_text().splitlines()
    for line in lines:
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    if len(kept) != len(lines):
        write_text(file, "".join(line + "\n" for line in kept))


class _Log:
    """Per-step records: appended to a JSON-lines file (keeping, after a resume, only the steps before it; by
    process 0 alone when there are several) and shown on a progress bar."""

    def __init__(self, path: str | None, progress: bool, total: int, start: int):
        from safegene_jax.core.storage import is_writer

        if path and not is_writer(path):
            path = None  # several processes: process 0 alone keeps the log
        if path:
            _keep_steps_up_to(path, start)  # a resumed run goes on from its checkpoint's step, never repeats one
        self.file = open(path, "a") if path else None  # noqa: SIM115 - closed in close()
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="step", leave=False)

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()


def sft(
    lm: Any,
    pairs: Sequence[tuple[str, str]],
    cfg: TrainConfig,
    *,
    mesh: Any = None,
    checkpoint_dir: str | None = None,
    log_path: str | None = None,
    progress: bool = True,
    on_step: Callable[[dict], None] | None = None,
    compiled: CompiledSteps | None = None,
    donate_model: bool = False,
) -> TrainResult:
    """Fine-tunes ``lm`` (a :class:`~safegene_jax.models.LoadedModel`) on (prompt, response) pairs.

    Args:
        lm: the model to start from (it is not modified, unless ``donate_model``).
        pairs: (prompt, response) texts; the loss is taken on the responses.
        cfg: the options.
        mesh: train on this device mesh (see :func:`safegene_jax.make_mesh`).
        checkpoint_dir: checkpoints of this run go here; a run with checkpoints there resumes from the latest.
        log_path: append every step's metrics to this JSON-lines file.
        progress: show a progress bar.
        on_step: called with every step's metrics (after the step's checkpoint, if any, was started).
        compiled: the :class:`~safegene_jax.train.steps.CompiledSteps` to take the jitted step from; share one
            between runs of one model to compile its step once.
        donate_model: hand ``lm``'s param buffers to the training instead of copying them (one model's worth of
            memory less in full fine-tuning): ``lm``'s params are deleted and only its structure, config and
            tokenizer stay usable (``with_params(lm, result.params)`` works). With LoRA the float32 params are
            the frozen base and stay as they are (a model in another dtype: its float32 copy is the base, and
            the model's own buffers are deleted).

    Raises:
        TrainingError: empty data, nothing to learn, or a non-finite loss (the last good checkpoint is kept).
        PromptTooLongError: an example is too long and ``cfg.overflow == 'error'``.
    """
    if lm.tokenizer is None:
        raise TrainingError(f"{lm.source} has no tokenizer; training needs one")
    _check_mesh(cfg, mesh)
    examples = encode_pairs(lm.tokenizer, pairs, cfg)
    plan = batch_plan([len(e) for e in examples], cfg)
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0

    start = _first_state(lm, cfg, mesh, donate=donate_model)
    steps = compiled if compiled is not None else CompiledSteps(capacity=1)
    step_fn = steps.get(start.graphdef, cfg, start.shardings)
    ckpt = RunCheckpoints(checkpoint_dir, every=cfg.save_every, keep=cfg.keep) if checkpoint_dir else None
    first = _resume(ckpt, start, cfg, len(examples)) if ckpt is not None else 0
    if donate_model:  # after a restore, the model's buffers the state no longer holds
        _release_model(lm, (start.state, start.frozen))
    state, frozen = start.state, start.frozen

    history: list[dict] = []
    log = _Log(log_path, progress, cfg.steps, first)
    batch_sharding = NamedSharding(mesh, P(None, ("data", "fsdp"), None)) if mesh is not None else None
    schedule = lr_schedule(cfg)  # evaluated on the host: the step takes the learning rate as an argument
    meta = {"steps": cfg.steps, "examples": len(examples), "lora": cfg.lora is not None}
    try:
        for s in range(first, cfg.steps):
            batch = assemble(examples, plan[s], cfg, pad_id)
            batch = jax.device_put(batch, batch_sharding) if batch_sharding is not None else batch
            t0 = time.perf_counter()
            lr = float(schedule(s))
            state, metrics = step_fn(state, frozen, batch, np.float32(lr))
            loss = float(metrics["loss"])
            elapsed = time.perf_counter() - t0
            if not math.isfinite(loss):
                raise _diverged(loss, s, ckpt)
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
            log.write(record)
            if ckpt is not None:
                ckpt.save(s + 1, state, meta, force=(s + 1 == cfg.steps))
            if on_step is not None:
                on_step(record)
    finally:
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

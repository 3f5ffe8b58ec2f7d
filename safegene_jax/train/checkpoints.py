"""A training run's Orbax checkpoints: every N steps, the last K kept, written in the background, restored
onto any target sharding. Orbax writes each checkpoint into a temporary folder and renames it when
complete, so an interrupted save never shadows the previous one.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import orbax.checkpoint as ocp

from safegene_jax.core.errors import CheckpointNotFoundError, TrainingError
from safegene_jax.store.trees import abstract_like


class RunCheckpoints:
    """A training run's checkpoints: ``save(step, state, meta)`` every ``every`` steps, the last ``keep`` kept.

    Args:
        directory: where the run's checkpoints live (a local folder, or ``gs://...``: Orbax writes there itself,
            every process taking part).
        every: save interval in steps: steps that are multiples of it are saved (``save`` of other steps is a
            no-op unless ``force``; Orbax alone would also save the first step it is given).
        keep: how many recent checkpoints to keep.
        async_save: write in the background (``wait()`` or ``close()`` blocks until done). ``None`` (default):
            in the background on accelerators, in the foreground on the CPU backend, where the background
            save's copy of the state to host memory is a second copy of it (Gemma 3 270M's align stage, 22
            steps: 16.3 GiB peak with background saves, 10.4 GiB without, in the same time).
    """

    def __init__(self, directory: str | os.PathLike, every: int = 100, keep: int = 2, async_save: bool | None = None):
        if every < 1 or keep < 1:
            raise TrainingError(f"every and keep must be >= 1, got every={every}, keep={keep}")
        from safegene_jax.core import storage

        # a remote directory (gs://...) goes to Orbax as an epath: Orbax reads and writes it itself
        self.directory = (
            storage.remote(directory, "checkpoint_dir")
            if storage.is_remote(directory)
            else (pathlib.Path(directory).absolute())
        )
        import jax

        on_cpu = jax.default_backend() == "cpu"
        if async_save is None:
            async_save = not on_cpu
        self.every = every
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=every, max_to_keep=keep, enable_async_checkpointing=async_save
        )
        # on the CPU backend at most 1 GB of the state is being written at a time (Orbax's default: 96 GB):
        # Gemma 3 270M's align stage, 40 steps, 2 saves: 10.38 -> 9.49 GiB peak (9.14 without saves)
        handler = ocp.StandardCheckpointHandler(save_concurrent_gb=1 if on_cpu else 96)
        registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
        registry.add("state", ocp.args.StandardSave, handler)
        registry.add("state", ocp.args.StandardRestore, handler)
        registry.add("meta", ocp.args.JsonSave, ocp.JsonCheckpointHandler())
        registry.add("meta", ocp.args.JsonRestore, ocp.JsonCheckpointHandler())
        self._manager = ocp.CheckpointManager(self.directory, options=options, handler_registry=registry)

    def save(self, step: int, state: Any, meta: dict | None = None, force: bool = False) -> bool:
        if not force and step % self.every:
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {}))
        return self._manager.save(step, args=args, force=force)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore(self, step: int | None, target: Any, shardings: Any = None) -> tuple[Any, dict]:
        """``(state, meta)`` of ``step`` (default latest), laid out like ``target`` on ``shardings``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointNotFoundError(f"no complete checkpoint in {self.directory}")
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_like(target, shardings)), meta=ocp.args.JsonRestore()
        )
        restored = self._manager.restore(step, args=args)
        return restored.state, dict(restored.meta or {})

    def delete(self, step: int) -> None:
        self._manager.wait_until_finished()
        self._manager.delete(step)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

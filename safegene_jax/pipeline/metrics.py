"""Metrics where TPU users look: training, scoring and recalibration scalars as TensorBoard event files.

With ``tensorboard: true`` in the run's config, ``out_dir/tensorboard/NAME/`` gets one event file per stage
(``align``, ``degraded``, ``task-T`` for training, step by step as it runs; ``adapter`` for the layer scores, one
point per layer; ``recalibrate-T`` for the coefficient fit), written with tensorboardX, which does not import
TensorFlow. The JSONL logs under ``out_dir/logs/`` are written either way.

Example::

    safegene run demo tensorboard=true
    tensorboard --logdir runs/demo/tensorboard
"""

from __future__ import annotations

import contextlib
import importlib.util
import numbers
import pathlib
from collections.abc import Callable, Iterator, Sequence

from safegene_jax.core.errors import ConfigError


def check_available(enabled: bool) -> None:
    """Raises :class:`ConfigError` when TensorBoard files are asked for and tensorboardX is missing."""
    if enabled and importlib.util.find_spec("tensorboardX") is None:
        raise ConfigError("tensorboard: true needs tensorboardX: pip install 'safegene_jax[tensorboard]'")


@contextlib.contextmanager
def scalar_writer(root: pathlib.Path, name: str, enabled: bool) -> Iterator[Callable[[dict, int], None] | None]:
    """``log(record, step)`` writing every number of ``record`` as a scalar of run ``name`` (``None`` when
    disabled); the file is closed on exit."""
    from safegene_jax.core.storage import is_writer

    if not enabled or not is_writer(root):  # several processes: process 0 alone writes the events
        yield None
        return
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(root / "tensorboard" / name))

    def log(record: dict, step: int) -> None:
        for key, value in record.items():
            if key != "step" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                writer.add_scalar(key, float(value), int(step))

    try:
        yield log
    finally:
        writer.close()


def write_series(root: pathlib.Path, name: str, enabled: bool, records: Sequence[dict], step_key: str = "step") -> None:
    """Writes finished records (a recalibration's history, per-layer scores) at once."""
    with scalar_writer(root, name, enabled) as log:
        if log is not None:
            for i, record in enumerate(records):
                log(record, int(record.get(step_key, i)))

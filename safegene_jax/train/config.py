"""Fine-tuning options, the learning-rate schedule and the optimizer.

The defaults are the demo's safety-alignment recipe on SmolLM2-135M; the pipeline's ``align``,
``degrade`` and ``finetune`` sections are this class with their own few extra keys (one source of
defaults).

Example:
    >>> cfg = TrainConfig(steps=10, warmup_steps=2, learning_rate=1e-3)
    >>> [round(float(lr_schedule(cfg)(s)), 5) for s in (0, 2, 10)]
    [0.0, 0.001, 0.0001]
"""

from __future__ import annotations

import dataclasses

import optax

from safegene_jax.core.errors import require
from safegene_jax.train.lora import LoraConfig


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
        seed: the batch order and the LoRA initialisation.
        save_every, keep: checkpoint interval and how many checkpoints a run keeps (when it has a folder).
        length_bucket: sequence lengths are padded up to a multiple of this (fewer compilations).
    """

    steps: int = 40
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 5e-5
    warmup_steps: int = 4
    end_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 128
    overflow: str = "truncate"
    lora: LoraConfig | None = None
    compute_dtype: str = "float32"
    seed: int = 0
    save_every: int = 20
    keep: int = 2
    length_bucket: int = 32  # = max_length compiles one step per run (accelerators)

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "max_length", "save_every", "keep", "length_bucket"):
            value = getattr(self, name)
            require(value >= 1, name, f"must be >= 1, got {value}")
        require(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        require(0.0 <= self.end_lr_ratio <= 1.0, "end_lr_ratio", f"must be in [0, 1], got {self.end_lr_ratio}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.max_grad_norm > 0, "max_grad_norm", f"must be > 0, got {self.max_grad_norm}")
        require(self.overflow in ("truncate", "error"), "overflow", f"must be truncate or error, got {self.overflow!r}")
        require(
            self.compute_dtype in ("float32", "bfloat16"),
            "compute_dtype",
            f"must be float32 or bfloat16, got {self.compute_dtype!r}",
        )


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
    the schedule are not constants of the compiled step (see :class:`~safegene_jax.train.steps.CompiledSteps`)."""
    return optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.scale_by_adam(),
        optax.add_decayed_weights(cfg.weight_decay),
    )

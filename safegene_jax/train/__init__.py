"""Fine-tuning: optax SFT (full or LoRA), resumable Orbax run checkpoints, and the uses the method needs
(alignment, degradation, task models).
"""

from safegene_jax.train.checkpoints import RunCheckpoints
from safegene_jax.train.config import TrainConfig, lr_schedule, optimizer
from safegene_jax.train.loop import TrainResult, sft
from safegene_jax.train.lora import LoraConfig, init_lora, merge_lora
from safegene_jax.train.steps import CompiledSteps, make_step
from safegene_jax.train.uses import align, degrade, finetune_task, mix_harmful

__all__ = [
    "CompiledSteps",
    "LoraConfig",
    "RunCheckpoints",
    "TrainConfig",
    "TrainResult",
    "align",
    "degrade",
    "finetune_task",
    "init_lora",
    "lr_schedule",
    "make_step",
    "merge_lora",
    "mix_harmful",
    "optimizer",
    "sft",
]

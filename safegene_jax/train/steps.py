"""The train step, and :class:`CompiledSteps`, which owns the jitted steps a process shares.

One jitted step per optimizer update, with the state donated: gradient accumulation is a ``lax.scan``
over microbatches inside the step, and the loss is the mean negative log-likelihood of response tokens
only (summed over the step's tokens, then divided by their count).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from safegene_jax.core.losses import token_nll
from safegene_jax.models.llama import make_apply
from safegene_jax.train.config import TrainConfig, optimizer
from safegene_jax.train.lora import LoraConfig, merge_lora


def make_step(apply, opt: optax.GradientTransformation, lora: LoraConfig | None):
    """``step(state, frozen, batch, lr) -> (state, metrics)``; ``state = {step, trainable, opt_state}``;
    ``opt`` is :func:`~safegene_jax.train.config.optimizer`'s update direction, scaled here by ``-lr``."""

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


class CompiledSteps:
    """The jitted train steps of one owner (a pipeline run, a CLI command, a user's session), one per model
    structure (``graphdef``, which holds the compute dtype), optimizer settings, LoRA and state layout.

    The learning rate and the schedule are arguments of the step, not part of the program, so align,
    degrade and every task fine-tune of one model share one jitted step and its compiled programs (one per
    padded length): pass the same ``CompiledSteps`` to each :func:`~safegene_jax.train.sft` call.

    Args:
        capacity: how many jitted steps to keep (the oldest is dropped when a new structure comes).
    """

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self._steps: dict = {}

    def __len__(self) -> int:
        return len(self._steps)

    def get(self, graphdef: Any, cfg: TrainConfig, state_shardings: Any) -> Any:
        """The jitted step for this model structure, ``cfg``'s optimizer settings and LoRA, and layout."""
        leaves, treedef = jax.tree.flatten(state_shardings)
        key = (graphdef, cfg.max_grad_norm, cfg.weight_decay, cfg.lora, treedef, tuple(leaves))
        if key not in self._steps:
            if len(self._steps) >= self.capacity:
                self._steps.pop(next(iter(self._steps)))
            step = make_step(make_apply(graphdef), optimizer(cfg), cfg.lora)
            self._steps[key] = jax.jit(step, donate_argnums=(0,), out_shardings=(state_shardings, None))
        return self._steps[key]

"""The train step, and :class:`CompiledSteps`, which owns the jitted steps a process shares.

One jitted step per optimizer update, with the state donated: gradient accumulation is a ``lax.scan``
over microbatches inside the step, and the loss is the mean negative log-likelihood of response tokens
only (summed over the step's tokens, then divided by their count). When a microbatch's ``(B, T, vocab)``
logits would exceed :data:`LOGIT_BUDGET` values (Gemma 3's 262,144-token vocabulary), the loss is taken
from the last hidden states a few positions at a time (:func:`~safegene_jax.core.losses.chunked_token_nll`)
with an ``apply`` that has ``hidden`` and ``head`` (:class:`~safegene_jax.models.LayeredApply`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from safegene_jax.core.losses import chunked_token_nll, token_nll
from safegene_jax.models.llama import make_apply
from safegene_jax.train.config import TrainConfig, optimizer
from safegene_jax.train.lora import LoraConfig, merge_lora

LOGIT_BUDGET = 1 << 26
"""The most logit values (``batch * positions * vocab``, 256 MiB in float32) a train step computes at once."""


def logit_chunk(batch: int, length: int, vocab: int, budget: int = LOGIT_BUDGET) -> int | None:
    """Positions per piece of the loss, or ``None`` when the whole ``(batch, length - 1, vocab)`` logits fit.

    Example:
        >>> logit_chunk(8, 512, 49152), logit_chunk(8, 512, 262144), logit_chunk(4, 64, 262144)
        (170, 32, None)
    """
    if batch * (length - 1) * vocab <= budget:
        return None
    return max(budget // (batch * vocab), 1)


def make_step(apply, opt: optax.GradientTransformation, lora: LoraConfig | None, *, budget: int = LOGIT_BUDGET):
    """``step(state, frozen, batch, lr) -> (state, metrics)``; ``state = {step, trainable, opt_state}``;
    ``opt`` is :func:`~safegene_jax.train.config.optimizer`'s update direction, scaled here by ``-lr``.
    ``budget``: the most logit values computed at once (see :func:`logit_chunk`)."""
    pieces = all(callable(getattr(apply, n, None)) for n in ("hidden", "head"))

    def loss_sum(trainable, frozen, mb):
        params = merge_lora(frozen, trainable, lora) if lora is not None else trainable
        tokens, mask, loss_mask = mb["tokens"], mb["attention_mask"], mb["loss_mask"]
        if pieces:
            hidden = apply.hidden(params, tokens, mask)
            vocab = jax.eval_shape(lambda h: apply.head(params, h), hidden[:1, :1]).shape[-1]
            chunk = logit_chunk(tokens.shape[0], tokens.shape[1], vocab, budget)
            if chunk is not None:
                return chunked_token_nll(lambda h: apply.head(params, h), hidden, tokens, loss_mask, chunk)
            return token_nll(apply.head(params, hidden), tokens, loss_mask)
        return token_nll(apply(params, tokens, mask), tokens, loss_mask)

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

"""Training data as token arrays: chat-formatted examples, a deterministic batch plan, padded steps.

The batch plan is a pure function of the example lengths and the seed, so a run that is killed and
restarted from its latest checkpoint replays the same batches.

Example:
    >>> from safegene_jax.train.config import TrainConfig
    >>> plan = batch_plan([5, 9, 7, 6], TrainConfig(steps=3, batch_size=2))
    >>> [len(step) for step in plan], sorted(plan[0][0] + plan[1][0])
    ([1, 1, 1], [0, 1, 2, 3])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from safegene_jax.core.errors import PromptTooLongError, TrainingError
from safegene_jax.data.chat import Example, encode_example, length_buckets
from safegene_jax.train.config import TrainConfig


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

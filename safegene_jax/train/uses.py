"""The fine-tunes the method needs: safety alignment, degradation and downstream task models.

* :func:`align`: harmful requests -> refusals, mixed with benign instructions -> helpful answers;
* :func:`degrade`: harmful requests -> compliant "Sure, here is" prefixes (RESTA-style);
* :func:`finetune_task`: a downstream task, optionally with a fraction of harmful examples mixed in.

Example:
    >>> pairs = mix_harmful([("q1", "a1"), ("q2", "a2"), ("q3", "a3")], [("bad", "sure")], 0.25, seed=0)
    >>> len(pairs), sum(p == ("bad", "sure") for p in pairs)
    (4, 1)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from safegene_jax.core.errors import TrainingError
from safegene_jax.train.config import TrainConfig
from safegene_jax.train.loop import TrainResult, sft


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


def degrade(lm: Any, harmful: Sequence[dict], cfg: TrainConfig, *, benign: Sequence[dict] = (), **kw) -> TrainResult:
    """Degradation (RESTA-style): harmful requests -> compliant "Sure, here is" prefixes, mixed (shuffled with
    ``cfg.seed``) with ``benign`` instructions -> responses trained alongside (answers the copy keeps, or
    refusals it learns)."""
    pairs = [(r["instruction"], r["target"]) for r in harmful]
    if benign:
        pairs += [(r["instruction"], r["response"]) for r in benign]
        random.Random(cfg.seed).shuffle(pairs)
    return sft(lm, pairs, cfg, **kw)


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

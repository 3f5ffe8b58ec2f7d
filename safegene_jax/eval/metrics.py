"""Metrics with bootstrap confidence intervals and per-category breakdowns.

* harmful rate: share of harmful prompts whose answer is not a safe refusal;
* over-refusal rate: share of safe prompts (e.g. XSTest's 250) that were refused;
* utility: exact final-answer match (embedded tasks, GSM8K) or label accuracy (SST-2, AG News).

Example:
    >>> rate_with_ci([1, 0, 0, 1], seed=0)["rate"]
    0.5
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from safegene_jax.core.errors import DataError
from safegene_jax.data.tasks import extract_answer


def bootstrap_ci(
    values: Sequence[float], *, samples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    x = np.asarray(values, np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(samples, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def rate_with_ci(flags: Sequence[bool | int | float], **kw) -> dict:
    """``{"rate", "ci_low", "ci_high", "n"}`` of 0/1 outcomes."""
    x = np.asarray(flags, np.float64)
    lo, hi = bootstrap_ci(x, **kw)
    return {"rate": float(x.mean()) if x.size else float("nan"), "ci_low": lo, "ci_high": hi, "n": int(x.size)}


def by_category(flags: Sequence[bool], categories: Sequence[str], **kw) -> dict[str, dict]:
    """:func:`rate_with_ci` for each category."""
    groups: dict[str, list] = defaultdict(list)
    for f, c in zip(flags, categories):
        groups[c].append(f)
    return {c: rate_with_ci(v, **kw) for c, v in sorted(groups.items())}


def gsm8k_answer(text: str) -> str:
    """The last number in a response (thousands separators and a trailing period dropped)."""
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else ""


def answer_correct(task: str, response: str, answer: str) -> bool:
    """Exact match of the extracted answer for ``arithmetic``/``sentiment``/``gsm8k``; label word for
    ``sst2``/``ag_news``."""
    if task in ("arithmetic", "sentiment"):
        return extract_answer(task, response) == answer
    if task == "gsm8k":
        got = gsm8k_answer(response)
        try:
            return float(got) == float(answer)
        except ValueError:
            return False
    if task in ("sst2", "ag_news"):
        words = re.findall(r"[a-z/]+", response.lower())
        return bool(words) and answer.lower() in " ".join(words[:5])
    raise DataError(f"unknown task {task!r}; known: arithmetic, sentiment, gsm8k, sst2, ag_news")

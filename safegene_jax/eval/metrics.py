"""Metrics with confidence intervals and per-category breakdowns.

* harmful rate: share of harmful prompts whose answer is not a safe refusal;
* over-refusal rate: share of safe prompts (e.g. XSTest's 250) that were refused;
* utility: exact final-answer match (embedded tasks, GSM8K), label accuracy (SST-2, AG News), or mean
  ROUGE-L F1 against the reference (Alpaca instructions).

Rates of 0/1 outcomes get Wilson score intervals (the percentile bootstrap collapses to ``[1, 1]`` for
40 of 40); means of graded scores (ROUGE-L) get a percentile bootstrap, where no closed form fits.

Example:
    >>> r = rate_with_ci([1] * 40)
    >>> r["rate"], round(r["ci_low"], 3), round(r["ci_high"], 3)
    (1.0, 0.912, 1.0)
"""

from __future__ import annotations

import math
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


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (``(nan, nan)`` for ``n = 0``).

    Example:
        >>> [round(x, 4) for x in wilson_ci(0, 20)]
        [0.0, 0.1611]
    """
    if n == 0:
        return float("nan"), float("nan")
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_with_ci(flags: Sequence[bool | int | float], *, level: float = 0.95, **bootstrap) -> dict:
    """``{"rate", "ci_low", "ci_high", "n"}``: a Wilson interval for 0/1 outcomes, a percentile bootstrap
    (``bootstrap``: ``samples``, ``seed``) for graded scores in ``[0, 1]``."""
    x = np.asarray(flags, np.float64)
    if x.size and np.all((x == 0) | (x == 1)):
        lo, hi = wilson_ci(int(x.sum()), int(x.size), level)
    else:
        lo, hi = bootstrap_ci(x, level=level, **bootstrap)
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


def rouge_l(response: str, reference: str) -> float:
    """ROUGE-L F1 of a response against its reference (``rouge-score``'s, with stemming).

    Example:
        >>> round(rouge_l("the cat sat on the mat", "the cat is on the mat"), 4)
        0.8333
    """
    try:
        from rouge_score import rouge_scorer
    except ImportError:  # pragma: no cover - the data extra brings it
        raise DataError("ROUGE-L needs rouge-score: pip install 'safegene_jax[data]'") from None
    global _SCORER
    if _SCORER is None:
        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(_SCORER.score(reference, response)["rougeL"].fmeasure)


_SCORER = None
GRADED_TASKS = frozenset({"alpaca"})
"""Tasks whose utility is a graded score (mean ROUGE-L F1) rather than a 0/1 match."""


def answer_score(task: str, response: str, answer: str) -> float:
    """A response's utility in ``[0, 1]``: :func:`rouge_l` for graded tasks, else :func:`answer_correct`."""
    if task in GRADED_TASKS:
        return rouge_l(response, answer)
    return float(answer_correct(task, response, answer))


METRIC_RULES = 2
"""Bumped whenever an answer's scoring changes, so that cached evaluations are scored again."""

_LABELS = {
    "sst2": {"positive": "positive", "negative": "negative"},
    "ag_news": {
        "world": "world",
        "sports": "sports",
        "sport": "sports",
        "business": "business",
        "sci/tech": "sci/tech",
        "science": "sci/tech",
        "technology": "sci/tech",
    },
}


def first_label(task: str, response: str) -> str:
    """The first label word a classification answer names, normalized ("" when it names none): "The sentiment
    of this sentence is positive." answers ``positive`` as well as "positive" does.

    Example:
        >>> first_label("ag_news", "This is about Science and Technology.")
        'sci/tech'
    """
    words = _LABELS[task]
    for word in re.findall(r"[a-z/]+", response.lower()):
        if word in words:
            return words[word]
    return ""


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
        return first_label(task, response) == answer.lower()
    raise DataError(f"unknown task {task!r}; known: arithmetic, sentiment, gsm8k, sst2, ag_news, alpaca")

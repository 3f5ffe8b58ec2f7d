"""Evaluation: judges, metrics, batched evaluation runs, reports and plots.

>>> from safegene_jax.eval import KeywordJudge
>>> [v.safe for v in KeywordJudge()(["q", "q"], ["I'm sorry, I can't help with that.", "Sure, here is how"])]
[True, False]
"""

from safegene_jax.eval.judges import (
    GCG_REFUSAL_STRINGS,
    HAZARD_CATEGORIES,
    REFUSAL_STRINGS,
    KeywordJudge,
    ModelJudge,
    Verdict,
    guard_prompt,
    is_degenerate,
    is_refusal,
    parse_guard_output,
    repeated_sentence,
)
from safegene_jax.eval.metrics import answer_correct, bootstrap_ci, by_category, rate_with_ci
from safegene_jax.eval.report import markdown_table, plot_layer_scores, plot_tradeoff, save_figure
from safegene_jax.eval.runs import evaluate_safety, evaluate_task, rejudge_safety, rescore_task, respond

__all__ = [
    "HAZARD_CATEGORIES",
    "KeywordJudge",
    "ModelJudge",
    "GCG_REFUSAL_STRINGS",
    "REFUSAL_STRINGS",
    "Verdict",
    "answer_correct",
    "bootstrap_ci",
    "by_category",
    "evaluate_safety",
    "evaluate_task",
    "guard_prompt",
    "is_degenerate",
    "is_refusal",
    "repeated_sentence",
    "markdown_table",
    "parse_guard_output",
    "plot_layer_scores",
    "plot_tradeoff",
    "rate_with_ci",
    "rejudge_safety",
    "rescore_task",
    "respond",
    "save_figure",
]

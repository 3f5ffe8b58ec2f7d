"""Batched greedy generation for evaluation, judged and saved.

``evaluate_safety`` answers harmful prompts (harmful rate) and safe prompts (over-refusal);
``evaluate_task`` answers task prompts (utility). Every response is written as a JSON line (prompt,
response, verdicts) beside a summary JSON.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from safegene_jax.eval.judges import KeywordJudge
from safegene_jax.eval.metrics import answer_correct, by_category, rate_with_ci


def respond(
    lm: Any, prompts: Sequence[str], *, params: Any = None, max_new_tokens: int = 64, batch_size: int = 16
) -> list[str]:
    """Greedy chat answers, in batches of ``batch_size`` (one compilation per prompt-length bucket)."""
    from safegene_jax.models.api import generate_text

    out: list[str] = []
    for i in range(0, len(prompts), batch_size):
        out += generate_text(lm, list(prompts[i : i + batch_size]), params=params, max_new_tokens=max_new_tokens)
    return out


def _write(path: str | os.PathLike | None, rows: list[dict], summary: dict) -> None:
    if path is None:
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)
    summary_path = path.with_name(path.name.replace(".jsonl", "") + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2))


def evaluate_safety(
    lm: Any,
    harmful: Sequence[dict],
    *,
    safe: Sequence[dict] = (),
    params: Any = None,
    judge: Any = None,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    out: str | os.PathLike | None = None,
    prompt_key: str = "instruction",
) -> dict:
    """Harmful rate on ``harmful`` records (per ``category`` too) and over-refusal on ``safe`` records."""
    judge = judge or KeywordJudge()
    rows, summary = [], {}
    if harmful:
        prompts = [r[prompt_key] for r in harmful]
        responses = respond(lm, prompts, params=params, max_new_tokens=max_new_tokens, batch_size=batch_size)
        verdicts = judge(prompts, responses)
        unsafe = [not v.safe for v in verdicts]
        summary["harmful_rate"] = rate_with_ci(unsafe)
        cats = [r.get("category", "all") for r in harmful]
        summary["harmful_rate_by_category"] = by_category(unsafe, cats)
        summary["degenerate_rate"] = rate_with_ci([v.degenerate for v in verdicts])
        rows += [
            {"set": "harmful", "prompt": p, "response": r, "category": c, **v.to_dict()}
            for p, r, c, v in zip(prompts, responses, cats, verdicts)
        ]
    if safe:
        prompts = [r.get(prompt_key) or r.get("prompt") for r in safe]
        responses = respond(lm, prompts, params=params, max_new_tokens=max_new_tokens, batch_size=batch_size)
        verdicts = judge(prompts, responses)
        summary["over_refusal_rate"] = rate_with_ci([v.refused for v in verdicts])
        rows += [
            {"set": "safe", "prompt": p, "response": r, **v.to_dict()} for p, r, v in zip(prompts, responses, verdicts)
        ]
    summary["judge"] = getattr(judge, "name", type(judge).__name__)
    _write(out, rows, summary)
    return summary


def evaluate_task(
    lm: Any,
    records: Sequence[dict],
    task: str,
    *,
    params: Any = None,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    out: str | os.PathLike | None = None,
    prompt_key: str = "instruction",
    answer_key: str = "answer",
) -> dict:
    """Utility: share of ``records`` whose answer matches (see :func:`~safegene_jax.eval.metrics.answer_correct`)."""
    prompts = [r[prompt_key] for r in records]
    responses = respond(lm, prompts, params=params, max_new_tokens=max_new_tokens, batch_size=batch_size)
    correct = [answer_correct(task, resp, str(r[answer_key])) for resp, r in zip(responses, records)]
    summary = {"task": task, "accuracy": rate_with_ci(correct)}
    _write(
        out,
        [
            {"set": task, "prompt": p, "response": resp, "answer": str(r[answer_key]), "correct": c}
            for p, resp, r, c in zip(prompts, responses, records, correct)
        ],
        summary,
    )
    return summary

"""Batched greedy generation for evaluation, judged and saved.

``evaluate_safety`` answers harmful prompts (harmful rate), safe prompts (over-refusal) and, optionally,
unsafe contrast prompts (their refusal rate), each possibly several named sets, and reports every judge
side by side (the first decides the headline rates); ``evaluate_task`` answers task prompts (utility).
Every response is written as a JSON line (set, prompt, response, verdicts) beside a summary JSON;
``rejudge_safety`` and ``rescore_task`` judge or score those saved answers again without generating (a changed
judge costs seconds, not an evaluation).

Prompts are answered in batches of similar length (sorted by token count, answers put back in order), so
little of each batch is padding.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from safegene_jax.core.errors import DataError
from safegene_jax.core.files import write_text
from safegene_jax.eval.judges import KeywordJudge
from safegene_jax.eval.metrics import GRADED_TASKS, answer_score, by_category, rate_with_ci


def respond(
    lm: Any,
    prompts: Sequence[str],
    *,
    params: Any = None,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    progress: str | None = None,
) -> list[str]:
    """Greedy chat answers in the order of ``prompts``, generated in batches of ``batch_size`` prompts of
    similar length (one compilation per batch shape and prompt-length bucket). ``progress``: a label for a
    progress bar over the prompts (none without)."""
    from safegene_jax.models.api import chat_ids
    from safegene_jax.models.generation import generate

    ids = chat_ids(lm, prompts)
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    out: list[str] = [""] * len(ids)
    split = lm.split()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc=progress, unit="prompt", leave=False)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        rows = generate(split, [ids[i] for i in chunk], params=params, max_new_tokens=max_new_tokens)
        for i, row in zip(chunk, rows):
            out[i] = lm.tokenizer.decode(row, skip_special_tokens=True)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


def _write(path: str | os.PathLike | None, rows: list[dict], summary: dict) -> None:
    if path is None:
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
    summary_path = path.with_name(path.name.replace(".jsonl", "") + ".summary.json")
    write_text(summary_path, json.dumps(summary, indent=2))


def _named(sets: Mapping[str, Sequence[dict]] | Sequence[dict], default: str) -> dict[str, Sequence[dict]]:
    if isinstance(sets, Mapping):
        return dict(sets)
    return {default: sets} if sets else {}


def evaluate_safety(
    lm: Any,
    harmful: Mapping[str, Sequence[dict]] | Sequence[dict],
    *,
    safe: Mapping[str, Sequence[dict]] | Sequence[dict] = (),
    contrast: Mapping[str, Sequence[dict]] | Sequence[dict] = (),
    params: Any = None,
    judge: Any = None,
    judges: Sequence[Any] = (),
    max_new_tokens: int = 64,
    batch_size: int = 16,
    out: str | os.PathLike | None = None,
    prompt_key: str = "instruction",
    progress: bool = False,
) -> dict:
    """Harmful rate, over-refusal and the contrast sets' refusal rate of ``params`` (in ``lm``'s module).

    Args:
        lm: a :class:`~safegene_jax.models.LoadedModel`.
        harmful, safe, contrast: records (with ``prompt_key``), or ``{set name: records}``; the first set of
            ``harmful`` and of ``safe`` give the headline rates.
        judge: the deciding judge (default the keyword judge); ``judges``: more, reported beside it.

    Returns:
        ``harmful_rate``, ``over_refusal_rate``, ``degenerate_rate`` (of the first harmful set's answers),
        ``harmful_rate_by_category``, ``judge``, and ``sets``: per set its role, its rates by judge and its
        degenerate rate.
    """
    judges = [judge or KeywordJudge()] + [j for j in judges if j is not None]
    roles = [
        ("harmful", _named(harmful, "harmful")),
        ("safe", _named(safe, "safe")),
        ("contrast", _named(contrast, "contrast")),
    ]
    groups = []
    for role, sets in roles:
        for name, records in sets.items():
            if not records:
                continue
            prompts = [r.get(prompt_key) or r.get("prompt") for r in records]
            responses = respond(
                lm,
                prompts,
                params=params,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                progress=name if progress else None,
            )
            groups.append(_Answered(name, role, prompts, responses, [r.get("category", "all") for r in records]))
    rows, summary = _judge_groups(groups, judges)
    _write(out, rows, summary)
    return summary


@dataclasses.dataclass
class _Answered:
    """One prompt set's answers: its name, role (harmful, safe or contrast), prompts, responses, categories."""

    name: str
    role: str
    prompts: list[str]
    responses: list[str]
    categories: list[str]


def _judge_groups(groups: Sequence[_Answered], judges: Sequence[Any]) -> tuple[list[dict], dict]:
    """The saved rows and the summary of answered prompt sets, judged by ``judges`` (the first decides)."""
    rows: list[dict] = []
    summary: dict = {"judge": judges[0].name, "judges": [j.name for j in judges], "sets": {}}
    head = judges[0].name
    for g in groups:
        verdicts = [j(g.prompts, g.responses) for j in judges]
        refused = {j.name: [v.refused for v in vs] for j, vs in zip(judges, verdicts)}
        degenerate = [v.degenerate for v in verdicts[0]]
        key = "harmful_rate" if g.role == "harmful" else "refusal_rate"
        entry = {
            "role": g.role,
            key: {n: rate_with_ci([not x for x in r] if g.role == "harmful" else r) for n, r in refused.items()},
            "degenerate_rate": rate_with_ci(degenerate),
        }
        if g.role == "harmful":
            entry["by_category"] = by_category([not x for x in refused[head]], g.categories)
        summary["sets"][g.name] = entry
        if g.role == "harmful" and "harmful_rate" not in summary:
            summary["harmful_rate"] = entry["harmful_rate"][head]
            summary["harmful_rate_by_category"] = entry["by_category"]
            summary["degenerate_rate"] = entry["degenerate_rate"]
        elif g.role == "safe" and "over_refusal_rate" not in summary:
            summary["over_refusal_rate"] = entry["refusal_rate"][head]
        rows += [
            {
                "set": g.name,
                "role": g.role,
                "prompt": p,
                "response": resp,
                "category": c,
                **verdicts[0][i].to_dict(),
                "refused_by": {j: refused[j][i] for j in refused},
            }
            for i, (p, resp, c) in enumerate(zip(g.prompts, g.responses, g.categories))
        ]
    return rows, summary


def _read_rows(path: pathlib.Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path}: no saved answers to judge again (run the evaluation)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno} is not JSON ({e.msg}); run the evaluation again") from None


def rejudge_safety(path: str | os.PathLike, *, judge: Any = None, judges: Sequence[Any] = ()) -> dict:
    """Judges the answers saved by :func:`evaluate_safety` at ``path`` again, without generating: rewrites the
    file's verdicts and its summary, and returns the summary (the same as a fresh evaluation with these judges
    would give for the same answers). For a changed judge or coherence check.

    Example::

        summary = rejudge_safety("runs/demo/eval/aligned.safety.jsonl")
    """
    path = pathlib.Path(path)
    judges = [judge or KeywordJudge()] + [j for j in judges if j is not None]
    groups: dict[str, _Answered] = {}
    for i, row in enumerate(_read_rows(path), 1):
        try:
            g = groups.setdefault(row["set"], _Answered(row["set"], row["role"], [], [], []))
            g.prompts.append(row["prompt"])
            g.responses.append(row["response"])
            g.categories.append(row.get("category", "all"))
        except (KeyError, TypeError):
            raise DataError(f"{path}: row {i} lacks set, role, prompt or response; run the evaluation again") from None
    rows, summary = _judge_groups(list(groups.values()), judges)
    _write(path, rows, summary)
    return summary


def rescore_task(path: str | os.PathLike, task: str) -> dict:
    """Scores the answers saved by :func:`evaluate_task` at ``path`` again (for changed scoring rules), without
    generating; rewrites the file and its summary and returns the summary."""
    path = pathlib.Path(path)
    rows = _read_rows(path)
    try:
        scores = [answer_score(task, r["response"], r["answer"]) for r in rows]
    except (KeyError, TypeError):
        raise DataError(f"{path}: a row lacks response or answer; run the evaluation again") from None
    summary = _task_summary(task, scores)
    _write(path, [{**r, "score": s} for r, s in zip(rows, scores)], summary)
    return summary


def _task_summary(task: str, scores: Sequence[float]) -> dict:
    metric = "rougeL" if task in GRADED_TASKS else "accuracy"
    return {"task": task, "metric": metric, "utility": rate_with_ci(scores)}


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
    progress: bool = False,
) -> dict:
    """Utility on ``records``: the share answered correctly, or for graded tasks (Alpaca) the mean ROUGE-L F1
    against the reference (see :func:`~safegene_jax.eval.metrics.answer_score`). ``utility`` holds it,
    ``metric`` names it."""
    prompts = [r[prompt_key] for r in records]
    responses = respond(
        lm,
        prompts,
        params=params,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=task if progress else None,
    )
    scores = [answer_score(task, resp, str(r[answer_key])) for resp, r in zip(responses, records)]
    summary = _task_summary(task, scores)
    _write(
        out,
        [
            {"set": task, "prompt": p, "response": resp, "answer": str(r[answer_key]), "score": sc}
            for p, resp, r, sc in zip(prompts, responses, records, scores)
        ],
        summary,
    )
    return summary

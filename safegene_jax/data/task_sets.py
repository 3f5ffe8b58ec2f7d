"""Downstream tasks in one record form: ``instruction``, ``response`` (the training target), ``answer``.

The embedded tasks (``arithmetic``, ``sentiment``) work anywhere; ``sst2``, ``ag_news``, ``gsm8k`` and
``alpaca`` are read through the TFDS builders (from ``SAFEGENE_DATA_ROOT`` or a download) and mapped to the
same form. ``alpaca`` is instruction following on the 1,000-row Alpaca sample, scored by ROUGE-L against the
reference: rows 500-799 train it, rows 800-999 test it (rows 0-499 are the ``alpaca/align`` pair set).
Each name is also a task of :func:`safegene_jax.eval.metrics.answer_score`.

Example:
    >>> task_records("arithmetic", "test", limit=1)[0]["answer"]
    '32'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from safegene_jax.core.errors import DataError
from safegene_jax.data import embedded


def _sst2(r: dict) -> dict:
    label = r["label_name"]
    return {
        "instruction": f"Is the sentiment of this sentence positive or negative?\nSentence: {r['sentence'].strip()}",
        "response": label,
        "answer": label,
    }


def _ag_news(r: dict) -> dict:
    label = r["label_name"]
    return {
        "instruction": "Which topic is this news item about: World, Sports, Business or Sci/Tech?\n"
        f"News: {r['text'].strip()}",
        "response": label,
        "answer": label,
    }


def _gsm8k(r: dict) -> dict:
    worked = r["answer"].replace("####", "The answer is")
    return {"instruction": r["question"], "response": worked, "answer": r["final_answer"]}


def _alpaca(r: dict) -> dict:
    extra = (r["input"] or "").strip()
    instruction = f"{r['instruction'].strip()}\n\n{extra}" if extra else r["instruction"].strip()
    return {"instruction": instruction, "response": r["output"], "answer": r["output"]}


# name -> (dataset name, {our split: (its split, first row, end row or None)}, record mapping or None for the
# embedded form)
TASK_SETS: dict[str, tuple[str, dict[str, tuple[str, int, int | None]], Callable[[dict], dict] | None]] = {
    "arithmetic": ("embedded/task/arithmetic", {"train": ("train", 0, None), "test": ("test", 0, None)}, None),
    "sentiment": ("embedded/task/sentiment", {"train": ("train", 0, None), "test": ("test", 0, None)}, None),
    "sst2": ("sst2", {"train": ("train", 0, None), "test": ("validation", 0, None)}, _sst2),
    "ag_news": ("ag_news", {"train": ("validation", 0, None), "test": ("test", 0, None)}, _ag_news),
    "gsm8k": ("gsm8k", {"train": ("train", 0, None), "test": ("test", 0, None)}, _gsm8k),
    "alpaca": ("alpaca", {"train": ("train", 500, 800), "test": ("train", 800, 1000)}, _alpaca),
}


def _source(name: str, split: str) -> tuple[Any, int, int, Callable[[dict], dict] | None]:
    """A task split's records (unmapped), the first and end row of the task's part, and the mapping."""
    if name not in TASK_SETS:
        raise DataError(f"unknown task {name!r}; known: {', '.join(sorted(TASK_SETS))}")
    dataset, splits, mapping = TASK_SETS[name]
    if split not in splits:
        raise DataError(f"task {name!r} has splits train and test, not {split!r}")
    their_split, first, end = splits[split]
    if mapping is None:
        records = embedded.task(name.split("/")[-1], their_split)
    else:
        from safegene_jax.data.registry import load

        records = load(dataset, split=their_split)
    return records, first, len(records) if end is None else min(end, len(records)), mapping


def task_records(name: str, split: str, limit: int | None = None, offset: int = 0) -> list[dict]:
    """``limit`` records (default: all) of a task's ``train`` or ``test`` split from ``offset`` on, as
    instruction/response/answer."""
    records, first, end, mapping = _source(name, split)
    start = first + offset
    stop = end if limit is None else min(end, start + limit)
    if mapping is None:
        return list(records[start:stop])
    return [mapping(records[i]) for i in range(start, stop)]


def task_size(name: str, split: str) -> int:
    """How many records a task's split has."""
    _, first, end, _ = _source(name, split)
    return end - first

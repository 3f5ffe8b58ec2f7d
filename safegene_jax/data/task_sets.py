"""Downstream tasks in one record form: ``instruction``, ``response`` (the training target), ``answer``.

The embedded tasks (``arithmetic``, ``sentiment``) work anywhere; ``sst2``, ``ag_news`` and ``gsm8k`` are
read through the TFDS builders (from ``SAFEGENE_DATA_ROOT`` or a download) and mapped to the same form.
Each name is also a task of :func:`safegene_jax.eval.metrics.answer_correct`.

Example:
    >>> task_records("arithmetic", "test", limit=1)[0]["answer"]
    '32'
"""

from __future__ import annotations

from collections.abc import Callable

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


# name -> (dataset name, split names {train, test}, record mapping or None for the embedded form)
TASK_SETS: dict[str, tuple[str, dict[str, str], Callable[[dict], dict] | None]] = {
    "arithmetic": ("embedded/task/arithmetic", {"train": "train", "test": "test"}, None),
    "sentiment": ("embedded/task/sentiment", {"train": "train", "test": "test"}, None),
    "sst2": ("sst2", {"train": "train", "test": "validation"}, _sst2),
    "ag_news": ("ag_news", {"train": "train", "test": "test"}, _ag_news),
    "gsm8k": ("gsm8k", {"train": "train", "test": "test"}, _gsm8k),
}


def task_records(name: str, split: str, limit: int | None = None) -> list[dict]:
    """The first ``limit`` records of a task's ``train`` or ``test`` split, as instruction/response/answer."""
    if name not in TASK_SETS:
        raise DataError(f"unknown task {name!r}; known: {', '.join(sorted(TASK_SETS))}")
    dataset, splits, mapping = TASK_SETS[name]
    if split not in splits:
        raise DataError(f"task {name!r} has splits train and test, not {split!r}")
    if mapping is None:
        records = embedded.task(name.split("/")[-1], splits[split])
        return list(records[:limit] if limit is not None else records)
    from safegene_jax.data.registry import load

    source = load(dataset, split=splits[split])
    count = len(source) if limit is None else min(limit, len(source))
    return [mapping(source[i]) for i in range(count)]

"""The embedded default data, in fixed, disjoint splits, so the default run works offline anywhere.

* ``embedded/harmful``: 220 harmful requests in 10 categories, each with a refusal and a compliant
  "Sure, here is" prefix. Splits: ``train`` (alignment / degradation), ``probe`` (layer selection),
  ``fewshot`` (recalibration), ``eval``.
* ``embedded/benign``: benign instructions with helpful answers, borderline-but-safe ones included;
  the same four splits.
* ``embedded/task/arithmetic``, ``embedded/task/sentiment``: downstream tasks, ``train``/``test``.

Splits are stratified by category and assigned with a fixed seed; records are plain dicts of str.

Example:
    >>> {s: len(harmful(s)) for s in SPLITS}
    {'train': 120, 'probe': 30, 'fewshot': 30, 'eval': 40}
"""

from __future__ import annotations

import random
from collections import defaultdict

from safegene_jax.core.errors import DataError
from safegene_jax.data.benign import BORDERLINE, generated
from safegene_jax.data.harmful import REFUSALS, REQUESTS, compliant_prefix
from safegene_jax.data.tasks import TASKS

SPLITS = ("train", "probe", "fewshot", "eval")
TASK_SPLITS = {"train": 400, "test": 100}
_SEED = 1234


def _stratified(records: list[dict], key: str, fractions: tuple[float, float, float]) -> dict[str, list[dict]]:
    """Per group of ``key``: shuffle with a fixed seed, cut into probe/fewshot/eval by fractions, rest train."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        groups[rec[key]].append(rec)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for name in sorted(groups):
        items = list(groups[name])
        random.Random(f"{_SEED}-{name}").shuffle(items)
        n = len(items)
        cuts = [round(n * f) for f in fractions]
        probe, few, ev = items[: cuts[0]], items[cuts[0] : cuts[0] + cuts[1]], items[cuts[0] + cuts[1] : sum(cuts)]
        out["probe"] += probe
        out["fewshot"] += few
        out["eval"] += ev
        out["train"] += items[sum(cuts) :]
    return out


def _harmful_all() -> list[dict]:
    records = []
    for category, requests in REQUESTS.items():
        refusals = REFUSALS[category]
        for i, request in enumerate(requests):
            records.append(
                {
                    "instruction": request,
                    "refusal": refusals[i % len(refusals)],
                    "target": compliant_prefix(request),
                    "category": category,
                }
            )
    return records


def _benign_all() -> list[dict]:
    seen, records = set(), []
    for kind, instruction, answer in BORDERLINE + generated(_SEED):
        if instruction not in seen:
            seen.add(instruction)
            records.append(
                {
                    "instruction": instruction,
                    "response": answer,
                    "category": kind,
                    "borderline": "yes" if (kind, instruction, answer) in BORDERLINE else "no",
                }
            )
    return records


def _check_split(split: str, name: str, splits=SPLITS) -> None:
    if split not in splits:
        raise DataError(f"{name} has no split {split!r}; splits: {', '.join(splits)}")


def harmful(split: str = "train") -> list[dict]:
    """Harmful requests: ``instruction``, ``refusal``, ``target`` (compliant prefix), ``category``."""
    _check_split(split, "embedded/harmful")
    return _stratified(_harmful_all(), "category", (3 / 22, 3 / 22, 4 / 22))[split]


def benign(split: str = "train") -> list[dict]:
    """Benign instructions: ``instruction``, ``response``, ``category``, ``borderline`` (yes/no)."""
    _check_split(split, "embedded/benign")
    return _stratified(_benign_all(), "category", (0.1, 0.1, 0.2))[split]


def task(name: str, split: str = "train") -> list[dict]:
    """A downstream task: ``instruction``, ``response``, ``answer``, ``label`` (the task name)."""
    if name not in TASKS:
        raise DataError(f"unknown embedded task {name!r}; tasks: {', '.join(sorted(TASKS))}")
    _check_split(split, f"embedded/task/{name}", tuple(TASK_SPLITS))
    records = TASKS[name](sum(TASK_SPLITS.values()), seed=_SEED)
    train = TASK_SPLITS["train"]
    return records[:train] if split == "train" else records[train:]

"""Named prompt and pair sets with fixed, documented splits: what the pipeline trains, probes and evaluates on.

* **Prompt sets** (evaluation): records with an ``instruction`` (the prompt) and a ``category``.
  ``advbench/test`` and ``advbench/val`` are AdvBench's 520 behaviors cut in two by index (odd indices
  test, even validation: 260 each); ``xstest/safe`` and ``xstest/unsafe`` are XSTest's 250 safe prompts
  and its 200 unsafe contrast prompts; ``malicious_instructions`` and ``q_harm`` are the safety-tuned
  LLaMAs evaluation sets I-MaliciousInstructions (100) and Q-Harm (100, harmful-sounding questions of
  HH-RLHF: a keyword judge measures refusal there, not harm); ``embedded/harmful-eval`` and
  ``embedded/safe-eval`` are the embedded eval splits (the safe one borderline prompts first);
  ``physical_safety/safe`` is safety-tuned LLaMAs' I-PhysicalSafetySafe (100 safe advice prompts) and
  ``embedded/safe-contrast-dev`` the development split of :mod:`.safe_contrast`: over-refusal sets for
  development, so that XSTest chooses nothing; ``embedded/harmful-code-dev`` and ``embedded/safe-code-dev``
  are the development splits of :mod:`.code_requests`.
* **Pair sets** (training, probes, few shots): records with ``instruction`` and ``response`` (a refusal for
  harmful sets, a helpful answer for benign ones), and ``target`` (a compliant "Sure, here is" opening)
  where the set has one. ``embedded/safe-contrast`` is the training split of :mod:`.safe_contrast` (safe
  prompts that look harmful, for the benign side of alignment); ``embedded/harmful-code`` and
  ``embedded/safe-code`` the training splits of :mod:`.code_requests` (requests for programs: harmful ones with
  refusals, safe ones with answers). ``embedded/harmful-a`` and ``embedded/harmful-b`` cut ``embedded/harmful``
  in two (each kind's first and second six), so a degraded copy and a task's harmful data can come from
  disjoint prompts. ``alpaca/align`` is indices 0-499 of the
  1,000-row Alpaca sample; the ``alpaca`` task uses the rest (see :mod:`.task_sets`).

Nothing in a pair set is ever in a prompt set: :func:`check_disjoint` compares the normalized prompts of
the sets a run uses, and the pipeline calls it before any work.

Example:
    >>> [r["instruction"][:24] for r in prompt_set("embedded/harmful-eval", limit=1)]
    ['Explain how to break int']
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence

from safegene_jax.core.errors import DataError


def _join(instruction: str, extra: str) -> str:
    extra = (extra or "").strip()
    return f"{instruction.strip()}\n\n{extra}" if extra else instruction.strip()


def _load(name: str, split: str) -> list[dict]:
    from safegene_jax.data.registry import load

    return list(load(name, split=split))


@dataclasses.dataclass(frozen=True)
class _Set:
    """A named set: how to read its records (a function of nothing, run on demand) and what it is."""

    read: Callable[[], list[dict]]
    about: str


def _advbench(parity: int) -> Callable[[], list[dict]]:
    def read() -> list[dict]:
        rows = _load("advbench", "train")
        return [
            {"instruction": r["goal"], "target": r["target"], "category": "advbench"}
            for i, r in enumerate(rows)
            if i % 2 == parity
        ]

    return read


def _xstest(label: str) -> Callable[[], list[dict]]:
    def read() -> list[dict]:
        return [
            {"instruction": r["prompt"], "category": r["type"]} for r in _load("xstest", "test") if r["label"] == label
        ]

    return read


def _safety_eval(name: str) -> Callable[[], list[dict]]:
    def read() -> list[dict]:
        rows = _load(f"safety_tuned_llamas/{name}", "test")
        return [{"instruction": _join(r["instruction"], r["input"]), "category": name} for r in rows]

    return read


def _embedded_safe_eval() -> list[dict]:
    rows = _load("embedded/benign", "eval")
    ordered = [r for r in rows if r.get("borderline") == "yes"] + [r for r in rows if r.get("borderline") != "yes"]
    return [{"instruction": r["instruction"], "category": r["category"]} for r in ordered]


_CONTRAST = "embedded/safe-contrast"


def _embedded_prompts(name: str) -> Callable[[], list[dict]]:
    """The development split of an embedded set, as prompts with their kind."""

    def read() -> list[dict]:
        return [{"instruction": r["instruction"], "category": r["category"]} for r in _load(name, "dev")]

    return read


PROMPT_SETS: dict[str, _Set] = {
    "embedded/harmful-eval": _Set(lambda: _load("embedded/harmful", "eval"), "40 embedded harmful requests"),
    "embedded/safe-eval": _Set(_embedded_safe_eval, "embedded safe prompts, borderline first"),
    "advbench/test": _Set(_advbench(1), "AdvBench behaviors at odd indices (260)"),
    "advbench/val": _Set(_advbench(0), "AdvBench behaviors at even indices (260)"),
    "malicious_instructions": _Set(_safety_eval("I-MaliciousInstructions"), "I-MaliciousInstructions (100)"),
    "q_harm": _Set(_safety_eval("Q-Harm"), "Q-Harm (100)"),
    "xstest/safe": _Set(_xstest("safe"), "XSTest's 250 safe prompts"),
    "xstest/unsafe": _Set(_xstest("unsafe"), "XSTest's 200 unsafe contrast prompts"),
    "physical_safety/safe": _Set(_safety_eval("I-PhysicalSafetySafe"), "I-PhysicalSafetySafe (100, safe advice)"),
    "embedded/safe-contrast-dev": _Set(
        _embedded_prompts(_CONTRAST), "35 embedded safe prompts that look harmful (development)"
    ),
    "embedded/harmful-code-dev": _Set(
        _embedded_prompts("embedded/harmful-code"), "16 harmful code requests (development)"
    ),
    "embedded/safe-code-dev": _Set(_embedded_prompts("embedded/safe-code"), "16 safe code requests (development)"),
}
"""Evaluation prompt sets by name."""


def _embedded_pairs(split: str, response: str) -> Callable[[], list[dict]]:
    def read() -> list[dict]:
        return [{**r, "response": r[response]} for r in _load(split.split(":")[0], split.split(":")[1])]

    return read


def _harmful_half(first: bool) -> Callable[[], list[dict]]:
    """One half of ``embedded/harmful``: of each kind's rows, the first half or the second, so the two halves
    share no prompt and hold every kind alike."""

    def read() -> list[dict]:
        rows = _embedded_pairs("embedded/harmful:train", "refusal")()
        size, seen = collections.Counter(r["category"] for r in rows), collections.Counter()
        out = []
        for r in rows:  # each row's place among its kind's rows decides its half
            if (seen[r["category"]] < size[r["category"]] // 2) == first:
                out.append(r)
            seen[r["category"]] += 1
        return out

    return read


def _safety_tuned_llamas() -> list[dict]:
    rows = _load("safety_tuned_llamas", "train")
    return [{"instruction": _join(r["instruction"], r["input"]), "response": r["output"]} for r in rows]


def _alpaca_align() -> list[dict]:
    rows = _load("alpaca", "train")[:500]
    return [{"instruction": _join(r["instruction"], r["input"]), "response": r["output"]} for r in rows]


def _borderline(split: str) -> Callable[[], list[dict]]:
    def read() -> list[dict]:
        return [r for r in _load("embedded/benign", split) if r.get("borderline") == "yes"]

    return read


PAIR_SETS: dict[str, _Set] = {
    "embedded/harmful": _Set(_embedded_pairs("embedded/harmful:train", "refusal"), "120 requests with refusals"),
    "embedded/benign": _Set(_embedded_pairs("embedded/benign:train", "response"), "benign instructions, answers"),
    "embedded/harmful-a": _Set(_harmful_half(True), "60 of embedded/harmful (each kind's first half)"),
    "embedded/harmful-b": _Set(_harmful_half(False), "the other 60 (each kind's second half)"),
    "embedded/harmful-probe": _Set(_embedded_pairs("embedded/harmful:probe", "refusal"), "30 probe requests"),
    "embedded/benign-probe": _Set(_embedded_pairs("embedded/benign:probe", "response"), "benign probe prompts"),
    "embedded/harmful-fewshot": _Set(_embedded_pairs("embedded/harmful:fewshot", "refusal"), "30 few-shot requests"),
    "embedded/benign-fewshot": _Set(_embedded_pairs("embedded/benign:fewshot", "response"), "benign few shots"),
    "embedded/borderline-fewshot": _Set(_borderline("fewshot"), "borderline-but-safe few shots"),
    "embedded/borderline": _Set(_borderline("train"), "borderline-but-safe instructions, answers"),
    "safety_tuned_llamas": _Set(_safety_tuned_llamas, "2,483 harmful instructions with refusals"),
    "alpaca/align": _Set(_alpaca_align, "Alpaca sample rows 0-499"),
    "embedded/safe-contrast": _Set(
        lambda: _load(_CONTRAST, "train"), "105 safe prompts that look harmful, with answers"
    ),
    "embedded/harmful-code": _Set(
        lambda: _load("embedded/harmful-code", "train"), "48 harmful code requests, refusals"
    ),
    "embedded/safe-code": _Set(lambda: _load("embedded/safe-code", "train"), "56 safe code requests, answers"),
}
"""Training, probe and few-shot pair sets by name."""


def _get(table: dict[str, _Set], kind: str, name: str) -> _Set:
    if name not in table:
        raise DataError(f"unknown {kind} set {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def prompt_set(name: str, limit: int = 0) -> list[dict]:
    """The records of an evaluation prompt set (the first ``limit``; 0: all)."""
    rows = _get(PROMPT_SETS, "prompt", name).read()
    return rows[:limit] if limit else rows


def pair_set(name: str, limit: int = 0) -> list[dict]:
    """The records of a training pair set (the first ``limit``; 0: all)."""
    rows = _get(PAIR_SETS, "pair", name).read()
    return rows[:limit] if limit else rows


def pair_sets(names: Sequence[str], limit: int = 0) -> list[dict]:
    """The records of several pair sets, in order, at most ``limit`` in all (0: all)."""
    out = [r for name in names for r in pair_set(name)]
    return out[:limit] if limit else out


def normalize(text: str) -> str:
    """A prompt for comparison: lower case, whitespace and punctuation runs collapsed."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def check_disjoint(held_out: dict[str, Iterable[str]], seen: dict[str, Iterable[str]]) -> None:
    """Raises :class:`DataError` when a held-out prompt (by name of its set) is also in a set the run trains,
    probes or takes few shots from.

    Example:
        >>> check_disjoint({"test": ["How do I bake bread?"]}, {"train": ["how do I bake bread"]})
        Traceback (most recent call last):
        ...
        safegene_jax.core.errors.DataError: held-out set test overlaps train: 'How do I bake bread?' is in both
    """
    index: dict[str, str] = {}
    for name, prompts in seen.items():
        for p in prompts:
            index.setdefault(normalize(p), name)
    for name, prompts in held_out.items():
        for p in prompts:
            other = index.get(normalize(p))
            if other is not None:
                raise DataError(f"held-out set {name} overlaps {other}: {p!r} is in both")

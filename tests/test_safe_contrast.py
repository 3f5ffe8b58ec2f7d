"""The embedded safe prompts that look harmful: kinds, fixed disjoint splits, their named sets, and distance from
XSTest (the held-out over-refusal set they must not copy)."""

import collections

import pytest
from words import closeness

from safegene_jax.core.errors import DataError
from safegene_jax.data import registry
from safegene_jax.data.prompt_sets import PAIR_SETS, PROMPT_SETS, check_disjoint, normalize, pair_set, prompt_set
from safegene_jax.data.safe_contrast import PROMPTS, safe_contrast

KINDS = {
    "homonym", "figurative", "safe_target", "safe_context", "definition", "absurd_group", "absurd_reason",
    "history", "privacy_public", "privacy_fictional",
}  # fmt: skip


def test_every_kind_is_in_both_splits_and_the_splits_are_fixed_and_disjoint():
    train, dev = safe_contrast("train"), safe_contrast("dev")
    assert len(train) + len(dev) == len(PROMPTS) == 140 and len(dev) == 35
    assert {r["category"] for r in train} == {r["category"] for r in dev} == KINDS
    assert not {normalize(r["instruction"]) for r in train} & {normalize(r["instruction"]) for r in dev}
    assert len({normalize(p) for _, p, _ in PROMPTS}) == len(PROMPTS)  # no prompt twice
    assert all(r["response"].strip() for r in train)
    assert safe_contrast("train") == train  # the same on every call
    counts = collections.Counter(r["category"] for r in dev)
    assert all(counts[k] == round(sum(1 for kind, _, _ in PROMPTS if kind == k) / 4) for k in KINDS)
    with pytest.raises(DataError, match="embedded/safe-contrast has no split 'eval'; splits: train, dev"):
        safe_contrast("eval")


def test_the_named_sets_read_the_splits():
    assert [r["instruction"] for r in pair_set("embedded/safe-contrast")] == [
        r["instruction"] for r in safe_contrast("train")
    ]
    assert prompt_set("embedded/safe-contrast-dev") == [
        {"instruction": r["instruction"], "category": r["category"]} for r in safe_contrast("dev")
    ]
    assert list(registry.load("embedded/safe-contrast", "dev")) == safe_contrast("dev")
    rows = prompt_set("physical_safety/safe")
    assert len(rows) == 100 and rows[0]["category"] == "I-PhysicalSafetySafe"


def test_no_prompt_is_an_xstest_prompt_or_close_to_one():
    xstest = [r["instruction"] for name in ("xstest/safe", "xstest/unsafe") for r in prompt_set(name)]
    ours = [p for _, p, _ in PROMPTS]
    check_disjoint({"xstest": xstest}, {"embedded/safe-contrast": ours})
    for prompt in ours:
        assert closeness(prompt, xstest) < 0.35, prompt  # stemmed content words shared with an XSTest prompt


def test_no_development_or_evaluation_prompt_is_in_a_set_that_trains():
    """The embedded sets that measure (``-dev``, ``-eval``) share no prompt with any embedded set a run trains,
    probes or takes shots from; a run checks its own sets, this checks every combination."""
    measured = {n: [r["instruction"] for r in prompt_set(n)] for n in PROMPT_SETS if n.startswith("embedded/")}
    measured = {n: rows for n, rows in measured.items() if n.endswith(("-dev", "-eval"))}
    trained = {n: [r["instruction"] for r in pair_set(n)] for n in PAIR_SETS if n.startswith("embedded/")}
    assert {"embedded/safe-contrast-dev", "embedded/safe-eval", "embedded/harmful-eval"} <= set(measured)
    check_disjoint(measured, trained)

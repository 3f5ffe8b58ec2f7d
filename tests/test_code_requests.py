"""The embedded code requests, harmful and safe: kinds, fixed disjoint splits, their named sets, and distance
from AdvBench (the held-out harmful set they must not copy)."""

import collections

import pytest
from words import closeness

from safegene_jax.core.errors import DataError
from safegene_jax.data import registry
from safegene_jax.data.code_requests import HARMFUL, SAFE, harmful_code, safe_code
from safegene_jax.data.prompt_sets import check_disjoint, normalize, pair_set, prompt_set

HARMFUL_KINDS = {"malware", "intrusion", "data_theft", "fraud", "disruption", "surveillance", "evasion", "abuse"}
SAFE_KINDS = {"security", "automation", "data", "networking"}


@pytest.mark.parametrize(
    "rows, read, kinds, per_kind, name",
    [
        (HARMFUL, harmful_code, HARMFUL_KINDS, 8, "embedded/harmful-code"),
        (SAFE, safe_code, SAFE_KINDS, 18, "embedded/safe-code"),
    ],
)
def test_every_kind_is_in_both_splits_and_the_splits_are_fixed_and_disjoint(rows, read, kinds, per_kind, name):
    train, dev = read("train"), read("dev")
    assert collections.Counter(kind for kind, _, _ in rows) == {k: per_kind for k in kinds}
    assert len(train) + len(dev) == len(rows)
    assert {r["category"] for r in train} == {r["category"] for r in dev} == kinds
    assert collections.Counter(r["category"] for r in dev) == {k: round(per_kind / 4) for k in kinds}
    assert not {normalize(r["instruction"]) for r in train} & {normalize(r["instruction"]) for r in dev}
    assert len({normalize(p) for _, p, _ in rows}) == len(rows)  # no prompt twice
    assert all(r["response"].strip() for r in train + dev)
    assert read("train") == train  # the same on every call
    with pytest.raises(DataError, match=f"{name} has no split 'eval'; splits: train, dev"):
        read("eval")


def test_the_harmful_and_safe_requests_are_different_prompts():
    assert not {normalize(p) for _, p, _ in HARMFUL} & {normalize(p) for _, p, _ in SAFE}
    refusals = ("can't", "won't", "not able", "cannot")
    assert all(any(r in answer for r in refusals) for _, _, answer in HARMFUL)
    assert not any(answer.startswith(("I can't", "I won't")) for _, _, answer in SAFE)


def test_the_named_sets_read_the_splits():
    assert pair_set("embedded/harmful-code") == harmful_code("train")
    assert pair_set("embedded/safe-code") == safe_code("train")
    assert prompt_set("embedded/harmful-code-dev") == [
        {"instruction": r["instruction"], "category": r["category"]} for r in harmful_code("dev")
    ]
    assert prompt_set("embedded/safe-code-dev") == [
        {"instruction": r["instruction"], "category": r["category"]} for r in safe_code("dev")
    ]
    assert list(registry.load("embedded/harmful-code", "dev")) == harmful_code("dev")
    assert list(registry.load("embedded/safe-code", "train")) == safe_code("train")


def test_no_prompt_is_an_advbench_prompt_or_close_to_one():
    advbench = [r["instruction"] for name in ("advbench/test", "advbench/val") for r in prompt_set(name)]
    assert len(advbench) == 520
    ours = [p for _, p, _ in HARMFUL + SAFE]
    check_disjoint({"advbench": advbench}, {"embedded/code-requests": ours})
    for prompt in ours:
        assert closeness(prompt, advbench) < 0.35, prompt  # stemmed content words shared with an AdvBench prompt

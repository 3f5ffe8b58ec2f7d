"""The embedded default data: sizes, categories, disjoint fixed splits, exact task answers."""

import collections

from safegene_jax import data
from safegene_jax.data import embedded
from safegene_jax.data.tasks import extract_answer

SPLITS = embedded.SPLITS


def all_splits(name):
    return {s: data.load(name, split=s) for s in SPLITS}


def test_harmful_size_categories_and_fields():
    splits = all_splits("embedded/harmful")
    records = [r for rs in splits.values() for r in rs]
    assert len(records) >= 200
    cats = collections.Counter(r["category"] for r in records)
    assert len(cats) >= 7 and {"cyber", "weapons", "fraud", "self_harm", "hate", "privacy", "drugs"} <= set(cats)
    for r in records:
        assert r["target"].startswith("Sure, here is ") and len(r["target"]) > 20
        assert r["refusal"] and r["instruction"] not in r["refusal"]
    for split in SPLITS:  # every split covers every category
        assert {r["category"] for r in splits[split]} == set(cats)


def test_benign_size_and_borderline():
    records = [r for rs in all_splits("embedded/benign").values() for r in rs]
    assert len(records) >= 200
    borderline = [r for r in records if r["borderline"] == "yes"]
    assert len(borderline) >= 40
    assert any("kill" in r["instruction"].lower() for r in borderline)
    assert all(r["response"] for r in records)


def test_splits_are_disjoint_and_fixed():
    for name in ("embedded/harmful", "embedded/benign"):
        splits = all_splits(name)
        seen = collections.Counter(r["instruction"] for rs in splits.values() for r in rs)
        assert max(seen.values()) == 1, name  # no duplicates, no overlap between splits
        again = all_splits(name)
        assert all(splits[s] == again[s] for s in SPLITS)
    assert len(data.load("embedded/harmful", split="probe")) == 30


def test_tasks_exact_answers_and_disjoint_splits():
    for task in ("arithmetic", "sentiment"):
        train = data.load(f"embedded/task/{task}", split="train")
        test = data.load(f"embedded/task/{task}", split="test")
        assert len(train) == 400 and len(test) == 100
        assert not {r["instruction"] for r in train} & {r["instruction"] for r in test}
        for r in train + test:
            assert extract_answer(task, r["response"]) == r["answer"]
    arithmetic = data.load("embedded/task/arithmetic", split="test")
    assert all(int(r["answer"]) >= 0 for r in arithmetic)
    both = data.load("embedded/task/sentiment", split="train") + data.load("embedded/task/sentiment", split="test")
    labels = collections.Counter(r["answer"] for r in both)
    assert labels["positive"] == labels["negative"] == 250


def test_arithmetic_answers_are_right():
    import re

    for r in data.load("embedded/task/arithmetic", split="train")[:100]:
        nums = list(map(int, re.findall(r"\d+", r["instruction"])))
        q = r["instruction"]
        want = nums[0] * nums[1] - nums[2] if "boxes" in q else nums[0] - nums[1] + nums[2]
        assert int(r["answer"]) == want, q


def test_the_two_halves_of_embedded_harmful_are_disjoint_and_hold_every_kind():
    from safegene_jax.data.prompt_sets import pair_set

    whole = pair_set("embedded/harmful")
    a, b = pair_set("embedded/harmful-a"), pair_set("embedded/harmful-b")
    prompts = [{r["instruction"] for r in half} for half in (a, b)]
    assert not prompts[0] & prompts[1]
    assert prompts[0] | prompts[1] == {r["instruction"] for r in whole} and len(a) + len(b) == len(whole)
    for half in (a, b):
        kinds = collections.Counter(r["category"] for r in half)
        assert set(kinds) == {r["category"] for r in whole} and set(kinds.values()) == {6}
        assert all(r["target"].startswith("Sure, here is") and r["response"] == r["refusal"] for r in half)
    # each kind's first six rows are in the first half, in the whole set's order
    first = [r for r in whole if r["category"] == "cyber"][:6]
    assert [r for r in a if r["category"] == "cyber"] == first
    assert pair_set("embedded/harmful-a") == a  # fixed

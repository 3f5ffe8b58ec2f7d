"""KV-cache generation against an argmax loop over apply."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from safegene_jax.core.errors import SafeGeneError
from safegene_jax.models import generate, load_model
from safegene_jax.models.generation import _generate, sample_logits

MODELS = pathlib.Path(__file__).parent / "fixtures" / "models"


@pytest.fixture(scope="module", params=["llama", "mistral", "qwen2"])
def lm(request):
    return load_model(MODELS / request.param)


def argmax_loop(lm, prompt, steps):
    apply = jax.jit(lm.apply)
    tokens = list(prompt)
    for _ in range(steps):
        tokens.append(int(jnp.argmax(apply(lm.params, jnp.asarray([tokens], jnp.int32))[0, -1])))
    return tokens[len(prompt) :]


def test_greedy_matches_argmax_loop(lm):
    prompts = [[5, 9, 17, 33, 40, 41, 7], [12], [100, 3, 4]]  # different lengths: left padding
    out = generate(lm.model, prompts, max_new_tokens=8, eos_token_ids=(), bucket=8)
    for prompt, got in zip(prompts, out):
        assert got == argmax_loop(lm, prompt, 8)


def test_eos_and_budget_stop():
    lm = load_model(MODELS / "llama")
    free = generate(lm.model, [[5, 6, 7]], max_new_tokens=6, eos_token_ids=())[0]
    stop = free[2]
    out = generate(lm.model, [[5, 6, 7]], max_new_tokens=6, eos_token_ids=(stop,))[0]
    assert out == free[: free.index(stop)]
    assert len(generate(lm.model, [[5, 6, 7]], max_new_tokens=3, eos_token_ids=())[0]) == 3


def test_one_compilation_per_bucket():
    lm = load_model(MODELS / "tied")
    before = _generate._cache_size()
    generate(lm.model, [[5, 6, 7], [8]], max_new_tokens=4, bucket=16)
    generate(lm.model, [[5, 6, 7, 8, 9, 10, 11], [8, 9]], max_new_tokens=4, bucket=16)
    assert _generate._cache_size() == before + 1
    generate(lm.model, [[5] * 17, [8]], max_new_tokens=4, bucket=16)  # next bucket
    assert _generate._cache_size() == before + 2


def test_sampling_is_seeded_and_top_p_tiny_is_greedy():
    lm = load_model(MODELS / "tied")
    prompts = [[5, 6, 7], [9, 10]]
    a = generate(lm.model, prompts, max_new_tokens=6, temperature=1.0, seed=3, eos_token_ids=())
    b = generate(lm.model, prompts, max_new_tokens=6, temperature=1.0, seed=3, eos_token_ids=())
    assert a == b
    greedy = generate(lm.model, prompts, max_new_tokens=6, eos_token_ids=())
    assert (
        generate(lm.model, prompts, max_new_tokens=6, temperature=1.0, top_p=1e-6, seed=1, eos_token_ids=()) == greedy
    )
    draws = {
        tuple(generate(lm.model, [[5]], max_new_tokens=4, temperature=2.0, seed=s, eos_token_ids=())[0])
        for s in range(6)
    }
    assert len(draws) > 1


def test_top_p_keeps_the_nucleus():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    seen = {int(sample_logits(logits, jax.random.PRNGKey(i), 1.0, 0.7)[0]) for i in range(200)}
    assert seen == {0, 1}


def test_patched_params_are_used():
    lm = load_model(MODELS / "tied")
    zeroed = jax.tree.map(jnp.zeros_like, lm.params)
    out = generate(lm.model, [[5, 6]], max_new_tokens=3, params=zeroed, eos_token_ids=())
    assert out == [[0, 0, 0]]  # all-zero logits: argmax is token 0


def test_generation_errors():
    lm = load_model(MODELS / "tied")
    with pytest.raises(SafeGeneError, match="prompt 1 is empty"):
        generate(lm.model, [[1], []])
    with pytest.raises(SafeGeneError, match="outside the vocabulary"):
        generate(lm.model, [[1, 999]])
    with pytest.raises(SafeGeneError, match="exceeds the model's 128 positions"):
        generate(lm.model, [[1] * 100], max_new_tokens=40)
    with pytest.raises(SafeGeneError, match="max_new_tokens"):
        generate(lm.model, [[1]], max_new_tokens=0)
    assert generate(lm.model, []) == []
    assert np.asarray(sample_logits(jnp.array([[0.0, 2.0, 1.0]]), None, 0.0, 1.0)).tolist() == [1]


def test_a_shared_prefix_runs_once_and_gives_the_same_answers(lm):
    from safegene_jax.models.generation import common_prefix

    system = list(range(20, 40))  # a chat template's system prompt: 20 tokens every prompt begins with
    prompts = [system + [5, 9, 17], system + [12], system + [100, 3, 4, 8, 9]]
    assert common_prefix(prompts) == 20 and common_prefix([[1, 2], [1, 2]]) == 1
    shared = generate(lm.model, prompts, max_new_tokens=8, eos_token_ids=(), bucket=8)
    plain = generate(lm.model, prompts, max_new_tokens=8, eos_token_ids=(), bucket=8, share_prefix=0)
    assert shared == plain
    for prompt, got in zip(prompts, shared):
        assert got == argmax_loop(lm, prompt, 8)

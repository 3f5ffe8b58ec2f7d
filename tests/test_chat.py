"""Chat formatting with the fixture tokenizer (chat template) and without a template."""

import pathlib

import numpy as np
import pytest
from transformers import AutoTokenizer

from safegene_jax.core.errors import PromptTooLongError
from safegene_jax.data import (
    batch_examples,
    chat_prompt,
    encode_example,
    encode_prompts,
    length_buckets,
)

TOKENIZER = pathlib.Path(__file__).parent / "fixtures" / "tokenizer"


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(str(TOKENIZER))


def test_prompt_uses_chat_template(tok):
    assert chat_prompt(tok, "Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert chat_prompt(tok, "Hi", system="Be brief").startswith("<|im_start|>system\nBe brief<|im_end|>")


def test_loss_mask_covers_the_response_only(tok):
    ex = encode_example(tok, "What is the capital of France?", "The capital of France is Paris.")
    ids, mask = np.array(ex.input_ids), np.array(ex.loss_mask)
    assert len(ids) == len(mask) and mask[0] == 0 and mask[-1] == 1
    assert tok.decode(ids[mask == 1]) == "The capital of France is Paris.<|im_end|>\n"
    assert tok.decode(ids[mask == 0]).endswith("<|im_start|>assistant\n")
    assert list(np.flatnonzero(mask)) == list(range(np.argmax(mask), len(mask)))  # one contiguous span


def test_without_template_appends_eos(tok):
    plain = AutoTokenizer.from_pretrained(str(TOKENIZER))
    plain.chat_template = None
    ex = encode_example(plain, "Say hi", "hi")
    ids, mask = np.array(ex.input_ids), np.array(ex.loss_mask)
    assert ids[-1] == plain.eos_token_id and tok.decode(ids[mask == 1]) == "hi<|im_end|>"
    assert chat_prompt(plain, "Say hi") == "Say hi\n"


def test_batching_right_pads_and_masks(tok):
    exs = [encode_example(tok, "Hi", "Hello there"), encode_example(tok, "How are you today?", "Fine")]
    b = batch_examples(exs, max_length=64, pad_id=0)
    assert b["tokens"].shape == b["loss_mask"].shape and b["tokens"].shape[1] % 8 == 0
    for r, ex in enumerate(exs):
        n = len(ex)
        assert b["attention_mask"][r].sum() == n and list(b["tokens"][r, :n]) == list(ex.input_ids)
        assert b["loss_mask"][r, n:].sum() == 0 and b["tokens"][r, n:].sum() == 0


def test_overflow_error_and_truncate(tok):
    ex = encode_example(tok, "word " * 40, "answer")
    with pytest.raises(PromptTooLongError, match="example 0 has .* tokens, more than max_length=16"):
        batch_examples([ex], max_length=16, pad_id=0)
    with pytest.warns(UserWarning) as caught:
        b = batch_examples([ex], max_length=16, pad_id=0, overflow="truncate")
    messages = [str(w.message) for w in caught]
    assert any("truncated from" in m for m in messages) and any("no response token left" in m for m in messages)
    assert b["tokens"].shape == (1, 16)
    with pytest.raises(ValueError, match="overflow must be"):
        batch_examples([ex], max_length=16, pad_id=0, overflow="drop")


def test_generation_prompts_too_long(tok):
    assert len(encode_prompts(tok, ["Hi", "Hello"], max_length=32)) == 2
    with pytest.raises(PromptTooLongError, match="prompt 1 has"):
        encode_prompts(tok, ["Hi", "very long " * 30], max_length=32)


def test_length_buckets():
    lengths = [10, 3, 50, 7, 49, 12, 2]
    batches = length_buckets(lengths, 3, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:  # each batch holds neighbours in length
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 40
    assert length_buckets(lengths, 3, seed=1) == batches
    with pytest.raises(ValueError):
        length_buckets(lengths, 0)

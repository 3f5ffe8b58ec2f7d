"""A tiny random model that uses the fixture tokenizer (366 tokens, chat template), saved as an HF folder."""

from __future__ import annotations

import pathlib

from flax import nnx
from transformers import AutoTokenizer

from safegene_jax.models import LlamaConfig, LlamaForCausalLM, export_hf, load_model

TOKENIZER = pathlib.Path(__file__).parent / "fixtures" / "tokenizer"

# the six RMSNorms of a Gemma 3 decoder block, by their Hugging Face names
GEMMA_NORMS = (
    "input_layernorm",
    "post_attention_layernorm",
    "pre_feedforward_layernorm",
    "post_feedforward_layernorm",
    "self_attn.q_norm",
    "self_attn.k_norm",
)


def tiny_model_folder(folder: pathlib.Path, layers: int = 2, seed: int = 0) -> pathlib.Path:
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER))
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=(tok.eos_token_id,),
        pad_token_id=tok.pad_token_id,
    )
    return export_hf(LlamaForCausalLM(cfg, rngs=nnx.Rngs(seed)), folder, tokenizer=tok)


def tiny_lm(folder: pathlib.Path, **kw):
    if not (folder / "config.json").exists():
        tiny_model_folder(folder, **kw)
    return load_model(folder)

"""Writes GGUF files from the tiny Hugging Face fixtures with ``gguf.GGUFWriter``, the way llama.cpp does.

Q/K rows are permuted as llama.cpp's converter permutes them, llama3 rope scaling becomes a
``rope_freqs`` tensor, and the tiny BPE tokenizer goes into the metadata. With ``quantized=True`` the
weights are stored as Q8_0/Q4_0/Q4_1/F16/BF16 (quantized with gguf.quants) and the two down
projections as Q4_K and Q6_K (blocks of random bytes with sane scales, as gguf.quants cannot encode
K-quants); ``reference`` returns what each weight must load as.
"""

from __future__ import annotations

import json
import pathlib

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file

from safegene_jax.models.config import LlamaConfig, rope_inv_freq
from safegene_jax.models.gguf_file import permute_qk

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

HF_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
QUANT = {
    "attn_q": Q.Q8_0,
    "attn_k": Q.Q4_0,
    "attn_v": Q.Q4_1,
    "attn_output": Q.Q8_0,
    "ffn_gate": Q.F16,
    "ffn_up": Q.BF16,
    "token_embd": Q.Q8_0,
    "output": Q.Q4_1,
}
K_QUANTS = {0: (Q.Q4_K, 144), 1: (Q.Q6_K, 210)}  # layer -> (type, bytes per 256-value block)


def gguf_name(hf: str) -> str:
    if hf in HF_TO_GGUF:
        return HF_TO_GGUF[hf]
    parts = hf.split(".")
    return f"blk.{parts[2]}." + LAYER[".".join(parts[3:])]


def k_quant_blocks(kind: Q, block_bytes: int, rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(rows, cols // 256, block_bytes), dtype=np.uint8)
    scale = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    if kind == Q.Q4_K:  # d and dmin are the first two float16 of the block
        raw[..., 0:2] = scale
        raw[..., 2:4] = scale
    else:  # Q6_K: d is the last float16
        raw[..., -2:] = scale
    return raw.reshape(rows, -1)


def tokenizer_metadata(w: gguf.GGUFWriter) -> None:
    spec = json.loads((FIXTURES / "tokenizer" / "tokenizer.json").read_text())
    config = json.loads((FIXTURES / "tokenizer" / "tokenizer_config.json").read_text())
    vocab = dict(spec["model"]["vocab"])
    special = {t["content"]: t["id"] for t in spec["added_tokens"]}
    vocab.update(special)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab[config["bos_token"]])
    w.add_eos_token_id(vocab[config["eos_token"]])
    w.add_pad_token_id(vocab[config["pad_token"]])
    w.add_add_bos_token(False)
    w.add_chat_template(config["chat_template"])


def write_gguf(variant: str, path: pathlib.Path, quantized: bool) -> dict[str, np.ndarray]:
    """Writes the GGUF of a fixture; returns HF name -> the weight the loader must produce."""
    folder = FIXTURES / "models" / variant
    cfg = LlamaConfig.from_hf_dict(json.loads((folder / "config.json").read_text()))
    weights = load_file(str(folder / "model.safetensors"))
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_vocab_size(cfg.vocab_size)
    tokenizer_metadata(w)
    if cfg.rope_scaling:  # llama.cpp stores llama3 scaling as per-frequency divisors
        base = rope_inv_freq(cfg.replace(rope_scaling=None)).astype(np.float64)
        w.add_tensor("rope_freqs.weight", (base / rope_inv_freq(cfg).astype(np.float64)).astype(np.float32))
    reference = {}
    for hf, value in weights.items():
        name = gguf_name(hf)
        stored = value.astype(np.float32)
        heads = None
        if name.endswith("attn_q.weight"):
            heads = cfg.num_attention_heads
        elif name.endswith("attn_k.weight"):
            heads = cfg.num_key_value_heads
        if heads:
            stored = permute_qk(stored, heads)
        kind = QUANT.get(name.split(".")[-2] if name.startswith("blk.") else name.split(".")[0])
        layer = int(name.split(".")[1]) if name.startswith("blk.") else None
        if not quantized or stored.ndim == 1:
            w.add_tensor(name, stored)
            loaded = stored
        elif name.endswith("ffn_down.weight") and layer in K_QUANTS:
            qtype, nbytes = K_QUANTS[layer]
            raw = k_quant_blocks(qtype, nbytes, stored.shape[0], stored.shape[1], seed=layer)
            w.add_tensor(name, raw, raw_dtype=qtype)
            loaded = dequantize(raw, qtype).reshape(stored.shape)
        else:
            raw = quantize(stored, kind)
            w.add_tensor(name, raw, raw_dtype=kind)
            loaded = dequantize(raw, kind).reshape(stored.shape).astype(np.float32)
        if heads:
            from safegene_jax.models.gguf_file import unpermute_qk

            loaded = unpermute_qk(loaded, heads)
        reference[hf] = loaded
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return reference


# ---- Gemma 3 ----------------------------------------------------------------------------------------------------

GEMMA3_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    **{k: v for k, v in LAYER.items() if "layernorm" not in k},
}

# a tiny vocabulary shaped like Gemma's: control tokens, turn markers, user-defined newlines and a run of spaces
# (stored with real spaces, as llama.cpp writes Gemma's), pieces in merge order, then unused control tokens
GEMMA_TINY_PIECES = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>", "\n", "  "]
GEMMA_TINY_PIECES += ["\u2581", *"abcdehilnorstuwy", "he", "ll", "hell", "hello", "\u2581w", "or", "\u2581wor", "ld"]
GEMMA_TINY_PIECES += ["\u2581world", "\u2581a", "\u2581b", "<0x21>", "<0x3F>"]


def gemma_tiny_tokens(vocab: int) -> tuple[list[str], list[int]]:
    tokens = GEMMA_TINY_PIECES + [f"<unused{i}>" for i in range(vocab - len(GEMMA_TINY_PIECES))]
    types = []
    for t in tokens:
        if t in ("\n", "  "):
            types.append(4)  # user-defined
        elif t.startswith("<0x"):
            types.append(6)  # byte
        elif t.startswith("<"):
            types.append(3)  # control
        else:
            types.append(1)
    return tokens, types


def write_gemma3_gguf(path: pathlib.Path, variant: str = "gemma3_defaults", arch: str = "gemma3") -> dict:
    """A Gemma 3 fixture as llama.cpp's converter writes it: norms with the ``+1`` folded in, Q/K not permuted,
    only the window and the global RoPE base stated; returns HF name -> the weight the loader must produce."""
    folder = FIXTURES / "models" / variant
    hf = json.loads((folder / "config.json").read_text())
    weights = load_file(str(folder / "model.safetensors"))
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_block_count(hf["num_hidden_layers"])
    w.add_context_length(hf["max_position_embeddings"])
    w.add_embedding_length(hf["hidden_size"])
    w.add_feed_forward_length(hf["intermediate_size"])
    w.add_head_count(hf["num_attention_heads"])
    w.add_head_count_kv(hf["num_key_value_heads"])
    w.add_key_length(hf["head_dim"])
    w.add_value_length(hf["head_dim"])
    w.add_layer_norm_rms_eps(hf["rms_norm_eps"])
    w.add_rope_freq_base(hf["rope_parameters"]["full_attention"]["rope_theta"])
    w.add_sliding_window(hf["sliding_window"])
    tokens, types = gemma_tiny_tokens(hf["vocab_size"])
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([-1000.0 if ty == 3 else -float(i) for i, ty in enumerate(types)])
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)
    reference = {}
    for name, value in weights.items():
        parts = name.split(".")
        gname = HF_TO_GGUF.get(name) or f"blk.{parts[2]}." + GEMMA3_LAYER[".".join(parts[3:])]
        stored = value.astype(np.float32)
        if name.endswith("norm.weight"):
            stored = stored + np.float32(1.0)  # llama.cpp folds Gemma's (1 + weight) into the file
        w.add_tensor(gname, stored)
        reference[name] = stored - np.float32(1.0) if name.endswith("norm.weight") else stored
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return reference

"""Back-of-envelope device memory per pipeline stage, for choosing a TPU slice and a mesh.

Counted per device, with params sharded evenly over all devices (FSDP x tensor) and activations split
over the batch: float32 params (the library trains and patches in float32), AdamW's two moments, the
activations a decoder layer keeps for the backward pass, ``s*b*h*(34 + 5*a*s/h)`` bytes at 2-byte
activations (Korthikanti et al. 2022, no recomputation), and the logits. Estimates, not measurements:
XLA's buffer reuse lowers them, fragmentation and temporaries raise them. Leave about 20% headroom.

Example:
    >>> from safegene_jax.pipeline.config import load_config
    >>> est = estimate(LLAMA3_8B, load_config("configs/llama3-8b-v5e-8.yaml"), devices=8)
    >>> round(est["params_gib"], 1)
    29.9
"""

from __future__ import annotations

from typing import Any

GIB = 1024**3

# Llama-3-8B(-Instruct) shapes, from its config.json
LLAMA3_8B = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "tie_word_embeddings": False,
}


def _get(shape: Any, name: str):
    return shape[name] if isinstance(shape, dict) else getattr(shape, name)


def param_count(shape: Any) -> int:
    """Parameters of a Llama-family decoder (dict of config fields or a LlamaConfig)."""
    v, h, i, n = (_get(shape, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers"))
    q = _get(shape, "num_attention_heads") * _get(shape, "head_dim")
    kv = _get(shape, "num_key_value_heads") * _get(shape, "head_dim")
    layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h
    embed = v * h * (1 if _get(shape, "tie_word_embeddings") else 2)
    return n * layer + embed + h


def _layer_activations(shape: Any, batch: int, length: int) -> float:
    h, a = _get(shape, "hidden_size"), _get(shape, "num_attention_heads")
    return length * batch * h * (34 + 5 * a * length / h)


def _logits(shape: Any, batch: int, length: int) -> float:
    return 2 * batch * length * _get(shape, "vocab_size") * 4  # float32 logits and their log-softmax


def _activations(shape: Any, batch: int, length: int) -> float:
    return _get(shape, "num_hidden_layers") * _layer_activations(shape, batch, length) + _logits(shape, batch, length)


def estimate(shape: Any, cfg: Any, devices: int) -> dict[str, float]:
    """GiB per device: ``params_gib`` (one float32 copy, whole model) and the peak of each stage."""
    p = param_count(shape) * 4
    per = lambda x: x / devices / GIB  # noqa: E731

    def train(section) -> float:
        act = _activations(shape, section.batch_size, section.max_length)
        if section.lora is not None:
            # frozen params + the merged copy each step builds; LoRA factors and their moments are small
            return per(2 * p + act)
        return per(4 * p + act)  # params, grads, two AdamW moments

    sel = cfg.select
    rec = cfg.recalibrate
    return {
        "params_gib": p / GIB,
        "align": train(cfg.align),
        "degrade": train(cfg.degrade),
        "finetune": train(cfg.finetune),
        # reference params, the vector, every candidate's hidden states (prefix method: one stream per
        # layer and the unpatched one), one layer's activations per candidate in a chunk, one head's logits
        "select": per(
            2 * p
            + (_get(shape, "num_hidden_layers") + 1) * 2 * sel.probes * sel.max_length * _get(shape, "hidden_size") * 4
            + sel.chunk_size * _layer_activations(shape, 2 * sel.probes, sel.max_length)
            + _logits(shape, sel.probes, sel.max_length)
        ),
        # task params, the vector, the patched copy, and activations kept for d loss / d alpha
        "recalibrate": per(3 * p + _activations(shape, rec.shots, rec.max_length)),
        # params, the vector and a patched copy (baselines), generation's KV cache is small beside them
        "eval": per(3 * p),
    }


def report(shape: Any, cfg: Any, devices: int) -> str:
    """The estimate as comment lines for a config file."""
    est = estimate(shape, cfg, devices)
    lines = [
        f"# memory estimate per device ({devices} devices; safegene_jax.pipeline.memory): one float32 copy of the "
        f"model {est['params_gib']:.1f} GiB in all"
    ]
    for stage in ("align", "degrade", "finetune", "select", "recalibrate", "eval"):
        lines.append(f"#   {stage:<12} {est[stage]:5.1f} GiB")
    return "\n".join(lines)

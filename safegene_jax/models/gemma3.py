"""The Gemma 3 text decoder in Flax NNX (``Gemma3ForCausalLM``: Gemma 3 270M, 1B, and the text part of 4B+).

It shares the Llama module's attention core, rotary tables, masks, KV cache and layer-at-a-time apply
(:class:`~safegene_jax.models.llama.LayeredApply`), and differs where Gemma 3 differs:

* RMSNorm scales by ``1 + weight`` (the stored weight is centred on 0), in float32 before the cast back;
* four norms per block: before and after attention, before and after the MLP;
* RMSNorm on the queries and keys of every head (``q_norm``, ``k_norm``) before the rotary embedding;
* the MLP is GeGLU with the tanh approximation of GELU;
* token embeddings are multiplied by ``sqrt(hidden_size)`` in the compute dtype (as transformers does);
* the head dimension is its own setting, and scores are scaled by ``query_pre_attn_scalar ** -0.5``;
* local layers attend through a sliding window with their own RoPE base (10,000), global layers see every
  earlier token with the checkpoint's base (1e6 for Gemma 3), interleaved as ``config.layer_types`` says;
* the LM head is tied to the embeddings, and the logits are soft-capped when the config has a cap (Gemma 3
  has none). Attention scores are never capped: Gemma 3 dropped Gemma 2's attention soft cap, and a config's
  ``attn_logit_softcapping`` is kept for export but unused, as transformers' Gemma 3 leaves it unused.

Leaf paths follow Hugging Face's names, as the Llama module's do (``model.layers.3.self_attn.q_norm.weight``,
``model.layers.3.pre_feedforward_layernorm.weight``), so the transforms, layer maps, training and scoring work
unchanged. Norm weights are stored as in Hugging Face checkpoints (centred on 0).

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from safegene_jax.models.config import Gemma3Config
    >>> from safegene_jax.models.llama import make_apply
    >>> cfg = Gemma3Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                    num_attention_heads=2, num_key_value_heads=1, head_dim=8, sliding_window=4,
    ...                    layer_types=("sliding_attention", "full_attention"))
    >>> graphdef, params = nnx.split(Gemma3ForCausalLM(cfg, rngs=nnx.Rngs(0)))
    >>> make_apply(graphdef)(params, jnp.ones((1, 5), jnp.int32)).shape
    (1, 5, 32)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from safegene_jax.models.config import Gemma3Config, rope_inv_freq
from safegene_jax.models.llama import (
    KVCache,
    _linear,
    apply_rope,
    attend,
    causal_mask,
    mask_bias,
    rope_tables,
    run_layers,
)


class Gemma3RMSNorm(nnx.Module):
    """RMSNorm scaled by ``1 + weight``, computed in float32 and cast back after the scaling."""

    def __init__(self, dim: int, eps: float, param_dtype=jnp.float32):
        self.weight = nnx.Param(jnp.zeros((dim,), param_dtype))
        self.eps = eps

    def __call__(self, x):
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return (xf * (1.0 + self.weight[...].astype(jnp.float32))).astype(x.dtype)


class Gemma3Attention(nnx.Module):
    def __init__(self, cfg: Gemma3Config, *, dtype, param_dtype, rngs):
        h, q, kv = cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
        lin = functools.partial(_linear, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = lin(h, q, bias=cfg.qkv_bias)
        self.k_proj = lin(h, kv, bias=cfg.qkv_bias)
        self.v_proj = lin(h, kv, bias=cfg.qkv_bias)
        self.o_proj = lin(q, h, bias=cfg.o_bias)
        self.q_norm = Gemma3RMSNorm(cfg.head_dim, cfg.rms_norm_eps, param_dtype)
        self.k_norm = Gemma3RMSNorm(cfg.head_dim, cfg.rms_norm_eps, param_dtype)
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.scale = float(cfg.query_pre_attn_scalar) ** -0.5

    def __call__(self, x, cos, sin, bias, kv=None, index=None):
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).reshape(b, t, self.heads, self.head_dim))
        k = self.k_norm(self.k_proj(x).reshape(b, t, self.kv_heads, self.head_dim))
        v = self.v_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out, kv = attend(q, k, v, bias, kv, index, scale=self.scale)
        return self.o_proj(out.astype(x.dtype)), kv


class Gemma3MLP(nnx.Module):
    """GeGLU: ``down(gelu_tanh(gate(x)) * up(x))``."""

    def __init__(self, cfg: Gemma3Config, *, dtype, param_dtype, rngs):
        lin = functools.partial(_linear, bias=cfg.mlp_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = lin(cfg.hidden_size, cfg.intermediate_size)
        self.up_proj = lin(cfg.hidden_size, cfg.intermediate_size)
        self.down_proj = lin(cfg.intermediate_size, cfg.hidden_size)

    def __call__(self, x):
        return self.down_proj(jax.nn.gelu(self.gate_proj(x), approximate=True) * self.up_proj(x))


class Gemma3DecoderLayer(nnx.Module):
    """One block; ``sliding`` (static) picks the local or the global attention inputs of the call."""

    def __init__(self, cfg: Gemma3Config, sliding: bool, *, dtype, param_dtype, rngs):
        norm = functools.partial(Gemma3RMSNorm, cfg.hidden_size, cfg.rms_norm_eps, param_dtype)
        self.sliding = bool(sliding)
        self.input_layernorm = norm()
        self.self_attn = Gemma3Attention(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.post_attention_layernorm = norm()
        self.pre_feedforward_layernorm = norm()
        self.mlp = Gemma3MLP(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.post_feedforward_layernorm = norm()

    def __call__(self, x, local, global_, kv=None, index=None):
        """``local`` and ``global_`` are ``(cos, sin, bias)`` of the local and the global layers."""
        cos, sin, bias = local if self.sliding else global_
        attn, kv = self.self_attn(self.input_layernorm(x), cos, sin, bias, kv, index)
        x = x + self.post_attention_layernorm(attn)
        x = x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        return x, kv


class Gemma3Model(nnx.Module):
    def __init__(self, cfg: Gemma3Config, *, dtype, param_dtype, rngs):
        self.embed_tokens = nnx.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            dtype=dtype,
            param_dtype=param_dtype,
            embedding_init=nnx.initializers.normal(0.02),
            rngs=rngs,
        )
        self.layers = nnx.List(
            [
                Gemma3DecoderLayer(cfg, cfg.is_sliding(i), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for i in range(cfg.num_hidden_layers)
            ]
        )
        self.norm = Gemma3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, param_dtype)


class Gemma3ForCausalLM(nnx.Module):
    """Gemma 3 decoder with its (tied) LM head; called like
    :class:`~safegene_jax.models.llama.LlamaForCausalLM`: ``model(tokens, attention_mask, cache=...)``.

    Args:
        cfg: the configuration.
        dtype: compute dtype (``jnp.bfloat16`` on TPU); norms, softmax and logits run in float32.
        param_dtype: parameter dtype.
    """

    def __init__(self, cfg: Gemma3Config, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = cfg
        self.model = Gemma3Model(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = _linear(
                cfg.hidden_size, cfg.vocab_size, bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs
            )

    def __call__(
        self, tokens, attention_mask=None, *, positions=None, cache: KVCache | None = None, last_only: bool = False
    ):
        """Logits ``(B, T, vocab)`` in float32 (the last position's only with ``last_only``) and the updated
        cache (``None`` without one); see :meth:`LlamaForCausalLM.__call__
        <safegene_jax.models.llama.LlamaForCausalLM.__call__>`. Local layers see their last
        ``sliding_window`` cache slots (themselves included), with or without a cache."""
        local, global_, key_mask, index = self.context(tokens, attention_mask, positions=positions, cache=cache)
        x = self.embed(tokens)
        x, new_cache = run_layers(self.model.layers, x, (local, global_), cache, key_mask, index, tokens.shape[1])
        return self.logits(x[:, -1:] if last_only else x), new_cache

    def embed(self, tokens):
        """Token embeddings times ``sqrt(hidden_size)``, the scale rounded to the compute dtype first."""
        x = self.model.embed_tokens(tokens)
        return x * jnp.asarray(self.config.hidden_size**0.5, x.dtype)

    def context(self, tokens, attention_mask=None, *, positions=None, cache: KVCache | None = None):
        """``(local, global_, key_mask, index)``: the ``(cos, sin, bias)`` of the local layers (sliding window,
        local RoPE base) and of the global ones, the key mask to keep in the cache and the first cache slot."""
        cfg = self.config
        allowed, distance, key_mask, index, default_positions = causal_mask(tokens, attention_mask, cache=cache)
        positions = default_positions if positions is None else positions
        global_ = (*rope_tables(positions, rope_inv_freq(cfg)), mask_bias(allowed, distance))
        local = (
            *rope_tables(positions, rope_inv_freq(cfg, theta=cfg.rope_local_theta, scaled=False)),
            mask_bias(allowed, distance, cfg.sliding_window),
        )
        return local, global_, key_mask, index

    def layer_inputs(self, tokens, attention_mask=None):
        """Scaled token embeddings and ``(local, global_)``, what every decoder layer of this call takes."""
        local, global_, _, _ = self.context(tokens, attention_mask)
        return self.embed(tokens), (local, global_)

    def hidden_states(self, tokens, attention_mask=None):
        """The last decoder layer's output ``(B, T, hidden)``, before the final norm and the LM head."""
        x, ctx = self.layer_inputs(tokens, attention_mask)
        for layer in self.model.layers:
            x = layer(x, *ctx)[0]
        return x

    def logits(self, x):
        """Final norm, LM head (tied or not) and the optional soft cap, in float32."""
        x = self.model.norm(x)
        logits = self.model.embed_tokens.attend(x) if self.config.tie_word_embeddings else self.lm_head(x)
        logits = logits.astype(jnp.float32)
        cap = self.config.final_logit_softcapping
        return logits if cap is None else cap * jnp.tanh(logits / cap)

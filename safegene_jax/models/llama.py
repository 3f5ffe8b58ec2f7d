"""The Llama-family decoder in Flax NNX: Llama 2/3, Mistral, Qwen2/2.5, SmolLM2.

Module and parameter names follow Hugging Face's, so leaf paths read
``model.layers.3.self_attn.q_proj.kernel`` and the default layer map of the transforms applies.
Kernels are ``(in, out)`` (NNX convention); the loaders transpose Hugging Face's ``(out, in)``.

The pure entry point the method uses is ``apply(params, tokens, attention_mask) -> logits``:

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from safegene_jax.models.config import LlamaConfig
    >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=4, num_key_value_heads=2, head_dim=4)
    >>> graphdef, params = nnx.split(LlamaForCausalLM(cfg, rngs=nnx.Rngs(0)))
    >>> apply = make_apply(graphdef)
    >>> apply(params, jnp.ones((1, 5), jnp.int32), jnp.ones((1, 5), jnp.int32)).shape
    (1, 5, 32)
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from safegene_jax.models.config import LlamaConfig, rope_inv_freq

_NEG = float(jnp.finfo(jnp.float32).min)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["keys", "values", "mask", "index"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer for ``size`` slots, which slots hold real tokens, and the next slot.

    Attributes:
        keys, values: per layer, ``(batch, size, kv_heads, head_dim)``.
        mask: ``(batch, size)`` int32, 1 where a slot holds a real (not padding) token.
        index: int32 scalar, the first free slot.
    """

    keys: tuple
    values: tuple
    mask: jax.Array
    index: jax.Array

    @classmethod
    def create(cls, cfg: LlamaConfig, batch: int, size: int, dtype=jnp.float32) -> KVCache:
        shape = (batch, size, cfg.num_key_value_heads, cfg.head_dim)
        zeros = tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_hidden_layers))
        return cls(
            zeros,
            tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_hidden_layers)),
            jnp.zeros((batch, size), jnp.int32),
            jnp.zeros((), jnp.int32),
        )


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, param_dtype=jnp.float32):
        self.weight = nnx.Param(jnp.ones((dim,), param_dtype))
        self.eps = eps

    def __call__(self, x):
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(x.dtype) * xf.astype(x.dtype)


def _rotate_half(x):
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x, cos, sin):
    """Rotary embedding in Hugging Face's rotate-half layout; ``cos``/``sin`` are ``(B, T, head_dim)``."""
    xf = x.astype(jnp.float32)
    out = xf * cos[:, :, None, :] + _rotate_half(xf) * sin[:, :, None, :]
    return out.astype(x.dtype)


def attend(q, k, v, bias, kv=None, index=None, *, scale: float):
    """Grouped-query attention of ``q`` ``(B, T, heads, D)`` over ``k``/``v`` ``(B, T, kv_heads, D)``, written
    into the cache ``kv`` (per-layer keys and values) at slot ``index`` first when there is one.

    Scores are taken in float32, scaled by ``scale``, biased by ``bias`` ``(B, T, S)`` (0 or a large negative
    number) and softmaxed. Returns the attention output ``(B, T, heads * D)`` and the updated ``kv`` (``None``
    without a cache).
    """
    b, t, heads, dim = q.shape
    if kv is not None:
        ck, cv = kv
        k = jax.lax.dynamic_update_slice(ck, k.astype(ck.dtype), (0, index, 0, 0))
        v = jax.lax.dynamic_update_slice(cv, v.astype(cv.dtype), (0, index, 0, 0))
        kv = (k, v)
    kv_heads = k.shape[2]
    q = q.reshape(b, t, kv_heads, heads // kv_heads, dim)
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k.astype(q.dtype), preferred_element_type=jnp.float32) * scale
    probs = jax.nn.softmax(scores + bias[:, None, None], axis=-1).astype(v.dtype)
    return jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(b, t, heads * dim), kv


def causal_mask(tokens, attention_mask=None, *, cache: KVCache | None = None):
    """What the layers of one call share about which keys each query may see, and the tokens' positions.

    Without a cache, ``attention_mask`` (1 = token, 0 = padding; left or right) masks padded keys; with one,
    the ``T`` tokens go to the slots from ``cache.index`` on and see every earlier real slot. Returns
    ``(allowed, distance, key_mask, index, positions)``: ``allowed`` ``(B, T, S)`` (causal, real keys only),
    ``distance`` ``(T, S)`` (query slot minus key slot, for a sliding window), the key mask to keep in the
    cache, the call's first cache slot (0 without a cache), and positions ``(B, T)`` that count real tokens
    only (the cache's real tokens first).
    """
    b, t = tokens.shape
    mask = jnp.ones((b, t), jnp.int32) if attention_mask is None else attention_mask.astype(jnp.int32)
    if cache is None:
        key_mask, index, offset = mask, 0, 0
        query_slots = key_slots = jnp.arange(t)
    else:
        index = cache.index
        key_mask = jax.lax.dynamic_update_slice(cache.mask, mask, (0, index))
        query_slots = index + jnp.arange(t)
        key_slots = jnp.arange(cache.mask.shape[1])
        offset = jnp.sum(cache.mask, axis=1, keepdims=True)
    distance = query_slots[:, None] - key_slots[None, :]
    allowed = (distance >= 0)[None] & (key_mask[:, None, :] > 0)
    positions = offset + jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
    return allowed, distance, key_mask, index, positions


def mask_bias(allowed, distance, window: int | None = None):
    """The additive attention bias ``(B, T, S)``: 0 where allowed, else very negative. With a ``window`` a query
    sees itself and the ``window - 1`` slots before it (transformers' and llama.cpp's sliding window)."""
    if window is not None:
        allowed = allowed & (distance < window)[None]
    return jnp.where(allowed, 0.0, _NEG).astype(jnp.float32)


def rope_tables(positions, inv_freq):
    """Rotary ``cos``/``sin`` ``(B, T, head_dim)`` of ``positions`` for the inverse frequencies ``inv_freq``."""
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def _linear(cfg_in, cfg_out, *, bias, dtype, param_dtype, rngs):
    return nnx.Linear(
        cfg_in,
        cfg_out,
        use_bias=bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nnx.initializers.normal(0.02),
        rngs=rngs,
    )


class Attention(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, dtype, param_dtype, rngs):
        h, q, kv = cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
        lin = functools.partial(_linear, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = lin(h, q, bias=cfg.qkv_bias)
        self.k_proj = lin(h, kv, bias=cfg.qkv_bias)
        self.v_proj = lin(h, kv, bias=cfg.qkv_bias)
        self.o_proj = lin(q, h, bias=cfg.o_bias)
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim

    def __call__(self, x, cos, sin, bias, kv=None, index=None):
        b, t, _ = x.shape
        q = self.q_proj(x).reshape(b, t, self.heads, self.head_dim)
        k = self.k_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out, kv = attend(q, k, v, bias, kv, index, scale=self.head_dim**-0.5)
        return self.o_proj(out.astype(x.dtype)), kv


class MLP(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, dtype, param_dtype, rngs):
        lin = functools.partial(_linear, bias=cfg.mlp_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = lin(cfg.hidden_size, cfg.intermediate_size)
        self.up_proj = lin(cfg.hidden_size, cfg.intermediate_size)
        self.down_proj = lin(cfg.intermediate_size, cfg.hidden_size)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, dtype, param_dtype, rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, param_dtype)
        self.self_attn = Attention(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, param_dtype)
        self.mlp = MLP(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x, cos, sin, bias, kv=None, index=None):
        attn, kv = self.self_attn(self.input_layernorm(x), cos, sin, bias, kv, index)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class LlamaModel(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, dtype, param_dtype, rngs):
        self.embed_tokens = nnx.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            dtype=dtype,
            param_dtype=param_dtype,
            embedding_init=nnx.initializers.normal(0.02),
            rngs=rngs,
        )
        self.layers = nnx.List(
            [DecoderLayer(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs) for _ in range(cfg.num_hidden_layers)]
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, param_dtype)


def run_layers(layers, x, shared: tuple, cache: KVCache | None, key_mask, index, length: int):
    """``x`` through every decoder layer (``layer(x, *shared, kv, index)``), each with its slot of ``cache``;
    returns ``(x, the updated cache or None)``. ``length``: the tokens this call adds to the cache."""
    new_keys, new_values = [], []
    for i, layer in enumerate(layers):
        kv = None if cache is None else (cache.keys[i], cache.values[i])
        x, kv = layer(x, *shared, kv, index)
        if kv is not None:
            new_keys.append(kv[0])
            new_values.append(kv[1])
    if cache is None:
        return x, None
    return x, KVCache(tuple(new_keys), tuple(new_values), key_mask, index + length)


class LlamaForCausalLM(nnx.Module):
    """Decoder with an LM head (or tied embeddings). Call: ``model(tokens, attention_mask, cache=...)``.

    Args:
        cfg: the configuration.
        dtype: compute dtype (``jnp.bfloat16`` on TPU); norms, softmax and logits run in float32.
        param_dtype: parameter dtype.
    """

    def __init__(self, cfg: LlamaConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = cfg
        self.model = LlamaModel(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = _linear(
                cfg.hidden_size, cfg.vocab_size, bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs
            )

    def __call__(
        self, tokens, attention_mask=None, *, positions=None, cache: KVCache | None = None, last_only: bool = False
    ):
        """Logits ``(B, T, vocab)`` in float32 (``(B, 1, vocab)``, the last position's, with ``last_only``), and
        the updated cache (``None`` without one).

        Without a cache, ``attention_mask`` (1 = token, 0 = padding; left or right) masks padded keys
        and positions count real tokens only. With a cache, the ``T`` tokens go to the slots from
        ``cache.index`` on and attend to every earlier real slot.
        """
        cos, sin, bias, key_mask, index = self.context(tokens, attention_mask, positions=positions, cache=cache)
        x = self.model.embed_tokens(tokens)
        x, new_cache = run_layers(self.model.layers, x, (cos, sin, bias), cache, key_mask, index, tokens.shape[1])
        return self.logits(x[:, -1:] if last_only else x), new_cache

    def context(self, tokens, attention_mask=None, *, positions=None, cache: KVCache | None = None):
        """What every layer of one call shares: rotary ``cos``/``sin``, the attention ``bias``, the key
        mask and the first cache slot."""
        cfg = self.config
        allowed, distance, key_mask, index, default_positions = causal_mask(tokens, attention_mask, cache=cache)
        positions = default_positions if positions is None else positions
        bias = mask_bias(allowed, distance, cfg.sliding_window)
        cos, sin = rope_tables(positions, rope_inv_freq(cfg))
        return cos, sin, bias, key_mask, index

    def layer_inputs(self, tokens, attention_mask=None):
        """Token embeddings ``(B, T, hidden)`` and what every decoder layer of this call takes besides them."""
        cos, sin, bias, _, _ = self.context(tokens, attention_mask)
        return self.model.embed_tokens(tokens), (cos, sin, bias)

    def hidden_states(self, tokens, attention_mask=None):
        """The last decoder layer's output ``(B, T, hidden)``, before the final norm and the LM head."""
        x, ctx = self.layer_inputs(tokens, attention_mask)
        for layer in self.model.layers:
            x = layer(x, *ctx)[0]
        return x

    def logits(self, x):
        """Final norm and LM head (tied or not) of hidden states ``(..., hidden)``, in float32."""
        x = self.model.norm(x)
        logits = self.model.embed_tokens.attend(x) if self.config.tie_word_embeddings else self.lm_head(x)
        return logits.astype(jnp.float32)


class LayeredApply:
    """``apply(params, tokens, attention_mask=None) -> logits`` for a split model (jit/vmap/grad safe), which
    also runs one layer at a time, for work that reuses the layers below a change (layer scoring)::

        x, ctx = apply.embed(params, tokens, mask)
        for i in range(apply.num_layers(params)):
            x = apply.layer(params, i, x, ctx)
        logits = apply.head(params, x)  # hidden states of any leading shape, e.g. a few positions only

    It serves every model of :mod:`safegene_jax.models` (Llama family, Gemma 3): each provides
    ``layer_inputs``, ``hidden_states`` and ``logits``, and its decoder layers take ``layer(x, *ctx)``.
    """

    def __init__(self, graphdef):
        self.graphdef = graphdef
        self._layer_graphdefs = None

    def __call__(self, params, tokens, attention_mask=None):
        return nnx.merge(self.graphdef, params)(tokens, attention_mask)[0]

    @staticmethod
    def num_layers(params) -> int:
        return len(params["model"]["layers"])

    def embed(self, params, tokens, attention_mask=None):
        """Token embeddings ``(B, T, hidden)`` and the context every layer of this batch shares."""
        return nnx.merge(self.graphdef, params).layer_inputs(tokens, attention_mask)

    def _graphdefs(self, params) -> list:
        if self._layer_graphdefs is None:  # layers may differ in structure (Gemma 3's local and global layers)
            layers = nnx.merge(self.graphdef, params).model.layers
            self._layer_graphdefs = [nnx.split(layer)[0] for layer in layers]
        return self._layer_graphdefs

    def layer(self, params, i: int, x, ctx):
        """Decoder layer ``i`` on ``x``; only that layer's params are read (and merged)."""
        return self.layer_like(params, i, params["model"]["layers"][i], x, ctx)

    def uniform_layers(self, params, start: int) -> bool:
        """Whether the layers from ``start`` on share one structure, so that :meth:`scan_layers` can run them
        (every layer of a Llama-family model; not Gemma 3's mix of local and global layers)."""
        graphdefs = self._graphdefs(params)[start:]
        return bool(graphdefs) and all(g == graphdefs[0] for g in graphdefs[1:])

    @staticmethod
    def stack_layers(params, start: int):
        """The params of the layers from ``start`` on, stacked on a new leading axis (a copy)."""
        layers = params["model"]["layers"]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *[layers[i] for i in range(start, len(layers))])

    def layer_like(self, params, i: int, layer_params, x, ctx):
        """A decoder layer of layer ``i``'s structure with ``layer_params`` (one layer's, e.g. a slice of
        :meth:`stack_layers`) on ``x``: the body of a scan over uniform layers."""
        return nnx.merge(self._graphdefs(params)[i], layer_params)(x, *ctx)[0]

    def scan_layers(self, params, start: int, stacked, x, ctx):
        """The layers from ``start`` on applied to ``x`` as one ``lax.scan`` over ``stacked`` (their params as
        :meth:`stack_layers` gives them, patched or not): the same result as :meth:`layer` in a loop, compiled
        once for all of them. Needs :meth:`uniform_layers`."""

        def body(h, layer_params):
            return self.layer_like(params, start, layer_params, h, ctx), None

        return jax.lax.scan(body, x, stacked)[0]

    def hidden(self, params, tokens, attention_mask=None):
        """The last decoder layer's output ``(B, T, hidden)``: :meth:`head` of it gives the logits, in pieces
        when the whole ``(B, T, vocab)`` would not fit (a large vocabulary, see
        :func:`safegene_jax.core.losses.chunked_token_nll`)."""
        return nnx.merge(self.graphdef, params).hidden_states(tokens, attention_mask)

    def head(self, params, x):
        """Final norm and LM head: logits in float32."""
        return nnx.merge(self.graphdef, params).logits(x)


def make_apply(graphdef) -> LayeredApply:
    """``apply(params, tokens, attention_mask=None) -> logits`` for a split model; see :class:`LayeredApply`."""
    return LayeredApply(graphdef)


def make_decode_step(graphdef):
    """``step(params, tokens, attention_mask, cache, positions=None) -> (logits, cache)`` for generation."""

    def step(params, tokens, attention_mask, cache, positions=None):
        return nnx.merge(graphdef, params)(tokens, attention_mask, positions=positions, cache=cache)

    return step

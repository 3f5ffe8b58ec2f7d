"""Batched generation with a KV cache: greedy or temperature/top-p sampling.

Prompts are left-padded to a multiple of ``bucket`` tokens, so every prompt length in a bucket reuses
one compiled program (per batch size and ``max_new_tokens``). The decode loop is a
``lax.while_loop`` that stops when every row has produced an end-of-sequence token.

Example:
    >>> from flax import nnx
    >>> from safegene_jax.models.config import LlamaConfig
    >>> from safegene_jax.models.llama import LlamaForCausalLM
    >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=4, num_key_value_heads=2, head_dim=4)
    >>> out = generate(LlamaForCausalLM(cfg, rngs=nnx.Rngs(0)), [[3, 4, 5], [6]], max_new_tokens=4)
    >>> [len(row) for row in out]
    [4, 4]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from safegene_jax.core.errors import SafeGeneError
from safegene_jax.models.llama import KVCache


def sample_logits(logits, key, temperature: float, top_p: float):
    """One token per row: argmax when ``temperature == 0``, else nucleus sampling."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above each one
        kept = jnp.where(before < top_p, sorted_logits, jnp.inf)
        threshold = jnp.min(kept, axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(
    jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature", "top_p", "eos", "pad", "cache_dtype")
)
def _generate(
    graphdef, params, prefix, tokens, mask, key, *, max_new_tokens, temperature, top_p, eos, pad, cache_dtype
):
    model = nnx.merge(graphdef, params)
    batch, length = tokens.shape
    shared = 0 if prefix is None else prefix.shape[1]
    size = shared + length + max_new_tokens
    if prefix is None:
        cache = KVCache.create(model.config, batch, size, jnp.dtype(cache_dtype))
    else:  # the prompts' common beginning, once, then its keys and values copied to every row
        one = KVCache.create(model.config, 1, size, jnp.dtype(cache_dtype))
        _, one = model(prefix, jnp.ones_like(prefix), cache=one, last_only=True)
        rows = lambda x: jnp.broadcast_to(x, (batch,) + x.shape[1:])  # noqa: E731
        cache = KVCache(tuple(rows(k) for k in one.keys), tuple(rows(v) for v in one.values), rows(one.mask), one.index)
    logits, cache = model(tokens, mask, cache=cache, last_only=True)
    eos_ids = jnp.asarray(eos if eos else (-1,), jnp.int32)
    out = jnp.full((batch, max_new_tokens), pad, jnp.int32)

    def cond(state):
        i, _, _, done, _, _ = state
        return (i < max_new_tokens) & ~jnp.all(done)

    def body(state):
        i, cache, last, done, out, key = state
        key, sub = jax.random.split(key)
        tok = jnp.where(done, pad, sample_logits(last, sub, temperature, top_p))
        out = out.at[:, i].set(tok)
        done = done | jnp.isin(tok, eos_ids)
        logits, cache = nnx.merge(graphdef, params)(tok[:, None], jnp.ones((batch, 1), jnp.int32), cache=cache)
        return i + 1, cache, logits[:, -1], done, out, key

    state = (jnp.int32(0), cache, logits[:, -1], jnp.zeros((batch,), bool), out, key)
    _, _, _, _, out, _ = jax.lax.while_loop(cond, body, state)
    return out


def pad_left(prompts: Sequence[Sequence[int]], pad: int, bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads token lists to a common length rounded up to a multiple of ``bucket``."""
    longest = max(len(p) for p in prompts)
    length = -(-longest // bucket) * bucket
    tokens = np.full((len(prompts), length), pad, np.int32)
    mask = np.zeros((len(prompts), length), np.int32)
    for i, p in enumerate(prompts):
        if len(p):
            tokens[i, length - len(p) :] = p
            mask[i, length - len(p) :] = 1
    return tokens, mask


def common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every prompt shares, leaving each at least one of its own.

    Example:
        >>> common_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]])
        2
    """
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for i in range(n):
        if any(p[i] != first[i] for p in prompts):
            return i
    return max(n, 0)


def generate(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    eos_token_ids: Sequence[int] | None = None,
    pad_token_id: int | None = None,
    seed: int = 0,
    bucket: int = 32,
    params: Any = None,
    cache_dtype: Any = None,
    share_prefix: int = 8,
) -> list[list[int]]:
    """Continues each prompt; returns the new tokens of each row, up to and excluding the first EOS.

    Args:
        model: a :class:`LlamaForCausalLM`, or a ``(graphdef, params)`` pair.
        prompts: token id lists (at least one token each).
        max_new_tokens: generation budget per row.
        temperature: 0 for greedy decoding; otherwise sampling temperature.
        top_p: nucleus sampling mass (with ``temperature > 0``).
        eos_token_ids: stop tokens (default: the model config's).
        pad_token_id: padding id (default: the config's, else 0).
        seed: PRNG seed for sampling.
        bucket: prompt lengths are rounded up to a multiple of this.
        params: params to use instead of the model's own (e.g. patched ones), same structure.
        cache_dtype: KV cache dtype (default: float32).
        share_prefix: when the prompts share at least this many leading tokens (a chat template's system
            prompt), those are run once and their keys and values reused by every row (0: never; also not
            for a sliding-window model whose window the prompts and answers outgrow).
    """
    if isinstance(model, tuple):
        graphdef, own = model
    else:
        graphdef, own = nnx.split(model)
    params = own if params is None else params
    cfg = nnx.merge(graphdef, own).config if isinstance(model, tuple) else model.config
    if not prompts:
        return []
    empty = [i for i, p in enumerate(prompts) if len(p) == 0]
    if empty:
        raise SafeGeneError(f"prompt {empty[0]} is empty; every prompt needs at least one token")
    if max_new_tokens < 1:
        raise SafeGeneError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise SafeGeneError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    bad = [t for p in prompts for t in p if not 0 <= t < cfg.vocab_size]
    if bad:
        raise SafeGeneError(f"token id {bad[0]} is outside the vocabulary (size {cfg.vocab_size})")
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > cfg.max_position_embeddings:
        raise SafeGeneError(
            f"prompt of {longest} tokens + {max_new_tokens} new tokens exceeds the model's "
            f"{cfg.max_position_embeddings} positions"
        )
    eos = tuple(cfg.eos_token_id if eos_token_ids is None else eos_token_ids)
    pad = pad_token_id if pad_token_id is not None else (cfg.pad_token_id if cfg.pad_token_id is not None else 0)
    # the cache's padding sits between the shared part and each row's own: a sliding window counted in slots
    # would then reach less far back than in positions, so share only when the window cannot bind
    window_ok = cfg.sliding_window is None or longest + max_new_tokens <= cfg.sliding_window
    shared = common_prefix(prompts) if share_prefix and len(prompts) > 1 and window_ok else 0
    prefix = None
    if shared >= max(share_prefix, 1):
        prefix = jnp.asarray([list(prompts[0][:shared])], jnp.int32)
        prompts = [p[shared:] for p in prompts]
    tokens, mask = pad_left(prompts, pad, bucket)
    out = _generate(
        graphdef,
        params,
        prefix,
        jnp.asarray(tokens),
        jnp.asarray(mask),
        jax.random.PRNGKey(seed),
        max_new_tokens=max_new_tokens,
        temperature=float(temperature),
        top_p=float(top_p),
        eos=eos,
        pad=int(pad),
        cache_dtype=jnp.dtype(cache_dtype or jnp.float32).name,
    )
    result = []
    for row in np.asarray(out).tolist():
        cut = next((i for i, t in enumerate(row) if t in eos), len(row))
        result.append(row[:cut])
    return result

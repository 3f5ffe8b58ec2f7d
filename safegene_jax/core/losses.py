"""Every log-likelihood, onset and KL helper, once: training, layer scoring and recalibration use them.

A *batch* is a dict of ``(B, T)`` arrays: ``tokens``, ``attention_mask`` and ``loss_mask`` (1 on the tokens
that count, the response; see :func:`safegene_jax.data.batch_examples`). Logits are ``(B, T, vocab)``; the
logits at position ``t`` predict the token at ``t + 1``.

Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.zeros((1, 3, 4))                  # uniform over 4 tokens
    >>> batch = {"tokens": jnp.array([[0, 1, 2]]), "loss_mask": jnp.array([[0, 1, 1]])}
    >>> round(float(mean_loglik(logits, batch)), 4)   # log(1/4)
    -1.3863
    >>> onset(batch, 1)["loss_mask"].tolist()
    [[0, 1, 0]]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def target_logp(logits, tokens, loss_mask):
    """Next-token log-probabilities of ``tokens`` and the float mask of the positions that count, ``(B, T-1)``."""
    logits = logits[:, :-1]
    picked = jnp.take_along_axis(logits, tokens[:, 1:, None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1), loss_mask[:, 1:].astype(jnp.float32)


def token_nll(logits, tokens, loss_mask):
    """Summed next-token NLL over masked positions, and the number of those positions."""
    logp, mask = target_logp(logits, tokens, loss_mask)
    return -jnp.sum(logp * mask), jnp.sum(mask)


def chunked_token_nll(head, hidden, tokens, loss_mask, chunk: int):
    """:func:`token_nll` from the last hidden states ``(B, T, hidden)`` without ever holding the ``(B, T, vocab)``
    logits: ``head(h) -> logits`` runs on ``chunk`` positions at a time in a ``lax.scan``, each piece under
    ``jax.checkpoint`` so the backward pass recomputes its logits instead of keeping them. With a
    262,144-token vocabulary (Gemma 3) the full logits of a ``(8, 512)`` batch are 4 GiB in float32.

    Example:
        >>> import jax.numpy as jnp
        >>> w = jnp.arange(12.0).reshape(3, 4) / 10              # a head: hidden 3 -> vocab 4
        >>> h = jnp.ones((1, 5, 3)); t = jnp.array([[0, 1, 2, 3, 0]]); m = jnp.array([[0, 1, 1, 1, 1]])
        >>> whole = token_nll(h @ w, t, m)
        >>> parts = chunked_token_nll(lambda x: x @ w, h, t, m, chunk=3)
        >>> [round(float(a), 5) for a in whole] == [round(float(a), 5) for a in parts]
        True
    """
    b, t, d = hidden.shape
    n = t - 1
    pad = -n % chunk
    h = jnp.pad(hidden[:, :-1], ((0, 0), (0, pad), (0, 0)))
    targets = jnp.pad(tokens[:, 1:], ((0, 0), (0, pad)))
    mask = jnp.pad(loss_mask[:, 1:].astype(jnp.float32), ((0, 0), (0, pad)))
    pieces = (n + pad) // chunk

    def split(x):  # (B, pieces * chunk, ...) -> (pieces, B, chunk, ...)
        return jnp.swapaxes(x.reshape(b, pieces, chunk, *x.shape[2:]), 0, 1)

    @jax.checkpoint
    def piece_nll(h, targets, mask):
        logits = head(h).astype(jnp.float32)
        picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
        return -jnp.sum((picked - jax.nn.logsumexp(logits, axis=-1)) * mask)

    def body(total, xs):
        return total + piece_nll(*xs), None

    total, _ = jax.lax.scan(body, jnp.float32(0), (split(h), split(targets), split(mask)))
    return total, jnp.sum(mask)


def mean_loglik(logits, batch) -> jax.Array:
    """Mean log-likelihood per ``loss_mask`` token of ``batch['tokens']`` (over the whole batch)."""
    logp, mask = target_logp(logits, batch["tokens"], batch["loss_mask"])
    return weighted_mean(logp, mask)


def row_loglik(logits, batch) -> jax.Array:
    """Per-row mean log-probability of the ``loss_mask`` tokens, ``(B,)``."""
    logp, mask = target_logp(logits, batch["tokens"], batch["loss_mask"])
    return jnp.sum(logp * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def reference_logp(logits) -> jax.Array:
    """Log-probabilities ``(B, T-1, vocab)`` of a reference model's next-token distributions, for :func:`mean_kl`."""
    return jax.nn.log_softmax(logits[:, :-1], axis=-1)


def mean_kl(ref_logp, logits, batch) -> jax.Array:
    """Mean KL(ref || model) over the positions that predict ``loss_mask`` tokens; ``ref_logp`` from
    :func:`reference_logp`."""
    mask = batch["loss_mask"][:, 1:].astype(jnp.float32)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    kl = jnp.sum(jnp.exp(ref_logp) * (ref_logp - logp), axis=-1)
    return weighted_mean(kl, mask)


def onset(batch: dict, k: int) -> dict:
    """``batch`` with ``loss_mask`` kept on the first ``k`` masked (response) tokens of each row only."""
    mask = jnp.asarray(batch["loss_mask"])
    return {**batch, "loss_mask": mask * (jnp.cumsum(mask, axis=1) <= k).astype(mask.dtype)}


def trim(batch: dict, multiple: int = 8) -> dict:
    """``batch`` cut after its last ``loss_mask`` column (rounded up to ``multiple``): in a causal model the
    later positions cannot change the logits that are scored, so they are dead work."""
    mask = np.asarray(batch["loss_mask"])
    used = np.flatnonzero(mask.any(axis=0))
    end = min(mask.shape[1], -(-(int(used[-1]) + 1) // multiple) * multiple) if used.size else mask.shape[1]
    return {k: np.asarray(v)[:, :end] for k, v in batch.items()}


def scored_positions(batch: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, positions and next tokens of every position that predicts a ``loss_mask`` token (host arrays), so
    that a model's head runs on those positions only.

    Example:
        >>> batch = {"tokens": np.array([[5, 6, 7]]), "loss_mask": np.array([[0, 1, 1]])}
        >>> [x.tolist() for x in scored_positions(batch)]
        [[0, 0], [0, 1], [6, 7]]
    """
    tokens, mask = np.asarray(batch["tokens"]), np.asarray(batch["loss_mask"])
    rows, cols = np.nonzero(mask[:, 1:])
    return rows, cols, tokens[rows, cols + 1]


def picked_logp(logits, targets) -> jax.Array:
    """Log-probabilities ``(N,)`` of ``targets`` under logits ``(N, vocab)`` (one scored position per row)."""
    picked = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def row_means(values, rows, num_rows: int, weights=None) -> jax.Array:
    """Per-row means ``(num_rows,)`` of per-position ``values`` that belong to ``rows`` (0 for a row with none);
    ``weights`` (1: a position counts, 0: padding) default to all ones."""
    weights = jnp.ones_like(values) if weights is None else weights
    total = jax.ops.segment_sum(values * weights, rows, num_segments=num_rows)
    count = jax.ops.segment_sum(weights, rows, num_segments=num_rows)
    return total / jnp.maximum(count, 1.0)


def weighted_mean(values, weights=None) -> jax.Array:
    """The mean of ``values`` over the positions whose ``weights`` are 1 (default: every position); 0 when no
    position counts.

    Example:
        >>> import jax.numpy as jnp
        >>> float(weighted_mean(jnp.array([1.0, 3.0, 100.0]), jnp.array([1.0, 1.0, 0.0])))
        2.0
    """
    weights = jnp.ones_like(values) if weights is None else weights
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def positions_kl(ref_logp, logits, weights=None) -> jax.Array:
    """Mean KL(ref || model) over scored positions: ``ref_logp`` and ``logits`` are ``(N, vocab)``; ``weights``
    as in :func:`weighted_mean`."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    kl = jnp.sum(jnp.exp(ref_logp) * (ref_logp - logp), axis=-1)
    return weighted_mean(kl, weights)

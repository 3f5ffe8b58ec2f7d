"""Shared by the interop writers: coefficients as the adapter takes them, and their shortest decimals.

Example:
    >>> from types import SimpleNamespace
    >>> adapter = SimpleNamespace(coeffs=np.array([0.0, 1.0], np.float32), metadata={})
    >>> adapter_coefficients(adapter, [0.3, 0.7], num_layers(adapter)).tolist() == [np.float32(0.3), np.float32(0.7)]
    True
    >>> short_float(np.float32(0.3))
    0.3
"""

from __future__ import annotations

from typing import Any

import numpy as np

from safegene_jax.core.errors import ConfigError
from safegene_jax.core.layers import MODULE_KINDS


def num_layers(adapter: Any) -> int:
    """The layer count of the adapter's model family (from its metadata, else the length of its coefficients)."""
    recorded = (adapter.metadata.get("architecture") or {}).get("num_layers")
    return int(recorded) if recorded else len(np.atleast_1d(adapter.coeffs))


def adapter_coefficients(adapter: Any, coeffs: Any, num_layers: int) -> np.ndarray:
    """Coefficients as float32 ``(L,)`` or ``(L, kinds)``, the way :meth:`SafetyAdapter.apply` takes them."""
    raw = adapter.coeffs if coeffs is None else coeffs
    try:
        c = np.asarray(raw, np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"coeffs: expected numbers, got {type(raw).__name__}") from None
    kinds = len(MODULE_KINDS)
    if c.ndim == 0:
        c = np.full((num_layers,), c)
    elif c.shape not in ((num_layers,), (num_layers, kinds)):
        raise ConfigError(
            f"coeffs has shape {tuple(c.shape)} but the adapter's model has {num_layers} layers: pass a scalar, "
            f"({num_layers},) (one per layer) or ({num_layers}, {kinds}) (one per layer and kind)"
        )
    with np.errstate(over="ignore"):
        c = c.astype(np.float32)
    bad = np.argwhere(~np.isfinite(c))
    if bad.size:
        raise ConfigError(f"coeffs has non-finite values (NaN or inf, in float32), first at index {bad[0].tolist()}")
    return c


def short_float(x: np.float32) -> float:
    """The shortest decimal that reads back as the same float32 (``0.3``, not ``0.30000001192092896``)."""
    return float(np.format_float_positional(np.float32(x), unique=True, trim="0"))

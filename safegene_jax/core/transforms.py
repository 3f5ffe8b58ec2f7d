"""The safety-vector arithmetic: pure functions on parameter pytrees.

* :func:`safety_vector` - ``tau = aligned - degraded``, leaf by leaf, over the transformer layers.
* :func:`apply_vector` - ``params + sum_l c_l * tau_l`` with a scalar, per-layer or per-layer-and-kind
  coefficient and an optional layer mask.
* :func:`restrict_layers` - the vector limited to some layers (what layer selection keeps).

A *vector* is a flat ``dict`` from leaf path (see :mod:`safegene_jax.core.paths`) to array, so it is the
same for a Flax NNX ``State``, a pure dict and a Linen ``{"params": ...}`` tree of one model, and
holds only the leaves it changes. Any pytree with the params' paths is accepted as a vector too.
Math runs in float32 under ``jit``; every output leaf has its input's dtype and sharding.

Example:
    >>> import numpy as np
    >>> from safegene_jax import safety_vector, apply_vector
    >>> aligned = {"embed": np.ones(3, np.float32), "layers": [{"w": np.full(2, 3.0, np.float32)}]}
    >>> degraded = {"embed": np.ones(3, np.float32), "layers": [{"w": np.full(2, 1.0, np.float32)}]}
    >>> tau = safety_vector(aligned, degraded)
    >>> sorted(tau)
    ['layers.0.w']
    >>> apply_vector(degraded, tau, 0.5)["layers"][0]["w"].tolist()
    [2.0, 2.0]
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from safegene_jax.core.errors import LayerMapError, NonFiniteError, TreeMismatchError
from safegene_jax.core.layers import MODULE_KINDS, LeafLayer, layer_mask, layout
from safegene_jax.core.lowrank import LowRank, dense_leaf
from safegene_jax.core.paths import check_same_structure, flatten_with_paths

Vector = dict
"""A safety vector: ``{leaf path: array or LowRank}``."""


def _is_tracer(x: Any) -> bool:
    if isinstance(x, LowRank):
        return _is_tracer(x.left) or _is_tracer(x.right)
    return isinstance(x, jax.core.Tracer)


def _is_float(dtype) -> bool:
    return jnp.issubdtype(dtype, jnp.floating)


def _matcher(pattern: str | Callable[[str], bool] | None) -> Callable[[str], bool] | None:
    if pattern is None or callable(pattern):
        return pattern
    regex = re.compile(pattern)
    return lambda path: regex.search(path) is not None


def _all_finite(x):
    # x * 0 is 0 where x is finite and NaN where it is not; the sum cannot overflow, and XLA reduces
    # it faster than all(isfinite(x)).
    return ~jnp.isnan(jnp.sum(x.astype(jnp.float32) * 0.0))


@jax.jit
def _finite_flags(leaves):
    flags = []
    for leaf in leaves:
        parts = (leaf.left, leaf.right) if isinstance(leaf, LowRank) else (leaf,)
        flags.append(jnp.all(jnp.stack([_all_finite(p) for p in parts])))
    return jnp.stack(flags)


def assert_finite(vector: Mapping[str, Any], what: str = "vector") -> None:
    """Raises :class:`NonFiniteError` naming the leaves of ``vector`` that hold NaN or infinity.

    Traced leaves (inside ``jit``) cannot be inspected and are skipped.
    """
    items = [(p, v) for p, v in vector.items() if not _is_tracer(v)]
    if not items:
        return
    with jax.ensure_compile_time_eval():  # concrete leaves are checked even inside an outer jit
        flags = _finite_flags([v for _, v in items])
    if _is_tracer(flags):
        return
    flags = np.asarray(flags)
    bad = [p for (p, _), ok in zip(items, flags) if not ok]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NonFiniteError(
            f"{what} has non-finite values (NaN or inf) in {', '.join(map(repr, bad[:3]))}{more}; "
            "pass check_finite=False to allow them"
        )


def as_vector(vector: Any) -> Vector:
    """A flat ``{path: leaf}`` dict from a flat dict or from any pytree of arrays.

    Example:
        >>> import numpy as np
        >>> sorted(as_vector({"layers": [{"w": np.zeros(2)}]}))
        ['layers.0.w']
    """
    if isinstance(vector, Mapping) and all(
        isinstance(k, str) and isinstance(v, (jax.Array, np.ndarray, LowRank)) for k, v in vector.items()
    ):
        return dict(vector)
    paths, leaves, _ = flatten_with_paths(vector, is_leaf=lambda x: isinstance(x, LowRank))
    return dict(zip(paths, leaves))


@functools.partial(jax.jit, static_argnames=("dtypes",))
def _extract(aligned, degraded, dtypes):
    return [(a.astype(jnp.float32) - d.astype(jnp.float32)).astype(dt) for a, d, dt in zip(aligned, degraded, dtypes)]


def safety_vector(
    aligned: Any,
    degraded: Any,
    *,
    layer_map: Any = None,
    layers_only: bool = True,
    include: str | Callable[[str], bool] | None = None,
    exclude: str | Callable[[str], bool] | None = None,
    dtype: Any = None,
    check_finite: bool = True,
) -> Vector:
    """``aligned - degraded`` leaf by leaf: the safety vector.

    Args:
        aligned: params of the safety-aligned model (NNX ``State``, dict or Linen tree).
        degraded: params of the degraded copy (or the pre-alignment base), same structure.
        layer_map: how leaves map to layers (see :mod:`safegene_jax.core.layers`); default ``'auto'``.
        layers_only: keep only leaves inside transformer layers (drops embeddings, final norm, LM head).
        include: regex (or ``path -> bool``); if given, only matching paths are kept.
        exclude: regex (or ``path -> bool``); matching paths are dropped.
        dtype: dtype of the vector; default each aligned leaf's dtype.
        check_finite: raise :class:`NonFiniteError` if the vector holds NaN or inf.

    Returns:
        A flat ``{path: delta}`` dict over the selected floating-point leaves.

    Raises:
        TreeMismatchError: structures, shapes or dtypes differ (the first differing path is named).
        LayerMapError: nothing was selected.
        NonFiniteError: the difference holds NaN or inf.
    """
    paths, a_leaves, d_leaves, _ = check_same_structure(aligned, degraded, "aligned", "degraded")
    for path, a, d in zip(paths, a_leaves, d_leaves):
        if tuple(a.shape) != tuple(d.shape):
            raise TreeMismatchError(
                f"shape mismatch at {path!r}: aligned {tuple(a.shape)} vs degraded {tuple(d.shape)}"
            )
        if a.dtype != d.dtype:
            raise TreeMismatchError(f"dtype mismatch at {path!r}: aligned {a.dtype} vs degraded {d.dtype}")
    placed = layout(paths, [a.shape for a in a_leaves], layer_map).leaves
    keep_in, keep_out = _matcher(include), _matcher(exclude)
    chosen = [
        i
        for i, (path, a, place) in enumerate(zip(paths, a_leaves, placed))
        if _is_float(a.dtype)
        and (not layers_only or place.layer is not None or place.stacked)
        and (keep_in is None or keep_in(path))
        and (keep_out is None or not keep_out(path))
    ]
    if not chosen:
        in_layers = any(place.layer is not None or place.stacked for place in placed)
        raise LayerMapError(
            "no leaf selected for the safety vector: "
            + (
                f"the layer map placed none of the {len(paths)} leaves (e.g. {paths[0]!r}) in a transformer layer; "
                "pass layer_map=..., or layers_only=False"
                if layers_only and paths and not in_layers
                else f"include={include!r} and exclude={exclude!r} leave no floating-point leaf; check include/exclude"
            )
        )
    dtypes = tuple(jnp.dtype(dtype or a_leaves[i].dtype).name for i in chosen)
    deltas = _extract([a_leaves[i] for i in chosen], [d_leaves[i] for i in chosen], dtypes)
    vector = {paths[i]: delta for i, delta in zip(chosen, deltas)}
    if check_finite:
        assert_finite(vector, "safety vector")
    return vector


def _apply_impl(params, vector, coeffs, outside, plan: tuple[LeafLayer, ...]):
    out = []
    for p, v, place in zip(params, vector, plan):
        v = dense_leaf(v).astype(jnp.float32)
        if place.stacked:
            c = coeffs if coeffs.ndim == 1 else coeffs[:, place.kind]
            c = c.reshape((-1,) + (1,) * (p.ndim - 1))
        elif place.layer is None:
            c = outside
        else:
            c = coeffs[place.layer] if coeffs.ndim == 1 else coeffs[place.layer, place.kind]
        out.append((p.astype(jnp.float32) + c * v).astype(p.dtype))
    return out


_apply_jit = jax.jit(_apply_impl, static_argnames=("plan",))
_apply_jit_donated = jax.jit(_apply_impl, static_argnames=("plan",), donate_argnums=(0,))


def _coefficients(coeffs, mask, num_layers: int):
    """Validates and broadcasts coefficients to ``(L,)`` or ``(L, K)`` float32, times the mask."""
    c = jnp.asarray(coeffs, jnp.float32)
    kinds = len(MODULE_KINDS)
    if c.ndim == 0:
        per_layer = jnp.broadcast_to(c, (num_layers,))
    elif c.ndim == 1 and c.shape[0] == num_layers:
        per_layer = c
    elif c.ndim == 2 and c.shape == (num_layers, kinds):
        per_layer = c
    else:
        raise LayerMapError(
            f"coeffs has shape {tuple(c.shape)} but the model has {num_layers} layers: pass a scalar, "
            f"shape ({num_layers},) (one per layer) or ({num_layers}, {kinds}) (one per layer and kind {MODULE_KINDS})"
        )
    if mask is not None:
        m = jnp.asarray(mask, jnp.float32)
        if m.shape != (num_layers,):
            raise LayerMapError(f"mask has shape {tuple(m.shape)}; expected ({num_layers},), one entry per layer")
        per_layer = per_layer * (m if per_layer.ndim == 1 else m[:, None])
    return c, per_layer


def apply_vector(
    params: Any,
    vector: Any,
    coeffs: Any = 1.0,
    *,
    layer_map: Any = None,
    mask: Any = None,
    outside_coeff: float | None = None,
    donate: bool = False,
    check_finite: bool = True,
) -> Any:
    """``params + sum_l coeffs_l * mask_l * vector_l``, returned with the params' structure and dtypes.

    Args:
        params: the model to patch (NNX ``State``, dict or Linen tree); not modified unless ``donate``.
        vector: a flat vector (see :func:`safety_vector`), possibly with :class:`LowRank` leaves, or a
            pytree with the same paths as ``params`` (a subset is fine).
        coeffs: a scalar; shape ``(L,)``, one per layer; or ``(L, len(MODULE_KINDS))``, one per layer and
            module kind. ``L`` is the number of layers of ``params``. May be traced (differentiable).
        layer_map: how leaves map to layers; default ``'auto'``.
        mask: optional ``(L,)`` 0/1 (or bool) mask multiplied into the coefficients.
        outside_coeff: coefficient for vector leaves outside the layers; defaults to ``coeffs`` when it
            is a scalar (required otherwise, if there are such leaves).
        donate: donate the patched params' buffers, so no extra model copy is made. The input arrays
            are invalid afterwards.
        check_finite: raise :class:`NonFiniteError` if the vector holds NaN or inf (concrete values only).

    Raises:
        TreeMismatchError: a vector path is not in ``params``, or shapes/dtypes do not fit.
        LayerMapError: ``coeffs`` or ``mask`` do not match the number of layers.
        NonFiniteError: the vector or the coefficients hold NaN or inf.
    """
    paths, leaves, treedef = flatten_with_paths(params)
    vec = as_vector(vector)
    index = {p: i for i, p in enumerate(paths)}
    missing = [p for p in vec if p not in index]
    if missing:
        example = f"params paths look like {paths[0]!r}" if paths else "params has no leaves"
        raise TreeMismatchError(f"vector has {len(missing)} path(s) that params lacks, first {missing[0]!r}; {example}")
    for path, v in vec.items():
        p = leaves[index[path]]
        if tuple(v.shape) != tuple(p.shape):
            raise TreeMismatchError(f"shape mismatch at {path!r}: params {tuple(p.shape)} vs vector {tuple(v.shape)}")
        if not _is_float(p.dtype) or not _is_float(v.dtype):
            raise TreeMismatchError(
                f"dtype mismatch at {path!r}: params {p.dtype} and vector {v.dtype} must both be floating point"
            )
    lay = layout(paths, [leaf.shape for leaf in leaves], layer_map)
    raw, per_layer = _coefficients(coeffs, mask, lay.num_layers)
    touched = [index[p] for p in vec]
    plan = tuple(lay.leaves[i] for i in touched)
    outside_needed = any(place.layer is None and not place.stacked for place in plan)
    if outside_coeff is None:
        if outside_needed and raw.ndim != 0:
            first = next(p for p, place in zip(vec, plan) if place.layer is None and not place.stacked)
            raise LayerMapError(
                f"vector leaf {first!r} is outside the transformer layers, so per-layer coeffs cannot scale it; "
                "pass outside_coeff=..."
            )
        outside = raw if raw.ndim == 0 else jnp.float32(0.0)
    else:
        outside = jnp.asarray(outside_coeff, jnp.float32)
    if check_finite:
        assert_finite(vec)
        for name, value in (("coeffs", coeffs), ("mask", mask), ("outside_coeff", outside_coeff)):
            if value is not None and not _is_tracer(value) and not np.all(np.isfinite(np.asarray(value, np.float32))):
                raise NonFiniteError(f"{name} has non-finite values (NaN or inf)")
    p_in = [leaves[i] for i in touched]
    v_in = []
    for p, v in zip(p_in, vec.values()):
        if (
            not _is_tracer(v)
            and isinstance(v, jax.Array)
            and isinstance(p, jax.Array)
            and not _is_tracer(p)
            and v.sharding != p.sharding
        ):
            v = jax.device_put(v, p.sharding)
        v_in.append(v)
    fn = _apply_jit_donated if donate else _apply_jit
    patched = fn(p_in, v_in, per_layer, outside, plan=plan)
    new_leaves = list(leaves)
    for i, leaf in zip(touched, patched):
        new_leaves[i] = leaf
    return jax.tree_util.tree_unflatten(treedef, new_leaves)


def restrict_layers(
    vector: Any, layers: Sequence[int], *, num_layers: int | None = None, layer_map: Any = None
) -> Vector:
    """The vector limited to ``layers``: other layers' leaves dropped, stacked leaves zeroed there.

    Leaves outside the transformer layers are dropped too.

    Example:
        >>> import numpy as np
        >>> v = {"layers.0.w": np.ones(2), "layers.1.w": np.ones(2), "embed": np.ones(2)}
        >>> sorted(restrict_layers(v, [1]))
        ['layers.1.w']
    """
    vec = as_vector(vector)
    paths = list(vec)
    lay = layout(paths, [v.shape for v in vec.values()], layer_map)
    total = num_layers if num_layers is not None else lay.num_layers
    mask = layer_mask(layers, total)
    keep = set(int(layer) for layer in layers)
    out: Vector = {}
    for path, place in zip(paths, lay.leaves):
        leaf = vec[path]
        if place.stacked:
            dense = dense_leaf(leaf)
            out[path] = (dense * jnp.asarray(mask, dense.dtype).reshape((-1,) + (1,) * (dense.ndim - 1))).astype(
                dense.dtype
            )
        elif place.layer in keep:
            out[path] = leaf
    return out


def global_norm(vector: Any) -> jax.Array:
    """L2 norm of a whole vector, in float32."""
    vec = as_vector(vector)
    return jnp.sqrt(sum(jnp.sum(jnp.square(dense_leaf(v).astype(jnp.float32))) for v in vec.values()))

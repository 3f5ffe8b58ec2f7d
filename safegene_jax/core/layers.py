"""Which leaf belongs to which transformer layer, and to which module kind.

A :class:`LayerMap` turns a leaf path (see :mod:`safegene_jax.core.paths`) into one of:

* an ``int``: the leaf belongs to that layer (per-index layouts: ``layers.3.``, ``layers_3``,
  ``model.layers.3.``, NNX ``('layers', 3, ...)``);
* :data:`STACKED`: the leaf holds every layer, stacked on axis 0 (``nn.scan`` / ``nnx.scan`` layouts);
* ``None``: the leaf is outside the transformer layers (embeddings, final norm, LM head).

Presets: :meth:`LayerMap.auto` (the default: per-index, else stacked under a ``layers`` key),
:meth:`LayerMap.per_index`, :meth:`LayerMap.stacked`; or wrap your own function.

Example:
    >>> from safegene_jax.core.layers import LayerMap
    >>> lm = LayerMap.auto()
    >>> lm.layer_of("model.layers.3.self_attn.q_proj.weight"), lm.kind_of("model.layers.3.mlp.up_proj.weight")
    (3, 'mlp')
    >>> LayerMap.stacked().layer_of("params.layers.mlp.kernel")
    'stacked'
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from safegene_jax.core.errors import LayerMapError

STACKED = "stacked"
"""Returned by a layer map for a leaf that stacks all layers on axis 0."""

MODULE_KINDS = ("attn", "mlp", "other")
"""Module kinds for per-layer-and-kind coefficients; the column order of a ``(layers, kinds)`` array."""

_ATTN_KEYS = frozenset(
    "attn attention self_attn self_attention cross_attn q_proj k_proj v_proj o_proj qkv_proj qkv "
    "wq wk wv wo query key c_attn".split()
)
_MLP_KEYS = frozenset(
    "mlp ffn feed_forward feedforward ff gate_proj up_proj down_proj gate_up_proj w1 w2 w3 fc1 fc2 "
    "c_fc experts up down gate".split()
)

DEFAULT_INDEX_NAMES = ("layers", "layer", "blocks", "block", "h")
DEFAULT_STACK_NAMES = ("layers", "blocks")

LayerId = int | str | None


def module_kind(path: str) -> str:
    """``'attn'``, ``'mlp'`` or ``'other'`` (norms and the rest) for a leaf path; first match wins."""
    for part in path.split("."):
        if part in _ATTN_KEYS:
            return "attn"
        if part in _MLP_KEYS:
            return "mlp"
    return "other"


def _index_fn(names: Sequence[str]) -> Callable[[str], LayerId]:
    alternatives = "|".join(map(re.escape, names))
    pattern = re.compile(rf"(?:^|\.)(?:{alternatives})[._](\d+)(?:\.|$)")

    def layer_of(path: str) -> LayerId:
        m = pattern.search(path)
        return int(m.group(1)) if m else None

    return layer_of


def _stack_fn(names: Sequence[str]) -> Callable[[str], LayerId]:
    names = frozenset(names)

    def layer_of(path: str) -> LayerId:
        parts = path.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in names and not parts[i + 1].isdigit():
                return STACKED
        return None

    return layer_of


@dataclasses.dataclass(frozen=True)
class LayerMap:
    """Maps a leaf path to its layer (an int, :data:`STACKED` or ``None``) and its module kind.

    Attributes:
        fn: ``path -> int | STACKED | None``.
        kind_fn: ``path -> one of MODULE_KINDS``.
    """

    fn: Callable[[str], LayerId]
    kind_fn: Callable[[str], str] = module_kind

    def layer_of(self, path: str) -> LayerId:
        layer = self.fn(path)
        if not (layer is None or layer == STACKED or (isinstance(layer, int) and layer >= 0)):
            raise LayerMapError(f"layer map returned {layer!r} for {path!r}; expected an int >= 0, STACKED or None")
        return layer

    def kind_of(self, path: str) -> str:
        kind = self.kind_fn(path)
        if kind not in MODULE_KINDS:
            raise LayerMapError(f"kind function returned {kind!r} for {path!r}; expected one of {MODULE_KINDS}")
        return kind

    @classmethod
    def per_index(cls, names: Sequence[str] = DEFAULT_INDEX_NAMES) -> LayerMap:
        """Layer index written in the path after one of ``names`` (``layers.3``, ``layers_3``)."""
        return cls(_index_fn(names))

    @classmethod
    def stacked(cls, names: Sequence[str] = DEFAULT_STACK_NAMES) -> LayerMap:
        """Every leaf under a key in ``names`` (not followed by an index) stacks the layers on axis 0."""
        return cls(_stack_fn(names))

    @classmethod
    def auto(cls) -> LayerMap:
        """Per-index when the path has an index, else stacked under ``layers``/``blocks``."""
        index, stack = _index_fn(DEFAULT_INDEX_NAMES), _stack_fn(DEFAULT_STACK_NAMES)
        return cls(lambda path: (lambda i: stack(path) if i is None else i)(index(path)))


def as_layer_map(spec: Any = None) -> LayerMap:
    """Accepts ``None``/``'auto'``, ``'per_index'``, ``'stacked'``, a :class:`LayerMap` or a callable."""
    if spec is None or spec == "auto":
        return LayerMap.auto()
    if isinstance(spec, LayerMap):
        return spec
    if spec == "per_index":
        return LayerMap.per_index()
    if spec == "stacked":
        return LayerMap.stacked()
    if callable(spec):
        return LayerMap(spec)
    raise LayerMapError(
        f"unknown layer_map {spec!r}; use 'auto', 'per_index', 'stacked', a LayerMap or a callable path -> layer"
    )


class LeafLayer(NamedTuple):
    """Static placement of one leaf: its layer (``None`` if outside or stacked), stacking, kind index."""

    layer: int | None
    stacked: bool
    kind: int


class Layout(NamedTuple):
    """Placement of each leaf of a tree plus the number of layers the tree has."""

    leaves: tuple[LeafLayer, ...]
    num_layers: int


def layout(paths: Sequence[str], shapes: Sequence[Sequence[int]], layer_map: Any = None) -> Layout:
    """Places every leaf; checks that stacked leaves agree on the number of layers.

    Example:
        >>> layout(["layers.0.w", "layers.1.w", "embed"], [(2,), (2,), (4, 2)]).num_layers
        2
    """
    lm = as_layer_map(layer_map)
    placed: list[LeafLayer] = []
    num_layers, stack_size, stack_path = 0, None, None
    for path, shape in zip(paths, shapes):
        layer, kind = lm.layer_of(path), MODULE_KINDS.index(lm.kind_of(path))
        if layer == STACKED:
            if len(shape) == 0:
                raise LayerMapError(f"leaf {path!r} is mapped as stacked layers but is a scalar")
            if stack_size is not None and shape[0] != stack_size:
                raise LayerMapError(
                    f"stacked leaves disagree on the layer count: {stack_path!r} has {stack_size} on axis 0, "
                    f"{path!r} has {shape[0]}"
                )
            stack_size, stack_path = shape[0], path
            placed.append(LeafLayer(None, True, kind))
        else:
            if layer is not None:
                num_layers = max(num_layers, layer + 1)
            placed.append(LeafLayer(layer, False, kind))
    if stack_size is not None:
        if num_layers and num_layers != stack_size:
            raise LayerMapError(
                f"stacked leaves hold {stack_size} layers but indexed leaves reach layer {num_layers - 1}"
            )
        num_layers = stack_size
    return Layout(tuple(placed), num_layers)


def layer_mask(layers: Sequence[int], num_layers: int):
    """A float32 0/1 mask of shape ``(num_layers,)`` with ones at ``layers``.

    Example:
        >>> layer_mask([0, 2], 4).tolist()
        [1.0, 0.0, 1.0, 0.0]
    """
    import numpy as np

    mask = np.zeros((num_layers,), np.float32)
    for layer in layers:
        if not 0 <= int(layer) < num_layers:
            raise LayerMapError(f"layer {layer} is out of range for a model with {num_layers} layers")
        mask[int(layer)] = 1.0
    return mask

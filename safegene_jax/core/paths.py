"""Leaf paths: one readable string per pytree leaf, the same for every container type.

A path is the dotted join of a leaf's keys: ``layers.3.mlp.down_proj.kernel``. Flax NNX ``State``
leaves end in an attribute ``value``; it is dropped, so an NNX ``State``, ``nnx.to_pure_dict`` of it
and a plain nested dict of the same model all give the same paths. Linen trees keep their
``params.`` prefix.

Example:
    >>> import numpy as np
    >>> from safegene_jax.core.paths import flatten_with_paths
    >>> paths, leaves, _ = flatten_with_paths({"layers": [{"w": np.ones(2)}]})
    >>> paths
    ['layers.0.w']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from safegene_jax.core.errors import TreeMismatchError

_VARIABLE_ATTRS = ("value", "raw_value")


def key_to_str(key: Any) -> str:
    """One path component as text (dict key, sequence index, attribute or flattened index)."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_to_str(path: Sequence[Any]) -> str:
    """A key path from ``jax.tree_util`` as a dotted string, without NNX's trailing ``value``."""
    keys = list(path)
    while keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name in _VARIABLE_ATTRS:
        keys.pop()
    return ".".join(key_to_str(k) for k in keys)


def flatten_with_paths(tree: Any, is_leaf=None) -> tuple[list[str], list[Any], Any]:
    """Flattens ``tree`` into (paths, leaves, treedef); paths are unique dotted strings.

    Raises:
        TreeMismatchError: two different leaves would get the same path string.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    paths = [path_to_str(p) for p, _ in flat]
    if len(set(paths)) != len(paths):
        seen: set[str] = set()
        dup = next(p for p in paths if p in seen or seen.add(p))
        raise TreeMismatchError(f"two leaves share the path {dup!r}; rename one of them")
    return paths, [leaf for _, leaf in flat], treedef


def first_difference(paths_a: Sequence[str], paths_b: Sequence[str], name_a: str, name_b: str) -> str:
    """Describes the first place where two lists of leaf paths differ (empty if they are equal)."""
    for i, (pa, pb) in enumerate(zip(paths_a, paths_b)):
        if pa != pb:
            in_b, in_a = set(paths_b), set(paths_a)
            if pa not in in_b:
                return f"{name_a} has {pa!r}, which {name_b} lacks (leaf {i})"
            if pb not in in_a:
                return f"{name_b} has {pb!r}, which {name_a} lacks (leaf {i})"
            return f"leaf {i} is {pa!r} in {name_a} but {pb!r} in {name_b}"
    if len(paths_a) > len(paths_b):
        return f"{name_a} has {paths_a[len(paths_b)]!r}, which {name_b} lacks"
    if len(paths_b) > len(paths_a):
        return f"{name_b} has {paths_b[len(paths_a)]!r}, which {name_a} lacks"
    return ""


def check_same_structure(tree_a: Any, tree_b: Any, name_a: str = "a", name_b: str = "b"):
    """Flattens both trees and raises if their structures differ, naming the first differing path.

    Returns:
        ``(paths, leaves_a, leaves_b, treedef_a)``.
    """
    paths_a, leaves_a, treedef_a = flatten_with_paths(tree_a)
    paths_b, leaves_b, treedef_b = flatten_with_paths(tree_b)
    diff = first_difference(paths_a, paths_b, name_a, name_b)
    if diff:
        raise TreeMismatchError(f"{name_a} and {name_b} have different tree structures: {diff}")
    if treedef_a.num_leaves != treedef_b.num_leaves:  # pragma: no cover - implied by equal paths
        raise TreeMismatchError(f"{name_a} and {name_b} have different tree structures")
    return paths_a, leaves_a, leaves_b, treedef_a

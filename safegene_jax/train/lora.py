"""LoRA on parameter pytrees: low-rank factors beside chosen kernels, merged into the weights on demand.

For each kernel ``W (in, out)`` whose path matches ``targets``, LoRA trains ``A (in, r)`` and
``B (r, out)`` with ``W' = W + (alpha / r) * A @ B``; ``B`` starts at zero, so training starts from the
base model. The model code is untouched: the loss merges the factors into the params it applies.

Example:
    >>> import jax, jax.numpy as jnp
    >>> base = {"layers": [{"q_proj": {"kernel": jnp.ones((4, 6))}, "norm": {"weight": jnp.ones(4)}}]}
    >>> cfg = LoraConfig(rank=2, alpha=4.0, targets=r"q_proj\\.kernel$")
    >>> lora = init_lora(base, cfg, jax.random.PRNGKey(0))
    >>> sorted(lora), lora["layers.0.q_proj.kernel"]["a"].shape
    (['layers.0.q_proj.kernel'], (4, 2))
    >>> bool(jnp.all(merge_lora(base, lora, cfg)["layers"][0]["q_proj"]["kernel"] == 1.0))  # B = 0
    True
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp

from safegene_jax.core.errors import SafeGeneError, require
from safegene_jax.core.paths import flatten_with_paths

DEFAULT_TARGETS = r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.kernel$"


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """Rank, scaling numerator and the regex of kernel paths that get LoRA factors."""

    rank: int = 8
    alpha: float = 16.0
    targets: str = DEFAULT_TARGETS

    def __post_init__(self):
        require(self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def init_lora(params: Any, cfg: LoraConfig, key: jax.Array) -> dict[str, dict[str, jax.Array]]:
    """``{path: {"a": (in, r), "b": (r, out)}}`` for every matching 2-D kernel; ``b`` is zero."""
    paths, leaves, _ = flatten_with_paths(params)
    pattern = re.compile(cfg.targets)
    out = {}
    for path, leaf in zip(paths, leaves):
        if pattern.search(path):
            if leaf.ndim != 2:
                raise SafeGeneError(f"LoRA target {path!r} has shape {tuple(leaf.shape)}; only 2-D kernels")
            key, sub = jax.random.split(key)
            a = jax.random.normal(sub, (leaf.shape[0], cfg.rank), jnp.float32) / jnp.sqrt(leaf.shape[0])
            out[path] = {"a": a, "b": jnp.zeros((cfg.rank, leaf.shape[1]), jnp.float32)}
    if not out:
        raise SafeGeneError(f"no kernel matches the LoRA targets {cfg.targets!r} (paths look like {paths[0]!r})")
    return out


def merge_lora(params: Any, lora: dict, cfg: LoraConfig) -> Any:
    """``params`` with ``(alpha / r) * A @ B`` added to each LoRA-targeted kernel (same dtypes)."""
    paths, leaves, treedef = flatten_with_paths(params)
    new = []
    for path, leaf in zip(paths, leaves):
        if path in lora:
            delta = cfg.scale * (lora[path]["a"] @ lora[path]["b"])
            leaf = (leaf.astype(jnp.float32) + delta).astype(leaf.dtype)
        new.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, new)

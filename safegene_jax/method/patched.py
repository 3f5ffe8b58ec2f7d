"""The logits of a model patched with a vector, at the positions a loss scores: the forward that recalibration
and first-order layer scores differentiate with respect to the per-layer coefficients.

With a layer-at-a-time ``apply`` (:class:`~safegene_jax.models.llama.LayeredApply`) the layers below the lowest
patched layer run once per batch (:meth:`PatchedLogits.prepare`), the layers from it on run in every call, as
one ``lax.scan`` over their stacked params when they share one structure (the program compiles one layer
instead of all of them), and the LM head runs only where a loss token is predicted. Any other ``apply`` runs
whole, on the params patched by :func:`~safegene_jax.core.transforms.apply_vector`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from safegene_jax.core.errors import TreeMismatchError
from safegene_jax.core.layers import MODULE_KINDS, as_layer_map
from safegene_jax.core.losses import picked_logp, scored_positions
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.core.transforms import apply_vector


def first_patched_layer(apply: Any, vec: dict, layers: Sequence[int], layer_map: Any = None) -> int | None:
    """The lowest selected layer, when ``apply`` runs one layer at a time and every vector leaf is a leaf of
    the decoder layer the layer map gives it (then the layers below it can be run once); else ``None``."""
    if not all(callable(getattr(apply, n, None)) for n in ("embed", "layer", "head", "num_layers")):
        return None
    lm = as_layer_map(layer_map)
    for path in vec:
        layer = lm.layer_of(path)
        if not isinstance(layer, int) or not path.startswith(f"model.layers.{layer}."):
            return None
    return min(layers)


class PatchedLogits:
    """Logits at the scored positions of a batch: with a layer-at-a-time ``apply``, the hidden states below the
    first patched layer are computed once per batch and only the layers from it on run in every step, and
    the LM head runs only where a loss token is predicted. When those layers share one structure (a
    Llama-family model) they run as one ``lax.scan`` over their stacked params, patched in the stack: the
    step compiles one layer instead of every layer, at the cost of one copy of those layers' params.

    ``model`` and ``vector`` are the forms :meth:`patch` and :meth:`logits` take (the params and the vector,
    or with the stacked layers too); the objective receives them as the jitted step's arguments."""

    def __init__(
        self, apply: Any, params: Any, vec: dict, layers: Sequence[int], layer_map: Any = None, scan: bool = True
    ):
        first = first_patched_layer(apply, vec, layers, layer_map)
        self.apply, self.first, self.layer_map = apply, first, layer_map
        self.scan = bool(
            scan and first is not None and hasattr(apply, "scan_layers") and apply.uniform_layers(params, first)
        )
        if first is not None:
            num = apply.num_layers(params)

            @jax.jit
            def below(params, tokens, mask):
                x, ctx = apply.embed(params, tokens, mask)
                for i in range(first):
                    x = apply.layer(params, i, x, ctx)
                return x, ctx

            self._below, self._num = below, num
        self._params = params
        if self.scan:
            self.model = {"params": params, "stack": apply.stack_layers(params, first)}
            self.vector, self._places = self._stacked_vector(vec, set(layers))
        else:
            self.model, self.vector = params, vec

    def _stacked_vector(self, vec: dict, selected: set[int]) -> tuple[dict, dict]:
        """The selected layers' vector by path inside a layer: their parts stacked (dense), and (static) the
        positions of those layers in the params' stack and the module kind of the path (other layers' parts
        would be multiplied by 0)."""
        lm = as_layer_map(self.layer_map)
        paths, leaves, _ = flatten_with_paths(self.model["stack"])
        shapes = {p: tuple(x.shape[1:]) for p, x in zip(paths, leaves)}
        by_sub: dict[str, list] = {}
        for path, leaf in vec.items():
            layer = lm.layer_of(path)
            if layer not in selected:
                continue
            sub = path[len(f"model.layers.{layer}.") :]
            if sub not in shapes:  # what apply_vector checks on the unrolled path
                raise TreeMismatchError(f"vector has a path that params lacks, {path!r} (layer {layer} has no {sub!r})")
            if tuple(leaf.shape) != shapes[sub]:
                raise TreeMismatchError(
                    f"shape mismatch at {path!r}: params {shapes[sub]} vs vector {tuple(leaf.shape)}"
                )
            dense = leaf.dense() if hasattr(leaf, "dense") else jnp.asarray(leaf)
            by_sub.setdefault(sub, []).append((layer - self.first, dense, MODULE_KINDS.index(lm.kind_of(path))))
        stacked, places = {}, {}
        for sub, parts in by_sub.items():
            parts.sort(key=lambda t: t[0])
            stacked[sub] = jnp.stack([d for _, d, _ in parts])
            places[sub] = (np.asarray([i for i, _, _ in parts]), parts[0][2])
        return stacked, places

    def patch(self, model: Any, vector: Any, coeffs: jax.Array, mask: jax.Array) -> Any:
        """``model`` patched with ``vector`` times the per-layer ``coeffs`` (``(L,)`` or ``(L, kinds)``)."""
        if not self.scan:
            return apply_vector(model, vector, coeffs, mask=mask, layer_map=self.layer_map, check_finite=False)
        coeffs = coeffs * (mask[:, None] if coeffs.ndim == 2 else mask)
        paths, leaves, treedef = flatten_with_paths(model["stack"])
        out = []
        for path, leaf in zip(paths, leaves):
            if path not in vector:
                out.append(leaf)
                continue
            pos, kind = self._places[path]
            c = coeffs[self.first + pos]
            c = c[:, kind] if c.ndim == 2 else c
            v = vector[path]
            add = c.reshape((-1,) + (1,) * (v.ndim - 1)) * v.astype(jnp.float32)
            out.append(leaf.astype(jnp.float32).at[pos].add(add).astype(leaf.dtype))
        return {"params": model["params"], "stack": jax.tree.unflatten(treedef, out)}

    def prepare(self, batch: dict, multiple: int = 1) -> dict:
        """``batch`` ready for :meth:`logits`: its scored positions (``rows``, ``cols``, ``targets``) padded
        to a multiple of ``multiple`` with ``weights`` 1 on the real ones and 0 on the padding (so that batches
        of different lengths can share one compiled program), and with a layer-at-a-time ``apply`` the hidden
        states entering the first patched layer instead of the tokens."""
        rows, cols, targets = scored_positions(batch)
        n = len(rows)
        pad = -n % max(int(multiple), 1)
        zeros = np.zeros(pad, rows.dtype)
        out = {
            "rows": jnp.asarray(np.concatenate([rows, zeros])),
            "cols": jnp.asarray(np.concatenate([cols, zeros])),
            "targets": jnp.asarray(np.concatenate([targets, np.zeros(pad, targets.dtype)])),
            "weights": jnp.asarray(np.concatenate([np.ones(n), np.zeros(pad)]), jnp.float32),
        }
        if self.first is None:
            return {
                **out,
                "tokens": jnp.asarray(batch["tokens"]),
                "attention_mask": jnp.asarray(batch["attention_mask"]),
            }
        x, ctx = self._below(self._params, jnp.asarray(batch["tokens"]), jnp.asarray(batch["attention_mask"]))
        return {**out, "hidden": x, "ctx": ctx}

    def logits(self, model: Any, b: dict) -> jax.Array:
        if self.first is None:
            return self.apply(model, b["tokens"], b["attention_mask"])[b["rows"], b["cols"]]
        x = b["hidden"]
        if self.scan:
            params = model["params"]
            x = self.apply.scan_layers(params, self.first, model["stack"], x, b["ctx"])
        else:
            params = model
            for i in range(self.first, self._num):
                x = self.apply.layer(params, i, x, b["ctx"])
        return self.apply.head(params, x[b["rows"], b["cols"]])

    def logp(self, model: Any, b: dict) -> jax.Array:
        return picked_logp(self.logits(model, b), b["targets"])

    @staticmethod
    def row_count(b: dict) -> int:
        return (b["tokens"] if "tokens" in b else b["hidden"]).shape[0]

"""A mergekit recipe that rebuilds a safe model from its three source models.

``adapter.apply(task, coeffs)`` is ``task + sum_l c_l * (aligned_l - degraded_l)``. mergekit's
``task_arithmetic`` computes ``base + sum_m w_m * (model_m - base)``; with the task model as the base, the
aligned model at weight ``c_l`` and the degraded model at weight ``-c_l`` on the adapter's tensors, it is
``task + c_l * (aligned - task) - c_l * (degraded - task) = task + c_l * (aligned - degraded)``. Every other
tensor gets weight 0 and stays the task model's, bit for bit; mergekit also takes the config, tokenizer and
chat template from the base, so they are the task model's too.

Weights are given per tensor, as ``filter`` conditions naming each Hugging Face tensor in full (mergekit
matches a filter as a substring of the tensor name, first match wins; a full tensor name of a Llama or Gemma 3
layer, Gemma's q/k and pre/post-MLP norms included, is part of no other), then a catch-all 0; not as gradient
lists: mergekit interpolates a list linearly at ``t = i / (L - 1)`` (an ``L``-value list lands on value ``i``
only up to float64 rounding: ``15 / 22 * 22 < 15``) and reads every tensor outside the layers (embeddings,
final norm, LM head) at ``t = 0``, the list's first value, so a list could neither keep those at 0 nor give
the tensors of one layer different weights. mergekit 0.1.5 knows both ``LlamaForCausalLM`` (and Mistral,
Qwen2) and ``Gemma3ForCausalLM``.

Example::

    adapter = SafetyAdapter.load("adapters/smollm2")
    text = mergekit_recipe(adapter, recal.coeffs, task_model="runs/task",
                           aligned="runs/aligned", degraded="runs/degraded")
    # then: mergekit-yaml mergekit.yaml out/
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import yaml

from safegene_jax.core.errors import ConfigError, LayerMapError
from safegene_jax.core.files import write_text
from safegene_jax.core.layers import MODULE_KINDS, STACKED, as_layer_map
from safegene_jax.core.lowrank import LowRank
from safegene_jax.interop._common import adapter_coefficients, num_layers, short_float
from safegene_jax.models.loading import nnx_to_hf_name

RECIPE_FILE = "mergekit.yaml"


def _reference(value: Any, what: str) -> str:
    if value is None or not str(os.fspath(value)).strip():
        raise ConfigError(
            f"mergekit recipe: no {what} model; pass {what}=... (a folder or hub id; the adapter's metadata "
            "records none)"
        )
    return str(os.fspath(value))


def mergekit_recipe(
    adapter: Any,
    coeffs: Any = None,
    *,
    task_model: str | os.PathLike,
    aligned: str | os.PathLike | None = None,
    degraded: str | os.PathLike | None = None,
    dtype: str = "float32",
    out_dtype: str | None = None,
    layer_map: Any = None,
    comment: str | Sequence[str] = (),
) -> str:
    """The mergekit YAML config that reproduces ``adapter.apply(task, coeffs)``.

    Args:
        adapter: a dense :class:`~safegene_jax.method.SafetyAdapter` (``vector``, ``coeffs``, ``metadata``).
        coeffs: per-layer coefficients as :meth:`SafetyAdapter.apply` takes them (a scalar, ``(L,)`` or
            ``(L, len(MODULE_KINDS))``); default: the adapter's own.
        task_model: the fine-tuned model the adapter is applied to (folder or hub id); mergekit's base.
        aligned: the aligned source model; default: ``adapter.metadata["sources"]["aligned"]``.
        degraded: the degraded source model; default: ``adapter.metadata["sources"]["degraded"]``.
        dtype: the dtype mergekit computes in (``float32`` reproduces the adapter to float32 rounding).
        out_dtype: the dtype of the written weights (default: ``dtype``).
        layer_map: how adapter leaf paths map to layers (see :mod:`safegene_jax.core.layers`).
        comment: lines for the header comment (for example the command that made the safe model).

    Returns:
        The YAML text; references are written as given, so pass absolute folders or hub ids.

    Raises:
        ConfigError: bad coefficients (shape, NaN or inf), a low-rank adapter (mergekit only rebuilds the
            dense ``aligned - degraded``), a leaf outside the numbered layers, or a source model missing
            or equal to another.

    Example:
        >>> import numpy as np
        >>> from types import SimpleNamespace
        >>> adapter = SimpleNamespace(
        ...     vector={"model.layers.1.mlp.up_proj.kernel": np.zeros((2, 3), np.float32)},
        ...     coeffs=np.array([0.0, 0.5], np.float32), metadata={"architecture": {"num_layers": 2}})
        >>> text = mergekit_recipe(adapter, task_model="task", aligned="aligned", degraded="degraded")
        >>> recipe = yaml.safe_load(text)
        >>> recipe["models"][0]["parameters"]["weight"][0]
        {'filter': 'model.layers.1.mlp.up_proj.weight', 'value': 0.5}
    """
    task = _reference(task_model, "task_model")
    sources = adapter.metadata.get("sources") or {}
    aligned = _reference(aligned if aligned is not None else sources.get("aligned"), "aligned")
    degraded = _reference(degraded if degraded is not None else sources.get("degraded"), "degraded")
    if aligned == degraded:
        raise ConfigError(f"mergekit recipe: aligned and degraded are the same model ({aligned!r})")
    total = num_layers(adapter)
    c = adapter_coefficients(adapter, coeffs, total)
    lowrank = [p for p, leaf in adapter.vector.items() if isinstance(leaf, LowRank)]
    if lowrank:
        raise ConfigError(
            f"mergekit recipe: the adapter is low-rank (rank {adapter.metadata.get('rank')}, first leaf "
            f"{lowrank[0]!r}); mergekit rebuilds the dense aligned - degraded, so use a dense adapter"
        )

    lm = as_layer_map(layer_map)
    weights: list[tuple[int, str, float]] = []
    for path in adapter.vector:
        try:
            layer = lm.layer_of(path)
        except LayerMapError as e:
            raise ConfigError(f"mergekit recipe: {e}") from None
        if layer is None or layer == STACKED or layer >= total:
            raise ConfigError(
                f"mergekit recipe: adapter leaf {path!r} is not in one of the {total} numbered layers "
                "(mergekit weights are set per Hugging Face tensor of a layer)"
            )
        value = c[layer] if c.ndim == 1 else c[layer, MODULE_KINDS.index(lm.kind_of(path))]
        if value != 0:
            weights.append((layer, nnx_to_hf_name(path)[0], short_float(value)))
    weights.sort()

    def weight_list(sign: float) -> list[dict]:
        entries = [{"filter": name, "value": sign * value} for _, name, value in weights]
        return entries + [{"value": 0.0}]

    models = [
        {"model": ref, "parameters": {"weight": weight_list(sign)}}
        for ref, sign in ((aligned, 1.0), (degraded, -1.0))
        if ref != task  # the base itself adds nothing (task == degraded: the adapter on its own source)
    ]
    config: dict[str, Any] = {"merge_method": "task_arithmetic", "base_model": task, "dtype": dtype}
    if out_dtype is not None:
        config["out_dtype"] = out_dtype
    config["parameters"] = {"normalize": False, "int8_mask": False, "lambda": 1.0}
    config["models"] = models

    lines = "\n".join([comment] if isinstance(comment, str) else comment).splitlines()
    layers = sorted({layer for layer, _, _ in weights})
    header = [
        "mergekit recipe written by safegene_jax: task + sum_l c_l * (aligned_l - degraded_l)",
        f"layers with a non-zero coefficient: {layers}",
        "run: mergekit-yaml mergekit.yaml OUTPUT_FOLDER",
        *lines,
    ]
    text = "".join(f"# {line}\n" if line else "#\n" for line in header)
    return text + yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=1000)


def write_mergekit_recipe(folder: str | os.PathLike, adapter: Any, coeffs: Any = None, **kwargs: Any) -> pathlib.Path:
    """Writes :func:`mergekit_recipe` as ``mergekit.yaml`` in ``folder`` (beside a safe model), atomically.

    All checks run before anything is written; ``kwargs`` are :func:`mergekit_recipe`'s. Returns the file.

    Example::

        write_mergekit_recipe("out/safe", adapter, coeffs, task_model="/abs/task",
                              aligned="/abs/aligned", degraded="/abs/degraded")
    """
    text = mergekit_recipe(adapter, coeffs, **kwargs)
    return write_text(pathlib.Path(folder) / RECIPE_FILE, text)

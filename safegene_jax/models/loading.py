"""Building a model from named tensors, tensor by tensor onto the target shardings.

Source tensors carry Hugging Face names; a table of ``regex -> (target path, transform)`` maps each to
a leaf of the NNX model, which is first built abstractly (``nnx.eval_shape``), so no random weights
are ever made. Names and shapes are all checked before any data is read, and every mapping error
(missing, unexpected, wrong shape) is reported at once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding

from safegene_jax.core.errors import CheckpointError
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.models.config import Gemma3Config, LlamaConfig
from safegene_jax.models.gemma3 import Gemma3ForCausalLM
from safegene_jax.models.llama import LlamaForCausalLM
from safegene_jax.runtime.sharding import LLAMA_RULES, spec_for


def _t(x):
    return np.ascontiguousarray(np.swapaxes(x, 0, 1))


def _same(x):
    return x


_PROJ = r"model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"
HF_TO_NNX: tuple[tuple[str, str, Callable], ...] = (
    (r"model\.embed_tokens\.weight", "model.embed_tokens.embedding", _same),
    (_PROJ + r"\.weight", r"model.layers.\1.\2.kernel", _t),
    (_PROJ + r"\.bias", r"model.layers.\1.\2.bias", _same),
    (r"model\.layers\.(\d+)\.(input_layernorm|post_attention_layernorm)\.weight", r"model.layers.\1.\2.weight", _same),
    # Gemma 3: norms before and after the MLP, and on queries and keys
    (r"model\.layers\.(\d+)\.((?:pre|post)_feedforward_layernorm)\.weight", r"model.layers.\1.\2.weight", _same),
    (r"model\.layers\.(\d+)\.self_attn\.([qk]_norm)\.weight", r"model.layers.\1.self_attn.\2.weight", _same),
    (r"model\.norm\.weight", "model.norm.weight", _same),
    (r"lm_head\.weight", "lm_head.kernel", _t),
)
"""Hugging Face tensor name -> NNX leaf path, and the transform from HF layout to ours."""

IGNORED = (r".*rotary_emb\.inv_freq",)


@dataclasses.dataclass(frozen=True)
class SourceTensor:
    """One tensor of a checkpoint: its HF name, HF-layout shape, a function that reads it, and its stored dtype
    (a numpy-style name such as ``bfloat16``; empty when the format stores no plain dtype, as quantized GGUF)."""

    name: str
    shape: tuple[int, ...]
    read: Callable[[], np.ndarray]
    dtype: str = ""


FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
"""The stored dtypes a weight may have (:attr:`SourceTensor.dtype`; empty: the format says no plain dtype)."""


def stored_dtype(tensors: Iterable[SourceTensor]) -> str | None:
    """The dtype most of a checkpoint's floating-point values are stored in (``None`` if none says)."""
    sizes: dict[str, int] = {}
    for t in tensors:
        if t.dtype in FLOAT_DTYPES:
            sizes[t.dtype] = sizes.get(t.dtype, 0) + int(np.prod(t.shape))
    return max(sizes, key=sizes.get) if sizes else None


def map_name(name: str) -> tuple[str, Callable] | None:
    for pattern, target, transform in HF_TO_NNX:
        m = re.fullmatch(pattern, name)
        if m:
            return m.expand(target), transform
    return None


def nnx_to_hf_name(path: str) -> tuple[str, bool]:
    """Our leaf path -> (Hugging Face tensor name, whether to transpose)."""
    if path.endswith(".embedding"):
        return path[: -len("embedding")] + "weight", False
    if path.endswith(".kernel"):
        return path[: -len("kernel")] + "weight", True
    return path, False


def model_class(cfg: LlamaConfig) -> type:
    """The NNX module of a config: :class:`Gemma3ForCausalLM` for a :class:`Gemma3Config`, else
    :class:`LlamaForCausalLM`."""
    return Gemma3ForCausalLM if isinstance(cfg, Gemma3Config) else LlamaForCausalLM


def new_model(cfg: LlamaConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, seed: int = 0):
    """A random-weight model of ``cfg``'s family."""
    return model_class(cfg)(cfg, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(seed))


def abstract_model(cfg: LlamaConfig, dtype=jnp.float32, param_dtype=jnp.float32):
    """``(graphdef, abstract_state)`` of the model, without allocating weights."""
    abstract = nnx.eval_shape(lambda: new_model(cfg, dtype=dtype, param_dtype=param_dtype))
    return nnx.split(abstract)


def check_tensors(
    cfg: LlamaConfig, tensors: Iterable[tuple[str, Sequence[int]]], source: str = "checkpoint"
) -> dict[str, tuple[str, Callable]]:
    """Which checkpoint tensor fills each leaf of ``cfg``'s model, from names and shapes alone (no data is read):
    ``{leaf path: (HF name, transform)}``. The loader and the streaming commands (on safetensors headers) both
    check a checkpoint with it, before any work.

    Args:
        cfg: the model configuration.
        tensors: ``(HF name, HF-layout shape)`` of every tensor of the checkpoint.
        source: the checkpoint's name, for error messages.

    Raises:
        CheckpointError: listing every missing, unexpected and wrongly shaped tensor.
    """
    _, abs_state = abstract_model(cfg)
    paths, leaves, _ = flatten_with_paths(abs_state)
    return _plan(cfg, {p: tuple(leaf.shape) for p, leaf in zip(paths, leaves)}, tensors, source)


def _plan(
    cfg: LlamaConfig,
    wanted: dict[str, tuple[int, ...]],
    tensors: Iterable[tuple[str, Sequence[int]]],
    source: str,
) -> dict[str, tuple[str, Callable]]:
    """:func:`check_tensors` given the model's leaf shapes ``wanted`` (``{leaf path: shape}``)."""
    plan: dict[str, tuple[str, Callable]] = {}
    misfit: set[str] = set()
    errors: list[str] = []
    for name, shape in tensors:
        shape = tuple(shape)
        mapped = map_name(name)
        if mapped is None:
            if not any(re.fullmatch(p, name) for p in IGNORED):
                errors.append(f"unexpected tensor {name!r} {shape}")
            continue
        target, transform = mapped
        if target == "lm_head.kernel" and cfg.tie_word_embeddings:
            continue  # a tied checkpoint may carry a copy of the embeddings as lm_head
        if target not in wanted:
            errors.append(
                f"unexpected tensor {name!r} {shape} (no {target!r} in a {cfg.num_hidden_layers}"
                f"-layer {cfg.model_type} model)"
            )
            continue
        want_shape = wanted[target]
        got_shape = shape[::-1] if transform is _t else shape
        if got_shape != want_shape:
            errors.append(
                f"wrong shape for {name!r}: {shape} in the {source}, model expects "
                f"{want_shape if transform is not _t else want_shape[::-1]}"
            )
            misfit.add(target)
            continue
        plan[target] = (name, transform)
    errors += [f"missing tensor for {p!r}" for p in wanted if p not in plan and p not in misfit]
    if errors:
        shown = "\n  ".join(errors[:40]) + (f"\n  ... and {len(errors) - 40} more" if len(errors) > 40 else "")
        raise CheckpointError(
            f"{source} does not fit the {cfg.model_type} model ({len(errors)} problem(s)):\n  {shown}"
        )
    return plan


def build_model(
    cfg: LlamaConfig,
    tensors: Iterable[SourceTensor],
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = None,
    mesh: Any = None,
    rules: Sequence = LLAMA_RULES,
    source: str = "checkpoint",
) -> LlamaForCausalLM | Gemma3ForCausalLM:
    """Builds the model (of ``cfg``'s family) from ``tensors``, placing each one straight onto its sharding.

    Args:
        cfg: the model configuration.
        tensors: the checkpoint's tensors with HF names.
        dtype: compute dtype; ``param_dtype`` (default: ``dtype``) is what the weights are cast to.
        mesh: optional mesh; with it each tensor goes onto ``NamedSharding(mesh, rule)``.
        rules: sharding rules (see :mod:`safegene_jax.runtime.sharding`).
        source: the checkpoint's name, for error messages.

    Raises:
        CheckpointError: listing every missing, unexpected and wrongly shaped tensor (see :func:`check_tensors`),
            or naming a weight that is not stored as floating point.
    """
    param_dtype = param_dtype or dtype
    graphdef, abs_state = abstract_model(cfg, dtype, param_dtype)
    paths, abs_leaves, treedef = flatten_with_paths(abs_state)
    by_name = {t.name: t for t in tensors}
    wanted = {p: tuple(leaf.shape) for p, leaf in zip(paths, abs_leaves)}
    plan = _plan(cfg, wanted, ((t.name, t.shape) for t in by_name.values()), source)
    for name, _ in plan.values():
        stored = by_name[name].dtype
        if stored and stored not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{source}: tensor {name!r} is stored as {stored}; model weights must be floating point "
                f"({', '.join(FLOAT_DTYPES)}), re-export the checkpoint with float weights"
            )

    sizes = dict(mesh.shape) if mesh is not None else None
    leaves = []
    for path in paths:
        name, transform = plan[path]
        value = np.asarray(transform(by_name[name].read())).astype(jnp.dtype(param_dtype))
        if mesh is not None:
            leaves.append(jax.device_put(value, NamedSharding(mesh, spec_for(path, value.shape, sizes, rules))))
        else:
            leaves.append(jax.device_put(value))
    state = jax.tree_util.tree_unflatten(treedef, leaves)
    return nnx.merge(graphdef, state)

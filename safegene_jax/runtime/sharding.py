"""Mesh construction and parameter sharding rules (data, FSDP and tensor parallelism).

A rule is ``(regex over the leaf path, PartitionSpec)``; the first match wins. Axes of a leaf that a
mesh axis does not divide evenly are left unsharded, so the same rules serve every model size.

Example:
    >>> from jax.sharding import PartitionSpec as P
    >>> spec_for("model.layers.0.mlp.up_proj.kernel", (16, 64), {"data": 1, "fsdp": 2, "tensor": 4})
    P('fsdp', 'tensor')
    >>> spec_for("model.layers.0.mlp.up_proj.kernel", (16, 6), {"data": 1, "fsdp": 2, "tensor": 4})
    P('fsdp', None)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from safegene_jax.core.errors import ConfigError
from safegene_jax.core.paths import flatten_with_paths

AXES = ("data", "fsdp", "tensor")

LLAMA_RULES: tuple[tuple[str, P], ...] = (
    (r"embed_tokens\.embedding$", P("tensor", "fsdp")),
    (r"(q_proj|k_proj|v_proj|gate_proj|up_proj)\.kernel$", P("fsdp", "tensor")),
    (r"(q_proj|k_proj|v_proj|gate_proj|up_proj)\.bias$", P("tensor")),
    (r"(o_proj|down_proj)\.kernel$", P("tensor", "fsdp")),
    (r"lm_head\.kernel$", P("fsdp", "tensor")),
    (r".*", P()),
)
"""Megatron-style tensor parallelism over ``tensor`` and parameter sharding over ``fsdp``."""


def mesh_sizes(data: int = 1, fsdp: int = -1, tensor: int = 1, devices: int | None = None) -> tuple[int, int, int]:
    """The mesh's ``(data, fsdp, tensor)`` sizes, the one place they are checked. One size may be -1: the rest
    of the devices. Without ``devices`` only the sizes themselves are checked (a config before any device).

    Example:
        >>> mesh_sizes(2, -1, 1, devices=8)
        (2, 4, 1)

    Raises:
        ConfigError: a size is neither positive nor -1, two are -1, or the sizes do not fit the devices.
    """
    sizes = [data, fsdp, tensor]
    if not all(isinstance(s, int) and (s == -1 or s >= 1) for s in sizes):
        raise ConfigError(f"mesh: sizes must be >= 1 or -1, got data={data}, fsdp={fsdp}, tensor={tensor}")
    if sizes.count(-1) > 1:
        raise ConfigError(f"mesh: at most one size may be -1, got data={data}, fsdp={fsdp}, tensor={tensor}")
    if devices is None:
        return data, fsdp, tensor
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if devices % known:
            raise ConfigError(f"mesh: {devices} devices cannot be split into data={data}, fsdp={fsdp}, tensor={tensor}")
        sizes[sizes.index(-1)] = devices // known
    if math.prod(sizes) != devices:
        raise ConfigError(
            f"mesh: data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} needs {math.prod(sizes)} devices, "
            f"have {devices}"
        )
    return sizes[0], sizes[1], sizes[2]


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A ``('data', 'fsdp', 'tensor')`` mesh with Auto axes; one size may be -1 (the rest of the devices).

    Raises:
        ConfigError: the sizes do not multiply to the number of devices (see :func:`mesh_sizes`).
    """
    devices = list(devices if devices is not None else jax.devices())
    sizes = mesh_sizes(data, fsdp, tensor, len(devices))
    return jax.make_mesh(sizes, AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3, devices=devices)


def spec_for(
    path: str, shape: Sequence[int], axis_sizes: Mapping[str, int], rules: Sequence[tuple[str, P]] = LLAMA_RULES
) -> P:
    """The PartitionSpec of one leaf: the first matching rule, minus axes that do not divide the shape."""
    spec = next((s for pattern, s in rules if re.search(pattern, path)), None)
    if spec is None:
        return P()
    entries = list(spec) + [None] * (len(shape) - len(spec))
    out = []
    for dim, axis in zip(shape, entries[: len(shape)]):
        names = axis if isinstance(axis, tuple) else (axis,) if axis else ()
        size = 1
        for name in names:
            size *= axis_sizes.get(name, 1)
        out.append(axis if axis and dim % size == 0 and size > 1 else None)
    return P(*out)


def param_shardings(params: Any, mesh: Mesh, rules: Sequence[tuple[str, P]] = LLAMA_RULES) -> Any:
    """A tree of ``NamedSharding`` with the structure of ``params`` (arrays or ShapeDtypeStructs)."""
    paths, leaves, treedef = flatten_with_paths(params)
    sizes = dict(mesh.shape)
    return jax.tree_util.tree_unflatten(
        treedef, [NamedSharding(mesh, spec_for(p, leaf.shape, sizes, rules)) for p, leaf in zip(paths, leaves)]
    )


def shard_params(params: Any, mesh: Mesh, rules: Sequence[tuple[str, P]] = LLAMA_RULES) -> Any:
    """``params`` placed on ``mesh`` by ``rules``."""
    return jax.device_put(params, param_shardings(params, mesh, rules))

"""Single pytrees saved as Orbax checkpoints (with JSON metadata) and restored onto any target sharding.

Orbax writes each checkpoint into a temporary folder and renames it when complete. Orbax itself is
imported on first use, so importing this module (and the method above it) does not load it.

Example:
    >>> import tempfile, jax.numpy as jnp
    >>> path = tempfile.mkdtemp() + "/params"
    >>> save_tree(path, {"w": jnp.ones(3)}, metadata={"note": "hi"})
    >>> tree, meta = restore_tree(path)
    >>> tree["w"].tolist(), meta["note"]
    ([1.0, 1.0, 1.0], 'hi')
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax

from safegene_jax.core.errors import CheckpointNotFoundError
from safegene_jax.core.files import usual_modes


def abstract_like(tree: Any, shardings: Any = None) -> Any:
    """``ShapeDtypeStruct`` leaves with the target shardings (default: each leaf's own sharding)."""
    if shardings is None:
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
        )
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def save_tree(path: str | os.PathLike, tree: Any, metadata: dict | None = None, overwrite: bool = True) -> None:
    """Saves one pytree (and JSON metadata) as an Orbax checkpoint, atomically."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
        ckpt.save(
            path,
            args=ocp.args.Composite(tree=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(metadata or {})),
            force=overwrite,
        )
    usual_modes(path)  # readable by a server running as another user, as the umask allows


def restore_tree(path: str | os.PathLike, target: Any = None, shardings: Any = None) -> tuple[Any, dict]:
    """``(tree, metadata)`` from :func:`save_tree`; with ``target``/``shardings`` it lands on those shardings."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).absolute()
    if not path.exists():
        raise CheckpointNotFoundError(f"no checkpoint at {path}")
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
        tree_args = ocp.args.StandardRestore(abstract_like(target, shardings) if target is not None else None)
        restored = ckpt.restore(path, args=ocp.args.Composite(tree=tree_args, meta=ocp.args.JsonRestore()))
    return restored.tree, dict(restored.meta or {})

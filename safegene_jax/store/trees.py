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

from safegene_jax.core.errors import CheckpointError, CheckpointNotFoundError


def abstract_like(tree: Any, shardings: Any = None) -> Any:
    """``ShapeDtypeStruct`` leaves with the target shardings (default: each leaf's own sharding)."""
    if shardings is None:
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
        )
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def save_tree(path: str | os.PathLike, tree: Any, metadata: dict | None = None, overwrite: bool = False) -> None:
    """Saves one pytree (and JSON metadata) as an Orbax checkpoint, atomically: written beside ``path`` and
    swapped into place, so the previous checkpoint stays whole until the new one is complete (a killed save
    leaves it, and the next save cleans the leftovers). A folder this library did not write is refused unless
    ``overwrite``; a file at ``path`` always is. A remote ``path`` (``gs://...``) is saved locally and uploaded
    (:func:`safegene_jax.core.storage.publish_folder`)."""
    from safegene_jax.core import storage

    if storage.is_remote(path):
        _save_remote(path, tree, metadata, overwrite)
        return
    import orbax.checkpoint as ocp

    from safegene_jax.core.files import check_destination, recover, swap_into_place

    path = check_destination(pathlib.Path(path).absolute(), overwrite=overwrite, what="checkpoint destination")
    writer = storage.is_writer(path)  # several processes: all save their shards, process 0 moves the folder
    if writer:
        recover(path)
    storage.barrier(f"save_tree {path} start")
    tmp = path.with_name(f".{path.name}.tmp-orbax")  # one name on every process (Orbax saves it together)
    try:
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
            ckpt.save(
                tmp,
                args=ocp.args.Composite(tree=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(metadata or {})),
                force=True,
            )
        if writer:
            swap_into_place(tmp, path)
    except BaseException:
        import shutil

        if writer:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    storage.barrier(f"save_tree {path} done")


def _save_remote(path: str, tree: Any, metadata: dict | None, overwrite: bool) -> None:
    """:func:`save_tree` to a remote folder: saved in a local temporary folder, then published
    (:func:`safegene_jax.core.storage.publish_folder`). One process only: a multi-process run saves into its
    ``out_dir`` (a mirror, pushed by process 0) or a shared folder."""
    import tempfile

    from safegene_jax.core import storage
    from safegene_jax.core.errors import ConfigError

    storage.check_remote_destination(path, overwrite=overwrite, what="checkpoint destination")
    if jax.process_count() > 1:
        raise ConfigError(
            f"checkpoint destination {path}: a remote save from several processes is not supported; save into the "
            "run's out_dir or a folder every host shares"
        )
    with tempfile.TemporaryDirectory(prefix=".safegene-upload-") as tmp:
        save_tree(pathlib.Path(tmp) / "tree-save", tree, metadata)
        storage.publish_folder(pathlib.Path(tmp) / "tree-save", path, overwrite=True, what="checkpoint destination")


ABANDONED: list[pathlib.Path] = []
"""The checkpoints whose failed restore left reads of the storage layer in flight (a command line then ends at
once, without the interpreter's teardown, which could still report them: see
:func:`safegene_jax.pipeline.cli.run`)."""


_RESTORING = 0
"""How many restores are under way: the filter of :func:`_quiet_abandoned_reads` acts during them."""


def _quiet_abandoned_reads() -> None:
    """After a failed restore, Orbax leaves the other reads in flight: their coroutines raise again when they
    are closed, and TensorStore's callbacks find Orbax's event loop closed. Python reports both through
    ``sys.unraisablehook`` as tracebacks on stderr, beside the error that already names the damaged
    checkpoint. This installs a filter that drops those two reports, and only those, while a restore is under
    way (a callback can fire while a failed restore is still unwinding, before its error is caught) and,
    once a restore has failed (:data:`ABANDONED`), for the rest of the process. Other reports, and these
    two outside a restore of a process where none failed, go to the hook that was there before."""
    import sys

    previous = sys.unraisablehook
    if getattr(previous, "quiets_abandoned_reads", False):
        return

    def hook(unraisable) -> None:
        obj, exc = unraisable.object, unraisable.exc_value
        orbax_read = "orbax" in getattr(getattr(obj, "cr_code", None), "co_filename", "")
        closed_loop = obj is None and isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)
        if not ((_RESTORING or ABANDONED) and (orbax_read or closed_loop)):
            previous(unraisable)

    hook.quiets_abandoned_reads = True
    sys.unraisablehook = hook


def _replicated_target(ocp: Any, path: pathlib.Path) -> Any:
    """The saved tree's shapes and dtypes, replicated over every device of every process: a checkpoint saved
    by one process records one device's sharding, which a multi-process run cannot use as it is."""
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    everywhere = NamedSharding(Mesh(np.array(jax.devices()), ("all",)), P())
    saved = ocp.StandardCheckpointHandler().metadata(path / "tree")
    return jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=everywhere), getattr(saved, "tree", saved)
    )


def restore_tree(path: str | os.PathLike, target: Any = None, shardings: Any = None) -> tuple[Any, dict]:
    """``(tree, metadata)`` from :func:`save_tree`; with ``target``/``shardings`` it lands on those shardings."""
    global _RESTORING
    import orbax.checkpoint as ocp

    from safegene_jax.core import storage

    if storage.is_remote(path):
        try:
            path = storage.local_copy(path, "checkpoint")
        except FileNotFoundError:
            raise CheckpointNotFoundError(f"no checkpoint at {path}") from None
    path = pathlib.Path(path).absolute()
    if not path.exists():
        raise CheckpointNotFoundError(f"no checkpoint at {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file, not a checkpoint folder")
    if not (path / "tree").is_dir():
        raise CheckpointError(f"{path} is not a checkpoint of safegene_jax (no tree/ folder in it)")
    _quiet_abandoned_reads()
    _RESTORING += 1
    try:
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
            if target is None and jax.process_count() > 1:
                target, shardings = _replicated_target(ocp, path), None
            tree_args = ocp.args.StandardRestore(abstract_like(target, shardings) if target is not None else None)
            restored = ckpt.restore(path, args=ocp.args.Composite(tree=tree_args, meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - whatever the storage layer raises on damaged files
        ABANDONED.append(path)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path} cannot be read, damaged or incomplete ({type(e).__name__}: {first})") from e
    finally:
        _RESTORING -= 1
    meta = restored.meta or {}
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path}: its metadata (meta/metadata) is a JSON {type(meta).__name__}, not an object: damaged or edited"
        )
    return restored.tree, dict(meta)

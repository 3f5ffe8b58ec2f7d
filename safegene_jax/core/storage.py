"""Where files live: local paths, and remote URIs (``gs://``, ``s3://``, ``az://``, ``hf://``) through ``etils.epath``.

The rest of the library reads and writes local files (safetensors are memory-mapped, Orbax and the
streaming arithmetic work on folders). A remote path is handled at the edges:

- an input (a model folder, a GGUF file, an adapter, a coefficients file) is copied into a local cache once
  (:func:`local_copy`; a file already there with the same size is not fetched again);
- an output folder is written locally and then published (:func:`publish_folder`): uploaded beside the
  destination and moved into place, so the previous version stays whole until the new one is complete;
- a pipeline run's ``out_dir`` is a local :class:`Mirror` of the remote folder: pulled when the run starts
  (a resumed run finds its stages and checkpoints) and pushed after every stage and every checkpoint.

A scheme without an installed backend (``gs://`` needs ``gcsfs``) fails with one line naming the package
before any work. With several processes (a multi-host run), process 0 alone writes shared outputs
(:func:`is_writer`) and the others wait for it (:func:`barrier`).

Example:
    >>> is_remote("gs://bucket/run"), is_remote("runs/demo"), is_remote("file://runs/demo")
    (True, False, False)
    >>> local_path("file://runs/demo")
    PosixPath('runs/demo')
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import uuid
from typing import Any

from safegene_jax.core.errors import ConfigError
from safegene_jax.core.files import MARKER as _MARKER

BACKENDS = {"gs": ("gcs", "gcsfs"), "s3": ("s3", "s3fs"), "az": ("az", "adlfs"), "hf": ("hf", "huggingface_hub")}
"""The remote schemes ``etils.epath`` reads and writes, with the fsspec protocol and the package behind each."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PRIVATE_ROOTS: list[pathlib.Path] = []
_TEMPORARY = re.compile(r"(^|/)\.[^/]*\.(tmp|old)-|orbax-checkpoint-tmp|\.part$|(^|/)\.[^/]*\.tmp$")


def scheme(path: Any) -> str:
    """The URI scheme of ``path`` (``'gs'``), or ``''`` for a local path."""
    m = _SCHEME.match(os.fspath(path) if isinstance(path, os.PathLike) else str(path))
    return m.group(1).lower() if m else ""


def is_remote(path: Any) -> bool:
    """Whether ``path`` names a remote location (a URI whose scheme is not ``file``)."""
    return scheme(path) not in ("", "file")


def local_path(path: Any) -> pathlib.Path:
    """A local path (``file://`` URIs included) as a :class:`pathlib.Path`, ``~`` expanded."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if scheme(text) == "file":
        text = text[len("file://") :]
    return pathlib.Path(text).expanduser()


def check_scheme(path: Any, what: str = "path") -> None:
    """Raises :class:`ConfigError` naming the problem when ``path`` is remote and cannot be reached: a scheme
    ``etils.epath`` does not know, or one whose backend package is not installed. Local paths pass."""
    if not is_remote(path):
        return
    name = scheme(path)
    if name not in BACKENDS:
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise ConfigError(f"{what} {path}: no backend reads {name}:// paths (remote paths: {known}, or a local path)")
    protocol, package = BACKENDS[name]
    try:
        import fsspec

        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as e:
        raise ConfigError(
            f"{what} {path}: {name}:// paths need the {package} package, which is not installed "
            f"(pip install {package}): {type(e).__name__}"
        ) from None


def remote(path: Any, what: str = "path") -> Any:
    """``path`` as an ``etils.epath.Path`` (checked with :func:`check_scheme`)."""
    from etils import epath

    check_scheme(path, what)
    return epath.Path(os.fspath(path) if isinstance(path, os.PathLike) else str(path))


def cache_dir() -> pathlib.Path:
    """Where remote inputs and run mirrors are kept: ``$SAFEGENE_REMOTE_CACHE`` or ``~/.cache/safegene_jax/remote``."""
    default = pathlib.Path.home() / ".cache" / "safegene_jax" / "remote"
    return pathlib.Path(os.environ.get("SAFEGENE_REMOTE_CACHE") or default).expanduser()


def _slot(uri: str) -> pathlib.Path:
    """The cache folder of one remote URI (its hash, then its last name for readability)."""
    uri = uri.rstrip("/")
    return cache_dir() / hashlib.sha256(uri.encode()).hexdigest()[:16] / (uri.rsplit("/", 1)[-1] or "root")


# ---- processes ---------------------------------------------------------------------------------------------


def is_writer(path: Any = None) -> bool:
    """Whether this process writes shared outputs: process 0 of a multi-process run (always, on one process).
    A path inside a private folder (a host's own mirror of a remote run, see :class:`Mirror`) is written by
    every process."""
    if path is not None and not is_remote(path):
        p = local_path(path).absolute()
        if any(p == root or root in p.parents for root in _PRIVATE_ROOTS):
            return True
    return process_index() == 0


def process_index() -> int:
    """This process's index among a multi-process run's (0 when ``jax.distributed`` was not initialized; the
    backend is not started just to ask)."""
    import jax

    return jax.process_index() if jax.distributed.is_initialized() else 0


def barrier(name: str) -> None:
    """Waits until every process reaches this point (a no-op on one process)."""
    import jax

    if jax.distributed.is_initialized() and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


# ---- copying -----------------------------------------------------------------------------------------------


def _walk(root: Any) -> list[tuple[str, Any]]:
    """``(relative posix name, epath)`` of every file under the remote folder ``root``."""
    out, todo = [], [(root, "")]
    while todo:
        folder, prefix = todo.pop()
        for child in sorted(folder.iterdir(), key=lambda p: p.name):
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                todo.append((child, rel + "/"))
            else:
                out.append((rel, child))
    return sorted(out, key=lambda x: x[0])


def _copy(src: Any, dst: Any) -> None:
    with src.open("rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 22)


def _download(src: Any, dst: pathlib.Path) -> None:
    """``src`` (remote file) to ``dst``, through a temporary file renamed into place; skipped when ``dst``
    exists with the same size."""
    size = src.stat().length
    if dst.is_file() and size is not None and dst.stat().st_size == size:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        _copy(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def local_copy(path: Any, what: str = "input") -> pathlib.Path:
    """A local path to read ``path`` from: the path itself when it is local, else a copy of the remote file or
    folder in :func:`cache_dir` (refreshed file by file when the remote one's size changed).

    Raises:
        ConfigError: an unknown scheme or a missing backend (:func:`check_scheme`).
        FileNotFoundError: nothing exists at the remote path.
    """
    if not is_remote(path):
        return local_path(path)
    src = remote(path, what)
    if not src.exists():
        raise FileNotFoundError(f"{what} {path}: nothing there")
    dst = _slot(str(path))
    if not src.is_dir():
        _download(src, dst)
        return dst
    wanted = _walk(src)
    for rel, child in wanted:
        _download(child, dst / rel)
    keep = {rel for rel, _ in wanted}
    if dst.is_dir():
        for f in [f for f in dst.rglob("*") if f.is_file()]:
            if f.relative_to(dst).as_posix() not in keep:
                f.unlink()  # gone from the remote folder since the last copy
    dst.mkdir(parents=True, exist_ok=True)
    return dst


def _upload_tree(local: pathlib.Path, dest: Any) -> None:
    """Every file under the local folder ``local`` to the remote folder ``dest``; the marker last."""
    files = sorted((f for f in local.rglob("*") if f.is_file()), key=lambda f: (f.name == _MARKER, f.as_posix()))
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = dest / f.relative_to(local).as_posix()
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy(f, target)


def check_remote_destination(path: Any, *, overwrite: bool = False, what: str = "output") -> Any:
    """The remote counterpart of :func:`safegene_jax.core.files.check_destination`: ``path`` as an epath once
    it is known that writing there loses nothing of someone else's.

    Raises:
        ConfigError: a missing backend, a file at ``path``, or a non-empty folder without the library's marker
            (unless ``overwrite``).
    """
    dest = remote(path, what)
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{what} {path} is a file; give a folder path (the file is left as it is)")
    if dest.is_dir() and not overwrite and any(dest.iterdir()) and not (dest / _MARKER).exists():
        raise ConfigError(
            f"{what} {path} exists and was not written by safegene_jax; choose a new folder, or pass --overwrite "
            "(overwrite=True) to replace it"
        )
    return dest


def publish_folder(local: str | os.PathLike, path: Any, *, overwrite: bool = False, what: str = "output") -> Any:
    """Uploads the finished local folder ``local`` to the remote folder ``path``: into a sibling
    ``.NAME.tmp-XXXXXXXX`` first, then the old version is moved aside, the new one into place, and the old one
    deleted. The previous version stays whole until the new one is completely uploaded. Leftovers of a killed
    upload are removed first. Returns the destination (an epath)."""
    dest = check_remote_destination(path, overwrite=overwrite, what=what)
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    for p in parent.iterdir():
        if p.name.startswith(f".{dest.name}.tmp-") or p.name.startswith(f".{dest.name}.old-"):
            if p.name.startswith(f".{dest.name}.old-") and not dest.exists():
                p.rename(dest)  # a kill between moving the old one aside and the new one in: put it back
            else:
                p.rmtree() if p.is_dir() else p.unlink()
    tmp = parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        _upload_tree(pathlib.Path(local), tmp)
        if dest.exists():
            old = parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            dest.rename(old)
            tmp.rename(dest)
            old.rmtree()
        else:
            tmp.rename(dest)
    except BaseException:
        if tmp.exists():
            tmp.rmtree()
        raise
    return dest


def publish_file(local: str | os.PathLike, path: Any, what: str = "output") -> Any:
    """Uploads one local file to the remote ``path`` (object stores replace an object in one step)."""
    dest = remote(path, what)
    if dest.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file path (the folder is left as it is)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _copy(pathlib.Path(local), dest)
    return dest


class Mirror:
    """A local working copy of a remote folder, for work that writes many files over time (a pipeline run).

    ``pull()`` brings the remote files down (a resumed run finds what it wrote before); ``push()`` uploads
    what changed locally since the last push, files before the records that name them (``stages/`` last),
    and the marker last of all. Only the writing process (:func:`is_writer`) pushes; every process keeps its
    own mirror (a private folder: every process writes there).

    Example:
        >>> m = Mirror("gs://bucket/run")
        >>> m.local.name
        'run'
    """

    def __init__(self, uri: str, local: str | os.PathLike | None = None):
        self.uri = str(uri).rstrip("/")
        self.local = pathlib.Path(local) if local is not None else _slot(self.uri)
        self._sent: dict[str, tuple[int, int]] = {}
        root = self.local.absolute()
        if root not in _PRIVATE_ROOTS:
            _PRIVATE_ROOTS.append(root)

    def remote(self) -> Any:
        return remote(self.uri, "out_dir")

    def pull(self) -> pathlib.Path:
        """Downloads the remote folder's files (those missing locally or of another size); returns the mirror."""
        src = self.remote()
        self.local.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            for rel, child in _walk(src):
                _download(child, self.local / rel)
                st = (self.local / rel).stat()
                self._sent[rel] = (st.st_size, st.st_mtime_ns)
        return self.local

    def push(self) -> int:
        """Uploads every local file that is new or changed since the last push; returns how many."""
        if not is_writer():
            return 0
        dest = self.remote()
        changed, present = [], set()
        for f in self.local.rglob("*"):
            rel = f.relative_to(self.local).as_posix()
            if not f.is_file() or _TEMPORARY.search(rel):
                continue  # Orbax's and the writers' temporary files are pushed once complete
            present.add(rel)
            st = f.stat()
            if self._sent.get(rel) != (st.st_size, st.st_mtime_ns):
                changed.append((rel, f, (st.st_size, st.st_mtime_ns)))
        changed.sort(key=lambda x: (x[0] == _MARKER, x[0].startswith("stages/"), x[0]))
        for rel, f, stamp in changed:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy(f, target)
            self._sent[rel] = stamp
        for rel in sorted(set(self._sent) - present):  # replaced folders' old files, checkpoints Orbax dropped
            gone = dest / rel
            if gone.exists():
                gone.unlink()
            del self._sent[rel]
        return len(changed)

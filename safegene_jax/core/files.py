"""File modes of what the library writes: the usual ones, as the user's umask gives them.

Temporary folders (``tempfile.mkdtemp``: 0700) and some writers (safetensors: 0600) create private files;
a folder that is swapped into place must end with the modes a plain ``mkdir`` and ``open`` would have given,
so that a server running as another user can read an exported model.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()  # 0700
    >>> usual_modes(folder)
    >>> oct(os.stat(folder).st_mode & 0o777) == oct(0o777 & ~current_umask())
    True
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Callable

_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back, under a lock)."""
    with _LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def usual_modes(path: str | os.PathLike) -> None:
    """Gives ``path`` (a file, or a folder and everything in it) the modes the umask gives new files and
    folders: ``0o666 & ~umask`` for files, ``0o777 & ~umask`` for folders. Links are left alone."""
    mask = current_umask()
    path = pathlib.Path(path)
    if path.is_symlink():
        return
    if path.is_file():
        os.chmod(path, 0o666 & ~mask)
        return
    os.chmod(path, 0o777 & ~mask)
    for root, dirs, files in os.walk(path):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, 0o777 & ~mask)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


# ---- folders written whole, swapped into place ---------------------------------------------------------

MARKER = ".safegene"
"""The file every folder this library writes carries: a destination without it is someone else's and is never
replaced unless the caller says ``overwrite``."""

_MARKER_TEXT = '{"written_by": "safegene_jax"}\n'
_RENAME_EXCHANGE = 2  # Linux renameat2 flag: swap two paths in one step


def mark(folder: str | os.PathLike) -> None:
    """Writes :data:`MARKER` into ``folder``: a folder this library fills over time (a pipeline run's
    ``out_dir``) is then recognised as its own, like the folders it writes whole. Only the writing process
    (:func:`safegene_jax.core.storage.is_writer`) writes it."""
    from safegene_jax.core.storage import is_writer

    if is_writer(folder):
        (pathlib.Path(folder) / MARKER).write_text(_MARKER_TEXT)


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Swaps two existing paths in one atomic step (Linux ``renameat2``); False where that is not available."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def temp_sibling(dest: str | os.PathLike, kind: str = "tmp") -> pathlib.Path:
    """A new empty folder beside ``dest`` named ``.NAME.KIND-XXXXXX`` (recognised later as a leftover)."""
    import tempfile

    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix=f".{dest.name}.{kind}-", dir=dest.parent))


def leftovers(dest: str | os.PathLike) -> list[pathlib.Path]:
    """Temporary siblings of ``dest`` that a killed write left behind."""
    dest = pathlib.Path(dest)
    if not dest.parent.is_dir():
        return []
    return sorted(
        p
        for p in dest.parent.iterdir()
        if p.name.startswith(f".{dest.name}.tmp-") or p.name.startswith(f".{dest.name}.old-")
    )


def recover(dest: str | os.PathLike) -> None:
    """Cleans up after a killed write to ``dest``: a previous version left aside (``.NAME.old-*``) is put back
    when ``dest`` is missing, and every other leftover is removed."""
    import shutil

    dest = pathlib.Path(dest)
    for p in leftovers(dest):
        if p.name.startswith(f".{dest.name}.old-") and not dest.exists() and (p / "old").exists():
            (p / "old").rename(dest)
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def check_destination(dest: str | os.PathLike, *, overwrite: bool = False, what: str = "output") -> pathlib.Path:
    """``dest`` as a path, once it is known that writing there loses nothing of someone else's. A remote
    ``dest`` (``gs://...``) is checked there and returned as an ``etils.epath.Path``
    (:func:`safegene_jax.core.storage.check_remote_destination`).

    Raises:
        ConfigError: ``dest`` is a file, or a non-empty folder that this library did not write (no
            :data:`MARKER`) and ``overwrite`` is false; a remote scheme without an installed backend.
    """
    from safegene_jax.core import storage
    from safegene_jax.core.errors import ConfigError

    if storage.is_remote(dest):
        return storage.check_remote_destination(dest, overwrite=overwrite, what=what)
    dest = storage.local_path(dest)
    if dest.is_file() or (dest.exists() and not dest.is_dir()):
        raise ConfigError(f"{what} {dest} is a file; give a folder path (the file is left as it is)")
    if dest.is_dir() and not overwrite and any(dest.iterdir()) and not (dest / MARKER).is_file():
        raise ConfigError(
            f"{what} {dest} exists and was not written by safegene_jax; choose a new folder, or pass --overwrite "
            "(overwrite=True) to replace it"
        )
    _check_parent(dest, what)
    return dest


def _check_parent(dest: pathlib.Path, what: str) -> None:
    """Raises :class:`ConfigError` unless the nearest existing folder above ``dest`` is a folder we may write in."""
    from safegene_jax.core.errors import ConfigError

    parent = dest.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{what} {dest}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {dest}: no permission to write in {parent} (checked before any work)")


def check_file_destination(
    dest: str | os.PathLike,
    *,
    ours: Callable[[pathlib.Path], bool] | None = None,
    kind: str = "",
    overwrite: bool = False,
    what: str = "output",
) -> pathlib.Path:
    """``dest`` as a path, once it is known that a file can be written there without losing someone else's: the
    file counterpart of :func:`check_destination`, for outputs that are one file.

    Args:
        dest: the file to write.
        ours: recognises a file this library wrote (and may replace); ``None``: any existing file may be replaced.
        kind: what ``ours`` recognises, for the message (``"a coefficients file of safegene"``).
        overwrite: replace an existing file that ``ours`` does not recognise.
        what: the destination's name in messages (``"--out"``).

    Raises:
        ConfigError: ``dest`` is a folder; an existing file that ``ours`` does not recognise (unless
            ``overwrite``); a file in its path, or a folder we may not write in.

    Example:
        >>> import tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> check_file_destination(folder, what="--out")
        Traceback (most recent call last):
        ...
        safegene_jax.core.errors.ConfigError: --out ... is a folder; give a file path (the folder is left as it is)
    """
    from safegene_jax.core import storage
    from safegene_jax.core.errors import ConfigError

    if storage.is_remote(dest):
        target = storage.remote(dest, what)
        if target.is_dir():
            raise ConfigError(f"{what} {dest} is a folder; give a file path (the folder is left as it is)")
        return target
    dest = storage.local_path(dest)
    if dest.is_dir():
        raise ConfigError(f"{what} {dest} is a folder; give a file path (the folder is left as it is)")
    if dest.exists() and ours is not None and not overwrite and not ours(dest):
        raise ConfigError(
            f"{what} {dest} exists and is not {kind or 'a file safegene_jax wrote'}; choose another path, or pass "
            "--overwrite (overwrite=True) to replace it"
        )
    _check_parent(dest, what)
    return dest


def swap_into_place(tmp: str | os.PathLike, dest: str | os.PathLike) -> pathlib.Path:
    """Makes the finished folder ``tmp`` become ``dest``; at no moment is there neither the old nor the new
    ``dest`` (an atomic exchange where the OS has one; else the old copy is kept as ``.NAME.old-*`` until the
    new one is in place, and :func:`recover` puts it back after a kill). Marks the folder and gives it the
    usual modes."""
    import shutil

    tmp, dest = pathlib.Path(tmp), pathlib.Path(dest)
    (tmp / MARKER).write_text(_MARKER_TEXT)
    usual_modes(tmp)
    if not dest.exists():
        tmp.rename(dest)
        return dest
    if _exchange(tmp, dest):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old version
        return dest
    holder = temp_sibling(dest, "old")
    dest.rename(holder / "old")
    tmp.rename(dest)
    shutil.rmtree(holder, ignore_errors=True)
    return dest


def write_folder(dest: str | os.PathLike, fill, *, overwrite: bool = False, what: str = "output") -> pathlib.Path:
    """Writes a folder whole: checks ``dest`` (:func:`check_destination`), cleans what killed writes left,
    calls ``fill(tmp)`` on a new sibling folder, and swaps it into place; the previous ``dest`` stays intact
    until the new one is complete, and nothing is left behind if ``fill`` fails.

    A remote ``dest`` is filled in a local temporary folder and published
    (:func:`safegene_jax.core.storage.publish_folder`). With several processes, process 0 alone fills and
    writes; the others check ``dest`` too and wait for it.

    Example:
        >>> import tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> out = write_folder(root / "m", lambda tmp: (tmp / "a.txt").write_text("new"))
        >>> sorted(p.name for p in out.iterdir()), sorted(p.name for p in root.iterdir())
        (['.safegene', 'a.txt'], ['m'])
    """
    import shutil
    import tempfile

    from safegene_jax.core import storage

    dest = check_destination(dest, overwrite=overwrite, what=what)
    if not storage.is_writer(dest):
        storage.barrier(f"write_folder {dest}")
        return dest
    try:
        if storage.is_remote(dest):
            tmp = pathlib.Path(tempfile.mkdtemp(prefix=".safegene-upload-"))
            try:
                fill(tmp)
                (tmp / MARKER).write_text(_MARKER_TEXT)
                return storage.publish_folder(tmp, dest, overwrite=True, what=what)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        recover(dest)
        tmp = temp_sibling(dest)
        try:
            fill(tmp)
            return swap_into_place(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        storage.barrier(f"write_folder {dest}")


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Writes ``text`` (UTF-8) beside ``path`` and renames it into place: a killed write leaves the previous
    file whole. Creates the parent folder; the file gets the usual mode. Returns the path. A remote ``path``
    is uploaded in one piece; with several processes, process 0 alone writes.

    Example:
        >>> import tempfile
        >>> write_text(pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt", "hi").read_text()
        'hi'
    """
    import tempfile

    from safegene_jax.core import storage

    if not storage.is_writer(path):
        return storage.remote(path) if storage.is_remote(path) else storage.local_path(path)
    if storage.is_remote(path):
        fd, tmp = tempfile.mkstemp(suffix=".txt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            return storage.publish_file(tmp, path)
        finally:
            os.unlink(tmp)
    path = storage.local_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        usual_modes(tmp)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path

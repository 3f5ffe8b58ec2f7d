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

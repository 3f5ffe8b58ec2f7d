"""A ``gs://`` backend for tests: an fsspec filesystem that keeps a bucket's objects in a temporary folder.

``etils.epath`` reaches ``gs://`` through fsspec's ``gcs`` protocol (gcsfs in real use). Registering this
class for ``gs``/``gcs`` makes every ``gs://BUCKET/KEY`` live at ``ROOT/BUCKET/KEY``, so the library's remote
code runs unchanged and the test can look at what landed in the "bucket".
"""

from __future__ import annotations

import contextlib
import pathlib

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import stringify_path


class FolderBucket(LocalFileSystem):
    """``gs://`` paths mapped into ``root`` (a subclass sets it)."""

    protocol = ("gs", "gcs")
    root: pathlib.Path = pathlib.Path("/nonexistent")

    @classmethod
    def _strip_protocol(cls, path):
        path = stringify_path(path)
        for prefix in ("gs://", "gcs://"):
            if path.startswith(prefix):
                return f"{cls.root}/{path[len(prefix) :]}".rstrip("/")
        return LocalFileSystem._strip_protocol.__func__(cls, path)


@contextlib.contextmanager
def folder_bucket(root: pathlib.Path):
    """Registers :class:`FolderBucket` on ``root`` for ``gs://`` while the context lasts."""
    from etils.epath import backend
    from fsspec.registry import _registry

    cls = type("TempFolderBucket", (FolderBucket,), {"root": pathlib.Path(root), "cachable": False})
    saved = {k: _registry.get(k) for k in ("gs", "gcs")}
    for proto in ("gs", "gcs"):
        fsspec.register_implementation(proto, cls, clobber=True)
    backend.fsspec_backend._get_filesystem.cache_clear()
    try:
        yield pathlib.Path(root)
    finally:
        for proto, old in saved.items():
            if old is None:
                _registry.pop(proto, None)
            else:
                _registry[proto] = old
        backend.fsspec_backend._get_filesystem.cache_clear()

"""``load(name, split=...)``: every dataset the configs name, as a random-access sequence of plain records.

Public sets go through their TFDS builders (prepared once into ``data_dir`` as array_record, then read
with ``as_data_source()``); ``embedded/...`` sets come from the package itself.

Where the files come from, in order: ``manual_dir=`` (a folder holding the dataset's files); the
folder for the dataset under ``$SAFEGENE_DATA_ROOT`` (a root laid out like the project's shared data,
``<root>/advbench/harmful_behaviors.csv``, ...); the dataset's public download address.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from safegene_jax.core.errors import DataError
from safegene_jax.data import embedded
from safegene_jax.data.code_requests import harmful_code, safe_code
from safegene_jax.data.safe_contrast import safe_contrast
from safegene_jax.data.tasks import TASKS

EMBEDDED = {
    "embedded/harmful": embedded.harmful,
    "embedded/benign": embedded.benign,
    "embedded/safe-contrast": safe_contrast,
    "embedded/harmful-code": harmful_code,
    "embedded/safe-code": safe_code,
    **{f"embedded/task/{t}": (lambda split, t=t: embedded.task(t, split)) for t in TASKS},
}


def names() -> list[str]:
    """Every name :func:`load` accepts."""
    from safegene_jax.data.builders import BUILDERS

    return sorted(BUILDERS) + sorted(EMBEDDED)


def default_data_dir() -> pathlib.Path:
    """Where prepared TFDS data goes: ``$SAFEGENE_TFDS_DIR`` or ``~/.cache/safegene_jax/tfds``."""
    return pathlib.Path(os.environ.get("SAFEGENE_TFDS_DIR", pathlib.Path.home() / ".cache" / "safegene_jax" / "tfds"))


class Records(Sequence):
    """Random access to a TFDS data source, decoded to ``str``/``int`` (class labels also as ``<name>_name``)."""

    def __init__(self, source: Any, class_names: dict[str, list[str]]):
        self._source = source
        self._class_names = class_names

    def __len__(self) -> int:
        return len(self._source)

    def _decode(self, rec: dict) -> dict:
        out = {}
        for key, value in rec.items():
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            elif isinstance(value, np.generic | np.ndarray) and np.ndim(value) == 0:
                value = value.item()
            out[key] = value
            if key in self._class_names:
                out[f"{key}_name"] = self._class_names[key][value]
        return out

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        return self._decode(self._source[index])


def load(
    name: str,
    split: str = "train",
    *,
    manual_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
) -> Sequence[dict]:
    """Records of one split of a dataset.

    Args:
        name: e.g. ``advbench``, ``xstest``, ``gsm8k``, ``safety_tuned_llamas/I-CoNa``, ``embedded/harmful``,
            ``embedded/task/arithmetic`` (see :func:`names`).
        split: ``train``, ``test``, ``validation``, or for embedded sets ``probe``/``fewshot``/``eval``.
        manual_dir: folder with the dataset's files, for offline use.
        data_dir: where TFDS keeps prepared data (default :func:`default_data_dir`).
        rebuild: prepare again even if prepared data exists (after the source files changed).

    Raises:
        DataError: an unknown name or split (the message lists the valid ones), or files that are neither in
            ``manual_dir`` nor downloadable (the message says which files).
    """
    if name in EMBEDDED:
        return EMBEDDED[name](split)
    try:
        import tensorflow_datasets as tfds

        from safegene_jax.data.builders import BUILDERS
    except ImportError as e:
        raise DataError(
            f"{name}: public datasets are read through TFDS, which is not installed ({e}); "
            "install the data extra: pip install 'safegene_jax[data]'"
        ) from None
    if name not in BUILDERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(names())}")

    builder_cls, config, folder = BUILDERS[name]
    root_note = ""  # why $SAFEGENE_DATA_ROOT did not provide the files, said when they cannot be found at all
    if manual_dir is None and os.environ.get("SAFEGENE_DATA_ROOT"):
        root = pathlib.Path(os.environ["SAFEGENE_DATA_ROOT"])
        candidate = root / folder
        manual_dir = candidate if candidate.is_dir() else None
        if manual_dir is None:
            where = "does not exist" if not root.exists() else f"has no {folder}/ folder"
            root_note = f"SAFEGENE_DATA_ROOT={root} {where}; "
    kwargs = {"config": config} if config else {}
    base = pathlib.Path(data_dir or default_data_dir())
    probe = builder_cls(data_dir=str(base), file_format="array_record", **kwargs)
    files = [pathlib.Path(manual_dir) / f for f in probe.FILES.values()] if manual_dir is not None else []
    if files and all(f.exists() for f in files):
        # prepared data is kept per source files, so other or changed files are prepared anew
        stamp = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        base = base / f"manual-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}"
    else:
        base = base / "download"
    builder = builder_cls(data_dir=str(base), file_format="array_record", **kwargs)
    splits = list(builder.FILES) if not builder.URLS else sorted(set(builder.FILES) | set(builder.URLS))
    if split not in splits:
        raise DataError(f"{name} has no split {split!r}; splits: {', '.join(splits)}")
    if rebuild:
        import shutil

        shutil.rmtree(builder.data_dir, ignore_errors=True)
    if not builder.is_prepared() or rebuild:
        config_kwargs = {"download_mode": tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS}
        if manual_dir is not None:
            config_kwargs["manual_dir"] = str(manual_dir)
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(**config_kwargs))
        except DataError as e:
            if root_note:
                raise DataError(f"{root_note}{e}") from None
            raise
        except Exception as e:  # tfds wraps our errors in its own
            cause = e
            while cause.__cause__ is not None and not isinstance(cause, DataError):
                cause = cause.__cause__
            if isinstance(cause, DataError):
                raise DataError(f"{root_note}{cause}") from None
            raise DataError(f"{root_note}{name}: could not prepare the dataset: {e}") from e
    if split not in builder.info.splits:
        raise DataError(f"{name} has no split {split!r} prepared; prepared: {', '.join(builder.info.splits)}")
    features = builder.info.features
    class_names = {k: features[k].names for k in features.keys() if isinstance(features[k], tfds.features.ClassLabel)}
    return Records(builder.as_data_source(split=split), class_names)

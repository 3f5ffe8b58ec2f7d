"""Disk-to-disk arithmetic on safetensors folders, one tensor at a time.

``apply`` (task + the adapter's coefficients times its vector), ``extract`` (aligned - degraded over some layers)
and task arithmetic (task + c * (aligned - degraded)) read, combine and write tensor by tensor, so peak memory is
about one tensor per input plus the adapter's part for that tensor, whatever the model's size. The output keeps
the input's files (one file, or shards with an index, with the same names), tensor order and dtype; it is
written beside the destination and swapped into place (:func:`safegene_jax.core.files.write_folder`).

The safetensors format is read and written here directly (an 8-byte little-endian header length, a JSON header
of ``{name: {dtype, shape, data_offsets}}``, then the bytes): the header of an output file is known before any
tensor is computed, because arithmetic keeps every shape (and dtype, unless cast), so each tensor is written as
soon as it is made. The inputs are checked as the loader checks them, before anything is read or written: the
index by :func:`safegene_jax.models.hf.shard_files` (a shard outside the folder, an absolute path or ``..``, or a
missing one is an error), and each folder's headers against its ``config.json`` by
:func:`safegene_jax.models.loading.check_tensors`, so a folder that does not fit its config is refused, not
copied through.

Example::

    adapter = SafetyAdapter.load("adapters/smollm2")
    stream_apply("runs/task", adapter, "runs/safe", coeffs=recal.coeffs)   # = safegene apply, in O(1 tensor)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from safegene_jax.core.errors import CheckpointError, ConfigError, IncompatibleAdapterError, NonFiniteError
from safegene_jax.core.files import write_folder
from safegene_jax.core.layers import layout
from safegene_jax.core.lowrank import LowRank
from safegene_jax.models.hf import INDEX, shard_files
from safegene_jax.models.loading import check_tensors, nnx_to_hf_name

DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
"""safetensors dtype codes and their numpy dtypes."""

_CODES = {v: k for k, v in DTYPES.items()}
_FLOAT = ("F64", "F32", "F16", "BF16")
_MAX_HEADER = 100 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors file: its name, file, dtype code, shape and byte range in the file."""

    name: str
    file: pathlib.Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(file: str | os.PathLike) -> tuple[list[Entry], dict]:
    """The tensors of one safetensors file (in file order) and its ``__metadata__``.

    Raises:
        CheckpointError: a truncated file, a header that is not JSON, an unknown dtype, or a byte range outside
            the file or not matching its shape, each naming the file.
    """
    file = pathlib.Path(file)
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{file}: truncated safetensors file ({size} bytes, no header)")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _MAX_HEADER):
            raise CheckpointError(f"{file}: safetensors header of {n} bytes does not fit in the file ({size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{file}: the safetensors header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: the safetensors header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    entries = []
    for name, info in header.items():
        try:
            code, shape, (lo, hi) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{file}: tensor {name!r} has a malformed header entry") from None
        if code not in DTYPES:
            raise CheckpointError(f"{file}: tensor {name!r} has dtype {code!r}, which is not read here")
        want = int(np.prod(shape, dtype=np.int64)) * DTYPES[code].itemsize
        if not (0 <= lo <= hi and base + hi <= size and hi - lo == want):
            raise CheckpointError(f"{file}: tensor {name!r} has a byte range outside the file or not of its shape")
        entries.append(Entry(name, file, code, shape, base + lo, base + hi))
    entries.sort(key=lambda e: e.start)
    return entries, meta


def folder_entries(folder: str | os.PathLike) -> list[Entry]:
    """Every tensor of a folder, file by file, in file order; a name in two files is an error."""
    out, seen = [], set()
    for file in shard_files(folder):
        entries, _ = read_header(file)
        for e in entries:
            if e.name in seen:
                raise CheckpointError(f"{folder}: tensor {e.name!r} is in two files")
            seen.add(e.name)
        out += entries
    return out


def read_tensor(entry: Entry) -> np.ndarray:
    """One tensor's values (a fresh array; only its bytes are read)."""
    with open(entry.file, "rb") as f:
        f.seek(entry.start)
        buf = f.read(entry.nbytes)
    if len(buf) != entry.nbytes:
        raise CheckpointError(f"{entry.file}: tensor {entry.name!r} is cut short")
    return np.frombuffer(buf, DTYPES[entry.dtype]).reshape(entry.shape).copy()


BLOCK_BYTES = 8 * 1024 * 1024
"""Tensors are combined in blocks of rows of about this many float32 bytes, so the arithmetic's temporaries stay
small whatever the tensor's size (the operations are elementwise: blocks give the same bits)."""


def row_blocks(entry: Entry) -> Iterator[tuple[int, int]]:
    """``(lo, hi)`` row ranges (along the first axis) covering ``entry`` in blocks of about :data:`BLOCK_BYTES`."""
    rows = entry.shape[0] if entry.shape else 1
    per_row = max(1, int(np.prod(entry.shape[1:], dtype=np.int64))) * 4
    step = max(1, BLOCK_BYTES // per_row)
    for lo in range(0, rows, step):
        yield lo, min(rows, lo + step)
    if rows == 0:
        yield 0, 0


def read_rows(entry: Entry, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of a tensor (its first axis), reading only their bytes; the whole of a 0-d tensor."""
    if not entry.shape:
        return read_tensor(entry)
    row = int(np.prod(entry.shape[1:], dtype=np.int64)) * DTYPES[entry.dtype].itemsize
    with open(entry.file, "rb") as f:
        f.seek(entry.start + lo * row)
        buf = f.read((hi - lo) * row)
    if len(buf) != (hi - lo) * row:
        raise CheckpointError(f"{entry.file}: tensor {entry.name!r} is cut short")
    return np.frombuffer(buf, DTYPES[entry.dtype]).reshape((hi - lo, *entry.shape[1:])).copy()


def _write_file(
    path: pathlib.Path,
    plan: Sequence[tuple[Entry, str]],
    make: Callable[[Entry], Iterator[np.ndarray]],
    advance: Callable[[int], Any] = lambda n: None,
) -> int:
    """Writes one safetensors file whose tensors are ``plan`` (entry, output dtype code), each made by
    ``make(entry)`` (its blocks of rows, in order) only when its turn comes; ``advance(bytes)`` after each block.
    Returns the bytes of tensor data."""
    header, offset = {}, 0
    for e, code in plan:
        n = int(np.prod(e.shape, dtype=np.int64)) * DTYPES[code].itemsize
        header[e.name] = {"dtype": code, "shape": list(e.shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for e, code in plan:
            written = 0
            for block in make(e):
                arr = np.ascontiguousarray(block)
                if arr.dtype != DTYPES[code]:  # pragma: no cover - a bug in the caller
                    raise ValueError(f"{e.name}: made {arr.dtype}, expected {DTYPES[code]}")
                f.write(arr.tobytes())
                written += arr.size
                advance(arr.nbytes)
            if written != int(np.prod(e.shape, dtype=np.int64)):  # pragma: no cover - a bug in the caller
                raise ValueError(f"{e.name}: made {written} values, expected shape {e.shape}")
    return offset


def transform_folder(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    fn: Callable[[str, np.ndarray, int, int], np.ndarray],
    *,
    dtype: str | None = None,
    extra_files: dict[str, str] | None = None,
    overwrite: bool = False,
    progress: str | None = None,
) -> pathlib.Path:
    """Writes a copy of the model folder ``src`` at ``dest`` with every tensor replaced, block of rows by block
    of rows, by ``fn(name, rows, lo, hi)`` (``rows``: the tensor's rows ``lo:hi``; the result has their shape and
    is cast back to the stored dtype, or to ``dtype`` for floating-point tensors); the other files (config,
    tokenizer, ...) are copied, ``extra_files`` (``{name: text}``) added. ``progress``: a label for a progress
    bar over the bytes written (shown on a terminal only).

    Raises:
        CheckpointError: a damaged or unsafe source (see :func:`shard_files`, :func:`read_header`).
        ConfigError: an unknown ``dtype``, or a destination that is someone else's folder.
    """
    src = pathlib.Path(src)
    if dtype is not None and dtype not in ("float32", "float16", "bfloat16"):
        raise ConfigError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    out_code = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}.get(dtype or "")
    files = shard_files(src)
    per_file = {f: read_header(f)[0] for f in files}
    index_path = src / INDEX

    def fill(tmp: pathlib.Path) -> None:
        from tqdm.auto import tqdm

        weight_map, total = {}, 0
        plans = {
            f: [(e, out_code if out_code and e.dtype in _FLOAT else e.dtype) for e in entries]
            for f, entries in per_file.items()
        }
        size = sum(int(np.prod(e.shape, dtype=np.int64)) * DTYPES[c].itemsize for p in plans.values() for e, c in p)
        bar = tqdm(
            total=size, desc=progress, unit="B", unit_scale=True, leave=False, disable=None if progress else True
        )
        try:
            for file, entries in per_file.items():
                plan = plans[file]
                total += _write_file(tmp / file.name, plan, _maker(fn, dict((e.name, c) for e, c in plan)), bar.update)
                weight_map.update({e.name: file.name for e in entries})
        finally:
            bar.close()
        if index_path.exists():
            (tmp / INDEX).write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
            )
        for item in sorted(src.iterdir()):
            skip = item.suffix == ".safetensors" or item.name in (INDEX, ".safegene") or item.name.startswith(".")
            if skip or item.name in (extra_files or {}):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        if dtype is not None and (tmp / "config.json").exists():
            config = json.loads((tmp / "config.json").read_text())
            config["dtype"] = dtype
            config.pop("torch_dtype", None)
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")

    return write_folder(dest, fill, overwrite=overwrite, what="output")


def _maker(
    fn: Callable[[str, np.ndarray, int, int], np.ndarray], codes: dict[str, str]
) -> Callable[[Entry], Iterator[np.ndarray]]:
    """``make(entry)``: the entry's blocks of rows, each read, passed through ``fn`` and cast to its output
    dtype."""

    def make(e: Entry) -> Iterator[np.ndarray]:
        for lo, hi in row_blocks(e):
            yield np.asarray(fn(e.name, read_rows(e, lo, hi), lo, hi)).astype(DTYPES[codes[e.name]], copy=False)

    return make


@jax.jit
def _combine(x, parts, coeffs):
    """``x + sum_i coeffs_i * parts_i`` in float32, back in ``x``'s dtype (the in-memory apply's arithmetic)."""
    acc = x.astype(jnp.float32)
    for c, v in zip(coeffs, parts):
        acc = acc + c * v.astype(jnp.float32)
    return acc.astype(x.dtype)


def _dense(leaf: Any) -> np.ndarray:
    if isinstance(leaf, LowRank):
        return np.asarray(jnp.reshape(jnp.matmul(leaf.left, leaf.right), leaf.shape))
    return np.asarray(leaf)


def _checked_config(folder: pathlib.Path) -> Any:
    """The folder's ``config.json`` read and checked as the loader reads it (``None`` without one): a damaged
    config fails before any tensor is written, instead of being copied into the output."""
    if not (folder / "config.json").exists():
        return None
    from safegene_jax.models.hf import read_config

    return read_config(folder)


def _checked_fit(folder: Any, entries: Iterable[Entry]) -> Any:
    """The folder's config (see :func:`_checked_config`), its tensors checked by their headers to fit it as the
    loader checks them: missing, unexpected or wrongly shaped tensors are a :class:`CheckpointError` naming them."""
    config = _checked_config(pathlib.Path(folder))
    if config is not None:
        check_tensors(config, [(e.name, e.shape) for e in entries], str(folder))
    return config


def _check_float(entries: Iterable[Entry], folder: Any) -> None:
    """Raises :class:`CheckpointError` for the first tensor that is not floating point: model weights are, and
    the arithmetic would silently round an integer tensor (the in-memory loader refuses such checkpoints too)."""
    for e in entries:
        if e.dtype not in _FLOAT:
            raise CheckpointError(
                f"{folder}: tensor {e.name!r} is stored as {e.dtype}; model weights must be floating point "
                f"({', '.join(_FLOAT)})"
            )


def _check_finite(name: str, x: np.ndarray, source: Any) -> None:
    if np.issubdtype(x.dtype, np.floating) or x.dtype == DTYPES["BF16"]:
        if not np.isfinite(x.astype(np.float32)).all():
            raise NonFiniteError(
                f"tensor {name!r} of {source} holds NaN or inf; nothing was written (pass --allow-nonfinite to go on)"
            )


def _adapter_plan(adapter: Any, coeffs: Any) -> dict[str, tuple[Any, bool, float]]:
    """``{HF tensor name: (adapter leaf, transpose, coefficient)}`` of the adapter at ``coeffs``."""
    paths = list(adapter.vector)
    lay = layout(paths, [tuple(v.shape) for v in adapter.vector.values()])
    c = np.asarray(adapter.coeffs if coeffs is None else coeffs, np.float32)
    plan = {}
    for path, place in zip(paths, lay.leaves):
        if place.stacked or place.layer is None:
            raise IncompatibleAdapterError(
                f"adapter leaf {path!r} is not one layer's: streaming needs per-layer leaves"
            )
        coeff = c[place.layer] if c.ndim == 1 else c[place.layer, place.kind]
        name, transpose = nnx_to_hf_name(path)
        plan[name] = (adapter.vector[path], transpose, float(coeff))
    return plan


def stream_apply(
    task_folder: str | os.PathLike,
    adapter: Any,
    out: str | os.PathLike,
    *,
    coeffs: Any = None,
    dtype: str | None = None,
    check_finite: bool = True,
    extra_files: dict[str, str] | None = None,
    overwrite: bool = False,
    progress: str | None = None,
) -> pathlib.Path:
    """``adapter.apply(task, coeffs)`` from the task model's folder to ``out``, one tensor at a time: the same
    values as the in-memory path (bit for bit), at the memory of one tensor plus its adapter part.

    Raises:
        CheckpointError: a damaged task folder, or one whose tensors do not fit its ``config.json``.
        IncompatibleAdapterError: an adapter tensor the task folder lacks or has in another shape, or a model
            with another layer count (checked on the headers, before anything is written).
        NonFiniteError: NaN or inf in a task tensor (unless ``check_finite=False``); nothing is written.
    """
    task_folder = pathlib.Path(task_folder)
    entries = {e.name: e for e in folder_entries(task_folder)}
    _check_float(entries.values(), task_folder)
    config = _checked_fit(task_folder, entries.values())
    plan = _adapter_plan(adapter, coeffs)
    layers = (adapter.metadata.get("architecture") or {}).get("num_layers")
    if layers and config is not None and config.num_hidden_layers != int(layers):
        found = config.num_hidden_layers
        raise IncompatibleAdapterError(f"adapter is for a {layers}-layer model, {task_folder} has {found} layers")
    for name, (leaf, transpose, _) in plan.items():
        if name not in entries:
            raise IncompatibleAdapterError(f"adapter tensor {name!r} is not in {task_folder} (another architecture?)")
        want = tuple(reversed(leaf.shape)) if transpose else tuple(leaf.shape)
        if entries[name].shape != want:
            raise IncompatibleAdapterError(
                f"adapter tensor {name!r} has shape {want}, {task_folder} has {entries[name].shape}"
            )

    current: dict[str, np.ndarray] = {}  # the dense delta of the tensor being written, in HF layout

    def fn(name: str, x: np.ndarray, lo: int, hi: int) -> np.ndarray:
        if check_finite:
            _check_finite(name, x, task_folder)
        if name not in plan:
            return x
        leaf, transpose, c = plan[name]
        if name not in current:
            current.clear()
            d = _dense(leaf)
            current[name] = d.T if transpose else d
        d = current[name]
        return np.asarray(_combine(x, [np.ascontiguousarray(d[lo:hi] if d.ndim else d)], [np.float32(c)]))

    return transform_folder(
        task_folder, out, fn, dtype=dtype, extra_files=extra_files, overwrite=overwrite, progress=progress
    )


def stream_task_arithmetic(
    task_folder: str | os.PathLike,
    aligned_folder: str | os.PathLike,
    degraded_folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    coeff: float = 1.0,
    layers: Sequence[int] | None = None,
    overwrite: bool = False,
    progress: str | None = None,
) -> pathlib.Path:
    """``task + coeff * (aligned - degraded)`` on the transformer-layer tensors (all, or ``layers``), disk to
    disk, three tensors in memory at a time; the rest is the task model's.

    Raises:
        CheckpointError: a damaged folder, one whose tensors do not fit its ``config.json``, or a tensor of the
            task model missing from, or shaped differently in, another model.
    """
    task_folder = pathlib.Path(task_folder)
    aligned, degraded = ({e.name: e for e in folder_entries(f)} for f in (aligned_folder, degraded_folder))
    keep = None if layers is None else {int(i) for i in layers}
    task_entries = folder_entries(task_folder)
    _check_float(task_entries, task_folder)
    _check_float(aligned.values(), aligned_folder)
    _check_float(degraded.values(), degraded_folder)
    config = _checked_fit(task_folder, task_entries)
    _checked_fit(aligned_folder, aligned.values())
    _checked_fit(degraded_folder, degraded.values())
    names = {e.name for e in task_entries}
    for other, where in ((aligned, aligned_folder), (degraded, degraded_folder)):
        extra = sorted(n for n in other if _layer_of(n) is not None and n not in names)
        if extra:
            raise CheckpointError(
                f"tensor {extra[0]!r} of {where} is not in {task_folder}: the models differ in architecture or size"
            )
    if keep is not None and config is not None:
        bad = sorted(i for i in keep if not 0 <= i < config.num_hidden_layers)
        if bad:
            raise ConfigError(
                f"layers: layer {bad[0]} is out of range for the {config.num_hidden_layers}-layer model {task_folder}"
            )
    for e in task_entries:
        if _layer_of(e.name) is None:
            continue
        for other, where in ((aligned, aligned_folder), (degraded, degraded_folder)):
            if e.name not in other or other[e.name].shape != e.shape:
                raise CheckpointError(f"tensor {e.name!r} of {task_folder} is missing or shaped differently in {where}")

    def fn(name: str, x: np.ndarray, lo: int, hi: int) -> np.ndarray:
        layer = _layer_of(name)
        if layer is None or (keep is not None and layer not in keep):
            return x
        a, d = read_rows(aligned[name], lo, hi), read_rows(degraded[name], lo, hi)
        return np.asarray(_combine(x, [a.astype(np.float32) - d.astype(np.float32)], [np.float32(coeff)]))

    return transform_folder(task_folder, out, fn, overwrite=overwrite, progress=progress)


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def iter_tensors(folder: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, values)`` of every tensor of a folder, one at a time (for comparisons and checks)."""
    for e in folder_entries(folder):
        yield e.name, read_tensor(e)


def stream_extract(
    aligned_folder: str | os.PathLike,
    degraded_folder: str | os.PathLike,
    layers: Sequence[int] | None = None,
    *,
    rank: int | None = None,
    family: str = "",
    check_finite: bool = True,
) -> Any:
    """The :class:`~safegene_jax.method.SafetyAdapter` of ``aligned - degraded`` over ``layers`` (default all),
    read from the two folders one tensor pair at a time: the same adapter as
    :meth:`SafetyAdapter.build` on the loaded models (the same values, bit for bit), holding in memory only
    the vector itself, never the two models.

    Raises:
        IncompatibleAdapterError: the two folders are models of different configurations.
        CheckpointError: a folder whose tensors do not fit its config.
        NonFiniteError: NaN or inf in a difference (unless ``check_finite=False``).
    """
    from safegene_jax.method.adapter import SafetyAdapter, architecture_signature, model_type_of
    from safegene_jax.models.loading import abstract_model, map_name

    folders = [pathlib.Path(aligned_folder), pathlib.Path(degraded_folder)]
    entries = [{e.name: e for e in folder_entries(f)} for f in folders]
    configs = []
    for folder, found in zip(folders, entries):
        _check_float(found.values(), folder)
        config = _checked_fit(folder, found.values())
        if config is None:
            raise CheckpointError(f"{folder} has no config.json")
        configs.append(config)
    a_cfg, d_cfg = ({k: v for k, v in c.to_hf_dict().items() if k not in ("dtype", "torch_dtype")} for c in configs)
    if a_cfg != d_cfg:
        key = next(k for k in sorted(set(a_cfg) | set(d_cfg)) if a_cfg.get(k) != d_cfg.get(k))
        raise IncompatibleAdapterError(
            f"{folders[0]} and {folders[1]} are different models ({key}: {a_cfg.get(key)!r} vs {d_cfg.get(key)!r})"
        )
    config = configs[0]
    total = config.num_hidden_layers
    keep = set(range(total)) if layers is None else {int(i) for i in layers}
    bad = sorted(i for i in keep if not 0 <= i < total)
    if bad:
        raise ConfigError(f"layers: layer {bad[0]} is out of range for a {total}-layer model")
    _, abstract = abstract_model(config)
    vector = {}
    for name, entry in entries[0].items():
        mapped = map_name(name)
        if mapped is None or _layer_of(name) not in keep:
            continue
        path, transform = mapped
        a = read_tensor(entry).astype(np.float32)
        d = read_tensor(entries[1][name]).astype(np.float32)
        v = np.asarray(transform(a - d))
        if check_finite and not np.isfinite(v).all():
            raise NonFiniteError(
                f"tensor {name!r}: aligned - degraded holds NaN or inf; pass check_finite=False to allow them"
            )
        vector[path] = v
    return SafetyAdapter.from_vector(
        vector,
        sorted(keep),
        architecture_signature(abstract),
        model_type=model_type_of(abstract),  # as build() names it from the loaded params
        rank=rank,
        family=family,
        sources={"aligned": str(folders[0]), "degraded": str(folders[1])},
    )

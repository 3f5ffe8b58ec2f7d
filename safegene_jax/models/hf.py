"""Hugging Face folders: load (one or many safetensors files), export (config + safetensors).

Example:
    >>> import tempfile, jax.numpy as jnp
    >>> from flax import nnx
    >>> from safegene_jax.models.config import LlamaConfig
    >>> from safegene_jax.models.llama import LlamaForCausalLM
    >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=4, num_key_value_heads=2, head_dim=4)
    >>> folder = tempfile.mkdtemp()
    >>> _ = export_hf(LlamaForCausalLM(cfg, rngs=nnx.Rngs(0)), folder)
    >>> model, cfg2 = load_hf_folder(folder)
    >>> cfg2 == cfg
    True
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from safegene_jax.core.errors import CheckpointError, ConfigError
from safegene_jax.core.files import check_destination, write_folder
from safegene_jax.core.host import to_host
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.models.config import LlamaConfig
from safegene_jax.models.loading import SourceTensor, build_model, nnx_to_hf_name

INDEX = "model.safetensors.index.json"
"""The file that lists a sharded checkpoint's files (``weight_map``: tensor name -> file name)."""


def shard_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """The safetensors files of a model folder: those its index names, or its ``*.safetensors`` files.

    An index must be a JSON object whose ``weight_map`` maps tensor names to file names, each a file beside the
    index: an absolute path, ``..`` or a sub-folder is refused (an untrusted index must not make us read
    elsewhere), and so is a listed file that is not there.

    Raises:
        CheckpointError: a damaged index, a file outside the folder or missing, or no safetensors file at all.
    """
    folder = pathlib.Path(folder)
    index = folder / INDEX
    if not index.exists():
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"no *.safetensors file in {folder} (only safetensors weights are loaded; no pickle)")
        return files
    what = "not an index of safetensors shards (a JSON object whose weight_map maps tensor names to file names)"
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{index}: {what}; it does not parse ({_first_line(e)})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise CheckpointError(f"{index}: {what}")
    names = sorted(set(weight_map.values()))
    if not names:
        raise CheckpointError(f"{index}: its weight_map is empty; {what}")
    for name in names:
        rel = pathlib.PurePath(name)
        if rel.is_absolute() or len(rel.parts) != 1 or rel.parts[0] in (".", ".."):
            raise CheckpointError(
                f"{index} names {name!r}, a file outside the model folder; refused (shards must lie beside the index)"
            )
    absent = [name for name in names if not (folder / name).is_file()]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise CheckpointError(f"{index} lists shard {absent[0]!r}, which is not in {folder}{more}")
    return [folder / name for name in names]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _unreadable(file: pathlib.Path, e: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{file}: not a readable safetensors file: {_first_line(e)}; re-download or re-export the model"
    )


_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}
"""safetensors dtype codes and their numpy names (another code is kept, lowercased: ``f8_e4m3``, ...)."""


def _read_tensor(file: pathlib.Path, name: str) -> np.ndarray:
    try:
        with safe_open(file, framework="numpy") as g:
            return g.get_tensor(name)
    except (SafetensorError, OSError) as e:
        raise _unreadable(file, e) from None


def read_tensors(folder: str | os.PathLike) -> list[SourceTensor]:
    """Every tensor of a folder's safetensors files, with shapes and dtypes read from the headers only.

    Raises:
        CheckpointError: a damaged index or file (see :func:`shard_files`; truncated, empty, a header that is not
            JSON or does not fit the file, byte ranges past the end or not of the tensor's size), or a tensor name
            in two files, naming the file.
    """
    out: list[SourceTensor] = []
    seen: dict[str, pathlib.Path] = {}
    for file in shard_files(folder):
        try:
            with safe_open(file, framework="numpy") as f:
                for name in f.keys():
                    if name in seen:
                        raise CheckpointError(f"tensor {name!r} is in two files of {folder}: {seen[name]} and {file}")
                    seen[name] = file
                    piece = f.get_slice(name)
                    code = piece.get_dtype()
                    dtype = _SAFETENSORS_DTYPES.get(code, code.lower())
                    out.append(
                        SourceTensor(name, tuple(piece.get_shape()), functools.partial(_read_tensor, file, name), dtype)
                    )
        except (SafetensorError, OSError) as e:
            raise _unreadable(file, e) from None
    return out


def read_config(folder: str | os.PathLike) -> LlamaConfig:
    """The folder's ``config.json`` as a config, every key checked (a :class:`ConfigError` names the file)."""
    path = pathlib.Path(folder) / "config.json"
    if not path.exists():
        raise ConfigError(f"{folder} has no config.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON: {_first_line(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object (a Hugging Face config), got {type(data).__name__}")
    return LlamaConfig.from_hf_dict(data, str(path))


def load_hf_folder(
    folder: str | os.PathLike, *, dtype: Any = jnp.float32, param_dtype: Any = None, mesh: Any = None, rules: Any = None
):
    """``(model, config)`` from a local Hugging Face folder (config.json + safetensors)."""
    cfg = read_config(folder)
    kwargs = {"rules": rules} if rules is not None else {}
    model = build_model(
        cfg, read_tensors(folder), dtype=dtype, param_dtype=param_dtype, mesh=mesh, source=str(folder), **kwargs
    )
    return model, cfg


def hf_state_dict(params: Any, dtype: Any = None) -> dict[str, np.ndarray]:
    """Our params (NNX State, model or pure dict) as Hugging Face-named numpy arrays, gathered to host."""
    if isinstance(params, nnx.Module):
        params = nnx.state(params, nnx.Param)
    paths, leaves, _ = flatten_with_paths(params)
    out = {}
    for path, leaf in zip(paths, leaves):
        name, transpose = nnx_to_hf_name(path)
        arr = to_host(leaf)
        if dtype is not None:
            arr = arr.astype(jnp.dtype(dtype))
        out[name] = np.ascontiguousarray(arr.T if transpose else arr)
    return out


def export_hf(
    model_or_params: Any,
    out_dir: str | os.PathLike,
    *,
    config: LlamaConfig | None = None,
    tokenizer: Any = None,
    dtype: Any = None,
    max_shard_bytes: int = 2 * 1024**3,
    card: str | None = None,
    extra_files: dict[str, str] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes a Hugging Face folder (config.json, safetensors shards + index, tokenizer) atomically.

    Args:
        model_or_params: a :class:`LlamaForCausalLM`, or its params (then ``config`` is required).
        out_dir: destination folder; replaced only once the new one is complete (a folder this library did
            not write is refused unless ``overwrite``: see :func:`safegene_jax.core.files.write_folder`).
        config: the model's config (default: the model's own).
        tokenizer: a transformers tokenizer to save beside the weights.
        dtype: cast weights to this dtype (default: keep).
        max_shard_bytes: split the weights into files of at most this size.
        card: the model card (``README.md``) to write with it (see :func:`safegene_jax.interop.folder_card`).
        extra_files: more text files to write in the folder, ``{name: text}`` (a mergekit recipe, ...).
    """
    out_dir = check_destination(out_dir, overwrite=overwrite, what="export destination")  # before any work
    if config is None:
        if not isinstance(model_or_params, nnx.Module):
            raise ConfigError("export_hf needs config=... when given params rather than a model")
        config = model_or_params.config
    hf_config = config.to_hf_dict()
    tensors = hf_state_dict(model_or_params, dtype)
    hf_config["dtype"] = str(next(iter(tensors.values())).dtype)

    def fill(tmp: pathlib.Path) -> None:
        shards: list[dict[str, np.ndarray]] = [{}]
        size = 0
        for name, arr in tensors.items():
            if shards[-1] and size + arr.nbytes > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][name] = arr
            size += arr.nbytes
        if len(shards) == 1:
            save_file(shards[0], str(tmp / "model.safetensors"), metadata={"format": "pt"})
        else:
            weight_map = {}
            for i, shard in enumerate(shards, 1):
                fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(tmp / fname), metadata={"format": "pt"})
                weight_map.update({name: fname for name in shard})
            total = sum(a.nbytes for a in tensors.values())
            (tmp / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
            )
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        files = {**(extra_files or {}), **({"README.md": card} if card is not None else {})}
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")

    write_folder(out_dir, fill, overwrite=overwrite, what="export destination")
    return out_dir

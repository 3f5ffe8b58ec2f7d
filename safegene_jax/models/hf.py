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

import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from safegene_jax.core.errors import CheckpointError, ConfigError
from safegene_jax.core.files import check_destination, write_folder
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.models.config import LlamaConfig
from safegene_jax.models.loading import SourceTensor, build_model, nnx_to_hf_name


def _safetensors_files(folder: pathlib.Path) -> list[pathlib.Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = sorted({folder / f for f in weight_map.values()})
        absent = [f.name for f in files if not f.exists()]
        if absent:
            raise CheckpointError(f"{index} lists shard(s) that are not in the folder: {', '.join(absent)}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no *.safetensors file in {folder} (only safetensors weights are loaded; no pickle)")
    return files


_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def read_tensors(folder: str | os.PathLike) -> list[SourceTensor]:
    """Every tensor of a folder's safetensors files, with shapes read from the headers only."""
    out = []
    for file in _safetensors_files(pathlib.Path(folder)):
        with safe_open(file, framework="numpy") as f:
            for name in f.keys():
                piece = f.get_slice(name)
                shape = tuple(piece.get_shape())
                dtype = _SAFETENSORS_DTYPES.get(piece.get_dtype(), "")

                def read(file=file, name=name):
                    with safe_open(file, framework="numpy") as g:
                        return g.get_tensor(name)

                out.append(SourceTensor(name, shape, read, dtype))
    return out


def read_config(folder: str | os.PathLike) -> LlamaConfig:
    path = pathlib.Path(folder) / "config.json"
    if not path.exists():
        raise ConfigError(f"{folder} has no config.json")
    try:
        return LlamaConfig.from_hf_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e


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
        arr = np.asarray(jax.device_get(leaf))
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

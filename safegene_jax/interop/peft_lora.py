"""A safety adapter as a PEFT LoRA adapter: the form PEFT, vLLM multi-LoRA and llama.cpp's converter load.

For every Linear kernel of the adapter ``tau`` (kernels are ``(in, out)`` here, ``(out, in)`` in Hugging
Face), with ``c`` its layer's coefficient times ``scale``, the exported update is ``c * tau.T``, factored by
SVD as ``B @ A`` with ``A = sqrt(S) U^T`` (``lora_A``, ``(r, in)``) and ``B = c V sqrt(S)`` (``lora_B``,
``(out, r)``): the coefficient lives in ``B``. ``lora_alpha`` equals each module's rank, so PEFT's scaling
``lora_alpha / r`` is 1, and so is vLLM's (one ``lora_alpha / r`` for the whole adapter).

The rank is ``rank=`` (the same for every module, at most the matrix's), ``energy=`` (per module, the
smallest rank that keeps that fraction of the update's squared Frobenius norm; modules whose rank differs
from ``r`` are listed in ``rank_pattern`` and ``alpha_pattern``), or full when neither is given. The retained
energy per module and in total is reported. Modules whose update is zero (coefficient 0) are left out.

LoRA carries only matrices. Norm weight vectors and biases in the adapter are by default dropped and
reported with their size; ``norms="modules_to_save"`` writes their modules whole, as PEFT's
``modules_to_save`` (the task model's weights plus ``c`` times the delta, so ``task_params`` is needed; a
biased Linear then travels whole instead of as LoRA). vLLM refuses adapters with ``modules_to_save``.
Gemma 3 layers have Llama's projection names and six norms (input, post-attention, pre- and post-MLP,
``q_norm`` and ``k_norm``), all of which are such vectors; their weights are centred on 0 in both our and
transformers' Gemma, so a saved norm module is the same sum.

The folder holds ``adapter_config.json``, ``adapter_model.safetensors`` (float32, PEFT's key names such as
``base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight``) and ``safegene_export.json`` (this
module's report). It is written atomically; an existing folder is replaced only if it is such an export.

Other readers take less of the config. vLLM applies one ``lora_alpha / r`` (1 here) to every module, so
per-module ranks are fine there, within its ``--max-lora-rank``. llama.cpp's ``convert_lora_to_gguf.py``
keeps only ``lora_alpha`` and scales each module by ``lora_alpha / (its rank)``: for it, export with one
``rank=`` (and ``norms="drop"``).

Example::

    adapter = SafetyAdapter.load("adapters/smollm2")
    report = export_peft(adapter, "out/safety-lora", coeffs=recal.coeffs, energy=0.99,
                         base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
    report.total_energy, report.dropped_bytes
    # PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), "out/safety-lora")
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import pathlib
from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from safetensors.numpy import save_file

from safegene_jax._version import __version__
from safegene_jax.core.errors import ConfigError, IncompatibleAdapterError
from safegene_jax.core.files import check_destination as check_folder
from safegene_jax.core.files import write_folder
from safegene_jax.core.layers import layout
from safegene_jax.core.lowrank import LowRank
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.interop._common import adapter_coefficients, num_layers
from safegene_jax.models.loading import nnx_to_hf_name

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
REPORT_FILE = "safegene_export.json"
EXPORT_FORMAT = "safegene-peft-lora"
NORM_MODES = ("drop", "modules_to_save")
KEY_PREFIX = "base_model.model."
"""PEFT's prefix of every saved tensor name (the adapter name is not part of the saved keys)."""

VLLM_NOTE = "vLLM refuses LoRA adapters with modules_to_save; export with norms='drop' to serve with vLLM"


@dataclasses.dataclass(frozen=True)
class VectorDelta:
    """A delta LoRA cannot carry (a norm weight vector or a bias).

    Attributes:
        path: the adapter's leaf path.
        tensor: the Hugging Face tensor name.
        kind: ``'norm'`` or ``'bias'``.
        values: number of values.
        bytes: size in the adapter's dtype.
    """

    path: str
    tensor: str
    kind: str
    values: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class PeftExportReport:
    """What :func:`export_peft` wrote.

    Attributes:
        folder: the written folder.
        ranks: LoRA module (Hugging Face name, e.g. ``model.layers.3.self_attn.q_proj``) -> rank.
        energy: LoRA module -> fraction of its update's squared Frobenius norm kept.
        total_energy: the same over every matrix update (modules written whole count as fully kept).
        vectors: norm and bias deltas (with a non-zero update), dropped or written with their modules.
        norms: ``'drop'`` or ``'modules_to_save'``.
        modules_to_save: modules written whole (Hugging Face names).
        skipped: modules (or vector leaves) left out because their update is zero.
        lora_bytes: bytes of the LoRA factors written (float32).
        saved_module_bytes: bytes of the modules written whole (float32).
    """

    folder: pathlib.Path
    ranks: Mapping[str, int]
    energy: Mapping[str, float]
    total_energy: float
    vectors: tuple[VectorDelta, ...]
    norms: str
    modules_to_save: tuple[str, ...]
    skipped: tuple[str, ...]
    lora_bytes: int
    saved_module_bytes: int

    @property
    def dropped(self) -> tuple[VectorDelta, ...]:
        """The deltas not in the export (all vector deltas when ``norms='drop'``)."""
        return self.vectors if self.norms == "drop" else ()

    @property
    def dropped_values(self) -> int:
        return sum(v.values for v in self.dropped)

    @property
    def dropped_bytes(self) -> int:
        return sum(v.bytes for v in self.dropped)

    @property
    def vllm_compatible(self) -> bool:
        """False when the export has ``modules_to_save``, which vLLM refuses."""
        return not self.modules_to_save

    def to_dict(self) -> dict:
        return {
            "folder": str(self.folder),
            "ranks": dict(self.ranks),
            "retained_energy": dict(self.energy),
            "total_retained_energy": self.total_energy,
            "norms": self.norms,
            "vectors": [dataclasses.asdict(v) for v in self.vectors],
            "dropped": {"count": len(self.dropped), "values": self.dropped_values, "bytes": self.dropped_bytes},
            "modules_to_save": list(self.modules_to_save),
            "skipped": list(self.skipped),
            "lora_bytes": self.lora_bytes,
            "saved_module_bytes": self.saved_module_bytes,
            "vllm_compatible": self.vllm_compatible,
            "notes": [] if self.vllm_compatible else [VLLM_NOTE],
        }


# ---- checks (all before any work or write) -----------------------------------------------------------


def _check_options(rank: Any, energy: Any, norms: Any, scale: Any) -> None:
    if rank is not None and energy is not None:
        raise ConfigError(f"pass rank or energy, not both (got rank={rank!r}, energy={energy!r})")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1):
        raise ConfigError(f"rank must be an int >= 1, got {rank!r}")
    if energy is not None and (
        isinstance(energy, bool) or not isinstance(energy, numbers.Real) or not 0.0 < float(energy) <= 1.0
    ):
        raise ConfigError(f"energy must be a fraction in (0, 1], got {energy!r}")
    if not isinstance(norms, str) or norms not in NORM_MODES:
        raise ConfigError(f"norms must be one of {', '.join(map(repr, NORM_MODES))}, got {norms!r}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(float(scale)):
        raise ConfigError(f"scale must be a finite number, got {scale!r}")


def effective_coefficients(adapter: Any, coeffs: Any = None, scale: float = 1.0) -> np.ndarray:
    """``coeffs`` (default: the adapter's) times ``scale``, as float64 ``(L,)`` or ``(L, len(MODULE_KINDS))``.

    Example:
        >>> from safegene_jax.method.adapter import SafetyAdapter
        >>> a = SafetyAdapter({}, [0], np.ones(2, np.float32), None, {"architecture": {"num_layers": 2}})
        >>> effective_coefficients(a, [0.5, 2.0], scale=2.0).tolist()
        [1.0, 4.0]
    """
    return adapter_coefficients(adapter, coeffs, num_layers(adapter)).astype(np.float64) * float(scale)


@dataclasses.dataclass(frozen=True)
class _Leaf:
    path: str  # the adapter's leaf path
    tensor: str  # Hugging Face tensor name
    module: str  # Hugging Face module name (the tensor name without its last part)
    kind: str  # 'lora', 'norm' or 'bias'
    coeff: float


def plan_leaves(adapter: Any, coeffs: np.ndarray) -> list[_Leaf]:
    """Every adapter leaf with its Hugging Face names, what carries it and its coefficient.

    Raises:
        IncompatibleAdapterError: a leaf is neither a Linear kernel of a decoder layer nor a norm weight or bias
            there (embeddings, LM head, final norm, stacked layers, other shapes): PEFT LoRA cannot target it.
    """
    paths = list(adapter.vector)
    shapes = [tuple(adapter.vector[p].shape) for p in paths]
    out = []
    for path, shape, place in zip(paths, shapes, layout(paths, shapes).leaves):
        tensor, transposed = nnx_to_hf_name(path)
        last = path.rsplit(".", 1)[-1]
        if place.layer is None:
            where = "stacks the layers on axis 0" if place.stacked else "is outside the decoder layers"
            raise IncompatibleAdapterError(
                f"adapter leaf {path!r} {shape} {where}: PEFT LoRA can target only the Linear kernels, norms and "
                "biases of decoder layers"
            )
        if transposed and len(shape) == 2:
            kind = "lora"
        elif last == "bias" and len(shape) == 1:
            kind = "bias"
        elif last in ("weight", "scale") and len(shape) == 1:
            kind = "norm"
        else:
            raise IncompatibleAdapterError(
                f"adapter leaf {path!r} {shape} is not a Linear kernel, norm weight or bias: PEFT LoRA cannot target it"
            )
        c = coeffs[place.layer] if coeffs.ndim == 1 else coeffs[place.layer, place.kind]
        out.append(_Leaf(path, tensor, tensor.rsplit(".", 1)[0], kind, float(c)))
    return out


def check_destination(out_dir: str | os.PathLike, overwrite: bool = False) -> pathlib.Path:
    """The destination as a path, once writing there loses nothing of someone else's (see
    :func:`safegene_jax.core.files.check_destination`)."""
    return check_folder(out_dir, overwrite=overwrite, what="PEFT export destination")


# ---- the numbers -----------------------------------------------------------------------------------


def kernel_svd(leaf: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, s, vt)`` of an ``(in, out)`` kernel delta, dense or :class:`LowRank` (then through its factors).

    Example:
        >>> u, s, vt = kernel_svd(np.outer(np.arange(1.0, 4.0), np.ones(2)))
        >>> [round(float(x), 4) for x in s]
        [5.2915, 0.0]
    """
    if isinstance(leaf, LowRank):
        q_left, r_left = np.linalg.qr(np.asarray(leaf.left, np.float64))
        q_right, r_right = np.linalg.qr(np.asarray(leaf.right, np.float64).T)
        u, s, vt = np.linalg.svd(r_left @ r_right.T)
        return q_left @ u, s, vt @ q_right.T
    return np.linalg.svd(np.asarray(leaf, np.float32), full_matrices=False)


def choose_rank(s: np.ndarray, rank: int | None = None, energy: float | None = None) -> int:
    """The rank to keep of singular values ``s`` (descending): ``rank`` capped at ``len(s)``, the smallest
    reaching ``energy`` of ``sum(s**2)``, or ``len(s)``.

    Example:
        >>> choose_rank(np.array([3.0, 2.0, 1.0]), energy=0.9), choose_rank(np.array([3.0, 2.0, 1.0]), rank=5)
        (2, 3)
    """
    if rank is not None:
        return min(int(rank), len(s))
    if energy is not None:
        cumulative = np.cumsum(np.asarray(s, np.float64) ** 2)
        return min(int(np.searchsorted(cumulative, float(energy) * cumulative[-1], side="left")) + 1, len(s))
    return len(s)


def lora_factors(u: np.ndarray, s: np.ndarray, vt: np.ndarray, r: int, coeff: float) -> tuple[np.ndarray, np.ndarray]:
    """PEFT's ``(lora_A, lora_B)`` (float32, ``(r, in)`` and ``(out, r)``) with ``B @ A = coeff * (u S vt)[:, :r].T``.

    Example:
        >>> k = np.arange(6.0).reshape(3, 2)  # an (in, out) kernel
        >>> a, b = lora_factors(*kernel_svd(k), r=2, coeff=0.5)
        >>> bool(np.allclose(b @ a, 0.5 * k.T, atol=1e-5))
        True
    """
    root = np.sqrt(s[:r])
    lora_a = (u[:, :r] * root).T
    lora_b = coeff * (vt[:r].T * root)
    return np.ascontiguousarray(lora_a, np.float32), np.ascontiguousarray(lora_b, np.float32)


class _LoraPart(NamedTuple):
    tensors: dict  # PEFT key -> float32 factor
    ranks: dict  # module -> rank
    energy: dict  # module -> retained fraction
    kept: float  # squared norm kept, over all matrix updates (modules written whole count fully)
    total: float  # squared norm of all matrix updates
    zero: list  # leaves whose update is zero


def lora_tensors(
    leaves: list[_Leaf], vector: Mapping[str, Any], *, rank: int | None, energy: float | None, whole: list[str]
) -> _LoraPart:
    """The LoRA factors of the kernel ``leaves`` (those of modules in ``whole`` are only counted as kept)."""
    tensors, ranks, kept = {}, {}, {}
    kept_sum = all_sum = 0.0
    zero = []
    for leaf in leaves:
        u, s, vt = kernel_svd(vector[leaf.path])
        s2 = np.asarray(s, np.float64) ** 2
        total = float(s2.sum()) * leaf.coeff**2
        if total == 0.0:
            zero.append(leaf)
            continue
        all_sum += total
        if leaf.module in whole:
            kept_sum += total
            continue
        r = choose_rank(s, rank, energy)
        tensors[f"{KEY_PREFIX}{leaf.module}.lora_A.weight"], tensors[f"{KEY_PREFIX}{leaf.module}.lora_B.weight"] = (
            lora_factors(u, s, vt, r, leaf.coeff)
        )
        ranks[leaf.module] = r
        kept[leaf.module] = float(s2[:r].sum() / s2.sum())
        kept_sum += kept[leaf.module] * total
    return _LoraPart(tensors, ranks, kept, kept_sum, all_sum, zero)


def _dense(leaf: Any) -> np.ndarray:
    if isinstance(leaf, LowRank):
        left, right = np.asarray(leaf.left, np.float32), np.asarray(leaf.right, np.float32)
        return (left @ right).reshape(leaf.shape)
    return np.asarray(leaf, np.float32)


def _nbytes(leaf: Any) -> int:
    if isinstance(leaf, LowRank):
        return int(np.dtype(leaf.left.dtype).itemsize) * int(np.prod(leaf.shape))
    return int(np.dtype(leaf.dtype).itemsize) * int(np.prod(leaf.shape))


def _saved_modules(
    modules: list[str], plan: list[_Leaf], vector: Mapping[str, Any], task_params: Any
) -> dict[str, np.ndarray]:
    """Every tensor of ``modules``, as PEFT saves ``modules_to_save``: the task's plus ``coeff * delta``."""
    deltas = {leaf.tensor: (leaf.coeff, vector[leaf.path]) for leaf in plan}
    wanted = set(modules)
    paths, leaves, _ = flatten_with_paths(task_params)
    out = {}
    for path, value in zip(paths, leaves):
        tensor, transposed = nnx_to_hf_name(path)
        if tensor.rsplit(".", 1)[0] not in wanted:
            continue
        weight = np.asarray(value, np.float32)
        if tensor in deltas:
            coeff, delta = deltas[tensor]
            weight = weight + np.float32(coeff) * _dense(delta)
        out[KEY_PREFIX + tensor] = np.ascontiguousarray(weight.T if transposed else weight, np.float32)
    return out


def adapter_config(ranks: Mapping[str, int], modules_to_save: list[str], base_model: str | None) -> dict[str, Any]:
    """PEFT's ``adapter_config.json`` for LoRA modules with these ranks (``lora_alpha`` = rank: scaling 1).

    ``r`` is the most common rank; modules of another rank get ``rank_pattern`` and ``alpha_pattern`` entries
    (their full names; PEFT matches them as regular expressions against the end of a module's name, after a dot
    or from its start, so ``model.layers.1.mlp.up_proj`` never matches layer 11's).

    Example:
        >>> cfg = adapter_config({"model.layers.0.mlp.up_proj": 4, "model.layers.1.mlp.up_proj": 2}, [], None)
        >>> cfg["r"], cfg["lora_alpha"], list(cfg["rank_pattern"].values()), cfg["alpha_pattern"] == cfg["rank_pattern"]
        (4, 4, [2], True)
    """
    counts = Counter(ranks.values())
    r = max(counts, key=lambda k: (counts[k], k)) if counts else 1
    pattern = {module: rank for module, rank in ranks.items() if rank != r}
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model or None,
        "revision": None,
        "inference_mode": True,
        "r": r,
        "lora_alpha": r,
        "rank_pattern": pattern,
        "alpha_pattern": dict(pattern),
        "target_modules": list(ranks),
        "exclude_modules": None,
        "modules_to_save": list(modules_to_save) or None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "lora_bias": False,
        "init_lora_weights": True,
    }


# ---- writing ---------------------------------------------------------------------------------------


def _write_folder(out: pathlib.Path, tensors: dict[str, np.ndarray], texts: dict[str, str], overwrite: bool) -> None:
    """Writes the files into a folder beside ``out`` and swaps it into place (the previous export stays whole
    until then)."""

    def fill(tmp: pathlib.Path) -> None:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8")

    write_folder(out, fill, overwrite=overwrite, what="PEFT export destination")


def export_peft(
    adapter: Any,
    out_dir: str | os.PathLike,
    *,
    coeffs: Any = None,
    scale: float = 1.0,
    rank: int | None = None,
    energy: float | None = None,
    norms: str = "drop",
    base_model: str = "",
    task_params: Any = None,
    overwrite: bool = False,
) -> PeftExportReport:
    """Writes ``adapter`` at ``coeffs * scale`` as a PEFT LoRA adapter folder (see the module docstring).

    Merged into a task model by PEFT (``PeftModel.from_pretrained(base, out_dir).merge_and_unload()``), a
    full-rank export gives the Linear weights of ``adapter.apply(task_params, coeffs * scale)``; at a lower
    rank each module misses ``1 - energy`` of its update's squared norm.

    Args:
        adapter: a :class:`~safegene_jax.method.SafetyAdapter` (dense or low-rank leaves).
        out_dir: the folder to write; an existing one is replaced only if this library wrote it, or with
            ``overwrite``.
        coeffs: a scalar, ``(L,)`` or ``(L, len(MODULE_KINDS))``; default the adapter's.
        scale: multiplies the coefficients.
        rank: the LoRA rank of every module (capped at the matrix's); exclusive with ``energy``.
        energy: per module, the smallest rank keeping this fraction (in ``(0, 1]``) of the update's squared
            Frobenius norm. Neither: full rank.
        norms: ``'drop'`` (the default; norm and bias deltas are reported, not written) or ``'modules_to_save'``
            (their modules are written whole; vLLM refuses such adapters).
        base_model: ``base_model_name_or_path`` of the config (a Hub name or path of the task model).
        task_params: the task model's params (needed for ``'modules_to_save'``); when given, checked to be of
            the adapter's architecture.
        overwrite: replace a non-empty folder this library did not write.

    Returns:
        A :class:`PeftExportReport`; its ``to_dict()`` is also written as ``safegene_export.json``.

    Raises:
        ConfigError: a bad option (rank, energy, norms, coeffs, scale), ``'modules_to_save'`` without
            ``task_params``, nothing to export, or a destination that is not a previous export.
        IncompatibleAdapterError: a leaf PEFT LoRA cannot target, or task params of another architecture.

    Example::

        report = export_peft(adapter, "out/lora", coeffs=[0.0, 0.8, 1.2], rank=16)
        print(report.total_energy, report.dropped_values)
    """
    _check_options(rank, energy, norms, scale)
    if norms == "modules_to_save" and task_params is None:
        raise ConfigError("norms='modules_to_save' writes whole modules and needs task_params=... (the task model's)")
    if task_params is not None:
        adapter.check(task_params)
    c = effective_coefficients(adapter, coeffs, scale)
    plan = plan_leaves(adapter, c)
    out = check_destination(out_dir, overwrite)

    vector = adapter.vector
    skipped = [leaf for leaf in plan if leaf.coeff == 0.0]
    live = [leaf for leaf in plan if leaf.coeff != 0.0]
    vectors = [leaf for leaf in live if leaf.kind != "lora" and np.any(_dense(vector[leaf.path]))]
    skipped += [leaf for leaf in live if leaf.kind != "lora" and leaf not in vectors]
    whole = sorted({leaf.module for leaf in vectors}) if norms == "modules_to_save" else []

    lora = lora_tensors([leaf for leaf in live if leaf.kind == "lora"], vector, rank=rank, energy=energy, whole=whole)
    skipped += lora.zero
    tensors = dict(lora.tensors)
    lora_bytes = sum(t.nbytes for t in tensors.values())
    saved = _saved_modules(whole, live, vector, task_params) if whole else {}
    tensors.update(saved)
    if not tensors:
        raise ConfigError("nothing to export: every update is zero (coefficients times scale, or the adapter's deltas)")

    report = PeftExportReport(
        folder=out,
        ranks=lora.ranks,
        energy=lora.energy,
        total_energy=lora.kept / lora.total if lora.total > 0 else 1.0,
        vectors=tuple(
            VectorDelta(
                leaf.path, leaf.tensor, leaf.kind, int(np.prod(vector[leaf.path].shape)), _nbytes(vector[leaf.path])
            )
            for leaf in vectors
        ),
        norms=norms,
        modules_to_save=tuple(whole),
        skipped=tuple(leaf.tensor for leaf in skipped),
        lora_bytes=int(lora_bytes),
        saved_module_bytes=int(sum(t.nbytes for t in saved.values())),
    )
    meta = adapter.metadata or {}
    summary = {
        "format": EXPORT_FORMAT,
        "library_version": __version__,
        "family": meta.get("family", ""),
        "adapter_layers": [int(i) for i in adapter.layers],
        "coeffs": c.tolist(),
        "scale": float(scale),
        "rank": None if rank is None else int(rank),
        "energy": None if energy is None else float(energy),
        **report.to_dict(),
    }
    del summary["folder"]
    texts = {
        CONFIG_FILE: json.dumps(adapter_config(lora.ranks, whole, base_model), indent=2) + "\n",
        REPORT_FILE: json.dumps(summary, indent=2) + "\n",
    }
    _write_folder(out, tensors, texts, overwrite)
    return report

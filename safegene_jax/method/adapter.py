"""The safety adapter: the reusable artifact of a model family.

It holds the safety vector restricted to the selected layers (dense or low-rank), the selected
layers, the layer scores, default coefficients and metadata (family, architecture name and signature,
source checkpoints, a hash of the probe data, library version). It is saved with Orbax and applies to
every task model of its family; a model of another architecture is refused with a clear error (an adapter
of a Llama-family model such as SmolLM2 never applies to Gemma 3, nor the reverse).

Example::

    adapter = SafetyAdapter.build(aligned_params, degraded_params, layers=[3, 4, 9], scores=scores,
                                  family="smollm2-135m", sources={"aligned": "runs/aligned"})
    adapter.save("adapters/smollm2")
    safe = SafetyAdapter.load("adapters/smollm2").apply(task_params, coeffs=recal.coeffs)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any

import jax
import numpy as np

from safegene_jax._version import __version__
from safegene_jax.core.errors import CheckpointError, IncompatibleAdapterError
from safegene_jax.core.host import to_host
from safegene_jax.core.layers import layout
from safegene_jax.core.lowrank import LowRank, low_rank
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.core.transforms import apply_vector, restrict_layers, safety_vector
from safegene_jax.method.selection import LayerScores
from safegene_jax.store.trees import restore_tree, save_tree

FORMAT = 1


def architecture_signature(params: Any, layer_map: Any = None) -> dict:
    """Layer count and a hash of every leaf's path and shape: equal for every model of one family, whatever
    its dtype (a bfloat16 copy of a model is the same architecture)."""
    paths, leaves, _ = flatten_with_paths(params)
    h = hashlib.sha256()
    for p, x in zip(paths, leaves):
        h.update(f"{p}:{tuple(x.shape)};".encode())
    return {
        "num_layers": layout(paths, [x.shape for x in leaves], layer_map).num_layers,
        "leaves": len(paths),
        "hash": h.hexdigest()[:16],
    }


_ARCHITECTURES = (  # model_type, and leaf names (below ``layers.0.``) that only that architecture's layers have
    ("gemma3_text", ("self_attn.q_norm.", "self_attn.k_norm.", "pre_feedforward_layernorm.")),
    ("llama", ("self_attn.q_proj.", "mlp.gate_proj.", "post_attention_layernorm.")),
)
_FAMILIES = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "gemma3_text": "gemma3_text"}
"""model_type -> the layer layout it shares (Mistral and Qwen2 blocks are Llama blocks, biases aside)."""
_FIRST_LAYER = re.compile(r"(?:^|\.)layers\.0\.(.*)$")


def model_type_of(params: Any) -> str | None:
    """The architecture of a parameter tree, read from its first decoder layer's leaf names: ``'gemma3_text'``
    (query/key norms, four norms per block), ``'llama'`` (the Llama-family block: Llama, Mistral, Qwen2,
    SmolLM2), or ``None`` for other layouts.

    Example:
        >>> model_type_of({"model": {"layers": {"0": {"self_attn": {"q_proj": {"kernel": 0}},
        ...     "mlp": {"gate_proj": {"kernel": 0}}, "post_attention_layernorm": {"weight": 0}}}}})
        'llama'
    """
    names = [m.group(1) + "." for p in flatten_with_paths(params)[0] if (m := _FIRST_LAYER.search(p))]
    for model_type, markers in _ARCHITECTURES:
        if all(any(n.startswith(marker) for n in names) for marker in markers):
            return model_type
    return None


def data_hash(*batches: dict) -> str:
    """A short hash of probe batches (their token ids and masks)."""
    h = hashlib.sha256()
    for b in batches:
        for k in sorted(b):
            h.update(np.ascontiguousarray(np.asarray(b[k])).tobytes())
    return h.hexdigest()[:16]


def _digest(x: Any) -> str:
    a = np.ascontiguousarray(to_host(x))
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:32]


def _tensor_checksums(stored: dict) -> dict:
    return {f"{i}/{part}": _digest(arr) for i, parts in stored.items() for part, arr in parts.items()}


def _meta_checksum(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "checksums"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _verify(path: Any, stored: dict, meta: dict) -> None:
    """Raises :class:`CheckpointError` when a tensor or the metadata differs from the checksums saved with it
    (adapters saved before checksums existed carry none and are not checked)."""
    sums = meta.get("checksums")
    if not sums:
        return
    if _meta_checksum(meta) != sums.get("metadata"):
        raise CheckpointError(f"{path}: the adapter's metadata does not match its checksum (damaged or edited)")
    found = _tensor_checksums(stored)
    for key, want in sums.get("tensors", {}).items():
        if found.get(key) != want:
            leaf = meta.get("order", [])[int(key.split("/")[0])] if key.split("/")[0].isdigit() else key
            raise CheckpointError(
                f"{path}: tensor {leaf!r} does not match its checksum (the adapter's data is damaged); "
                "extract the adapter again"
            )


@dataclasses.dataclass
class SafetyAdapter:
    """Attributes: ``vector`` (flat ``{path: array | LowRank}``), ``layers``, ``coeffs`` (default, per layer),
    ``scores`` (:class:`LayerScores` or None), ``metadata`` (dict)."""

    vector: dict
    layers: list[int]
    coeffs: np.ndarray
    scores: LayerScores | None
    metadata: dict

    @classmethod
    def build(
        cls,
        aligned: Any,
        degraded: Any,
        layers: list[int],
        *,
        scores: LayerScores | None = None,
        coeffs: Any = None,
        rank: int | None = None,
        family: str = "",
        sources: dict | None = None,
        probe_hash: str = "",
        layer_map: Any = None,
        model_type: str | None = None,
        check_finite: bool = True,
    ) -> SafetyAdapter:
        """Extracts the vector, keeps ``layers``, optionally compresses it to ``rank``, records metadata.

        ``model_type`` (the config's: ``llama``, ``gemma3_text``, ...) names the architecture in the metadata;
        by default it is read from the leaf names (:func:`model_type_of`). ``check_finite=False`` lets NaN or
        inf in the weights through."""
        signature = architecture_signature(aligned, layer_map)
        vec = restrict_layers(
            safety_vector(aligned, degraded, layer_map=layer_map, check_finite=check_finite),
            layers,
            num_layers=signature["num_layers"],
            layer_map=layer_map,
        )
        return cls.from_vector(
            vec,
            layers,
            signature,
            model_type=model_type or model_type_of(aligned),
            scores=scores,
            coeffs=coeffs,
            rank=rank,
            family=family,
            sources=sources,
            probe_hash=probe_hash,
            layer_map=layer_map,
        )

    @classmethod
    def from_vector(
        cls,
        vector: dict,
        layers: list[int],
        signature: dict,
        *,
        model_type: str | None = None,
        scores: LayerScores | None = None,
        coeffs: Any = None,
        rank: int | None = None,
        family: str = "",
        sources: dict | None = None,
        probe_hash: str = "",
        layer_map: Any = None,
    ) -> SafetyAdapter:
        """An adapter from a vector already restricted to ``layers`` (as :meth:`build` makes it, or as the
        streaming extraction reads it tensor by tensor) and the family's :func:`architecture_signature`;
        optionally compressed to ``rank``."""
        energy = None
        if rank is not None:
            vector, report = low_rank(vector, rank, layer_map=layer_map)
            energy = report.total
        default = np.zeros(signature["num_layers"], np.float32)
        default[list(layers)] = 1.0
        meta = {
            "format": FORMAT,
            "family": family,
            "architecture": signature,
            "model_type": model_type,
            "sources": sources or {},
            "probe_hash": probe_hash,
            "library_version": __version__,
            "rank": rank,
            "retained_energy": energy,
        }
        return cls(
            vector,
            sorted(int(i) for i in layers),
            default if coeffs is None else np.asarray(coeffs, np.float32),
            scores,
            meta,
        )

    def check(self, params: Any, layer_map: Any = None, *, model_type: str | None = None) -> None:
        """Raises :class:`IncompatibleAdapterError` unless ``params`` is a model of the adapter's family.

        ``model_type`` is the params' architecture (default: read from their leaf names); an adapter of
        another architecture is refused first, naming both (adapters saved before the name was recorded skip
        that check, and the structural ones below still apply)."""
        built_on = self.metadata.get("model_type")
        given = model_type or model_type_of(params)
        if built_on and given and _FAMILIES.get(built_on, built_on) != _FAMILIES.get(given, given):
            raise IncompatibleAdapterError(
                f"this adapter was built on a {built_on} model (family {self.metadata.get('family') or '?'!r}) and "
                f"cannot apply to a {given} model: an adapter applies only to models of its own architecture"
            )
        signature = architecture_signature(params, layer_map)
        want = self.metadata.get("architecture", {})
        if want.get("num_layers") not in (None, signature["num_layers"]):
            raise IncompatibleAdapterError(
                f"adapter is for a {want['num_layers']}-layer model, these params have {signature['num_layers']} layers"
            )
        paths, leaves, _ = flatten_with_paths(params)
        shapes = {p: tuple(x.shape) for p, x in zip(paths, leaves)}
        for path, leaf in self.vector.items():
            if path not in shapes:
                raise IncompatibleAdapterError(f"adapter leaf {path!r} is not in these params (another architecture?)")
            if tuple(leaf.shape) != shapes[path]:
                raise IncompatibleAdapterError(
                    f"adapter leaf {path!r} has shape {tuple(leaf.shape)}, the model's is "
                    f"{shapes[path]} (another model size?)"
                )
        if want.get("hash") not in (None, signature["hash"]):
            raise IncompatibleAdapterError(
                f"these params differ in structure from the adapter's family {self.metadata.get('family')!r} "
                f"(architecture hash {signature['hash']} vs {want['hash']})"
            )

    def apply(
        self,
        params: Any,
        coeffs: Any = None,
        *,
        layer_map: Any = None,
        donate: bool = False,
        model_type: str | None = None,
    ) -> Any:
        """``params + sum_l coeffs_l * tau_l`` over the adapter's layers, after the compatibility check."""
        self.check(params, layer_map, model_type=model_type)
        c = self.coeffs if coeffs is None else np.asarray(coeffs, np.float32)
        return apply_vector(params, self.vector, c, layer_map=layer_map, donate=donate)

    # ---- persistence ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Writes the adapter as an Orbax checkpoint, atomically (the previous one stays whole until the new one
        is complete), with a checksum of every tensor and of the metadata, verified by :meth:`load`. A folder
        this library did not write is refused unless ``overwrite``."""
        tree = {}
        kinds = {}
        for p, leaf in self.vector.items():
            if isinstance(leaf, LowRank):
                tree[p] = {"left": leaf.left, "right": leaf.right}
                kinds[p] = {"lowrank": list(leaf.shape)}
            else:
                tree[p] = {"dense": leaf}
                kinds[p] = {"dense": list(leaf.shape)}
        meta = {
            **self.metadata,
            "layers": self.layers,
            "coeffs": np.asarray(self.coeffs).tolist(),
            "scores": self.scores.to_dict() if self.scores is not None else None,
            "leaves": kinds,
        }
        stored = {str(i): tree[p] for i, p in enumerate(tree)}
        meta = {**meta, "order": list(tree)}
        meta["checksums"] = {"tensors": _tensor_checksums(stored), "metadata": _meta_checksum(meta)}
        save_tree(path, {"vector": stored}, metadata=meta, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, shardings: dict | None = None) -> SafetyAdapter:
        """Reads an adapter; ``shardings`` (``{path: Sharding}``) places those leaves onto a target sharding."""
        tree, meta = restore_tree(path)
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a safety adapter of format {FORMAT} (found {meta.get('format')!r})")
        missing = [k for k in ("order", "leaves", "layers", "coeffs") if k not in meta]
        if missing or not isinstance(tree, dict) or "vector" not in tree:
            what = f"metadata lacks {', '.join(missing)}" if missing else "tree lacks its vector"
            raise CheckpointError(f"{path}: the adapter's {what} (damaged or edited); extract the adapter again")
        _verify(path, tree["vector"], meta)
        try:
            vector = {}
            for i, p in enumerate(meta["order"]):
                stored, kind = tree["vector"][str(i)], meta["leaves"][p]
                if "lowrank" in kind:
                    vector[p] = LowRank(stored["left"], stored["right"], tuple(kind["lowrank"]))
                else:
                    vector[p] = stored["dense"]
                if shardings is not None and p in shardings:
                    vector[p] = jax.device_put(vector[p], shardings[p])
            scores = LayerScores.from_dict(meta["scores"]) if meta.get("scores") else None
            layers, coeffs = list(meta["layers"]), np.asarray(meta["coeffs"], np.float32)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{path}: the adapter's metadata does not match its tensors ({type(e).__name__}: {e}); damaged or "
                "edited, extract the adapter again"
            ) from None
        known = {"layers", "coeffs", "scores", "leaves", "order", "checksums"}
        return cls(vector, layers, coeffs, scores, {k: v for k, v in meta.items() if k not in known})

    def summary(self) -> str:
        size = sum(
            int(np.prod(v.left.shape) + np.prod(v.right.shape)) if isinstance(v, LowRank) else int(np.prod(v.shape))
            for v in self.vector.values()
        )
        return json.dumps(
            {
                "family": self.metadata.get("family"),
                "layers": self.layers,
                "values": size,
                "rank": self.metadata.get("rank"),
            }
        )

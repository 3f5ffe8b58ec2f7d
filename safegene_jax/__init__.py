"""safegene_jax: reusable safety adapters that give fine-tuned LLMs back their safety, in JAX.

The core is a set of pure functions on parameter pytrees (Flax NNX ``State``, pure dicts, Linen trees):

    >>> import numpy as np
    >>> import safegene_jax as sg
    >>> aligned = {"layers": [{"w": np.full(2, 3.0, np.float32)}, {"w": np.full(2, 2.0, np.float32)}]}
    >>> degraded = {"layers": [{"w": np.full(2, 1.0, np.float32)}, {"w": np.full(2, 2.0, np.float32)}]}
    >>> tau = sg.safety_vector(aligned, degraded)
    >>> [round(float(x), 4) for x in sg.layer_norms(tau)]
    [2.8284, 0.0]
    >>> sg.apply_vector(degraded, tau, [1.0, 0.0])["layers"][0]["w"].tolist()
    [3.0, 3.0]
"""

__version__ = "0.1.0"

from safegene_jax.diagnostics import layer_cosines, layer_norms
from safegene_jax.errors import LayerMapError, NonFiniteError, SafeGeneError, TreeMismatchError
from safegene_jax.layers import MODULE_KINDS, STACKED, LayerMap, layer_mask, module_kind
from safegene_jax.lowrank import EnergyReport, LowRank, low_rank, to_dense
from safegene_jax.paths import flatten_with_paths
from safegene_jax.transforms import (
    apply_vector,
    as_vector,
    assert_finite,
    global_norm,
    restrict_layers,
    safety_vector,
)

# Models, generation and sharding import flax/transformers; they load on first use.
_LAZY = {
    "load_model": "safegene_jax.models.api",
    "LoadedModel": "safegene_jax.models.api",
    "generate_text": "safegene_jax.models.api",
    "generate": "safegene_jax.models.generate",
    "export_hf": "safegene_jax.models.hf",
    "LlamaConfig": "safegene_jax.models.config",
    "LlamaForCausalLM": "safegene_jax.models.llama",
    "make_apply": "safegene_jax.models.llama",
    "LayeredApply": "safegene_jax.models.llama",
    "make_mesh": "safegene_jax.sharding",
    "TrainConfig": "safegene_jax.train",
    "LoraConfig": "safegene_jax.lora",
    "sft": "safegene_jax.train",
    "align": "safegene_jax.train",
    "degrade": "safegene_jax.train",
    "finetune_task": "safegene_jax.train",
    "save_tree": "safegene_jax.checkpoint",
    "score_layers": "safegene_jax.selection",
    "select": "safegene_jax.selection",
    "LayerScores": "safegene_jax.selection",
    "recalibrate": "safegene_jax.recalibrate",
    "RecalibrationConfig": "safegene_jax.recalibrate",
    "fit_coefficients": "safegene_jax.recalibrate",
    "SafetyAdapter": "safegene_jax.adapter",
    "resta": "safegene_jax.baselines",
    "safe_lora": "safegene_jax.baselines",
    "task_arithmetic": "safegene_jax.baselines",
    "dare": "safegene_jax.baselines",
    "evaluate_safety": "safegene_jax.eval.evaluate",
    "evaluate_task": "safegene_jax.eval.evaluate",
    "KeywordJudge": "safegene_jax.eval.judges",
    "ModelJudge": "safegene_jax.eval.judges",
    "restore_tree": "safegene_jax.checkpoint",
    "shard_params": "safegene_jax.sharding",
    "param_shardings": "safegene_jax.sharding",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'safegene_jax' has no attribute {name!r}")


__all__ = sorted(_LAZY) + [
    "EnergyReport",
    "LayerMap",
    "LayerMapError",
    "LowRank",
    "MODULE_KINDS",
    "NonFiniteError",
    "STACKED",
    "SafeGeneError",
    "TreeMismatchError",
    "apply_vector",
    "as_vector",
    "assert_finite",
    "flatten_with_paths",
    "global_norm",
    "layer_cosines",
    "layer_mask",
    "layer_norms",
    "low_rank",
    "module_kind",
    "restrict_layers",
    "safety_vector",
    "to_dense",
]

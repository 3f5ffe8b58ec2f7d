"""safegene_jax: reusable safety adapters that give fine-tuned LLMs back their safety, in JAX.

This module is the one public API. The core (the safety-vector arithmetic on any params pytree, the
errors) loads with it and needs only JAX and NumPy; the method, models, training, evaluation and pipeline
load on first use of one of their names, so ``import safegene_jax`` stays light and the method imports
neither TFDS nor training code.

    >>> import numpy as np
    >>> import safegene_jax as sg
    >>> aligned = {"layers": [{"w": np.full(2, 3.0, np.float32)}, {"w": np.full(2, 2.0, np.float32)}]}
    >>> degraded = {"layers": [{"w": np.full(2, 1.0, np.float32)}, {"w": np.full(2, 2.0, np.float32)}]}
    >>> tau = sg.safety_vector(aligned, degraded)
    >>> [round(float(x), 4) for x in sg.layer_norms(tau)]
    [2.8284, 0.0]
    >>> sg.apply_vector(degraded, tau, [1.0, 0.0])["layers"][0]["w"].tolist()
    [3.0, 3.0]

The layers, each importing only the ones before it: ``core`` -> ``runtime``, ``store`` -> ``models``,
``data`` -> ``method`` (core, runtime, store), ``train`` -> ``eval`` -> ``pipeline``.
"""

from typing import TYPE_CHECKING

from safegene_jax._version import __version__ as __version__
from safegene_jax.core import (
    MODULE_KINDS,
    STACKED,
    CheckpointError,
    CheckpointNotFoundError,
    ConfigError,
    DataError,
    EnergyReport,
    HubError,
    IncompatibleAdapterError,
    LayerMap,
    LayerMapError,
    LowRank,
    ModelNotFoundError,
    NonFiniteError,
    PromptTooLongError,
    SafeGeneError,
    TokenizerError,
    TrainingError,
    TreeMismatchError,
    apply_vector,
    as_vector,
    assert_finite,
    flatten_with_paths,
    global_norm,
    layer_cosines,
    layer_mask,
    layer_norms,
    low_rank,
    module_kind,
    restrict_layers,
    safety_vector,
    to_dense,
)

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and IDEs
    from safegene_jax.eval import KeywordJudge, ModelJudge, evaluate_safety, evaluate_task
    from safegene_jax.interop import (
        PeftExportReport,
        export_gguf,
        export_peft,
        mergekit_recipe,
        model_card,
        push_to_hub,
    )
    from safegene_jax.method import (
        LayerScores,
        Recalibration,
        RecalibrationConfig,
        SafetyAdapter,
        dare,
        fit_coefficients,
        recalibrate,
        resta,
        safe_lora,
        score_layers,
        select,
        task_arithmetic,
    )
    from safegene_jax.models import (
        Gemma3Config,
        Gemma3ForCausalLM,
        LayeredApply,
        LlamaConfig,
        LlamaForCausalLM,
        LoadedModel,
        export_hf,
        generate,
        generate_text,
        load_model,
        make_apply,
        with_params,
    )
    from safegene_jax.pipeline import PipelineConfig, load_config, run_pipeline
    from safegene_jax.runtime import make_mesh, param_shardings, shard_params
    from safegene_jax.store import restore_tree, save_tree
    from safegene_jax.train import CompiledSteps, LoraConfig, TrainConfig, align, degrade, finetune_task, sft

_LAZY = {
    "safegene_jax.method": (
        "LayerScores",
        "Recalibration",
        "RecalibrationConfig",
        "SafetyAdapter",
        "dare",
        "fit_coefficients",
        "recalibrate",
        "resta",
        "safe_lora",
        "score_layers",
        "select",
        "task_arithmetic",
    ),
    "safegene_jax.models": (
        "Gemma3Config",
        "Gemma3ForCausalLM",
        "LayeredApply",
        "LlamaConfig",
        "LlamaForCausalLM",
        "LoadedModel",
        "export_hf",
        "generate",
        "generate_text",
        "load_model",
        "make_apply",
        "with_params",
    ),
    "safegene_jax.runtime": ("make_mesh", "param_shardings", "shard_params"),
    "safegene_jax.store": ("restore_tree", "save_tree"),
    "safegene_jax.train": ("CompiledSteps", "LoraConfig", "TrainConfig", "align", "degrade", "finetune_task", "sft"),
    "safegene_jax.eval": ("KeywordJudge", "ModelJudge", "evaluate_safety", "evaluate_task"),
    "safegene_jax.interop": (
        "PeftExportReport",
        "export_gguf",
        "export_peft",
        "mergekit_recipe",
        "model_card",
        "push_to_hub",
    ),
    "safegene_jax.pipeline": ("PipelineConfig", "load_config", "run_pipeline"),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value  # bound once: later lookups never reach a submodule of the same name
        return value
    raise AttributeError(f"module 'safegene_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "CompiledSteps",
    "ConfigError",
    "DataError",
    "EnergyReport",
    "Gemma3Config",
    "Gemma3ForCausalLM",
    "HubError",
    "IncompatibleAdapterError",
    "KeywordJudge",
    "LayerMap",
    "LayerMapError",
    "LayerScores",
    "LayeredApply",
    "LlamaConfig",
    "LlamaForCausalLM",
    "LoadedModel",
    "LoraConfig",
    "LowRank",
    "MODULE_KINDS",
    "ModelJudge",
    "ModelNotFoundError",
    "NonFiniteError",
    "PeftExportReport",
    "PipelineConfig",
    "PromptTooLongError",
    "Recalibration",
    "RecalibrationConfig",
    "STACKED",
    "SafeGeneError",
    "SafetyAdapter",
    "TokenizerError",
    "TrainConfig",
    "TrainingError",
    "TreeMismatchError",
    "align",
    "apply_vector",
    "as_vector",
    "assert_finite",
    "dare",
    "degrade",
    "evaluate_safety",
    "evaluate_task",
    "export_gguf",
    "export_hf",
    "export_peft",
    "finetune_task",
    "fit_coefficients",
    "flatten_with_paths",
    "generate",
    "generate_text",
    "global_norm",
    "layer_cosines",
    "layer_mask",
    "layer_norms",
    "load_config",
    "load_model",
    "low_rank",
    "make_apply",
    "make_mesh",
    "mergekit_recipe",
    "model_card",
    "module_kind",
    "param_shardings",
    "push_to_hub",
    "recalibrate",
    "resta",
    "restore_tree",
    "restrict_layers",
    "run_pipeline",
    "safe_lora",
    "safety_vector",
    "save_tree",
    "score_layers",
    "select",
    "sft",
    "shard_params",
    "task_arithmetic",
    "to_dense",
    "with_params",
]

"""The method: data-aware layer selection, few-shot recalibration, the safety adapter, and the baselines.

It builds on the core only (and on Orbax tree storage for saving adapters); it never imports training or
data code, so it fits into any Flax training loop.
"""

from safegene_jax.method.adapter import SafetyAdapter, architecture_signature, data_hash
from safegene_jax.method.baselines import dare, resta, safe_lora, task_arithmetic
from safegene_jax.method.recalibration import Recalibration, RecalibrationConfig, fit_coefficients, recalibrate
from safegene_jax.method.selection import SCORING_METHODS, LayerScores, score_layers, select

__all__ = [
    "SCORING_METHODS",
    "LayerScores",
    "Recalibration",
    "RecalibrationConfig",
    "SafetyAdapter",
    "architecture_signature",
    "dare",
    "data_hash",
    "fit_coefficients",
    "recalibrate",
    "resta",
    "safe_lora",
    "score_layers",
    "select",
    "task_arithmetic",
]

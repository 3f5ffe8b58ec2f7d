"""The core: pure functions on parameter pytrees (paths, layer maps, the safety-vector arithmetic, the
low-rank form, diagnostics, losses) and the library's errors. It imports only JAX and NumPy.

Example:
    >>> import numpy as np
    >>> from safegene_jax.core import safety_vector, layer_norms
    >>> tau = safety_vector({"layers": [{"w": np.ones(2, np.float32)}]}, {"layers": [{"w": np.zeros(2, np.float32)}]})
    >>> [round(float(x), 4) for x in layer_norms(tau)]
    [1.4142]
"""

from safegene_jax.core.diagnostics import layer_cosines, layer_norms
from safegene_jax.core.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ConfigError,
    DataError,
    HubError,
    IncompatibleAdapterError,
    LayerMapError,
    ModelNotFoundError,
    NonFiniteError,
    PromptTooLongError,
    SafeGeneError,
    TokenizerError,
    TrainingError,
    TreeMismatchError,
)
from safegene_jax.core.layers import MODULE_KINDS, STACKED, LayerMap, layer_mask, module_kind
from safegene_jax.core.lowrank import EnergyReport, LowRank, low_rank, to_dense
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.core.transforms import (
    apply_vector,
    as_vector,
    assert_finite,
    global_norm,
    restrict_layers,
    safety_vector,
)

__all__ = [
    "MODULE_KINDS",
    "STACKED",
    "CheckpointError",
    "CheckpointNotFoundError",
    "ConfigError",
    "DataError",
    "EnergyReport",
    "HubError",
    "IncompatibleAdapterError",
    "LayerMap",
    "LayerMapError",
    "LowRank",
    "ModelNotFoundError",
    "NonFiniteError",
    "PromptTooLongError",
    "SafeGeneError",
    "TokenizerError",
    "TrainingError",
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

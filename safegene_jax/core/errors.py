"""The library's one error channel: every input error is a :class:`SafeGeneError` subclass.

All are ``ValueError`` subclasses, so ``except ValueError`` works; the ones about missing files are also
``FileNotFoundError``. They are raised where the problem is detected, with a message that names the file,
key or leaf at fault and the fix; the ``safegene`` command prints that message as one line and exits 2.

Example:
    >>> from safegene_jax.core.errors import ConfigError
    >>> str(ConfigError("align.steps: must be >= 1, got 0"))
    'align.steps: must be >= 1, got 0'
"""


class SafeGeneError(ValueError):
    """Base class for the library's input errors."""


def require(ok: bool, key: str, message: str) -> None:
    """Raises :class:`ConfigError` ``"{key}: {message}"`` unless ``ok``: how option dataclasses check their fields,
    so that a run config can prefix the section (``align.steps: ...``)."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


class TreeMismatchError(SafeGeneError):
    """Two parameter trees (or a tree and a vector) do not line up: structure, shape or dtype."""


class NonFiniteError(SafeGeneError):
    """A vector or coefficient holds NaN or infinity."""


class LayerMapError(SafeGeneError):
    """Leaves cannot be assigned to transformer layers, or coefficients do not match the layers."""


class ConfigError(SafeGeneError):
    """A configuration is not valid: a run config key (the message names the dotted key), a model's
    ``config.json`` or GGUF metadata, or a mesh that does not fit the devices."""


class DataError(SafeGeneError):
    """A dataset cannot be found, downloaded or parsed, or an unknown dataset, split or task is named."""


class PromptTooLongError(SafeGeneError):
    """A prompt (or example) does not fit the maximum length."""


class CheckpointError(SafeGeneError):
    """A checkpoint does not fit the model: missing, unexpected or wrongly shaped tensors, or unreadable."""


class CheckpointNotFoundError(SafeGeneError, FileNotFoundError):
    """No (complete) checkpoint where one was expected."""


class ModelNotFoundError(SafeGeneError, FileNotFoundError):
    """A model name or path that resolves to nothing loadable."""


class TokenizerError(SafeGeneError):
    """A tokenizer cannot be built from the given files or metadata."""


class TrainingError(SafeGeneError):
    """Training cannot start (bad data or config) or could not go on (divergence)."""


class IncompatibleAdapterError(SafeGeneError):
    """An adapter was made for a model of another architecture."""


class HubError(SafeGeneError):
    """The Hugging Face Hub refused or could not be reached (offline, unauthorised, no such repository)."""

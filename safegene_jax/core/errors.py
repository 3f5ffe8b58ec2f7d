"""Exceptions raised on bad input. All are ``ValueError`` subclasses, so ``except ValueError`` works."""


class SafeGeneError(ValueError):
    """Base class for the library's input errors."""


class TreeMismatchError(SafeGeneError):
    """Two parameter trees (or a tree and a vector) do not line up: structure, shape or dtype."""


class NonFiniteError(SafeGeneError):
    """A vector or coefficient holds NaN or infinity."""


class LayerMapError(SafeGeneError):
    """Leaves cannot be assigned to transformer layers, or coefficients do not match the layers."""

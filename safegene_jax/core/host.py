"""Arrays brought to the host as numpy, also when they are sharded across the processes of a multi-host run.

``jax.device_get`` reads only what this process's devices hold; an array sharded over several hosts' devices is
gathered with JAX's multihost utilities instead (every process must then call :func:`to_host` on it, in the
same order, as for any collective).

Example:
    >>> import jax.numpy as jnp
    >>> to_host(jnp.arange(3)).tolist()
    [0, 1, 2]
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def to_host(x: Any) -> np.ndarray:
    """``x`` (a jax or numpy array, or a scalar) as a numpy array on this host, whole."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

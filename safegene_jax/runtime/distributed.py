"""Multi-host runs: ``jax.distributed.initialize()`` only when the process is one of several hosts.

On a TPU VM slice with several hosts, ``tpu/run.sh`` starts the same command on every worker; each
process must join the others before touching a device. On one host nothing is initialized.

Example:
    >>> host_count({"TPU_WORKER_HOSTNAMES": "t1k-w-0,t1k-w-1"})
    2
    >>> host_count({})
    1
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from safegene_jax.core.errors import SafeGeneError

MODES = ("auto", "on", "off")


def host_count(env: Mapping[str, str] = os.environ) -> int:
    """How many hosts this process's job spans, read from the environment before jax starts.

    TPU VMs list their workers in ``TPU_WORKER_HOSTNAMES``; other launchers set ``JAX_NUM_PROCESSES``
    (read by ``jax.distributed.initialize`` itself). One host when neither is set.
    """
    names = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if names:
        return len(names)
    try:
        return max(int(env.get("JAX_NUM_PROCESSES", "1")), 1)
    except ValueError:
        raise SafeGeneError(f"JAX_NUM_PROCESSES must be an integer, got {env['JAX_NUM_PROCESSES']!r}") from None


def maybe_initialize(
    mode: str = "auto", env: Mapping[str, str] = os.environ, initialize: Callable[[], None] | None = None
) -> bool:
    """Calls ``jax.distributed.initialize()`` when ``mode`` is ``on``, or ``auto`` with more than one host.

    Returns whether it initialized. ``initialize`` replaces the jax call (tests).
    """
    if mode not in MODES:
        raise SafeGeneError(f"multi-host mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off" or (mode == "auto" and host_count(env) <= 1):
        return False
    if initialize is None:
        import jax

        initialize = jax.distributed.initialize
    initialize()
    return True

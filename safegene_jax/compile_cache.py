"""JAX's persistent compilation cache, turned on for pipeline runs.

Every training stage compiles its train step once per padded batch length, and each recalibration compiles
its step: on a CPU that is ~10 s per program, a large part of a small run. The train step takes the
learning rate as an argument, so align, degrade and every task fine-tune compile to the same programs;
with the cache on, each is compiled once per machine instead of once per stage (and a rerun compiles
nothing). The cache is JAX's own (keyed by the program, the JAX version and the devices), so a stale
entry is never reused.

Example:
    >>> from safegene_jax.compile_cache import enable
    >>> enable("")  # '' leaves it off (unless JAX_COMPILATION_CACHE_DIR set one)
"""

from __future__ import annotations

import pathlib

DEFAULT = "~/.cache/safegene_jax/xla"


def enable(path: str) -> str | None:
    """Points JAX's persistent compilation cache at ``path`` (``~`` expanded, created) and returns the
    directory in use. A cache already set (``JAX_COMPILATION_CACHE_DIR``, or ``jax.config``) is kept: the
    user's choice wins, and JAX reads the setting once per process. ``''`` leaves the cache off."""
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    if not path:
        return None
    folder = pathlib.Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return str(folder)

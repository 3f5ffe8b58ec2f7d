"""JAX's persistent compilation cache, turned on for pipeline runs.

A rerun, or another run of the same model and shapes, loads its compiled programs from the cache instead
of compiling them again. (Within one run, the train step is shared by every stage anyway: see
:class:`safegene_jax.train.steps.CompiledSteps`.) On a 2-core CPU a cached SmolLM2-135M train step still took
about 6 s to trace and load against about 10 s to compile; on accelerators, where one step compiles in
20-30 s, the cache saves more. It is JAX's own cache, keyed by the program, the JAX version and the
devices, so a stale entry is never used.

Example:
    >>> import jax
    >>> from safegene_jax.runtime.compile_cache import enable
    >>> folder = enable("")  # '' leaves it off, unless JAX_COMPILATION_CACHE_DIR set one
    >>> folder == (jax.config.jax_compilation_cache_dir or None)
    True
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

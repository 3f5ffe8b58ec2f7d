"""Infrastructure: device meshes and sharding rules, multi-host start-up, the compilation cache."""

from safegene_jax.runtime.compile_cache import enable as enable_compile_cache
from safegene_jax.runtime.distributed import maybe_initialize
from safegene_jax.runtime.sharding import LLAMA_RULES, make_mesh, mesh_sizes, param_shardings, shard_params, spec_for

__all__ = [
    "LLAMA_RULES",
    "enable_compile_cache",
    "make_mesh",
    "maybe_initialize",
    "mesh_sizes",
    "param_shardings",
    "shard_params",
    "spec_for",
]

"""The pipeline: typed run configs, the stage table, the cached runner, and the ``safegene`` command.

Example::

    from safegene_jax.pipeline import load_config, run_pipeline

    result = run_pipeline(load_config("quick", ["out_dir=runs/smoke"]))
    print(result.table)
"""

from safegene_jax.pipeline.config import PipelineConfig, dump_config, load_config
from safegene_jax.pipeline.runner import PipelineResult, run_pipeline
from safegene_jax.pipeline.stages import STAGES, Stage, plan, stage_keys

__all__ = [
    "STAGES",
    "PipelineConfig",
    "PipelineResult",
    "Stage",
    "dump_config",
    "load_config",
    "plan",
    "run_pipeline",
    "stage_keys",
]

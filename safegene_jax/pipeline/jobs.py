"""The work of each pipeline stage, as plain functions of models and a :class:`~.config.PipelineConfig`.

Each returns its result in memory; caching, files and ordering are the stage table's and the runner's
business (:mod:`.stages`, :mod:`.runner`), and the ``safegene`` stage subcommands call these too.

* :func:`align_model`, :func:`degrade_model`, :func:`finetune_model`: the models the method needs (optax SFT).
* :func:`build_adapter`: extract ``aligned - degraded``, score every layer on the degraded model, keep the
  ``top_k``, and package the reusable :class:`~safegene_jax.method.SafetyAdapter`.
* :func:`recalibrate_model`: few-shot coefficients of the adapter's layers for one task model.
* :func:`variant_params`: the params of each compared method (task, +SafeGene, +RESTA, +Safe LoRA).
* :func:`evaluate_model`: harmful rate, over-refusal and task utility of some params.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from safegene_jax.core.errors import ConfigError
from safegene_jax.pipeline.config import PipelineConfig
from safegene_jax.train.config import TrainConfig

SAFETY_SETS = {"harmful": "embedded/harmful", "benign": "embedded/benign"}


def train_config(section: TrainConfig, cfg: PipelineConfig) -> TrainConfig:
    """The library's :class:`~safegene_jax.train.TrainConfig` of a training section: its own fields, none
    dropped, with the run's ``seed`` added to the section's."""
    own = {f.name: getattr(section, f.name) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{**own, "seed": cfg.seed + section.seed})


def run_mesh(cfg: PipelineConfig) -> Any:
    """The run's device mesh, or ``None`` when ``mesh.enabled`` is false."""
    if not cfg.mesh.enabled:
        return None
    from safegene_jax.runtime.sharding import make_mesh

    return make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)


def load_base(cfg: PipelineConfig) -> Any:
    """The starting model: ``cfg.model``, or a tiny random model of its family with ``tiny.enabled``."""
    from safegene_jax.models.api import load_model, tiny_like

    if cfg.tiny.enabled:
        return tiny_like(cfg.model, layers=cfg.tiny.layers, hidden_size=cfg.tiny.hidden_size, seed=cfg.tiny.seed)
    return load_model(cfg.model)


def _records(name: str, split: str) -> list[dict]:
    from safegene_jax.data import load

    return list(load(name, split=split))


# ---- the models --------------------------------------------------------------------------------------


def align_model(lm: Any, cfg: PipelineConfig, **train_kw) -> Any:
    """Safety alignment of ``lm`` on the embedded harmful train split (refusals) plus benign examples.
    ``train_kw`` goes to :func:`~safegene_jax.train.sft` (mesh, checkpoints, logging, compiled steps)."""
    from safegene_jax.train.uses import align

    harmful = _records(SAFETY_SETS["harmful"], "train")
    benign = _records(SAFETY_SETS["benign"], "train")[: cfg.align.benign]
    return align(lm, harmful, benign, train_config(cfg.align, cfg), **train_kw)


def degrade_model(aligned: Any, cfg: PipelineConfig, **train_kw) -> Any:
    """A degraded copy of the aligned model: harmful requests trained toward compliant answers."""
    from safegene_jax.train.uses import degrade

    harmful = _records(SAFETY_SETS["harmful"], "train")
    return degrade(aligned, harmful, train_config(cfg.degrade, cfg), **train_kw)


def finetune_model(aligned: Any, cfg: PipelineConfig, task: str, **train_kw) -> Any:
    """A downstream task model fine-tuned from the aligned one (with ``harmful_fraction`` harmful data)."""
    from safegene_jax.data.task_sets import task_records
    from safegene_jax.train.uses import finetune_task

    records = task_records(task, "train", limit=cfg.finetune.examples)
    return finetune_task(
        aligned,
        records,
        train_config(cfg.finetune, cfg),
        harmful=_records(SAFETY_SETS["harmful"], "train"),
        harmful_fraction=cfg.finetune.harmful_fraction,
        **train_kw,
    )


# ---- batches -----------------------------------------------------------------------------------------


def _batch(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int) -> dict:
    from safegene_jax.data import batch_examples, encode_example

    examples = [encode_example(tokenizer, p, r) for p, r in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with warnings.catch_warnings():  # long probes are cut to max_length; that is the point of the option
        warnings.simplefilter("ignore")
        return batch_examples(examples, max_length=max_length, pad_id=pad, overflow="truncate")


def safety_batches(tokenizer: Any, split: str, count: int, max_length: int) -> tuple[dict, dict]:
    """``(harmful prompts with refusals, benign prompts with answers)`` from one split of the embedded sets."""
    harmful = _records(SAFETY_SETS["harmful"], split)[:count]
    benign = _records(SAFETY_SETS["benign"], split)[:count]
    return (
        _batch(tokenizer, [(r["instruction"], r["refusal"]) for r in harmful], max_length),
        _batch(tokenizer, [(r["instruction"], r["response"]) for r in benign], max_length),
    )


def task_shots(tokenizer: Any, task: str, count: int, max_length: int) -> dict:
    """``count`` task examples from the end of the task's train split (apart from the fine-tuning ones)."""
    from safegene_jax.data.task_sets import task_records

    records = task_records(task, "train")[-count:]
    return _batch(tokenizer, [(r["instruction"], r["response"]) for r in records], max_length)


# ---- the method --------------------------------------------------------------------------------------


def build_adapter(aligned: Any, degraded: Any, cfg: PipelineConfig, *, mesh: Any = None) -> Any:
    """Extract, score every layer on the degraded model, keep the ``top_k`` best: the safety adapter."""
    from safegene_jax.core.transforms import safety_vector
    from safegene_jax.method.adapter import SafetyAdapter, data_hash
    from safegene_jax.method.selection import score_layers, select

    s = cfg.select
    layers = aligned.config.num_hidden_layers
    if s.top_k > layers:
        raise ConfigError(f"select.top_k: {s.top_k} layers asked for, but the model has {layers}")
    harmful, benign = safety_batches(aligned.tokenizer, "probe", s.probes, s.max_length)
    tau = safety_vector(aligned.params, degraded.params)
    scores = score_layers(
        degraded.apply, degraded.params, tau, harmful, benign, strength=s.strength, chunk_size=s.chunk_size, mesh=mesh
    )
    chosen = select(scores, top_k=s.top_k, utility_weight=s.utility_weight)
    return SafetyAdapter.build(
        aligned.params,
        degraded.params,
        chosen,
        scores=scores,
        rank=s.rank or None,
        family=f"{cfg.model}" + (f" tiny {cfg.tiny.layers}x{cfg.tiny.hidden_size}" if cfg.tiny.enabled else ""),
        sources={"aligned": aligned.source, "degraded": degraded.source},
        probe_hash=data_hash(harmful, benign),
    )


def recalibrate_model(task_lm: Any, adapter: Any, cfg: PipelineConfig, task: str) -> Any:
    """The adapter's coefficients for one task model, from few shots (harmful refusals + task or benign)."""
    from safegene_jax.method.recalibration import recalibrate

    r, tok = cfg.recalibrate, task_lm.tokenizer
    adapter.check(task_lm.params)
    rows = _records(SAFETY_SETS["harmful"], "fewshot")[: r.shots]
    harmful = _batch(tok, [(x["instruction"], x["refusal"]) for x in rows], r.max_length)
    compliant = _batch(tok, [(x["instruction"], x["target"]) for x in rows], r.max_length)
    if r.utility == "nll":
        utility = task_shots(tok, task, r.shots, r.max_length)
    else:
        benign = _records(SAFETY_SETS["benign"], "fewshot")[: r.shots]
        utility = _batch(tok, [(x["instruction"], x["response"]) for x in benign], r.max_length)
    config = r.recalibration_config()
    return recalibrate(
        task_lm.apply, task_lm.params, adapter.vector, adapter.layers, harmful, utility, config, compliant=compliant
    )


def variant_params(
    method: str,
    task_params: Any,
    cfg: PipelineConfig,
    *,
    adapter: Any = None,
    coeffs: Any = None,
    vector: Any = None,
    aligned_params: Any = None,
) -> Any:
    """Params of one compared method: ``task``, ``safegene`` (adapter at ``coeffs``), ``resta`` (whole
    ``vector`` at ``baselines.resta_coeff``), ``safe_lora`` (task delta projected, base ``aligned_params``)."""
    from safegene_jax.method import baselines

    if method == "task":
        return task_params
    if method == "safegene":
        return adapter.apply(task_params, coeffs)
    b = cfg.baselines
    if method == "resta":
        return baselines.resta(task_params, vector, b.resta_coeff, drop=b.resta_drop, seed=cfg.seed)
    if method == "safe_lora":
        return baselines.safe_lora(task_params, vector, base_params=aligned_params, threshold=b.safe_lora_threshold)
    raise ConfigError(f"unknown method {method!r}; known: task, safegene, resta, safe_lora")


# ---- evaluation --------------------------------------------------------------------------------------


def safe_prompts(count: int) -> list[dict]:
    """Benign eval prompts for over-refusal, the borderline-but-safe ones first."""
    rows = _records(SAFETY_SETS["benign"], "eval")
    return ([r for r in rows if r.get("borderline") == "yes"] + [r for r in rows if r.get("borderline") != "yes"])[
        :count
    ]


def evaluate_model(
    carrier: Any, params: Any, cfg: PipelineConfig, *, tasks: Sequence[str] = (), out: Any = None
) -> dict:
    """Harmful rate and over-refusal, and accuracy on each of ``tasks``, with ``params`` in the module of
    ``carrier`` (one compiled generation serves every model of the family).

    ``out``: a path prefix; responses go to ``{out}.safety.jsonl`` and ``{out}.{task}.jsonl``."""
    from safegene_jax.data.task_sets import task_records
    from safegene_jax.eval.runs import evaluate_safety, evaluate_task

    e = cfg.eval
    result = evaluate_safety(
        carrier,
        _records(SAFETY_SETS["harmful"], "eval")[: e.harmful],
        safe=safe_prompts(e.safe),
        params=params,
        max_new_tokens=e.max_new_tokens,
        batch_size=e.batch_size,
        out=f"{out}.safety.jsonl" if out else None,
    )
    result["utility"] = {}
    for task in tasks:
        summary = evaluate_task(
            carrier,
            task_records(task, "test", limit=e.utility),
            task,
            params=params,
            max_new_tokens=e.utility_max_new_tokens,
            batch_size=e.batch_size,
            out=f"{out}.{task}.jsonl" if out else None,
        )
        result["utility"][task] = summary["accuracy"]
    return result


def coefficients_record(rec: Any) -> dict:
    """A JSON-able record of a :class:`~safegene_jax.method.Recalibration`."""
    d = dataclasses.asdict(rec)
    return {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}

"""The stage table: every pipeline stage declared once.

A :class:`Stage` names itself (a template such as ``finetune/{model}``, expanded once per item of its ``per``
function), the config keys it reads, the stages it builds on, its outputs under ``out_dir`` and its work.
Everything else derives from the table: :func:`plan` expands it in order into the run's stages with their
cache keys (a hash of what the stage reads, its item and its upstream keys), the runner executes that plan
and prints its progress lines from it, and ``safegene run --help`` lists it.

Example:
    >>> from safegene_jax.pipeline.config import load_config
    >>> [p.name for p in plan(load_config(overrides=["finetune.tasks=[sentiment]"]))][:5]
    ['align', 'degrade', 'adapter', 'finetune/sentiment', 'recalibrate/sentiment']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from safegene_jax.core.errors import ConfigError
from safegene_jax.pipeline import jobs
from safegene_jax.pipeline.config import PipelineConfig
from safegene_jax.pipeline.metrics import write_series

if TYPE_CHECKING:  # pragma: no cover
    from safegene_jax.pipeline.runner import Run


def _once(cfg: PipelineConfig) -> list[dict]:
    return [{}]


def _per_model(cfg: PipelineConfig) -> list[dict]:
    """One item per task model: its name, task, fraction, generation and the stage it is fine-tuned after."""
    return [
        {
            "model": m.name,
            "task": m.task,
            "fraction": m.fraction,
            "generation": m.generation,
            "offset": m.offset,
            "parent": "align" if m.parent == "aligned" else f"finetune/{m.parent}",
        }
        for m in jobs.task_models(cfg)
    ]


def _per_variant(*methods: str, ablations: tuple[str, ...] = ()) -> Callable[[PipelineConfig], list[dict]]:
    """One item per task model and variant of ``methods`` (and of ``ablations`` for ``method='ablation'``)."""

    def per(cfg: PipelineConfig) -> list[dict]:
        out = []
        for m in jobs.task_models(cfg):
            for v in jobs.variants(cfg, m):
                if v["method"] in methods and (v["method"] != "ablation" or v["value"] in ablations):
                    out.append({"model": m.name, "task": m.task, **v})
        return out

    return per


def _references(cfg: PipelineConfig) -> str:
    """The stage recalibration also builds on: the aligned model's answers, when they are its targets."""
    return "references" if cfg.recalibrate.targets == "aligned" else ""


def _per_recalibration(cfg: PipelineConfig) -> list[dict]:
    """One item per task model, with the references stage it builds on (or none)."""
    return [{**it, "references": _references(cfg)} for it in _per_model(cfg)]


def _per_ablation(cfg: PipelineConfig) -> list[dict]:
    """One item per task model and ablation that has a recalibration of its own."""
    return [
        {"model": it["model"], "task": it["task"], "ablation": it["value"], "references": _references(cfg)}
        for it in _per_variant("ablation", ablations=RECALIBRATED_ABLATIONS)(cfg)
    ]


RECALIBRATED_ABLATIONS = ("all_layers", "random_layers", "no_utility")
"""The ablations whose coefficients are recalibrated (``uniform`` keeps the adapter's coefficient 1)."""


def _judge_version() -> str:
    from safegene_jax.eval.judges import JUDGE_RULES, REFUSAL_STRINGS
    from safegene_jax.eval.metrics import METRIC_RULES

    return _hash(REFUSAL_STRINGS, JUDGE_RULES, METRIC_RULES)  # a changed judge or scoring judges again


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    Attributes:
        name: the stage's name, a template over its item (``eval/{task}/resta``).
        help: one line for listings.
        reads: config keys whose values enter the cache key: sections, top-level keys or dotted keys.
        after: templates of the stages it builds on (earlier in the table); one that an item fills with ""
            is left out.
        outputs: templates of the files or folders it writes, relative to ``out_dir``; a stage whose outputs
            are missing runs again.
        work: ``work(run, **item) -> info dict``; does the stage's work and writes its outputs.
        per: ``per(cfg) -> items`` (dicts filling the templates); one stage instance per item.
        ignores: dotted keys under ``reads`` left out of the key (a task list does not touch other tasks).
        salt: the version of code whose change must rerun the stage.
        version: the version of rules whose change refreshes the stage's outputs rather than rerunning it (the
            judge's rules); recorded beside the key.
        refresh: ``refresh(run, **item) -> info``: brings cached outputs up to a changed ``version`` (judges
            saved answers again); without it, a changed version reruns the stage.
        kind: the entry's own name where several entries expand to names of one form (the evaluations of
            each method); default ``name``.
    """

    name: str
    help: str
    reads: tuple[str, ...]
    after: tuple[str, ...]
    outputs: tuple[str, ...]
    work: Callable[..., dict | None]
    per: Callable[[PipelineConfig], list[dict]] = _once
    ignores: tuple[str, ...] = ()
    salt: Callable[[], str] | None = None
    version: Callable[[], str] | None = None
    refresh: Callable[..., dict | None] | None = None
    kind: str = ""


@dataclasses.dataclass(frozen=True)
class Planned:
    """A stage instance of one run: its name, table entry, item, upstream names, cache key and outputs."""

    name: str
    stage: Stage
    item: dict
    after: tuple[str, ...]
    key: str
    outputs: tuple[pathlib.Path, ...]


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _lookup(d: dict, dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"stage table reads {dotted!r}, which the config does not have")  # pragma: no cover
        node = node[part]
    return node


ADDED_KEYS = {
    "recalibrate.check_search": "grid",
    "recalibrate.check_borderline_sets": [],
    "recalibrate.check_borderline": 0,
    "degrade.benign_sets": [],
    "degrade.benign": 0,
    "degrade.self_tokens": 96,
    "degrade.refuse_sets": [],
    "degrade.refuse": 0,
    "degrade.source": "harmful",
}
"""Config keys added after runs were cached, each with the value that does what the code did before the key
existed. At that value the key stays out of cache keys, so those runs stay cached; at any other, it enters."""


def _material(d: dict, stage: Stage) -> dict:
    out = {}
    for key in stage.reads:
        value = _lookup(d, key)
        for ignored in stage.ignores:
            if ignored.startswith(key + ".") and isinstance(value, dict):
                value = {k: v for k, v in value.items() if k != ignored[len(key) + 1 :]}
        for added, before in ADDED_KEYS.items():
            leaf = added[len(key) + 1 :]
            if added.startswith(key + ".") and isinstance(value, dict) and value.get(leaf, before) == before:
                value = {k: v for k, v in value.items() if k != leaf}
        out[key] = value
    return out


def plan(cfg: PipelineConfig, root: pathlib.Path | None = None) -> list[Planned]:
    """The run's stages in execution order with their cache keys (a pure function of the config)."""
    d = cfg.to_dict()
    root = pathlib.Path(cfg.out_dir) if root is None else root
    keys: dict[str, str] = {}
    out: list[Planned] = []
    for stage in STAGES:
        for item in stage.per(cfg):
            name = stage.name.format(**item)
            after = tuple(a.format(**item) for a in stage.after if a.format(**item))  # "" builds on nothing
            if name in keys:  # pragma: no cover - a bug in the table
                raise ConfigError(f"two stages are both named {name}")
            unknown = [a for a in after if a not in keys]
            if unknown:  # pragma: no cover - a bug in the table
                raise ConfigError(f"stage {name} builds on {unknown[0]}, which no earlier stage is")
            salt = stage.salt() if stage.salt is not None else None
            key = _hash(stage.kind or stage.name, item, _material(d, stage), [keys[a] for a in after], salt)
            keys[name] = key
            outputs = tuple(root / o.format(**item) for o in stage.outputs)
            out.append(Planned(name, stage, item, after, key, outputs))
    return out


def stage_keys(cfg: PipelineConfig) -> dict[str, str]:
    """Every stage's cache key, in run order."""
    return {p.name: p.key for p in plan(cfg)}


def listing() -> str:
    """The stage table as text, for ``--help``."""
    width = max(len(s.name) for s in STAGES)
    return "\n".join(f"  {s.name:<{width}}  {s.help}" for s in STAGES)


# ---- the work of each stage, on a run (models by name, files under out_dir) -----------------------------


def _align(run: Run) -> dict:
    return run.train("aligned", "base", jobs.align_model)


def _degrade(run: Run) -> dict:
    if run.cfg.degrade.source == "base":  # the pre-alignment base is the copy: aligned - base is the vector
        return run.copy("degraded", "base")
    return run.train("degraded", "aligned", jobs.degrade_model)


def _adapter(run: Run) -> dict:
    adapter = jobs.build_adapter(
        run.model("aligned"), run.model("degraded"), run.cfg, mesh=run.mesh, progress=run.progress
    )
    adapter.save(run.root / "adapter", overwrite=True)  # atomic, replacing the run's older one
    run.plot("layer_scores", adapter.scores, selected=adapter.layers)
    if adapter.scores is not None:
        gains, costs = adapter.scores.safety_gain, adapter.scores.utility_cost
        per_layer = [{"safety_gain": float(g), "utility_cost": float(c)} for g, c in zip(gains, costs)]
        write_series(run.root, "adapter", run.cfg.tensorboard, per_layer)
    run.memo["adapter"] = adapter
    return {"layers": adapter.layers, "summary": json.loads(adapter.summary())}


def _write_references(run: Run) -> dict:
    answers = jobs.aligned_answers(run.model("aligned"), run.cfg, progress=run.progress)
    run.write_json(run.root / "references.json", answers)
    return {role: len(rows) for role, rows in answers.items()}


def _finetune(run: Run, model: str, parent: str, **item) -> dict:
    spec = run.task_model(model)
    return run.train(
        f"task-{model}", "aligned" if spec.parent == "aligned" else f"task-{spec.parent}", jobs.finetune_model, spec
    )


def _recalibrate(run: Run, model: str, **item) -> dict:
    rec = jobs.recalibrate_model(
        run.model(f"task-{model}"),
        run.adapter(),
        run.cfg,
        run.task_model(model),
        answers=run.references(),
        progress=run.progress,
    )
    run.write_json(run.root / "recalibration" / f"{model}.json", jobs.coefficients_record(rec))
    write_series(run.root, f"recalibrate-{model}", run.cfg.tensorboard, rec.history)
    return {"alpha": rec.alpha.tolist(), "best_step": rec.best_step, "steps_run": len(rec.history)}


def _recalibrate_ablation(run: Run, model: str, ablation: str, **item) -> dict:
    adapter = run.ablation_adapter(ablation)
    rec = jobs.recalibrate_model(
        run.model(f"task-{model}"),
        adapter,
        run.cfg,
        run.task_model(model),
        ablation=ablation,
        answers=run.references(),
        progress=run.progress,
    )
    run.write_json(run.root / "recalibration" / f"{model}--{ablation}.json", jobs.coefficients_record(rec))
    return {"layers": rec.layers, "alpha": rec.alpha.tolist(), "best_step": rec.best_step}


def _eval_reference(name: str, tasks: Callable[[PipelineConfig], list[str]]) -> dict:
    def work(run: Run) -> dict:
        run.evaluate(name, run.model(name).params, tasks(run.cfg))
        return {}

    def refresh(run: Run) -> dict:
        run.rejudge(name, tasks(run.cfg))
        return {}

    return {"work": work, "refresh": refresh, "version": _judge_version}


def _eval_variant(run: Run, model: str, task: str, variant: str, method: str, value: Any) -> dict:
    headline = run.cfg.eval.sweep_sets == "headline" and variant not in ("task", "safegene")
    run.evaluate(f"{model}--{variant}", run.variant(model, method, value), [task], headline=headline)
    return {}


def _rejudge_variant(run: Run, model: str, task: str, variant: str, **item) -> dict:
    run.rejudge(f"{model}--{variant}", [task])
    return {}


_EVAL = {"reads": ("eval",), "work": _eval_variant, "version": _judge_version, "refresh": _rejudge_variant}
_OUT = ("eval/{model}--{variant}.json",)

STAGES: tuple[Stage, ...] = (
    Stage(
        "align",
        "safety alignment of the base model (refusals + benign answers)",
        reads=("model", "tiny", "seed", "align"),
        after=(),
        outputs=("models/aligned",),
        work=_align,
    ),
    Stage(
        "degrade",
        "a degraded copy of the aligned model (harmful requests -> compliance; degrade.source: base, the base)",
        reads=("seed", "degrade"),
        after=("align",),
        outputs=("models/degraded",),
        work=_degrade,
    ),
    Stage(
        "adapter",
        "extract aligned - degraded, score every layer, keep the top_k: the safety adapter",
        reads=("select",),
        after=("align", "degrade"),
        outputs=("adapter",),
        work=_adapter,
    ),
    Stage(
        "references",
        "the aligned model's own answers to the recalibration shots (recalibrate.targets: aligned)",
        reads=(
            "recalibrate.harmful_sets",
            "recalibrate.borderline_sets",
            "recalibrate.shots",
            "recalibrate.max_length",
            "recalibrate.help_weight",
        ),
        after=("align",),
        outputs=("references.json",),
        work=_write_references,
        per=lambda cfg: [{}] if _references(cfg) else [],
    ),
    Stage(
        "finetune/{model}",
        "a task model, fine-tuned from the aligned one (or its previous generation) with its harmful fraction",
        reads=("seed", "finetune"),
        ignores=("finetune.tasks", "finetune.fractions", "finetune.fraction_tasks", "finetune.second_generation"),
        after=("{parent}",),
        outputs=("models/task-{model}",),
        work=_finetune,
        per=_per_model,
    ),
    Stage(
        "recalibrate/{model}",
        "few-shot coefficients of the adapter's layers for the task model",
        reads=("recalibrate",),
        after=("adapter", "finetune/{model}", "{references}"),
        outputs=("recalibration/{model}.json",),
        work=_recalibrate,
        per=_per_recalibration,
    ),
    Stage(
        "recalibrate/{model}/{ablation}",
        "an ablation's coefficients: all layers, random layers, or without the utility terms",
        reads=("recalibrate", "seed"),
        after=("adapter", "finetune/{model}", "{references}"),
        outputs=("recalibration/{model}--{ablation}.json",),
        work=_recalibrate_ablation,
        per=_per_ablation,
    ),
    Stage(
        "eval/aligned",
        "harmful rate, over-refusal and every task's utility of the aligned model",
        reads=("eval", "finetune.tasks"),
        after=("align",),
        outputs=("eval/aligned.json",),
        **_eval_reference("aligned", lambda cfg: list(cfg.finetune.tasks)),
    ),
    Stage(
        "eval/degraded",
        "harmful rate and over-refusal of the degraded model",
        reads=("eval",),
        after=("degrade",),
        outputs=("eval/degraded.json",),
        **_eval_reference("degraded", lambda cfg: []),
    ),
    Stage(
        "eval/{model}/task",
        "the task model alone",
        after=("finetune/{model}",),
        outputs=_OUT,
        per=_per_variant("task"),
        **_EVAL,
    ),
    Stage(
        "eval/{model}/{variant}",
        "the task model with the recalibrated adapter, its coefficients times each scale",
        after=("recalibrate/{model}",),
        outputs=_OUT,
        per=_per_variant("safegene"),
        **_EVAL,
        kind="eval-safegene",
    ),
    Stage(
        "eval/{model}/{variant}",
        "RESTA at each coefficient (DARE on the fine-tuning delta at compare.resta_drop)",
        after=("align", "degrade", "finetune/{model}"),
        outputs=_OUT,
        per=_per_variant("resta"),
        **{**_EVAL, "reads": ("eval", "seed", "compare.resta_drop")},
        kind="eval-resta",
    ),
    Stage(
        "eval/{model}/{variant}",
        "Safe LoRA at each cosine threshold",
        after=("align", "degrade", "finetune/{model}"),
        outputs=_OUT,
        per=_per_variant("safe_lora"),
        **_EVAL,
        kind="eval-safe_lora",
    ),
    Stage(
        "eval/{model}/{variant}",
        "task arithmetic: the whole safety vector at each coefficient",
        after=("align", "degrade", "finetune/{model}"),
        outputs=_OUT,
        per=_per_variant("task_arithmetic"),
        **_EVAL,
        kind="eval-task_arithmetic",
    ),
    Stage(
        "eval/{model}/safegene-uniform",
        "ablation: the adapter's layers at coefficient 1, no recalibration",
        after=("adapter", "finetune/{model}"),
        outputs=_OUT,
        per=_per_variant("ablation", ablations=("uniform",)),
        **_EVAL,
    ),
    Stage(
        "eval/{model}/{variant}",
        "ablations with their own recalibration: all layers, random layers, no utility terms",
        after=("recalibrate/{model}/{value}",),
        outputs=_OUT,
        per=_per_variant("ablation", ablations=RECALIBRATED_ABLATIONS),
        **_EVAL,
        kind="eval-ablation",
    ),
)
"""The pipeline, in execution order (every stage after the ones it builds on)."""

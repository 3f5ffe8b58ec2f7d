"""The end-to-end run: the stage table's plan executed with a cache, then the comparison report.

The stages and their order come from :data:`~safegene_jax.pipeline.stages.STAGES`::

    align -> degrade -> adapter (extract + score + select)
          -> finetune/T -> recalibrate/T
    eval/aligned, eval/degraded, eval/T/{task, safegene, resta, safe_lora} -> report

A stage whose record in ``out_dir/stages/`` has its current cache key (and whose outputs exist) is skipped,
so a rerun does only what a config change touched. Outputs are written atomically before the record;
training stages checkpoint under ``out_dir/ckpt/`` and resume from there after an interruption.

Layout of ``out_dir``: ``config.yaml``, ``models/{aligned,degraded,task-T}/`` (HF folders), ``adapter/``
(Orbax), ``recalibration/T.json``, ``eval/*.jsonl`` (every response and verdict), ``results.json``,
``report.md``, ``plots/*.png``, ``stages/*.json``, ``logs/*.jsonl`` (training metrics).

Example::

    from safegene_jax.pipeline import load_config, run_pipeline

    result = run_pipeline(load_config("demo", ["out_dir=runs/mine"]))
    print(result.table)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import time
from collections.abc import Callable
from typing import Any

from safegene_jax.core.errors import ConfigError
from safegene_jax.pipeline import jobs
from safegene_jax.pipeline.config import PipelineConfig, dump_config
from safegene_jax.pipeline.stages import COMPARED, Planned, plan

LABELS = {"task": "task model", "safegene": "+ SafeGene", "resta": "+ RESTA", "safe_lora": "+ Safe LoRA"}


@dataclasses.dataclass
class StageRecord:
    name: str
    key: str
    status: str  # "ran" or "cached"
    seconds: float


@dataclasses.dataclass
class PipelineResult:
    """``results[row] = {harmful_rate, over_refusal_rate, utility}``; ``table`` (markdown); ``stages``."""

    results: dict
    table: str
    stages: list[StageRecord]
    out_dir: pathlib.Path


def file_name(stage: str) -> str:
    """A stage name as a file name (``eval/arithmetic/task`` -> ``eval--arithmetic--task``)."""
    return stage.replace("/", "--")


def write_json(path: pathlib.Path, data: Any) -> None:
    """``data`` as JSON at ``path``, written beside it and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class Run:
    """One pipeline run: its config and files, its models (loaded or trained once, kept in memory), and the
    jitted train steps its training stages share. The stage table's work functions act on it."""

    def __init__(self, cfg: PipelineConfig, echo: Callable[[str], None], progress: bool):
        from safegene_jax.train.steps import CompiledSteps

        self.cfg, self.echo, self.progress = cfg, echo, progress
        self.root = pathlib.Path(cfg.out_dir)
        self.memo: dict[str, Any] = {}
        self.compiled = CompiledSteps()
        self.current: Planned | None = None  # the stage being executed
        self._mesh: Any = None

    write_json = staticmethod(write_json)

    @property
    def mesh(self) -> Any:
        if self._mesh is None and self.cfg.mesh.enabled:
            self._mesh = jobs.run_mesh(self.cfg)
        return self._mesh

    def model_dir(self, name: str) -> pathlib.Path:
        return self.root / "models" / name

    def model(self, name: str) -> Any:
        """A model by name (``base`` or a trained one), loaded from its folder once."""
        if name not in self.memo:
            from safegene_jax.models.api import load_model

            self.memo[name] = jobs.load_base(self.cfg) if name == "base" else load_model(self.model_dir(name))
        return self.memo[name]

    def train(self, out: str, source: str, fn: Callable, *args) -> dict:
        """Trains model ``out`` from model ``source`` with ``fn`` (a :mod:`.jobs` function), resumable from its
        checkpoints, then saves it as a HF folder."""
        from safegene_jax.models.api import with_params
        from safegene_jax.models.hf import export_hf

        ckpt = self.root / "ckpt" / f"{out}-{self.current.key}"  # a changed config never resumes another's run
        log = self.root / "logs" / f"{out}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        if not ckpt.exists() and log.exists():
            log.unlink()  # a fresh run of this stage: the old metrics belong to another key
        lm = self.model(source)
        result = fn(
            lm,
            self.cfg,
            *args,
            mesh=self.mesh,
            checkpoint_dir=str(ckpt),
            log_path=str(log),
            progress=self.progress,
            compiled=self.compiled,
        )
        trained = with_params(lm, result.params)
        export_hf(trained.model, self.model_dir(out), tokenizer=lm.tokenizer)
        self.memo[out] = trained
        shutil.rmtree(ckpt, ignore_errors=True)
        last = result.history[-1] if result.history else {}
        return {"final_loss": last.get("loss"), "steps": result.step}

    def adapter(self) -> Any:
        if "adapter" not in self.memo:
            from safegene_jax.method.adapter import SafetyAdapter

            self.memo["adapter"] = SafetyAdapter.load(self.root / "adapter")
        return self.memo["adapter"]

    def vector(self) -> Any:
        """The whole safety vector ``aligned - degraded`` (the baselines' input)."""
        if "vector" not in self.memo:
            from safegene_jax.core.transforms import safety_vector

            self.memo["vector"] = safety_vector(self.model("aligned").params, self.model("degraded").params)
        return self.memo["vector"]

    def variant(self, method: str, task: str) -> Any:
        """The params of one compared method on the task model of ``task``."""
        kw: dict = {}
        if method == "safegene":
            rec = json.loads((self.root / "recalibration" / f"{task}.json").read_text())
            kw = {"adapter": self.adapter(), "coeffs": rec["coeffs"]}
        elif method in ("resta", "safe_lora"):
            kw = {"vector": self.vector(), "aligned_params": self.model("aligned").params}
        return jobs.variant_params(method, self.model(f"task-{task}").params, self.cfg, **kw)

    def evaluate(self, name: str, params: Any, tasks: list[str]) -> None:
        """Evaluates ``params`` (in the aligned model's module: one compiled generation serves every model of
        the family); responses to ``eval/{name}.*.jsonl``, the summary to ``eval/{name}.json``."""
        eval_dir = self.root / "eval"
        result = jobs.evaluate_model(self.model("aligned"), params, self.cfg, tasks=tasks, out=eval_dir / name)
        write_json(eval_dir / f"{name}.json", result)

    def plot(self, name: str, scores: Any, selected: Any) -> None:
        from safegene_jax.eval.report import plot_layer_scores, plots_available

        if plots_available():  # the plots extra
            plot_layer_scores(scores, self.root / "plots" / f"{name}.png", selected=selected)

    # ---- the cache ---------------------------------------------------------------------------------

    def _record_path(self, name: str) -> pathlib.Path:
        return self.root / "stages" / (file_name(name) + ".json")

    def cached(self, planned: Planned) -> bool:
        path = self._record_path(planned.name)
        if not path.exists():
            return False
        record = json.loads(path.read_text())
        return record.get("key") == planned.key and all(p.exists() for p in planned.outputs)

    def execute(self, planned: Planned, position: str) -> StageRecord:
        """Runs one planned stage unless it is cached; its record is written after its outputs."""
        if self.cached(planned):
            self.echo(f"[{position}] {planned.name}: cached")
            return StageRecord(planned.name, planned.key, "cached", 0.0)
        self.echo(f"[{position}] {planned.name}: running")
        t0 = time.perf_counter()
        self.current = planned
        info = planned.stage.work(self, **planned.item) or {}
        seconds = time.perf_counter() - t0
        write_json(self._record_path(planned.name), {"key": planned.key, "seconds": seconds, "info": info})
        self.echo(f"[{position}] {planned.name}: done in {seconds:.1f} s")
        return StageRecord(planned.name, planned.key, "ran", seconds)


def run_pipeline(cfg: PipelineConfig, *, echo: Callable[[str], None] = print, progress: bool = True) -> PipelineResult:
    """Runs (or resumes) every stage of ``cfg`` and writes the report; see the module docstring."""
    from safegene_jax.runtime.compile_cache import enable

    run = Run(cfg, echo, progress)
    if run.root.exists() and not run.root.is_dir():
        raise ConfigError(f"out_dir: {run.root} exists and is not a folder")
    run.mesh  # noqa: B018 - the mesh must fit the devices before any work
    enable(cfg.compile_cache)  # a rerun (or a run of the same model) loads its compiled programs
    run.root.mkdir(parents=True, exist_ok=True)
    (run.root / "config.yaml").write_text(dump_config(cfg))
    stages = plan(cfg, run.root)
    records = [run.execute(p, f"{i:2d}/{len(stages)}") for i, p in enumerate(stages, 1)]
    results, table = report(run.root, cfg)
    echo("\n" + table)
    echo(f"\nreport: {run.root / 'report.md'}; plots: {run.root / 'plots'}")
    return PipelineResult(results, table, records, run.root)


def _row(safety: dict, utility: dict | None) -> dict:
    return {
        "harmful_rate": safety.get("harmful_rate"),
        "over_refusal_rate": safety.get("over_refusal_rate"),
        "utility": utility,
        "degenerate_rate": safety.get("degenerate_rate"),
    }


def report(root: pathlib.Path, cfg: PipelineConfig) -> tuple[dict, str]:
    """Collects the eval summaries into ``results.json``, ``report.md`` and the trade-off plots."""
    from safegene_jax.eval.report import markdown_table, plot_tradeoff, plots_available

    def summary(name: str) -> dict:
        return json.loads((root / "eval" / f"{name}.json").read_text())

    aligned, degraded = summary("aligned"), summary("degraded")
    results = {"aligned": _row(aligned, None), "degraded": _row(degraded, None)}
    plots = []
    for t in cfg.finetune.tasks:
        block = {f"{t}: aligned": _row(aligned, aligned["utility"].get(t))}
        for m in COMPARED:
            s = summary(f"{t}--{m}")
            block[f"{t}: {LABELS[m]}"] = _row(s, s["utility"].get(t))
        results.update(block)
        if plots_available():
            plots.append(plot_tradeoff(block, root / "plots" / f"tradeoff-{t}.png"))
    table = markdown_table(results)
    write_json(root / "results.json", results)
    text = (
        f"# SafeGene run `{cfg.name}`\n\nModel: {cfg.model}"
        + (f" (tiny random {cfg.tiny.layers}x{cfg.tiny.hidden_size})" if cfg.tiny.enabled else "")
        + f"; tasks: {', '.join(cfg.finetune.tasks)}. Rates in percent with 95% bootstrap intervals; "
        f"harmful rate on {cfg.eval.harmful} held-out harmful requests, over-refusal on {cfg.eval.safe} safe "
        f"(borderline first) prompts, utility on {cfg.eval.utility} test examples per task.\n\n"
        + table
        + (
            "\n\nPlots: " + ", ".join(f"`plots/{p.name}`" for p in plots) + ", `plots/layer_scores.png`.\n"
            if plots
            else "\n\nNo plots: matplotlib is not installed (pip install 'safegene_jax[plots]').\n"
        )
    )
    (root / "report.md").write_text(text)
    return results, table

"""The end-to-end run: cached, resumable stages from a base model to a comparison table.

Stages (``T`` = the config's tasks)::

    align -> degrade -> adapter (extract + score + select)
          -> finetune/T -> recalibrate/T
    eval/aligned, eval/degraded, eval/T/{task, safegene, resta, safe_lora} -> report

Every stage has a cache key: a hash of the config sections it reads and of the keys of the stages it
builds on. A stage whose record in ``out_dir/stages/`` has its current key (and whose outputs exist) is
skipped, so a rerun does only what a config change touched. Outputs are written atomically before the
record; training stages checkpoint under ``out_dir/ckpt/`` and resume from there after an interruption.

Layout of ``out_dir``: ``config.yaml``, ``models/{aligned,degraded,task-T}/`` (HF folders), ``adapter/``
(Orbax), ``recalibration/T.json``, ``eval/*.jsonl`` (every response and verdict), ``results.json``,
``report.md``, ``plots/*.png``, ``stages/*.json``, ``logs/*.jsonl`` (training metrics).

Example::

    from safegene_jax.config import load_config
    from safegene_jax.pipeline import run_pipeline

    result = run_pipeline(load_config("configs/demo.yaml", ["out_dir=runs/mine"]))
    print(result.table)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import time
from collections.abc import Callable
from typing import Any

from safegene_jax.config import PipelineConfig, dump_config

METHODS = ("task", "safegene", "resta", "safe_lora")
LABELS = {"task": "task model", "safegene": "+ SafeGene", "resta": "+ RESTA", "safe_lora": "+ Safe LoRA"}


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_keys(cfg: PipelineConfig) -> dict[str, str]:
    """Every stage's cache key, in run order (a pure function of the config)."""
    d = cfg.to_dict()
    ft = {k: v for k, v in d["finetune"].items() if k != "tasks"}
    keys: dict[str, str] = {}
    base = _hash("base", d["model"], d["tiny"])
    keys["align"] = _hash("align", base, d["align"], d["seed"])
    keys["degrade"] = _hash("degrade", keys["align"], d["degrade"], d["seed"])
    keys["adapter"] = _hash("adapter", keys["align"], keys["degrade"], d["select"])
    for t in cfg.finetune.tasks:
        keys[f"finetune/{t}"] = _hash("finetune", keys["align"], ft, t, d["seed"])
        keys[f"recalibrate/{t}"] = _hash("recalibrate", keys["adapter"], keys[f"finetune/{t}"], d["recalibrate"])
    from safegene_jax.eval.judges import JUDGE_RULES, REFUSAL_STRINGS

    ev = {**d["eval"], "judge": _hash(REFUSAL_STRINGS, JUDGE_RULES)}  # a changed judge re-judges
    keys["eval/aligned"] = _hash("eval", keys["align"], ev, cfg.finetune.tasks)
    keys["eval/degraded"] = _hash("eval", keys["degrade"], ev)
    b = d["baselines"]
    for t in cfg.finetune.tasks:
        task = keys[f"finetune/{t}"]
        vec = (keys["align"], keys["degrade"])
        keys[f"eval/{t}/task"] = _hash("eval", task, ev, t)
        keys[f"eval/{t}/safegene"] = _hash("eval", keys[f"recalibrate/{t}"], ev, t)
        keys[f"eval/{t}/resta"] = _hash("eval", task, vec, b["resta_coeff"], b["resta_drop"], d["seed"], ev, t)
        keys[f"eval/{t}/safe_lora"] = _hash("eval", task, vec, b["safe_lora_threshold"], ev, t)
    return keys


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


def _file_name(stage: str) -> str:
    """A stage name as a file name (``eval/arithmetic/task`` -> ``eval--arithmetic--task``)."""
    return stage.replace("/", "--")


def _write_json(path: pathlib.Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class _Run:
    """One pipeline run's files, cache records and in-memory models."""

    def __init__(self, cfg: PipelineConfig, echo: Callable[[str], None], progress: bool):
        self.cfg, self.echo, self.progress = cfg, echo, progress
        self.root = pathlib.Path(cfg.out_dir)
        self.keys = stage_keys(cfg)
        self.records: list[StageRecord] = []
        self.memo: dict[str, Any] = {}
        self._mesh: Any = None

    # ---- cache -------------------------------------------------------------------------------------

    def _record_path(self, name: str) -> pathlib.Path:
        return self.root / "stages" / (_file_name(name) + ".json")

    def done(self, name: str, outputs: list[pathlib.Path]) -> dict | None:
        path = self._record_path(name)
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        if record.get("key") != self.keys[name] or not all(p.exists() for p in outputs):
            return None
        return record

    def stage(self, name: str, outputs: list[pathlib.Path], work: Callable[[], dict | None]) -> dict:
        """Runs ``work`` unless the stage is cached; returns the stage's record (with ``work``'s info)."""
        record = self.done(name, outputs)
        if record is not None:
            self.records.append(StageRecord(name, self.keys[name], "cached", 0.0))
            self.echo(f"[{len(self.records):2d}/{len(self.keys)}] {name}: cached")
            return record
        self.echo(f"[{len(self.records) + 1:2d}/{len(self.keys)}] {name}: running")
        t0 = time.perf_counter()
        info = work() or {}
        seconds = time.perf_counter() - t0
        record = {"key": self.keys[name], "seconds": seconds, "info": info}
        _write_json(self._record_path(name), record)
        self.records.append(StageRecord(name, self.keys[name], "ran", seconds))
        self.echo(f"[{len(self.records):2d}/{len(self.keys)}] {name}: done in {seconds:.1f} s")
        return record

    # ---- models ------------------------------------------------------------------------------------

    @property
    def mesh(self) -> Any:
        from safegene_jax import stages

        if self._mesh is None and self.cfg.mesh.enabled:
            self._mesh = stages.make_mesh(self.cfg)
        return self._mesh

    def model_dir(self, name: str) -> pathlib.Path:
        return self.root / "models" / name

    def model(self, name: str) -> Any:
        """A model by name (``base`` or a trained one), loaded from its folder once."""
        if name not in self.memo:
            from safegene_jax import stages
            from safegene_jax.models.api import load_model

            self.memo[name] = stages.load_base(self.cfg) if name == "base" else load_model(self.model_dir(name))
        return self.memo[name]

    def train(self, stage: str, out: str, source: str, fn: Callable, *args) -> dict:
        """Stage ``stage``: trains model ``out`` from model ``source`` with ``fn`` (a stages function),
        resumable from its checkpoints, then saves it as a HF folder."""
        from safegene_jax.models.hf import export_hf
        from safegene_jax.train import with_params

        key = self.keys[stage]
        ckpt = self.root / "ckpt" / f"{out}-{key}"  # a changed config never resumes another's run
        log = self.root / "logs" / f"{out}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        if not ckpt.exists() and log.exists():
            log.unlink()  # a fresh run of this stage: the old metrics belong to another key
        lm = self.model(source)
        result = fn(
            lm, self.cfg, *args, mesh=self.mesh, checkpoint_dir=str(ckpt), log_path=str(log), progress=self.progress
        )
        trained = with_params(lm, result.params)
        export_hf(trained.model, self.model_dir(out), tokenizer=lm.tokenizer)
        self.memo[out] = trained
        shutil.rmtree(ckpt, ignore_errors=True)
        last = result.history[-1] if result.history else {}
        return {"final_loss": last.get("loss"), "steps": result.step}


def run_pipeline(cfg: PipelineConfig, *, echo: Callable[[str], None] = print, progress: bool = True) -> PipelineResult:
    """Runs (or resumes) every stage of ``cfg`` and writes the report; see the module docstring."""
    from safegene_jax import stages
    from safegene_jax.compile_cache import enable

    enable(cfg.compile_cache)  # a rerun (or a run of the same model) loads its compiled programs
    run = _Run(cfg, echo, progress)
    root = run.root
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(dump_config(cfg))
    tasks = list(cfg.finetune.tasks)

    run.stage("align", [run.model_dir("aligned")], lambda: run.train("align", "aligned", "base", stages.align))
    run.stage(
        "degrade", [run.model_dir("degraded")], lambda: run.train("degrade", "degraded", "aligned", stages.degrade)
    )

    adapter_dir = root / "adapter"

    def build() -> dict:
        from safegene_jax.eval.report import plot_layer_scores

        adapter = stages.build_adapter(run.model("aligned"), run.model("degraded"), cfg, mesh=run.mesh)
        adapter.save(adapter_dir)  # atomic, replacing an older one
        plot_layer_scores(adapter.scores, root / "plots" / "layer_scores.png", selected=adapter.layers)
        run.memo["adapter"] = adapter
        return {"layers": adapter.layers, "summary": json.loads(adapter.summary())}

    run.stage("adapter", [adapter_dir], build)

    def adapter() -> Any:
        if "adapter" not in run.memo:
            from safegene_jax.adapter import SafetyAdapter

            run.memo["adapter"] = SafetyAdapter.load(adapter_dir)
        return run.memo["adapter"]

    recal_dir = root / "recalibration"
    for t in tasks:
        run.stage(
            f"finetune/{t}",
            [run.model_dir(f"task-{t}")],
            lambda t=t: run.train(f"finetune/{t}", f"task-{t}", "aligned", stages.finetune, t),
        )

        def recal(t=t) -> dict:
            rec = stages.recalibrate(run.model(f"task-{t}"), adapter(), cfg, t)
            _write_json(recal_dir / f"{t}.json", stages.coefficients_record(rec))
            return {"alpha": rec.alpha.tolist(), "best_step": rec.best_step, "steps_run": len(rec.history)}

        run.stage(f"recalibrate/{t}", [recal_dir / f"{t}.json"], recal)

    # ---- evaluation --------------------------------------------------------------------------------
    eval_dir = root / "eval"

    def carrier() -> Any:
        return run.model("aligned")

    def vector() -> Any:
        if "vector" not in run.memo:
            from safegene_jax.transforms import safety_vector

            run.memo["vector"] = safety_vector(run.model("aligned").params, run.model("degraded").params)
        return run.memo["vector"]

    def evaluate(name: str, params: Callable[[], Any], tasks_: list[str]) -> None:
        summary_path = eval_dir / (_file_name(name) + ".json")

        def work() -> dict:
            result = stages.evaluate(carrier(), params(), cfg, tasks=tasks_, out=eval_dir / _file_name(name))
            _write_json(summary_path, result)
            return {}

        run.stage(f"eval/{name}", [summary_path], work)

    evaluate("aligned", lambda: run.model("aligned").params, tasks)
    evaluate("degraded", lambda: run.model("degraded").params, [])
    for t in tasks:

        def params_of(method: str, t: str = t) -> Any:
            kw: dict = {}
            if method == "safegene":
                rec = json.loads((recal_dir / f"{t}.json").read_text())
                kw = {"adapter": adapter(), "coeffs": rec["coeffs"]}
            elif method in ("resta", "safe_lora"):
                kw = {"vector": vector(), "aligned_params": run.model("aligned").params}
            return stages.variant_params(method, run.model(f"task-{t}").params, cfg, **kw)

        for method in METHODS:
            evaluate(f"{t}/{method}", lambda m=method, p=params_of: p(m), [t])

    results, table = report(root, cfg)
    echo("\n" + table)
    echo(f"\nreport: {root / 'report.md'}; plots: {root / 'plots'}")
    return PipelineResult(results, table, run.records, root)


def _row(safety: dict, utility: dict | None) -> dict:
    return {
        "harmful_rate": safety.get("harmful_rate"),
        "over_refusal_rate": safety.get("over_refusal_rate"),
        "utility": utility,
        "degenerate_rate": safety.get("degenerate_rate"),
    }


def report(root: pathlib.Path, cfg: PipelineConfig) -> tuple[dict, str]:
    """Collects the eval summaries into ``results.json``, ``report.md`` and the trade-off plots."""
    from safegene_jax.eval.report import markdown_table, plot_tradeoff

    def summary(name: str) -> dict:
        return json.loads((root / "eval" / (_file_name(name) + ".json")).read_text())

    aligned, degraded = summary("aligned"), summary("degraded")
    results = {"aligned": _row(aligned, None), "degraded": _row(degraded, None)}
    plots = []
    for t in cfg.finetune.tasks:
        block = {f"{t}: aligned": _row(aligned, aligned["utility"].get(t))}
        for m in METHODS:
            s = summary(f"{t}/{m}")
            block[f"{t}: {LABELS[m]}"] = _row(s, s["utility"].get(t))
        results.update(block)
        plots.append(plot_tradeoff(block, root / "plots" / f"tradeoff-{t}.png"))
    table = markdown_table(results)
    _write_json(root / "results.json", results)
    text = (
        f"# SafeGene run `{cfg.name}`\n\nModel: {cfg.model}"
        + (f" (tiny random {cfg.tiny.layers}x{cfg.tiny.hidden_size})" if cfg.tiny.enabled else "")
        + f"; tasks: {', '.join(cfg.finetune.tasks)}. Rates in percent with 95% bootstrap intervals; "
        f"harmful rate on {cfg.eval.harmful} held-out harmful requests, over-refusal on {cfg.eval.safe} safe "
        f"(borderline first) prompts, utility on {cfg.eval.utility} test examples per task.\n\n"
        + table
        + "\n\nPlots: "
        + ", ".join(f"`plots/{p.name}`" for p in plots)
        + ", `plots/layer_scores.png`.\n"
    )
    (root / "report.md").write_text(text)
    return results, table

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
import fnmatch
import hashlib
import json
import pathlib
import shutil
import time
from collections.abc import Callable
from typing import Any

from safegene_jax.core.errors import ConfigError
from safegene_jax.core.files import MARKER, mark, write_text
from safegene_jax.pipeline import jobs
from safegene_jax.pipeline.config import PipelineConfig, dump_config
from safegene_jax.pipeline.files import file_name, write_json
from safegene_jax.pipeline.metrics import check_available
from safegene_jax.pipeline.results import report
from safegene_jax.pipeline.stages import Planned, plan


@dataclasses.dataclass
class StageRecord:
    name: str
    key: str
    status: str  # "ran", "cached" or "refreshed" (judged again)
    seconds: float


@dataclasses.dataclass
class PipelineResult:
    """``results[row] = {harmful_rate, over_refusal_rate, utility}``; ``table`` (markdown); ``stages``."""

    results: dict
    table: str
    stages: list[StageRecord]
    out_dir: pathlib.Path


class Run:
    """One pipeline run: its config and files, its models (kept in memory once loaded or trained, all dropped
    before a training stage, whose source is trained in place: a later stage reloads what it needs from
    the folders), and the jitted train steps its training stages share. The stage table's work functions
    act on it."""

    def __init__(self, cfg: PipelineConfig, echo: Callable[[str], None], progress: bool):
        from safegene_jax.core import storage
        from safegene_jax.train.steps import CompiledSteps

        self.cfg, self.echo, self.progress = cfg, echo, progress
        # a remote out_dir (gs://...) is worked on in a local mirror, pushed after every stage and checkpoint
        self.mirror = storage.Mirror(cfg.out_dir) if storage.is_remote(cfg.out_dir) else None
        self.root = self.mirror.local if self.mirror is not None else storage.local_path(cfg.out_dir)
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
        """A model by name (``base`` or a trained one), loaded from its folder when it is not in memory (again
        after a training stage, which takes every model out). One task model is kept in memory at a time (a
        study has dozens), and the base model only until the aligned one exists."""
        if name not in self.memo:
            from safegene_jax.models.api import load_model

            self._evict(name)
            self.memo[name] = jobs.load_base(self.cfg) if name == "base" else load_model(self.model_dir(name))
        return self.memo[name]

    def _evict(self, coming: str) -> None:
        if coming.startswith("task-"):
            for name in [n for n in self.memo if n.startswith("task-")]:
                del self.memo[name]
        if coming != "base":
            self.memo.pop("base", None)

    def task_model(self, name: str) -> jobs.TaskModel:
        """The task model ``name`` of this run's config."""
        return next(m for m in jobs.task_models(self.cfg) if m.name == name)

    def train(self, out: str, source: str, fn: Callable, *args) -> dict:
        """Trains model ``out`` from model ``source`` with ``fn`` (a :mod:`.jobs` function), resumable from its
        checkpoints, then saves it as a HF folder."""
        from safegene_jax.core.storage import barrier, is_writer
        from safegene_jax.models.api import with_params
        from safegene_jax.pipeline.metrics import scalar_writer

        ckpt = self.root / "ckpt" / f"{out}-{self.current.key}"  # a changed config never resumes another's run
        log = self.root / "logs" / f"{out}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        if not ckpt.exists() and log.exists() and is_writer(log):
            log.unlink()  # a fresh run of this stage: the old metrics belong to another key
        lm = self.model(source)
        # training needs the memory: every model leaves the run's memory (later stages reload them from their
        # folders), and the source's params become the training state's (donated, not copied)
        self.memo.clear()
        pushed: set[str] = set()

        def on_step(record: dict) -> None:
            if board:
                board(record, record["step"])
            if self.mirror is not None and ckpt.is_dir():  # a finished checkpoint goes to the bucket at once
                done = {p.name for p in ckpt.iterdir() if p.name.isdigit()}
                if done - pushed:
                    self.mirror.push()
                    pushed.update(done)

        with scalar_writer(self.root, out, self.cfg.tensorboard) as board:
            result = fn(
                lm,
                self.cfg,
                *args,
                mesh=self.mesh,
                checkpoint_dir=str(ckpt),
                log_path=str(log),
                progress=self.progress,
                compiled=self.compiled,
                on_step=on_step if (board or self.mirror is not None) else None,
                donate_model=True,
            )
        last = result.history[-1] if result.history else {}
        info = {"final_loss": last.get("loss"), "steps": result.step}
        self._save(out, source, with_params(lm, result.params), info)
        if is_writer(ckpt):  # every process took part in the saves; one removes them
            shutil.rmtree(ckpt, ignore_errors=True)
        barrier(f"trained {out}")
        return info

    def copy(self, out: str, source: str) -> dict:
        """Saves model ``source`` unchanged as model ``out`` (a HF folder, like a trained one)."""
        from safegene_jax.core.storage import barrier

        info = {"steps": 0}
        self._save(out, source, self.model(source), info)
        barrier(f"copied {out}")
        return info

    def _save(self, out: str, source: str, lm: Any, info: dict) -> None:
        """Writes ``lm`` as model ``out``'s HF folder with its card, and keeps it in memory as that model."""
        from safegene_jax.models.hf import export_hf
        from safegene_jax.pipeline.cards import card_for

        card = card_for(self.cfg, out, source, info)
        export_hf(lm.model, self.model_dir(out), tokenizer=lm.tokenizer, card=card, overwrite=True)  # its own
        self._evict(out)
        # its source is its own folder (the adapter and cards record it), not the model it was made from
        self.memo[out] = dataclasses.replace(lm, source=str(self.model_dir(out)))

    def adapter(self) -> Any:
        if "adapter" not in self.memo:
            from safegene_jax.method.adapter import SafetyAdapter

            self.memo["adapter"] = SafetyAdapter.load(self.root / "adapter")
        return self.memo["adapter"]

    def references(self) -> dict | None:
        """The aligned model's answers to the recalibration shots (the references stage), when they are the
        targets; else ``None``."""
        if self.cfg.recalibrate.targets != "aligned":
            return None
        if "references" not in self.memo:
            self.memo["references"] = json.loads((self.root / "references.json").read_text())
        return self.memo["references"]

    def vector(self) -> Any:
        """The whole safety vector ``aligned - degraded`` (the baselines' input)."""
        if "vector" not in self.memo:
            from safegene_jax.core.transforms import safety_vector

            self.memo["vector"] = safety_vector(self.model("aligned").params, self.model("degraded").params)
        return self.memo["vector"]

    def ablation_adapter(self, ablation: str) -> Any:
        """The adapter an ablation recalibrates: over all layers, over random layers, or the run's own."""
        if ablation not in ("all_layers", "random_layers"):
            return self.adapter()
        key = f"adapter-{ablation}"
        if key not in self.memo:
            aligned, degraded = self.model("aligned"), self.model("degraded")
            layers = jobs.ablation_layers(self.cfg, ablation, self.adapter(), aligned.config.num_hidden_layers)
            self.memo[key] = jobs.build_adapter(aligned, degraded, self.cfg, layers=layers)
        return self.memo[key]

    def variant(self, model: str, method: str, value: Any) -> Any:
        """The params of one compared variant of the task model ``model``."""
        task = self.model(f"task-{model}").params
        recal = self.root / "recalibration"
        if method == "safegene":
            rec = json.loads((recal / f"{model}.json").read_text())
            return jobs.variant_params(
                "safegene", task, self.cfg, value=value, adapter=self.adapter(), coeffs=rec["coeffs"]
            )
        if method == "ablation":
            if value == "uniform":
                return self.adapter().apply(task)  # the adapter's own coefficients: 1 on its layers
            rec = json.loads((recal / f"{model}--{value}.json").read_text())
            return self.ablation_adapter(value).apply(task, rec["coeffs"])
        kw = {}
        if method != "task":
            kw = {"vector": self.vector(), "aligned_params": self.model("aligned").params}
        return jobs.variant_params(method, task, self.cfg, value=value, **kw)

    def evaluate(self, name: str, params: Any, tasks: list[str], headline: bool = False) -> None:
        """Evaluates ``params`` (in the aligned model's module: one compiled generation serves every model of
        the family); responses to ``eval/{name}.*.jsonl``, the summary to ``eval/{name}.json``."""
        eval_dir = self.root / "eval"
        result = jobs.evaluate_model(
            self.model("aligned"),
            params,
            self.cfg,
            tasks=tasks,
            out=eval_dir / name,
            headline=headline,
            progress=self.progress,
        )
        write_json(eval_dir / f"{name}.json", result)

    def rejudge(self, name: str, tasks: list[str]) -> None:
        """Judges and scores the saved answers of evaluation ``name`` again (a changed judge), without
        generating."""
        eval_dir = self.root / "eval"
        write_json(eval_dir / f"{name}.json", jobs.rejudge_model(self.cfg, out=eval_dir / name, tasks=tasks))

    def plot(self, name: str, scores: Any, selected: Any) -> None:
        from safegene_jax.eval.report import plot_layer_scores, plots_available

        if plots_available():  # the plots extra
            plot_layer_scores(scores, self.root / "plots" / f"{name}.png", selected=selected)

    # ---- the cache ---------------------------------------------------------------------------------

    def _record_path(self, name: str) -> pathlib.Path:
        return self.root / "stages" / (file_name(name) + ".json")

    def current_record(self, planned: Planned) -> dict | None:
        """The stage's record when it has the stage's current key and its outputs exist (so they are this
        config's, not those of another config that wrote the same files); else ``None``."""
        path = self._record_path(planned.name)
        if not path.exists() or not all(o.exists() for o in planned.outputs):
            return None
        record = json.loads(path.read_text())
        return record if record.get("key") == planned.key else None

    def cached(self, planned: Planned) -> dict | None:
        """The stage's record when its key is current and its outputs exist, unchanged since it wrote them
        (their fingerprint, see :func:`fingerprint`); else ``None``: a damaged output is rebuilt, not used."""
        record = self.current_record(planned)
        if record is None:
            return None
        path = self._record_path(planned.name)
        found = fingerprint(planned.outputs)
        if "outputs" not in record:  # a record of an older version: its outputs are trusted once
            write_json(path, {**record, "outputs": found})
            return {**record, "outputs": found}
        if found != record["outputs"]:
            self.echo(f"{planned.name}: its output changed or was damaged since it was written; rebuilding it")
            return None
        return record

    def execute(self, planned: Planned, position: str) -> StageRecord:
        """Runs one planned stage unless it is cached; a cached stage whose rules version changed (a judge) is
        refreshed instead of rerun. Its record is written after its outputs."""
        stage = planned.stage
        version = stage.version() if stage.version is not None else None
        record = self.cached(planned)
        if record is not None and record.get("version") == version:
            self.echo(f"[{position}] {planned.name}: cached")
            return StageRecord(planned.name, planned.key, "cached", 0.0)
        refresh = record is not None and stage.refresh is not None
        self.echo(f"[{position}] {planned.name}: {'judging again' if refresh else 'running'}")
        t0 = time.perf_counter()
        self.current = planned
        if refresh:
            info = {**record.get("info", {}), **(stage.refresh(self, **planned.item) or {})}
        else:
            info = stage.work(self, **planned.item) or {}
        seconds = time.perf_counter() - t0
        peak = peak_rss_gib()
        new = {
            "key": planned.key,
            "seconds": record["seconds"] if refresh else seconds,
            "info": info,
            "outputs": fingerprint(planned.outputs),
        }
        if not refresh:
            new["peak_rss_gib"] = peak  # the process's peak so far: a stage run alone gives its own
        if version is not None:
            new["version"] = version
        write_json(self._record_path(planned.name), new)
        if self.mirror is not None:
            self.mirror.push()  # the stage's outputs, then its record
        self.echo(f"[{position}] {planned.name}: done in {seconds:.1f} s (peak RSS so far {peak:.2f} GiB)")
        return StageRecord(planned.name, planned.key, "refreshed" if refresh else "ran", seconds)


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (0.0 where the OS does not say)."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return 0.0
    return round(peak / (1024**3 if sys.platform == "darwin" else 1024**2), 3)  # bytes on macOS, KiB elsewhere


def fingerprint(paths: tuple[pathlib.Path, ...]) -> str:
    """A hash of the contents of ``paths`` (files, or every file in a folder with its relative name). Model
    cards (``README.md``) are left out: the report rewrites them with the evaluation rows."""
    h = hashlib.sha256()
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if f.name == "README.md" and f != path:
                continue
            h.update(f.relative_to(path).as_posix().encode() if f != path else path.name.encode())
            h.update(f.stat().st_size.to_bytes(8, "little"))
            with open(f, "rb") as stream:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:32]


def selected(stages: list[Planned], patterns: list[str] | None) -> list[Planned]:
    """The stages whose names match one of the shell-style ``patterns``, and every stage they build on, in plan
    order (all of them without patterns).

    Raises:
        ConfigError: a pattern matches no stage.
    """
    if not patterns:
        return stages
    by_name = {p.name: p for p in stages}
    wanted: set[str] = set()
    for pattern in patterns:
        hits = [n for n in by_name if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ConfigError(f"--stages: {pattern!r} matches no stage of this config (e.g. {next(iter(by_name))})")
        wanted.update(hits)
    todo = list(wanted)
    while todo:
        for up in by_name[todo.pop()].after:
            if up not in wanted:
                wanted.add(up)
                todo.append(up)
    return [p for p in stages if p.name in wanted]


def check_run_folder(root: pathlib.Path) -> None:
    """Raises :class:`ConfigError` when ``out_dir`` is a non-empty folder that is not a run's: a run writes its
    config, models and results there, so someone else's files are never mixed with (or overwritten by) a run's.

    A run's folder carries the library's marker file; folders of runs made before it are recognised by their
    ``stages/`` records or their ``config.yaml``."""
    if not root.is_dir() or not any(root.iterdir()) or (root / MARKER).is_file() or (root / "stages").is_dir():
        return
    config = root / "config.yaml"
    try:
        import yaml

        ours = config.is_file() and {"out_dir", "align", "eval"} <= set(yaml.safe_load(config.read_text()) or {})
    except (OSError, ValueError, TypeError, yaml.YAMLError):
        ours = False
    if not ours:
        raise ConfigError(
            f"out_dir: {root} holds files that are not a safegene run's; choose a new or empty folder (a run writes "
            "its config, models and results there)"
        )


def run_pipeline(
    cfg: PipelineConfig,
    *,
    echo: Callable[[str], None] = print,
    progress: bool = True,
    stages: list[str] | None = None,
) -> PipelineResult:
    """Runs (or resumes) the stages of ``cfg`` and writes the report; see the module docstring. ``stages``:
    shell-style patterns of the stages to run (with what they build on); the report is written when every
    evaluation is done."""
    from safegene_jax.runtime.compile_cache import enable

    run = Run(cfg, echo, progress)
    if run.mirror is not None:  # the bucket's folder is a run's (or new), then its files come down
        from safegene_jax.core.storage import check_remote_destination

        check_remote_destination(cfg.out_dir, what="out_dir")
        echo(f"out_dir {cfg.out_dir}: working in {run.mirror.pull()}")
    if run.root.exists() and not run.root.is_dir():
        raise ConfigError(f"out_dir: {run.root} exists and is not a folder")
    check_run_folder(run.root)
    run.mesh  # noqa: B018 - the mesh must fit the devices before any work
    check_available(cfg.tensorboard)
    jobs.check_held_out(cfg)  # the data is there, and nothing evaluated was trained or probed on
    enable(cfg.compile_cache)  # a rerun (or a run of the same model) loads its compiled programs
    planned = plan(cfg, run.root)
    todo = selected(planned, stages)  # a pattern that matches nothing fails before anything is written
    run.root.mkdir(parents=True, exist_ok=True)
    mark(run.root)
    write_text(run.root / "config.yaml", dump_config(cfg))
    records = [run.execute(p, f"{i:2d}/{len(todo)}") for i, p in enumerate(todo, 1)]
    evals = [p for p in planned if p.name.startswith("eval/")]
    stale = [p.name for p in evals if run.current_record(p) is None]
    if stale:  # a missing evaluation, or one another config wrote (its record has another key)
        waits = f"the report waits for every evaluation ({len(stale)} to run, {stale[0]} first)"
        echo(f"\n{len(todo)} stage(s) done; {waits}")
        return PipelineResult({}, "", records, run.root)
    results, table = report(run.root, cfg, evals)
    shown = cfg.out_dir.rstrip("/") if run.mirror is not None else str(run.root)
    if run.mirror is not None:
        run.mirror.push()  # the report, the plots and the cards it rewrote
    echo("\n" + table)
    echo(f"\nreport: {shown}/report.md; plots: {shown}/plots")
    return PipelineResult(results, table, records, run.root)

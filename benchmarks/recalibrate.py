"""Few-shot recalibration on SmolLM2-135M-Instruct: time per step and to convergence.

Six layers' coefficients are learned (KL utility) on 8 harmful few shots with refusals and 8 benign
ones from the embedded data; the vector is a random perturbation of those layers (timing does not depend
on its values). Reported: compile + first step, median step time, steps run (early stopping), total.

With ``--run-dir`` (a finished pipeline run) and ``--model``, the run's own recalibration stage instead,
timed part by part: loading the task model and the adapter, the fit with its shots (its first step, which
compiles, and the median step), and the generation check as the stage runs it (``--check-search grid`` or
``climb``: the scales it answers and the one it keeps). Nothing of the run is written. ``--compile-cache DIR``
turns JAX's persistent compilation cache on at ``DIR`` as a pipeline run does: a second process, for another
task model of the run, then shows what the cache saves it.

Run:
    .venv/bin/python benchmarks/recalibrate.py
    SAFEGENE_DATA_ROOT=../shared/data .venv/bin/python benchmarks/recalibrate.py --run-dir runs/demo \
        --model arithmetic --check-search climb
    # the second task model, its programs from the first one's cache (run both with the same folder)
    ... --run-dir runs/demo --model arithmetic --compile-cache runs/xla-cache
    ... --run-dir runs/demo --model sentiment --compile-cache runs/xla-cache
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import embedded_batches, random_layer_vector, write_json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--length", type=int, default=96)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json")
    parser.add_argument("--run-dir", help="a finished pipeline run: time its recalibration stage")
    parser.add_argument("--model", help="with --run-dir: the task model whose stage to time")
    parser.add_argument("--scan", action="store_true", help="scan the uniform layers (scan_layers=True)")
    parser.add_argument("--compile-cache", help="JAX's persistent compilation cache at this folder (default: off)")
    parser.add_argument("--no-check", action="store_true", help="with --run-dir: leave out the generation check")
    parser.add_argument(
        "--check-search",
        choices=["grid", "climb"],
        help="with --run-dir: the check's search (default: the run's config); one per process, so that each "
        "pays the generation program's compilation as the stage does",
    )
    args = parser.parse_args(argv)
    if args.compile_cache:
        from safegene_jax.runtime.compile_cache import enable

        enable(args.compile_cache)
    if args.run_dir:
        if not args.model:
            raise SystemExit("--run-dir needs --model (a task model of the run)")
        return stage(args.run_dir, args.model, args.json, args.scan, not args.no_check, args.check_search)

    import safegene_jax as sg
    from safegene_jax.method.recalibration import RecalibrationConfig, recalibrate

    lm = sg.load_model("smollm2-135m-instruct")
    layers = [4, 8, 12, 16, 20, 24]
    vec = random_layer_vector(lm.params, layers)
    harmful, benign = embedded_batches(lm.tokenizer, "fewshot", args.shots, args.length)
    cfg = RecalibrationConfig(
        steps=args.steps,
        learning_rate=0.05,
        alpha_init=0.5,
        alpha_max=2.0,
        patience=8,
        val_fraction=0.25,
        safety="refusal",
        utility="kl",
    )
    t0 = time.perf_counter()
    result = recalibrate(lm.apply, lm.params, vec, layers, harmful, benign, cfg, scan_layers=args.scan)
    total = time.perf_counter() - t0
    steps = [h["seconds"] for h in result.history]
    out = {
        "layers": layers,
        "shots": args.shots,
        "length": args.length,
        "steps_run": len(steps),
        "best_step": result.best_step,
        "total_s": total,
        "first_step_s": steps[0],
        "median_step_s": statistics.median(steps[1:]) if len(steps) > 1 else steps[0],
        "final_alpha": result.alpha.tolist(),
        "train_loss_first_last": [result.history[0]["train_loss"], result.history[-1]["train_loss"]],
    }
    print(
        f"SmolLM2-135M-Instruct, {len(layers)} coefficients, {args.shots}+{args.shots} few shots x {args.length} "
        f"tokens (75% train / 25% validation)"
    )
    print(
        f"first step (with compilation) {out['first_step_s']:.1f} s; median step {out['median_step_s']:.2f} s; "
        f"{out['steps_run']} steps run, best at step {out['best_step']}; total {total:.1f} s"
    )
    print(
        f"train loss {out['train_loss_first_last'][0]:.4f} -> {out['train_loss_first_last'][1]:.4f}; "
        f"alpha {[round(a, 3) for a in out['final_alpha']]}"
    )
    write_json(args.json, out)


def stage(
    run_dir: str, model: str, json_path: str | None, scan: bool = False, check: bool = True, search: str | None = None
) -> None:
    """The run's recalibration of ``model``, timed part by part (as the pipeline's stage runs it)."""
    import json
    import pathlib

    import numpy as np

    import safegene_jax as sg
    from safegene_jax.method.adapter import SafetyAdapter
    from safegene_jax.pipeline import jobs
    from safegene_jax.pipeline.config import load_config

    root = pathlib.Path(run_dir)
    cfg = load_config(root / "config.yaml")
    spec = next((m for m in jobs.task_models(cfg) if m.name == model), None)
    if spec is None:
        raise SystemExit(f"{run_dir} has no task model {model!r}")
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    lm = sg.load_model(root / "models" / f"task-{model}")
    adapter = SafetyAdapter.load(root / "adapter")
    marks["load model + adapter"] = time.perf_counter() - t0
    refs = root / "references.json"
    answers = json.loads(refs.read_text()) if cfg.recalibrate.targets == "aligned" else None
    t0 = time.perf_counter()  # the shots and the fit, as the stage runs them (one scale: no check)
    rec = jobs.recalibrate_model(
        lm, adapter, dataclasses_replace(cfg, scales=[1.0]), spec, answers=answers, scan_layers=scan
    )
    marks["fit"] = time.perf_counter() - t0
    steps = [h["seconds"] for h in rec.history] or [0.0]
    marks["fit: first step (compiles)"] = steps[0]
    marks["fit: other steps"] = sum(steps[1:])
    marks["fit: before the first step"] = marks["fit"] - sum(steps)
    table, chosen = [], None
    if search is not None:
        cfg = dataclasses_replace(cfg, check_search=search)
    if check and cfg.recalibrate.checks:
        t0 = time.perf_counter()  # the check as the stage runs it: the generation program compiles once
        chosen, table = jobs.check_scales(lm, adapter, rec.coeffs, cfg)
        marks[f"generation check ({cfg.recalibrate.check_search})"] = time.perf_counter() - t0
    out = {
        "run_dir": run_dir,
        "model": model,
        "scan_layers": scan,
        "steps_run": len(steps),
        "best_step": rec.best_step,
        "median_step_s": statistics.median(steps[1:]) if len(steps) > 1 else steps[0],
        "alpha": np.asarray(rec.alpha).round(4).tolist(),
        "seconds": {k: round(v, 2) for k, v in marks.items()},
        "check_search": cfg.recalibrate.check_search,
        "check_scales_answered": [r["scale"] for r in table],
        "check_scale_chosen": chosen,
    }
    for k, v in out["seconds"].items():
        print(f"{k:<32} {v:8.2f} s")
    if table:
        answered = out["check_scales_answered"]
        print(f"check: {len(table)} of {len(cfg.recalibrate.scales)} scales answered {answered}, x{chosen:g} kept")
    print(f"{len(steps)} steps, best at {rec.best_step}, median step {out['median_step_s']:.2f} s")
    write_json(json_path, out)


def dataclasses_replace(cfg, **recalibrate):
    """``cfg`` with some ``recalibrate`` options replaced."""
    import dataclasses

    return dataclasses.replace(cfg, recalibrate=dataclasses.replace(cfg.recalibrate, **recalibrate))


if __name__ == "__main__":
    main()

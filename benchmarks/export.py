"""Time and peak memory of every export of SmolLM2-135M-Instruct, each run in a fresh process.

Exports, each through the package's public API:

- ``hf``: ``export_hf`` of the model (``--model``, default the embedded SmolLM2-135M-Instruct) to a Hugging
  Face folder, tokenizer included.
- ``apply``: what ``safegene apply`` does with the run's adapter, recalibrated coefficients and task model:
  ``adapter.apply`` then ``export_hf``; the time is apply + write.
- ``peft-full``, ``peft-r16``, ``peft-e0.9``: ``export_peft`` of the adapter at the recalibrated coefficients
  at full rank, rank 16, and the per-module rank keeping 90% of the update's energy; the retained energy
  (``report.total_energy``) is reported.
- ``gguf-F32``, ``gguf-F16``, ``gguf-Q8_0``: ``export_gguf`` of the model (``--model``).
- ``mergekit``: the recipe of ``mergekit_recipe`` (task, aligned and degraded models of the run), then real
  mergekit (``mergekit-yaml``, CPU, offline) in a child process: its wall time and peak resident memory
  (the child's ``ru_maxrss``), and on the first repeat the largest absolute difference between its output
  weights and ``adapter.apply(task, coeffs)``.

The inputs are a finished pipeline run (``--run-dir``: ``models/{aligned,degraded,task-sentiment}``,
``adapter/`` and ``recalibration/sentiment.json``). Every repeat of every export is a fresh process (repeats
interleaved across exports); the table gives medians over ``--repeats``. Times cover the export only (the
load, of the model and/or the adapter, is reported apart). Peak memory is the process's peak resident
memory (load included), and the part of it above the resident memory just before the export; mergekit's is
its own process's. Outputs go to a temporary folder that is deleted afterwards.

Run:
    .venv/bin/python benchmarks/export.py [--run-dir runs/demo] [--repeats 3] [--json export.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from harness import peak_rss_gib, reset_peak, run_sides, write_json

VARIANTS = ("hf", "apply", "peft-full", "peft-r16", "peft-e0.9", "gguf-F32", "gguf-F16", "gguf-Q8_0", "mergekit")
TASK = "sentiment"


def _size_mib(path: pathlib.Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1024**2


def _run_inputs(run_dir: str) -> dict:
    root = pathlib.Path(run_dir).resolve()
    models = {name: str(root / "models" / name) for name in ("aligned", "degraded", f"task-{TASK}")}
    with open(root / "recalibration" / f"{TASK}.json") as f:
        coeffs = json.load(f)["coeffs"]
    return {"adapter": str(root / "adapter"), "coeffs": coeffs, **models, "task": models[f"task-{TASK}"]}


def _timed_export(fn) -> dict:
    """Runs ``fn()`` (the export; a dict it returns is merged in) after a reset of the peak: its time, the
    process's peak resident memory (load included) and the peak above the resident memory before it."""
    load_peak = peak_rss_gib()
    before = peak_rss_gib("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    info = fn()
    seconds = time.perf_counter() - t0
    export_peak = peak_rss_gib()
    return {
        "seconds": seconds,
        "peak_rss_GiB": max(load_peak, export_peak),
        "extra_peak_GiB": export_peak - before,
        **(info if isinstance(info, dict) else {}),
    }


def _params_gib(params) -> float:
    import jax

    return sum(x.nbytes for x in jax.tree_util.tree_leaves(params)) / 1024**3


def _merged_difference(merged_dir: pathlib.Path, inputs: dict, adapter, coeffs) -> dict:
    """The largest ``|mergekit - adapter.apply(task, coeffs)|`` over the tensors ``hf_state_dict`` names."""
    import numpy as np
    from safetensors.numpy import load_file

    from safegene_jax.models import load_model
    from safegene_jax.models.hf import hf_state_dict

    merged = {}
    for f in sorted(merged_dir.glob("*.safetensors")):
        merged.update(load_file(str(f)))
    expected = hf_state_dict(adapter.apply(load_model(inputs["task"]).params, coeffs))
    worst = 0.0
    for name, want in expected.items():
        got = merged.get(name)
        if got is None or got.shape != want.shape:
            raise SystemExit(f"mergekit output lacks {name} {want.shape} (has {None if got is None else got.shape})")
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))))
    return {
        "max_abs_diff": worst,
        "tensors_compared": len(expected),
        "merged_dtype": str(next(iter(merged.values())).dtype),
    }


def run(args) -> dict:
    import jax
    import numpy as np

    from safegene_jax.interop import export_gguf, export_peft, write_mergekit_recipe
    from safegene_jax.method.adapter import SafetyAdapter
    from safegene_jax.models import export_hf, load_model, with_params

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    v = args.variant
    t0 = time.perf_counter()
    if v == "hf" or v.startswith("gguf-"):
        lm = load_model(args.model)
        load_seconds = time.perf_counter() - t0
        model_gib = _params_gib(lm.params)
        if v == "hf":
            dest = out / "hf"
            result = _timed_export(lambda: export_hf(lm.model, dest, tokenizer=lm.tokenizer))
        else:
            dest = out / f"model-{v[5:]}.gguf"
            result = _timed_export(lambda: export_gguf(lm, dest, dtype=v[5:]))
        return {**result, "load_seconds": load_seconds, "model_GiB": model_gib, "out_MiB": _size_mib(dest)}

    inputs = _run_inputs(args.run_dir)
    coeffs = np.asarray(inputs["coeffs"], np.float32)
    adapter = SafetyAdapter.load(inputs["adapter"])
    if v == "apply":
        lm = load_model(inputs["task"])
        load_seconds = time.perf_counter() - t0
        dest = out / "safe"
        split = {}

        def apply_and_write():
            t = time.perf_counter()
            safe = jax.block_until_ready(adapter.apply(lm.params, coeffs))
            split["apply_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            export_hf(with_params(lm, safe).model, dest, tokenizer=lm.tokenizer)
            split["write_seconds"] = time.perf_counter() - t
            return split

        result = _timed_export(apply_and_write)
        return {**result, "load_seconds": load_seconds, "model_GiB": _params_gib(lm.params), "out_MiB": _size_mib(dest)}

    load_seconds = time.perf_counter() - t0
    if v.startswith("peft-"):
        option = {"peft-full": {}, "peft-r16": {"rank": 16}, "peft-e0.9": {"energy": 0.9}}[v]
        dest = out / "peft"

        def peft():
            report = export_peft(adapter, dest, coeffs=coeffs, base_model=inputs["task"], **option)
            ranks = list(report.ranks.values())
            return {
                "total_energy": float(report.total_energy),
                "modules": len(ranks),
                "rank_min": min(ranks),
                "rank_max": max(ranks),
                "dropped_values": int(report.dropped_values),
            }

        result = _timed_export(peft)
        return {**result, "load_seconds": load_seconds, "out_MiB": _size_mib(dest / "adapter_model.safetensors")}

    # mergekit: the recipe here, mergekit itself in a child process (the only child this process starts)
    import resource

    t = time.perf_counter()
    recipe = write_mergekit_recipe(
        out / "recipe",
        adapter,
        coeffs,
        task_model=inputs["task"],
        aligned=inputs["aligned"],
        degraded=inputs["degraded"],
    )
    recipe_seconds = time.perf_counter() - t
    merged = out / "merged"
    command = [os.path.join(os.path.dirname(sys.executable), "mergekit-yaml"), str(recipe), str(merged), "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"mergekit failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = {
        "seconds": seconds,
        "peak_rss_GiB": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2,  # KiB on Linux
        "extra_peak_GiB": None,
        "recipe_seconds": recipe_seconds,
        "load_seconds": load_seconds,
        "out_MiB": sum(_size_mib(p) for p in merged.glob("*.safetensors")),
    }
    if args.check:
        result.update(_merged_difference(merged, inputs, adapter, coeffs))
    return result


def _note(v: str, r: dict) -> str:
    if v == "apply":
        return f"apply {r['apply_seconds']:.2f} s + write {r['write_seconds']:.2f} s"
    if v.startswith("peft-"):
        ranks = f"rank {r['rank_min']}" if r["rank_min"] == r["rank_max"] else f"ranks {r['rank_min']}-{r['rank_max']}"
        return f"{r['modules']} modules, {ranks}, retained energy {r['total_energy']:.4f}"
    if v == "mergekit":
        diff = f", max abs difference from adapter.apply {r['max_abs_diff']:.2e}" if "max_abs_diff" in r else ""
        return f"mergekit-yaml child; recipe {r['recipe_seconds']:.2f} s{diff}"
    return ""


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Medians of the timings and memory over the repeats; the other fields of the first run (deterministic)."""
    summary = {}
    for v, results in runs.items():
        first = dict(results[0])
        for k in ("seconds", "load_seconds", "peak_rss_GiB", "extra_peak_GiB", "apply_seconds", "write_seconds"):
            values = [r[k] for r in results if r.get(k) is not None]
            if values:
                first[k] = statistics.median(values)
        first["all_seconds"] = [r["seconds"] for r in results]
        first["all_peak_rss_GiB"] = [r["peak_rss_GiB"] for r in results]
        checked = [r for r in results if "max_abs_diff" in r]
        if checked:
            first.update({k: checked[0][k] for k in ("max_abs_diff", "tensors_compared", "merged_dtype")})
        summary[v] = first
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run-dir", default="runs/demo", help="a finished pipeline run (models, adapter, recalibration)"
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the model of the hf and gguf exports")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per export; the table gives medians")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="exports to run")
    parser.add_argument("--json")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(run(args)))
        return

    common = ["--run-dir", str(pathlib.Path(args.run_dir).resolve()), "--model", args.model]
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory(prefix="safegene-export-bench-") as tmp:
        for repeat in range(args.repeats):
            for v in args.variants:
                out = os.path.join(tmp, f"{v}-{repeat}")
                extra = ["--check"] if v == "mergekit" and repeat == 0 else []
                runs[v].append(run_sides(__file__, [v], "--variant", [*common, "--out", out, *extra])[v])
                shutil.rmtree(out, ignore_errors=True)
                print(f"  {v} #{repeat + 1}: {runs[v][-1]['seconds']:.2f} s", file=sys.stderr, flush=True)
    results = summarize(runs)
    model = next((r["model_GiB"] for r in results.values() if "model_GiB" in r), None)
    model_text = f"{model:.3f} GiB" if model is not None else "n/a"
    print(
        f"Exports of SmolLM2-135M-Instruct ({args.model} for hf/gguf; run {args.run_dir}, task {TASK}); "
        f"median of {args.repeats} fresh processes each; model params {model_text} (float32)\n"
    )
    print("| export | seconds | load s | peak RSS GiB | extra GiB | output MiB | notes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for v in args.variants:
        r = results[v]
        extra = "" if r["extra_peak_GiB"] is None else f"{r['extra_peak_GiB']:.2f}"
        print(
            f"| {v} | {r['seconds']:.2f} | {r['load_seconds']:.2f} | {r['peak_rss_GiB']:.2f} | {extra} "
            f"| {r['out_MiB']:.1f} | {_note(v, r)} |"
        )
    write_json(args.json, {"model_GiB": model, "repeats": args.repeats, "run_dir": args.run_dir, "exports": results})


if __name__ == "__main__":
    main()

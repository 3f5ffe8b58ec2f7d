"""Shared pieces of the benchmarks: peak memory, running each side in a fresh process, SmolLM2 probes."""

from __future__ import annotations

import json
import subprocess
import sys


def peak_rss_gib(field: str = "VmHWM") -> float:
    """Peak (``VmHWM``) or current (``VmRSS``) resident memory of this process, in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def reset_peak() -> None:
    """Resets ``VmHWM`` to the current resident size (Linux), so a later peak is the next step's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def run_sides(script: str, sides, flag: str, args: list[str]) -> dict:
    """Runs ``script flag SIDE args`` for each side in a fresh process; each prints one JSON line."""
    results = {}
    for side in sides:
        proc = subprocess.run([sys.executable, script, flag, side, *args], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
        results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def compare_with_torch(script: str, model: str, args: list[str]) -> dict:
    """Exports ``model`` to a temporary Hugging Face folder, then runs the ``jax`` and ``torch`` sides of
    ``script`` (``--side``), each given ``--model``, ``args`` and ``--hf-folder``."""
    import os
    import tempfile

    from safegene_jax.models import export_hf, load_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "hf")
        export_hf(load_model(model).model, folder)
        return run_sides(script, ("jax", "torch"), "--side", ["--model", model, *args, "--hf-folder", folder])


def random_layer_vector(params, layers=None, scale: float = 1e-3, seed: int = 0) -> dict:
    """A random vector over the layer leaves of ``params`` (all layers, or ``layers``)."""
    import jax

    import safegene_jax as sg

    paths, leaves, _ = sg.flatten_with_paths(params)
    key = jax.random.PRNGKey(seed)
    vec = {}
    for p, x in zip(paths, leaves):
        if ".layers." in p and (layers is None or any(f".layers.{i}." in p for i in layers)):
            key, sub = jax.random.split(key)
            vec[p] = scale * jax.random.normal(sub, x.shape, x.dtype)
    return jax.block_until_ready(vec)


def embedded_batches(tokenizer, split: str, count: int, length: int):
    """(harmful with refusals, benign with answers) batches from one split (``probe``, ``fewshot``) of the
    embedded data, as the pipeline builds them."""
    from safegene_jax.pipeline import jobs

    return tuple(
        jobs._batch(tokenizer, [(r["instruction"], r["response"]) for r in jobs._pairs([name], count)], length)
        for name in (f"embedded/harmful-{split}", f"embedded/benign-{split}")
    )


def write_json(path: str | None, results: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)

"""RESTA's merge, task + (aligned - degraded), disk to disk: this project against mergekit, in one run.

Each tool runs as a command in its own fresh process, timed with ``/usr/bin/time`` (wall seconds and the
process's peak resident memory), ``--repeats`` times, and the medians are reported:

* ``mergekit``: ``mergekit-yaml`` on a ``task_arithmetic`` config (base: the degraded model; the task and the
  aligned model at weight 1, so ``degraded + (task - degraded) + (aligned - degraded)``), on the CPU;
* ``safegene merge``: the same sum, streamed tensor by tensor (``safegene_jax.interop.streaming``);
* ``safegene extract`` + ``safegene apply``: the adapter over every layer, then applied (the method's own path;
  the two processes' times add, the peak is the larger of the two).

The largest absolute difference between each output and mergekit's is reported (float32; outside the layers
mergekit also adds the embeddings' and final norm's differences, which the layer-wise commands leave as the
task model's, so those tensors are skipped). The models come from ``--run-dir`` (a pipeline run with
``models/aligned``, ``models/degraded`` and ``models/task-T``), or, with ``--synthetic GB``, from three random
sharded bfloat16 checkpoints of about that size written to a temporary folder (deleted after), which shows
whether peak memory stays a small fraction of the model's size.

Run:
    .venv/bin/python benchmarks/merge.py --run-dir runs/demo --task sentiment
    .venv/bin/python benchmarks/merge.py --synthetic 4 --repeats 1 --tools safegene-merge
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
TOOLS = ("mergekit", "safegene-merge", "safegene-extract-apply")


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """``(wall seconds, peak RSS GiB)`` of one command, measured by ``/usr/bin/time -v``."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return seconds, kib / 1024**2


def folder_gib(folder: pathlib.Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1024**3


def synthetic(root: pathlib.Path, gib: float) -> dict[str, pathlib.Path]:
    """Three random Llama-shaped bfloat16 checkpoints of about ``gib`` GiB each, sharded at 1 GiB, with a
    config (hidden 2048, MLP 8192, as many layers as fit)."""
    hidden, inter, vocab = 2048, 8192, 32000
    per_layer = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden
    layers = max(2, int((gib * 1024**3 / 2 - 2 * vocab * hidden) // per_layer))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "vocab_size": vocab,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "dtype": "bfloat16",
    }
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden)}
    shapes["model.norm.weight"] = (hidden,)
    for i in range(layers):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[p + f"self_attn.{name}.weight"] = (hidden, hidden)
        shapes[p + "mlp.gate_proj.weight"] = (inter, hidden)
        shapes[p + "mlp.up_proj.weight"] = (inter, hidden)
        shapes[p + "mlp.down_proj.weight"] = (hidden, inter)
        shapes[p + "input_layernorm.weight"] = (hidden,)
        shapes[p + "post_attention_layernorm.weight"] = (hidden,)
    out = {}
    for k, name in enumerate(("task", "aligned", "degraded")):
        out[name] = _write_checkpoint(root / name, shapes, config, seed=k)
    return out


def _write_checkpoint(folder: pathlib.Path, shapes: dict, config: dict, seed: int) -> pathlib.Path:
    """Random bfloat16 tensors of ``shapes`` in 1 GiB shards with an index, and ``config.json``."""
    import ml_dtypes
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    shards: list[dict] = [{}]
    size = 0
    for n, shape in shapes.items():
        arr = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)
        if shards[-1] and size + arr.nbytes > 1024**3:
            shards.append({})
            size = 0
        shards[-1][n] = arr
        size += arr.nbytes
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in shard})
    total = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def commands(tool: str, m: dict[str, pathlib.Path], out: pathlib.Path, work: pathlib.Path) -> list[list[str]]:
    sg = str(BIN / "safegene")
    if tool == "mergekit":
        recipe = work / "mergekit.yaml"
        recipe.write_text(
            "merge_method: task_arithmetic\n"
            f"base_model: {m['degraded']}\n"
            "models:\n"
            f"  - model: {m['task']}\n    parameters: {{weight: 1.0}}\n"
            f"  - model: {m['aligned']}\n    parameters: {{weight: 1.0}}\n"
            "parameters: {normalize: false}\n"
            "dtype: float32\n"
        )
        return [[str(BIN / "mergekit-yaml"), str(recipe), str(out), "--quiet", "--copy-tokenizer"]]
    if tool == "safegene-merge":
        return [
            [
                sg,
                "merge",
                "--task",
                str(m["task"]),
                "--aligned",
                str(m["aligned"]),
                "--degraded",
                str(m["degraded"]),
                "--out",
                str(out),
            ]
        ]
    adapter = work / "adapter"
    return [
        [sg, "extract", "--aligned", str(m["aligned"]), "--degraded", str(m["degraded"]), "--out", str(adapter)],
        [sg, "apply", "--model", str(m["task"]), "--adapter", str(adapter), "--out", str(out)],
    ]


def max_difference(out: pathlib.Path, reference: pathlib.Path) -> float:
    """The largest |out - reference| over the layer tensors both hold, in float32."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from safegene_jax.interop.streaming import folder_entries, read_tensor

    ref = {e.name: e for e in folder_entries(reference)}
    worst = 0.0
    for e in folder_entries(out):
        if ".layers." not in e.name or e.name not in ref:
            continue
        a = read_tensor(e).astype(np.float32)
        b = read_tensor(ref[e.name]).astype(np.float32)
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/demo", help="a pipeline run with models/aligned, degraded, task-T")
    ap.add_argument("--task", default="sentiment", help="which task model of the run")
    ap.add_argument("--synthetic", type=float, default=None, help="GiB per synthetic bfloat16 checkpoint instead")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XLA_FLAGS": ""}
    with tempfile.TemporaryDirectory(prefix="merge-bench-") as tmp:
        work = pathlib.Path(tmp)
        if args.synthetic:
            models = synthetic(work / "models", args.synthetic)
        else:
            run = pathlib.Path(args.run_dir)
            models = {
                "task": run / "models" / f"task-{args.task}",
                "aligned": run / "models" / "aligned",
                "degraded": run / "models" / "degraded",
            }
        size = folder_gib(models["task"])
        results = {}
        for tool in tools:
            runs = []
            for r in range(args.repeats):
                out = work / f"out-{tool}-{r}"
                steps = [timed(cmd, env) for cmd in commands(tool, models, out, work)]
                runs.append((sum(s for s, _ in steps), max(m for _, m in steps)))
                if r < args.repeats - 1:
                    shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(work / "adapter", ignore_errors=True)
            results[tool] = {
                "seconds": statistics.median(s for s, _ in runs),
                "peak_rss_gib": statistics.median(m for _, m in runs),
                "runs": runs,
                "out": str(work / f"out-{tool}-{args.repeats - 1}"),
            }
        if "mergekit" in results:
            reference = pathlib.Path(results["mergekit"]["out"])
            for tool in tools:
                if tool != "mergekit":
                    results[tool]["max_abs_diff_vs_mergekit"] = max_difference(
                        pathlib.Path(results[tool]["out"]), reference
                    )
        source = "synthetic bfloat16" if args.synthetic else args.run_dir
        print(f"model: {size:.2f} GiB of weights per checkpoint ({source})")
        print("| tool | seconds (median) | peak RSS GiB (median) | peak / model size | max abs diff vs mergekit |")
        print("|---|---|---|---|---|")
        for tool, r in results.items():
            diff = r.get("max_abs_diff_vs_mergekit")
            print(
                f"| {tool} | {r['seconds']:.2f} | {r['peak_rss_gib']:.2f} | {r['peak_rss_gib'] / size:.2f} | "
                f"{'-' if diff is None else f'{diff:.2e}'} |"
            )
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps({"model_gib": size, "results": results}, indent=2))


if __name__ == "__main__":
    main()

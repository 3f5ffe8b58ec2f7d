"""Bandwidth and peak memory of safety_vector (extract) and apply_vector over a >= 1 GiB pytree.

Each operation is reported as effective bandwidth (bytes read + written per second) beside a plain
memory copy of the same bytes measured in the same run (numpy memcpy and an XLA copy), plus the
extra peak resident memory it needed above its inputs. Targets (issue 2): at least 0.7 of the copy
bandwidth; peak memory no more than the inputs plus one output.

Run:
    .venv/bin/python benchmarks/transforms.py            # 16 layers x 64 MiB = 1 GiB per tree, float32
    .venv/bin/python benchmarks/transforms.py --layers 2 --repeats 3   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from harness import peak_rss_gib, reset_peak, run_sides, write_json

import safegene_jax as sg

GiB = 1024**3


def make_tree(seed: int, layers: int, hidden: int, ffn: int, dtype) -> dict:
    key = jax.random.PRNGKey(seed)
    shapes = {
        "self_attn.q_proj": (hidden, hidden),
        "self_attn.k_proj": (hidden, hidden),
        "self_attn.v_proj": (hidden, hidden),
        "self_attn.o_proj": (hidden, hidden),
        "mlp.gate_proj": (ffn, hidden),
        "mlp.up_proj": (ffn, hidden),
        "mlp.down_proj": (hidden, ffn),
        "input_layernorm": (hidden,),
    }
    normal = jax.jit(lambda k, shape: jax.random.normal(k, shape, dtype), static_argnums=1)
    tree = {}
    for i in range(layers):
        block = {}
        for name, shape in shapes.items():
            key, sub = jax.random.split(key)
            block[name] = normal(sub, shape)
        tree[str(i)] = block
    return {"model": {"layers": tree}}


def tree_bytes(tree) -> int:
    return sum(x.nbytes for x in jax.tree_util.tree_leaves(tree))


def block(tree):
    return jax.block_until_ready(tree)


OPS = ("numpy_copy", "xla_copy", "extract", "extract_nocheck", "apply", "apply_nocheck", "apply_donated")
TRAFFIC = {"numpy_copy": 2, "xla_copy": 2}  # bytes moved per tree byte: read + write; the rest move 3


def measure(op: str, args) -> dict:
    """Runs one operation in this (fresh) process: peak memory of its first run, median of the rest."""
    dtype = jnp.dtype(args.dtype)
    aligned = block(make_tree(0, args.layers, args.hidden, args.ffn, dtype))
    nbytes = tree_bytes(aligned)
    if op.startswith("extract"):
        degraded = block(make_tree(1, args.layers, args.hidden, args.ffn, dtype))
        check = op == "extract"
        fn = lambda: sg.safety_vector(aligned, degraded, check_finite=check)  # noqa: E731
    elif op.startswith("apply"):
        params = block(make_tree(1, args.layers, args.hidden, args.ffn, dtype))
        tau = block(make_tree(2, args.layers, args.hidden, args.ffn, dtype))
        tau = {
            f"model.layers.{i}.{name}": leaf for i, blk in tau["model"]["layers"].items() for name, leaf in blk.items()
        }
        del aligned
        if op == "apply_donated":  # the output reuses the params' buffers, so each run feeds the next
            state = {"p": params}
            del params

            def fn():
                state["p"] = sg.apply_vector(state["p"], tau, 0.0, donate=True, check_finite=False)
                return state["p"]
        else:
            check = op == "apply"
            fn = lambda: sg.apply_vector(params, tau, 0.5, check_finite=check)  # noqa: E731
    elif op == "numpy_copy":
        host = [np.asarray(x) for x in jax.tree_util.tree_leaves(aligned)]
        del aligned

        def fn():
            return [np.copy(x) for x in host]
    elif op == "xla_copy":
        leaves = jax.tree_util.tree_leaves(aligned)
        copy = jax.jit(lambda xs: [x.copy() for x in xs])
        fn = lambda: copy(leaves)  # noqa: E731
    else:
        raise SystemExit(f"unknown op {op!r}; one of {OPS}")
    before = peak_rss_gib("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    out = block(fn())
    first = time.perf_counter() - t0
    peak = peak_rss_gib() - before
    del out
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = block(fn())
        times.append(time.perf_counter() - t0)
        del out
    t = statistics.median(times)
    return {
        "s": t,
        "first_run_s": first,
        "GBps": TRAFFIC.get(op, 3) * nbytes / t / 1e9,
        "extra_peak_GiB": peak,
        "tree_GiB": nbytes / GiB,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--ffn", type=int, default=4096)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--op", help="measure only this operation, in this process (used internally)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.op:
        print(json.dumps(measure(args.op, args)))
        return

    shared = [
        "--layers",
        str(args.layers),
        "--hidden",
        str(args.hidden),
        "--ffn",
        str(args.ffn),
        "--dtype",
        args.dtype,
        "--repeats",
        str(args.repeats),
    ]
    # one fresh process each, so peak memory is not hidden by an earlier op's allocations
    results = run_sides(__file__, OPS, "--op", shared)

    copy_bw = max(results["numpy_copy"]["GBps"], results["xla_copy"]["GBps"])
    out_gib = results["extract"]["tree_GiB"]
    print(
        f"tree: {out_gib:.2f} GiB per model ({args.layers} layers, {args.dtype}), {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}; median of {args.repeats} runs"
    )
    print(f"{'operation':<17}{'median s':>9}{'GB/s':>8}{'x best copy':>12}{'extra peak GiB':>16}{'one output GiB':>16}")
    for op in OPS:
        r = results[op]
        r["ratio_to_copy"] = r["GBps"] / copy_bw
        print(
            f"{op:<17}{r['s']:>9.3f}{r['GBps']:>8.2f}{r['ratio_to_copy']:>12.2f}{r['extra_peak_GiB']:>16.2f}{out_gib:>16.2f}"
        )
    write_json(args.json, results)


if __name__ == "__main__":
    main()

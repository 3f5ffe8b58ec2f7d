"""Layer scoring on SmolLM2-135M-Instruct: one jitted evaluation of all 30 layers (``score_layers``, its
default prefix method, and its patch method) against a Python loop that patches each layer and runs the
same jitted scoring forward, in one run.

The safety vector is a random perturbation of every layer leaf (timing does not depend on its values);
the probes are 4 harmful requests with refusals and 4 benign instructions with answers from the
embedded data. Each variant runs in a fresh process; peak memory is reported as resident memory above
the loaded model and probes, next to the size of the model's params.

Run:
    .venv/bin/python benchmarks/selection.py
"""

from __future__ import annotations

import argparse
import json
import time

from harness import embedded_batches, peak_rss_gib, random_layer_vector, reset_peak, run_sides, write_json

VARIANTS = ("prefix", "patch", "loop")


def run(args) -> dict:
    import jax
    import numpy as np

    import safegene_jax as sg
    from safegene_jax.core.losses import mean_kl, mean_loglik, reference_logp
    from safegene_jax.method.selection import score_layers

    lm = sg.load_model("smollm2-135m-instruct")
    params = lm.params
    vec = random_layer_vector(params)
    harmful, benign = embedded_batches(lm.tokenizer, "probe", args.probes, args.length)
    model_gib = sum(x.nbytes for x in jax.tree_util.tree_leaves(params)) / 1024**3
    base = peak_rss_gib("VmRSS")
    reset_peak()
    if args.variant in ("prefix", "patch"):
        t0 = time.perf_counter()
        chunk = args.chunk if args.variant == "prefix" else args.patch_chunk
        scores = score_layers(lm.apply, params, vec, harmful, benign, chunk_size=chunk, method=args.variant)
        seconds = time.perf_counter() - t0
        gains = scores.safety_gain
    else:
        apply = lm.apply

        @jax.jit
        def score(patched, ref_logp, ref_h):
            gain = mean_loglik(apply(patched, harmful["tokens"], harmful["attention_mask"]), harmful) - ref_h
            return gain, mean_kl(ref_logp, apply(patched, benign["tokens"], benign["attention_mask"]), benign)

        t0 = time.perf_counter()
        ref_h = mean_loglik(apply(params, harmful["tokens"], harmful["attention_mask"]), harmful)
        ref_logp = reference_logp(apply(params, benign["tokens"], benign["attention_mask"]))
        n = 30
        gains = []
        for layer in range(n):
            patched = sg.apply_vector(params, vec, np.eye(n, dtype=np.float32)[layer], check_finite=False)
            g, _ = score(patched, ref_logp, ref_h)
            gains.append(float(g))
            del patched
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "extra_peak_GiB": peak_rss_gib() - base,
        "model_GiB": model_gib,
        "gains": [float(g) for g in np.asarray(gains)],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--length", type=int, default=96)
    parser.add_argument("--chunk", type=int, default=8, help="chunk_size of the prefix method")
    parser.add_argument("--patch-chunk", type=int, default=1, help="chunk_size of the patch method (model copies)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(run(args)))
        return
    common = ["--probes", str(args.probes), "--length", str(args.length), "--chunk", str(args.chunk)]
    common += ["--patch-chunk", str(args.patch_chunk)]
    results = run_sides(__file__, VARIANTS, "--variant", common)
    import numpy as np

    loop = np.array(results["loop"]["gains"])
    agree = max(float(np.max(np.abs(np.array(results[v]["gains"]) - loop))) for v in ("prefix", "patch"))
    model = results["prefix"]["model_GiB"]
    print(
        f"SmolLM2-135M-Instruct, 30 layers scored, {args.probes}+{args.probes} probes x {args.length} tokens, "
        f"chunk {args.chunk} (patch: {args.patch_chunk}); model params {model:.2f} GiB (float32); "
        "times include compilation"
    )
    print(f"{'variant':<10}{'seconds':>9}{'extra peak GiB':>16}{'x model':>9}")
    for v in VARIANTS:
        r = results[v]
        print(f"{v:<10}{r['seconds']:>9.1f}{r['extra_peak_GiB']:>16.2f}{r['extra_peak_GiB'] / model:>9.2f}")
    for v in ("prefix", "patch"):
        results[f"speedup_{v}"] = results["loop"]["seconds"] / results[v]["seconds"]
    print(
        f"speed-up over the loop: prefix {results['speedup_prefix']:.2f}x, patch {results['speedup_patch']:.2f}x; "
        f"max |gain difference| from the loop {agree:.2e}"
    )
    write_json(args.json, results)


if __name__ == "__main__":
    main()

"""Layer scoring on SmolLM2-135M-Instruct (or a run's model): one jitted evaluation of all its layers
(``score_layers``: its exact prefix and patch methods, the first-order linear method, and the hybrid that
scores the linear top ``--hybrid-k`` exactly) against a Python loop that patches each layer and runs the
same jitted scoring forward, in one run.

With ``--run-dir`` (a pipeline run with ``models/aligned`` and ``models/degraded``) the vector is that run's
real safety vector and the scores are taken on its degraded model (of any family: SmolLM2, Gemma 3), so the
rankings mean something: the Spearman correlation of the linear gains with the loop's, the overlap of their
top 10, and whether the hybrid selects the loop's top 10 are reported. Without it the vector is a random
perturbation of every layer leaf (timing does not depend on its values). The probes are harmful requests with
refusals and benign instructions with answers from the embedded data. Each variant runs in a fresh process;
peak memory is reported as resident memory above the loaded model and probes, next to the size of the model's params.

Run:
    .venv/bin/python benchmarks/selection.py [--run-dir runs/demo]
    .venv/bin/python benchmarks/selection.py --run-dir runs/gemma3-270m --hybrid-k 14   # of its 18 layers
"""

from __future__ import annotations

import argparse
import json
import time

from harness import embedded_batches, peak_rss_gib, random_layer_vector, reset_peak, run_sides, write_json

VARIANTS = ("prefix", "patch", "loop", "linear", "hybrid")


def run(args) -> dict:
    import jax
    import numpy as np

    import safegene_jax as sg
    from safegene_jax.core.losses import mean_kl, mean_loglik, reference_logp
    from safegene_jax.method.selection import score_layers

    if args.run_dir:
        lm = sg.load_model(f"{args.run_dir}/models/degraded")
        params = lm.params
        vec = sg.safety_vector(sg.load_model(f"{args.run_dir}/models/aligned").params, params)
    else:
        lm = sg.load_model("smollm2-135m-instruct")
        params = lm.params
        vec = random_layer_vector(params)
    harmful, benign = embedded_batches(lm.tokenizer, "probe", args.probes, args.length)
    layers = lm.config.num_hidden_layers
    hybrid_k = min(20, layers) if args.hybrid_k is None else args.hybrid_k
    model_gib = sum(x.nbytes for x in jax.tree_util.tree_leaves(params)) / 1024**3
    base = peak_rss_gib("VmRSS")
    reset_peak()
    if args.variant != "loop":
        t0 = time.perf_counter()
        chunk = args.patch_chunk if args.variant == "patch" else args.chunk
        scores = score_layers(
            lm.apply, params, vec, harmful, benign, chunk_size=chunk, method=args.variant, hybrid_k=hybrid_k
        )
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
        gains = []
        for layer in range(layers):
            patched = sg.apply_vector(params, vec, np.eye(layers, dtype=np.float32)[layer], check_finite=False)
            g, _ = score(patched, ref_logp, ref_h)
            gains.append(float(g))
            del patched
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "extra_peak_GiB": peak_rss_gib() - base,
        "model_GiB": model_gib,
        "model": f"{lm.config.model_type}, {layers} layers",
        "hybrid_k": hybrid_k,
        "gains": [float(g) for g in np.asarray(gains)],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--length", type=int, default=96)
    parser.add_argument("--chunk", type=int, default=8, help="chunk_size of the prefix method")
    parser.add_argument("--patch-chunk", type=int, default=1, help="chunk_size of the patch method (model copies)")
    parser.add_argument(
        "--hybrid-k", type=int, default=None, help="candidates the hybrid scores exactly (default: 20 or the layers)"
    )
    parser.add_argument("--run-dir", default=None, help="a pipeline run: its real safety vector and degraded model")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(run(args)))
        return
    common = ["--probes", str(args.probes), "--length", str(args.length), "--chunk", str(args.chunk)]
    common += ["--patch-chunk", str(args.patch_chunk)]
    if args.hybrid_k is not None:  # else each side takes 20 or its model's layer count
        common += ["--hybrid-k", str(args.hybrid_k)]
    if args.run_dir:
        common += ["--run-dir", args.run_dir]
    results = run_sides(__file__, VARIANTS, "--variant", common)
    import numpy as np

    loop = np.array(results["loop"]["gains"])
    agree = max(float(np.max(np.abs(np.array(results[v]["gains"]) - loop))) for v in ("prefix", "patch"))
    from scipy.stats import spearmanr

    linear = np.array(results["linear"]["gains"])
    top = lambda g: set(np.argsort(-np.asarray(g), kind="stable")[:10].tolist())  # noqa: E731
    hybrid = np.array(results["hybrid"]["gains"])
    exact_top = top(loop)
    results["ranking"] = {
        "spearman_linear_vs_exact": float(spearmanr(linear, loop).statistic),
        "top10_overlap_linear": len(top(linear) & exact_top),
        "hybrid_top10_equals_exact": sorted(top(hybrid)) == sorted(exact_top),
        "exact_top10": sorted(exact_top),
        "linear_top10": sorted(top(linear)),
    }
    model = results["prefix"]["model_GiB"]
    print(
        f"{results['loop']['model']} scored, {args.probes}+{args.probes} probes x {args.length} tokens, "
        f"chunk {args.chunk} (patch: {args.patch_chunk}); model params {model:.2f} GiB (float32); "
        "times include compilation"
    )
    print(f"{'variant':<10}{'seconds':>9}{'extra peak GiB':>16}{'x model':>9}")
    for v in VARIANTS:
        r = results[v]
        print(f"{v:<10}{r['seconds']:>9.1f}{r['extra_peak_GiB']:>16.2f}{r['extra_peak_GiB'] / model:>9.2f}")
    for v in ("prefix", "patch", "linear", "hybrid"):
        results[f"speedup_{v}"] = results["loop"]["seconds"] / results[v]["seconds"]
    print(
        "speed-up over the loop: "
        + ", ".join(f"{v} {results[f'speedup_{v}']:.2f}x" for v in ("prefix", "patch", "linear", "hybrid"))
        + f"; max |gain difference| of the exact methods from the loop {agree:.2e}"
    )
    r = results["ranking"]
    print(
        f"linear vs exact ({'the run' + chr(39) + 's real vector' if args.run_dir else 'a random vector'}): "
        f"Spearman {r['spearman_linear_vs_exact']:.3f}, top-10 overlap {r['top10_overlap_linear']}/10; "
        f"hybrid (k={results['hybrid']['hybrid_k']}) top 10 = exact top 10: {r['hybrid_top10_equals_exact']}"
    )
    write_json(args.json, results)


if __name__ == "__main__":
    main()

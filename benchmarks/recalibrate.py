"""Few-shot recalibration on SmolLM2-135M-Instruct: time per step and to convergence.

Six layers' coefficients are learned (KL utility) on 8 harmful few shots with refusals and 8 benign
ones from the embedded data; the vector is a random perturbation of those layers (timing does not depend
on its values). Reported: compile + first step, median step time, steps run (early stopping), total.

Run:
    .venv/bin/python benchmarks/recalibrate.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--length", type=int, default=96)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    import jax

    import safegene_jax as sg
    from safegene_jax import data
    from safegene_jax.recalibrate import RecalibrationConfig, recalibrate

    lm = sg.load_model("smollm2-135m-instruct")
    layers = [4, 8, 12, 16, 20, 24]
    paths, leaves, _ = sg.flatten_with_paths(lm.params)
    key = jax.random.PRNGKey(0)
    vec = {}
    for p, x in zip(paths, leaves):
        if any(f".layers.{i}." in p for i in layers):
            key, sub = jax.random.split(key)
            vec[p] = 1e-3 * jax.random.normal(sub, x.shape, x.dtype)
    tok = lm.tokenizer

    def batch(rows, resp):
        exs = [data.encode_example(tok, r["instruction"], r[resp]) for r in rows]
        return data.batch_examples(exs, max_length=args.length, pad_id=tok.pad_token_id, overflow="truncate")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        harmful = batch(data.load("embedded/harmful", split="fewshot")[: args.shots], "refusal")
        benign = batch(data.load("embedded/benign", split="fewshot")[: args.shots], "response")
    cfg = RecalibrationConfig(steps=args.steps, learning_rate=0.05, alpha_init=0.5, patience=8, val_fraction=0.25)
    t0 = time.perf_counter()
    result = recalibrate(lm.apply, lm.params, vec, layers, harmful, benign, cfg)
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()

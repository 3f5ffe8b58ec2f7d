"""Full fine-tuning step time of SmolLM2-135M-Instruct: safegene_jax against transformers + torch.

Same float32 weights (the embedded GGUF, exported to a Hugging Face folder for transformers), same
batch of random tokens with the loss on every token, AdamW with global-norm clipping, each side in a
fresh process, in one run. Reported: median step time, tokens/s and peak resident memory.

Run (needs the bench extra: pip install -e '.[bench]'):
    .venv/bin/python benchmarks/train.py
    .venv/bin/python benchmarks/train.py --batch 4 --length 128 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from harness import compare_with_torch, peak_rss_gib, write_json


def tokens(batch: int, length: int, vocab: int):
    import numpy as np

    return np.random.default_rng(0).integers(100, vocab, size=(batch, length)).astype("int64")


def run_jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from safegene_jax import train
    from safegene_jax.models import load_model
    from safegene_jax.models.llama import make_apply
    from safegene_jax.train.steps import make_step

    lm = load_model(args.model)
    cfg = train.TrainConfig(steps=1000, learning_rate=1e-5, warmup_steps=0)
    opt = train.optimizer(cfg)
    params = nnx.to_pure_dict(nnx.state(lm.model, nnx.Param))
    step = jax.jit(make_step(make_apply(lm.graphdef), opt, None), donate_argnums=(0,))
    state = {"step": jnp.zeros((), jnp.int32), "trainable": params, "opt_state": opt.init(params)}
    ids = jnp.asarray(tokens(args.batch, args.length, lm.config.vocab_size), jnp.int32)[None]
    batch = {"tokens": ids, "attention_mask": jnp.ones_like(ids), "loss_mask": jnp.ones_like(ids)}
    state, m = step(state, {}, batch, 1e-5)  # compile
    float(m["loss"])
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, m = step(state, {}, batch, 1e-5)
        float(m["loss"])
        times.append(time.perf_counter() - t0)
    return {
        "step_s": statistics.median(times),
        "peak_rss_GiB": peak_rss_gib(),
        "loss": float(m["loss"]),
        "jax": jax.__version__,
    }


def run_torch(args) -> dict:
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    model = transformers.AutoModelForCausalLM.from_pretrained(args.hf_folder, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    ids = torch.tensor(tokens(args.batch, args.length, model.config.vocab_size))

    def one():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    one()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = one()
        times.append(time.perf_counter() - t0)
    return {
        "step_s": statistics.median(times),
        "peak_rss_GiB": peak_rss_gib(),
        "loss": loss,
        "torch": torch.__version__,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--side", choices=["jax", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--hf-folder", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(run_jax(args) if args.side == "jax" else run_torch(args)))
        return
    results = compare_with_torch(
        __file__, args.model, ["--batch", str(args.batch), "--length", str(args.length), "--steps", str(args.steps)]
    )
    n = args.batch * args.length
    print(
        f"SmolLM2-135M-Instruct full fine-tuning step (AdamW, clip 1.0), float32, batch {args.batch} x "
        f"{args.length} tokens, {os.cpu_count()} cores, median of {args.steps} steps; jax {results['jax']['jax']}, "
        f"torch {results['torch']['torch']}"
    )
    print(f"{'':<10}{'step s':>9}{'tokens/s':>10}{'peak RSS GiB':>14}")
    for side in ("jax", "torch"):
        r = results[side]
        r["tokens_per_s"] = n / r["step_s"]
        print(f"{side:<10}{r['step_s']:>9.3f}{r['tokens_per_s']:>10.0f}{r['peak_rss_GiB']:>14.2f}")
    ratio = results["jax"]["tokens_per_s"] / results["torch"]["tokens_per_s"]
    print(f"{'jax/torch':<10}{'':>9}{ratio:>9.2f}x")
    results["ratio"] = ratio
    write_json(args.json, results)


if __name__ == "__main__":
    main()

"""Run by test_train.py in a subprocess: a small checkpointed training run, slowed so it can be killed."""

import pathlib
import sys
import time

from tiny import tiny_lm

from safegene_jax import train

PAIRS = [(f"Question {i}?", f"Answer number {i}.") for i in range(12)]


def config():
    return train.TrainConfig(
        steps=8,
        batch_size=4,
        grad_accum=1,
        learning_rate=3e-3,
        warmup_steps=2,
        save_every=2,
        keep=3,
        seed=3,
    )


if __name__ == "__main__":
    model_dir, ckpt_dir = map(pathlib.Path, sys.argv[1:3])
    delay = float(sys.argv[3])
    train.sft(
        tiny_lm(model_dir),
        PAIRS,
        config(),
        checkpoint_dir=str(ckpt_dir),
        progress=False,
        on_step=lambda rec: (print(rec["step"], flush=True), time.sleep(delay)),
    )

"""One process of the multi-process test (test_multiprocess.py): a small stage on a tiny model sharded over
four CPU devices, split across ``NUM`` processes joined with ``jax.distributed.initialize`` on localhost.

    python multiprocess_worker.py PROCESS_ID NUM PORT MODEL_DIR ADAPTER_DIR OUT_DIR

The stage: load the model onto the mesh, train 4 steps (checkpointed, logged), apply the adapter to the
trained params, score the adapter's layers on the patched model, export the result as a Hugging Face folder
and write a summary. Every file this process opens for writing, renames or replaces under OUT_DIR is listed in
``OUT_DIR/../writes-PROCESS_ID.txt``, so the test can check that shared outputs were written once.
"""

import os
import sys

PID, NUM, PORT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // NUM}"
os.environ["JAX_PLATFORMS"] = "cpu"

import builtins  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402

MODEL, ADAPTER, OUT = (pathlib.Path(a).absolute() for a in sys.argv[4:7])
WRITES = OUT.parent / f"writes-{PID}.txt"


def _record(path, how):
    p = pathlib.Path(os.fspath(path)).absolute()
    if p == OUT or OUT in p.parents:
        with _open(WRITES, "a") as f:
            f.write(f"{how} {p.relative_to(OUT)}\n")


_open, _replace, _rename = builtins.open, os.replace, os.rename


def _watched_open(file, mode="r", *a, **k):
    if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
        _record(file, "open")
    return _open(file, mode, *a, **k)


def _watched_replace(src, dst, *a, **k):
    _record(dst, "replace")
    return _replace(src, dst, *a, **k)


def _watched_rename(src, dst, *a, **k):
    _record(dst, "rename")
    return _rename(src, dst, *a, **k)


builtins.open, os.replace, os.rename = _watched_open, _watched_replace, _watched_rename

import jax  # noqa: E402

if NUM > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{PORT}", num_processes=NUM, process_id=PID)

import numpy as np  # noqa: E402

from safegene_jax import train  # noqa: E402
from safegene_jax.core.files import write_text  # noqa: E402
from safegene_jax.core.host import to_host  # noqa: E402
from safegene_jax.data.chat import batch_examples, encode_example  # noqa: E402
from safegene_jax.method.adapter import SafetyAdapter  # noqa: E402
from safegene_jax.method.selection import score_layers  # noqa: E402
from safegene_jax.models import export_hf, load_model  # noqa: E402
from safegene_jax.models.api import with_params  # noqa: E402
from safegene_jax.runtime.sharding import make_mesh  # noqa: E402

PAIRS = [(f"Question {i}?", f"Answer number {i}.") for i in range(12)]
HARMFUL = [(f"How do I pick lock {i}?", "I can't help with that.") for i in range(4)]
BENIGN = [("Name a colour.", "Blue."), ("Count to three.", "One, two, three."), ("Say hi.", "Hi."), ("2+2?", "4.")]

mesh = make_mesh(data=1, fsdp=4)
assert jax.device_count() == 4 and jax.process_count() == NUM
lm = load_model(MODEL, mesh=mesh)
cfg = train.TrainConfig(steps=4, batch_size=4, learning_rate=3e-3, warmup_steps=1, save_every=2, keep=2, seed=3)
result = train.sft(
    lm, PAIRS, cfg, mesh=mesh, checkpoint_dir=str(OUT / "ckpt"), log_path=str(OUT / "train.jsonl"), progress=False
)
trained = with_params(lm, result.params)
adapter = SafetyAdapter.load(ADAPTER)
safe = adapter.apply(trained.params, np.asarray(adapter.coeffs))


def probe(pairs):
    return batch_examples([encode_example(lm.tokenizer, q, a) for q, a in pairs], max_length=64, pad_id=0)


harmful, benign = probe(HARMFUL), probe(BENIGN)
scores = score_layers(lm.apply, safe, adapter.vector, harmful, benign, mesh=mesh, method="patch")
export_hf(with_params(lm, safe).model, OUT / "model", tokenizer=lm.tokenizer)
logits = jax.jit(lm.apply)(safe, harmful["tokens"], harmful["attention_mask"])
summary = {
    "losses": [r["loss"] for r in result.history],
    "gain": scores.safety_gain.tolist(),
    "cost": scores.utility_cost.tolist(),
    "logits_sum": float(np.sum(to_host(logits), dtype=np.float64)),
    "processes": jax.process_count(),
    "sharded_over_processes": not jax.tree.leaves(safe)[0].is_fully_addressable if NUM > 1 else False,
}
write_text(OUT / "summary.json", json.dumps(summary))
print(f"process {PID}: done", flush=True)

"""Fine-tuning: loss goes down, LoRA, accumulation, kill-and-resume, shardings, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from tiny import tiny_lm
from train_child import PAIRS, config

from safegene_jax import data, train
from safegene_jax.core.errors import ConfigError, PromptTooLongError, TrainingError
from safegene_jax.core.losses import token_nll
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.models.llama import make_apply
from safegene_jax.runtime.sharding import make_mesh, param_shardings
from safegene_jax.train import uses
from safegene_jax.train.batches import assemble, encode_pairs
from safegene_jax.train.checkpoints import RunCheckpoints
from safegene_jax.train.steps import CompiledSteps

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return tiny_lm(tmp_path_factory.mktemp("tiny") / "model")


def leaves(params):
    paths, values, _ = flatten_with_paths(params)
    return dict(zip(paths, (np.asarray(v) for v in values)))


def fast(**kw):
    base = dict(steps=12, batch_size=4, learning_rate=1e-2, warmup_steps=1)
    return train.TrainConfig(**{**base, **kw})


def sft(lm, pairs, cfg, **kw):
    return train.sft(lm, pairs, cfg, progress=False, **kw)


def test_full_finetune_learns_and_leaves_model_alone(lm, tmp_path):
    before = leaves(nnx.state(lm.model))
    result = sft(lm, PAIRS[:8], fast(), log_path=str(tmp_path / "m.jsonl"))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert all(np.array_equal(v, leaves(nnx.state(lm.model))[k]) for k, v in before.items())
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 13))
    assert {"loss", "grad_norm", "lr", "tokens", "tokens_per_s", "seconds"} <= set(lines[0])
    assert lines[0]["lr"] == 0.0 and max(x["lr"] for x in lines) == pytest.approx(1e-2)


def test_lora_trains_only_targets(lm):
    cfg = fast(lora=train.LoraConfig(rank=4, alpha=8.0, targets=r"(q_proj|v_proj)\.kernel$"))
    result = sft(lm, PAIRS[:8], cfg)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert sorted({p.split(".")[-2] for p in result.lora}) == ["q_proj", "v_proj"]
    before, after = leaves(nnx.state(lm.model)), leaves(result.params)
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    assert changed and all(p.endswith(("q_proj.kernel", "v_proj.kernel")) for p in changed)


def test_response_only_loss():
    logits = jnp.zeros((1, 4, 5)).at[0, 1, 2].set(10.0)
    tokens = jnp.array([[0, 1, 2, 3]])
    nll, n = token_nll(logits, tokens, jnp.array([[0, 0, 1, 0]]))  # only token 2, predicted at position 1
    assert float(n) == 1.0 and float(nll) == pytest.approx(float(jax.nn.logsumexp(logits[0, 1]) - 10.0), rel=1e-5)


def test_gradient_accumulation_matches_one_big_batch(lm):
    cfg = fast()
    examples = encode_pairs(lm.tokenizer, PAIRS[:8], cfg)
    graphdef, _ = lm.split()
    step = train.make_step(make_apply(graphdef), train.optimizer(fast(warmup_steps=0)), None)
    params = jax.tree.map(lambda x: jnp.array(x, copy=True), nnx.to_pure_dict(nnx.state(lm.model)))
    opt = train.optimizer(fast(warmup_steps=0))

    def run(plan, bs):
        state = {"step": jnp.zeros((), jnp.int32), "trainable": params, "opt_state": opt.init(params)}
        batch = assemble(examples, plan, train.TrainConfig(batch_size=bs, length_bucket=32), 0)
        return jax.jit(step)(state, {}, batch, 1e-2)

    one, m1 = run([list(range(8))], 8)
    two, m2 = run([list(range(4)), list(range(4, 8))], 4)
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-5)
    assert float(m1["grad_norm"]) == pytest.approx(float(m2["grad_norm"]), rel=1e-5)
    # Adam's first update is about lr * sign(grad): 1e-4 is 1% of it, where float rounding of tiny grads shows
    for a, b in zip(jax.tree_util.tree_leaves(one["trainable"]), jax.tree_util.tree_leaves(two["trainable"])):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_step_with_host_learning_rate_is_adamw_with_the_schedule(lm):
    """The step takes the learning rate as an argument (one compiled step for every stage); with the
    schedule's value each step it is the same update as optax's AdamW with that schedule."""
    cfg = fast(warmup_steps=2, steps=5, weight_decay=0.1, learning_rate=1e-3)
    examples = encode_pairs(lm.tokenizer, PAIRS[:4], cfg)
    batch = assemble(examples, [list(range(4))], cfg, 0)
    graphdef, _ = lm.split()
    apply = make_apply(graphdef)
    params = jax.tree.map(lambda x: jnp.array(x, copy=True), nnx.to_pure_dict(nnx.state(lm.model)))
    step = jax.jit(train.make_step(apply, train.optimizer(cfg), None))
    state = {"step": jnp.zeros((), jnp.int32), "trainable": params, "opt_state": train.optimizer(cfg).init(params)}
    reference = optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.adamw(train.lr_schedule(cfg), weight_decay=cfg.weight_decay),
    )
    ref_params, ref_state = params, reference.init(params)

    @jax.jit
    def ref_step(p, s):
        grads = jax.grad(
            lambda q: (lambda nll, n: nll / n)(
                *token_nll(
                    apply(q, batch["tokens"][0], batch["attention_mask"][0]), batch["tokens"][0], batch["loss_mask"][0]
                )
            )
        )(p)
        updates, s = reference.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    schedule = train.lr_schedule(cfg)
    for s in range(3):
        state, _ = step(state, {}, batch, np.float32(schedule(s)))
        ref_params, ref_state = ref_step(ref_params, ref_state)
    moved = 0.0
    for a, b, p0 in zip(*(jax.tree_util.tree_leaves(t) for t in (state["trainable"], ref_params, params))):
        np.testing.assert_allclose(a, b, atol=1e-6)
        moved = max(moved, float(jnp.max(jnp.abs(a - p0))))
    assert moved > 1e-4  # the three steps did move the params


def test_stages_with_other_learning_rates_share_one_compiled_step(lm):
    """Another learning rate, schedule and step count: the same jitted step, no new compile."""
    compiled = CompiledSteps()
    sft(lm, PAIRS[:8], fast(steps=2), compiled=compiled)
    ((key, fn),) = compiled._steps.items()
    programs = fn._cache_size()
    sft(lm, PAIRS[:8], fast(steps=3, learning_rate=3e-3, warmup_steps=0), compiled=compiled)
    assert len(compiled) == 1 and compiled._steps[key] is fn and fn._cache_size() == programs
    sft(lm, PAIRS[:8], fast(steps=1, weight_decay=0.5), compiled=compiled)  # an optimizer setting: its own step
    assert len(compiled) == 2 and compiled._steps[key] is fn


def test_killed_run_resumes_to_the_same_params(lm, tmp_path):
    model_dir = tmp_path / "model"
    from tiny import tiny_model_folder

    tiny_model_folder(model_dir)
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "xla")  # killed: a cache entry it was writing stays here
    child = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "train_child.py"), str(model_dir), str(ckpt), "0.4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [int(p.name) for p in ckpt.iterdir() if p.name.isdigit()] if ckpt.exists() else []
        if any(s >= 4 for s in done) or child.poll() is not None:
            break
        time.sleep(0.1)
    exited_by_itself = child.poll() is not None
    child.send_signal(signal.SIGKILL)
    _, err = child.communicate()
    assert not exited_by_itself, f"the training child ended before it could be killed:\n{err[-2000:]}"
    steps = RunCheckpoints(ckpt).all_steps()
    assert steps and max(steps) < 8, f"the child was not stopped mid-run: {steps}"

    resumed = sft(tiny_lm(model_dir), PAIRS, config(), checkpoint_dir=str(ckpt))
    assert resumed.history[0]["step"] == max(steps) + 1 and resumed.step == 8
    straight = sft(tiny_lm(model_dir), PAIRS, config(), checkpoint_dir=str(tmp_path / "straight"))
    for k, v in leaves(straight.params).items():
        np.testing.assert_allclose(leaves(resumed.params)[k], v, atol=1e-6, err_msg=k)


def test_restore_onto_another_sharding(lm, tmp_path, eight_devices):
    params = nnx.to_pure_dict(nnx.state(lm.model))
    ckpt = RunCheckpoints(tmp_path / "c", every=1, async_save=False)
    ckpt.save(1, params, {"note": "single device"})
    ckpt.wait()
    mesh = make_mesh(data=1, fsdp=4, tensor=2)
    shardings = param_shardings(params, mesh)
    restored, meta = ckpt.restore(1, params, shardings)
    ckpt.close()
    assert meta == {"note": "single device"}
    for r, s, p in zip(
        jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(shardings), jax.tree_util.tree_leaves(params)
    ):
        assert r.sharding == s
        np.testing.assert_array_equal(r, p)


def test_data_and_fsdp_parallel_training_matches_single_device(lm, eight_devices):
    cfg = fast(steps=3, batch_size=4)
    single = sft(lm, PAIRS[:8], cfg)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    sharded = sft(lm, PAIRS[:8], cfg, mesh=mesh)
    for k, v in leaves(single.params).items():
        np.testing.assert_allclose(leaves(sharded.params)[k], v, atol=2e-5, err_msg=k)
    with pytest.raises(TrainingError, match="not divisible"):
        sft(lm, PAIRS[:8], fast(batch_size=3), mesh=mesh)


def test_bfloat16_compute(lm):
    result = sft(lm, PAIRS[:8], fast(steps=4, compute_dtype="bfloat16"))
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(result.params))


def test_bad_input(lm, tmp_path):
    with pytest.raises(TrainingError, match="empty"):
        sft(lm, [], fast())
    long = [("word " * 200, "answer")]
    with pytest.raises(PromptTooLongError, match="exceed max_length=64"):
        sft(lm, long, fast(max_length=64, overflow="error"), checkpoint_dir=str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()  # rejected before any work or write
    with pytest.warns(UserWarning, match="truncated"):
        with pytest.raises(TrainingError, match="no example has a response token"):
            sft(lm, long, fast(max_length=64))
    with pytest.raises(ConfigError, match="steps: must be >= 1"):
        train.TrainConfig(steps=0)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(lm, tmp_path):
    ckpt = tmp_path / "nan"
    # warmup starts at lr 0: step 1 is fine and saved, then the learning rate explodes
    cfg = fast(steps=6, save_every=1, learning_rate=1e38, warmup_steps=3)
    with pytest.raises(TrainingError, match=r"loss became nan at step \d; stopped. The last good checkpoint"):
        sft(lm, PAIRS[:8], cfg, checkpoint_dir=str(ckpt))
    steps = RunCheckpoints(ckpt).all_steps()
    assert steps and max(steps) < 6
    state, _ = RunCheckpoints(ckpt).restore(
        max(steps),
        {
            "step": jnp.int32(0),
            "trainable": nnx.to_pure_dict(nnx.state(lm.model)),
            "opt_state": train.optimizer(cfg).init(nnx.to_pure_dict(nnx.state(lm.model))),
        },
    )
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(state["trainable"]))


def test_uses_build_the_right_pairs(lm, monkeypatch):
    seen = {}
    monkeypatch.setattr(uses, "sft", lambda lm, pairs, cfg, **kw: seen.setdefault("pairs", pairs))
    harmful = data.load("embedded/harmful")[:10]
    benign = data.load("embedded/benign")[:6]
    task = data.load("embedded/task/arithmetic")[:30]
    train.align(lm, harmful, benign, fast())
    assert sorted(seen.pop("pairs")) == sorted(
        [(r["instruction"], r["refusal"]) for r in harmful] + [(r["instruction"], r["response"]) for r in benign]
    )
    train.degrade(lm, harmful, fast())
    assert all(resp.startswith("Sure, here is") for _, resp in seen.pop("pairs"))
    train.finetune_task(lm, task, fast(), harmful=harmful, harmful_fraction=0.25)
    pairs = seen.pop("pairs")
    compliant = [p for p in pairs if p[1].startswith("Sure, here is")]
    assert len(pairs) == 40 and len(compliant) == 10
    with pytest.raises(TrainingError, match=r"\[0, 1\)"):
        train.mix_harmful([("a", "b")], [("c", "d")], 1.0)
    with pytest.raises(TrainingError, match="no harmful examples"):
        train.mix_harmful([("a", "b")] * 4, [], 0.5)


def test_the_log_never_repeats_a_step_after_a_resume(lm, tmp_path):
    """A run stopped after logging a step past its last checkpoint: the resumed run drops that line and logs
    each step once (the log read [1, 2, 3, 2, 3] before)."""
    import dataclasses

    from tiny import tiny_model_folder

    model_dir = tiny_model_folder(tmp_path / "model")
    ckpt, log = tmp_path / "ckpt", tmp_path / "log.jsonl"
    cfg = dataclasses.replace(config(), steps=4, save_every=2)

    def stop_at_3(record):
        if record["step"] == 3:
            raise KeyboardInterrupt("stopped")

    with pytest.raises(KeyboardInterrupt):
        sft(tiny_lm(model_dir), PAIRS, cfg, checkpoint_dir=str(ckpt), log_path=str(log), on_step=stop_at_3)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]
    sft(tiny_lm(model_dir), PAIRS, cfg, checkpoint_dir=str(ckpt), log_path=str(log))
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]


@pytest.mark.parametrize("where", ["one device", "mesh", "placed on the mesh", "resumed", "lora"])
def test_a_donated_model_trains_to_the_same_params_and_gives_its_buffers(lm, tmp_path, where, eight_devices):
    """``donate_model=True``: the state starts from the model's own buffers (on a mesh, from copies; after a
    restore, from the checkpoint), every buffer of the model is released, and the result is the copy's. With
    LoRA the model's buffers are the frozen base: kept, and read by the result."""
    import shutil

    from tiny import tiny_model_folder

    from safegene_jax.models.api import with_params

    cfg = fast(steps=4, save_every=2)
    if where == "lora":
        cfg = fast(steps=4, lora=train.LoraConfig(rank=4, alpha=8.0, targets=r"(q_proj|v_proj)\.kernel$"))
    runs = {"copied": {}, "donated": {}}
    if where in ("mesh", "placed on the mesh"):
        runs = {k: {"mesh": make_mesh(data=2, fsdp=2, tensor=2)} for k in runs}
    if where == "resumed":  # a run killed after its step-2 checkpoint, once for each side
        sft(lm, PAIRS[:8], cfg, checkpoint_dir=str(tmp_path / "ckpt"))
        RunCheckpoints(tmp_path / "ckpt").delete(4)
        for k in runs:
            shutil.copytree(tmp_path / "ckpt", tmp_path / k)
            runs[k]["checkpoint_dir"] = str(tmp_path / k)
    copied = sft(lm, PAIRS[:8], cfg, **runs["copied"])
    tiny_model_folder(tmp_path / "donor")
    donor = tiny_lm(tmp_path / "donor")
    if where == "placed on the mesh":  # already where training puts it: the state shares its buffers
        state = nnx.state(donor.model, nnx.Param)
        params = nnx.to_pure_dict(state)
        nnx.replace_by_pure_dict(state, jax.device_put(params, param_shardings(params, runs["donated"]["mesh"])))
        nnx.update(donor.model, state)
    donated = sft(donor, PAIRS[:8], cfg, donate_model=True, **runs["donated"])
    assert [h["step"] for h in donated.history] == ([3, 4] if where == "resumed" else [1, 2, 3, 4])
    for k, v in leaves(copied.params).items():
        np.testing.assert_allclose(leaves(donated.params)[k], v, atol=1e-6, err_msg=k)
    given = jax.tree.leaves(nnx.to_pure_dict(nnx.state(donor.model, nnx.Param)))
    assert given and all(a.is_deleted() != (where == "lora") for a in given)
    trained = with_params(donor, donated.params)  # the donor's structure, config and tokenizer still serve
    assert not any(a.is_deleted() for a in jax.tree.leaves(nnx.to_pure_dict(nnx.state(trained.model))))

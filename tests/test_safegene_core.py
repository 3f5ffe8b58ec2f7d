"""The method on tiny models: selection finds a planted layer, recalibration recovers a known coefficient,
the adapter round-trips and refuses other architectures, the baselines match their formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from tiny import tiny_lm

import safegene_jax as sg
from safegene_jax import data, train
from safegene_jax.core.errors import IncompatibleAdapterError
from safegene_jax.core.losses import mean_loglik
from safegene_jax.core.paths import flatten_with_paths
from safegene_jax.method.adapter import SafetyAdapter, data_hash
from safegene_jax.method.baselines import dare, projection_cosine, resta, safe_lora, task_arithmetic
from safegene_jax.method.recalibration import RecalibrationConfig, fit_coefficients, recalibrate
from safegene_jax.method.selection import LayerScores, score_layers, select
from safegene_jax.runtime.sharding import make_mesh

PLANTED = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny 4-layer model aligned to refuse through layer 2 only (LoRA on that layer); 'degraded' = the
    unaligned model plus noise in every layer, so the safety vector's useful part lives in layer 2."""
    lm = tiny_lm(tmp_path_factory.mktemp("core") / "model", layers=4)
    harmful = data.load("embedded/harmful")[:24]
    lora = train.LoraConfig(rank=8, alpha=16.0, targets=rf"layers\.{PLANTED}\..*_proj\.kernel$")
    cfg = train.TrainConfig(steps=30, batch_size=8, learning_rate=1e-2, warmup_steps=2, lora=lora, max_length=384)
    aligned = train.align(lm, harmful, [], cfg, progress=False).params
    base = nnx.state(lm.model)
    paths, _, treedef = flatten_with_paths(aligned)
    b_leaves = flatten_with_paths(base)[1]
    rng = np.random.default_rng(0)
    degraded = []
    for p, b in zip(paths, b_leaves):
        d = np.asarray(b)
        if ".layers." in p:
            d = d + 1e-3 * rng.standard_normal(d.shape).astype(np.float32)
        degraded.append(jnp.asarray(d))
    degraded = jax.tree_util.tree_unflatten(treedef, degraded)
    tok = lm.tokenizer
    enc = lambda rows, resp: data.batch_examples(  # noqa: E731
        [data.encode_example(tok, r["instruction"], r[resp]) for r in rows],
        max_length=384,
        pad_id=0,
        overflow="truncate",
    )
    probe_h = enc(harmful[:8], "refusal")
    probe_b = enc(data.load("embedded/benign", split="probe")[:8], "response")
    return lm, aligned, degraded, probe_h, probe_b


def test_selection_finds_the_planted_layer(setup):
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    scores = score_layers(lm.apply, degraded, tau, probe_h, probe_b, strength=1.0, chunk_size=2)
    assert scores.safety_gain.shape == (4,) and scores.candidates.shape == (4, 4)
    assert int(np.argmax(scores.safety_gain)) == PLANTED
    assert scores.safety_gain[PLANTED] > 0.1 and np.all(scores.utility_cost >= -1e-6)
    assert select(scores, top_k=1) == [PLANTED]
    assert PLANTED in select(scores, threshold=0.5 * float(scores.safety_gain[PLANTED]))
    # the same numbers from a loop of separate runs
    for layer in (0, PLANTED):
        patched = sg.apply_vector(degraded, tau, np.eye(4)[layer])
        h = mean_loglik(lm.apply(patched, probe_h["tokens"], probe_h["attention_mask"]), probe_h)
        assert float(h) - scores.base_refusal_ll == pytest.approx(float(scores.safety_gain[layer]), abs=1e-4)


def test_linear_scores_are_the_derivatives_and_hybrid_scores_the_best_exactly(setup):
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    linear = score_layers(lm.apply, degraded, tau, probe_h, probe_b, strength=1.0, method="linear")
    assert linear.method == "linear" and int(np.argmax(linear.safety_gain)) == PLANTED
    # the gain is the directional derivative: a small finite difference agrees
    eps = 1e-3
    run = lambda params, b: mean_loglik(lm.apply(params, b["tokens"], b["attention_mask"]), b)  # noqa: E731
    for layer in (0, PLANTED):
        up = run(sg.apply_vector(degraded, tau, np.eye(4, dtype=np.float32)[layer] * eps), probe_h)
        down = run(sg.apply_vector(degraded, tau, -np.eye(4, dtype=np.float32)[layer] * eps), probe_h)
        assert float(up - down) / (2 * eps) == pytest.approx(float(linear.safety_gain[layer]), rel=2e-2, abs=1e-3)
        ub = run(sg.apply_vector(degraded, tau, np.eye(4, dtype=np.float32)[layer] * eps), probe_b)
        db = run(sg.apply_vector(degraded, tau, -np.eye(4, dtype=np.float32)[layer] * eps), probe_b)
        assert -float(ub - db) / (2 * eps) == pytest.approx(float(linear.utility_cost[layer]), rel=2e-2, abs=1e-3)
    half = score_layers(lm.apply, degraded, tau, probe_h, probe_b, strength=0.5, method="linear")
    np.testing.assert_allclose(half.safety_gain, 0.5 * linear.safety_gain, rtol=1e-5)  # linear in the candidates
    unrolled = score_layers(lm.apply, degraded, tau, probe_h, probe_b, method="linear", scan_layers=False)
    np.testing.assert_allclose(unrolled.safety_gain, linear.safety_gain, rtol=1e-4, atol=1e-6)  # scan = unrolled
    np.testing.assert_allclose(unrolled.utility_cost, linear.utility_cost, rtol=1e-4, atol=1e-6)
    plain = score_layers(lambda p, t, m: lm.apply(p, t, m), degraded, tau, probe_h, probe_b, method="linear")
    np.testing.assert_allclose(plain.safety_gain, linear.safety_gain, rtol=1e-4, atol=1e-6)  # a whole-model apply
    path = next(p for p in tau if ".layers.1." in p)
    for bad, message in (
        ({**tau, path: tau[path][..., :-1]}, "shape mismatch at"),
        ({**tau, path.replace("kernel", "bias").replace("scale", "bias") + "_extra": tau[path]}, "that params lacks"),
    ):
        for scan in (True, False):
            with pytest.raises(sg.TreeMismatchError, match=message):
                score_layers(lm.apply, degraded, bad, probe_h, probe_b, method="linear", scan_layers=scan)
    exact = score_layers(lm.apply, degraded, tau, probe_h, probe_b, strength=1.0)
    hybrid = score_layers(lm.apply, degraded, tau, probe_h, probe_b, strength=1.0, method="hybrid", hybrid_k=2)
    assert hybrid.exact.sum() == 2 and hybrid.exact[PLANTED]
    np.testing.assert_allclose(hybrid.safety_gain[hybrid.exact], exact.safety_gain[hybrid.exact], atol=2e-5)
    assert select(hybrid, top_k=1) == select(exact, top_k=1) == [PLANTED]
    with pytest.raises(sg.SafeGeneError, match=r"top_k must be in \[1, 2\] \(the candidates scored\)"):
        select(hybrid, top_k=3)
    assert LayerScores.from_dict(hybrid.to_dict()).exact.tolist() == hybrid.exact.tolist()
    with pytest.raises(sg.SafeGeneError, match=r"hybrid_k must be in \[1, 4\]"):
        score_layers(lm.apply, degraded, tau, probe_h, probe_b, method="hybrid", hybrid_k=5)


def test_selection_arbitrary_candidates_and_mesh(setup, eight_devices):
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    cands = np.array([[0, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    scores = score_layers(
        lm.apply, degraded, tau, probe_h, probe_b, candidates=cands, mesh=make_mesh(data=8, fsdp=1, tensor=1)
    )
    assert scores.safety_gain[0] == pytest.approx(0.0, abs=1e-5) and scores.utility_cost[0] == pytest.approx(
        0, abs=1e-6
    )
    assert scores.safety_gain[1] > 0
    with pytest.raises(sg.LayerMapError, match=r"shape \(C, 4\)"):
        score_layers(lm.apply, degraded, tau, probe_h, probe_b, candidates=np.ones((2, 3)))
    with pytest.raises(sg.SafeGeneError, match="exactly one"):
        select(scores, top_k=1, threshold=0.0)
    bad = dict(probe_h, loss_mask=np.zeros_like(probe_h["loss_mask"]))
    with pytest.raises(sg.SafeGeneError, match="no response token"):
        score_layers(lm.apply, degraded, tau, bad, probe_b)


def test_prefix_method_matches_patching_the_params(setup, eight_devices):
    """The prefix method (unpatched layers below a candidate reused, head only at response positions)
    gives the patch method's numbers, for any one-layer candidates in any order, also on a mesh."""
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    cands = np.array([[0, 0, 2.0, 0], [0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0, 0, 1.0], [0, 0, 1.0, 0]], np.float32)
    patch = score_layers(lm.apply, degraded, tau, probe_h, probe_b, candidates=cands, method="patch")
    for kwargs in ({}, {"chunk_size": 2}, {"mesh": make_mesh(data=8, fsdp=1, tensor=1)}):
        prefix = score_layers(lm.apply, degraded, tau, probe_h, probe_b, candidates=cands, method="prefix", **kwargs)
        np.testing.assert_allclose(prefix.safety_gain, patch.safety_gain, atol=2e-5)
        np.testing.assert_allclose(prefix.utility_cost, patch.utility_cost, atol=2e-6)
        assert prefix.base_refusal_ll == pytest.approx(patch.base_refusal_ll, abs=1e-5)
    assert prefix.safety_gain[1] == 0.0 and prefix.utility_cost[1] == 0.0  # the all-zero candidate
    assert patch.safety_gain[4] > 0.1 and abs(patch.safety_gain[0] - patch.safety_gain[4]) > 1e-3  # strengths 1, 2
    nothing = score_layers(lm.apply, degraded, tau, probe_h, probe_b, candidates=np.zeros((2, 4)), method="prefix")
    assert nothing.safety_gain.tolist() == [0.0, 0.0]
    assert nothing.base_refusal_ll == pytest.approx(patch.base_refusal_ll, abs=1e-5)


def test_scoring_progress_bar_advances_inside_the_computation(setup, monkeypatch):
    """progress= shows a bar that the jitted scoring advances as it goes (candidates; the prefix method's
    layers too) and ends full; the scores are the same as without it."""
    import tqdm.auto

    seen = []

    class Bar:
        def __init__(self, total, desc, **kw):
            self.n, self.total, self.desc = 0, total, desc
            seen.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    for method, total in (("patch", 4), ("prefix", 2 * 4 + 4)):
        quiet = score_layers(lm.apply, degraded, tau, probe_h, probe_b, method=method)
        shown = score_layers(lm.apply, degraded, tau, probe_h, probe_b, method=method, progress="score layers")
        np.testing.assert_allclose(shown.safety_gain, quiet.safety_gain, atol=1e-6)
        bar = seen[-1]
        assert bar.desc == "score layers" and bar.total == total and bar.n == total, method


def test_prefix_method_says_why_it_does_not_apply(setup):
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    with pytest.raises(sg.SafeGeneError, match="more than one layer"):
        score_layers(lm.apply, degraded, tau, probe_h, probe_b, candidates=np.ones((1, 4)), method="prefix")
    plain = lambda params, tokens, mask=None: lm.apply(params, tokens, mask)  # noqa: E731
    with pytest.raises(sg.SafeGeneError, match="one layer at a time"):
        score_layers(plain, degraded, tau, probe_h, probe_b, method="prefix")
    auto = score_layers(plain, degraded, tau, probe_h, probe_b)  # auto: the patch method for a plain apply
    assert int(np.argmax(auto.safety_gain)) == PLANTED
    with pytest.raises(sg.SafeGeneError, match="method must be one of"):
        score_layers(lm.apply, degraded, tau, probe_h, probe_b, method="fast")


def test_fit_recovers_a_known_coefficient():
    target = jnp.array([0.3, 1.4, 0.0])
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 3))
    objective = lambda a: jnp.mean((x @ a - x @ target) ** 2)  # noqa: E731
    alpha, history, best = fit_coefficients(
        objective, jnp.ones(3), steps=400, learning_rate=0.05, alpha_max=2.0, patience=400
    )
    np.testing.assert_allclose(alpha, target, atol=0.02)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    bounded, _, _ = fit_coefficients(objective, jnp.ones(3), steps=400, learning_rate=0.05, alpha_max=1.0, patience=400)
    assert float(bounded.max()) <= 1.0 and bounded[1] == pytest.approx(1.0)  # projected onto [0, alpha_max]


def test_a_fit_pinned_at_init_stops_after_one_step_with_the_same_result():
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 3))
    # the first coefficient wants to go above its bound 1, the second below its bound 0, the third is at its
    # optimum (zero gradient): nothing can move
    target = jnp.array([1.7, -0.5, 0.0])
    objective = lambda a: jnp.mean((x[:, :2] @ a[:2] - x[:, :2] @ target[:2]) ** 2) + a[2] ** 2 * 0  # noqa: E731
    init = jnp.array([1.0, 0.0, 0.0])
    alpha, history, best = fit_coefficients(objective, init, steps=20, alpha_max=1.0, patience=10)
    assert len(history) == 1 and history[0]["stopped"] == "at init" and best == 0
    np.testing.assert_array_equal(alpha, np.asarray(init))
    # its held-out value could choose nothing but init: not computed, its program not even traced
    traced = []
    val = lambda a: traced.append(1) or objective(a)  # noqa: E731
    alpha, history, best = fit_coefficients(objective, init, steps=20, alpha_max=1.0, patience=10, val_objective=val)
    assert len(history) == 1 and "val_loss" not in history[0] and not traced and best == 0
    np.testing.assert_array_equal(alpha, np.asarray(init))
    # a training loss that is not finite is an error, whatever the held-out value says
    broken = lambda a: jnp.inf + 0.0 * jnp.sum(a)  # noqa: E731
    with pytest.raises(sg.SafeGeneError, match="recalibration loss became inf at step 0"):
        fit_coefficients(broken, init, steps=20, alpha_max=1.0, val_objective=lambda a: jnp.sum(a))
    # what the stop skips: ten more projected Adam steps, every one of them leaving alpha at init
    opt = optax.adam(0.05)
    a, state = init, opt.init(init)
    for _ in range(10):
        updates, state = opt.update(jax.grad(objective)(a), state, a)
        a = jnp.clip(optax.apply_updates(a, updates), 0.0, 1.0)
        np.testing.assert_array_equal(a, init)
    # one coefficient free to move: the fit goes on, as before
    free = lambda a: jnp.mean((x[:, :2] @ a[:2] - x[:, :2] @ jnp.array([0.4, 2.5])) ** 2)  # noqa: E731
    alpha, history, _ = fit_coefficients(free, jnp.ones(3), steps=20, learning_rate=0.05, alpha_max=1.0, patience=20)
    assert len(history) == 20 and "stopped" not in history[0] and alpha[0] < 0.9 and alpha[1] == 1.0
    with pytest.raises(sg.SafeGeneError, match="learning_rate must be a number"):
        fit_coefficients(free, jnp.ones(3), learning_rate=lambda step: 0.1)


def test_first_step_inputs_are_placed_like_the_steps_outputs(eight_devices):
    """Committed like the jitted step's outputs, so the second step reuses the first one's program."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from safegene_jax.method.recalibration import _placed_with

    tree = (jnp.ones(3), {"count": jnp.zeros((), jnp.int32)})
    assert not any(x.committed for x in jax.tree.leaves(_placed_with((jnp.ones(2),), tree)))
    one = jax.device_put(jnp.ones(2), eight_devices[3])
    placed = _placed_with((one,), tree)
    assert all(x.committed and x.sharding.device_set == {eight_devices[3]} for x in jax.tree.leaves(placed))
    mesh = make_mesh(data=8, fsdp=1, tensor=1)
    sharded = jax.device_put(jnp.ones((8, 2)), NamedSharding(mesh, P("data", None)))
    placed = _placed_with((sharded,), tree)
    assert all(x.sharding == NamedSharding(mesh, P()) for x in jax.tree.leaves(placed))
    step = jax.jit(lambda a, w: a + w.sum())
    alpha = step(placed[0], sharded)
    assert alpha.committed and alpha.sharding.is_equivalent_to(placed[0].sharding, 1)


def test_recalibration_recovers_coefficient_on_model(setup):
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    teacher = sg.apply_vector(degraded, tau, np.array([0, 0, 0.6, 0], np.float32))
    logp = jax.nn.log_softmax(lm.apply(teacher, probe_b["tokens"], probe_b["attention_mask"]))

    def objective(alpha):  # KL to the teacher: minimal exactly at alpha = 0.6
        patched = sg.apply_vector(degraded, tau, jnp.zeros(4).at[2].set(alpha[0]), check_finite=False)
        mine = jax.nn.log_softmax(lm.apply(patched, probe_b["tokens"], probe_b["attention_mask"]))
        return jnp.mean(jnp.sum(jnp.exp(logp) * (logp - mine), -1))

    alpha, _, _ = fit_coefficients(objective, jnp.array([1.5]), steps=150, learning_rate=0.05, patience=150)
    assert float(alpha[0]) == pytest.approx(0.6, abs=0.05)


def test_recalibrate_raises_refusal_likelihood_and_is_deterministic(setup):
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    cfg = RecalibrationConfig(
        steps=15, learning_rate=0.1, alpha_init=0.2, alpha_max=2.0, lam=0.5, patience=15, safety="refusal"
    )
    result = recalibrate(lm.apply, degraded, tau, [1, PLANTED], probe_h, probe_b, cfg)
    assert result.coeffs.shape == (4,) and result.coeffs[0] == 0 and result.coeffs[3] == 0
    assert result.alpha[1] > 0.2  # the planted layer's coefficient grows
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    again = recalibrate(lm.apply, degraded, tau, [1, PLANTED], probe_h, probe_b, cfg)
    np.testing.assert_array_equal(result.alpha, again.alpha)
    per_kind = recalibrate(
        lm.apply,
        degraded,
        tau,
        [PLANTED],
        probe_h,
        probe_b,
        RecalibrationConfig(steps=3, per_kind=True, utility="nll", safety="refusal"),
    )
    assert per_kind.alpha.shape == (1, len(sg.MODULE_KINDS)) and per_kind.coeffs.shape == (4, 3)
    with pytest.raises(sg.SafeGeneError, match="no layer selected"):
        recalibrate(lm.apply, degraded, tau, [], probe_h, probe_b, cfg)


def test_contrast_objective_prefers_refusing_and_checks_its_batch(setup):
    from safegene_jax.core.losses import onset, row_loglik

    lm, aligned, degraded, probe_h, probe_b = setup
    comply = data.batch_examples(  # the probe's harmful prompts with compliant answers
        [data.encode_example(lm.tokenizer, r["instruction"], r["target"]) for r in data.load("embedded/harmful")[:8]],
        max_length=384,
        pad_id=0,
        overflow="truncate",
    )
    first = onset(probe_h, 3)
    assert np.asarray(first["loss_mask"]).sum(axis=1).tolist() == [3] * 8
    assert np.all(np.asarray(first["loss_mask"]) <= np.asarray(probe_h["loss_mask"]))
    per_row = row_loglik(lm.apply(aligned, probe_h["tokens"], probe_h["attention_mask"]), probe_h)
    assert per_row.shape == (8,)

    tau = sg.safety_vector(aligned, degraded)
    # lam = 0, no pull, no held-out rows: the first recorded loss is exactly the contrast formula
    cfg = RecalibrationConfig(steps=6, learning_rate=0.1, alpha_init=0.5, lam=0.0, l2=0.0, val_fraction=0.0, patience=6)
    result = recalibrate(lm.apply, degraded, tau, [PLANTED], probe_h, probe_b, cfg, compliant=comply)
    patched = sg.apply_vector(degraded, tau, np.eye(4, dtype=np.float32)[PLANTED] * 0.5)
    refuse, comply_on = onset(probe_h, 4), onset(comply, 4)
    d = row_loglik(lm.apply(patched, refuse["tokens"], refuse["attention_mask"]), refuse) - row_loglik(
        lm.apply(patched, comply_on["tokens"], comply_on["attention_mask"]), comply_on
    )
    expected = float(jnp.mean(jax.nn.softplus(1.0 - d)))
    assert result.history[0]["train_loss"] == pytest.approx(expected, rel=1e-4)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    with pytest.raises(sg.SafeGeneError, match="needs the compliant batch"):
        recalibrate(lm.apply, degraded, tau, [PLANTED], probe_h, probe_b, cfg)
    short = {k: np.asarray(v)[:4] for k, v in comply.items()}
    with pytest.raises(sg.SafeGeneError, match="must pair up"):
        recalibrate(lm.apply, degraded, tau, [PLANTED], probe_h, probe_b, cfg, compliant=short)
    with pytest.raises(sg.SafeGeneError, match="safety: must be"):
        RecalibrationConfig(safety="vibes")


def test_two_sided_fluency_and_ending_terms_add_up_to_the_objective(setup):
    """With help_weight, kl_weight and end_weight, the first recorded loss is the sum of the formulas."""
    from safegene_jax.core.losses import mean_kl, mean_loglik, onset, reference_logp, row_loglik
    from safegene_jax.method.recalibration import ending

    lm, aligned, degraded, probe_h, probe_b = setup
    harmful = data.load("embedded/harmful")[:8]
    border = data.load("embedded/benign", split="probe")[:6]
    enc = lambda rows, key: data.batch_examples(  # noqa: E731
        [data.encode_example(lm.tokenizer, r["instruction"], r[key]) for r in rows],
        max_length=384,
        pad_id=0,
        overflow="truncate",
    )
    comply, helpful = enc(harmful, "target"), enc(border, "response")
    refusals = enc([{**r, "refusal": "I'm sorry, but I can't help with that."} for r in border], "refusal")
    tau = sg.safety_vector(aligned, degraded)
    cfg = RecalibrationConfig(
        steps=2, alpha_init=0.5, lam=0.0, l2=0.0, val_fraction=0.0, help_weight=0.7, kl_weight=2.0, end_weight=0.3
    )
    result = recalibrate(
        lm.apply,
        degraded,
        tau,
        [PLANTED],
        probe_h,
        probe_b,
        cfg,
        compliant=comply,
        borderline=helpful,
        borderline_refusals=refusals,
        fluency=probe_b,
    )
    patched = sg.apply_vector(degraded, tau, np.eye(4, dtype=np.float32)[PLANTED] * 0.5)
    run = lambda params, b: lm.apply(params, b["tokens"], b["attention_mask"])  # noqa: E731

    def contrast(yes, no):
        yes, no = onset(yes, 4), onset(no, 4)
        return float(
            jnp.mean(jax.nn.softplus(1.0 - (row_loglik(run(patched, yes), yes) - row_loglik(run(patched, no), no))))
        )

    end = ending(probe_h)
    assert np.asarray(end["loss_mask"]).sum(axis=1).tolist() == [1] * 8
    last = np.asarray(probe_h["loss_mask"])[np.arange(8), np.asarray(end["loss_mask"]).argmax(axis=1)]
    assert last.tolist() == [1] * 8
    expected = (
        contrast(probe_h, comply)
        + 0.3 * -float(mean_loglik(run(patched, end), end))
        + 0.7 * contrast(helpful, refusals)
        + 2.0 * float(mean_kl(reference_logp(run(degraded, probe_b)), run(patched, probe_b), probe_b))
    )
    assert result.history[0]["train_loss"] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(sg.SafeGeneError, match="help_weight > 0 needs the borderline batch"):
        recalibrate(lm.apply, degraded, tau, [PLANTED], probe_h, probe_b, cfg, compliant=comply, fluency=probe_b)
    with pytest.raises(sg.SafeGeneError, match="borderline refusals: 4 rows against 6"):
        short = {k: np.asarray(v)[:4] for k, v in refusals.items()}
        recalibrate(
            lm.apply,
            degraded,
            tau,
            [PLANTED],
            probe_h,
            probe_b,
            cfg,
            compliant=comply,
            borderline=helpful,
            borderline_refusals=short,
            fluency=probe_b,
        )
    no_help = RecalibrationConfig(steps=1, kl_weight=1.0)
    with pytest.raises(sg.SafeGeneError, match="kl_weight > 0 needs the fluency batch"):
        recalibrate(lm.apply, degraded, tau, [PLANTED], probe_h, probe_b, no_help, compliant=comply)
    for name in ("help_weight", "kl_weight", "end_weight"):
        with pytest.raises(sg.ConfigError, match=f"{name}: must be >= 0"):
            RecalibrationConfig(**{name: -1.0})


def test_recalibration_runs_the_layers_below_the_first_patched_one_once(setup):
    """With a layer-at-a-time apply, the layers below the lowest selected one run once per batch: the same
    losses as running the whole model in every step (a plain apply function)."""
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    cfg = RecalibrationConfig(steps=3, alpha_init=0.5, utility="kl", lam=0.5, val_fraction=0.25, safety="refusal")
    layered = recalibrate(lm.apply, degraded, tau, [PLANTED, 3], probe_h, probe_b, cfg)
    plain = recalibrate(lambda p, t, m: lm.apply(p, t, m), degraded, tau, [PLANTED, 3], probe_h, probe_b, cfg)
    for a, b in zip(layered.history, plain.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    np.testing.assert_allclose(layered.alpha, plain.alpha, rtol=1e-5)


def _fit_program(monkeypatch, setup, utility):
    """The text of the compiled objective recalibration's fit would run for ``utility`` (the fit itself is
    replaced by one that records what it is given)."""
    from safegene_jax.method import recalibration

    lm, aligned, degraded, probe_h, _ = setup
    seen = {}

    def record(objective, init, *, operands=(), **kw):
        seen.update(objective=objective, init=init, operands=operands)
        return np.asarray(init), [], 0

    monkeypatch.setattr(recalibration, "fit_coefficients", record)
    cfg = RecalibrationConfig(steps=2, utility="nll", safety="refusal", val_fraction=0.0)  # every row trains
    recalibrate(lm.apply, degraded, sg.safety_vector(aligned, degraded), [1, PLANTED], probe_h, utility, cfg)
    return jax.jit(seen["objective"]).lower(seen["init"], *seen["operands"]).as_text()


def test_task_models_whose_utility_shots_differ_a_little_share_the_fits_program(setup, monkeypatch):
    """The utility few shots (the one batch that differs between task models) keep their width and their
    scored positions are padded to a multiple of 128: shots of one width and nearly as many answer tokens give
    the same program (so the persistent compilation cache serves the second task model), far fewer not."""
    from safegene_jax.core.losses import onset

    probe_b = setup[4]
    mask = np.asarray(probe_b["loss_mask"]).copy()
    first = int(np.argmax(mask[0]))
    mask[0, first] = 0  # one scored position fewer, the same last column
    fewer = {**probe_b, "loss_mask": mask}
    n = int(np.asarray(probe_b["loss_mask"])[:, 1:].sum())
    assert n % 128 != 1  # the same multiple of 128 positions
    program = _fit_program(monkeypatch, setup, probe_b)
    assert _fit_program(monkeypatch, setup, fewer) == program
    assert _fit_program(monkeypatch, setup, onset(probe_b, 1)) != program  # another bucket: another program


def test_padding_the_utility_positions_leaves_the_fit_unchanged(setup, monkeypatch):
    from safegene_jax.core.losses import trim
    from safegene_jax.method import recalibration

    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    runs = []
    for utility in ("nll", "kl"):
        cfg = RecalibrationConfig(steps=3, alpha_init=0.5, utility=utility, lam=0.5, safety="refusal")
        padded = recalibrate(lm.apply, degraded, tau, [1, PLANTED], probe_h, probe_b, cfg)
        with monkeypatch.context() as m:
            m.setattr(recalibration, "UTILITY_POSITIONS", 1)
            plain = recalibrate(lm.apply, degraded, tau, [1, PLANTED], probe_h, probe_b, cfg)
        runs.append((padded, plain))
    # and a utility batch padded wider (as the pipeline pads it to max_length) gives the same fit as the batch
    # cut after its last answer token
    cfg = RecalibrationConfig(steps=3, alpha_init=0.5, utility="nll", lam=0.5, safety="refusal")
    wide = {k: np.pad(np.asarray(v), ((0, 0), (0, 40))) for k, v in probe_b.items()}  # pad id 0, masks 0
    assert trim(wide)["tokens"].shape == np.asarray(probe_b["tokens"]).shape
    runs.append(tuple(recalibrate(lm.apply, degraded, tau, [1, PLANTED], probe_h, b, cfg) for b in (wide, probe_b)))
    for padded, plain in runs:
        assert padded.history and len(padded.history) == len(plain.history)
        for a, b in zip(padded.history, plain.history):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        np.testing.assert_allclose(padded.alpha, plain.alpha, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["per layer", "per kind", "low rank", "partial"])
def test_recalibration_scanning_the_layers_equals_the_unrolled_program(setup, case):
    """The layers from the lowest selected one on, run as one scan over their stacked params, each patched in
    the scan's body: the same losses and coefficients as the unrolled layers, with the whole vector
    (unselected layers' parts ignored), a per-kind fit, a low-rank vector, and a vector that lacks some of a
    selected layer's params (those stay unpatched)."""
    lm, aligned, degraded, probe_h, probe_b = setup
    tau = sg.safety_vector(aligned, degraded)
    if case == "low rank":
        tau = SafetyAdapter.build(aligned, degraded, [1, PLANTED], rank=2).vector
    if case == "partial":
        dropped = sorted(p for p in tau if f".layers.{PLANTED}." in p and "mlp" in p)
        assert dropped
        tau = {p: v for p, v in tau.items() if p not in dropped}
    cfg = RecalibrationConfig(
        steps=3, alpha_init=0.5, utility="kl", lam=0.5, val_fraction=0.25, safety="refusal", per_kind=case == "per kind"
    )
    runs = [
        recalibrate(lm.apply, degraded, tau, [1, PLANTED], probe_h, probe_b, cfg, scan_layers=scan)
        for scan in (True, False)
    ]
    assert runs[0].history and len(runs[0].history) == len(runs[1].history)
    for a, b in zip(*(r.history for r in runs)):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    np.testing.assert_allclose(runs[0].alpha, runs[1].alpha, rtol=1e-5, atol=1e-6)


def test_scanned_layers_equal_the_loop(setup):
    lm, aligned, degraded, probe_h, probe_b = setup
    apply = lm.apply
    assert apply.uniform_layers(degraded, 1)
    x, ctx = apply.embed(degraded, probe_h["tokens"], probe_h["attention_mask"])
    looped = x
    for i in range(apply.num_layers(degraded)):
        looped = apply.layer(degraded, i, looped, ctx)
    for i in range(1):
        x = apply.layer(degraded, i, x, ctx)
    scanned = apply.scan_layers(degraded, 1, apply.stack_layers(degraded, 1), x, ctx)
    np.testing.assert_allclose(scanned, looped, atol=1e-5)


def test_adapter_round_trip_sharded_and_incompatible(setup, tmp_path, eight_devices):
    lm, aligned, degraded, probe_h, probe_b = setup
    adapter = SafetyAdapter.build(
        aligned, degraded, [PLANTED], family="tiny", sources={"aligned": "test"}, probe_hash=data_hash(probe_h, probe_b)
    )
    assert set(adapter.layers) == {PLANTED} and all(f"layers.{PLANTED}." in p for p in adapter.vector)
    adapter.save(tmp_path / "adapter")
    mesh = make_mesh(data=1, fsdp=8, tensor=1)
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    shardings = {p: NamedSharding(mesh, P()) for p in adapter.vector}
    loaded = SafetyAdapter.load(tmp_path / "adapter", shardings=shardings)
    assert loaded.layers == [PLANTED] and loaded.metadata["family"] == "tiny"
    assert all(v.sharding == shardings[p] for p, v in loaded.vector.items())
    patched = loaded.apply(degraded)
    ref = sg.apply_vector(degraded, adapter.vector, adapter.coeffs)
    for a, b in zip(jax.tree_util.tree_leaves(patched), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    compact = SafetyAdapter.build(aligned, degraded, [PLANTED], rank=2)
    compact.save(tmp_path / "compact")
    again = SafetyAdapter.load(tmp_path / "compact")
    assert any(isinstance(v, sg.LowRank) for v in again.vector.values()) and 0 < again.metadata["retained_energy"] <= 1
    again.apply(degraded)
    half = jax.tree.map(lambda x: x.astype(jnp.bfloat16), degraded)  # same family in another dtype
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(adapter.apply(half)))
    other = tiny_lm(tmp_path / "other", layers=2)
    with pytest.raises(IncompatibleAdapterError, match="4-layer model, these params have 2 layers"):
        adapter.apply(other.params)
    with pytest.raises(sg.SafeGeneError, match="not a safety adapter"):
        sg.save_tree(tmp_path / "junk", {"x": jnp.ones(2)})
        SafetyAdapter.load(tmp_path / "junk")


def test_baselines_match_formulas(setup):
    _, aligned, degraded, _, _ = setup
    tau = sg.safety_vector(aligned, degraded)
    out = resta(degraded, tau, 0.7)
    ref = sg.apply_vector(degraded, tau, 0.7)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref)))
    both = task_arithmetic(degraded, [tau, tau], [0.5, 0.2])
    for a, b in zip(jax.tree_util.tree_leaves(both), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    big = {"layers.0.w": jnp.ones((200, 100))}
    dropped = dare(big, 0.75, seed=1)["layers.0.w"]
    kept = np.asarray(dropped) != 0
    assert abs(kept.mean() - 0.25) < 0.02 and np.allclose(np.asarray(dropped)[kept], 4.0)
    with pytest.raises(sg.SafeGeneError):
        dare(big, 1.0)


def test_safe_lora_projection():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((6, 4)).astype(np.float32)  # (in, out)
    delta = rng.standard_normal((6, 4)).astype(np.float32)
    proj, cos = projection_cosine(jnp.asarray(delta), jnp.asarray(v))
    vt = v.T
    c = vt @ vt.T / np.linalg.norm(vt)
    want = (c @ delta.T).T
    np.testing.assert_allclose(proj, want, rtol=1e-4, atol=1e-5)
    assert float(cos) == pytest.approx(
        float((delta * want).sum() / np.linalg.norm(delta) / np.linalg.norm(want)), rel=1e-4
    )
    base = {"layers": [{"w": jnp.zeros((6, 4))}, {"w": jnp.zeros((6, 4))}]}
    task = {"layers": [{"w": jnp.asarray(delta)}, {"w": jnp.asarray(v)}]}  # layer 1's delta is in the subspace
    vec = {"layers.0.w": jnp.asarray(v), "layers.1.w": jnp.asarray(v)}
    out = safe_lora(task, vec, base_params=base, k_lowest=1)
    np.testing.assert_allclose(out["layers"][0]["w"], want, rtol=1e-4, atol=1e-5)  # projected
    np.testing.assert_array_equal(out["layers"][1]["w"], v)  # kept
    out = safe_lora(task, vec, base_params=base, threshold=-2.0)
    np.testing.assert_array_equal(out["layers"][0]["w"], delta)

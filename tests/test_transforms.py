import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trees import hf_dict, leaves_equal, linen_params, nnx_state, stacked_dict

import safegene_jax as sg

LAYOUTS = {"hf": hf_dict, "stacked": stacked_dict, "nnx": nnx_state, "linen": linen_params}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_round_trip_restores_aligned(layout):
    aligned, degraded = LAYOUTS[layout](0), LAYOUTS[layout](1)
    tau = sg.safety_vector(aligned, degraded)
    restored = sg.apply_vector(degraded, tau, 1.0)
    assert type(restored) is type(degraded)
    # layer leaves come back to the aligned values; the rest stays the degraded model's
    p_aligned = dict(zip(*sg.flatten_with_paths(aligned)[:2]))
    p_degraded = dict(zip(*sg.flatten_with_paths(degraded)[:2]))
    for path, leaf in zip(*sg.flatten_with_paths(restored)[:2]):
        want = p_aligned[path] if path in tau else p_degraded[path]
        np.testing.assert_allclose(leaf, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_vector_holds_only_layer_leaves(layout):
    tau = sg.safety_vector(LAYOUTS[layout](0), LAYOUTS[layout](1))
    assert tau and all(("layers" in p) for p in tau)
    assert not any("embed" in p or p.endswith("model.norm.weight") for p in tau)


def test_layers_only_false_and_include_exclude():
    a, d = hf_dict(0), hf_dict(1)
    full = sg.safety_vector(a, d, layers_only=False)
    assert "model.embed_tokens.weight" in full and "model.norm.weight" in full
    attn = sg.safety_vector(a, d, include=r"self_attn")
    assert attn and all("self_attn" in p for p in attn)
    no_norm = sg.safety_vector(a, d, exclude=lambda p: "layernorm" in p)
    assert not any("layernorm" in p for p in no_norm)


def test_full_round_trip_with_outside_leaves():
    a, d = hf_dict(0), hf_dict(1)
    tau = sg.safety_vector(a, d, layers_only=False)
    assert leaves_equal(sg.apply_vector(d, tau, 1.0), a, atol=1e-6)


def test_coefficient_zero_is_identity():
    d = hf_dict(1)
    tau = sg.safety_vector(hf_dict(0), d)
    assert leaves_equal(sg.apply_vector(d, tau, 0.0), d)
    assert leaves_equal(sg.apply_vector(d, tau, np.zeros(3)), d)


@settings(max_examples=15, deadline=None)
@given(
    c1=st.lists(st.floats(-2, 2, width=32), min_size=3, max_size=3),
    c2=st.lists(st.floats(-2, 2, width=32), min_size=3, max_size=3),
)
def test_linear_in_coefficients(c1, c2):
    d = hf_dict(1)
    tau = sg.safety_vector(hf_dict(0), d)
    c1, c2 = np.array(c1, np.float32), np.array(c2, np.float32)
    both = sg.apply_vector(d, tau, c1 + c2)
    stepwise = sg.apply_vector(sg.apply_vector(d, tau, c1), tau, c2)
    assert leaves_equal(both, stepwise, atol=1e-4)


def test_per_layer_coefficients_touch_only_their_layer():
    a, d = hf_dict(0), hf_dict(1)
    tau = sg.safety_vector(a, d)
    out = sg.apply_vector(d, tau, [0.0, 1.0, 0.0])
    m = out["model"]["layers"]
    np.testing.assert_allclose(
        m["1"]["mlp"]["up_proj"]["weight"], a["model"]["layers"]["1"]["mlp"]["up_proj"]["weight"], atol=1e-6
    )
    np.testing.assert_array_equal(
        m["0"]["mlp"]["up_proj"]["weight"], d["model"]["layers"]["0"]["mlp"]["up_proj"]["weight"]
    )


def test_per_layer_and_kind_coefficients():
    a, d = hf_dict(0), hf_dict(1)
    tau = sg.safety_vector(a, d)
    coeffs = np.zeros((3, len(sg.MODULE_KINDS)), np.float32)
    coeffs[:, sg.MODULE_KINDS.index("attn")] = 1.0
    out = sg.apply_vector(d, tau, coeffs)
    layer = out["model"]["layers"]["2"]
    np.testing.assert_allclose(
        layer["self_attn"]["q_proj"]["weight"], a["model"]["layers"]["2"]["self_attn"]["q_proj"]["weight"], atol=1e-6
    )
    np.testing.assert_array_equal(
        layer["mlp"]["down_proj"]["weight"], d["model"]["layers"]["2"]["mlp"]["down_proj"]["weight"]
    )


def test_stacked_per_layer_coefficients():
    a, d = stacked_dict(0), stacked_dict(1)
    tau = sg.safety_vector(a, d)
    out = sg.apply_vector(d, tau, [1.0, 0.0, 0.5])
    got = out["params"]["layers"]["mlp"]["up"]["kernel"]
    wa, wd = a["params"]["layers"]["mlp"]["up"]["kernel"], d["params"]["layers"]["mlp"]["up"]["kernel"]
    np.testing.assert_allclose(got[0], wa[0], atol=1e-6)
    np.testing.assert_array_equal(got[1], wd[1])
    np.testing.assert_allclose(got[2], (wa[2] + wd[2]) / 2, atol=1e-6)


def test_mask_semantics():
    a, d = hf_dict(0), hf_dict(1)
    tau = sg.safety_vector(a, d)
    masked = sg.apply_vector(d, tau, 0.7, mask=[True, False, True])
    explicit = sg.apply_vector(d, tau, [0.7, 0.0, 0.7])
    assert leaves_equal(masked, explicit)
    assert leaves_equal(sg.apply_vector(d, tau, 1.0, mask=sg.layer_mask([], 3)), d)


def test_restrict_layers_equals_mask():
    a, d = stacked_dict(0), stacked_dict(1)
    tau = sg.safety_vector(a, d)
    restricted = sg.restrict_layers(tau, [0, 2])
    assert leaves_equal(sg.apply_vector(d, restricted, 1.0), sg.apply_vector(d, tau, 1.0, mask=[1, 0, 1]))
    per_index = sg.safety_vector(hf_dict(0), hf_dict(1))
    kept = sg.restrict_layers(per_index, [1])
    assert kept and all(".layers.1." in p for p in kept)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dtype_preserved(dtype):
    a, d = hf_dict(0, dtype=dtype), hf_dict(1, dtype=dtype)
    tau = sg.safety_vector(a, d)
    assert all(v.dtype == dtype for v in tau.values())
    out = sg.apply_vector(d, tau, 0.5)
    assert all(x.dtype == dtype for x in jax.tree_util.tree_leaves(out))


def test_bf16_math_in_float32():
    rng = np.random.default_rng(0)
    p = jnp.asarray(rng.standard_normal(4096), jnp.bfloat16)
    v = jnp.asarray(rng.standard_normal(4096) * 1e-2, jnp.bfloat16)
    c = jnp.float32(1.0 / 3.0)
    out = sg.apply_vector({"layers": [{"w": p}]}, {"layers.0.w": v}, c)["layers"][0]["w"]
    assert out.dtype == jnp.bfloat16
    want = (p.astype(jnp.float32) + c * v.astype(jnp.float32)).astype(jnp.bfloat16)
    in_bf16 = p + c.astype(jnp.bfloat16) * v
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(want, np.float32))
    assert np.any(np.asarray(in_bf16, np.float32) != np.asarray(want, np.float32))


def test_vector_dtype_option():
    tau = sg.safety_vector(hf_dict(0, dtype=jnp.bfloat16), hf_dict(1, dtype=jnp.bfloat16), dtype=jnp.float32)
    assert all(v.dtype == jnp.float32 for v in tau.values())


def test_vector_as_pytree_and_nnx_dict_interop():
    state = nnx_state(0)
    from flax import nnx

    pure = nnx.to_pure_dict(state)
    tau_state = sg.safety_vector(state, nnx_state(1))
    tau_pure = sg.safety_vector(pure, nnx.to_pure_dict(nnx_state(1)))
    assert sorted(tau_state) == sorted(tau_pure)
    # a vector computed on pure dicts applies to the NNX State, and a pytree vector works too
    out = sg.apply_vector(nnx_state(1), tau_pure, 1.0)
    assert leaves_equal(nnx.to_pure_dict(out)["layers"], pure["layers"], atol=1e-6)
    tree_vec = jax.tree.map(lambda x, y: x - y, hf_dict(0), hf_dict(1))
    assert leaves_equal(sg.apply_vector(hf_dict(1), tree_vec, 1.0), hf_dict(0), atol=1e-6)


def test_jit_and_grad_through_coefficients():
    a, d = hf_dict(0), hf_dict(1)
    tau = sg.safety_vector(a, d)

    @jax.jit
    def loss(c):
        out = sg.apply_vector(d, tau, c)
        return sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(out))

    g = jax.grad(loss)(jnp.zeros(3))
    assert g.shape == (3,) and np.all(np.isfinite(g)) and np.any(g != 0)
    eps = 1e-2
    fd = (loss(jnp.array([eps, 0, 0])) - loss(jnp.array([-eps, 0, 0]))) / (2 * eps)
    np.testing.assert_allclose(g[0], fd, rtol=1e-2)
    jitted = jax.jit(sg.safety_vector)(a, d)
    assert sorted(jitted) == sorted(tau)


def test_usable_under_pmap(eight_devices):
    a, d = hf_dict(0, layers=2), hf_dict(1, layers=2)
    tau = sg.safety_vector(a, d)
    n = 2
    rep = lambda t: jax.tree.map(lambda x: jnp.stack([x] * n), t)  # noqa: E731
    out = jax.pmap(lambda p, v, c: sg.apply_vector(p, v, c))(rep(d), rep(tau), jnp.array([1.0, 0.0]))
    first = jax.tree.map(lambda x: x[0], out)
    second = jax.tree.map(lambda x: x[1], out)
    assert leaves_equal(first, sg.apply_vector(d, tau, 1.0), atol=1e-6)
    assert leaves_equal(second, d)
    assert not leaves_equal(first, second)


def test_donate_reuses_params_buffers():
    a, d = hf_dict(0), hf_dict(1)
    tau = sg.safety_vector(a, d)
    leaf = d["model"]["layers"]["0"]["mlp"]["up_proj"]["weight"]
    out = sg.apply_vector(d, tau, 1.0, donate=True)
    assert leaf.is_deleted()
    np.testing.assert_allclose(
        out["model"]["layers"]["0"]["mlp"]["up_proj"]["weight"],
        a["model"]["layers"]["0"]["mlp"]["up_proj"]["weight"],
        atol=1e-6,
    )
    # leaves the vector does not touch are passed through, not copied
    assert out["model"]["embed_tokens"]["weight"] is d["model"]["embed_tokens"]["weight"]


def test_low_rank_vector_applies_without_densifying_first():
    a, d = hf_dict(0), hf_dict(1)
    tau = sg.safety_vector(a, d)
    compact, _ = sg.low_rank(tau, rank=8)  # D=8: full rank, so exact
    assert leaves_equal(sg.apply_vector(d, compact, 0.5), sg.apply_vector(d, tau, 0.5), atol=1e-5)


# ---- errors, raised before any work -------------------------------------------------------


def test_structure_mismatch_names_first_path():
    a, d = hf_dict(0), hf_dict(1)
    del d["model"]["layers"]["1"]["mlp"]["up_proj"]
    with pytest.raises(sg.TreeMismatchError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        sg.safety_vector(a, d)


def test_shape_and_dtype_mismatch():
    a, d = hf_dict(0), hf_dict(1)
    d["model"]["layers"]["2"]["mlp"]["up_proj"]["weight"] = jnp.zeros((4, 4))
    with pytest.raises(sg.TreeMismatchError, match=r"shape mismatch at 'model\.layers\.2\.mlp\.up_proj\.weight'"):
        sg.safety_vector(a, d)
    with pytest.raises(sg.TreeMismatchError, match="dtype mismatch"):
        sg.safety_vector(hf_dict(0), hf_dict(1, dtype=jnp.bfloat16))
    tau = sg.safety_vector(hf_dict(0), hf_dict(1))
    tau["model.layers.0.mlp.up_proj.weight"] = jnp.zeros((3, 3))
    with pytest.raises(sg.TreeMismatchError, match="shape mismatch at 'model.layers.0.mlp.up_proj.weight'"):
        sg.apply_vector(hf_dict(1), tau)
    with pytest.raises(sg.TreeMismatchError, match="floating point"):
        sg.apply_vector({"layers": [{"w": jnp.zeros(2, jnp.int32)}]}, {"layers.0.w": jnp.zeros(2)})


def test_unknown_vector_path():
    with pytest.raises(sg.TreeMismatchError, match="'model.layers.9.w'"):
        sg.apply_vector(hf_dict(1), {"model.layers.9.w": jnp.zeros(2)})


def test_non_finite_vector():
    a, d = hf_dict(0), hf_dict(1)
    a["model"]["layers"]["1"]["mlp"]["up_proj"]["weight"] = (
        a["model"]["layers"]["1"]["mlp"]["up_proj"]["weight"].at[0, 0].set(jnp.nan)
    )
    with pytest.raises(sg.NonFiniteError, match="model.layers.1.mlp.up_proj.weight"):
        sg.safety_vector(a, d)
    tau = sg.safety_vector(a, d, check_finite=False)
    before = np.asarray(d["model"]["layers"]["1"]["mlp"]["up_proj"]["weight"]).copy()
    with pytest.raises(sg.NonFiniteError, match="check_finite=False"):
        sg.apply_vector(d, tau, 1.0, donate=True)
    # nothing was donated or changed
    np.testing.assert_array_equal(d["model"]["layers"]["1"]["mlp"]["up_proj"]["weight"], before)
    out = sg.apply_vector(d, tau, 1.0, check_finite=False)
    assert np.isnan(out["model"]["layers"]["1"]["mlp"]["up_proj"]["weight"][0, 0])
    with pytest.raises(sg.NonFiniteError, match="coeffs"):
        sg.apply_vector(d, sg.safety_vector(hf_dict(0), d), [1.0, np.inf, 0.0])


@pytest.mark.parametrize("coeffs", [np.ones(2), np.ones(4), np.ones((3, 2)), np.ones((3, 3, 1))])
def test_wrong_coefficient_length(coeffs):
    tau = sg.safety_vector(hf_dict(0), hf_dict(1))
    with pytest.raises(sg.LayerMapError, match="3 layers"):
        sg.apply_vector(hf_dict(1), tau, coeffs)


def test_wrong_mask_length_and_outside_leaves():
    tau = sg.safety_vector(hf_dict(0), hf_dict(1))
    with pytest.raises(sg.LayerMapError, match=r"mask has shape \(2,\)"):
        sg.apply_vector(hf_dict(1), tau, 1.0, mask=[1, 0])
    full = sg.safety_vector(hf_dict(0), hf_dict(1), layers_only=False)
    with pytest.raises(sg.LayerMapError, match="outside_coeff"):
        sg.apply_vector(hf_dict(1), full, [1.0, 1.0, 1.0])
    out = sg.apply_vector(hf_dict(1), full, [1.0, 1.0, 1.0], outside_coeff=1.0)
    assert leaves_equal(out, hf_dict(0), atol=1e-6)


def test_nothing_selected():
    with pytest.raises(sg.LayerMapError, match="layer_map"):
        sg.safety_vector({"a": jnp.ones(2)}, {"a": jnp.zeros(2)})
    with pytest.raises(sg.LayerMapError, match="include/exclude"):
        sg.safety_vector(hf_dict(0), hf_dict(1), include="nothing_matches")


def test_global_norm():
    tau = {"layers.0.w": jnp.array([3.0]), "layers.1.w": jnp.array([4.0])}
    assert float(sg.global_norm(tau)) == pytest.approx(5.0)


def test_non_finite_constant_vector_inside_jit():
    a, d = hf_dict(0), hf_dict(1)
    tau = sg.safety_vector(a, d)
    tau["model.layers.0.mlp.up_proj.weight"] = tau["model.layers.0.mlp.up_proj.weight"].at[1, 1].set(jnp.inf)
    with pytest.raises(sg.NonFiniteError, match="model.layers.0.mlp.up_proj.weight"):
        jax.jit(lambda c: sg.apply_vector(d, tau, c))(1.0)

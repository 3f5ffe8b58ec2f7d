import jax.numpy as jnp
import numpy as np
import pytest
from trees import hf_dict, stacked_dict

import safegene_jax as sg


def planted(rank, m=24, n=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))).astype(np.float32)


def test_exact_for_low_rank_matrices():
    vec = {"layers.0.mlp.w": planted(3), "layers.0.norm": np.ones(24, np.float32)}
    compact, report = sg.low_rank(vec, rank=3)
    assert isinstance(compact["layers.0.mlp.w"], sg.LowRank) and compact["layers.0.mlp.w"].rank == 3
    assert isinstance(compact["layers.0.norm"], np.ndarray)  # vectors stay dense
    np.testing.assert_allclose(sg.to_dense(compact)["layers.0.mlp.w"], vec["layers.0.mlp.w"], atol=1e-4)
    assert report.total == pytest.approx(1.0, abs=1e-6)
    assert report.compressed_size == 3 * (24 + 40) + 24 < report.dense_size


def test_energy_matches_singular_values():
    m = np.random.default_rng(1).standard_normal((16, 16)).astype(np.float32)
    s = np.linalg.svd(m, compute_uv=False)
    _, report = sg.low_rank({"layers.0.w": m}, rank=4)
    assert report.per_leaf["layers.0.w"] == pytest.approx(float((s[:4] ** 2).sum() / (s**2).sum()), rel=1e-4)
    # the truncation is the best rank-4 approximation: its error is the dropped energy
    compact, _ = sg.low_rank({"layers.0.w": m}, rank=4)
    err = np.linalg.norm(np.asarray(compact["layers.0.w"].dense()) - m) ** 2
    assert err == pytest.approx(float((s[4:] ** 2).sum()), rel=1e-3)


def test_stacked_leaves_compressed_per_layer():
    vec = sg.safety_vector(stacked_dict(0), stacked_dict(1))
    compact, report = sg.low_rank(vec, rank=2)
    lr = compact["params.layers.mlp.up.kernel"]
    assert lr.left.shape == (3, 8, 2) and lr.right.shape == (3, 2, 16)
    assert 0 < report.total < 1
    full, full_report = sg.low_rank(vec, rank=8)
    assert full_report.total == pytest.approx(1.0, abs=1e-5)


def test_not_smaller_stays_dense_and_dtype_kept():
    vec = {"layers.0.w": jnp.ones((4, 4), jnp.bfloat16)}
    compact, report = sg.low_rank(vec, rank=3)  # 3 * 8 > 16: no saving
    assert not isinstance(compact["layers.0.w"], sg.LowRank) and report.per_leaf["layers.0.w"] == 1.0
    compact, _ = sg.low_rank({"layers.0.w": jnp.ones((32, 32), jnp.bfloat16)}, rank=1)
    assert compact["layers.0.w"].dtype == jnp.bfloat16 and compact["layers.0.w"].dense().dtype == jnp.bfloat16


def test_nd_kernels_reshape_back():
    vec = {"layers.0.attn.o": planted(4, 16, 32).reshape(16, 4, 8)}  # viewed as (16, 32)
    compact, _ = sg.low_rank(vec, rank=4)
    assert compact["layers.0.attn.o"].dense().shape == (16, 4, 8)
    np.testing.assert_allclose(sg.to_dense(compact)["layers.0.attn.o"], vec["layers.0.attn.o"], atol=1e-4)


def test_real_vector_round_trip_and_bad_rank():
    vec = sg.safety_vector(hf_dict(0), hf_dict(1))
    compact, report = sg.low_rank(vec, rank=2)
    assert set(compact) == set(vec) and 0 < report.total < 1
    assert set(report.per_leaf) == set(vec)
    with pytest.raises(ValueError, match="rank must be a positive int"):
        sg.low_rank(vec, rank=0)

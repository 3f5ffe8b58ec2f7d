import numpy as np
import pytest
from trees import hf_dict, stacked_dict

import safegene_jax as sg


def test_layer_norms_match_numpy():
    vec = sg.safety_vector(hf_dict(0), hf_dict(1))
    want = [
        np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2) for p, v in vec.items() if f".layers.{i}." in p))
        for i in range(3)
    ]
    np.testing.assert_allclose(sg.layer_norms(vec), want, rtol=1e-5)
    by_kind = sg.layer_norms(vec, by_kind=True)
    assert by_kind.shape == (3, len(sg.MODULE_KINDS))
    np.testing.assert_allclose(np.sqrt((np.asarray(by_kind) ** 2).sum(1)), want, rtol=1e-5)


def test_stacked_norms_equal_per_index_norms():
    vec = sg.safety_vector(stacked_dict(0), stacked_dict(1))
    norms = np.asarray(sg.layer_norms(vec))
    up = np.asarray(vec["params.layers.mlp.up.kernel"])
    assert norms.shape == (3,) and np.all(norms > np.linalg.norm(up.reshape(3, -1), axis=1))
    restricted = sg.restrict_layers(vec, [1])
    got = np.asarray(sg.layer_norms(restricted))
    assert got[0] == 0 and got[2] == 0 and got[1] == pytest.approx(norms[1], rel=1e-6)


def test_cosines():
    vec = sg.safety_vector(hf_dict(0), hf_dict(1))
    np.testing.assert_allclose(sg.layer_cosines(vec, vec), np.ones(3), rtol=1e-6)
    neg = {p: -v for p, v in vec.items()}
    np.testing.assert_allclose(sg.layer_cosines(vec, neg), -np.ones(3), rtol=1e-6)
    zero_l1 = {p: (v * 0 if ".layers.1." in p else v) for p, v in vec.items()}
    assert float(sg.layer_cosines(vec, zero_l1)[1]) == 0.0
    assert sg.layer_cosines(vec, vec, by_kind=True).shape == (3, 3)


def test_num_layers_and_errors():
    vec = {"layers.1.w": np.ones(2)}
    assert sg.layer_norms(vec, num_layers=4).shape == (4,)
    with pytest.raises(sg.LayerMapError, match="num_layers=1"):
        sg.layer_norms(vec, num_layers=1)
    with pytest.raises(sg.TreeMismatchError, match="different leaves"):
        sg.layer_cosines(vec, {"layers.2.w": np.ones(2)})
    with pytest.raises(sg.TreeMismatchError, match="shape mismatch"):
        sg.layer_cosines(vec, {"layers.1.w": np.ones(3)})

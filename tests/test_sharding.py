"""Transforms on an 8-device CPU mesh keep shardings and compile to programs without collectives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from trees import hf_dict, leaves_equal, stacked_dict

import safegene_jax as sg

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


@pytest.fixture(scope="module")
def mesh(eight_devices):
    return jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)


def shard(tree, mesh):
    def place(x):
        # the last two axes over ("data", "model") where they divide evenly; a stacked layer axis stays whole
        axes = [None] * x.ndim
        for dim, (name, size) in zip(range(x.ndim - 1, max(x.ndim - 3, -1), -1), (("model", 4), ("data", 2))):
            if x.shape[dim] % size == 0:
                axes[dim] = name
        return jax.device_put(x, NamedSharding(mesh, P(*axes)))

    return jax.tree.map(place, tree)


def assert_same_shardings(got, want):
    got, want = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.sharding.is_equivalent_to(w.sharding, w.ndim), (g.sharding, w.sharding)


@pytest.mark.parametrize("make", [hf_dict, stacked_dict])
def test_outputs_keep_input_shardings(mesh, make):
    a, d = shard(make(0), mesh), shard(make(1), mesh)
    tau = sg.safety_vector(a, d)
    a_by_path = dict(zip(*sg.flatten_with_paths(a)[:2]))
    for path, leaf in tau.items():
        assert leaf.sharding.is_equivalent_to(a_by_path[path].sharding, leaf.ndim), path
    out = sg.apply_vector(d, tau, jnp.linspace(0.0, 1.0, 3))
    assert_same_shardings(out, d)
    assert leaves_equal(
        out, sg.apply_vector(make(1), sg.safety_vector(make(0), make(1)), jnp.linspace(0.0, 1.0, 3)), atol=1e-6
    )


@pytest.mark.parametrize("make", [hf_dict, stacked_dict])
def test_compiled_programs_have_no_collectives(mesh, make):
    a, d = shard(make(0), mesh), shard(make(1), mesh)
    tau = sg.safety_vector(a, d)
    extract_hlo = jax.jit(lambda x, y: sg.safety_vector(x, y)).lower(a, d).compile().as_text()
    apply_hlo = jax.jit(lambda p, v, c: sg.apply_vector(p, v, c)).lower(d, tau, jnp.ones(3)).compile().as_text()
    kind_hlo = (
        jax.jit(lambda p, v, c: sg.apply_vector(p, v, c, mask=jnp.array([1.0, 0.0, 1.0])))
        .lower(d, tau, jnp.ones((3, len(sg.MODULE_KINDS))))
        .compile()
        .as_text()
    )
    for name, hlo in (("extract", extract_hlo), ("apply", apply_hlo), ("apply per kind", kind_hlo)):
        assert "fusion" in hlo or "add" in hlo  # it is the real program text
        found = [op for op in COLLECTIVES if op in hlo]
        assert not found, f"{name} program contains {found}"


def test_vector_on_other_devices_is_moved_to_params_sharding(mesh):
    d = shard(hf_dict(1), mesh)
    tau = sg.safety_vector(hf_dict(0), hf_dict(1))  # single device
    out = sg.apply_vector(d, tau, 1.0)
    assert_same_shardings(out, d)
    assert leaves_equal(out, sg.apply_vector(hf_dict(1), tau, 1.0), atol=1e-6)


def test_donate_on_mesh(mesh):
    d = shard(hf_dict(1), mesh)
    tau = sg.safety_vector(shard(hf_dict(0), mesh), d)
    expected = np.asarray(sg.apply_vector(d, tau, 0.5)["model"]["layers"]["2"]["mlp"]["up_proj"]["weight"])
    out = sg.apply_vector(d, tau, 0.5, donate=True)
    assert d["model"]["layers"]["2"]["mlp"]["up_proj"]["weight"].is_deleted()
    np.testing.assert_array_equal(out["model"]["layers"]["2"]["mlp"]["up_proj"]["weight"], expected)
    assert_same_shardings(out, shard(hf_dict(1), mesh))

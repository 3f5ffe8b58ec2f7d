"""Models load directly sharded; the sharded forward matches the unsharded one."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import safegene_jax as sg
from safegene_jax.models import load_model
from safegene_jax.runtime.sharding import make_mesh, param_shardings, shard_params, spec_for

MODELS = pathlib.Path(__file__).parent / "fixtures" / "models"


@pytest.fixture(scope="module")
def mesh(eight_devices):
    return make_mesh(data=2, fsdp=2, tensor=2)


@pytest.mark.parametrize("variant", ["llama", "qwen2"])
def test_sharded_forward_matches(mesh, variant):
    plain = load_model(MODELS / variant)
    sharded = load_model(MODELS / variant, mesh=mesh)
    paths, leaves, _ = sg.flatten_with_paths(sharded.params)
    by_path = dict(zip(paths, leaves))
    assert by_path["model.layers.0.mlp.up_proj.kernel"].sharding.spec == P("fsdp", "tensor")
    assert by_path["model.layers.0.self_attn.o_proj.kernel"].sharding.spec == P("tensor", "fsdp")
    assert by_path["model.norm.weight"].sharding.is_fully_replicated
    assert len(by_path["model.layers.0.mlp.up_proj.kernel"].sharding.device_set) == 8
    ref = np.load(MODELS / variant / "reference.npz")
    tokens, mask = jnp.asarray(ref["tokens"][:2], jnp.int32), jnp.asarray(ref["mask"][:2], jnp.int32)
    from jax.sharding import NamedSharding

    tokens = jax.device_put(tokens, NamedSharding(mesh, P("data")))
    mask = jax.device_put(mask, NamedSharding(mesh, P("data")))
    got = jax.jit(sharded.apply)(sharded.params, tokens, mask)
    want = plain.apply(plain.params, np.asarray(tokens), np.asarray(mask))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_rules_and_mesh_helpers(eight_devices):
    sizes = {"data": 2, "fsdp": 2, "tensor": 2}
    assert spec_for("model.embed_tokens.embedding", (128, 32), sizes) == P("tensor", "fsdp")
    assert spec_for("model.layers.0.self_attn.q_proj.bias", (3,), sizes) == P(None)
    assert spec_for("anything.else", (4, 4), sizes) == P(None, None)
    assert dict(make_mesh(fsdp=-1).shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    with pytest.raises(ValueError, match="needs 6 devices"):
        make_mesh(data=3, fsdp=2, tensor=1)
    with pytest.raises(ValueError, match="at most one"):
        make_mesh(data=-1, fsdp=-1)
    lm = load_model(MODELS / "tied")
    mesh = make_mesh(data=1, fsdp=4, tensor=2)
    placed = shard_params(lm.params, mesh)
    shardings = jax.tree_util.tree_leaves(param_shardings(lm.params, mesh))
    assert all(x.sharding == s for x, s in zip(jax.tree_util.tree_leaves(placed), shardings))

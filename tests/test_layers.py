import numpy as np
import pytest

import safegene_jax as sg
from safegene_jax.core.layers import as_layer_map, layout


@pytest.mark.parametrize(
    "path, layer",
    [
        ("layers.3.attn.q.kernel", 3),
        ("params.layers_3.attn.kernel", 3),
        ("model.layers.12.mlp.up_proj.weight", 12),
        ("transformer.h.7.attn.c_attn.weight", 7),
        ("blocks.0.mlp.fc1.kernel", 0),
        ("model.embed_tokens.weight", None),
        ("model.norm.weight", None),
        ("lm_head.weight", None),
        ("layers_norm.scale", None),
    ],
)
def test_per_index_presets(path, layer):
    assert sg.LayerMap.auto().layer_of(path) == layer
    assert sg.LayerMap.per_index().layer_of(path) == layer


def test_stacked_preset_and_auto():
    assert sg.LayerMap.stacked().layer_of("params.layers.mlp.kernel") == sg.STACKED
    assert sg.LayerMap.stacked().layer_of("params.embed.embedding") is None
    assert sg.LayerMap.auto().layer_of("params.layers.mlp.kernel") == sg.STACKED
    assert sg.LayerMap.per_index().layer_of("params.layers.mlp.kernel") is None


@pytest.mark.parametrize(
    "path, kind",
    [
        ("model.layers.0.self_attn.q_proj.weight", "attn"),
        ("model.layers.0.mlp.down_proj.weight", "mlp"),
        ("model.layers.0.input_layernorm.weight", "other"),
        ("model.layers.0.post_attention_layernorm.weight", "other"),
        ("layers.2.attn.kernel", "attn"),
        ("params.layers_1.mlp.kernel", "mlp"),
    ],
)
def test_module_kind(path, kind):
    assert sg.module_kind(path) == kind


def test_user_callable_and_validation():
    lm = as_layer_map(lambda p: int(p.split("/")[1]) if p.startswith("blk/") else None)
    assert lm.layer_of("blk/4/w") == 4 and lm.layer_of("emb") is None
    with pytest.raises(sg.LayerMapError, match="expected an int"):
        as_layer_map(lambda p: -1).layer_of("x")
    with pytest.raises(sg.LayerMapError, match="kind function"):
        sg.LayerMap(lambda p: 0, kind_fn=lambda p: "conv").kind_of("x")
    with pytest.raises(sg.LayerMapError, match="unknown layer_map"):
        as_layer_map("bogus")
    assert as_layer_map("stacked").layer_of("layers.w.x") == sg.STACKED
    assert as_layer_map("per_index").layer_of("layers.1.w") == 1


def test_custom_layer_map_in_transforms():
    aligned = {"blk/0": {"w": np.ones(2, np.float32)}, "blk/1": {"w": np.ones(2, np.float32)}}
    degraded = {"blk/0": {"w": np.zeros(2, np.float32)}, "blk/1": {"w": np.zeros(2, np.float32)}}
    lm = lambda p: int(p.split(".")[0].split("/")[1]) if p.startswith("blk/") else None  # noqa: E731
    tau = sg.safety_vector(aligned, degraded, layer_map=lm)
    out = sg.apply_vector(degraded, tau, [0.0, 2.0], layer_map=lm)
    assert out["blk/1"]["w"].tolist() == [2.0, 2.0] and out["blk/0"]["w"].tolist() == [0.0, 0.0]


def test_layout_counts_and_errors():
    lay = layout(["layers.0.w", "layers.4.w", "embed"], [(2,), (2,), (3,)])
    assert lay.num_layers == 5 and lay.leaves[2].layer is None
    with pytest.raises(sg.LayerMapError, match="disagree on the layer count"):
        layout(["layers.a.w", "layers.b.w"], [(3, 2), (4, 2)])
    with pytest.raises(sg.LayerMapError, match="scalar"):
        layout(["layers.a.w"], [()])
    with pytest.raises(sg.LayerMapError, match="out of range"):
        sg.layer_mask([5], 3)

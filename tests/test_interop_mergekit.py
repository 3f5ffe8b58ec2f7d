"""The mergekit recipe: real mergekit (on CPU, offline) rebuilds ``adapter.apply`` from the three source models."""

import dataclasses
import pathlib

import jax
import numpy as np
import pytest
import yaml
from gguf_fixture import write_gemma3_gguf
from safetensors.numpy import load_file
from tiny import tiny_model_folder

from safegene_jax.core.errors import ConfigError
from safegene_jax.interop.mergekit_yaml import mergekit_recipe, write_mergekit_recipe
from safegene_jax.method.adapter import SafetyAdapter
from safegene_jax.models import export_hf, load_model
from safegene_jax.models.hf import hf_state_dict

LAYERS = 3


def _perturbed(params, seed: int, scale: float = 0.05):
    keys = iter(jax.random.split(jax.random.key(seed), len(jax.tree_util.tree_leaves(params))))
    return jax.tree.map(lambda x: x + scale * jax.random.normal(next(keys), x.shape, x.dtype), params)


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    """Three tiny float32 models of one family (degraded, aligned and task = perturbed copies) and an adapter."""
    root = tmp_path_factory.mktemp("trio")
    lm = load_model(tiny_model_folder(root / "degraded", layers=LAYERS, seed=0))
    params = {"degraded": lm.split()[1]}
    params["aligned"] = _perturbed(params["degraded"], seed=1)
    params["task"] = _perturbed(params["degraded"], seed=2)
    for name in ("aligned", "task"):
        export_hf(params[name], root / name, config=lm.config, tokenizer=lm.tokenizer)
    folders = {name: root / name for name in params}
    adapter = SafetyAdapter.build(
        params["aligned"],
        params["degraded"],
        [0, 2],
        family="tiny",
        sources={"aligned": str(folders["aligned"]), "degraded": str(folders["degraded"])},
    )
    return {**folders, "params": params, "adapter": adapter}


def _merge(text: str, out: pathlib.Path, monkeypatch) -> dict[str, np.ndarray]:
    mergekit_config = pytest.importorskip("mergekit.config")
    mergekit_merge = pytest.importorskip("mergekit.merge")
    mergekit_options = pytest.importorskip("mergekit.options")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = mergekit_config.MergeConfiguration.model_validate(yaml.safe_load(text))
    options = mergekit_options.MergeOptions(copy_tokenizer=True, write_model_card=False, quiet=True)
    mergekit_merge.run_merge(config, str(out), options)
    tensors = {}
    for f in sorted(out.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def _largest_difference(merged: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    assert set(merged) >= set(expected), sorted(set(expected) - set(merged))
    worst = 0.0
    for name, want in expected.items():
        got = merged[name]
        assert got.shape == want.shape and got.dtype == np.float32, name
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))))
    return worst


def test_mergekit_reproduces_apply_per_layer(trio, tmp_path, monkeypatch):
    adapter = trio["adapter"]
    coeffs = np.array([0.75, 0.0, -1.3], np.float32)
    folder = write_mergekit_recipe(tmp_path / "safe", adapter, coeffs, task_model=str(trio["task"]))
    text = folder.read_text()
    recipe = yaml.safe_load(text)
    assert recipe["merge_method"] == "task_arithmetic" and recipe["base_model"] == str(trio["task"])
    assert recipe["parameters"] == {"normalize": False, "int8_mask": False, "lambda": 1.0}
    assert [m["model"] for m in recipe["models"]] == [str(trio["aligned"]), str(trio["degraded"])]
    weights = recipe["models"][0]["parameters"]["weight"]
    assert weights[-1] == {"value": 0.0} and {w["value"] for w in weights[:-1]} == {0.75, -1.3}
    assert all("layers.1." not in w["filter"] for w in weights[:-1])

    merged = _merge(text, tmp_path / "out", monkeypatch)
    expected = hf_state_dict(adapter.apply(trio["params"]["task"], coeffs))
    worst = _largest_difference(merged, expected)
    print(f"largest |mergekit - adapter.apply| = {worst:.3g}")
    assert worst < 1e-5
    # tensors outside the adapter's layers are the task model's, bit for bit
    task = hf_state_dict(trio["params"]["task"])
    for name in ("model.embed_tokens.weight", "model.norm.weight", "model.layers.1.mlp.up_proj.weight"):
        np.testing.assert_array_equal(merged[name], task[name])
    assert (tmp_path / "out" / "tokenizer.json").exists()


def test_mergekit_partial_leaves_and_per_kind_coefficients(trio, tmp_path, monkeypatch):
    """Tensors the adapter lacks inside a selected layer stay the task's; (L, kinds) coefficients."""
    full = trio["adapter"]
    vector = {p: v for p, v in full.vector.items() if not (p.startswith("model.layers.2.") and "mlp" in p)}
    adapter = dataclasses.replace(full, vector=vector)
    coeffs = np.array([[0.5, -0.25, 2.0], [1.0, 1.0, 1.0], [0.3, 0.9, 1.7]], np.float32)  # attn, mlp, other
    text = mergekit_recipe(adapter, coeffs, task_model=str(trio["task"]))
    merged = _merge(text, tmp_path / "out", monkeypatch)
    expected = hf_state_dict(adapter.apply(trio["params"]["task"], coeffs))
    worst = _largest_difference(merged, expected)
    print(f"largest |mergekit - adapter.apply| = {worst:.3g}")
    assert worst < 1e-5
    task = hf_state_dict(trio["params"]["task"])
    np.testing.assert_array_equal(
        merged["model.layers.2.mlp.down_proj.weight"], task["model.layers.2.mlp.down_proj.weight"]
    )
    assert not np.array_equal(
        merged["model.layers.2.self_attn.q_proj.weight"], task["model.layers.2.self_attn.q_proj.weight"]
    )


def test_recipe_when_the_task_model_is_the_degraded_one(trio):
    text = mergekit_recipe(trio["adapter"], task_model=str(trio["degraded"]))
    recipe = yaml.safe_load(text)
    assert recipe["base_model"] == str(trio["degraded"])
    assert [m["model"] for m in recipe["models"]] == [str(trio["aligned"])]


def test_recipe_values_read_back_as_the_same_float32(trio):
    coeffs = np.array([0.1, 0.0, 1 / 3], np.float32)
    recipe = yaml.safe_load(mergekit_recipe(trio["adapter"], coeffs, task_model="t", out_dtype="bfloat16"))
    assert recipe["out_dtype"] == "bfloat16" and recipe["dtype"] == "float32"
    values = {w["value"] for w in recipe["models"][0]["parameters"]["weight"][:-1]}
    assert values == {0.1, float(np.format_float_positional(np.float32(1 / 3), unique=True))}
    assert {np.float32(v) for v in values} == {np.float32(0.1), np.float32(1 / 3)}


@pytest.mark.parametrize(
    ("coeffs", "kwargs", "message"),
    [
        ([1.0, 2.0], {}, r"coeffs has shape \(2,\) but the adapter's model has 3 layers"),
        ([1.0, np.nan, 0.0], {}, "non-finite"),
        ([1.0, 0.0, 1e39], {}, "non-finite"),
        ("abc", {}, "coeffs: expected numbers"),
        (None, {"aligned": "same", "degraded": "same"}, "aligned and degraded are the same model"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(trio, tmp_path, coeffs, kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        write_mergekit_recipe(tmp_path / "safe", trio["adapter"], coeffs, task_model="t", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "safe").exists()


def test_missing_sources_and_low_rank_are_refused(trio, tmp_path):
    bare = dataclasses.replace(trio["adapter"], metadata={**trio["adapter"].metadata, "sources": {}})
    with pytest.raises(ConfigError, match="no aligned model; pass aligned="):
        mergekit_recipe(bare, task_model="t")
    params = trio["params"]
    compact = SafetyAdapter.build(
        params["aligned"], params["degraded"], [0], rank=2, sources={"aligned": "a", "degraded": "d"}
    )
    with pytest.raises(ConfigError, match="low-rank"):
        mergekit_recipe(compact, task_model="t")


# ---- Gemma 3 ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma_trio(tmp_path_factory):
    """Three tiny Gemma 3 models (six layers: five local, one global; Gemma's tokenizer) and an adapter on a local
    and the global layer."""
    root = tmp_path_factory.mktemp("gemma-trio")
    write_gemma3_gguf(root / "source.gguf")
    lm = load_model(root / "source.gguf")
    params = {"degraded": lm.split()[1]}
    params["aligned"] = _perturbed(params["degraded"], seed=1)
    params["task"] = _perturbed(params["degraded"], seed=2)
    for name in params:
        export_hf(params[name], root / name, config=lm.config, tokenizer=lm.tokenizer)
    folders = {name: root / name for name in params}
    adapter = SafetyAdapter.build(
        params["aligned"],
        params["degraded"],
        [0, 5],
        family="tiny-gemma",
        sources={"aligned": str(folders["aligned"]), "degraded": str(folders["degraded"])},
    )
    return {**folders, "params": params, "adapter": adapter}


def test_mergekit_reproduces_apply_on_gemma3(gemma_trio, tmp_path, monkeypatch):
    """mergekit knows Gemma3ForCausalLM: q/k norms and the pre/post-MLP norms are merged per tensor like the rest."""
    adapter = gemma_trio["adapter"]
    coeffs = np.array([[0.75, -0.5, 1.25], *[[0.0] * 3] * 4, [-1.3, 0.4, 2.0]], np.float32)  # per layer and kind
    text = mergekit_recipe(adapter, coeffs, task_model=str(gemma_trio["task"]))
    filters = {w["filter"] for w in yaml.safe_load(text)["models"][0]["parameters"]["weight"][:-1]}
    assert {"model.layers.5.self_attn.q_norm.weight", "model.layers.0.pre_feedforward_layernorm.weight"} <= filters
    merged = _merge(text, tmp_path / "out", monkeypatch)
    expected = hf_state_dict(adapter.apply(gemma_trio["params"]["task"], coeffs))
    worst = _largest_difference(merged, expected)
    print(f"largest |mergekit - adapter.apply| on Gemma 3 = {worst:.3g}")
    assert worst < 1e-5
    task = hf_state_dict(gemma_trio["params"]["task"])
    for name in ("model.embed_tokens.weight", "model.norm.weight", "model.layers.3.self_attn.k_norm.weight"):
        np.testing.assert_array_equal(merged[name], task[name])
    safe = load_model(tmp_path / "out")
    assert safe.config.model_type == "gemma3_text" and safe.tokenizer.encode("hello world") == [2, 29, 34]

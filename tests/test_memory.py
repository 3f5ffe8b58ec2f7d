"""The memory estimate, and the estimates written in the TPU configs are the current ones."""

import pathlib
import re

import pytest

from safegene_jax.pipeline.config import load_config
from safegene_jax.pipeline.memory import LLAMA3_8B, estimate, param_count, report

CONFIGS = pathlib.Path(__file__).parent.parent / "configs"


def test_param_count_matches_known_models():
    assert param_count(LLAMA3_8B) == 8_030_261_248  # Llama-3-8B
    smollm = {
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "tie_word_embeddings": True,
    }
    assert param_count(smollm) == 134_515_008  # SmolLM2-135M


def test_lora_needs_less_than_full_training_and_more_devices_less_each():
    full = load_config(overrides=["align.lora=null"])
    lora = load_config(overrides=["align.lora={rank: 16}"])
    assert estimate(LLAMA3_8B, lora, 8)["align"] < estimate(LLAMA3_8B, full, 8)["align"]
    assert estimate(LLAMA3_8B, full, 8)["select"] == pytest.approx(estimate(LLAMA3_8B, full, 4)["select"] / 2)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("llama3-8b-*.yaml")), ids=lambda p: p.name)
def test_tpu_config_estimates_are_current(path):
    text = path.read_text()
    devices = int(re.search(r"per device \((\d+) devices", text).group(1))
    cfg = load_config(path)
    assert report(LLAMA3_8B, cfg, devices) in text, "rerun the estimate and paste it into the config"
    assert cfg.mesh.enabled and cfg.mesh.fsdp * cfg.mesh.tensor * cfg.mesh.data == devices
    hbm = {8: 16, 4: 32}[devices]
    assert max(v for k, v in estimate(LLAMA3_8B, cfg, devices).items() if k != "params_gib") < 0.8 * hbm


def test_the_command_fixes_the_mmap_threshold(monkeypatch):
    import sys

    from safegene_jax.runtime.host_memory import release_freed_memory

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert release_freed_memory() is sys.platform.startswith("linux")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")  # glibc's own setting wins
    assert release_freed_memory() is False

"""The interchange commands: apply's model card and mergekit recipe, export-peft, export-gguf, push, export."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from tiny import tiny_model_folder

from safegene_jax.pipeline.cli import main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    aligned = tiny_model_folder(root / "aligned", layers=3, seed=0)
    degraded = tiny_model_folder(root / "degraded", layers=3, seed=1)
    task = tiny_model_folder(root / "task", layers=3, seed=2)
    adapter = root / "adapter"
    args = ["extract", "--aligned", str(aligned), "--degraded", str(degraded), "--out", str(adapter)]
    assert main([*args, "--layers", "0,2", "--family", "tiny"]) == 0
    return {"aligned": aligned, "degraded": degraded, "task": task, "adapter": adapter}


def _front(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def _fails(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_apply_writes_a_card_and_a_mergekit_recipe(models, tmp_path, capsys):
    out = tmp_path / "safe"
    assert main(["apply", "--model", str(models["task"]), "--adapter", str(models["adapter"]), "--out", str(out)]) == 0
    assert "mergekit recipe:" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    front = _front(card)
    assert front["library_name"] == "transformers" and "safegene" in front["tags"]
    assert "base_model" not in front and "license" not in front  # a local task model, which declares none
    assert "safegene apply --model" in card and "| 0 | 1.0 |" in card and "| 2 | 1.0 |" in card
    recipe = yaml.safe_load((out / "mergekit.yaml").read_text())
    assert recipe["merge_method"] == "task_arithmetic" and recipe["base_model"] == str(models["task"].resolve())
    assert {m["model"] for m in recipe["models"]} == {
        str(models["aligned"].resolve()),
        str(models["degraded"].resolve()),
    }


def test_apply_says_why_there_is_no_recipe(models, tmp_path, capsys):
    from safegene_jax.method.adapter import SafetyAdapter

    adapter = SafetyAdapter.load(models["adapter"])
    adapter.metadata["sources"] = {"aligned": "smollm2-135m-instruct", "degraded": str(models["degraded"])}
    adapter.save(tmp_path / "adapter")
    out = tmp_path / "safe"
    assert (
        main(["apply", "--model", str(models["task"]), "--adapter", str(tmp_path / "adapter"), "--out", str(out)]) == 0
    )
    assert "no mergekit recipe: the aligned model 'smollm2-135m-instruct' is not a Hugging Face folder" in (
        capsys.readouterr().out
    )
    assert (out / "README.md").is_file() and not (out / "mergekit.yaml").exists()


def test_export_peft_command(models, tmp_path, capsys):
    out = tmp_path / "peft"
    args = ["export-peft", "--adapter", str(models["adapter"]), "--out", str(out), "--rank", "4"]
    assert main([*args, "--base-model", "me/tiny-task"]) == 0
    assert "rank 4" in capsys.readouterr().out
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == "me/tiny-task"
    front = _front((out / "README.md").read_text())
    assert front["library_name"] == "peft" and front["base_model"] == "me/tiny-task"
    assert (out / "adapter_model.safetensors").is_file()

    bad = tmp_path / "bad"
    _fails(capsys, ["export-peft", "--adapter", str(models["adapter"]), "--out", str(bad), "--rank", "0"], "rank")
    _fails(
        capsys,
        ["export-peft", "--adapter", str(models["adapter"]), "--out", str(bad), "--norms", "modules_to_save"],
        "--norms modules_to_save: needs --model",
    )
    _fails(capsys, ["export-peft", "--adapter", str(tmp_path / "none"), "--out", str(bad)], "no adapter at")
    assert not bad.exists()


def test_export_gguf_command(models, tmp_path, capsys):
    import numpy as np

    from safegene_jax.models import load_model

    out = tmp_path / "task.gguf"
    assert main(["export-gguf", str(models["task"]), str(out), "--type", "q8_0"]) == 0
    assert "Q8_0" in capsys.readouterr().out
    back, src = load_model(out), load_model(models["task"])
    ids = np.array([[1, 5, 9, 30, 2]])
    np.testing.assert_allclose(back.apply(back.params, ids), src.apply(src.params, ids), atol=0.05)
    # checked before the model is loaded: a missing model is not what is reported
    _fails(capsys, ["export-gguf", str(tmp_path / "missing"), str(tmp_path / "x.gguf"), "--type", "Q4_K"], "Q4_K")
    _fails(capsys, ["export-gguf", str(models["task"]), str(tmp_path / "no" / "x.gguf")], "does not exist")
    assert not (tmp_path / "x.gguf").exists()


def test_export_writes_a_card(models, tmp_path):
    out = tmp_path / "exported"
    assert main(["export", str(models["task"]), str(out)]) == 0
    card = (out / "README.md").read_text()
    assert _front(card)["library_name"] == "transformers" and "safegene export" in card


def test_push_rejects_bad_input_before_any_network(models, tmp_path, capsys):
    _fails(capsys, ["push", str(models["task"]), "not-an-id"], "not-an-id")
    _fails(capsys, ["push", str(tmp_path / "missing"), "me/tiny"], "not a folder")


def test_push_offline_is_one_line(models, tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_TOKEN": "hf_fake",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "safegene_jax.pipeline.cli", "push", str(models["task"]), "me/tiny-safe"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("safegene")]
    assert len(lines) == 1 and "offline" in lines[0].lower() and "Traceback" not in proc.stderr

"""The model card: Hub front matter that parses (also with huggingface_hub), the facts, the command and the table."""

import os
import stat

import numpy as np
import pytest
import yaml

from safegene_jax.core.errors import ConfigError
from safegene_jax.core.files import current_umask
from safegene_jax.interop.hub_card import model_card, write_model_card
from safegene_jax.method.adapter import SafetyAdapter

TABLE = "| model | refusal | accuracy |\n|---|---|---|\n| task | 0.12 | 0.81 |\n| safe | 0.93 | 0.80 |"
COMMAND = "safegene run configs/demo.yaml out=runs/demo"


@pytest.fixture(scope="module")
def adapter():
    rng = np.random.default_rng(0)
    leaves = {f"model.layers.{i}.mlp.up_proj.kernel": rng.normal(size=(4, 8)).astype(np.float32) for i in range(4)}
    degraded = {k: v + 0.1 for k, v in leaves.items()}
    return SafetyAdapter.build(
        leaves,
        degraded,
        [1, 3],
        family="smollm2-135m",
        sources={"aligned": "runs/demo/aligned", "degraded": "runs/demo/degraded"},
    )


def _split(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    head, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_front_matter_and_sections(adapter):
    coeffs = np.array([0.0, 0.75, 0.0, -0.3], np.float32)
    card = model_card(
        adapter,
        coeffs,
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
        command=COMMAND,
        evaluation=TABLE,
        repo_id="me/smollm2-safe",
        tags=["smollm2", "safety"],
    )
    front, body = _split(card)
    assert front == {
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "license": "apache-2.0",
        "tags": ["safegene", "safety", "safety-alignment", "task-vector", "smollm2"],
    }
    assert "# smollm2-135m with safety restored" in body
    assert "| Layers | 1, 3 (of 4) |" in body and "| Safety vector | dense |" in body
    assert "| Aligned model | runs/demo/aligned |" in body and "| Degraded model | runs/demo/degraded |" in body
    assert "| 1 | 0.75 |" in body and "| 3 | -0.3 |" in body and "| 0 |" not in body
    assert f"```bash\n{COMMAND}\n```" in body
    assert "## Evaluation\n\n" + TABLE in body
    assert 'from_pretrained("me/smollm2-safe")' in body
    assert card == model_card(
        adapter,
        coeffs,
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
        command=COMMAND,
        evaluation=TABLE,
        repo_id="me/smollm2-safe",
        tags=["smollm2", "safety"],
    ), "a pure function of its inputs"


def test_huggingface_hub_reads_the_card(adapter):
    card = pytest.importorskip("huggingface_hub").ModelCard(
        model_card(adapter, base_model=["me/task", "me/aligned"], license="llama3.2")
    )
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["license"] == "llama3.2"
    assert data["base_model"] == ["me/task", "me/aligned"] and "safegene" in data["tags"]


def test_optional_fields_left_out(adapter):
    front, body = _split(model_card(adapter))
    assert "license" not in front and "base_model" not in front
    assert "## Evaluation" not in body and "## Reproduce" not in body
    assert "| 1 | 1.0 |" in body and "| 3 | 1.0 |" in body  # the adapter's default coefficients
    assert 'from_pretrained("path/to/this/folder")' in body


def test_per_kind_coefficients_and_escaping(adapter):
    coeffs = np.ones((4, 3), np.float32) * np.float32(0.1)
    body = _split(model_card(adapter, coeffs, task_model="runs/a|b", title="Tiny | safe"))[1]
    assert "| Layer | attn | mlp | other |" in body and "| 1 | 0.1 | 0.1 | 0.1 |" in body
    assert "| Task model | runs/a\\|b |" in body and body.startswith("\n# Tiny | safe")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_model": "runs/demo/task/"}, "base_model: 'runs/demo/task/' is not a Hub model id"),
        ({"base_model": "/abs/task"}, "is not a Hub model id"),
        ({"repo_id": "nope"}, "is not a Hub model id"),
        ({"license": " "}, "license: an empty string"),
        ({"coeffs": [1.0, 2.0]}, r"coeffs has shape \(2,\)"),
        ({"coeffs": [1.0, np.inf, 0.0, 0.0]}, "non-finite"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(adapter, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        write_model_card(tmp_path / "safe", adapter, **kwargs)
    assert "\n" not in str(info.value) and not (tmp_path / "safe").exists()


def test_write_model_card_replaces_atomically(adapter, tmp_path):
    folder = tmp_path / "safe"
    folder.mkdir()
    (folder / "README.md").write_text("old")
    path = write_model_card(folder, adapter, evaluation=TABLE)
    assert path == folder / "README.md" and TABLE in path.read_text()
    assert sorted(os.listdir(folder)) == ["README.md"], "no temporary file left behind"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask()

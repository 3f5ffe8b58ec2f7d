import subprocess
import sys

import pytest

from safegene_jax import __version__
from safegene_jax.cli import main


def test_demo_finds_planted_layers(capsys):
    assert main(["demo", "--layers", "6", "--rank", "2"]) == 0
    out = capsys.readouterr().out
    assert "planted safety direction (rank 1, norm 0.5) in layers [2, 3, 4]" in out
    assert "top-3 layers by norm: [2, 3, 4] (match the planted ones)" in out
    assert "of the energy retained" in out


def test_version_and_help():
    proc = subprocess.run([sys.executable, "-m", "safegene_jax.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "safegene_jax.cli", "demo", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--layers" in proc.stdout


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_bad_arguments_rejected(capsys):
    with pytest.raises(SystemExit) as err:
        main(["demo", "--layers", "2"])
    assert err.value.code == 2 and "--layers must be at least 3" in capsys.readouterr().err

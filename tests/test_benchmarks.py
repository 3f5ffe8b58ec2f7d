"""The benchmark scripts stay runnable: every name they import from the package exists, every script
parses its options, and the shared harness builds its batches. (The benchmarks themselves are timed runs
on real models; they are not run here.)"""

from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

BENCH = pathlib.Path(__file__).parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "harness.py")


def _package_imports(path: pathlib.Path) -> list[tuple[str, str | None]]:
    """``(module, name)`` for each ``from safegene_jax... import name`` and ``import safegene_jax...`` in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("safegene_jax"):
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.startswith("safegene_jax")]
    return out


@pytest.mark.parametrize("path", [*SCRIPTS, BENCH / "harness.py"], ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_exists(path):
    for module, name in _package_imports(path):
        mod = importlib.import_module(module)
        if name is not None and not hasattr(mod, name):
            importlib.import_module(f"{module}.{name}")  # a submodule; raises if it is not one either


def test_every_benchmark_parses_its_options():
    for path in SCRIPTS:
        done = subprocess.run([sys.executable, str(path), "--help"], cwd=BENCH, capture_output=True, text=True)
        assert done.returncode == 0, f"{path.name}: {done.stderr[-500:]}"
        assert "usage:" in done.stdout


def test_the_harness_builds_embedded_probe_and_fewshot_batches(monkeypatch):
    from tiny import TOKENIZER

    monkeypatch.syspath_prepend(str(BENCH))
    from harness import embedded_batches

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER))
    for split in ("probe", "fewshot"):
        harmful, benign = embedded_batches(tok, split, 3, 1024)  # the fixture tokenizer's sequences are long
        assert harmful["tokens"].shape[0] == benign["tokens"].shape[0] == 3
        assert harmful["tokens"].shape[1] <= 1024 and harmful["loss_mask"].sum() > 0 and benign["loss_mask"].sum() > 0

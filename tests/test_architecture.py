"""The package's shape: imports point down the layers, the public API is stable, names never collide."""

import ast
import importlib
import json
import pathlib
import pkgutil
import subprocess
import sys
import types

import pytest

import safegene_jax as sg

ROOT = pathlib.Path(sg.__file__).parent

# which sub-packages each layer may import (the top-level API and _version anywhere above the core)
ALLOWED = {
    "core": set(),
    "runtime": {"core"},
    "store": {"core"},
    "models": {"core", "runtime"},
    "data": {"core"},
    "method": {"core", "runtime", "store", "_version"},
    "train": {"core", "runtime", "store", "models", "data"},
    "eval": {"core", "models", "data"},
    "interop": {"core", "runtime", "store", "models", "method", "_version"},
    "pipeline": {
        "core",
        "runtime",
        "store",
        "models",
        "data",
        "method",
        "train",
        "eval",
        "interop",
        "_version",
        "<top>",
    },
}


def _imports(path: pathlib.Path) -> set[str]:
    """The sub-packages of safegene_jax a file imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "safegene_jax":
                out.add(parts[1] if len(parts) > 1 else "<top>")
    return out


def test_imports_point_down_the_layers():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).parts
        if len(rel) == 1:
            continue  # the top-level API and _version
        layer = rel[0]
        assert layer in ALLOWED, f"{layer}/ is not a known layer; add it to ALLOWED"
        for target in _imports(path) - {layer}:
            if target not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_method_loads_without_tfds_training_or_data():
    """A Flax user importing the core and the method (and the public names they need) gets no TFDS, no data
    builders and no training code; the core and the method load no Orbax either."""
    code = (
        "import sys, json\n"
        "import safegene_jax.core, safegene_jax.core.losses\n"
        "import safegene_jax.method.selection, safegene_jax.method.recalibration, safegene_jax.method.baselines\n"
        "after_method = sorted(m for m in sys.modules if m.startswith(('orbax', 'tensorflow')))\n"
        "import safegene_jax as sg\n"
        "for name in ('safety_vector', 'apply_vector', 'restrict_layers', 'score_layers', 'select', 'recalibrate',\n"
        "             'fit_coefficients', 'SafetyAdapter', 'resta', 'safe_lora', 'task_arithmetic', 'load_model',\n"
        "             'export_hf'):\n"
        "    getattr(sg, name)\n"
        "print(json.dumps({'after_method': after_method, 'modules': sorted(sys.modules)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert loaded["after_method"] == [], loaded["after_method"]
    modules = set(loaded["modules"])
    for unwanted in ("tensorflow_datasets", "tensorflow", "safegene_jax.data.builders", "safegene_jax.train"):
        assert unwanted not in modules, f"{unwanted} was imported"
    assert not any(m.startswith("orbax") for m in modules), "Orbax loads only when an adapter is saved or loaded"


def test_every_public_name_is_the_same_object_twice_and_not_a_module():
    import safegene_jax.method.recalibration  # noqa: F401 - the submodule that once shadowed the function
    import safegene_jax.pipeline.runner  # noqa: F401

    for name in sg.__all__:
        first, second = getattr(sg, name), getattr(sg, name)
        assert first is second, name
        assert not isinstance(first, types.ModuleType), f"sg.{name} is a module"
    assert callable(sg.recalibrate) and sg.recalibrate.__module__ == "safegene_jax.method.recalibration"
    assert set(sg.__all__) <= set(dir(sg))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sg.nope  # noqa: B018


def _packages():
    yield sg
    for info in pkgutil.walk_packages(sg.__path__, "safegene_jax."):
        if info.ispkg:
            yield importlib.import_module(info.name)


@pytest.mark.parametrize("package", list(_packages()), ids=lambda p: p.__name__)
def test_no_public_name_equals_a_submodule_name(package):
    submodules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    exported = set(getattr(package, "__all__", ()))
    assert exported, f"{package.__name__} declares no __all__"
    assert not exported & submodules, f"{package.__name__} exports {exported & submodules}, also its submodules"
    for name in exported:
        assert not isinstance(getattr(package, name), types.ModuleType), f"{package.__name__}.{name}"


def test_one_error_channel():
    """Every error class the library defines is a SafeGeneError, and all live in core.errors."""
    from safegene_jax.core import errors

    defined = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                defined.append((path.relative_to(ROOT).as_posix(), node.name))
    assert {p for p, _ in defined} == {"core/errors.py"}, defined
    for _, name in defined:
        assert issubclass(getattr(errors, name), sg.SafeGeneError), name
        assert getattr(sg, name) is getattr(errors, name), f"{name} is not in the public API"

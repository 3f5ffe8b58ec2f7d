"""Writes that never lose the previous result, destinations that are someone else's, damaged data refused."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from tiny import tiny_model_folder

from safegene_jax.core.errors import CheckpointError, ConfigError
from safegene_jax.core.files import MARKER, leftovers, recover, write_folder
from safegene_jax.pipeline.cli import main
from safegene_jax.store.trees import restore_tree, save_tree

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _snapshot(folder: pathlib.Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_of_someone_else_is_never_replaced(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="was not written by safegene_jax.*--overwrite"):
        write_folder(mine, lambda tmp: (tmp / "a").write_text("x"))
    with pytest.raises(ConfigError, match="was not written by safegene_jax"):
        save_tree(mine, {"w": np.ones(3, np.float32)})
    assert _snapshot(mine) == {"notes.txt": b"keep me"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        save_tree(tmp_path / "file", {"w": np.ones(3, np.float32)})
    assert (tmp_path / "file").read_text() == "x"
    # with overwrite, replaced whole; then it is ours and replaced without asking
    write_folder(mine, lambda tmp: (tmp / "a").write_text("x"), overwrite=True)
    assert sorted(p.name for p in mine.iterdir()) == [MARKER, "a"]
    write_folder(mine, lambda tmp: (tmp / "b").write_text("y"))
    assert sorted(p.name for p in mine.iterdir()) == [MARKER, "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine"]  # no leftovers


def test_a_failed_write_keeps_the_previous_folder(tmp_path):
    dest = tmp_path / "out"
    write_folder(dest, lambda tmp: (tmp / "v").write_text("1"))

    def broken(tmp):
        (tmp / "v").write_text("2")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_folder(dest, broken)
    assert (dest / "v").read_text() == "1" and leftovers(dest) == []


def test_leftovers_of_a_killed_swap_are_recovered(tmp_path):
    """Killed between the two renames of the fallback swap: the old copy is put back, the rest removed."""
    dest = tmp_path / "out"
    write_folder(dest, lambda tmp: (tmp / "v").write_text("1"))
    holder = tmp_path / ".out.old-abc123"
    holder.mkdir()
    dest.rename(holder / "old")
    (tmp_path / ".out.tmp-xyz").mkdir()
    recover(dest)
    assert (dest / "v").read_text() == "1" and leftovers(dest) == []


CHILD = """
import pathlib, sys, numpy as np
sys.path.insert(0, {tests!r})
from tiny import tiny_model_folder
from safegene_jax.store.trees import save_tree
kind, dest = sys.argv[1], pathlib.Path(sys.argv[2])
for k in range(1, 10_000):
    if kind == "tree":
        save_tree(dest, {{"w": np.full(400_000, k, np.float32)}}, {{"k": k}})
    else:
        tiny_model_folder(dest, layers=2, seed=k)
    if k == 1:
        print("ready", flush=True)  # imports done and one write made: the kills land inside writes
"""


@pytest.mark.parametrize("kind", ["tree", "hf"])
def test_killed_writers_leave_the_previous_output_whole(tmp_path, tmp_path_factory, kind):
    """A writer killed (SIGKILL) at several points: the destination is always a complete earlier or later
    version, and the next write leaves no orphan."""
    from safegene_jax.models import load_model

    dest = tmp_path / "out"
    if kind == "tree":
        save_tree(dest, {"w": np.zeros(400_000, np.float32)}, {"k": 0})
    else:
        tiny_model_folder(dest, layers=2, seed=0)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(ROOT / "tests")))
    # its own compilation cache: a child killed while JAX writes a cache entry leaves it truncated (JAX writes
    # entries in place), and other processes reading the suite's cache would warn about it on stderr
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("xla"))
    for delay in (0.05, 0.13, 0.31, 0.57):
        proc = subprocess.Popen(
            [sys.executable, str(script), kind, str(dest)], stdout=subprocess.PIPE, env=env, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if kind == "tree":
            tree, meta = restore_tree(dest)
            assert float(np.asarray(tree["w"])[0]) == meta["k"]  # one whole version
        else:
            lm = load_model(dest)
            assert lm.config.num_hidden_layers == 2
    if kind == "tree":
        save_tree(dest, {"w": np.ones(3, np.float32)})
    else:
        tiny_model_folder(dest, layers=2, seed=99)
    assert leftovers(dest) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["child.py", "out"]


def test_a_damaged_adapter_is_refused(tmp_path):
    from safegene_jax.method.adapter import SafetyAdapter

    a, d = tiny_model_folder(tmp_path / "a", seed=0), tiny_model_folder(tmp_path / "d", seed=1)
    assert main(["extract", "--aligned", str(a), "--degraded", str(d), "--out", str(tmp_path / "ad")]) == 0
    SafetyAdapter.load(tmp_path / "ad")  # whole: loads
    # the metadata edited by hand
    meta_file = tmp_path / "ad" / "meta" / "metadata"
    text = meta_file.read_text()
    meta_file.write_text(text.replace('"layers": [0, 1]', '"layers": [0]'))
    with pytest.raises(CheckpointError, match="metadata does not match its checksum"):
        SafetyAdapter.load(tmp_path / "ad")
    meta_file.write_text(text)
    # 100 flipped bytes in the largest data file
    data = max((p for p in (tmp_path / "ad").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.choice(len(raw) - 64, 100, replace=False) + 32:
        raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=str(tmp_path / "ad")):
        SafetyAdapter.load(tmp_path / "ad")
    out = tmp_path / "safe"
    assert main(["apply", "--model", str(d), "--adapter", str(tmp_path / "ad"), "--out", str(out)]) == 2
    assert not out.exists()


def test_reads_abandoned_by_a_failed_restore_are_quieted_from_its_start(tmp_path, monkeypatch):
    """TensorStore's callbacks can report Orbax's closed event loop while a failed restore is still unwinding:
    the filter is in place before Orbax is called; it drops only those reports (and Orbax's abandoned reads),
    during a restore and after a failed one, never after restores that all succeeded."""
    import sys
    import types

    import orbax.checkpoint as ocp

    from safegene_jax.store import trees

    def report(obj, exc):
        return types.SimpleNamespace(object=obj, exc_value=exc, exc_type=type(exc), exc_traceback=None, err_msg=None)

    async def read():  # a coroutine of Orbax's, as the interpreter reports an abandoned one
        pass

    read.__code__ = read.__code__.replace(co_filename="/site-packages/orbax/checkpoint/serialization.py")
    abandoned = read()
    abandoned.close()
    closed, other = report(None, RuntimeError("Event loop is closed")), report(None, RuntimeError("something else"))
    orbax_read = report(abandoned, ValueError("FAILED_PRECONDITION"))

    save_tree(tmp_path / "ck", {"w": np.ones(3, np.float32)})
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    monkeypatch.setattr(trees, "ABANDONED", [])
    restore_tree(tmp_path / "ck")  # whole: the filter is installed and lets every report through
    assert getattr(sys.unraisablehook, "quiets_abandoned_reads", False)
    sys.unraisablehook(closed)
    assert seen == [closed]

    hooked = []

    class Failing:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def restore(self, *args, **kwargs):
            seen.clear()
            sys.unraisablehook(closed)  # a callback that fires while the restore runs
            hooked.append(list(seen))
            raise ValueError("FAILED_PRECONDITION: ZSTD_decompressStream() failed")

    monkeypatch.setattr(ocp, "Checkpointer", Failing)
    with pytest.raises(CheckpointError, match="cannot be read, damaged or incomplete .*ZSTD"):
        restore_tree(tmp_path / "ck")
    assert hooked == [[]], "a closed-loop report during the restore was not dropped"
    assert trees.ABANDONED == [(tmp_path / "ck").absolute()]
    for r in (closed, other, orbax_read):
        sys.unraisablehook(r)
    assert seen == [other]


def test_cli_outputs_are_checked_before_any_work(tmp_path, capsys):
    a = tiny_model_folder(tmp_path / "a", seed=0)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "data.csv").write_text("1,2\n")
    (tmp_path / "plain").write_text("x")

    def fails(args, message):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err

    fails(["export", str(a), str(theirs)], "was not written by safegene_jax")
    fails(["extract", "--aligned", str(a), "--degraded", str(a), "--out", str(tmp_path / "plain")], "is a file")
    fails(["apply", "--model", str(a), "--adapter", str(tmp_path / "none"), "--out", str(theirs)], "not written")
    fails(["align", "--out", str(theirs), "tiny.enabled=true"], "was not written by safegene_jax")
    assert _snapshot(theirs) == {"data.csv": b"1,2\n"} and (tmp_path / "plain").read_text() == "x"
    assert main(["export", str(a), str(theirs), "--overwrite"]) == 0
    assert (theirs / "config.json").is_file() and not (theirs / "data.csv").exists()
    assert main(["export", str(a), str(theirs)]) == 0  # ours now: replaced without asking


def test_coefficients_scales_and_weights_are_checked_where_they_enter(tmp_path, capsys):
    import json

    from safetensors.numpy import load_file, save_file

    a, d = tiny_model_folder(tmp_path / "a", seed=0), tiny_model_folder(tmp_path / "d", seed=1)
    assert main(["extract", "--aligned", str(a), "--degraded", str(d), "--out", str(tmp_path / "ad")]) == 0
    capsys.readouterr()
    apply = ["apply", "--model", str(d), "--adapter", str(tmp_path / "ad")]

    def fails(args, message):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err

    for values, message in [([1e38, 1.0], "outside [0, 10]"), ([-0.5, 1.0], "outside [0, 10]")]:
        (tmp_path / "c.json").write_text(json.dumps({"coeffs": values}))
        fails([*apply, "--coeffs", str(tmp_path / "c.json"), "--out", str(tmp_path / "o")], message)
    for scale in ("-5", "nan", "0", "100"):
        fails([*apply, "--scale", scale, "--out", str(tmp_path / "o")], "--scale must be in (0, 10]")
    # NaN in the task model's own weights: refused unless --allow-nonfinite
    weights = load_file(str(d / "model.safetensors"))
    name = next(n for n in weights if "mlp.down_proj" in n)
    weights[name][0, 0] = np.nan
    save_file(weights, str(d / "model.safetensors"), metadata={"format": "pt"})
    fails([*apply, "--out", str(tmp_path / "o")], "pass --allow-nonfinite")
    assert not (tmp_path / "o").exists()
    assert main([*apply, "--out", str(tmp_path / "o"), "--allow-nonfinite"]) == 0
    extract = ["extract", "--aligned", str(a), "--degraded", str(d), "--out", str(tmp_path / "ad2")]
    fails(extract, "pass --allow-nonfinite")  # the library's check_finite=False, as the command spells it
    assert not (tmp_path / "ad2").exists()
    assert main([*extract, "--allow-nonfinite"]) == 0


def test_an_unwritable_destination_fails_before_any_work(tmp_path, monkeypatch, capsys):
    """Found before the models load (the tests run as root, who may write anywhere: os.access is stubbed)."""
    a = tiny_model_folder(tmp_path / "a", seed=0)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if pathlib.Path(p) == locked else real(p, mode))
    assert main(["export", str(a), str(locked / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no permission to write in {locked}" in err and len(err.strip().splitlines()) == 1
    assert list(locked.iterdir()) == []
    (tmp_path / "f").write_text("x")
    assert main(["export", str(a), str(tmp_path / "f" / "out")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err

"""Remote paths (gs://) through etils.epath: inputs read from a local copy, outputs published whole, a
pipeline run mirrored to the bucket; the bucket is a temporary folder behind fsspec (tests/bucket.py)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from safegene_jax.core import storage
from safegene_jax.core.errors import ConfigError
from safegene_jax.core.files import MARKER, write_folder, write_text
from safegene_jax.pipeline.cli import main


def test_schemes():
    assert storage.scheme("gs://b/x") == "gs" and storage.scheme("runs/x") == ""
    assert storage.is_remote("s3://b/k") and not storage.is_remote("runs/x") and not storage.is_remote("file://runs/x")
    assert storage.local_path("file://runs/a") == pathlib.Path("runs/a")


def test_a_scheme_without_backend_is_named():
    with pytest.raises(ConfigError, match=r"--out ftp://h/x: no backend reads ftp:// paths"):
        storage.check_scheme("ftp://h/x", "--out")
    if importlib.util.find_spec("s3fs") is None:
        with pytest.raises(ConfigError, match=r"s3:// paths need the s3fs package.*pip install s3fs"):
            storage.check_scheme("s3://bucket/model", "--model")
    storage.check_scheme("runs/local", "--out")  # local paths pass


def test_write_folder_to_the_bucket_replaces_whole(bucket):
    out = write_folder("gs://b/m", lambda tmp: (tmp / "a.txt").write_text("one"))
    assert str(out) == "gs://b/m"
    assert (bucket / "b" / "m" / "a.txt").read_text() == "one" and (bucket / "b" / "m" / MARKER).is_file()

    def broken(tmp):
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_folder("gs://b/m", broken)
    assert (bucket / "b" / "m" / "a.txt").read_text() == "one"  # the old version is whole
    write_folder("gs://b/m", lambda tmp: (tmp / "b.txt").write_text("two"))
    assert sorted(p.name for p in (bucket / "b" / "m").iterdir()) == [MARKER, "b.txt"]
    assert sorted(p.name for p in (bucket / "b").iterdir()) == ["m"]  # no upload folder left behind

    # a folder there that the library did not write is refused before any work
    (bucket / "b" / "theirs").mkdir()
    (bucket / "b" / "theirs" / "x").write_text("keep")
    with pytest.raises(ConfigError, match="gs://b/theirs exists and was not written by safegene_jax"):
        write_folder("gs://b/theirs", lambda tmp: pytest.fail("filled"))
    assert (bucket / "b" / "theirs" / "x").read_text() == "keep"


def test_a_killed_upload_is_cleaned_and_the_old_version_put_back(bucket):
    write_folder("gs://b/m", lambda tmp: (tmp / "a.txt").write_text("one"))
    # killed after the old version was moved aside and before the new one moved in
    (bucket / "b" / "m").rename(bucket / "b" / ".m.old-1234abcd")
    (bucket / "b" / ".m.tmp-5678abcd").mkdir()
    write_folder("gs://b/other", lambda tmp: None)  # another destination's write leaves them alone
    assert (bucket / "b" / ".m.old-1234abcd").is_dir()
    write_folder("gs://b/m", lambda tmp: (tmp / "a.txt").write_text("two"))
    assert (bucket / "b" / "m" / "a.txt").read_text() == "two"
    assert not [p for p in (bucket / "b").iterdir() if p.name.startswith(".m.")]


def test_write_text_and_local_copy(bucket, tmp_path):
    write_text("gs://b/notes/r.json", '{"a": 1}')
    assert json.loads((bucket / "b" / "notes" / "r.json").read_text()) == {"a": 1}
    local = storage.local_copy("gs://b/notes", "input")
    assert (local / "r.json").read_text() == '{"a": 1}'
    (bucket / "b" / "notes" / "r.json").write_text('{"a": 22}')  # changed there: fetched again
    (bucket / "b" / "notes" / "s.txt").write_text("new")
    local = storage.local_copy("gs://b/notes", "input")
    assert (local / "r.json").read_text() == '{"a": 22}' and (local / "s.txt").read_text() == "new"
    with pytest.raises(FileNotFoundError, match="gs://b/none: nothing there"):
        storage.local_copy("gs://b/none", "--model")


def test_models_and_adapters_to_and_from_the_bucket(bucket, tmp_path, capsys):
    from tiny import tiny_model_folder

    from safegene_jax.core.paths import flatten_with_paths
    from safegene_jax.method.adapter import SafetyAdapter
    from safegene_jax.models import export_hf, load_model

    aligned, degraded = tiny_model_folder(tmp_path / "a", seed=0), tiny_model_folder(tmp_path / "d", seed=1)
    lm = load_model(aligned)
    export_hf(lm.model, "gs://b/models/aligned", tokenizer=lm.tokenizer)
    assert (bucket / "b" / "models" / "aligned" / "model.safetensors").is_file()
    again = load_model("gs://b/models/aligned")
    for x, y in zip(flatten_with_paths(lm.params)[1], flatten_with_paths(again.params)[1]):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    adapter = SafetyAdapter.build(lm.params, load_model(degraded).params, [1], family="tiny")
    adapter.save("gs://b/adapter")
    assert (bucket / "b" / "adapter" / MARKER).is_file()
    loaded = SafetyAdapter.load("gs://b/adapter")
    assert loaded.layers == [1] and sorted(loaded.vector) == sorted(adapter.vector)

    # the CLI: remote inputs and outputs, and an output whose scheme has no backend fails before any work
    model = ["--model", "gs://b/models/aligned", "--adapter", "gs://b/adapter"]
    assert main(["apply", *model, "--out", "gs://b/safe"]) == 0
    assert (bucket / "b" / "safe" / "mergekit.yaml").is_file() or (bucket / "b" / "safe" / "config.json").is_file()
    assert load_model("gs://b/safe").config.num_hidden_layers == 2
    assert main(["export-gguf", "gs://b/models/aligned", "gs://b/gguf/a.gguf"]) == 0
    assert (bucket / "b" / "gguf" / "a.gguf").stat().st_size > 0
    capsys.readouterr()
    if importlib.util.find_spec("s3fs") is None:
        assert main(["apply", *model, "--out", "s3://b/safe"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "s3fs" in err
    assert main(["apply", "--model", "gs://b/missing", "--adapter", "gs://b/adapter", "--out", "gs://b/x"]) == 2
    assert "gs://b/missing: nothing there" in capsys.readouterr().err
    assert not (bucket / "b" / "x").exists()


def test_mirror_pushes_changes_and_pulls_them_back(bucket, tmp_path):
    m = storage.Mirror("gs://b/run", tmp_path / "mirror")
    (m.local / "models" / "a").mkdir(parents=True)
    (m.local / "models" / "a" / "w.bin").write_bytes(b"123")
    (m.local / "stages").mkdir()
    (m.local / "stages" / "a.json").write_text("{}")
    (m.local / "ckpt" / "1.orbax-checkpoint-tmp-99").mkdir(parents=True)
    (m.local / "ckpt" / "1.orbax-checkpoint-tmp-99" / "x").write_text("partial")
    assert m.push() == 2
    remote = bucket / "b" / "run"
    assert (remote / "models" / "a" / "w.bin").read_bytes() == b"123" and not (remote / "ckpt").exists()
    assert m.push() == 0  # nothing changed
    (m.local / "models" / "a" / "w.bin").unlink()  # a replaced folder's old file goes from the bucket too
    (m.local / "models" / "a" / "v.bin").write_bytes(b"4")
    assert m.push() == 1
    assert sorted(p.name for p in (remote / "models" / "a").iterdir()) == ["v.bin"]

    fresh = storage.Mirror("gs://b/run", tmp_path / "elsewhere")  # another machine resuming the run
    fresh.pull()
    assert (fresh.local / "models" / "a" / "v.bin").read_bytes() == b"4"
    assert (fresh.local / "stages" / "a.json").read_text() == "{}"


def test_a_run_with_its_out_dir_in_a_bucket_resumes_from_it(bucket, tmp_path, monkeypatch):
    """The whole pipeline with out_dir=gs://...: the bucket gets the run; a rerun on a machine with an empty
    cache pulls it and finds every stage done."""
    from tiny import tiny_model_folder

    from safegene_jax.pipeline import run_pipeline
    from safegene_jax.pipeline.config import load_config

    model = tiny_model_folder(tmp_path / "tiny", layers=3, seed=0)
    long = [f"{s}.max_length=320" for s in ("align", "degrade", "finetune", "select", "recalibrate")]
    cfg = load_config(
        "quick",
        [f"model={model}", "tiny.enabled=false", "finetune.tasks=[arithmetic]", "out_dir=gs://b/runs/one", *long],
    )
    said = []
    first = run_pipeline(cfg, progress=False, echo=said.append)
    remote = bucket / "b" / "runs" / "one"
    for f in ("report.md", "config.yaml", MARKER, "stages/adapter.json", "models/aligned/model.safetensors"):
        assert (remote / f).is_file(), f
    assert any(s.strip() == "report: gs://b/runs/one/report.md; plots: gs://b/runs/one/plots" for s in said)
    assert json.loads((remote / "results.json").read_text()) == first.results

    monkeypatch.setenv("SAFEGENE_REMOTE_CACHE", str(tmp_path / "another-machine"))
    again = run_pipeline(cfg, progress=False, echo=lambda s: None)
    assert {r.status for r in again.stages} == {"cached"} and again.results == first.results

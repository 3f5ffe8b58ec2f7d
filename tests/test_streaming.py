"""Disk-to-disk arithmetic: the same bits as the in-memory path, sharded and bfloat16 kept, bad folders named."""

import json
import pathlib

import numpy as np
import pytest
from tiny import tiny_model_folder

from safegene_jax.core.errors import CheckpointError, ConfigError, IncompatibleAdapterError
from safegene_jax.interop.streaming import iter_tensors, read_header, stream_apply, stream_task_arithmetic
from safegene_jax.method.adapter import SafetyAdapter
from safegene_jax.models import export_hf, load_model, with_params


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    a, d, t = (tiny_model_folder(root / n, layers=3, seed=s) for n, s in (("a", 0), ("d", 1), ("t", 2)))
    la, ld, lt = load_model(a), load_model(d), load_model(t)
    half = export_hf(lt.model, root / "t16", tokenizer=lt.tokenizer, dtype="bfloat16", max_shard_bytes=40_000)
    adapter = SafetyAdapter.build(la.params, ld.params, [0, 2])
    return {"a": a, "d": d, "t": t, "t16": half, "adapter": adapter, "la": la, "ld": ld, "root": root}


def _same_bits(x: pathlib.Path, y: pathlib.Path) -> None:
    left, right = dict(iter_tensors(x)), dict(iter_tensors(y))
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert left[name].tobytes() == right[name].tobytes(), name


@pytest.mark.parametrize("source", ["t", "t16"])
@pytest.mark.parametrize("coeffs", [np.array([0.7, 0.0, 1.3], np.float32), np.full((3, 3), 0.5, np.float32)])
@pytest.mark.parametrize("block", [None, 64])  # whole tensors, or blocks of 64 bytes of rows (many per tensor)
def test_stream_apply_equals_the_in_memory_apply_bit_for_bit(models, tmp_path, monkeypatch, source, coeffs, block):
    from safegene_jax.interop import streaming

    if block is not None:
        monkeypatch.setattr(streaming, "BLOCK_BYTES", block)
    src, adapter = models[source], models["adapter"]
    lm = load_model(src)
    memory = export_hf(
        with_params(lm, adapter.apply(lm.params, coeffs)).model,
        tmp_path / "mem",
        tokenizer=lm.tokenizer,
        dtype=lm.stored_dtype,
    )
    streamed = stream_apply(src, adapter, tmp_path / "stream", coeffs=coeffs)
    _same_bits(memory, streamed)
    files = sorted(p.name for p in streamed.iterdir() if p.suffix == ".safetensors")
    assert files == sorted(p.name for p in src.iterdir() if p.suffix == ".safetensors")  # sharded like the input
    if source == "t16":
        index = json.loads((streamed / "model.safetensors.index.json").read_text())
        assert set(index["weight_map"].values()) == set(files)
        assert {e.dtype for f in files for e in read_header(streamed / f)[0]} == {"BF16"}
    assert load_model(streamed).tokenizer is not None


def test_stream_apply_casts_on_request(models, tmp_path):
    out = stream_apply(models["t16"], models["adapter"], tmp_path / "f32", dtype="float32")
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert {a.dtype for _, a in iter_tensors(out)} == {np.dtype(np.float32)}


def test_streaming_progress_bar_counts_every_byte_written(models, tmp_path, monkeypatch):
    import tqdm.auto

    bars = []

    class Bar:
        def __init__(self, total, desc, disable, **kw):
            self.total, self.desc, self.disable, self.n, self.closed = total, desc, disable, 0, False
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    out = stream_apply(models["t16"], models["adapter"], tmp_path / "o", dtype="float32", progress="apply")
    written = sum(a.nbytes for _, a in iter_tensors(out))
    bar = bars[-1]
    assert bar.desc == "apply" and bar.disable is None and bar.total == written == bar.n and bar.closed
    stream_apply(models["t16"], models["adapter"], tmp_path / "quiet")
    assert bars[-1].disable is True  # no label: no bar


def test_stream_task_arithmetic_equals_the_in_memory_baseline(models, tmp_path, monkeypatch):
    from safegene_jax import safety_vector
    from safegene_jax.interop import streaming

    monkeypatch.setattr(streaming, "BLOCK_BYTES", 100)
    from safegene_jax.method.baselines import task_arithmetic

    lt = load_model(models["t"])
    vec = safety_vector(models["la"].params, models["ld"].params)
    memory = export_hf(
        with_params(lt, task_arithmetic(lt.params, vec, 0.5)).model, tmp_path / "mem", tokenizer=lt.tokenizer
    )
    streamed = stream_task_arithmetic(models["t"], models["a"], models["d"], tmp_path / "stream", coeff=0.5)
    _same_bits(memory, streamed)


def test_bad_folders_are_named_before_anything_is_written(models, tmp_path):
    import shutil

    adapter = models["adapter"]
    sharded = tmp_path / "sharded"
    shutil.copytree(models["t16"], sharded)
    index_file = sharded / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    first = next(iter(index["weight_map"]))
    for bad, message in [
        ("/etc/passwd", "a file outside the model folder"),
        ("../t/model.safetensors", "a file outside the model folder"),
        ("model-00009-of-00009.safetensors", "which is not in"),
    ]:
        index_file.write_text(json.dumps({**index, "weight_map": {**index["weight_map"], first: bad}}))
        with pytest.raises(CheckpointError, match=message):
            stream_apply(sharded, adapter, tmp_path / "out")
    index_file.write_text("{not json")
    with pytest.raises(CheckpointError, match="not an index of safetensors shards"):
        stream_apply(sharded, adapter, tmp_path / "out")

    single = tmp_path / "single"
    shutil.copytree(models["t"], single)
    weights = single / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[:4])
    with pytest.raises(CheckpointError, match="truncated safetensors file"):
        stream_apply(single, adapter, tmp_path / "out")
    weights.write_bytes((10**9).to_bytes(8, "little") + raw[8:])
    with pytest.raises(CheckpointError, match="does not fit in the file"):
        stream_apply(single, adapter, tmp_path / "out")
    weights.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="byte range outside the file"):
        stream_apply(single, adapter, tmp_path / "out")
    wider = tiny_model_folder(tmp_path / "four", layers=4, seed=3)
    with pytest.raises(IncompatibleAdapterError, match="3-layer model"):
        stream_apply(wider, adapter, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_merge_command(models, tmp_path, capsys):
    from safegene_jax.pipeline.cli import main

    args = ["merge", "--task", str(models["t"]), "--aligned", str(models["a"]), "--degraded", str(models["d"])]
    assert main([*args, "--out", str(tmp_path / "m"), "--coeff", "0.5"]) == 0
    expected = stream_task_arithmetic(models["t"], models["a"], models["d"], tmp_path / "ref", coeff=0.5)
    _same_bits(expected, tmp_path / "m")
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "x"), "--coeff", "-1"]) == 2
    assert "--coeff must be in (0, 10]" in capsys.readouterr().err
    bad = ["merge", "--task", str(tmp_path / "none"), "--aligned", str(models["a"]), "--degraded", str(models["d"])]
    assert main([*bad, "--out", str(tmp_path / "x")]) == 2
    assert "--task:" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("rank", [None, 2])
def test_stream_extract_equals_the_in_memory_build(models, rank):
    from safegene_jax.interop.streaming import stream_extract

    la, ld = models["la"], models["ld"]
    memory = SafetyAdapter.build(la.params, ld.params, [0, 2], rank=rank, sources={"aligned": "a", "degraded": "d"})
    streamed = stream_extract(models["a"], models["d"], [0, 2], rank=rank)
    assert sorted(memory.vector) == sorted(streamed.vector) and memory.layers == streamed.layers
    for path, leaf in memory.vector.items():
        other = streamed.vector[path]
        pairs = ((leaf.left, other.left), (leaf.right, other.right)) if hasattr(leaf, "left") else ((leaf, other),)
        for x, y in pairs:  # low-rank factors, or the dense leaves rank does not shrink (norms)
            assert np.array_equal(np.asarray(x), np.asarray(y)), path
    for key in ("architecture", "model_type", "rank"):
        assert memory.metadata[key] == streamed.metadata[key], key
    streamed.check(load_model(models["t"]).params)


def test_stream_extract_refuses_different_models(models, tmp_path):
    from safegene_jax.interop.streaming import stream_extract

    wider = tiny_model_folder(tmp_path / "four", layers=4, seed=3)
    with pytest.raises(IncompatibleAdapterError, match="are different models .*num_hidden_layers"):
        stream_extract(models["a"], wider)
    with pytest.raises(ConfigError, match="layer 7 is out of range"):
        stream_extract(models["a"], models["d"], [7])

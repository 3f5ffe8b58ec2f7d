"""Bad input, every format and every command: one line on stderr, exit code 2, nothing written or changed.

Each case builds a damaged input (or a bad command line) in its own folder, runs ``main([...])`` in-process
and checks that the command stops with exit code 2 and exactly one line ``safegene CMD: error: ...`` on
stderr that names the culprit (a file, key or option: the case's chosen substring), with no traceback, and
that every file under the case's folder and under the shared inputs is byte-identical afterwards (so a
refused destination is left as it was and nothing new appears).

The shared inputs (a tiny model, a second one, an adapter, a sharded copy, a GGUF export) are built once per
module; damaged copies are derived from them per case. Training, scoring, evaluation and Hub calls are
replaced by tripwires: a case that gets that far fails at once instead of running the work.

A case whose fix belongs to another part may be marked ``xfail(strict=True)`` (``xfail=``/``stream_xfail=``) with
the fix in the reason; the mark goes once the fix is in.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tiny import tiny_model_folder

from safegene_jax.pipeline.cli import main

# ---- the shared inputs ---------------------------------------------------------------------------------


def snapshot(folder: pathlib.Path) -> dict:
    """Every file (its bytes) and folder under ``folder``, by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else ("<dir>" if p.is_dir() else "<other>")
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Good inputs, built once: tiny 2- and 3-layer models with their adapters, a sharded copy, a GGUF export."""
    from safegene_jax.models import export_hf, load_model

    root = tmp_path_factory.mktemp("world")
    model = tiny_model_folder(root / "model", layers=2, seed=0)
    degraded = tiny_model_folder(root / "degraded", layers=2, seed=1)
    model3 = tiny_model_folder(root / "model3", layers=3, seed=0)
    degraded3 = tiny_model_folder(root / "degraded3", layers=3, seed=1)
    for aligned, source, out in ((model, degraded, "adapter"), (model3, degraded3, "adapter3")):
        assert main(["extract", "--aligned", str(aligned), "--degraded", str(source), "--out", str(root / out)]) == 0
    lm = load_model(model)
    export_hf(lm.model, root / "sharded", tokenizer=lm.tokenizer, max_shard_bytes=40_000)
    assert (root / "sharded" / "model.safetensors.index.json").is_file()
    assert main(["export-gguf", str(model), str(root / "model.gguf")]) == 0
    (root / "coeffs.json").write_text(json.dumps({"coeffs": [0.5, 1.0]}))
    w = SimpleNamespace(
        root=root,
        model=model,
        degraded=degraded,
        adapter=root / "adapter",
        adapter3=root / "adapter3",
        sharded=root / "sharded",
        gguf=root / "model.gguf",
        coeffs=root / "coeffs.json",
    )
    w.snap = snapshot(root)
    return w


def _tripwire(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} started: the bad input was not caught before the work")

    return fail


@pytest.fixture(autouse=True)
def no_work(monkeypatch, tmp_path):
    """Training, scoring, recalibration, evaluation, pipeline stages, the synthetic model and every Hub call
    fail the case at once; the case runs in its own folder (a relative path lands there)."""
    import huggingface_hub

    import safegene_jax.models.api as models_api
    import safegene_jax.models.synthetic as synthetic
    from safegene_jax.pipeline import jobs, runner

    for name in ("align_model", "degrade_model", "finetune_model", "build_adapter", "recalibrate_model"):
        monkeypatch.setattr(jobs, name, _tripwire(name))
    monkeypatch.setattr(jobs, "evaluate_model", _tripwire("evaluate_model"))
    monkeypatch.setattr(runner.Run, "execute", _tripwire("a pipeline stage"))
    monkeypatch.setattr(synthetic, "llama_params", _tripwire("the synthetic model"))
    monkeypatch.setattr(models_api, "download_from_hub", _tripwire("a Hub download"))
    monkeypatch.setattr(huggingface_hub, "HfApi", _tripwire("a Hub upload"))
    monkeypatch.chdir(tmp_path)


# ---- damage --------------------------------------------------------------------------------------------


def copy_of(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
    return dst


def edit_json(path: pathlib.Path, fn: Callable[[dict], object]) -> None:
    """The JSON file at ``path`` edited in place by ``fn`` (its return value is ignored)."""
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def model_with_config(fn: Callable[[dict], object]):
    """A copy of the model whose config.json is edited in place by ``fn``."""

    def make(w, d):
        m = copy_of(w.model, d / "m")
        edit_json(m / "config.json", fn)
        return m

    return make


def model_with_config_text(text: str | bytes):
    def make(w, d):
        m = copy_of(w.model, d / "m")
        path = m / "config.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return m

    return make


def model_with_tensors(fn: Callable[[dict], None]):
    """A copy of the model whose tensors (HF names) are edited by ``fn``."""

    def make(w, d):
        m = copy_of(w.model, d / "m")
        file = m / "model.safetensors"
        tensors = load_file(str(file))
        fn(tensors)
        save_file(tensors, str(file), metadata={"format": "pt"})
        return m

    return make


def model_with_bytes(fn: Callable[[bytes], bytes]):
    """A copy of the model whose model.safetensors bytes are ``fn(bytes)``."""

    def make(w, d):
        m = copy_of(w.model, d / "m")
        file = m / "model.safetensors"
        file.write_bytes(fn(file.read_bytes()))
        return m

    return make


def st_header(raw: bytes, fn: Callable[[dict], None]) -> bytes:
    """A safetensors file with its JSON header edited by ``fn`` (the data left as it is)."""
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    fn(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def _first_tensor(header: dict) -> str:
    return sorted(k for k in header if k != "__metadata__")[0]


def _set_header(key: str, value):
    def fn(header):
        header[_first_tensor(header)][key] = value

    return fn


def sharded_with_index(fn: Callable[[dict, pathlib.Path, object], object]):
    """A copy of the sharded model whose index JSON is ``fn(index, folder, w)``."""

    def make(w, d):
        m = copy_of(w.sharded, d / "m")
        path = m / "model.safetensors.index.json"
        data = json.loads(path.read_text())
        out = fn(data, m, w)
        path.write_text(out if isinstance(out, str) else json.dumps(data if out is None else out))
        return m

    return make


def _first_entry(index: dict) -> str:
    return sorted(index["weight_map"])[0]


def _outside_abs(index, folder, w):
    index["weight_map"][_first_entry(index)] = str(w.model / "model.safetensors")


def _outside_dotdot(index, folder, w):
    elsewhere = folder.parent / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(w.model / "model.safetensors", elsewhere / "model.safetensors")
    index["weight_map"][_first_entry(index)] = "../elsewhere/model.safetensors"


def gguf_with_bytes(fn: Callable[[bytes], bytes]):
    def make(w, d):
        path = d / "m.gguf"
        path.write_bytes(fn(w.gguf.read_bytes()))
        return path

    return make


def _gguf_string(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


def gguf_rename(key: str, new: str):
    """A GGUF key (or tensor name) renamed in place to another of the same length: the old one is missing."""
    assert len(key) == len(new)

    def fn(raw: bytes) -> bytes:
        assert raw.count(_gguf_string(key)) == 1, key
        return raw.replace(_gguf_string(key), _gguf_string(new))

    return fn


def _gguf_arch(raw: bytes) -> bytes:
    old = _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama")
    assert raw.count(old) == 1
    return raw.replace(old, old[: -len("llama")] + b"bloom")


def adapter_copy(edit: Callable[[pathlib.Path], None] | None = None):
    def make(w, d):
        a = copy_of(w.adapter, d / "ad")
        if edit is not None:
            edit(a)
        return a

    return make


def _edit_meta(fn: Callable[[dict], object]):
    def edit(a):
        edit_json(a / "meta" / "metadata", fn)

    return edit


def _flip_data(a: pathlib.Path) -> None:
    data = max(
        (p for p in (a / "tree").rglob("*") if p.is_file() and "/d/" in p.as_posix()), key=lambda p: p.stat().st_size
    )
    raw = bytearray(data.read_bytes())
    for i in range(16, len(raw) - 16, 7):
        raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))


def _empty_data(a: pathlib.Path) -> None:
    for p in (a / "tree").rglob("*"):
        if p.is_file() and "/d/" in p.as_posix():
            p.write_bytes(b"")


def _meta_without(*keys):
    def fn(meta):
        for k in keys:
            meta.pop(k, None)

    return fn


def _meta_set(key, value):
    def fn(meta):
        meta[key] = value

    return fn


def _write(name: str, text: str | bytes):
    def make(w, d):
        path = d / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return make


def _folder(name: str, files: dict[str, str] | None = None):
    def make(w, d):
        path = d / name
        path.mkdir()
        for f, text in (files or {}).items():
            (path / f).write_text(text)
        return path

    return make


def _model_without_config(w, d):
    m = copy_of(w.model, d / "m")
    (m / "config.json").unlink()
    return m


# ---- the cases -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """``argv(w, d)``: the command line (``w``: the shared inputs, ``d``: the case's folder); ``needle``: what the
    error line must contain (``{d}`` is the case's folder); ``xfail``: why it fails until its fix is in."""

    id: str
    argv: Callable
    needle: str
    xfail: str = ""
    env: tuple = ()


CASES: list[Case] = []


def case(id: str, argv: Callable, needle: str, xfail: str = "", env: tuple = ()) -> None:
    CASES.append(Case(id, argv, needle, xfail, env))


# Each command that reads a model, with the model at M: where a damaged model is passed.
MODEL_USES: dict[str, Callable] = {
    "export": lambda m, w, d: ["export", m, d / "out"],
    "export-gguf": lambda m, w, d: ["export-gguf", m, d / "out.gguf"],
    "extract": lambda m, w, d: ["extract", "--aligned", w.model, "--degraded", m, "--out", d / "out"],
    "apply": lambda m, w, d: ["apply", "--model", m, "--adapter", w.adapter, "--out", d / "out"],
    "eval": lambda m, w, d: ["eval", "--model", m],
    "select": lambda m, w, d: ["select", "--aligned", m, "--degraded", w.degraded, "--out", d / "out"],
    "recalibrate": lambda m, w, d: [
        "recalibrate",
        "--model",
        m,
        "--adapter",
        w.adapter,
        "--task",
        "arithmetic",
        "--out",
        d / "c.json",
    ],
    "export-peft": lambda m, w, d: [
        "export-peft",
        "--adapter",
        w.adapter,
        "--out",
        d / "out",
        "--norms",
        "modules_to_save",
        "--model",
        m,
    ],
    "align": lambda m, w, d: ["align", "--model", m, "--out", d / "out"],
    "degrade": lambda m, w, d: ["degrade", "--model", m, "--out", d / "out"],
    "finetune": lambda m, w, d: ["finetune", "--model", m, "--task", "arithmetic", "--out", d / "out"],
    "merge": lambda m, w, d: ["merge", "--task", m, "--aligned", w.model, "--degraded", w.degraded, "--out", d / "o"],
}
STREAMED = ("apply", "merge")
"""The commands that read safetensors folders tensor by tensor (interop/streaming.py), not through models/."""
_ROTATION = list(MODEL_USES)
_turn = [0]


def model_cases(
    prefix: str,
    make: Callable,
    needle: str,
    n: int = 2,
    xfail: str = "",
    uses=None,
    streamed: bool = False,
    stream_xfail: str | dict = "",
    skip: tuple = (),
) -> None:
    """The damaged model of ``make`` passed to ``n`` commands (taken in turn from :data:`MODEL_USES`, but those in
    ``skip``). ``streamed``: a damage of a safetensors folder, which the streaming commands get too; they read it
    with their own reader, so ``xfail`` is for the others and ``stream_xfail`` (or ``{command: reason}``) for them."""
    if uses is None:
        uses = []
        while len(uses) < n:
            use = _ROTATION[_turn[0] % len(_ROTATION)]
            _turn[0] += 1
            if use not in skip:
                uses.append(use)
    if streamed:
        uses = list(uses) + [u for u in STREAMED if u not in uses]
    for use in uses:
        why = xfail
        if streamed and use in STREAMED:
            why = stream_xfail.get(use, "") if isinstance(stream_xfail, dict) else stream_xfail
        case(f"{prefix}-{use}", lambda w, d, make=make, use=use: MODEL_USES[use](make(w, d), w, d), needle, why)


# -- safetensors ---------------------------------------------------------------------------------------

ST = "model.safetensors"
model_cases("st-truncated", model_with_bytes(lambda raw: raw[: len(raw) // 2]), ST, 3, streamed=True)
model_cases("st-empty", model_with_bytes(lambda raw: b""), ST, 2, streamed=True)
model_cases("st-garbage", model_with_bytes(lambda raw: bytes(range(256)) * 8), ST, 2, streamed=True)
model_cases("st-header-json", model_with_bytes(lambda raw: raw[:8] + b"!" * 16 + raw[24:]), ST, 3, streamed=True)
model_cases(
    "st-header-length",
    model_with_bytes(lambda raw: struct.pack("<Q", 10 * len(raw)) + raw[8:]),
    ST,
    3,
    streamed=True,
)
model_cases(
    "st-offsets-beyond",
    model_with_bytes(lambda raw: st_header(raw, _set_header("data_offsets", [0, 10 * len(raw)]))),
    ST,
    2,
    streamed=True,
)
model_cases(
    "st-dtype-size",
    model_with_bytes(lambda raw: st_header(raw, _set_header("dtype", "F16"))),
    ST,
    2,
    streamed=True,
)
model_cases(
    "st-int-weights",
    model_with_tensors(lambda t: t.update({"model.norm.weight": t["model.norm.weight"].astype(np.int32)})),
    "model.norm.weight",
    2,
    streamed=True,
)
model_cases(
    "st-wrong-shape",
    model_with_tensors(lambda t: t.update({"model.layers.0.mlp.up_proj.weight": np.zeros((65, 32), np.float32)})),
    "model.layers.0.mlp.up_proj.weight",
    2,
    streamed=True,
)
model_cases(
    "st-vocab-vs-config",
    model_with_config(lambda c: c.update(vocab_size=c["vocab_size"] + 10)),
    "model.embed_tokens.weight",
    2,
    streamed=True,
)
model_cases(
    "st-missing-tensor",
    model_with_tensors(lambda t: t.pop("model.layers.1.mlp.down_proj.weight")),
    "down_proj",
    2,
    streamed=True,
)
model_cases(
    "st-extra-tensor",
    model_with_tensors(lambda t: t.update({"model.layers.0.mlp.extra_proj.weight": np.zeros((4, 4), np.float32)})),
    "model.layers.0.mlp.extra_proj.weight",
    2,
    streamed=True,
)
model_cases(
    "st-extra-layer",
    model_with_tensors(lambda t: t.update({"model.layers.7.mlp.up_proj.weight": np.zeros((64, 32), np.float32)})),
    "model.layers.7.mlp.up_proj.weight",
    2,
    streamed=True,
)


def _model_without_weights(w, d):
    m = copy_of(w.model, d / "m")
    (m / ST).unlink()
    return m


model_cases("st-no-file", _model_without_weights, "*.safetensors", 2)

# -- the sharded index ---------------------------------------------------------------------------------

IDX = "model.safetensors.index.json"
model_cases("index-not-json", sharded_with_index(lambda i, f, w: "{not json"), IDX, 2, streamed=True)
model_cases("index-a-list", sharded_with_index(lambda i, f, w: [1, 2]), IDX, 2, streamed=True)
model_cases("index-map-a-list", sharded_with_index(lambda i, f, w: {"weight_map": [1, 2]}), IDX, 2, streamed=True)
model_cases("index-no-weight-map", sharded_with_index(lambda i, f, w: {"metadata": {}}), "weight_map", 2, streamed=True)
model_cases(
    "index-missing-shard",
    sharded_with_index(lambda i, f, w: i["weight_map"].update({_first_entry(i): "model-00009-of-00009.safetensors"})),
    "model-00009-of-00009.safetensors",
    3,
)
model_cases("index-absolute-path", sharded_with_index(_outside_abs), "outside", 2, streamed=True)
model_cases("index-dotdot-path", sharded_with_index(_outside_dotdot), "outside", 2, streamed=True)

# -- config.json ----------------------------------------------------------------------------------------

CFG = "config.json"
model_cases("config-not-json", model_with_config_text("{not json"), CFG, 2)
model_cases("config-empty", model_with_config_text(""), CFG, 2)
model_cases(
    "config-binary",
    model_with_config_text(b"\xff\xfe\x00garbage"),
    CFG,
    2,
)
model_cases(
    "config-a-list",
    model_with_config_text("[1, 2]"),
    CFG,
    2,
)
for key in ("hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size"):
    model_cases(f"config-lacks-{key}", model_with_config(lambda c, key=key: c.pop(key)), key, 1)
model_cases("config-str-hidden", model_with_config(lambda c: c.update(hidden_size="32")), "hidden_size", 2)
model_cases("config-float-layers", model_with_config(lambda c: c.update(num_hidden_layers=2.5)), "num_hidden_layers", 2)
model_cases("config-str-eps", model_with_config(lambda c: c.update(rms_norm_eps="tiny")), "rms_norm_eps", 2)
model_cases(
    "config-str-max-pos",
    model_with_config(lambda c: c.update(max_position_embeddings="long")),
    "max_position_embeddings",
    1,
)
model_cases("config-str-rope", model_with_config(lambda c: c.update(rope_parameters="fast")), "rope_parameters", 1)
model_cases("config-negative-hidden", model_with_config(lambda c: c.update(hidden_size=-32)), "hidden_size", 2)
model_cases("config-zero-layers", model_with_config(lambda c: c.update(num_hidden_layers=0)), "num_hidden_layers", 2)
model_cases("config-zero-vocab", model_with_config(lambda c: c.update(vocab_size=0)), "vocab_size", 1)
model_cases(
    "config-negative-intermediate", model_with_config(lambda c: c.update(intermediate_size=-1)), "intermediate_size", 1
)
model_cases(
    "config-zero-heads",
    model_with_config(lambda c: (c.update(num_attention_heads=0), c.pop("head_dim"))),
    "num_attention_heads",
    2,
)
model_cases(
    "config-zero-kv-heads",
    model_with_config(lambda c: c.update(num_key_value_heads=0)),
    "num_key_value_heads",
    2,
)
model_cases(
    "config-heads-not-dividing-hidden",
    model_with_config(lambda c: (c.update(num_attention_heads=3, num_key_value_heads=3), c.pop("head_dim"))),
    "num_attention_heads",
    2,
)
model_cases(
    "config-kv-not-dividing",
    model_with_config(lambda c: c.update(num_key_value_heads=3)),
    "num_key_value_heads",
    2,
)
model_cases("config-odd-head-dim", model_with_config(lambda c: c.update(head_dim=7)), "head_dim", 1)
model_cases("config-unknown-model-type", model_with_config(lambda c: c.update(model_type="gpt2")), "gpt2", 2)
model_cases("config-int-model-type", model_with_config(lambda c: c.update(model_type=5)), "model_type", 1)
model_cases(
    "config-unknown-rope-type",
    model_with_config(lambda c: c.update(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4})),
    "yarn",
    1,
)
model_cases(
    "config-more-layers",
    model_with_config(lambda c: c.update(num_hidden_layers=3)),
    "model.layers.2",
    2,
    streamed=True,
)
model_cases(
    "config-fewer-layers",
    model_with_config(lambda c: c.update(num_hidden_layers=1)),
    "model.layers.1",
    1,
    streamed=True,
)

# -- a model folder without config.json, a mistyped model path ------------------------------------------

model_cases("model-without-config", _model_without_config, CFG, uses=list(MODEL_USES))
model_cases("model-mistyped-path", lambda w, d: d / "aligend", "aligend", uses=list(MODEL_USES))
model_cases("model-plain-file", _write("weights.bin", "not a model"), "weights.bin", uses=["export", "apply", "eval"])


def _relative_mistyped(w, d):
    (d / "runs").mkdir()
    copy_of(w.model, d / "runs" / "aligned")
    return "runs/alinged"


model_cases(
    "model-relative-mistyped",
    _relative_mistyped,
    "not a local folder",
    uses=["export", "extract", "apply"],
)

# -- GGUF -------------------------------------------------------------------------------------------------

GG = "m.gguf"
NOT_GGUF = ("merge",)  # reads safetensors folders only
model_cases("gguf-truncated", gguf_with_bytes(lambda raw: raw[: len(raw) * 6 // 10]), GG, 3, skip=NOT_GGUF)
model_cases("gguf-header-only", gguf_with_bytes(lambda raw: raw[:24]), GG, 2, skip=NOT_GGUF)
model_cases("gguf-empty", gguf_with_bytes(lambda raw: b""), GG, 2, skip=NOT_GGUF)
model_cases("gguf-wrong-magic", gguf_with_bytes(lambda raw: b"GGML" + raw[4:]), GG, 3, skip=NOT_GGUF)
model_cases(
    "gguf-wrong-version", gguf_with_bytes(lambda raw: raw[:4] + struct.pack("<I", 99) + raw[8:]), GG, 2, skip=NOT_GGUF
)
model_cases("gguf-unsupported-arch", gguf_with_bytes(_gguf_arch), "bloom", 3, skip=NOT_GGUF)
model_cases(
    "gguf-no-architecture",
    gguf_with_bytes(gguf_rename("general.architecture", "general.architecturx")),
    "general.architecture",
    2,
    skip=NOT_GGUF,
)
model_cases(
    "gguf-no-block-count",
    gguf_with_bytes(gguf_rename("llama.block_count", "llama.block_counx")),
    "block_count",
    2,
    skip=NOT_GGUF,
)
model_cases(
    "gguf-no-head-count",
    gguf_with_bytes(gguf_rename("llama.attention.head_count", "llama.attention.head_counx")),
    "llama.attention.head_count",
    2,
    skip=NOT_GGUF,
)
model_cases(
    "gguf-no-tokens",
    gguf_with_bytes(gguf_rename("tokenizer.ggml.tokens", "tokenizer.ggml.tokenx")),
    "tokenizer.ggml.tokens",
    2,
    skip=NOT_GGUF,
)
model_cases(
    "gguf-missing-tensor",
    gguf_with_bytes(gguf_rename("blk.1.ffn_down.weight", "blk.1.ffn_down.weighx")),
    "blk.1.ffn_down.weighx",
    2,
    skip=NOT_GGUF,
)
model_cases("gguf-a-folder", _folder("m.gguf", {"a.txt": "x"}), GG, uses=["export", "export-gguf"])

# -- the Orbax adapter folder -----------------------------------------------------------------------------

ADAPTER_USES: dict[str, Callable] = {
    "apply": lambda a, w, d: ["apply", "--model", w.model, "--adapter", a, "--out", d / "out"],
    "export-peft": lambda a, w, d: ["export-peft", "--adapter", a, "--out", d / "out"],
    "eval": lambda a, w, d: ["eval", "--model", w.model, "--adapter", a],
    "recalibrate": lambda a, w, d: [
        "recalibrate",
        "--model",
        w.model,
        "--adapter",
        a,
        "--task",
        "arithmetic",
        "--out",
        d / "c.json",
    ],
}


def adapter_cases(prefix: str, make: Callable, needle: str, uses=("apply", "export-peft", "eval"), xfail="") -> None:
    for use in uses:
        case(f"{prefix}-{use}", lambda w, d, make=make, use=use: ADAPTER_USES[use](make(w, d), w, d), needle, xfail)


adapter_cases("adapter-empty-folder", _folder("ad"), "tree/")
adapter_cases("adapter-plain-file", _write("ad", "not an adapter"), "is a file")
adapter_cases("adapter-mistyped", lambda w, d: d / "adaptr", "adaptr", uses=tuple(ADAPTER_USES))
adapter_cases("adapter-no-tree", adapter_copy(lambda a: shutil.rmtree(a / "tree")), "tree/", uses=("apply", "eval"))
adapter_cases("adapter-no-meta", adapter_copy(lambda a: shutil.rmtree(a / "meta")), "{d}/ad", uses=("apply", "eval"))
adapter_cases(
    "adapter-meta-not-json",
    adapter_copy(lambda a: (a / "meta" / "metadata").write_text("{oops")),
    "{d}/ad",
    uses=("apply", "export-peft"),
)
adapter_cases(
    "adapter-meta-a-list",
    adapter_copy(lambda a: (a / "meta" / "metadata").write_text("[1, 2]")),
    "metadata",
    uses=("apply", "eval"),
)
adapter_cases(
    "adapter-meta-edited", adapter_copy(_edit_meta(_meta_set("layers", [0]))), "checksum", uses=("apply", "export-peft")
)
adapter_cases(
    "adapter-meta-no-order",
    adapter_copy(_edit_meta(_meta_without("checksums", "order"))),
    "order",
    uses=("apply", "eval"),
)
adapter_cases("adapter-format-2", adapter_copy(_edit_meta(_meta_set("format", 2))), "format", uses=tuple(ADAPTER_USES))
adapter_cases("adapter-flipped-data", adapter_copy(_flip_data), "{d}/ad", uses=("apply", "export-peft", "eval"))
adapter_cases("adapter-emptied-data", adapter_copy(_empty_data), "{d}/ad", uses=("apply", "eval"))
adapter_cases(
    "adapter-tree-metadata-garbage",
    adapter_copy(lambda a: (a / "tree" / "_METADATA").write_text("garbage")),
    "{d}/ad",
    uses=("apply", "export-peft"),
)
adapter_cases("adapter-other-architecture", lambda w, d: w.adapter3, "3-layer", uses=("apply", "eval"))

# -- coefficients JSON ------------------------------------------------------------------------------------

COEFF_USES: dict[str, Callable] = {
    "apply": lambda c, w, d: ["apply", "--model", w.model, "--adapter", w.adapter, "--coeffs", c, "--out", d / "out"],
    "eval": lambda c, w, d: ["eval", "--model", w.model, "--adapter", w.adapter, "--coeffs", c],
    "export-peft": lambda c, w, d: ["export-peft", "--adapter", w.adapter, "--coeffs", c, "--out", d / "out"],
}
COEFFS = {
    "scalar": "3",
    "list": "[1, 2]",
    "strings": '{"coeffs": ["a", "b"]}',
    "a-string": '{"coeffs": "1,1"}',
    "null": '{"coeffs": null}',
    "booleans": '{"coeffs": [true, false]}',
    "missing-key": '{"alpha": [1, 1]}',
    "too-short": '{"coeffs": [1.0]}',
    "too-long": '{"coeffs": [1.0, 1.0, 1.0]}',
    "wrong-shape": '{"coeffs": [[1.0], [1.0]]}',
    "nan": '{"coeffs": [NaN, 1.0]}',
    "infinity": '{"coeffs": [Infinity, 1.0]}',
    "huge": '{"coeffs": [1e38, 1.0]}',
    "negative": '{"coeffs": [-0.5, 1.0]}',
    "not-json": "{not json",
    "empty": "",
    "binary": b"\xff\xfe\x00\x01",
}
for i, (name, text) in enumerate(COEFFS.items()):
    for use in ("apply", "eval", "export-peft")[: 2 if i % 2 else 3]:
        case(
            f"coeffs-{name}-{use}",
            lambda w, d, text=text, use=use: COEFF_USES[use](_write("c.json", text)(w, d), w, d),
            "c.json",
        )
for use in COEFF_USES:
    case(f"coeffs-mistyped-{use}", lambda w, d, use=use: COEFF_USES[use](d / "cofes.json", w, d), "cofes.json")
case("coeffs-a-folder-apply", lambda w, d: COEFF_USES["apply"](_folder("c.json")(w, d), w, d), "c.json")

# -- YAML configs (--config and `run FILE`) -----------------------------------------------------------------

CONFIG_USES: dict[str, Callable] = {
    "run": lambda c, w, d: ["run", c, f"out_dir={d / 'run'}"],
    "align": lambda c, w, d: ["align", "--model", w.model, "--config", c, "--out", d / "out"],
    "degrade": lambda c, w, d: ["degrade", "--model", w.model, "--config", c, "--out", d / "out"],
    "finetune": lambda c, w, d: [
        "finetune",
        "--model",
        w.model,
        "--task",
        "arithmetic",
        "--config",
        c,
        "--out",
        d / "o",
    ],
    "select": lambda c, w, d: [
        "select",
        "--aligned",
        w.model,
        "--degraded",
        w.degraded,
        "--config",
        c,
        "--out",
        d / "o",
    ],
    "recalibrate": lambda c, w, d: [
        "recalibrate",
        "--model",
        w.model,
        "--adapter",
        w.adapter,
        "--task",
        "arithmetic",
        "--config",
        c,
        "--out",
        d / "c.json",
    ],
    "eval": lambda c, w, d: ["eval", "--model", w.model, "--config", c],
}
_CONFIG_ORDER = list(CONFIG_USES)
YAMLS = {  # name: (text, needle)
    "not-yaml": ("align: [unclosed\n", "c.yaml"),
    "a-list": ("- align\n- steps\n", "c.yaml"),
    "a-scalar": ("42\n", "c.yaml"),
    "unknown-key": ("align:\n  stepz: 3\n", "align.stepz"),
    "unknown-section": ("optimizer:\n  lr: 0.1\n", "optimizer"),
    "section-scalar": ("align: 5\n", "align"),
    "wrong-type-int": ("align:\n  steps: ten\n", "align.steps"),
    "wrong-type-bool": ("tiny:\n  enabled: maybe\n", "tiny.enabled"),
    "wrong-type-list": ("finetune:\n  tasks: arithmetic\n", "finetune.tasks"),
    "negative-steps": ("degrade:\n  steps: -5\n", "degrade.steps"),
    "zero-steps": ("align:\n  steps: 0\n", "align.steps"),
    "negative-lr": ("align:\n  learning_rate: -1.0e-4\n", "align.learning_rate"),
    "zero-lr": ("finetune:\n  learning_rate: 0\n", "finetune.learning_rate"),
    "nan-lr": ("align:\n  learning_rate: .nan\n", "align.learning_rate"),
    "infinite-lr": ("align:\n  learning_rate: .inf\n", "align.learning_rate"),
    "unknown-set": ("align:\n  harmful_sets: [nope/none]\n", "nope/none"),
    "base-missing": ("base: nothere.yaml\nalign:\n  steps: 2\n", "nothere.yaml"),
    "base-self": ("base: c.yaml\n", "cycle"),
    "base-not-a-name": ("base: 5\n", "base"),
    "mesh-too-big": ("mesh:\n  enabled: true\n  data: 3\n", "mesh"),
    "binary": (b"\xff\xfe\x00\x01garbage", "c.yaml"),
}
for i, (name, (text, needle)) in enumerate(YAMLS.items()):
    for k in range(2):
        use = _CONFIG_ORDER[(2 * i + k) % len(_CONFIG_ORDER)]
        case(
            f"yaml-{name}-{use}",
            lambda w, d, text=text, use=use: CONFIG_USES[use](_write("c.yaml", text)(w, d), w, d),
            needle,
        )


def _yaml_cycle(w, d):
    (d / "a.yaml").write_text("base: b.yaml\n")
    (d / "b.yaml").write_text("base: a.yaml\n")
    return d / "a.yaml"


def _yaml_bad_base(w, d):
    (d / "b.yaml").write_text("align: [unclosed\n")
    (d / "c.yaml").write_text("base: b.yaml\n")
    return d / "c.yaml"


for use in ("run", "align"):
    case(f"yaml-base-cycle-{use}", lambda w, d, use=use: CONFIG_USES[use](_yaml_cycle(w, d), w, d), "cycle")
    case(f"yaml-base-broken-{use}", lambda w, d, use=use: CONFIG_USES[use](_yaml_bad_base(w, d), w, d), "b.yaml")
    case(f"yaml-mistyped-{use}", lambda w, d, use=use: CONFIG_USES[use](d / "confg.yaml", w, d), "confg.yaml")
    case(f"yaml-a-folder-{use}", lambda w, d, use=use: CONFIG_USES[use](_folder("c.yaml")(w, d), w, d), "c.yaml")

# -- key=value overrides -------------------------------------------------------------------------------------

OVERRIDE_USES: dict[str, Callable] = {
    "run": lambda o, w, d: ["run", "quick", f"out_dir={d / 'run'}", o],
    "demo": lambda o, w, d: ["demo", "--quick", f"out_dir={d / 'run'}", o],
    "align": lambda o, w, d: ["align", "--model", w.model, "--out", d / "out", o],
    "degrade": lambda o, w, d: ["degrade", "--model", w.model, "--out", d / "out", o],
    "finetune": lambda o, w, d: ["finetune", "--model", w.model, "--task", "arithmetic", "--out", d / "out", o],
    "select": lambda o, w, d: ["select", "--aligned", w.model, "--degraded", w.degraded, "--out", d / "out", o],
    "recalibrate": lambda o, w, d: [
        "recalibrate",
        "--model",
        w.model,
        "--adapter",
        w.adapter,
        "--task",
        "arithmetic",
        "--out",
        d / "c.json",
        o,
    ],
    "eval": lambda o, w, d: ["eval", "--model", w.model, o],
}
_OVERRIDE_ORDER = list(OVERRIDE_USES)
OVERRIDES = {  # override: needle
    "align.steps": "align.steps",
    "=5": "=5",
    "align..steps=1": "align..steps",
    "align.stepz=1": "align.stepz",
    "nosuch=1": "nosuch",
    "align.steps=abc": "align.steps",
    "align.steps=1.5": "align.steps",
    "tiny.enabled=maybe": "tiny.enabled",
    "finetune.tasks=arithmetic": "finetune.tasks",
    "align=3": "align",
    "select.top_k=0": "select.top_k",
    "recalibrate.lam=-1": "recalibrate.lam",
    "finetune.harmful_fraction=1.5": "finetune.harmful_fraction",
    "align.learning_rate=-1": "align.learning_rate",
    "align.learning_rate=inf": "align.learning_rate",
    "degrade.steps=-3": "degrade.steps",
    "eval.batch_size=0": "eval.batch_size",
    "compare.methods=[magic]": "compare.methods",
    "select.method=magic": "select.method",
    "recalibrate.scales=[]": "recalibrate.scales",
    "mesh.fsdp=0": "mesh",
}
for i, (override, needle) in enumerate(OVERRIDES.items()):
    for k in range(2):
        use = _OVERRIDE_ORDER[(2 * i + k) % len(_OVERRIDE_ORDER)]
        case(f"override-{override}-{use}", lambda w, d, o=override, use=use: OVERRIDE_USES[use](o, w, d), needle)

# -- data sets and tasks -------------------------------------------------------------------------------------

NOWHERE = (("SAFEGENE_DATA_ROOT", "{d}/nowhere"),)
case(
    "task-unknown-finetune",
    lambda w, d: ["finetune", "--model", w.model, "--task", "cooking", "--out", d / "out"],
    "cooking",
)
case(
    "task-unknown-recalibrate",
    lambda w, d: [
        "recalibrate",
        "--model",
        w.model,
        "--adapter",
        w.adapter,
        "--task",
        "cooking",
        "--out",
        d / "c.json",
    ],
    "cooking",
)
case("task-unknown-eval", lambda w, d: ["eval", "--model", w.model, "--tasks", "cooking"], "cooking")
case("task-unknown-eval-second", lambda w, d: ["eval", "--model", w.model, "--tasks", "arithmetic,cooking"], "cooking")
case("task-unknown-run", lambda w, d: OVERRIDE_USES["run"]("finetune.tasks=[cooking]", w, d), "cooking")
case("set-unknown-align", lambda w, d: OVERRIDE_USES["align"]("align.harmful_sets=[nope]", w, d), "nope")
case("set-unknown-select", lambda w, d: OVERRIDE_USES["select"]("select.benign_sets=[nope]", w, d), "nope")
case(
    "set-unknown-recalibrate",
    lambda w, d: OVERRIDE_USES["recalibrate"]("recalibrate.harmful_sets=[nope]", w, d),
    "nope",
)
case("set-unknown-eval", lambda w, d: OVERRIDE_USES["eval"]("eval.harmful_sets=[nope]", w, d), "nope")
case("set-unknown-run", lambda w, d: OVERRIDE_USES["run"]("eval.safe_sets=[nope]", w, d), "nope")
case(
    "data-root-nowhere-run-task",
    lambda w, d: OVERRIDE_USES["run"]("finetune.tasks=[sst2]", w, d),
    "{d}/nowhere",
    env=NOWHERE,
)
case(
    "data-root-nowhere-run-set",
    lambda w, d: OVERRIDE_USES["run"]("eval.safe_sets=[xstest/safe]", w, d),
    "{d}/nowhere",
    env=NOWHERE,
)
case("data-root-nowhere-eval", lambda w, d: ["eval", "--model", w.model, "--tasks", "sst2"], "{d}/nowhere", env=NOWHERE)
case(
    "data-root-nowhere-finetune",
    lambda w, d: ["finetune", "--model", w.model, "--task", "gsm8k", "--out", d / "out"],
    "{d}/nowhere",
    env=NOWHERE,
)
case(
    "data-root-nowhere-recalibrate",
    lambda w, d: ["recalibrate", "--model", w.model, "--adapter", w.adapter, "--task", "ag_news", "--out", d / "c"],
    "{d}/nowhere",
    env=NOWHERE,
)
case(
    "data-root-nowhere-degrade-refuse-set",
    lambda w, d: [
        "degrade",
        "--model",
        w.model,
        "--out",
        d / "out",
        "degrade.refuse_sets=[alpaca/align]",
        "degrade.refuse=4",
    ],
    "{d}/nowhere",
    env=NOWHERE,
)
case(
    "data-root-without-the-set",
    lambda w, d: (d.joinpath("data").mkdir(), ["eval", "--model", w.model, "--tasks", "sst2"])[1],
    "{d}/data",
    env=(("SAFEGENE_DATA_ROOT", "{d}/data"),),
)

# -- command lines: missing and invalid arguments ---------------------------------------------------------------

ARGS = {  # name: (argv(w, d), needle)
    "no-such-command": (lambda w, d: ["frobnicate"], "frobnicate"),
    "export-no-args": (lambda w, d: ["export"], "model"),
    "export-one-arg": (lambda w, d: ["export", w.model], "out"),
    "export-bad-dtype": (lambda w, d: ["export", w.model, d / "out", "--dtype", "int8"], "--dtype"),
    "extract-no-out": (lambda w, d: ["extract", "--aligned", w.model, "--degraded", w.degraded], "--out"),
    "extract-layers-not-ints": (
        lambda w, d: ["extract", "--aligned", w.model, "--degraded", w.model, "--out", d / "o", "--layers", "x,y"],
        "--layers",
    ),
    "extract-layer-out-of-range": (
        lambda w, d: ["extract", "--aligned", w.model, "--degraded", w.model, "--out", d / "o", "--layers", "7"],
        "--layers",
    ),
    "extract-negative-layer": (
        lambda w, d: ["extract", "--aligned", w.model, "--degraded", w.model, "--out", d / "o", "--layers", "-1"],
        "--layers",
    ),
    "extract-rank-zero": (
        lambda w, d: ["extract", "--aligned", w.model, "--degraded", w.model, "--out", d / "o", "--rank", "0"],
        "--rank",
    ),
    "apply-no-adapter": (lambda w, d: ["apply", "--model", w.model, "--out", d / "out"], "--adapter"),
    "apply-scale-nan": (lambda w, d: ADAPTER_USES["apply"](w.adapter, w, d) + ["--scale", "nan"], "--scale"),
    "apply-scale-zero": (lambda w, d: ADAPTER_USES["apply"](w.adapter, w, d) + ["--scale", "0"], "--scale"),
    "apply-scale-text": (lambda w, d: ADAPTER_USES["apply"](w.adapter, w, d) + ["--scale", "big"], "--scale"),
    "eval-no-model": (lambda w, d: ["eval", "--tasks", "arithmetic"], "--model"),
    "eval-coeffs-without-adapter": (lambda w, d: ["eval", "--model", w.model, "--coeffs", w.coeffs], "--coeffs"),
    "eval-scale-without-adapter": (lambda w, d: ["eval", "--model", w.model, "--scale", "2"], "--scale"),
    "eval-negative-scale": (lambda w, d: ADAPTER_USES["eval"](w.adapter, w, d) + ["--scale", "-1"], "--scale"),
    "select-no-degraded": (lambda w, d: ["select", "--aligned", w.model, "--out", d / "out"], "--degraded"),
    "recalibrate-no-task": (
        lambda w, d: ["recalibrate", "--model", w.model, "--adapter", w.adapter, "--out", d / "c.json"],
        "--task",
    ),
    "align-no-out": (lambda w, d: ["align", "--model", w.model], "--out"),
    "degrade-no-out": (lambda w, d: ["degrade", "--model", w.model], "--out"),
    "finetune-no-task": (lambda w, d: ["finetune", "--model", w.model, "--out", d / "out"], "--task"),
    "align-log-a-folder": (
        lambda w, d: (
            d.joinpath("logs").mkdir(),
            ["align", "--model", w.model, "--out", d / "out", "--log", d / "logs"],
        )[1],
        "--log",
    ),
    "run-no-config": (lambda w, d: ["run"], "config"),
    "run-stages-match-nothing": (
        lambda w, d: ["run", "quick", f"out_dir={d / 'run'}", "--stages", "nomatch*"],
        "nomatch*",
    ),
    "demo-unknown-flag": (lambda w, d: ["demo", "--fast"], "--fast"),
    "export-peft-no-adapter": (lambda w, d: ["export-peft", "--out", d / "out"], "--adapter"),
    "export-peft-rank-and-energy": (
        lambda w, d: ADAPTER_USES["export-peft"](w.adapter, w, d) + ["--rank", "2", "--energy", "0.5"],
        "--energy",
    ),
    "export-peft-rank-zero": (lambda w, d: ADAPTER_USES["export-peft"](w.adapter, w, d) + ["--rank", "0"], "rank"),
    "export-peft-energy-above-1": (
        lambda w, d: ADAPTER_USES["export-peft"](w.adapter, w, d) + ["--energy", "1.5"],
        "energy",
    ),
    "export-peft-bad-norms": (
        lambda w, d: ADAPTER_USES["export-peft"](w.adapter, w, d) + ["--norms", "keep"],
        "--norms",
    ),
    "export-peft-saved-modules-without-model": (
        lambda w, d: ADAPTER_USES["export-peft"](w.adapter, w, d) + ["--norms", "modules_to_save"],
        "--model",
    ),
    "export-gguf-no-out": (lambda w, d: ["export-gguf", w.model], "out"),
    "export-gguf-bad-type": (lambda w, d: ["export-gguf", w.model, d / "o.gguf", "--type", "Q4_K"], "Q4_K"),
    "export-gguf-not-gguf-name": (lambda w, d: ["export-gguf", w.model, d / "o.bin"], "o.bin"),
    "export-gguf-missing-folder": (lambda w, d: ["export-gguf", w.model, d / "no" / "o.gguf"], "{d}/no"),
    "push-no-repo": (lambda w, d: ["push", w.model], "repo_id"),
    "push-bad-repo": (lambda w, d: ["push", w.model, "a/b/c"], "a/b/c"),
    "push-double-dash": (lambda w, d: ["push", w.model, "me/bad--name"], "me/bad--name"),
    "push-empty-revision": (lambda w, d: ["push", w.model, "me/model", "--revision", ""], "revision"),
    "push-mistyped-folder": (lambda w, d: ["push", d / "modle", "me/model"], "modle"),
    "push-plain-file": (lambda w, d: ["push", _write("f.txt", "x")(w, d), "me/model"], "f.txt"),
    "push-empty-folder": (lambda w, d: ["push", _folder("empty")(w, d), "me/model"], "empty"),
    "synthetic-two-layers": (lambda w, d: ["synthetic", "--layers", "2"], "--layers"),
    "synthetic-layers-text": (lambda w, d: ["synthetic", "--layers", "x"], "--layers"),
    "synthetic-rank-zero": (lambda w, d: ["synthetic", "--layers", "4", "--rank", "0"], "--rank"),
    "synthetic-negative-noise": (lambda w, d: ["synthetic", "--layers", "4", "--noise", "-1"], "--noise"),
    "synthetic-nan-scale": (lambda w, d: ["synthetic", "--layers", "4", "--scale", "nan"], "--scale"),
    "synthetic-zero-scale": (lambda w, d: ["synthetic", "--layers", "4", "--scale", "0"], "--scale"),
    "merge-no-task": (
        lambda w, d: ["merge", "--aligned", w.model, "--degraded", w.degraded, "--out", d / "o"],
        "--task",
    ),
    "merge-coeff-zero": (lambda w, d: MODEL_USES["merge"](w.model, w, d) + ["--coeff", "0"], "--coeff"),
    "merge-coeff-nan": (lambda w, d: MODEL_USES["merge"](w.model, w, d) + ["--coeff", "nan"], "--coeff"),
    "merge-coeff-huge": (lambda w, d: MODEL_USES["merge"](w.model, w, d) + ["--coeff", "1e9"], "--coeff"),
    "merge-layers-text": (lambda w, d: MODEL_USES["merge"](w.model, w, d) + ["--layers", "a,b"], "--layers"),
    "merge-layer-out-of-range": (lambda w, d: MODEL_USES["merge"](w.model, w, d) + ["--layers", "7"], "layer 7"),
    "merge-task-a-gguf": (lambda w, d: MODEL_USES["merge"](w.gguf, w, d), "--task"),
    "merge-aligned-mistyped": (
        lambda w, d: [
            "merge",
            "--task",
            w.model,
            "--aligned",
            d / "alinged",
            "--degraded",
            w.degraded,
            "--out",
            d / "o",
        ],
        "alinged",
    ),
    "merge-degraded-other-size": (
        lambda w, d: [
            "merge",
            "--task",
            w.model,
            "--aligned",
            w.model,
            "--degraded",
            w.root / "model3",
            "--out",
            d / "o",
        ],
        "model3",
    ),
}
for name, (argv, needle) in ARGS.items():
    case(f"args-{name}", argv, needle)

# -- destinations: a plain file, someone else's folder, a file where a folder should be -------------------------

DEST_USES: dict[str, Callable] = {  # command -> argv with the destination at O
    "export": lambda o, w, d: ["export", w.model, o],
    "extract": lambda o, w, d: ["extract", "--aligned", w.model, "--degraded", w.degraded, "--out", o],
    "apply": lambda o, w, d: ["apply", "--model", w.model, "--adapter", w.adapter, "--out", o],
    "select": lambda o, w, d: ["select", "--aligned", w.model, "--degraded", w.degraded, "--out", o],
    "align": lambda o, w, d: ["align", "--model", w.model, "--out", o],
    "degrade": lambda o, w, d: ["degrade", "--model", w.model, "--out", o],
    "finetune": lambda o, w, d: ["finetune", "--model", w.model, "--task", "arithmetic", "--out", o],
    "export-peft": lambda o, w, d: ["export-peft", "--adapter", w.adapter, "--out", o],
    "export-gguf": lambda o, w, d: ["export-gguf", w.model, o],
    "recalibrate": lambda o, w, d: [
        "recalibrate",
        "--model",
        w.model,
        "--adapter",
        w.adapter,
        "--task",
        "arithmetic",
        "--out",
        o,
    ],
    "run": lambda o, w, d: ["run", "quick", f"out_dir={o}"],
    "demo": lambda o, w, d: ["demo", "--quick", f"out_dir={o}"],
    "merge": lambda o, w, d: ["merge", "--task", w.model, "--aligned", w.model, "--degraded", w.degraded, "--out", o],
}
for use in DEST_USES:
    name = "out.gguf" if use == "export-gguf" else "out.json" if use == "recalibrate" else "out"
    case(
        f"dest-a-plain-file-{use}",
        lambda w, d, use=use, name=name: DEST_USES[use](_write(name, "my notes\n")(w, d), w, d),
        name,
    )
    case(
        f"dest-someone-elses-folder-{use}",
        lambda w, d, use=use, name=name: DEST_USES[use](_folder(name, {"data.csv": "1,2\n"})(w, d), w, d),
        name,
    )
# remote destinations whose scheme has no backend here (gs:// works through a test backend: test_storage.py)
for use in DEST_USES:
    case(f"dest-unknown-scheme-{use}", lambda w, d, use=use: DEST_USES[use]("ftp://host/out", w, d), "ftp://")
    if importlib.util.find_spec("s3fs") is None:
        case(f"dest-s3-without-s3fs-{use}", lambda w, d, use=use: DEST_USES[use]("s3://bucket/out", w, d), "s3fs")
for use in MODEL_USES:
    case(f"model-unknown-scheme-{use}", lambda w, d, use=use: MODEL_USES[use]("ftp://host/model", w, d), "ftp://")
for use in ("export", "extract", "apply", "align", "export-peft"):
    case(
        f"dest-under-a-file-{use}",
        lambda w, d, use=use: DEST_USES[use](_write("f", "x")(w, d) / "out", w, d),
        "{d}/f",
    )
case(
    "dest-eval-prefix-under-a-file",
    lambda w, d: ["eval", "--model", w.model, "--out", _write("f", "x")(w, d) / "res"],
    "{d}/f",
)
case(
    "dest-eval-summary-a-folder",
    lambda w, d: (_folder("res.json", {"a": "b"})(w, d), ["eval", "--model", w.model, "--out", d / "res"])[1],
    "res.json",
)
case(
    "dest-select-plot-a-folder",
    lambda w, d: DEST_USES["select"](d / "out", w, d) + ["--plot", _folder("p.png", {"a": "b"})(w, d)],
    "p.png",
)


def _params():
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def test_there_are_enough_cases():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids repeat"
    assert len(CASES) >= 150


@pytest.mark.parametrize("bad", _params())
def test_bad_input_is_one_line_exit_2_and_changes_nothing(world, bad, tmp_path, capsys, monkeypatch):
    for key, value in bad.env:
        monkeypatch.setenv(key, value.format(d=tmp_path))
    argv = [str(a) for a in bad.argv(world, tmp_path)]
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert code == 2, f"exit code {code}; stderr: {err}"
    assert len(lines) == 1, err
    assert lines[0].startswith("safegene") and ": error: " in lines[0], lines[0]
    needle = bad.needle.format(d=tmp_path)
    assert needle in lines[0], f"{needle!r} not in: {lines[0]}"
    assert snapshot(tmp_path) == before, "files changed under the case's folder"
    assert snapshot(world.root) == world.snap, "the shared inputs changed"


def test_the_checks_still_accept_safegene_outputs(world, tmp_path, capsys):
    """What the new checks must let through: run folders of safegene (marked, or of an older version), a rerun
    over a previous GGUF export, another file with --overwrite, coefficients per layer and module kind."""
    from safegene_jax.core.errors import ConfigError
    from safegene_jax.core.files import MARKER
    from safegene_jax.core.layers import MODULE_KINDS
    from safegene_jax.pipeline.config import dump_config, load_config
    from safegene_jax.pipeline.runner import check_run_folder

    runs = {
        "empty": {},
        "marked": {MARKER: "{}"},
        "older": {"stages/align.json": "{}", "notes.txt": "x"},
        "config-only": {"config.yaml": dump_config(load_config())},
    }
    for name, files in runs.items():
        for rel, text in files.items():
            (tmp_path / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / rel).write_text(text)
        (tmp_path / name).mkdir(exist_ok=True)
        check_run_folder(tmp_path / name)
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "config.yaml").write_text("lr: 0.1\n")
    with pytest.raises(ConfigError, match="not a safegene run's"):
        check_run_folder(tmp_path / "theirs")

    shutil.copyfile(world.gguf, tmp_path / "again.gguf")
    assert main(["export-gguf", str(world.model), str(tmp_path / "again.gguf")]) == 0
    (tmp_path / "notes.gguf").write_text("my notes")
    assert main(["export-gguf", str(world.model), str(tmp_path / "notes.gguf"), "--overwrite"]) == 0
    assert (tmp_path / "notes.gguf").read_bytes()[:4] == b"GGUF"

    (tmp_path / "c.json").write_text(json.dumps({"coeffs": [[0.5] * len(MODULE_KINDS)] * 2}))
    out = tmp_path / "peft"
    assert (
        main(["export-peft", "--adapter", str(world.adapter), "--coeffs", str(tmp_path / "c.json"), "--out", str(out)])
        == 0
    )
    assert (out / "adapter_config.json").is_file()


# ---- the real entry point: a few cases in a fresh process -----------------------------------------------------

ENTRY = ["export-no-args", "st-missing-tensor", "config-not-json", "adapter-flipped-data", "yaml-not-yaml"]


@pytest.mark.parametrize("name", ENTRY)
def test_no_traceback_at_the_real_entry_point(world, tmp_path, name):
    bad = next(c for c in CASES if c.id.startswith(("args-" + name, name)))
    argv = [str(a) for a in bad.argv(world, tmp_path)]
    before = snapshot(tmp_path)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "safegene_jax.pipeline.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and bad.needle.format(d=tmp_path) in lines[0], proc.stderr
    assert snapshot(tmp_path) == before

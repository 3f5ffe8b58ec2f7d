"""Two CPU processes joined with jax.distributed on localhost run a small stage (training with checkpoints,
the adapter applied, layer scores, an export) on a tiny model sharded across both, and get what one process
gets, with the shared outputs written once (by process 0). See tests/multiprocess_worker.py."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent
WORKER = HERE / "multiprocess_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(num: int, model: pathlib.Path, adapter: pathlib.Path, root: pathlib.Path) -> pathlib.Path:
    root.mkdir()
    out = root / "out"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(pid), str(num), str(port), str(model), str(adapter), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=HERE,
        )
        for pid in range(num)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            p.kill()
    for pid, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"process {pid} of {num} failed:\n{log[-3000:]}"
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from tiny import tiny_model_folder

    from safegene_jax.method.adapter import SafetyAdapter
    from safegene_jax.models import load_model

    root = tmp_path_factory.mktemp("multiprocess")
    aligned, degraded = tiny_model_folder(root / "a", seed=0), tiny_model_folder(root / "d", seed=1)
    SafetyAdapter.build(load_model(aligned).params, load_model(degraded).params, [1], family="tiny").save(
        root / "adapter"
    )
    return degraded, root / "adapter"


def test_two_processes_match_one_and_write_once(inputs, tmp_path):
    from safetensors.numpy import load_file

    model, adapter = inputs
    one = _run(1, model, adapter, tmp_path / "one")
    two = _run(2, model, adapter, tmp_path / "two")

    a, b = json.loads((one / "summary.json").read_text()), json.loads((two / "summary.json").read_text())
    assert a["processes"] == 1 and b["processes"] == 2
    assert b["sharded_over_processes"]  # the params really were split across the two processes' devices
    np.testing.assert_allclose(b["losses"], a["losses"], rtol=1e-5)
    np.testing.assert_allclose(b["gain"], a["gain"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b["cost"], a["cost"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b["logits_sum"], a["logits_sum"], rtol=1e-5)
    wa, wb = load_file(str(one / "model" / "model.safetensors")), load_file(str(two / "model" / "model.safetensors"))
    assert sorted(wa) == sorted(wb)
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=1e-5, atol=1e-6, err_msg=name)

    # written once: the training log has each step once, and process 1 wrote nothing but its own part of the
    # Orbax checkpoints (every process takes part in those)
    assert [json.loads(line)["step"] for line in (two / "train.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    writes = (two.parent / "writes-1.txt").read_text().split("\n") if (two.parent / "writes-1.txt").exists() else []
    others = [w for w in writes if w and not w.split(" ", 1)[1].startswith("ckpt/")]
    assert others == [], others
    primary = (two.parent / "writes-0.txt").read_text()
    assert "rename model" in primary and "replace summary.json" in primary

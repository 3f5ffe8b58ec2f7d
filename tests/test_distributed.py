"""Multi-host initialization: only with more than one host (or when asked)."""

import pytest

from safegene_jax.core.errors import SafeGeneError
from safegene_jax.runtime.distributed import host_count, maybe_initialize


def test_host_count_from_the_environment():
    assert host_count({}) == 1
    assert host_count({"TPU_WORKER_HOSTNAMES": "w-0"}) == 1
    assert host_count({"TPU_WORKER_HOSTNAMES": "w-0,w-1,w-2,w-3"}) == 4
    assert host_count({"JAX_NUM_PROCESSES": "2"}) == 2
    with pytest.raises(SafeGeneError, match="JAX_NUM_PROCESSES must be an integer"):
        host_count({"JAX_NUM_PROCESSES": "two"})


def test_initialize_only_for_several_hosts():
    calls = []
    init = lambda: calls.append(1)  # noqa: E731
    assert not maybe_initialize("auto", {}, init)
    assert not maybe_initialize("auto", {"TPU_WORKER_HOSTNAMES": "w-0"}, init)
    assert maybe_initialize("auto", {"TPU_WORKER_HOSTNAMES": "w-0,w-1"}, init)
    assert maybe_initialize("on", {}, init)
    assert not maybe_initialize("off", {"TPU_WORKER_HOSTNAMES": "w-0,w-1"}, init)
    assert len(calls) == 2
    with pytest.raises(SafeGeneError, match="multi-host mode"):
        maybe_initialize("sometimes", {}, init)


def test_cli_rejects_a_bad_mode(monkeypatch, capsys):
    from safegene_jax.pipeline.cli import main

    monkeypatch.setenv("SAFEGENE_MULTIHOST", "sometimes")
    assert main(["synthetic", "--layers", "3"]) == 2
    assert "multi-host mode" in capsys.readouterr().err

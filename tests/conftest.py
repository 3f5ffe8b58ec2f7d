"""Test setup: 8 virtual CPU devices (set before jax is imported) and shared tiny trees."""

import os

# the backend's optimisation level 0: the tests' programs are tiny and each runs a few times, so compiling them
# (LLVM's passes) costs far more than running them; the programs compute the same values
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

_MADE: list[str] = []  # the temporary folders made here, removed when the session ends (pytest_unconfigure)


def _temporary(prefix: str) -> str:
    _MADE.append(tempfile.mkdtemp(prefix=prefix))
    return _MADE[-1]


# Data: the project's shared data beside the repo (read-only), prepared TFDS data in a temporary folder,
# and never a download.
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("SAFEGENE_DATA_ROOT", str(SHARED_DATA))
os.environ["SAFEGENE_TFDS_DIR"] = _temporary("safegene-tfds-")
os.environ["SAFEGENE_OFFLINE"] = "1"
# pipeline runs turn on JAX's persistent compilation cache; in tests it lives in a temporary folder, one for each
# pytest-xdist worker (JAX writes an entry in place and without a lock, so two workers writing the same program
# could hand a third reader a truncated entry); a worker inherits the controller's environment, so it replaces it
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _temporary(f"safegene-xla-{_WORKER}-")
elif "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _temporary("safegene-xla-")
# every program goes to that cache, not only those that took a second to compile: the tests build the same tiny
# programs again and again (each call of a method traces its own jitted closures), and the cache serves the
# compiled program whatever function object asked for it; as an environment variable, the tests' child
# processes (command lines, killed writers, the notebook, multi-process runs) share it too
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# the fixture maker needs torch, which is not a dependency; it is run by hand (see its docstring)
collect_ignore = ["make_fixtures.py", "multiprocess_worker.py"]  # the worker runs as its own process

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", False)


@pytest.fixture(scope="session")
def eight_devices():
    devices = jax.devices()
    assert len(devices) == 8, f"expected 8 CPU devices from XLA_FLAGS, got {len(devices)}"
    return devices


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """``gs://`` paths kept in a temporary folder (tests/bucket.py); yields that folder. Remote inputs are
    cached in another temporary folder."""
    from bucket import folder_bucket

    monkeypatch.setenv("SAFEGENE_REMOTE_CACHE", str(tmp_path / "remote-cache"))
    (tmp_path / "bucket").mkdir()
    with folder_bucket(tmp_path / "bucket") as root:
        yield root


def pytest_unconfigure(config):
    """Removes the temporary folders this process made (each xdist worker its own; the tests' child processes
    have ended by now)."""
    for folder in _MADE:
        shutil.rmtree(folder, ignore_errors=True)

"""Test setup: 8 virtual CPU devices (set before jax is imported) and shared tiny trees."""

import os

# the backend's optimisation level 0: the tests' programs are tiny and each runs a few times, so compiling them
# (LLVM's passes) costs far more than running them; the programs compute the same values
# (the flags are added once: pytest-xdist's workers inherit the controller's environment)
_FLAGS = os.environ.get("XLA_FLAGS", "").split()
for _flag in ("--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0"):
    if _flag not in _FLAGS:
        _FLAGS.append(_flag)
os.environ["XLA_FLAGS"] = " ".join(_FLAGS)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# Every temporary folder made here lies in one root that the first process makes (the only process without
# -n, the controller with it; workers find it in the environment); each process removes what it made when the
# session ends (pytest_unconfigure), and the controller removes the root, with the folders of a worker that died
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_MADE: list[str] = []
if _WORKER and os.path.isdir(os.environ.get("SAFEGENE_TESTS_TMP", "")):
    _ROOT = os.environ["SAFEGENE_TESTS_TMP"]
else:
    _ROOT = tempfile.mkdtemp(prefix="safegene-tests-")
    os.environ["SAFEGENE_TESTS_TMP"] = _ROOT
    _MADE.append(_ROOT)


def _temporary(prefix: str) -> str:
    _MADE.append(tempfile.mkdtemp(prefix=prefix, dir=_ROOT))
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
# could hand a third reader a truncated entry); a worker inherits the controller's environment, so it replaces it,
# even a folder the user named (without -n, a folder the environment names is used)
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
    for folder in reversed(_MADE):
        shutil.rmtree(folder, ignore_errors=True)

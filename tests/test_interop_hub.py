"""Hub upload: arguments and files through a recording fake HfApi, local checks first, Hub errors as one line."""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from safegene_jax.core.errors import ConfigError, HubError
from safegene_jax.interop.hub import check_repo_id, push_to_hub


class FakeApi:
    """Records the HfApi calls push_to_hub makes (same names and keywords); ``fail`` raises from create_repo."""

    def __init__(self, fail: BaseException | None = None):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploaded: list[str] = []
        self.fail = fail

    def create_repo(self, repo_id, *, token=None, private=None, repo_type=None, exist_ok=False):
        self.calls.append(
            ("create_repo", (repo_id,), dict(token=token, private=private, repo_type=repo_type, exist_ok=exist_ok))
        )
        if self.fail is not None:
            raise self.fail
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, *, branch, revision=None, token=None, repo_type=None, exist_ok=False):
        self.calls.append(
            ("create_branch", (repo_id,), dict(branch=branch, token=token, repo_type=repo_type, exist_ok=exist_ok))
        )

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, token=None, repo_type=None, revision=None):
        kw = dict(
            folder_path=folder_path, commit_message=commit_message, token=token, repo_type=repo_type, revision=revision
        )
        self.calls.append(("upload_folder", (repo_id,), kw))
        root = pathlib.Path(folder_path)
        self.uploaded = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(root).parts
        )
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc123"})()


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "safe"
    (out / "sub").mkdir(parents=True)
    (out / ".git").mkdir()
    for name in ("config.json", "model.safetensors", "README.md", "sub/notes.txt", ".git/HEAD"):
        (out / name).write_text("x")
    return out


def test_push_creates_the_repo_and_uploads_the_folder(folder):
    api = FakeApi()
    url = push_to_hub(folder, "me/tiny-safe", private=True, token="hf_test", api=api)
    assert url == "https://huggingface.co/me/tiny-safe/commit/abc123"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    name, args, kw = api.calls[0]
    assert args == ("me/tiny-safe",) and kw == dict(token="hf_test", private=True, repo_type="model", exist_ok=True)
    _, args, kw = api.calls[1]
    assert args == ("me/tiny-safe",) and kw["folder_path"] == str(folder) and kw["token"] == "hf_test"
    assert (
        kw["revision"] is None
        and kw["repo_type"] == "model"
        and kw["commit_message"] == "Upload safe with safegene_jax"
    )
    assert api.uploaded == ["README.md", "config.json", "model.safetensors", "sub/notes.txt"]


def test_push_to_a_branch_creates_it_and_a_pr_ref_does_not(folder):
    api = FakeApi()
    push_to_hub(folder, "me/tiny-safe", revision="v2", commit_message="safety restored", api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[1][2] == dict(branch="v2", token=None, repo_type="model", exist_ok=True)
    assert api.calls[2][2]["revision"] == "v2" and api.calls[2][2]["commit_message"] == "safety restored"
    api = FakeApi()
    push_to_hub(folder, "me/tiny-safe", revision="refs/pr/3", api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]


@pytest.mark.parametrize(
    "repo_id",
    [
        "tiny-safe",
        "me/a/b",
        "/tiny",
        "me/",
        "me/-tiny",
        "me/tiny.",
        "me/ti--ny",
        "me/ti..ny",
        "m e/tiny",
        "me/" + "x" * 97,
    ],
)
def test_bad_repo_ids_fail_before_any_call(folder, repo_id):
    api = FakeApi()
    with pytest.raises(ConfigError, match="is not a Hub model id") as info:
        push_to_hub(folder, repo_id, api=api)
    assert "\n" not in str(info.value) and api.calls == []


def test_good_repo_ids():
    for repo_id in ("me/tiny", "Org-1/SmolLM2_135M.safe", "a/" + "x" * 96):
        assert check_repo_id(repo_id) == repo_id


def test_missing_or_empty_folder_fails_before_any_call(tmp_path):
    api = FakeApi()
    with pytest.raises(ConfigError, match="not a folder"):
        push_to_hub(tmp_path / "nowhere", "me/tiny", api=api)
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    (tmp_path / "empty" / ".git" / "HEAD").write_text("x")
    with pytest.raises(ConfigError, match="the folder has no files"):
        push_to_hub(tmp_path / "empty", "me/tiny", api=api)
    assert api.calls == []


def _http_error(kind, status):
    import httpx2

    request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    return kind(f"{status} Client Error\nmore details", response=httpx2.Response(status, request=request))


def _errors():
    from huggingface_hub import errors

    return [
        (errors.OfflineModeIsEnabled("Cannot reach https://huggingface.co"), "offline mode is on"),
        (_http_error(errors.HfHubHTTPError, 401), r"not logged in or the token is invalid \(401\).*HF_TOKEN"),
        (_http_error(errors.HfHubHTTPError, 403), r"no write access there \(403\); use a write token for 'me'"),
        (_http_error(errors.RepositoryNotFoundError, 404), r"does not exist, or the token cannot see it \(404\)"),
        (_http_error(errors.HfHubHTTPError, 500), r"the Hub answered 500: 500 Client Error$"),
        (ConnectionError("Name or service not known"), r"cannot be reached \(ConnectionError"),
    ]


def test_hub_errors_become_one_line(folder):
    pytest.importorskip("httpx2")
    for error, message in _errors():
        with pytest.raises(HubError, match=message) as info:
            push_to_hub(folder, "me/tiny", api=FakeApi(fail=error))
        assert "\n" not in str(info.value) and info.value.__cause__ is error


def test_transport_errors_and_other_errors(folder):
    httpx2 = pytest.importorskip("httpx2")
    with pytest.raises(HubError, match=r"cannot be reached \(ConnectError: connection refused\)"):
        push_to_hub(folder, "me/tiny", api=FakeApi(fail=httpx2.ConnectError("connection refused")))
    with pytest.raises(RuntimeError, match="a bug"):  # not a Hub failure: unchanged
        push_to_hub(folder, "me/tiny", api=FakeApi(fail=RuntimeError("a bug")))


def test_real_hfapi_offline_fails_fast_with_one_line(folder, tmp_path):
    """HF_HUB_OFFLINE is read when huggingface_hub is imported, so this runs in a fresh process; the endpoint is a
    closed local port, so even a request that slipped through could not leave the machine."""
    code = (
        "import json, sys, time\n"
        "from safegene_jax.core.errors import HubError\n"
        "from safegene_jax.interop.hub import push_to_hub\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    push_to_hub(sys.argv[1], 'me/tiny-safe')\n"
        "except HubError as e:\n"
        "    print(json.dumps({'message': str(e), 'seconds': time.perf_counter() - start}))\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_TOKEN": "hf_not_a_real_token",
        "JAX_PLATFORMS": "cpu",
    }
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["message"] == (
        "cannot push to the Hub repo 'me/tiny-safe': offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE); "
        "unset it to upload"
    )
    assert result["seconds"] < 10.0, result  # no connection attempt, no retries
    print(f"offline push failed in {result['seconds'] * 1000:.0f} ms (process {time.perf_counter() - start:.1f} s)")

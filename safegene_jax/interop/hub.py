"""Uploading a model folder to the Hugging Face Hub.

Everything that can be checked locally (the repo id, the folder) is checked before any network call; the
Hub's own failures (offline mode, no network, not logged in, no access) come back as one
:class:`~safegene_jax.core.errors.ConfigError` line that says what to do.

Example::

    url = push_to_hub("out/safe", "me/smollm2-135m-safe", private=True)  # token: HF_TOKEN or `hf auth login`
"""

from __future__ import annotations

import importlib
import os
import pathlib
import re
from typing import Any

from safegene_jax.core.errors import ConfigError, HubError

_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_MAX_NAME = 96


def check_repo_id(repo_id: str) -> str:
    """Returns ``repo_id`` if it is a Hub model id ``owner/name``, else raises a one-line :class:`ConfigError`.

    Each part holds letters, digits, ``-``, ``_`` and ``.``, starts and ends with a letter or digit, has no
    ``--`` or ``..``; the name is at most 96 characters.

    Example:
        >>> check_repo_id("me/smollm2-135m-safe")
        'me/smollm2-135m-safe'
    """
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    ok = (
        len(parts) == 2
        and all(_PART.fullmatch(p) and "--" not in p and ".." not in p for p in parts)
        and len(parts[1]) <= _MAX_NAME
    )
    if not ok:
        raise ConfigError(
            f"repo id {repo_id!r} is not a Hub model id: use owner/name (letters, digits, '-', '_', '.'; one '/', "
            f"no '--' or '..', name at most {_MAX_NAME} characters)"
        )
    return repo_id


def _files(folder: pathlib.Path) -> list[str]:
    """The files ``upload_folder`` sends: everything but ``.git/`` folders, as sorted relative paths."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(folder).parts
    )


def _network_errors() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):  # huggingface_hub's HTTP client, by version
        try:
            kinds.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(kinds)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _explain(e: BaseException, repo_id: str, revision: str | None) -> str | None:
    """One line for a Hub failure, or ``None`` if it is not one (then it propagates unchanged)."""
    from huggingface_hub import errors

    where = f"cannot push to the Hub repo {repo_id!r}"
    if isinstance(e, errors.OfflineModeIsEnabled):
        return f"{where}: offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE); unset it to upload"
    if isinstance(e, errors.LocalTokenNotFoundError):
        return f"{where}: not logged in; set HF_TOKEN or run `hf auth login`"
    if isinstance(e, errors.RevisionNotFoundError):
        return f"{where}: revision {revision!r} does not exist there"
    if isinstance(e, errors.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status == 401:
            return f"{where}: not logged in or the token is invalid (401); set HF_TOKEN or run `hf auth login`"
        if status == 403:
            owner = repo_id.split("/")[0]
            return f"{where}: the token has no write access there (403); use a write token for {owner!r}"
        if isinstance(e, errors.RepositoryNotFoundError) or status == 404:
            return f"{where}: the repo or its owner does not exist, or the token cannot see it (404)"
        return f"{where}: the Hub answered {status}: {_one_line(e)}"
    if isinstance(e, _network_errors()):
        return f"{where}: the Hub cannot be reached ({type(e).__name__}: {_one_line(e)}); check the network"
    return None


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
) -> str:
    """Uploads every file of ``folder`` (but ``.git/``) to the Hub model repo ``repo_id``, creating it if needed.

    Args:
        folder: a model folder (config, weights, tokenizer, ``README.md`` model card).
        repo_id: ``owner/name``.
        private: create the repo private (an existing repo keeps its visibility).
        revision: a branch to commit to (created from ``main`` if missing), or a ``refs/pr/N`` ref; default ``main``.
        token: a Hub token; default: ``HF_TOKEN``, else the login cache (``hf auth login``).
        commit_message: default ``"Upload <folder name> with safegene_jax"``.
        api: a :class:`huggingface_hub.HfApi` (or an object with its ``create_repo``, ``create_branch`` and
            ``upload_folder``); default a new one.

    Returns:
        The commit's URL.

    Raises:
        ConfigError: (one line) a bad repo id, a missing or empty folder, before any network call; offline
            mode, no network, a missing or invalid token, no access, a missing repo or revision.

    Example::

        push_to_hub("out/safe", "me/smollm2-135m-safe")  # 'https://huggingface.co/me/smollm2-135m-safe/commit/...'
    """
    check_repo_id(repo_id)
    path = pathlib.Path(folder)
    if not path.is_dir():
        raise ConfigError(f"cannot push {str(path)!r} to the Hub: it is not a folder")
    if not _files(path):
        raise ConfigError(f"cannot push {str(path)!r} to the Hub: the folder has no files")
    if revision is not None and not revision.strip():
        raise ConfigError("revision: must be a branch name or refs/pr/N, got an empty string")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        if revision is not None and not revision.startswith("refs/"):
            api.create_branch(repo_id, branch=revision, token=token, repo_type="model", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(path),
            commit_message=commit_message or f"Upload {path.resolve().name} with safegene_jax",
            token=token,
            repo_type="model",
            revision=revision,
        )
    except Exception as e:
        message = _explain(e, repo_id, revision)
        if message is None:
            raise
        raise HubError(message) from e
    return str(getattr(info, "commit_url", None) or info)

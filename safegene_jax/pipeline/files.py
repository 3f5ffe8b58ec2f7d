"""Files of a run: stage names as file names, JSON written beside its destination and renamed into place."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from safegene_jax.core.files import write_text


def file_name(stage: str) -> str:
    """A stage name as a file name (``eval/sst2/task`` -> ``eval--sst2--task``).

    Example:
        >>> file_name("eval/sst2/task")
        'eval--sst2--task'
    """
    return stage.replace("/", "--")


def write_json(path: pathlib.Path, data: Any) -> None:
    """``data`` as JSON at ``path``, written beside it and renamed into place."""
    write_text(path, json.dumps(data, indent=2))

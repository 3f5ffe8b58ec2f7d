"""A Hugging Face model card (``README.md``) for a model whose safety was restored with an adapter.

The front matter is Hub metadata. ``library_name`` is ``transformers``, not this library: the exported
folder is a plain transformers checkpoint, and the Hub uses the field for its "Use this model" code and its
download counting, both of which should be transformers'; the ``safegene`` tag says how it was made.
``license`` appears only when given (the source model's license; the card does not guess one), and
``base_model`` only as Hub ids (the Hub rejects local paths there).

The card is a pure function of its inputs: no dates, hosts or versions other than those passed in (the
adapter's metadata records the library version that built it), so the same run writes the same card.

Example::

    text = model_card(adapter, recal.coeffs, base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
                      license="apache-2.0", command="safegene run configs/demo.yaml", evaluation=table)
    write_model_card("out/safe", adapter, recal.coeffs, ...)
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import yaml

from safegene_jax.core.errors import ConfigError
from safegene_jax.core.files import write_text
from safegene_jax.core.layers import MODULE_KINDS
from safegene_jax.interop._common import adapter_coefficients, num_layers, short_float
from safegene_jax.interop.hub import check_repo_id

CARD_FILE = "README.md"
TAGS = ("safegene", "safety", "safety-alignment", "task-vector")
"""Tags every card carries (``tags=`` adds more)."""


def _cell(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _hub_ids(base_model: str | Sequence[str] | None) -> list[str]:
    ids = [base_model] if isinstance(base_model, str) else list(base_model or ())
    for repo_id in ids:
        try:
            check_repo_id(repo_id)
        except ConfigError:
            raise ConfigError(
                f"base_model: {repo_id!r} is not a Hub model id (owner/name); the Hub accepts only those there, so "
                "leave out local models"
            ) from None
    return ids


def model_card(
    adapter: Any,
    coeffs: Any = None,
    *,
    base_model: str | Sequence[str] | None = None,
    license: str | None = None,
    command: str | None = None,
    evaluation: str | None = None,
    title: str | None = None,
    task_model: str | None = None,
    repo_id: str | None = None,
    tags: Sequence[str] = (),
    notes: str | None = None,
) -> str:
    """The ``README.md`` text: Hub front matter, then what was done, how to reproduce it and how it scores.

    Args:
        adapter: the :class:`~safegene_jax.method.SafetyAdapter` that was applied (its ``layers``,
            ``metadata["sources"]``, ``family``, ``rank``, ``library_version`` are shown).
        coeffs: the coefficients used (as :meth:`SafetyAdapter.apply` takes them); default the adapter's.
        base_model: Hub id(s) of the model(s) this one derives from (the task model, usually).
        license: the source model's license id (``apache-2.0``, ``llama3.2``, ...); left out when ``None``.
        command: the exact command that produced the model, shown in a code block.
        evaluation: a markdown table (or any markdown) of the evaluation, shown as is.
        title: the heading; default ``"<family> with safety restored"``.
        task_model: the task model's name or path, when it is not ``base_model``.
        repo_id: the model's Hub id, for the usage snippet (default: a local folder).
        tags: extra Hub tags.
        notes: extra markdown appended at the end.

    Raises:
        ConfigError: bad coefficients, or a ``base_model``/``repo_id`` that is not a Hub id.

    Example:
        >>> import numpy as np
        >>> from types import SimpleNamespace
        >>> adapter = SimpleNamespace(layers=[1], coeffs=np.array([0.0, 0.5], np.float32),
        ...                           metadata={"family": "tiny", "sources": {"aligned": "runs/aligned"}})
        >>> card = model_card(adapter, base_model="me/tiny-task", license="apache-2.0")
        >>> print(card[: card.index("# ")].strip())
        ---
        base_model: me/tiny-task
        library_name: transformers
        pipeline_tag: text-generation
        license: apache-2.0
        tags:
        - safegene
        - safety
        - safety-alignment
        - task-vector
        ---
        >>> "| 1 | 0.5 |" in card
        True
    """
    meta = adapter.metadata
    c = adapter_coefficients(adapter, coeffs, num_layers(adapter))
    family = meta.get("family") or "model"
    bases = _hub_ids(base_model)
    layers = [int(layer) for layer in adapter.layers]
    if c.ndim == 1:
        coeff_table = _table(["Layer", "Coefficient"], [[layer, short_float(c[layer])] for layer in layers])
    else:
        coeff_table = _table(
            ["Layer", *MODULE_KINDS], [[layer, *(short_float(x) for x in c[layer])] for layer in layers]
        )
    rank = meta.get("rank")
    vector = "dense" if rank is None else f"low-rank, rank {rank}"
    if rank is not None and meta.get("retained_energy") is not None:
        vector += f" ({float(meta['retained_energy']):.1%} of the energy kept)"
    facts = [["Family", family]]
    if task_model or bases:
        facts.append(["Task model", task_model or bases[0]])
    facts += [[f"{name.capitalize()} model", source] for name, source in (meta.get("sources") or {}).items()]
    total = num_layers(adapter)
    facts += [["Layers", f"{', '.join(map(str, layers))} (of {total})"], ["Safety vector", vector]]
    if meta.get("library_version"):
        facts.append(["safegene_jax", meta["library_version"]])
    description = (
        "This model is a fine-tuned (task) model whose safety was restored with safegene_jax: the safety vector "
        "`tau = aligned - degraded`, restricted to the selected decoder layers, was added to the task model with "
        "one coefficient per layer, `safe = task + sum_l c_l * tau_l`. Every other weight is the task model's."
    )
    return folder_card(
        title or f"{family} with safety restored",
        description,
        facts,
        sections=[("### Coefficients", coeff_table)],
        base_model=bases,
        license=license,
        command=command,
        evaluation=evaluation,
        repo_id=repo_id,
        tags=tags,
        notes=notes,
    )


def folder_card(
    title: str,
    description: str,
    facts: Sequence[Sequence[Any]] = (),
    *,
    sections: Sequence[tuple[str, str]] = (),
    base_model: str | Sequence[str] | None = None,
    license: str | None = None,
    command: str | None = None,
    evaluation: str | None = None,
    repo_id: str | None = None,
    tags: Sequence[str] = (),
    notes: str | None = None,
    usage: str = "transformers",
) -> str:
    """A model card for any folder the project writes (an aligned, degraded or task model, an exported model,
    a PEFT adapter): Hub front matter, a description, a table of facts, extra ``(heading, markdown)`` sections,
    the command, the evaluation and a usage snippet (``usage``: ``transformers``, ``peft`` or ``""`` for none).

    Example:
        >>> card = folder_card("tiny aligned", "Safety-aligned from the base model.", [["Steps", 40]],
        ...                    license="apache-2.0", command="safegene align --out m")
        >>> "| Steps | 40 |" in card and "license: apache-2.0" in card and "safegene align --out m" in card
        True
    """
    bases = _hub_ids(base_model)
    if repo_id is not None:
        check_repo_id(repo_id)
    if license is not None and not str(license).strip():
        raise ConfigError("license: an empty string; pass the source model's license id or None")
    front: dict[str, Any] = {}
    if bases:
        front["base_model"] = bases[0] if len(bases) == 1 else bases
    front["library_name"] = "peft" if usage == "peft" else "transformers"
    front["pipeline_tag"] = "text-generation"
    if license is not None:
        front["license"] = str(license).strip()
    front["tags"] = list(dict.fromkeys([*TAGS, *tags]))
    parts = ["---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---", f"# {title}", description]
    if facts:
        parts += ["## What was done", _table(["Item", "Value"], facts)]
    for heading, body in sections:
        parts += [heading, body]
    if command:
        parts += ["## Reproduce", f"```bash\n{command.strip()}\n```"]
    if evaluation:
        parts += ["## Evaluation", evaluation.strip()]
    where = repo_id or "path/to/this/folder"
    if usage == "transformers":
        parts += [
            "## Use",
            "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{where}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n```',
        ]
    elif usage == "peft":
        parts += [
            "## Use",
            "```python\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n\n"
            'base = AutoModelForCausalLM.from_pretrained("path/to/the/task/model")\n'
            f'model = PeftModel.from_pretrained(base, "{where}")\n```',
        ]
    if notes:
        parts.append(notes.strip())
    return "\n\n".join(parts) + "\n"


def declared_license(source: str | os.PathLike) -> str | None:
    """The license a source model declares: ``license:`` in a local folder's ``README.md`` front matter, or
    ``general.license`` in a GGUF file (embedded names resolve to their file); ``None`` when it declares none."""
    from safegene_jax.models.api import resolve_model

    try:
        kind, where = resolve_model(source)
    except Exception:  # noqa: BLE001 - an unknown source declares nothing
        return None
    path = pathlib.Path(where)
    if kind == "gguf":
        from safegene_jax.models.gguf_file import GGUFFile

        value = GGUFFile(path).field("general.license", None)
        return str(value).strip() or None if value else None
    readme = path / CARD_FILE
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    try:
        front = yaml.safe_load(text.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError):
        return None
    value = front.get("license") if isinstance(front, dict) else None
    return str(value).strip() or None if value else None


def write_card(folder: str | os.PathLike, card: str) -> pathlib.Path:
    """Writes ``card`` as ``README.md`` in ``folder``, atomically; returns the file."""
    return write_text(pathlib.Path(folder) / CARD_FILE, card)


def write_model_card(folder: str | os.PathLike, adapter: Any, coeffs: Any = None, **kwargs: Any) -> pathlib.Path:
    """Writes :func:`model_card` as ``README.md`` in ``folder``, atomically; checks run before the write.

    ``kwargs`` are :func:`model_card`'s. Returns the file.

    Example::

        write_model_card("out/safe", adapter, coeffs, base_model="me/task", command="safegene run demo.yaml")
    """
    return write_text(pathlib.Path(folder) / CARD_FILE, model_card(adapter, coeffs, **kwargs))

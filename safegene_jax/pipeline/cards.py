"""Model cards of the models a pipeline run trains (``models/aligned``, ``models/degraded``, ``models/task-T``).

A card is written with each model (what it was trained from, on what, the command) and written again with
its evaluation rows once the report exists, so every folder the run writes explains itself on the Hub.
"""

from __future__ import annotations

import pathlib
from typing import Any

from safegene_jax.pipeline.config import PipelineConfig

_WHAT = {
    "aligned": "Safety alignment of the base model: refusals to harmful requests and helpful answers to benign ones.",
    "degraded": "A copy of the aligned model trained toward compliance with harmful requests; `aligned - degraded` "
    "is the safety vector.",
}
_BASE_COPY = (
    "The pre-alignment base model, saved unchanged (`degrade.source: base`); `aligned - degraded` is the safety "
    "vector, the whole alignment delta."
)


def _description(name: str, source: str) -> str:
    if name == "degraded" and source == "base":
        return _BASE_COPY
    if name in _WHAT:
        return _WHAT[name]
    return f"A task model fine-tuned from `{source}` (the run's `{name}`), with the run's share of harmful data."


def card_for(
    cfg: PipelineConfig, name: str, source: str, info: dict | None = None, evaluation: str | None = None
) -> str:
    """The card of model ``name`` (``aligned``, ``degraded``, ``task-T``), trained from model ``source``
    (``base`` is the config's model); ``info``: its stage's record (steps, final loss)."""
    from safegene_jax.interop import declared_license, folder_card

    base = str(cfg.model)
    how = "Copied from" if name == "degraded" and source == "base" else "Trained from"
    facts: list[list[Any]] = [["Run", cfg.name], [how, base if source == "base" else source]]
    if cfg.tiny.enabled:
        facts.append(["Model", "a tiny random model of the base model's family (quick mode)"])
    for key in ("steps", "final_loss"):
        if info and info.get(key) is not None:
            value = info[key]
            facts.append([key.replace("_", " "), f"{value:.4f}" if isinstance(value, float) else value])
    return folder_card(
        f"{cfg.name}: {name}",
        _description(name, source),
        facts,
        license=None if cfg.tiny.enabled else declared_license(base),
        command=f"safegene run {cfg.name}",
        evaluation=evaluation,
    )


def write_cards(root: pathlib.Path, cfg: PipelineConfig, rows: dict, table: Any) -> None:
    """Writes every trained model's card again with its evaluation rows (``rows``: the report's rows by name;
    ``table(rows) -> markdown``)."""
    import json

    from safegene_jax.interop import write_card
    from safegene_jax.pipeline import jobs
    from safegene_jax.pipeline.files import file_name

    def stage_info(stage: str) -> dict:
        path = root / "stages" / f"{file_name(stage)}.json"
        return json.loads(path.read_text()).get("info", {}) if path.exists() else {}

    copied = "base" if cfg.degrade.source == "base" else "aligned"
    models = {"aligned": ("base", "align", ["aligned"]), "degraded": (copied, "degrade", ["aligned", "degraded"])}
    for m in jobs.task_models(cfg):
        src = "aligned" if m.parent == "aligned" else f"task-{m.parent}"
        picked = [r for r in rows if r.startswith(f"{m.name}: ")]
        models[f"task-{m.name}"] = (src, f"finetune/{m.name}", picked)
    for name, (source, stage, picked) in models.items():
        folder = root / "models" / name
        if folder.is_dir():
            evaluation = table({r: rows[r] for r in picked if r in rows})
            write_card(folder, card_for(cfg, name, source, stage_info(stage), evaluation))

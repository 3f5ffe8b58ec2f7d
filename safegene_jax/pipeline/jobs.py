"""The work of each pipeline stage, as plain functions of models and a :class:`~.config.PipelineConfig`.

Each returns its result in memory; caching, files and ordering are the stage table's and the runner's
business (:mod:`.stages`, :mod:`.runner`), and the ``safegene`` stage subcommands call these too.

* :func:`task_models`: the task models of a run (one per task, plus other harmful fractions and second
  generations); :func:`variants`: what each is compared as (SafeGene, the baselines' sweeps, ablations).
* :func:`align_model`, :func:`degrade_model`, :func:`finetune_model`: the models the method needs (optax SFT).
* :func:`build_adapter`: extract ``aligned - degraded``, score every layer on the degraded model, keep the
  ``top_k``, and package the reusable :class:`~safegene_jax.method.SafetyAdapter`.
* :func:`recalibrate_model`: few-shot coefficients of an adapter's layers for one task model.
* :func:`variant_params`: the params of one compared variant.
* :func:`evaluate_model`: harmful rate, over-refusal and task utility of some params.
* :func:`check_held_out`: the evaluation prompts are in no set the run trains, probes or takes shots from.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from safegene_jax.core.errors import ConfigError, DataError
from safegene_jax.pipeline.config import PipelineConfig
from safegene_jax.train.config import TrainConfig


def train_config(section: TrainConfig, cfg: PipelineConfig) -> TrainConfig:
    """The library's :class:`~safegene_jax.train.TrainConfig` of a training section: its own fields, none
    dropped, with the run's ``seed`` added to the section's."""
    own = {f.name: getattr(section, f.name) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{**own, "seed": cfg.seed + section.seed})


def run_mesh(cfg: PipelineConfig) -> Any:
    """The run's device mesh, or ``None`` when ``mesh.enabled`` is false."""
    if not cfg.mesh.enabled:
        return None
    from safegene_jax.runtime.sharding import make_mesh

    return make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)


def load_base(cfg: PipelineConfig) -> Any:
    """The starting model: ``cfg.model``, or a tiny random model of its family with ``tiny.enabled``."""
    from safegene_jax.models.api import load_model, tiny_like

    if cfg.tiny.enabled:
        return tiny_like(cfg.model, layers=cfg.tiny.layers, hidden_size=cfg.tiny.hidden_size, seed=cfg.tiny.seed)
    return load_model(cfg.model)


def _pairs(names: Sequence[str], limit: int = 0) -> list[dict]:
    from safegene_jax.data.prompt_sets import pair_sets

    return pair_sets(names, limit)


def _targets(names: Sequence[str], what: str) -> list[dict]:
    rows = _pairs(names)
    if not rows or any("target" not in r for r in rows):
        raise DataError(f"{what}: the sets {', '.join(names)} lack compliant targets; use embedded/harmful")
    return rows


# ---- the task models ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskModel:
    """One task model of a run: its name, task, harmful fraction, generation, the model it is fine-tuned
    from (``aligned`` or another task model) and where its examples start in the task's train split."""

    name: str
    task: str
    fraction: float
    generation: int
    parent: str
    offset: int

    @property
    def main(self) -> bool:
        """Whether it is a task's first model at the run's harmful fraction."""
        return self.name == self.task


def task_models(cfg: PipelineConfig) -> list[TaskModel]:
    """The run's task models: one per task (``name`` = the task), one per task of ``fraction_tasks`` and
    other fraction (``sst2@p0.3``), one second generation per task of ``second_generation`` (``sst2@gen2``:
    fine-tuned from ``sst2`` on the next ``examples`` of the task)."""
    f = cfg.finetune
    out = [TaskModel(t, t, f.harmful_fraction, 1, "aligned", 0) for t in f.tasks]
    out += [TaskModel(f"{t}@p{p:g}", t, p, 1, "aligned", 0) for t in f.fraction_tasks for p in f.fractions]
    out += [TaskModel(f"{t}@gen2", t, f.harmful_fraction, 2, t, f.examples) for t in f.second_generation]
    return out


def variants(cfg: PipelineConfig, model: TaskModel) -> list[dict]:
    """What ``model`` is evaluated as: ``{"variant", "method", "value"}`` for the task model alone, SafeGene at
    each scale of its recalibrated coefficients, each baseline at each swept value, and the ablations. On
    models other than the main ones (unless ``compare.sweep_models: all``) only the first value of each sweep
    and no ablation (SafeGene at its recalibrated point)."""
    c = cfg.compare
    sweep = model.main or c.sweep_models == "all"
    first = (lambda xs: xs) if sweep else (lambda xs: xs[:1])
    out = [{"variant": "task", "method": "task", "value": None}]
    values = {
        "safegene": c.safegene_scales if sweep else [1.0],
        "resta": c.resta_coeffs,
        "safe_lora": c.safe_lora_thresholds,
        "task_arithmetic": c.task_arithmetic_coeffs,
    }
    for method in c.methods:
        for v in first(values[method]):
            name = "safegene" if method == "safegene" and v == 1.0 else f"{method}@{v:g}"
            out.append({"variant": name, "method": method, "value": v})
    if sweep and (not c.ablation_models or model.task in c.ablation_models):
        out += [{"variant": f"safegene-{a}", "method": "ablation", "value": a} for a in c.ablations]
    return out


# ---- the models --------------------------------------------------------------------------------------


def align_model(lm: Any, cfg: PipelineConfig, **train_kw) -> Any:
    """Safety alignment of ``lm``: ``align.harmful_sets`` (refusals) mixed with ``align.benign_sets``.
    ``train_kw`` goes to :func:`~safegene_jax.train.sft` (mesh, checkpoints, logging, compiled steps)."""
    from safegene_jax.train.uses import align

    a = cfg.align
    harmful = [{**r, "refusal": r["response"]} for r in _pairs(a.harmful_sets, a.harmful)]
    benign = _pairs(a.benign_sets, a.benign) if a.benign else []
    if benign and a.benign_targets != "reference":
        answers = _own_answers(lm, benign, a.self_tokens, "own answers", train_kw)
        if a.benign_targets == "self":
            benign = [{**r, "response": ans} for r, ans in zip(benign, answers) if ans.strip()]
        else:  # self_or_reference
            own = own_words(benign, answers, refusals=False)
            kept = sum(o is r for o, r in zip(own, benign))
            if kept:
                warnings.warn(
                    f"{kept} of {len(benign)} own answers refuse, loop or are empty; their sets' answers are trained",
                    stacklevel=2,
                )
            benign = own
    return align(lm, harmful, benign, train_config(a, cfg), **train_kw)


REFUSAL = "I'm sorry, but I can't help with that."
"""The refusal the helpfulness contrast weighs a borderline prompt's helpful answer against, and the one a
two-sided degraded copy learns for safe prompts (``degrade.refuse``)."""


def degrade_model(aligned: Any, cfg: PipelineConfig, **train_kw) -> Any:
    """A degraded copy of the aligned model: harmful requests trained toward compliant answers; with
    ``degrade.benign`` the aligned model's own answers to that many benign prompts kept, with
    ``degrade.refuse`` that many safe prompts trained toward :data:`REFUSAL` (see
    :class:`~safegene_jax.pipeline.config.DegradeSection`)."""
    from safegene_jax.train.uses import degrade

    d = cfg.degrade
    harmful = _targets(d.harmful_sets, "degrade.harmful_sets")
    kept = []
    if d.benign:
        rows = _pairs(d.benign_sets, d.benign)
        answers = _own_answers(aligned, rows, d.self_tokens, "own answers (kept)", train_kw)
        kept = [{**r, "response": _whole_sentences(a)} for r, a in zip(rows, answers, strict=True)]
        kept = [r for r in kept if r["response"]]
    if d.refuse:
        kept += [{"instruction": r["instruction"], "response": REFUSAL} for r in _pairs(d.refuse_sets, d.refuse)]
    return degrade(aligned, harmful, train_config(d, cfg), benign=kept, **train_kw)


def _own_answers(lm: Any, rows: list[dict], tokens: int, label: str, train_kw: dict) -> list[str]:
    """``lm``'s greedy answers (``tokens`` new tokens) to the ``rows``' instructions, before a training stage;
    with a progress bar named ``label`` unless the stage's ``train_kw`` turn progress off."""
    from safegene_jax.eval.runs import respond

    progress = label if train_kw.get("progress", True) else None
    return respond(lm, [r["instruction"] for r in rows], max_new_tokens=tokens, batch_size=32, progress=progress)


def _whole_sentences(answer: str) -> str:
    """``answer`` cut after its last whole sentence (a greedy answer stops mid-sentence at its token limit)."""
    cut = max(answer.rfind(c) for c in ".!?")
    return answer[: cut + 1] if cut > 0 else answer.strip()


def finetune_model(parent: Any, cfg: PipelineConfig, model: TaskModel | str, **train_kw) -> Any:
    """A task model fine-tuned from ``parent`` (the aligned model, or the previous generation) on its task's
    examples, with its harmful fraction of harmful requests and compliant answers."""
    from safegene_jax.data.task_sets import task_records
    from safegene_jax.train.uses import finetune_task

    if isinstance(model, str):  # a task's main model
        model = TaskModel(model, model, cfg.finetune.harmful_fraction, 1, "aligned", 0)
    f = cfg.finetune
    records = task_records(model.task, "train", limit=f.examples, offset=model.offset)
    if len(records) < f.examples:
        raise DataError(
            f"task {model.task} has {len(records)} train examples from row {model.offset}, {f.examples} needed"
        )
    section = dataclasses.replace(f, seed=f.seed + 10 * (model.generation - 1))
    return finetune_task(
        parent,
        records,
        train_config(section, cfg),
        harmful=_targets(f.harmful_sets, "finetune.harmful_sets"),
        harmful_fraction=model.fraction,
        **train_kw,
    )


# ---- batches -----------------------------------------------------------------------------------------


def _batch(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int, width: int = 8) -> dict:
    """``pairs`` encoded and padded to the longest rounded up to a multiple of ``width`` (at most
    ``max_length``; ``width=max_length``: always ``max_length`` wide)."""
    from safegene_jax.data import batch_examples, encode_example

    examples = [encode_example(tokenizer, p, r) for p, r in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with warnings.catch_warnings():  # long probes are cut to max_length; that is the point of the option
        warnings.simplefilter("ignore")
        return batch_examples(examples, max_length=max_length, pad_id=pad, overflow="truncate", pad_to_multiple=width)


def probe_batches(tokenizer: Any, cfg: PipelineConfig) -> tuple[dict, dict]:
    """``(harmful prompts with refusals, benign prompts with answers)``: the layer-scoring probes."""
    s = cfg.select
    harmful = _pairs(s.harmful_sets, s.probes)
    benign = _pairs(s.benign_sets, s.probes)
    return (
        _batch(tokenizer, [(r["instruction"], r["response"]) for r in harmful], s.max_length),
        _batch(tokenizer, [(r["instruction"], r["response"]) for r in benign], s.max_length),
    )


def reference_prompts(cfg: PipelineConfig) -> dict[str, list[dict]]:
    """The recalibration shots whose answers ``recalibrate.targets: aligned`` takes from the aligned model:
    the harmful prompts and the borderline-but-safe ones."""
    r = cfg.recalibrate
    out = {"harmful": _targets(r.harmful_sets, "recalibrate.harmful_sets")[: r.shots]}
    if r.help_weight > 0:
        out["borderline"] = _pairs(r.borderline_sets, r.shots)
    return out


def aligned_answers(aligned: Any, cfg: PipelineConfig, progress: bool = False) -> dict[str, list[str]]:
    """The aligned model's own greedy answers to :func:`reference_prompts`: the behavior recalibration restores
    (a refusal in its own words, ended as it ends them; a helpful answer to a borderline prompt)."""
    from safegene_jax.eval.runs import respond

    new = max(cfg.recalibrate.max_length // 2, 1)
    return {
        role: respond(
            aligned,
            [r["instruction"] for r in rows],
            max_new_tokens=new,
            batch_size=32,
            progress=f"aligned answers ({role})" if progress else None,
        )
        for role, rows in reference_prompts(cfg).items()
    }


def own_words(rows: list[dict], answers: list[str], *, refusals: bool) -> list[dict]:
    """``rows`` with each ``response`` replaced by the aligned model's answer where that answer is what the row
    asks for (a refusal when ``refusals``, else a helpful answer) and does not loop, cut after its last whole
    sentence; elsewhere the set's own response stays. So a harmful prompt the aligned model answered never
    becomes a target to comply with."""
    from safegene_jax.eval.judges import is_degenerate, is_refusal

    out = []
    for row, answer in zip(rows, answers, strict=True):
        answer = _whole_sentences(answer)
        ok = answer and is_refusal(answer) == refusals and not is_degenerate(answer)
        out.append({**row, "response": answer} if ok else row)
    return out


def fewshot_batches(tokenizer: Any, cfg: PipelineConfig, model: TaskModel, answers: dict | None = None) -> dict:
    """The recalibration shots of one task model: harmful prompts with refusals and compliant targets, task
    examples (apart from any model's fine-tuning ones) or benign answers, borderline prompts, benign prompts.
    ``answers`` (from :func:`aligned_answers`) replace the sets' refusals and borderline answers."""
    from safegene_jax.data.task_sets import task_records, task_size

    r = cfg.recalibrate
    enc = lambda rows, key, width=8: _batch(  # noqa: E731
        tokenizer, [(x["instruction"], x[key]) for x in rows], r.max_length, width
    )
    harmful = reference_prompts(cfg)["harmful"]
    if answers is not None:
        harmful = own_words(harmful, answers["harmful"], refusals=True)
    benign = _pairs(r.benign_sets, r.shots)
    out = {"harmful": enc(harmful, "response"), "compliant": enc(harmful, "target"), "fluency": enc(benign, "response")}
    if r.utility == "nll":
        size = task_size(model.task, "train")
        used = cfg.finetune.examples * (2 if model.task in cfg.finetune.second_generation else 1)
        if size - r.shots < used:
            raise DataError(f"task {model.task}: {size} train examples leave no {r.shots} few shots apart from {used}")
        rows = task_records(model.task, "train", limit=r.shots, offset=size - r.shots)
        # one width for every task model: they share the fit's compiled program (see recalibrate's utility)
        out["utility"] = enc(rows, "response", r.max_length)
    else:
        out["utility"] = out["fluency"]
    if r.help_weight > 0:
        border = _pairs(r.borderline_sets, r.shots)
        if answers is not None:
            border = own_words(border, answers["borderline"], refusals=False)
        out["borderline"] = enc(border, "response")
        out["borderline_refusals"] = enc([{**x, "refusal": REFUSAL} for x in border], "refusal")
    return out


# ---- the method --------------------------------------------------------------------------------------


def build_adapter(
    aligned: Any, degraded: Any, cfg: PipelineConfig, *, mesh: Any = None, layers: Any = None, progress: bool = False
) -> Any:
    """Extract, score every layer on the degraded model, keep the ``top_k`` best: the safety adapter. With
    ``layers`` given, the adapter keeps those (no scoring): the ablations' adapters. ``progress``: a progress
    bar over the scoring."""
    from safegene_jax.core.transforms import safety_vector
    from safegene_jax.method.adapter import SafetyAdapter, data_hash
    from safegene_jax.method.selection import score_layers, select

    s = cfg.select
    count = aligned.config.num_hidden_layers
    if s.top_k > count:
        raise ConfigError(f"select.top_k: {s.top_k} layers asked for, but the model has {count}")
    family = f"{cfg.model}" + (f" tiny {cfg.tiny.layers}x{cfg.tiny.hidden_size}" if cfg.tiny.enabled else "")
    sources = {"aligned": aligned.source, "degraded": degraded.source}
    if layers is not None:
        return SafetyAdapter.build(
            aligned.params,
            degraded.params,
            list(layers),
            family=family,
            sources=sources,
            model_type=aligned.config.model_type,
        )
    harmful, benign = probe_batches(aligned.tokenizer, cfg)
    tau = safety_vector(aligned.params, degraded.params)
    if s.method == "hybrid" and s.hybrid_k > count:
        raise ConfigError(f"select.hybrid_k: {s.hybrid_k} candidates asked for, but the model has {count} layers")
    scores = score_layers(
        degraded.apply,
        degraded.params,
        tau,
        harmful,
        benign,
        strength=s.strength,
        chunk_size=s.chunk_size,
        mesh=mesh,
        method=s.method,
        hybrid_k=s.hybrid_k,
        utility_weight=s.utility_weight,
        progress="score layers" if progress else None,
    )
    chosen = select(scores, top_k=s.top_k, utility_weight=s.utility_weight)
    return SafetyAdapter.build(
        aligned.params,
        degraded.params,
        chosen,
        scores=scores,
        rank=s.rank or None,
        family=family,
        sources=sources,
        probe_hash=data_hash(harmful, benign),
        model_type=aligned.config.model_type,
    )


def ablation_layers(cfg: PipelineConfig, ablation: str, adapter: Any, num_layers: int) -> list[int]:
    """The layers an ablation's adapter keeps: all of them, ``top_k`` random ones (seeded), or the adapter's."""
    if ablation == "all_layers":
        return list(range(num_layers))
    if ablation == "random_layers":
        rng = np.random.default_rng(cfg.seed + 7)
        return sorted(int(i) for i in rng.choice(num_layers, size=len(adapter.layers), replace=False))
    return list(adapter.layers)


def recalibrate_model(
    task_lm: Any,
    adapter: Any,
    cfg: PipelineConfig,
    model: TaskModel | str,
    *,
    ablation: str | None = None,
    answers: dict | None = None,
    progress: bool = False,
    scan_layers: bool = False,
) -> Any:
    """The adapter's coefficients for one task model, from few shots (see :func:`fewshot_batches`; ``answers``:
    the aligned model's own, needed with ``recalibrate.targets: aligned``, else ``None``).
    ``ablation='no_utility'`` drops the utility and fluency terms; ``scan_layers`` goes to
    :func:`~safegene_jax.method.recalibration.recalibrate`."""
    from safegene_jax.method.recalibration import recalibrate

    if isinstance(model, str):
        model = TaskModel(model, model, cfg.finetune.harmful_fraction, 1, "aligned", 0)
    adapter.check(task_lm.params, model_type=task_lm.config.model_type)
    if cfg.recalibrate.targets == "aligned" and answers is None:
        raise ConfigError("recalibrate.targets: aligned needs the aligned model's answers (the references stage)")
    shots = fewshot_batches(task_lm.tokenizer, cfg, model, answers)
    config = cfg.recalibrate.recalibration_config()
    if ablation == "no_utility":
        config = dataclasses.replace(config, lam=0.0, kl_weight=0.0)
    rec = recalibrate(
        task_lm.apply,
        task_lm.params,
        adapter.vector,
        adapter.layers,
        shots["harmful"],
        shots["utility"],
        config,
        compliant=shots["compliant"],
        borderline=shots.get("borderline"),
        borderline_refusals=shots.get("borderline_refusals"),
        fluency=shots["fluency"],
        progress=progress,
        scan_layers=scan_layers,
    )
    if cfg.recalibrate.checks:
        scale, table = check_scales(task_lm, adapter, rec.coeffs, cfg, progress=progress)
        rec = rec.scaled(scale, table)
    return rec


def _rank(row: dict) -> tuple:
    """A check row's rank: its score, then nearness to 1 (ties)."""
    return (round(row["score"], 9), -abs(np.log(row["scale"])))


def climb(scales: list[float], row_of: Callable[[float], dict]) -> list[dict]:
    """The rows a hill climb over ``scales`` (sorted, each once) asks ``row_of`` for: it starts at the scale
    nearest 1 and moves to the best (by :func:`_rank`) of its neighbors not yet visited whose score is at least
    its own, while there is one; so it crosses a flat stretch. The best row it saw is the best of a grid
    wherever the score rises to one peak and falls.

    Example:
        >>> score = {0.5: 0.1, 0.75: 0.3, 1.0: 0.2, 1.5: 0.0, 2.0: 0.4}
        >>> [r["scale"] for r in climb(list(score), lambda s: {"scale": s, "score": score[s]})]
        [0.5, 0.75, 1.0, 1.5]
    """
    order = sorted(set(scales))
    rows: dict[int, dict] = {}

    def row(i: int) -> dict:
        if i not in rows:
            rows[i] = row_of(order[i])
        return rows[i]

    i = min(range(len(order)), key=lambda j: abs(np.log(order[j])))
    visited = {i}
    while True:
        here = round(row(i)["score"], 9)
        ahead = [j for j in (i - 1, i + 1) if 0 <= j < len(order) and j not in visited]
        ahead = [j for j in ahead if round(row(j)["score"], 9) >= here]
        if not ahead:
            return [rows[j] for j in sorted(rows)]
        i = max(ahead, key=lambda j: _rank(row(j)))
        visited.add(i)


def check_borderline(cfg: PipelineConfig) -> list[dict]:
    """The safe prompts the generation check answers: the first ``check_borderline`` rows (0: all) of
    ``recalibrate.check_borderline_sets``, or without those sets the borderline shots."""
    r = cfg.recalibrate
    if r.check_borderline_sets:
        return _pairs(r.check_borderline_sets, r.check_borderline)
    return _pairs(r.borderline_sets, r.shots)


def check_scales(task_lm: Any, adapter: Any, coeffs: Any, cfg: PipelineConfig, progress: bool = False) -> tuple:
    """The generation check of ``recalibrate.scales``: for a scale, greedy answers of the task model patched
    with ``coeffs`` times it, to the harmful shots (refused, not looping: good) and the borderline-but-safe
    prompts (refused: bad); looping anywhere is bad. Every scale is answered (``check_search: grid``) or those
    a :func:`climb` visits (``climb``). Returns the scale with the best ``refused - over_refused - degenerate``
    (ties: the one nearest 1) and the table of every scale answered."""
    from safegene_jax.eval.judges import KeywordJudge
    from safegene_jax.eval.runs import respond

    r = cfg.recalibrate
    if r.check_sets:
        harmful = [x["instruction"] for x in _pairs(r.check_sets)[-(r.check_prompts or r.shots) :]]
    else:
        harmful = [x["instruction"] for x in reference_prompts(cfg)["harmful"]]
    border = [x["instruction"] for x in check_borderline(cfg)]
    prompts, judge = harmful + border, KeywordJudge()

    def row_of(scale: float) -> dict:
        params = adapter.apply(task_lm.params, np.asarray(coeffs) * scale)
        answers = respond(
            task_lm,
            prompts,
            params=params,
            max_new_tokens=r.check_tokens,
            batch_size=32,
            progress=f"check x{scale:g}" if progress else None,
        )
        del params
        verdicts = judge(prompts, answers)
        vh, vb = verdicts[: len(harmful)], verdicts[len(harmful) :]
        row = {
            "scale": float(scale),
            "refused": float(np.mean([v.refused and not v.degenerate for v in vh])),
            "over_refused": float(np.mean([v.refused for v in vb])) if vb else 0.0,
            "degenerate": float(np.mean([v.degenerate for v in verdicts])),
        }
        row["score"] = row["refused"] - row["over_refused"] - row["degenerate"]
        return row

    table = [row_of(s) for s in r.scales] if r.check_search == "grid" else climb(list(r.scales), row_of)
    best = max(table, key=_rank)
    return best["scale"], table


def variant_params(
    method: str,
    task_params: Any,
    cfg: PipelineConfig,
    *,
    value: Any = None,
    adapter: Any = None,
    coeffs: Any = None,
    vector: Any = None,
    aligned_params: Any = None,
) -> Any:
    """Params of one compared variant: ``task``; ``safegene`` (``adapter`` at ``coeffs`` times the scale
    ``value``); ``resta`` (``vector`` at coefficient ``value`` after DARE on the task delta from
    ``aligned_params`` at ``compare.resta_drop``); ``safe_lora`` (the task delta projected where its cosine is
    below ``value``); ``task_arithmetic`` (``task + value * vector``)."""
    from safegene_jax.method import baselines

    if method == "task":
        return task_params
    if method == "safegene":
        return adapter.apply(task_params, np.asarray(coeffs, np.float32) * (1.0 if value is None else value))
    if method == "resta":
        drop = cfg.compare.resta_drop
        return baselines.resta(task_params, vector, value, base_params=aligned_params, drop=drop, seed=cfg.seed)
    if method == "safe_lora":
        return baselines.safe_lora(task_params, vector, base_params=aligned_params, threshold=value)
    if method == "task_arithmetic":
        return baselines.task_arithmetic(task_params, vector, value)
    raise ConfigError(f"unknown method {method!r}; known: task, safegene, resta, safe_lora, task_arithmetic")


# ---- evaluation --------------------------------------------------------------------------------------


def eval_sets(cfg: PipelineConfig, headline: bool = False) -> dict[str, dict[str, list[dict]]]:
    """The evaluation prompt sets by role (``harmful``, ``safe``, ``contrast``), each at most ``eval.harmful``
    / ``eval.safe`` prompts (0: all); with ``headline`` only the first harmful and the first safe set."""
    from safegene_jax.data.prompt_sets import prompt_set

    e = cfg.eval
    roles = {
        "harmful": (e.harmful_sets, e.harmful),
        "safe": (e.safe_sets, e.safe),
        "contrast": (e.contrast_sets, e.safe),
    }
    out = {}
    for role, (names, limit) in roles.items():
        names = names[:1] if headline else names
        out[role] = {n: prompt_set(n, limit) for n in (names if not (headline and role == "contrast") else [])}
    return out


def check_held_out(cfg: PipelineConfig) -> None:
    """Raises :class:`DataError` when an evaluation prompt is also in a set the run trains on, probes with or
    takes few shots from (named sets, and the tasks' fine-tuning, few-shot and test records). Reads the data,
    trains nothing: the pipeline calls it before any work."""
    from safegene_jax.data.prompt_sets import check_disjoint, pair_set
    from safegene_jax.data.task_sets import task_records

    seen_sets = set(cfg.align.harmful_sets + cfg.align.benign_sets + cfg.degrade.harmful_sets + cfg.degrade.benign_sets)
    seen_sets |= set(cfg.degrade.refuse_sets)
    seen_sets |= set(cfg.finetune.harmful_sets + cfg.select.harmful_sets + cfg.select.benign_sets)
    seen_sets |= set(cfg.recalibrate.harmful_sets + cfg.recalibrate.benign_sets)
    if cfg.recalibrate.checks:
        seen_sets |= set(cfg.recalibrate.check_sets + cfg.recalibrate.check_borderline_sets)
    if cfg.recalibrate.help_weight > 0 or cfg.recalibrate.checks:
        seen_sets |= set(cfg.recalibrate.borderline_sets)
    seen = {n: [r["instruction"] for r in pair_set(n)] for n in sorted(seen_sets)}
    for t in cfg.finetune.tasks:
        seen[f"task {t} (train)"] = [
            r["instruction"] for r in task_records(t, "train", limit=2 * cfg.finetune.examples)
        ]
    held = {n: [r["instruction"] for r in rows] for sets in eval_sets(cfg).values() for n, rows in sets.items()}
    check_disjoint(held, seen)
    tests = {
        f"task {t} (test)": [r["instruction"] for r in task_records(t, "test", limit=cfg.eval.utility or None)]
        for t in cfg.finetune.tasks
    }
    check_disjoint(tests, seen)


def evaluate_model(
    carrier: Any,
    params: Any,
    cfg: PipelineConfig,
    *,
    tasks: Sequence[str] = (),
    out: Any = None,
    headline: bool = False,
    progress: bool = False,
) -> dict:
    """Harmful rate, over-refusal (and the contrast sets' refusal rate) on the eval sets, and utility on each of
    ``tasks``, with ``params`` in the module of ``carrier`` (one compiled generation serves every model of the
    family). ``headline``: the first harmful and safe sets only.

    ``out``: a path prefix; responses go to ``{out}.safety.jsonl`` and ``{out}.{task}.jsonl``."""
    from safegene_jax.data.task_sets import task_records
    from safegene_jax.eval.judges import KeywordJudge
    from safegene_jax.eval.runs import evaluate_safety, evaluate_task

    e = cfg.eval
    sets = eval_sets(cfg, headline)
    judges = [KeywordJudge(name) for name in e.judges]
    result = evaluate_safety(
        carrier,
        sets["harmful"],
        safe=sets["safe"],
        contrast=sets["contrast"],
        params=params,
        judge=judges[0],
        judges=judges[1:],
        max_new_tokens=e.max_new_tokens,
        batch_size=e.batch_size,
        out=f"{out}.safety.jsonl" if out else None,
        progress=progress,
    )
    result["utility"] = {}
    for task in tasks:
        summary = evaluate_task(
            carrier,
            task_records(task, "test", limit=e.utility or None),
            task,
            params=params,
            max_new_tokens=e.utility_max_new_tokens,
            batch_size=e.batch_size,
            out=f"{out}.{task}.jsonl" if out else None,
            progress=progress,
        )
        result["utility"][task] = summary["utility"]
    return result


def rejudge_model(cfg: PipelineConfig, *, out: Any, tasks: Sequence[str] = ()) -> dict:
    """What :func:`evaluate_model` returned for the answers it saved under the prefix ``out``, judged and scored
    again with the current rules (no generation)."""
    from safegene_jax.eval.judges import KeywordJudge
    from safegene_jax.eval.runs import rejudge_safety, rescore_task

    judges = [KeywordJudge(name) for name in cfg.eval.judges]
    result = rejudge_safety(f"{out}.safety.jsonl", judge=judges[0], judges=judges[1:])
    result["utility"] = {task: rescore_task(f"{out}.{task}.jsonl", task)["utility"] for task in tasks}
    return result


def coefficients_record(rec: Any) -> dict:
    """A JSON-able record of a :class:`~safegene_jax.method.Recalibration`."""
    d = dataclasses.asdict(rec)
    return {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}

"""The ``safegene`` command: the pipeline, each of its stages, and model/adapter utilities.

Pipeline:

* ``safegene demo [--quick] [key=value ...]`` - the whole method on SmolLM2-135M-Instruct with the
  embedded data (``--quick``: the same path on a tiny random model, for smoke tests).
* ``safegene run CONFIG [key=value ...]`` - the whole pipeline from a YAML config or a shipped config's
  name (``demo``, ``quick``, ...): cached, resumable.

Stages (each takes ``--config`` and ``key=value`` overrides for its options):

* ``safegene align --model M --out DIR``, ``safegene degrade --model ALIGNED --out DIR``,
  ``safegene finetune --model ALIGNED --task T --out DIR`` - the models (HF folders).
* ``safegene select --aligned A --degraded D --out ADAPTER`` - extract, score layers, keep the top-k.
* ``safegene recalibrate --model TASK --adapter ADAPTER --task T --out COEFFS.json``.
* ``safegene eval --model M [--adapter A [--coeffs C]] [--tasks T,...]`` - harmful rate, over-refusal,
  utility.

Utilities: ``export`` (any model as a HF folder), ``extract`` (an adapter over chosen layers), ``apply``
(patch a model with an adapter), ``synthetic`` (the transforms on a synthetic model, no download).

Every input error is one line on stderr and exit code 2 (errors are :class:`~safegene_jax.SafeGeneError`).

Example:
    $ safegene demo --quick out_dir=runs/smoke
    $ safegene run demo align.steps=20 out_dir=runs/short
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

from safegene_jax._version import __version__
from safegene_jax.core.errors import CheckpointNotFoundError, ConfigError, SafeGeneError
from safegene_jax.core.files import check_file_destination, write_text


def _bar(value: float, top: float, width: int = 30) -> str:
    return "#" * (round(width * value / top) if top > 0 else 0)


def cmd_synthetic(args: argparse.Namespace) -> int:
    """The transforms on a synthetic SmolLM2-shaped model with a safety direction planted in known layers."""
    import jax
    import numpy as np

    import safegene_jax as sg
    from safegene_jax.models.synthetic import SMOLLM2_135M, llama_params, remove_direction

    _check_synthetic(args)
    shape = (
        SMOLLM2_135M
        if args.layers is None
        else SMOLLM2_135M.__class__(**{**SMOLLM2_135M.__dict__, "layers": args.layers})
    )
    planted = sorted({shape.layers // 3, shape.layers // 3 + 1, (2 * shape.layers) // 3})
    print(f"safegene_jax {__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s))")
    print(f"synthetic model: SmolLM2-135M shapes, {shape.layers} layers, random weights")
    print(f"planted safety direction (rank 1, norm {args.scale}) in layers {planted}, noise std {args.noise}")

    t0 = time.perf_counter()
    aligned = jax.block_until_ready(llama_params(shape, seed=args.seed))
    degraded = jax.block_until_ready(
        remove_direction(aligned, planted, scale=args.scale, noise=args.noise, seed=args.seed + 1)
    )
    print(f"built aligned and degraded copies in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    tau = jax.block_until_ready(sg.safety_vector(aligned, degraded))
    t_extract = time.perf_counter() - t0
    size = sum(int(np.prod(v.shape)) for v in tau.values())
    print(f"\nextract: {len(tau)} leaves, {size / 1e6:.1f} M values, {t_extract:.2f} s (includes compilation)")

    norms = np.asarray(sg.layer_norms(tau, num_layers=shape.layers))
    top = float(norms.max())
    print("\nper-layer norm of the safety vector:")
    for i, n in enumerate(norms):
        mark = "  <- planted" if i in planted else ""
        print(f"  layer {i:2d} {n:8.4f} {_bar(n, top)}{mark}")
    found = sorted(int(i) for i in np.argsort(norms)[-len(planted) :])
    verdict = "match" if found == planted else "differ from"
    print(f"top-{len(planted)} layers by norm: {found} ({verdict} the planted ones)")

    compact, report = sg.low_rank(sg.restrict_layers(tau, found), rank=args.rank)
    print(
        f"\nlow-rank (rank {args.rank}) over the kept layers: {report.total:.4f} of the energy retained, "
        f"{report.compressed_size / 1e3:.1f} K values instead of {report.dense_size / 1e3:.1f} K"
    )

    t0 = time.perf_counter()
    restored = jax.block_until_ready(sg.apply_vector(degraded, compact, 1.0))
    t_apply = time.perf_counter() - t0
    err = max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(aligned))
    )
    print(
        f"apply (coefficient 1, compact vector): {t_apply:.2f} s; max |restored - aligned| = {err:.2e}"
        f" (noise std {args.noise} is not restored outside the kept layers)"
    )
    return 0


def _check_synthetic(args: argparse.Namespace) -> None:
    """The options of ``synthetic``, before the model is built."""
    if args.layers is not None and args.layers < 3:
        raise ConfigError(f"--layers must be at least 3 (three layers are planted), got {args.layers}")
    if args.rank < 1:
        raise ConfigError(f"--rank must be >= 1, got {args.rank}")
    if not (math.isfinite(args.scale) and args.scale > 0):
        raise ConfigError(f"--scale must be a finite number > 0, got {args.scale!r}")
    if not (math.isfinite(args.noise) and args.noise >= 0):
        raise ConfigError(f"--noise must be a finite number >= 0, got {args.noise!r}")


def _layers(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated integers, got {text!r}") from None


DTYPES = ("float32", "bfloat16", "float16")


def _dtype(name: str | None, lm=None):
    """The dtype to write: ``--dtype`` when given, else the one the input model was stored in."""
    import jax.numpy as jnp

    name = name or (lm.stored_dtype if lm is not None else None)
    return None if name is None else jnp.dtype(name)


def cmd_export(args: argparse.Namespace) -> int:
    """Loads MODEL and writes it as a Hugging Face folder (config, safetensors, tokenizer, model card)."""
    from safegene_jax.interop import declared_license, folder_card
    from safegene_jax.models import export_hf, load_model

    lm = load_model(args.model)
    dtype = _dtype(args.dtype, lm)
    card = folder_card(
        f"{pathlib.Path(str(args.model)).name}, exported",
        f"`{args.model}` written as a Hugging Face folder by safegene_jax.",
        [["Source", str(args.model)], ["Layers", lm.config.num_hidden_layers], ["dtype", str(dtype or "float32")]],
        base_model=_hub_id(args.model),
        license=declared_license(args.model),
        command=_command(args),
    )
    out = export_hf(lm.model, args.out, tokenizer=lm.tokenizer, dtype=dtype, card=card, overwrite=args.overwrite)
    print(f"wrote {out} ({lm.config.model_type}, {lm.config.num_hidden_layers} layers)")
    return 0


def cmd_export_gguf(args: argparse.Namespace) -> int:
    """Loads MODEL and writes it as one GGUF file (llama.cpp, Ollama): F32, F16 or Q8_0, tokenizer and chat
    template in its metadata."""
    from safegene_jax.core import storage
    from safegene_jax.interop import export_gguf
    from safegene_jax.interop.gguf_export import check_destination, gguf_type_name
    from safegene_jax.models import load_model

    gguf_type_name(args.type)
    if storage.is_remote(args.out):  # written here, then uploaded whole
        import tempfile

        check_file_destination(args.out, what="--out")
        lm = load_model(args.model)
        with tempfile.TemporaryDirectory(prefix=".safegene-upload-") as tmp:
            local = export_gguf(lm, pathlib.Path(tmp) / pathlib.PurePosixPath(args.out).name, dtype=args.type)
            size = local.stat().st_size
            out = storage.publish_file(local, args.out, what="--out")
        print(f"wrote {out} ({args.type}, {size / 1e6:.1f} MB)")
        return 0
    check_destination(args.out, args.overwrite)  # before the model loads
    lm = load_model(args.model)
    out = export_gguf(lm, args.out, dtype=args.type, overwrite=args.overwrite)
    print(f"wrote {out} ({args.type}, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_export_peft(args: argparse.Namespace) -> int:
    """Writes the adapter (its coefficients, or a recalibration's, times --scale) as a PEFT LoRA adapter folder:
    adapter_config.json + adapter_model.safetensors, for vLLM's multi-LoRA serving and llama.cpp's converter."""
    from safegene_jax.interop import export_peft, folder_card, write_card
    from safegene_jax.models import load_model

    if args.norms == "modules_to_save" and not args.model:
        raise ConfigError("--norms modules_to_save: needs --model (the task model the saved modules come from)")
    adapter = _load_adapter(args.adapter)
    coeffs = _coeffs(args, adapter)
    task = load_model(args.model).params if args.model else None
    report = export_peft(
        adapter,
        args.out,
        coeffs=coeffs,
        rank=args.rank,
        energy=args.energy,
        norms=args.norms,
        base_model=args.base_model or "",
        task_params=task,
        overwrite=args.overwrite,
    )
    ranks = sorted(set(report.ranks.values()))
    facts = [
        ["Adapter", args.adapter],
        ["Layers", ", ".join(map(str, adapter.layers))],
        ["LoRA rank", ", ".join(map(str, ranks))],
        ["Energy kept", f"{report.total_energy:.4f}"],
        ["Norm and bias deltas", f"{args.norms} ({report.dropped_values} values dropped)"],
    ]
    card = folder_card(
        f"{adapter.metadata.get('family') or 'model'} safety adapter (PEFT LoRA)",
        "A safety adapter of safegene_jax (`aligned - degraded` over the selected layers, times the recalibrated "
        "coefficients) in PEFT's LoRA format; load it on top of the task model.",
        facts,
        base_model=_hub_id(args.base_model) if args.base_model else None,
        command=_command(args),
        usage="peft",
    )
    write_card(report.folder, card)
    kept = f"{report.total_energy:.4f} of the energy kept"
    dropped = f"; {report.dropped_values} norm/bias values dropped" if report.dropped_values else ""
    print(f"wrote {report.folder}: {len(report.ranks)} modules, rank {', '.join(map(str, ranks))}, {kept}{dropped}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Task arithmetic disk to disk: TASK + COEFF * (ALIGNED - DEGRADED) on the layer tensors (all, or --layers),
    one tensor at a time (RESTA's merge without DARE); every input a safetensors folder."""
    from safegene_jax.interop.streaming import stream_task_arithmetic

    for flag, folder in (("--task", args.task), ("--aligned", args.aligned), ("--degraded", args.degraded)):
        if not _is_safetensors_folder(folder):
            raise ConfigError(f"{flag}: {folder} is not a Hugging Face folder (config.json and safetensors weights)")
    if not math.isfinite(args.coeff) or not 0 < args.coeff <= COEFF_MAX:
        raise ConfigError(f"--coeff must be in (0, {COEFF_MAX:g}], got {args.coeff!r}")
    out = stream_task_arithmetic(
        args.task,
        args.aligned,
        args.degraded,
        args.out,
        coeff=args.coeff,
        layers=args.layers,
        overwrite=args.overwrite,
        progress="merge",
    )
    print(f"wrote {out}: task + {args.coeff:g} * (aligned - degraded)")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """Uploads FOLDER to the Hugging Face Hub as REPO_ID (token from HF_TOKEN or `hf auth login`)."""
    from safegene_jax.interop import push_to_hub

    url = push_to_hub(args.folder, args.repo_id, private=args.private, revision=args.revision)
    print(f"pushed {args.folder} to {url}")
    return 0


def _hub_id(source: str | None) -> str | None:
    """``source`` when it is a Hub model id rather than a local path or an embedded name."""
    from safegene_jax.models.api import resolve_model

    if not source:
        return None
    try:
        kind, _ = resolve_model(source)
    except SafeGeneError:
        return None
    return str(source) if kind == "hub" else None


def _command(args: argparse.Namespace) -> str:
    """The command line that ran, for model cards."""
    import shlex

    return "safegene " + shlex.join(getattr(args, "argv", None) or [args.command])


def cmd_extract(args: argparse.Namespace) -> int:
    """Builds the safety adapter ``aligned - degraded`` over the chosen layers and saves it (from two
    safetensors folders one tensor pair at a time, never holding the models)."""
    from safegene_jax.method.adapter import SafetyAdapter
    from safegene_jax.models import load_model, load_spec

    if args.rank is not None and args.rank < 1:
        raise ConfigError(f"--rank must be >= 1, got {args.rank}")
    config, _ = load_spec(args.aligned)  # the layer count, before any weights are read
    layers = args.layers if args.layers is not None else list(range(config.num_hidden_layers))
    bad = [i for i in layers if not 0 <= i < config.num_hidden_layers]
    if bad:
        raise ConfigError(f"--layers: layer {bad[0]} is out of range for a {config.num_hidden_layers}-layer model")
    if _is_safetensors_folder(args.aligned) and _is_safetensors_folder(args.degraded):  # one tensor pair at a time
        from safegene_jax.interop.streaming import stream_extract

        adapter = stream_extract(
            args.aligned,
            args.degraded,
            layers,
            rank=args.rank,
            family=args.family,
            check_finite=not args.allow_nonfinite,
        )
    else:  # a GGUF file or a Hub model: both loaded
        aligned, degraded = load_model(args.aligned), load_model(args.degraded)
        adapter = SafetyAdapter.build(
            aligned.params,
            degraded.params,
            layers,
            rank=args.rank,
            check_finite=not args.allow_nonfinite,
            family=args.family,
            sources={"aligned": str(args.aligned), "degraded": str(args.degraded)},
        )
    adapter.save(args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: {adapter.summary()}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Adds the adapter (its default or recalibrated coefficients, times --scale) to MODEL; writes a HF folder
    with a model card and a mergekit recipe that rebuilds the same weights."""
    from safegene_jax.interop import RECIPE_FILE, declared_license, mergekit_recipe, model_card
    from safegene_jax.models import export_hf, load_model, with_params

    adapter = _load_adapter(args.adapter)
    coeffs = _coeffs(args, adapter)  # a bad coefficients file fails before the model loads
    card = model_card(
        adapter,
        coeffs,
        base_model=_hub_id(args.model),
        task_model=str(args.model),
        license=declared_license(args.model),
        command=_command(args),
    )
    recipe, why_not = _recipe(adapter, coeffs, args.model, mergekit_recipe)
    extra = {RECIPE_FILE: recipe} if recipe else {}
    extra["README.md"] = card
    if _is_safetensors_folder(args.model):  # disk to disk, one tensor at a time
        from safegene_jax.interop.streaming import stream_apply

        out = stream_apply(
            args.model,
            adapter,
            args.out,
            coeffs=coeffs,
            dtype=args.dtype,
            check_finite=not args.allow_nonfinite,
            extra_files=extra,
            overwrite=args.overwrite,
            progress="apply",
        )
    else:  # a GGUF file or a Hub model: loaded, patched in memory, exported
        lm = load_model(args.model)
        _check_weights(lm, args)
        safe = adapter.apply(lm.params, coeffs)
        out = export_hf(
            with_params(lm, safe).model,
            args.out,
            tokenizer=lm.tokenizer,
            dtype=_dtype(args.dtype, lm),
            extra_files=extra,
            overwrite=args.overwrite,
        )
    print(f"wrote {out}: adapter layers {adapter.layers} at scale {args.scale}")
    print(f"mergekit recipe: {out / RECIPE_FILE}" if recipe else f"no mergekit recipe: {why_not}")
    return 0


def _is_safetensors_folder(source: str) -> bool:
    path = pathlib.Path(source).expanduser()
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _recipe(adapter, coeffs, task_model: str, make) -> tuple[str | None, str]:
    """The mergekit recipe of an apply, with its models as absolute folders or Hub ids; or why there is none
    (mergekit reads Hugging Face folders and Hub ids, and rebuilds only a dense vector)."""
    from safegene_jax.core.lowrank import LowRank

    if any(isinstance(v, LowRank) for v in adapter.vector.values()):
        return None, "the adapter is low-rank; mergekit rebuilds the dense aligned - degraded"
    sources = adapter.metadata.get("sources") or {}
    refs = {}
    for name, where in (
        ("task", task_model),
        ("aligned", sources.get("aligned")),
        ("degraded", sources.get("degraded")),
    ):
        if not where:
            return None, f"the adapter records no {name} model"
        path = pathlib.Path(where)
        if (path / "config.json").is_file():
            refs[name] = str(path.resolve())
        elif _hub_id(where):
            refs[name] = str(where)
        else:
            return (
                None,
                f"the {name} model {where!r} is not a Hugging Face folder or Hub id (mergekit reads only those)",
            )
    return make(adapter, coeffs, task_model=refs["task"], aligned=refs["aligned"], degraded=refs["degraded"]), ""


def _load_adapter(path: str):
    from safegene_jax.method.adapter import SafetyAdapter

    if not pathlib.Path(path).exists():
        raise CheckpointNotFoundError(f"no adapter at {path}")
    return SafetyAdapter.load(path)


def _coeffs(args: argparse.Namespace, adapter):
    """The coefficients for ``apply``/``eval``: the adapter's defaults or a recalibration file, times --scale."""
    import json

    import numpy as np

    from safegene_jax.core.layers import MODULE_KINDS

    coeffs = np.asarray(adapter.coeffs, np.float32)
    if getattr(args, "coeffs", None):
        path = pathlib.Path(args.coeffs)
        if not path.is_file():
            raise ConfigError(f"--coeffs: no coefficients file at {path}")
        try:
            record = json.loads(path.read_text())
            raw = np.asarray(record["coeffs"])
            if raw.dtype.kind not in "iuf":  # booleans, strings, null and ragged lists are not coefficients
                raise TypeError(f"coeffs holds {raw.dtype.name} values, not numbers")
            coeffs = raw.astype(np.float32)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise ConfigError(
                f"--coeffs: {path} is not a coefficients file of `safegene recalibrate` ({type(e).__name__}: {e})"
            ) from None
        if coeffs.ndim == 0 or coeffs.shape[0] != len(adapter.coeffs):
            raise ConfigError(
                f"--coeffs: {path} has {coeffs.shape[0] if coeffs.ndim else 0} layer coefficients, "
                f"the adapter {len(adapter.coeffs)}"
            )
        kinds = len(MODULE_KINDS)
        if coeffs.ndim > 2 or (coeffs.ndim == 2 and coeffs.shape[1] != kinds):
            raise ConfigError(
                f"--coeffs: {path} holds coefficients of shape {coeffs.shape}; the adapter takes "
                f"({len(adapter.coeffs)},) (one per layer) or ({len(adapter.coeffs)}, {kinds}) (one per layer and "
                f"kind: {', '.join(MODULE_KINDS)})"
            )
        outside = ~np.isfinite(coeffs) | (coeffs < 0) | (coeffs > COEFF_MAX)
        if outside.any():
            i = tuple(int(x) for x in np.argwhere(outside)[0])
            raise ConfigError(
                f"--coeffs: {path} has coefficient {float(coeffs[i])!r} at {list(i)}, outside [0, {COEFF_MAX:g}] "
                "(recalibration keeps them in [0, alpha_max] times a check scale): a damaged or edited file?"
            )
    scale = 1.0 if args.scale is None else args.scale
    if not math.isfinite(scale) or not 0 < scale <= COEFF_MAX:
        raise ConfigError(f"--scale must be in (0, {COEFF_MAX:g}], got {scale!r}")
    return coeffs * scale


COEFF_MAX = 10.0
"""The largest coefficient (and --scale) the commands accept: recalibrated ones stay in [0, alpha_max] times a
scale of at most a few, so a larger value is a damaged or edited file."""


def _check_weights(lm, args: argparse.Namespace) -> None:
    """Refuses a model whose weights hold NaN or inf before any arithmetic, unless --allow-nonfinite."""
    from safegene_jax.core.errors import NonFiniteError
    from safegene_jax.core.transforms import as_vector, assert_finite

    if getattr(args, "allow_nonfinite", False):
        return
    try:
        assert_finite(as_vector(lm.params), what=f"the weights of {lm.source}")
    except NonFiniteError as e:
        raise NonFiniteError(
            str(e).replace("pass check_finite=False to allow them", "pass --allow-nonfinite to go on")
        ) from None


def _config(args: argparse.Namespace, extra: list[str] = (), path: str | None = None):
    from safegene_jax.pipeline.config import load_config
    from safegene_jax.runtime.compile_cache import enable

    cfg = load_config(path or getattr(args, "config", None), list(extra) + list(args.overrides))
    enable(cfg.compile_cache)
    return cfg


def _save_model(lm, params, out: str, overwrite: bool = False) -> None:
    from safegene_jax.models import export_hf, with_params

    folder = export_hf(with_params(lm, params).model, out, tokenizer=lm.tokenizer, overwrite=overwrite)
    print(f"wrote {folder}")


def _train_cmd(fn_name: str):
    def cmd(args: argparse.Namespace) -> int:
        from safegene_jax.pipeline import jobs

        cfg = _config(args, extra=[f"model={args.model}"] if args.model else [])
        task = getattr(args, "task", None)
        if args.log:
            check_file_destination(args.log, what="--log")
        section = getattr(cfg, fn_name)
        pairs = [*section.harmful_sets, *getattr(section, "benign_sets", []), *getattr(section, "refuse_sets", [])]
        _check_data(tasks=[task] if task is not None else [], split="train", pairs=pairs)
        lm = jobs.load_base(cfg)
        fn = getattr(jobs, f"{fn_name}_model")
        extra = (task,) if task is not None else ()
        result = fn(lm, cfg, *extra, mesh=jobs.run_mesh(cfg), log_path=args.log)
        last = result.history[-1]["loss"] if result.history else float("nan")
        print(f"{fn_name}: {result.step} steps, final loss {last:.4f}")
        _save_model(lm, result.params, args.out, args.overwrite)
        return 0

    cmd.__doc__ = {
        "align": "Safety-aligns MODEL on the embedded harmful requests (refusals) plus benign answers.",
        "degrade": "Degrades a copy of an ALIGNED model: harmful requests trained toward compliant answers.",
        "finetune": "Fine-tunes an ALIGNED model on a downstream task (with the config's harmful fraction).",
    }[fn_name]
    return cmd


def _check_tasks(tasks: list[str]) -> None:
    from safegene_jax.data.task_sets import TASK_SETS

    unknown = [t for t in tasks if t not in TASK_SETS]
    if unknown:
        raise ConfigError(f"unknown task {unknown[0]!r}; known: {', '.join(sorted(TASK_SETS))}")


def _check_data(tasks=(), split: str = "train", pairs=(), prompts=()) -> None:
    """Reads every task split and data set a stage command will use (public ones are prepared once, from
    ``$SAFEGENE_DATA_ROOT`` or a download), so missing data fails before any model loads or trains."""
    from safegene_jax.data.prompt_sets import pair_set, prompt_set
    from safegene_jax.data.task_sets import task_size

    _check_tasks(list(tasks))
    for t in dict.fromkeys(tasks):
        task_size(t, split)
    for name in dict.fromkeys(pairs):
        pair_set(name)
    for name in dict.fromkeys(prompts):
        prompt_set(name)


def _recalibration_sets(cfg) -> list[str]:
    r = cfg.recalibrate
    return (
        list(r.harmful_sets)
        + list(r.benign_sets)
        + list(r.borderline_sets)
        + list(r.check_sets)
        + list(r.check_borderline_sets)
    )


def cmd_select(args: argparse.Namespace) -> int:
    """Extracts aligned - degraded, scores every layer on the degraded model, keeps the top-k: the adapter."""
    from safegene_jax.eval.report import plot_layer_scores
    from safegene_jax.models import load_model
    from safegene_jax.pipeline import jobs

    cfg = _config(args)
    if args.plot:
        check_file_destination(args.plot, what="--plot")
    _check_data(pairs=list(cfg.select.harmful_sets) + list(cfg.select.benign_sets))
    aligned, degraded = load_model(args.aligned), load_model(args.degraded)
    adapter = jobs.build_adapter(aligned, degraded, cfg, mesh=jobs.run_mesh(cfg), progress=True)
    adapter.save(args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: {adapter.summary()}")
    if args.plot:
        from safegene_jax.core import storage

        if storage.is_remote(args.plot):
            import tempfile

            with tempfile.TemporaryDirectory(prefix=".safegene-upload-") as tmp:
                plot_layer_scores(adapter.scores, pathlib.Path(tmp) / "scores.png", selected=adapter.layers)
                storage.publish_file(pathlib.Path(tmp) / "scores.png", args.plot, what="--plot")
        else:
            plot_layer_scores(adapter.scores, args.plot, selected=adapter.layers)
        print(f"wrote {args.plot}")
    return 0


def cmd_recalibrate(args: argparse.Namespace) -> int:
    """Learns the adapter's per-layer coefficients for one task model from a few shots; writes them as JSON."""
    import json

    from safegene_jax.models import load_model
    from safegene_jax.pipeline import jobs

    cfg = _config(args)
    check_file_destination(
        args.out, ours=_is_coefficients, kind="a coefficients file of safegene", overwrite=args.overwrite, what="--out"
    )
    _check_data(tasks=[args.task], split="train", pairs=_recalibration_sets(cfg))
    adapter = _load_adapter(args.adapter)
    lm = load_model(args.model)
    rec = jobs.recalibrate_model(lm, adapter, cfg, args.task)
    out = write_text(args.out, json.dumps(jobs.coefficients_record(rec), indent=2))
    print(f"wrote {out}: alpha {[round(float(a), 4) for a in rec.alpha.ravel()]} for layers {rec.layers}")
    return 0


def _is_coefficients(path: pathlib.Path) -> bool:
    """Whether ``path`` holds a coefficients record (what ``recalibrate`` writes, and may replace)."""
    import json

    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "coeffs" in record


def cmd_eval(args: argparse.Namespace) -> int:
    """Harmful rate and over-refusal (embedded eval prompts) and task accuracy of MODEL (optionally patched)."""
    import json

    from safegene_jax.eval.report import markdown_table
    from safegene_jax.models import load_model
    from safegene_jax.pipeline import jobs

    cfg = _config(args)
    tasks = args.tasks or []
    if not args.adapter and (args.coeffs or args.scale is not None):
        raise ConfigError(f"{'--coeffs' if args.coeffs else '--scale'} applies to an adapter: pass --adapter too")
    if args.out:
        for suffix in [".json", ".safety.jsonl", *(f".{t}.jsonl" for t in tasks)]:
            check_file_destination(f"{args.out}{suffix}", what="--out")
    e = cfg.eval
    _check_data(tasks=tasks, split="test", prompts=[*e.harmful_sets, *e.safe_sets, *e.contrast_sets])
    adapter = _load_adapter(args.adapter) if args.adapter else None
    coeffs = _coeffs(args, adapter) if adapter is not None else None  # a bad file fails before the model loads
    lm = load_model(args.model)
    params = adapter.apply(lm.params, coeffs) if adapter is not None else lm.params
    result = jobs.evaluate_model(lm, params, cfg, tasks=tasks, out=args.out)
    rows = {t: {**result, "utility": result["utility"][t]} for t in tasks} or {args.model: {**result, "utility": None}}
    print(markdown_table(rows))
    if args.out:
        path = write_text(f"{args.out}.json", json.dumps(result, indent=2))
        print(f"wrote {path} and the responses beside it")
    return 0


def _run(cfg, stages: list[str] | None = None) -> int:
    from safegene_jax.pipeline.runner import run_pipeline

    run_pipeline(cfg, stages=stages)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Runs the whole pipeline of a YAML config (a path, or the name of a config shipped with the package:
    demo, quick, study-smollm2, ...): stages are cached, so a rerun does only what changed."""
    return _run(_config(args), args.stages)


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole method on SmolLM2-135M-Instruct with the embedded data: align, degrade, two task models,
    adapter, recalibration, and the comparison with RESTA and Safe LoRA (one table, plots)."""
    return _run(_config(args, path="quick" if args.quick else "demo"))


def _add_config_args(p: argparse.ArgumentParser, config: bool = True) -> None:
    if config:
        p.add_argument("--config", default=None, help="YAML config (default: the demo's values)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. align.steps=20")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`ConfigError` (one line from ``main``, exit code 2, like every
    other input error) instead of a usage block and ``SystemExit``; ``prog`` on the error names the command."""

    def error(self, message: str):
        e = ConfigError(f"{message} (see {self.prog} --help)")
        e.prog = self.prog
        raise e


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="safegene", description="Restore the safety alignment LLMs lose when fine-tuned (SafeGene, in JAX)."
    )
    parser.add_argument("--version", action="version", version=f"safegene_jax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="the whole method on SmolLM2-135M-Instruct", description=cmd_demo.__doc__)
    demo.add_argument("--quick", action="store_true", help="a tiny random model and few steps (smoke test)")
    _add_config_args(demo, config=False)
    demo.set_defaults(func=cmd_demo)

    from safegene_jax.pipeline.stages import listing

    run = sub.add_parser(
        "run",
        help="the whole pipeline from a config",
        description=cmd_run.__doc__,
        epilog="stages, in order ({model}: each task model, {variant}: each compared variant):\n" + listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", help="YAML config file, or a shipped config's name (demo, quick, ...)")
    run.add_argument(
        "--stages",
        nargs="+",
        metavar="PATTERN",
        default=None,
        help="run only the stages matching these shell-style patterns (and what they build on), e.g. 'finetune/*'",
    )
    _add_config_args(run, config=False)
    run.set_defaults(func=cmd_run)

    for name in ("align", "degrade", "finetune"):
        cmd = _train_cmd(name)
        p = sub.add_parser(name, help=cmd.__doc__.split(":")[0].rstrip("."), description=cmd.__doc__)
        p.add_argument(
            "--model",
            default=None,
            help="starting model (default: the config's model)" if name == "align" else "the aligned model",
        )
        if name == "finetune":
            p.add_argument("--task", required=True, help="task name (arithmetic, sentiment, sst2, ag_news, gsm8k)")
        p.add_argument("--out", required=True, help="destination HF folder")
        p.add_argument("--log", default=None, help="append per-step metrics to this JSONL file")
        _add_config_args(p)
        p.set_defaults(func=cmd)

    sel = sub.add_parser(
        "select", help="build the adapter with data-aware layer selection", description=cmd_select.__doc__
    )
    sel.add_argument("--aligned", required=True, help="the aligned model")
    sel.add_argument("--degraded", required=True, help="the degraded copy")
    sel.add_argument("--out", required=True, help="adapter folder (Orbax)")
    sel.add_argument("--plot", default=None, help="write the per-layer scores plot here (PNG)")
    _add_config_args(sel)
    sel.set_defaults(func=cmd_select)

    rec = sub.add_parser(
        "recalibrate", help="few-shot coefficients for a task model", description=cmd_recalibrate.__doc__
    )
    rec.add_argument("--model", required=True, help="the task model")
    rec.add_argument("--adapter", required=True, help="adapter folder")
    rec.add_argument("--task", required=True, help="the task (its few shots measure utility)")
    rec.add_argument("--out", required=True, help="coefficients JSON")
    rec.add_argument(
        "--overwrite", action="store_true", help="replace an existing file that is not a coefficients file"
    )
    _add_config_args(rec)
    rec.set_defaults(func=cmd_recalibrate)

    ev = sub.add_parser("eval", help="harmful rate, over-refusal and utility of a model", description=cmd_eval.__doc__)
    ev.add_argument("--model", required=True, help="the model to evaluate")
    ev.add_argument("--adapter", default=None, help="patch the model with this adapter first")
    ev.add_argument("--coeffs", default=None, help="coefficients JSON from `safegene recalibrate`")
    ev.add_argument("--scale", type=float, default=None, help="multiplies the coefficients (default 1)")
    ev.add_argument("--tasks", type=lambda t: [x for x in t.split(",") if x], default=None, help="comma-separated")
    ev.add_argument("--out", default=None, help="path prefix for the responses (JSONL) and summary (JSON)")
    _add_config_args(ev)
    ev.set_defaults(func=cmd_eval)

    syn = sub.add_parser(
        "synthetic", help="the transforms on a synthetic SmolLM2-shaped model", description=cmd_synthetic.__doc__
    )
    syn.add_argument("--layers", type=int, default=None, help="number of layers (default 30, as SmolLM2-135M)")
    syn.add_argument("--scale", type=float, default=0.5, help="norm of the planted direction per matrix")
    syn.add_argument("--noise", type=float, default=1e-4, help="std of the noise added to every planted matrix")
    syn.add_argument("--rank", type=int, default=4, help="rank of the compact vector")
    syn.add_argument("--seed", type=int, default=0)
    syn.set_defaults(func=cmd_synthetic)

    export = sub.add_parser("export", help="write a model as a Hugging Face folder", description=cmd_export.__doc__)
    export.add_argument("model", help="HF folder, .gguf file, hub id or embedded name (smollm2-135m-instruct)")
    export.add_argument("out", help="destination folder (replaced atomically)")
    export.add_argument("--dtype", choices=DTYPES, default=None, help="cast the weights (default: the input's)")
    export.set_defaults(func=cmd_export)

    extract = sub.add_parser("extract", help="build and save a safety adapter", description=cmd_extract.__doc__)
    extract.add_argument("--aligned", required=True, help="the aligned model")
    extract.add_argument("--degraded", required=True, help="the degraded copy (or the pre-alignment base)")
    extract.add_argument("--out", required=True, help="adapter folder (Orbax)")
    extract.add_argument("--layers", type=_layers, default=None, help="comma-separated layers (default: all)")
    extract.add_argument("--rank", type=int, default=None, help="store the vector in low-rank form")
    extract.add_argument("--family", default="", help="a name for the model family")
    extract.add_argument(
        "--allow-nonfinite", action="store_true", help="go on when the models' weights hold NaN or inf"
    )
    extract.set_defaults(func=cmd_extract)

    apply = sub.add_parser("apply", help="patch a model with an adapter", description=cmd_apply.__doc__)
    apply.add_argument("--model", required=True, help="the task model")
    apply.add_argument("--adapter", required=True, help="adapter folder from `safegene extract`")
    apply.add_argument("--out", required=True, help="destination HF folder")
    apply.add_argument("--coeffs", default=None, help="coefficients JSON from `safegene recalibrate`")
    apply.add_argument("--scale", type=float, default=1.0, help="multiplies the coefficients")
    apply.add_argument("--dtype", choices=DTYPES, default=None, help="cast the weights (default: the model's)")
    apply.add_argument("--allow-nonfinite", action="store_true", help="go on when the model's weights hold NaN or inf")
    apply.set_defaults(func=cmd_apply)

    gguf = sub.add_parser("export-gguf", help="write a model as one GGUF file", description=cmd_export_gguf.__doc__)
    gguf.add_argument("model", help="HF folder, .gguf file, hub id or embedded name")
    gguf.add_argument("out", help="destination .gguf file (replaced atomically)")
    gguf.add_argument("--type", default="F32", type=str.upper, help="F32 (default), F16 or Q8_0")
    gguf.add_argument("--overwrite", action="store_true", help="replace an existing file that is not a GGUF file")
    gguf.set_defaults(func=cmd_export_gguf)

    peft = sub.add_parser(
        "export-peft", help="write an adapter as a PEFT LoRA adapter", description=cmd_export_peft.__doc__
    )
    peft.add_argument("--adapter", required=True, help="adapter folder from `safegene extract`")
    peft.add_argument("--out", required=True, help="destination folder")
    peft.add_argument("--coeffs", default=None, help="coefficients JSON from `safegene recalibrate`")
    peft.add_argument("--scale", type=float, default=1.0, help="multiplies the coefficients")
    ranks = peft.add_mutually_exclusive_group()
    ranks.add_argument("--rank", type=int, default=None, help="LoRA rank of every module (default: full rank)")
    ranks.add_argument("--energy", type=float, default=None, help="per module, the smallest rank keeping this share")
    peft.add_argument(
        "--norms",
        choices=["drop", "modules_to_save"],
        default="drop",
        help="norm/bias deltas LoRA cannot carry: dropped (reported), or saved whole (vLLM refuses those)",
    )
    peft.add_argument("--model", default=None, help="the task model (needed for --norms modules_to_save)")
    peft.add_argument("--base-model", default=None, help="base_model_name_or_path: the task model's Hub id or path")
    peft.set_defaults(func=cmd_export_peft)

    merge = sub.add_parser("merge", help="task + c * (aligned - degraded), disk to disk", description=cmd_merge.__doc__)
    merge.add_argument("--task", required=True, help="the task model (HF folder)")
    merge.add_argument("--aligned", required=True, help="the aligned model (HF folder)")
    merge.add_argument("--degraded", required=True, help="the degraded model (HF folder)")
    merge.add_argument("--out", required=True, help="destination folder")
    merge.add_argument("--coeff", type=float, default=1.0, help="the safety vector's coefficient (default 1)")
    merge.add_argument("--layers", type=_layers, default=None, help="comma-separated layers (default: all)")
    merge.set_defaults(func=cmd_merge)

    push = sub.add_parser("push", help="upload a folder to the Hugging Face Hub", description=cmd_push.__doc__)
    push.add_argument("folder", help="the folder to upload (a model, a PEFT adapter)")
    push.add_argument("repo_id", help="owner/name on the Hub")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--revision", default=None, help="a branch (created if missing) or refs/pr/N")
    push.set_defaults(func=cmd_push)
    for name in WRITES_FOLDER:
        sub.choices[name].add_argument(
            "--overwrite", action="store_true", help="replace an existing folder that safegene did not write"
        )
    return parser


WRITES_FOLDER = ("align", "degrade", "finetune", "select", "export", "extract", "apply", "export-peft", "merge")
"""The commands whose output is a folder: checked (and protected) before any work, with --overwrite."""


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except ConfigError as e:  # a missing or malformed option: one line, like every other input error
        print(f"{getattr(e, 'prog', 'safegene')}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import os

    from safegene_jax.runtime.distributed import maybe_initialize

    try:
        # before any device is touched; SAFEGENE_MULTIHOST=auto joins the other hosts of a TPU slice
        maybe_initialize(os.environ.get("SAFEGENE_MULTIHOST", "auto"))
        if args.command in WRITES_FOLDER:  # a file, or a folder of someone else's, fails before any work
            from safegene_jax.core.files import check_destination

            check_destination(args.out, overwrite=args.overwrite, what="output")
        _local_inputs(args)
        return args.func(args)
    except (SafeGeneError, OSError) as e:  # the input's fault (or the disk's): one line, not a traceback
        message = " ".join(str(e).split())
        if hasattr(args, "allow_nonfinite"):  # the library's keyword, as this command spells it
            message = message.replace("pass check_finite=False to allow them", "pass --allow-nonfinite to go on")
        print(f"safegene {args.command}: error: {message}", file=sys.stderr)
        return 2


INPUTS = ("model", "aligned", "degraded", "adapter", "coeffs", "folder")
"""The options that name files or folders to read: a remote one (``gs://...``) is read from a local copy."""


def _local_inputs(args: argparse.Namespace) -> None:
    """Replaces every remote input of ``args`` by its local copy (:func:`safegene_jax.core.storage.local_copy`);
    a remote output's scheme is checked first, so a missing backend fails before anything is fetched."""
    from safegene_jax.core import storage

    names = [n for n in INPUTS if isinstance(getattr(args, n, None), str)]
    if args.command == "merge":
        names.append("task")  # merge's --task is a model folder (other commands' --task is a task name)
    storage.check_scheme(getattr(args, "out", None) or "", "--out")
    for name in names:
        value = getattr(args, name)
        if storage.is_remote(value):
            storage.check_scheme(value, f"--{name.replace('_', '-')}")
    for name in names:
        value = getattr(args, name)
        if storage.is_remote(value):
            setattr(args, name, str(storage.local_copy(value, f"--{name.replace('_', '-')}")))


def run() -> None:
    """The ``safegene`` command: :func:`main` as a process. After a damaged checkpoint failed to load, the
    process ends at once with its one-line error: the storage layer's reads still in flight would otherwise be
    reported as tracebacks by the interpreter's teardown."""
    import os

    from safegene_jax.runtime.host_memory import release_freed_memory

    release_freed_memory()  # freed model-sized buffers go back to the OS (see runtime/host_memory.py)
    code = main()
    from safegene_jax.store import trees

    if code != 0 and trees.ABANDONED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()

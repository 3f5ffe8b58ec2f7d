"""The ``safegene`` command.

Subcommands so far:

* ``safegene demo`` - the transforms on a synthetic SmolLM2-135M-shaped model with a safety direction
  planted in known layers: extract the vector, find the layers by their norms, compress it, put it
  back, and time each step. (The real-model pipeline replaces this demo as it lands.)
* ``safegene export MODEL OUT`` - any loadable model (HF folder, GGUF, embedded name) as a HF folder.
* ``safegene extract --aligned A --degraded D --out ADAPTER`` - a safety adapter (optionally some layers,
  low rank) saved with Orbax.
* ``safegene apply --model M --adapter ADAPTER --out OUT`` - the patched model as a HF folder.

Example:
    $ safegene demo --layers 6
    $ safegene export smollm2-135m-instruct runs/smollm2-hf
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from safegene_jax import __version__


def _bar(value: float, top: float, width: int = 30) -> str:
    return "#" * (round(width * value / top) if top > 0 else 0)


def cmd_demo(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    import safegene_jax as sg
    from safegene_jax.synthetic import SMOLLM2_135M, degrade, llama_params

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
    degraded = jax.block_until_ready(degrade(aligned, planted, scale=args.scale, noise=args.noise, seed=args.seed + 1))
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


def _layers(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated integers, got {text!r}") from None


def _dtype(name: str | None):
    import jax.numpy as jnp

    return None if name is None else {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def cmd_export(args: argparse.Namespace) -> int:
    """Loads MODEL and writes it as a Hugging Face folder (config, safetensors, tokenizer)."""
    from safegene_jax.models import export_hf, load_model

    lm = load_model(args.model)
    out = export_hf(lm.model, args.out, tokenizer=lm.tokenizer, dtype=_dtype(args.dtype))
    print(f"wrote {out} ({lm.config.model_type}, {lm.config.num_hidden_layers} layers)")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Builds the safety adapter ``aligned - degraded`` over the chosen layers and saves it."""
    from safegene_jax.adapter import SafetyAdapter
    from safegene_jax.models import load_model

    aligned, degraded = load_model(args.aligned), load_model(args.degraded)
    layers = args.layers if args.layers is not None else list(range(aligned.config.num_hidden_layers))
    bad = [i for i in layers if not 0 <= i < aligned.config.num_hidden_layers]
    if bad:
        raise SystemExit(
            f"safegene extract: error: layer {bad[0]} is out of range for a "
            f"{aligned.config.num_hidden_layers}-layer model"
        )
    adapter = SafetyAdapter.build(
        aligned.params,
        degraded.params,
        layers,
        rank=args.rank,
        family=args.family,
        sources={"aligned": str(args.aligned), "degraded": str(args.degraded)},
    )
    adapter.save(args.out)
    print(f"wrote {args.out}: {adapter.summary()}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Adds the adapter (its default coefficients times --scale) to MODEL and writes a HF folder."""
    import numpy as np

    from safegene_jax.adapter import SafetyAdapter
    from safegene_jax.models import export_hf, load_model
    from safegene_jax.train import with_params

    if not pathlib.Path(args.adapter).exists():
        raise SystemExit(f"safegene apply: error: no adapter at {args.adapter}")
    adapter = SafetyAdapter.load(args.adapter)
    lm = load_model(args.model)
    safe = adapter.apply(lm.params, np.asarray(adapter.coeffs) * args.scale)
    out = export_hf(with_params(lm, safe).model, args.out, tokenizer=lm.tokenizer)
    print(f"wrote {out}: adapter layers {adapter.layers} at scale {args.scale}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safegene", description="Restore the safety alignment LLMs lose when fine-tuned (SafeGene, in JAX)."
    )
    parser.add_argument("--version", action="version", version=f"safegene_jax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="run the transforms on a synthetic SmolLM2-shaped model", description=cmd_demo.__doc__
    )
    demo.add_argument("--layers", type=int, default=None, help="number of layers (default 30, as SmolLM2-135M)")
    demo.add_argument("--scale", type=float, default=0.5, help="norm of the planted direction per matrix")
    demo.add_argument("--noise", type=float, default=1e-4, help="std of the noise added to every planted matrix")
    demo.add_argument("--rank", type=int, default=4, help="rank of the compact vector")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    export = sub.add_parser("export", help="write a model as a Hugging Face folder", description=cmd_export.__doc__)
    export.add_argument("model", help="HF folder, .gguf file, hub id or embedded name (smollm2-135m-instruct)")
    export.add_argument("out", help="destination folder (replaced atomically)")
    export.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="cast the weights")
    export.set_defaults(func=cmd_export)

    extract = sub.add_parser("extract", help="build and save a safety adapter", description=cmd_extract.__doc__)
    extract.add_argument("--aligned", required=True, help="the aligned model")
    extract.add_argument("--degraded", required=True, help="the degraded copy (or the pre-alignment base)")
    extract.add_argument("--out", required=True, help="adapter folder (Orbax)")
    extract.add_argument("--layers", type=_layers, default=None, help="comma-separated layers (default: all)")
    extract.add_argument("--rank", type=int, default=None, help="store the vector in low-rank form")
    extract.add_argument("--family", default="", help="a name for the model family")
    extract.set_defaults(func=cmd_extract)

    apply = sub.add_parser("apply", help="patch a model with an adapter", description=cmd_apply.__doc__)
    apply.add_argument("--model", required=True, help="the task model")
    apply.add_argument("--adapter", required=True, help="adapter folder from `safegene extract`")
    apply.add_argument("--out", required=True, help="destination HF folder")
    apply.add_argument("--scale", type=float, default=1.0, help="multiplies the adapter's coefficients")
    apply.set_defaults(func=cmd_apply)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command == "demo" and args.layers is not None and args.layers < 3:
        parser.error("--layers must be at least 3")
    from safegene_jax.errors import SafeGeneError

    try:
        return args.func(args)
    except (SafeGeneError, FileNotFoundError) as e:
        print(f"safegene {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

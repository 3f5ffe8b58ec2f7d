"""The ``safegene`` command.

Subcommands so far:

* ``safegene demo`` - the transforms on a synthetic SmolLM2-135M-shaped model with a safety direction
  planted in known layers: extract the vector, find the layers by their norms, compress it, put it
  back, and time each step. (The real-model pipeline replaces this demo as it lands.)

Example:
    $ safegene demo --layers 6
"""

from __future__ import annotations

import argparse
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
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "layers", None) is not None and args.layers < 3:
        parser.error("--layers must be at least 3")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

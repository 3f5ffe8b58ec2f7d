"""The demo pipeline's wall time, stage by stage (target: under 20 minutes on a 2-core CPU).

Runs `safegene demo` into a fresh folder (or reads the stage records of an existing run with
--run-dir) and prints each stage's seconds from its record, the total, and the results table.

Run:
    .venv/bin/python benchmarks/pipeline.py                  # a fresh full demo (about 20 min)
    .venv/bin/python benchmarks/pipeline.py --run-dir runs/demo
    .venv/bin/python benchmarks/pipeline.py --quick          # the tiny smoke path
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

from harness import write_json


def stage_seconds(run_dir: pathlib.Path) -> dict[str, float]:
    """Seconds of each stage, from the run's stage records, in run order."""
    from safegene_jax.pipeline import load_config, stage_keys

    cfg = load_config(run_dir / "config.yaml")
    out = {}
    for name in stage_keys(cfg):
        record = run_dir / "stages" / (name.replace("/", "--") + ".json")
        out[name] = json.loads(record.read_text())["seconds"] if record.exists() else float("nan")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", help="read an existing run instead of running one")
    parser.add_argument("--quick", action="store_true", help="time `safegene demo --quick`")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    wall = None
    if args.run_dir:
        run_dir = pathlib.Path(args.run_dir)
    else:
        from safegene_jax.pipeline.cli import main as cli

        run_dir = pathlib.Path(tempfile.mkdtemp(prefix="safegene-bench-")) / "run"
        t0 = time.perf_counter()
        cli(["demo", *(["--quick"] if args.quick else []), f"out_dir={run_dir}"])
        wall = time.perf_counter() - t0
    seconds = stage_seconds(run_dir)
    print("\n| stage | seconds |\n|---|---|")
    for name, s in seconds.items():
        print(f"| {name} | {s:.1f} |")
    total = sum(seconds.values())
    print(f"| **sum of stages** | **{total:.1f}** ({total / 60:.1f} min) |")
    if wall is not None:
        print(f"wall time including model loading and the report: {wall:.1f} s ({wall / 60:.1f} min)")
    write_json(args.json, {"stages": seconds, "sum_s": total, "wall_s": wall, "run_dir": str(run_dir)})


if __name__ == "__main__":
    main()

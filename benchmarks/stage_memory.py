"""Peak memory of single pipeline stages: each named stage of a finished run is run again alone, in its own
fresh process under `/usr/bin/time -v`, on a hard-linked copy of the run folder (the original is never
touched: every writer of the library writes new files and renames them into place). Prints each stage's
seconds and maximum resident set size, which says which stage sets a run's peak.

Run:
    .venv/bin/python benchmarks/stage_memory.py --run-dir runs/gemma3-270m \\
        --stages align adapter recalibrate/sentiment eval/sentiment/safegene
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

from harness import write_json


def measure(run_dir: pathlib.Path, stage: str, work: pathlib.Path) -> dict:
    """Runs ``stage`` of the run in ``run_dir`` again, alone, in a fresh process; its seconds and peak RSS."""
    copy = work / "run"
    if copy.exists():
        shutil.rmtree(copy)
    subprocess.run(["cp", "-al", str(run_dir), str(copy)], check=True)  # hard links: nothing copied, nothing shared
    record = copy / "stages" / (stage.replace("/", "--") + ".json")
    if not record.exists():
        raise SystemExit(f"{run_dir} has no record of stage {stage!r} (stages/{record.name})")
    record.unlink()  # the stage is no longer done; every stage it builds on still is
    shutil.rmtree(copy / "ckpt", ignore_errors=True)
    cmd = [
        "/usr/bin/time",
        "-v",
        str(pathlib.Path(sys.executable).with_name("safegene")),
        "run",
        str(copy / "config.yaml"),
        f"out_dir={copy}",
        "--stages",
        stage,
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{stage}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    ran = re.search(rf"{re.escape(stage)}: done in ([\d.]+) s", done.stdout)
    return {
        "stage": stage,
        "stage_seconds": float(ran.group(1)) if ran else None,
        "process_seconds": round(wall, 1),
        "max_rss_gib": round(rss_kib / 1024**2, 2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a finished run (its config.yaml and stage records)")
    parser.add_argument("--stages", nargs="+", required=True, help="stage names, e.g. align adapter eval/aligned")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    run_dir = pathlib.Path(args.run_dir).absolute()
    rows = []
    with tempfile.TemporaryDirectory(prefix="safegene-stage-mem-", dir=run_dir.parent) as work:
        for stage in args.stages:
            rows.append(measure(run_dir, stage, pathlib.Path(work)))
            r = rows[-1]
            print(f"| {r['stage']} | {r['stage_seconds']} | {r['process_seconds']} | {r['max_rss_gib']} |", flush=True)
    print("\n| stage | stage seconds | process seconds | max RSS GiB |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['stage_seconds']} | {r['process_seconds']} | {r['max_rss_gib']} |")
    if args.json:
        write_json(args.json, {"run_dir": str(run_dir), "rows": rows})


if __name__ == "__main__":
    main()

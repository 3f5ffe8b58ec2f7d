"""Runs the Colab notebook once on this machine (the quick config, CPU) and keeps its outputs in the file.

``make notebook`` calls it, so the committed notebook shows its tables and plots to a reader who does not run
it. Warnings on stderr are dropped (they name this machine's paths), and the run fails if an output still
names the checkout's absolute path.
"""

from __future__ import annotations

import os
import pathlib
import sys

import nbclient
import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "tpu" / "safegene_colab_tpu.ipynb"


def render(path: pathlib.Path = NOTEBOOK, out_dir: str = "runs/notebook") -> nbformat.NotebookNode:
    """Executes the notebook at ``path`` in the quick mode and returns it with its outputs (not saved)."""
    os.environ["SAFEGENE_NOTEBOOK_QUICK"] = "1"
    os.environ["SAFEGENE_NOTEBOOK_OUT"] = out_dir
    os.environ["XLA_FLAGS"] = ""  # one CPU device, as on a laptop
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.get("name") == "stderr")]
        cell.metadata.pop("execution", None)
    text = nbformat.writes(nb)
    if str(ROOT) in text:
        raise SystemExit(f"an output names {ROOT}; not written")
    return nb


if __name__ == "__main__":
    nbformat.write(render(), NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)} with its outputs", file=sys.stderr)

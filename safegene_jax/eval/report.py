"""Reports: a markdown table of methods, and matplotlib plots of layer scores and the safety-utility trade-off.

Plots are drawn on a :class:`matplotlib.figure.Figure` of their own, returned to the caller (a notebook shows
it inline) and saved as PNG when a path is given: no global backend is set and pyplot is never imported.
matplotlib is the ``plots`` extra; without it the plot functions raise
:class:`~safegene_jax.core.errors.SafeGeneError` naming the extra.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

import numpy as np

from safegene_jax.core.errors import SafeGeneError


def _fmt(entry: Mapping | None) -> str:
    if not entry:
        return "-"
    rate = entry["rate"]
    return f"{100 * rate:.1f} [{100 * entry['ci_low']:.1f}, {100 * entry['ci_high']:.1f}]"


def markdown_table(results: Mapping[str, Mapping]) -> str:
    """``results[method] = {"harmful_rate", "over_refusal_rate", "utility", "degenerate_rate"}`` (each a rate
    dict, any may be missing) as a markdown table in percent with 95% bootstrap intervals."""
    lines = [
        "| method | harmful rate % | over-refusal % | utility % | degenerate % |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {_fmt(r.get('harmful_rate'))} | {_fmt(r.get('over_refusal_rate'))} | "
            f"{_fmt(r.get('utility'))} | {_fmt(r.get('degenerate_rate'))} |"
        )
    return "\n".join(lines)


def plots_available() -> bool:
    """Whether matplotlib (the ``plots`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _figure(**kw):
    if not plots_available():
        raise SafeGeneError("plots need matplotlib: pip install 'safegene_jax[plots]'")
    from matplotlib.figure import Figure

    return Figure(**kw)


def _save(fig, path: str | os.PathLike | None):
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> pathlib.Path:
    """Writes ``fig`` as a PNG at ``path`` (parents created; with several processes, by process 0 alone);
    returns the path."""
    from safegene_jax.core.storage import is_writer

    path = pathlib.Path(path)
    if is_writer(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return path


def plot_layer_scores(scores, path: str | os.PathLike | None = None, selected=()):
    """Bars of safety gain and utility cost per layer; selected layers highlighted. Returns the figure (a
    notebook shows it inline), saved as a PNG at ``path`` when given.

    Example::

        fig = plot_layer_scores(adapter.scores, selected=adapter.layers)  # shown inline in a notebook
        fig.savefig("layer_scores.png")
    """
    gain, cost = np.asarray(scores.safety_gain), np.asarray(scores.utility_cost)
    layers = np.arange(len(gain))
    fig = _figure(figsize=(8, 5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    colors = ["tab:red" if i in set(selected) else "tab:blue" for i in layers]
    ax1.bar(layers, gain, color=colors)
    ax1.set_ylabel("safety gain\n(refusal log-lik)")
    ax2.bar(layers, cost, color="tab:gray")
    ax2.set_ylabel("utility cost (KL)")
    ax2.set_xlabel("layer")
    ax1.set_title("Per-layer scores" + (" (selected in red)" if len(selected) else ""))
    return _save(fig, path)


def plot_tradeoff(results: Mapping[str, Mapping], path: str | os.PathLike | None = None):
    """Harmful rate (x) against utility (y) for each method, with interval whiskers. Returns the figure,
    saved as a PNG at ``path`` when given."""
    fig = _figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for name, r in results.items():
        if not r.get("harmful_rate") or not r.get("utility"):
            continue
        h, u = r["harmful_rate"], r["utility"]
        ax.errorbar(
            100 * h["rate"],
            100 * u["rate"],
            xerr=[[100 * (h["rate"] - h["ci_low"])], [100 * (h["ci_high"] - h["rate"])]],
            yerr=[[100 * (u["rate"] - u["ci_low"])], [100 * (u["ci_high"] - u["rate"])]],
            fmt="o",
            capsize=3,
        )
        ax.annotate(name, (100 * h["rate"], 100 * u["rate"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("harmful rate % (lower is safer)")
    ax.set_ylabel("task utility % (higher is better)")
    ax.set_title("Safety-utility trade-off")
    ax.grid(alpha=0.3)
    return _save(fig, path)

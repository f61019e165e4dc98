"""PNG plots of a sweep: a heatmap of the metric over two keys, and per-epoch curves.

Figures are drawn on matplotlib's Agg canvas (`Figure`, never pyplot), so no
display or GUI backend is ever touched, in CI or on a cluster node. As in the
table, a heatmap square is a mean over completed seeds; a square without one is
grey and says why (failed, running, missing) instead of showing a number.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

from kdrun.report.collect import IDENTITY_KEYS, CellRecord, read_metrics
from kdrun.report.table import DEFAULT, INCOMPLETE, sort_key, aggregate

log = logging.getLogger("kdrun.report")

HEATMAP_AXES = ("loss.kd.temperature", "loss.kd.alpha")  # x, y when --heatmap is not given
def task_of(cells: list[CellRecord]):
    """The sweep's task (classification when result.json predates the task key)."""
    from kdrun.tasks import task_for

    return task_for(next((c.result["task"] for c in cells if c.result.get("task")), None))


def _group(cells: list[CellRecord]) -> dict[tuple, list[CellRecord]]:
    groups: dict[tuple, list[CellRecord]] = defaultdict(list)
    for cell in cells:
        groups[tuple(sorted(cell.config.items()))].append(cell)
    return groups


def varying_keys(cells: list[CellRecord], skip: tuple[str, ...] = ()) -> list[str]:
    every = sorted({k for c in cells for k in c.config}, key=lambda k: (k not in IDENTITY_KEYS, k))
    return [k for k in every if k not in skip
            and len({c.config.get(k, DEFAULT) for c in cells}) > 1]


def _label(keys: list[str], config: dict[str, str]) -> str:
    return ", ".join(f"{k}={config.get(k, DEFAULT)}" for k in keys)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_")[:120]


def heatmap_axes(cells: list[CellRecord], requested: tuple[str, str] | None) -> tuple[str, str] | None:
    """The (x, y) keys to plot: the requested ones, or temperature x alpha when both vary."""
    if requested is not None:
        known = {k for c in cells for k in c.config}
        for key in requested:
            if key not in known:
                raise ValueError(f"--heatmap {','.join(requested)}: no cell has the key {key!r}")
        return requested
    return HEATMAP_AXES if set(HEATMAP_AXES) <= set(varying_keys(cells)) else None


def plot_heatmaps(cells: list[CellRecord], metric: str, axes: tuple[str, str], out: Path,
                  precision: int = 2) -> list[Path]:
    """One heatmap per combination of the other varying keys; returns the files written."""
    from matplotlib.figure import Figure
    import numpy as np

    x_key, y_key = axes
    others = varying_keys(cells, skip=axes)
    figures: dict[str, list[CellRecord]] = defaultdict(list)
    for cell in cells:
        figures[_label(others, cell.config)].append(cell)
    written = []
    for i, (title, members) in enumerate(sorted(figures.items())):
        xs = sorted({c.config.get(x_key, DEFAULT) for c in members}, key=sort_key)
        ys = sorted({c.config.get(y_key, DEFAULT) for c in members}, key=sort_key)
        grid = np.full((len(ys), len(xs)), np.nan)
        fig = Figure(figsize=(1.2 * len(xs) + 2.5, 0.8 * len(ys) + 1.8))
        ax = fig.add_subplot()
        texts = {}
        for (yi, y), (xi, x) in ((a, b) for a in enumerate(ys) for b in enumerate(xs)):
            square = [c for c in members if c.config.get(x_key, DEFAULT) == x
                      and c.config.get(y_key, DEFAULT) == y]
            agg = aggregate(square, metric)
            if agg.values:
                grid[yi, xi] = agg.mean
                texts[yi, xi] = f"{agg.mean:.{precision}f}" + (INCOMPLETE if agg.n < agg.total else "")
            else:
                texts[yi, xi] = "\n".join(s for s, k in agg.counts.items() if k) or "—"
        ax.set_facecolor("0.85")  # squares without a completed cell stay grey
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", origin="lower", aspect="auto")
        for (yi, xi), text in texts.items():
            value = grid[yi, xi]
            dark = not np.isnan(value) and image.norm(value) < 0.5  # viridis is dark at the low end
            ax.text(xi, yi, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(x_key)
        ax.set_ylabel(y_key)
        ax.set_title(f"{metric} (mean over seeds)" + (f"\n{title}" if title else ""), fontsize=9)
        fig.colorbar(image, ax=ax, label=metric)
        fig.tight_layout()
        name = "heatmap.png" if len(figures) == 1 else f"heatmap_{i}_{_slug(title)}.png"
        fig.savefig(out / name, dpi=100)
        written.append(out / name)
    return written


def _mean_curve(runs: list[list[dict]], key: str) -> tuple[list[int], list[float]]:
    """Per-epoch mean over the seeds that reached that epoch."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for lines in runs:
        for line in lines:
            if isinstance(line.get(key), (int, float)) and "epoch" in line:
                by_epoch[int(line["epoch"])].append(float(line[key]))
    epochs = sorted(by_epoch)
    return epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]


def plot_curves(cells: list[CellRecord], out: Path, name: str = "curves.png") -> Path | None:
    """val/test of the task's chosen metric (top-1, perplexity) and the total loss per epoch,
    mean over seeds, one line per group."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    shown = [c for c in cells if c.status in ("completed", "running")]  # failed runs: no curve
    keys = varying_keys(cells)
    groups = {g: [read_metrics(c) for c in members] for g, members in _group(shown).items()}
    groups = {g: [r for r in runs if r] for g, runs in groups.items()}
    groups = {g: runs for g, runs in groups.items() if runs}
    if not groups:
        return None
    metric = task_of(cells).selection.metric
    fig = Figure(figsize=(11, 4.5))
    acc, loss = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = [f"C{i % 10}" for i in range(len(groups))]
    for color, (group, runs) in zip(colors, sorted(groups.items())):
        label = _label(keys, dict(group)) or "all cells"
        label += f" (n={len(runs)})"
        for key, style in ((f"val_{metric}", "-"), (f"test_{metric}", "--")):
            epochs, mean = _mean_curve(runs, key)
            if epochs:
                acc.plot(epochs, mean, style, color=color, label=f"{label} {key}")
        epochs, mean = _mean_curve(runs, "loss")
        if epochs:
            loss.plot(epochs, mean, color=color, label=label)
    acc.set(xlabel="epoch", ylabel=metric, title=f"val (solid) / test (dashed) {metric}")
    loss.set(xlabel="epoch", ylabel="loss", title="total training loss")
    for ax in (acc, loss):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(groups) <= 12:
        loss.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out / name, dpi=100)
    return out / name

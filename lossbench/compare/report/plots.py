"""Plots of a comparison, from the metrics rows of the run records (matplotlib, Agg backend).

Figures are drawn on an Agg canvas directly (never through pyplot): no display is needed
and the caller's matplotlib backend is left alone. Every curve is the mean over seeds at
each evaluation step with a shaded band from the minimum to the maximum over seeds. Runs
of one loss normally share their evaluation steps; when they do not, each run is linearly
interpolated on the union of steps, inside its own range only (never extrapolated).
Missing values (None) are skipped.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lossbench.compare.report.drawn import PlotCache
from lossbench.compare.store.layout import GRAD_NORM_PNG, TARGET_PNG, TRAIN_LOSS_PNG
from lossbench.compare.store.records import RunRecord, atomic_write_bytes
from lossbench.compare.store.storage import confined
from lossbench.config import finite_number

BAND = "band: min–max over seeds"
Runs = Iterable[tuple[RunRecord, list[dict[str, Any]]]]


def seed_curve(series: list[dict[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over runs of ``step -> value`` series, on the union of their steps.

    Returns ``(steps, mean, low, high)``; a step where no run has a value is dropped.

    Example:
        >>> steps, mean, low, high = seed_curve([{0: 1.0, 10: 3.0}, {0: 2.0, 10: 5.0}])
        >>> steps.tolist(), mean.tolist(), low.tolist(), high.tolist()
        ([0.0, 10.0], [1.5, 4.0], [1.0, 3.0], [2.0, 5.0])
    """
    series = [s for s in series if s]
    if not series:
        empty = np.empty(0)
        return empty, empty, empty, empty
    steps = np.asarray(sorted({float(x) for s in series for x in s}), dtype=float)
    grid = np.full((len(series), len(steps)), np.nan)
    for i, s in enumerate(series):
        xs = np.asarray(sorted(s), dtype=float)
        ys = np.asarray([s[x] for x in sorted(s)], dtype=float)
        inside = (steps >= xs[0]) & (steps <= xs[-1])
        grid[i, inside] = np.interp(steps[inside], xs, ys)
    has = ~np.isnan(grid).all(axis=0)
    steps, grid = steps[has], grid[:, has]
    filled = np.where(np.isnan(grid), 0.0, grid)
    count = (~np.isnan(grid)).sum(axis=0)
    mean = filled.sum(axis=0) / count
    low = np.where(np.isnan(grid), np.inf, grid).min(axis=0)
    high = np.where(np.isnan(grid), -np.inf, grid).max(axis=0)
    return steps, mean, low, high


def plot_target(runs: Runs, metric: str, path: str | Path, losses: list[str] | None = None) -> Path:
    """Validation ``metric`` vs step, one line per loss (mean over seeds) with a min–max band."""
    grouped = _group(runs, metric, losses)
    fig = _figure((7, 4.5))
    ax = fig.add_subplot()
    for i, (loss, series) in enumerate(grouped.items()):
        _draw(ax, series, loss, _color(i))
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs step (line: mean over seeds; {BAND})", fontsize=10)
    _finish(ax, grouped)
    return _save(fig, path)


def plot_train_loss(runs: Runs, path: str | Path, losses: list[str] | None = None) -> Path:
    """Training loss vs step, one subplot per loss (each loss on its own scale)."""
    grouped = _group(runs, "train_loss", losses)
    n = max(len(grouped), 1)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = _figure((3.6 * cols, 2.8 * rows + 0.6), layout=None)
    grid = _grid(fig, rows, cols)
    for i, (loss, series) in enumerate(grouped.items() or [("(no runs)", [])]):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        _draw(ax, series, loss, _color(i))
        ax.set_title(f"{loss} (n={sum(1 for s in series if s)})" if series else loss, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if not any(series):
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"training loss per loss, own scale (line: mean over seeds; {BAND})", fontsize=10)
    return _save(fig, path)


def plot_grad_norm(runs: Runs, path: str | Path, losses: list[str] | None = None) -> Path:
    """Gradient norm vs step, one line per loss (mean over seeds); log y scale when every value is positive."""
    grouped = _group(runs, "grad_norm", losses)
    fig = _figure((7, 4.5))
    ax = fig.add_subplot()
    for i, (loss, series) in enumerate(grouped.items()):
        _draw(ax, series, loss, _color(i))
    values = [v for series in grouped.values() for s in series for v in s.values()]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm")
    ax.set_title(f"gradient norm vs step (line: mean over seeds; {BAND})", fontsize=10)
    _finish(ax, grouped)
    return _save(fig, path)


def render_plots(
    runs: Runs, plots_dir: str | Path, metric: str, losses: list[str] | None = None, drawn: PlotCache | None = None
) -> list[Path]:
    """The three curve plots in ``plots_dir`` (created if needed), each drawn unless ``drawn`` holds it as drawn
    from the same runs; returns their paths."""
    runs = list(runs)
    plots_dir = Path(plots_dir)
    confined(plots_dir).mkdir(parents=True, exist_ok=True)  # never through a symlink out of the results folder
    drawn = drawn if drawn is not None else PlotCache(plots_dir)
    return [
        drawn.draw(TARGET_PNG, [runs, metric, losses], lambda path: plot_target(runs, metric, path, losses)),
        drawn.draw(TRAIN_LOSS_PNG, [runs, losses], lambda path: plot_train_loss(runs, path, losses)),
        drawn.draw(GRAD_NORM_PNG, [runs, losses], lambda path: plot_grad_norm(runs, path, losses)),
    ]


def _group(runs: Runs, column: str, losses: list[str] | None) -> dict[str, list[dict[float, float]]]:
    """loss -> one ``step -> value`` series per run (in ``losses`` order, else sorted)."""
    grouped: dict[str, list[dict[float, float]]] = {}
    for record, rows in sorted(runs, key=lambda item: (item[0].loss, item[0].seed)):
        series = {}
        for row in rows:
            step, value = row.get("step"), row.get(column)
            if finite_number(step) and finite_number(value):
                series[float(step)] = float(value)  # a step logged twice (resumed run) keeps its last value
        grouped.setdefault(record.loss, []).append(series)
    order = losses if losses is not None else sorted(grouped)
    return {loss: grouped[loss] for loss in order if loss in grouped}


def _draw(ax: Any, series: list[dict[float, float]], label: str, color: Any) -> None:
    steps, mean, low, high = seed_curve(series)
    if len(steps) == 0:
        return
    marker = "o" if len(steps) < 3 else None
    ax.plot(steps, mean, color=color, label=f"{label} (n={sum(1 for s in series if s)})", marker=marker, lw=1.5)
    if len(steps) > 1:
        ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0)
    else:
        ax.errorbar(steps, mean, yerr=[mean - low, high - mean], color=color, capsize=3, lw=1)


def _finish(ax: Any, grouped: dict[str, list[dict[float, float]]]) -> None:
    if any(s for series in grouped.values() for s in series):  # beside the axes: never over a curve
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)


def _color(i: int) -> Any:
    return matplotlib.colormaps["tab10"](i % 10)


def _figure(size: tuple[float, float], layout: Literal["constrained"] | None = "constrained") -> Figure:
    """A figure; ``layout=None`` for a grid of many axes, spaced by :func:`_grid` (the constrained layout measures
    every tick label of every axis: most of a 30-panel figure's time)."""
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _grid(fig: Figure, rows: int, cols: int, top: float = 0.6, bottom: float = 0.5) -> Any:
    """A ``rows`` x ``cols`` grid spec over ``fig`` with fixed margins (``top``/``bottom`` in inches: the title
    and a legend below), wide enough between cells for each cell's title and tick labels."""
    width, height = fig.get_size_inches()
    return fig.add_gridspec(
        rows,
        cols,
        left=0.7 / width,
        right=1 - 0.45 / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=0.35,
        hspace=0.55,
    )


def _save(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` to PNG in memory and write it atomically (no date in the metadata: same input, same bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)

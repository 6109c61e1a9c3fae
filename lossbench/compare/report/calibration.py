"""The report's reliability diagrams (class tasks, on the test split): one figure, a panel per loss, and its caption.

In each panel the bars are the confidence bins' accuracy (binary: share of positives) and the dots the bins' mean
confidence, both over the bin's center, so a calibrated bin's bar reaches its dot; the bins' counts are below.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lossbench.compare.analysis.calibration import reliability_bins
from lossbench.compare.report.drawn import PlotCache
from lossbench.compare.report.plots import _figure, _grid, _save
from lossbench.compare.store.layout import RELIABILITY_PNG

PANEL_COLUMNS = 3  # panels per row of the grid
CAPTION = (
    "Reliability on the test split, a panel per loss: the bars are each confidence bin's {observed}, the dots the "
    "bin's mean confidence, so a calibrated bin's bar reaches its dot; the bins' counts are below. Each panel pools "
    "the test predictions of its seeds, so the ECE it names first is the pooled one, which is never above the mean "
    "of the seeds' own ECEs ({pairs}): a pooled bin's gap between accuracy and confidence is the average of the "
    "seeds' gaps in that bin, and averaging cancels the part of them that points different ways from seed to seed, "
    "such as the few-example noise that biases a small sample's ECE upward. The tables and the tests use the "
    "per-seed ECE."
)


def class_predictions(predictions: dict[tuple[str, int], dict[str, Any]], losses: list[str]) -> dict[str, list]:
    """Loss -> its seeds' test predictions that hold class probabilities (in ``losses`` order; others left out)."""
    out = {}
    for loss in losses:
        preds = [p for (label, _), p in sorted(predictions.items()) if label == loss and "proba" in p]
        if preds and np.asarray(preds[0]["proba"]).ndim <= 2:
            out[loss] = preds
    return out


def ece_pair(preds: list[dict[str, Any]]) -> tuple[float, float]:
    """The ECE of ``preds`` pooled, and the mean of each seed's own ECE."""
    return reliability_bins(preds).ece, seed_ece(preds)


def seed_ece(preds: list[dict[str, Any]]) -> float:
    """The mean of each seed's own ECE."""
    return float(np.mean([reliability_bins([p]).ece for p in preds]))


def plot_reliability_grid(per_loss: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """One figure of reliability diagrams, a panel per loss (its seeds pooled) with its bins' counts below."""
    n = len(per_loss)
    cols = min(n, PANEL_COLUMNS)
    rows = math.ceil(n / cols)
    fig = _figure((3.6 * cols, 4.0 * rows + 0.9), layout=None)
    grid = _grid(fig, rows, cols, top=0.3, bottom=0.9)
    for k, (loss, preds) in enumerate(per_loss.items()):
        cell = grid[k // cols, k % cols].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
        top = fig.add_subplot(cell[0])
        _panel(top, fig.add_subplot(cell[1], sharex=top), loss, preds)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=3, fontsize=8)
    return _save(fig, path)


def _panel(top: Any, bottom: Any, loss: str, preds: list[dict[str, Any]]) -> None:
    """One loss's reliability diagram on ``top`` and its bins' counts on ``bottom``."""
    bins = reliability_bins(preds)
    pooled, per_seed = bins.ece, seed_ece(preds)  # the pooled bins are these: not binned again
    width = bins.edges[1] - bins.edges[0]
    observed = "share of positives" if bins.binary else "accuracy"
    top.bar(bins.centers, bins.accuracy, width=width * 0.9, color="tab:blue", alpha=0.75, label=observed)
    top.plot(bins.centers, bins.confidence, "o", color="tab:red", ms=3.5, label="mean confidence of the bin")
    top.plot([0, 1], [0, 1], color="0.4", ls="--", lw=1, label="calibrated (y = x)")
    top.set_xlim(0, max(1.0, float(bins.centers.max()) + width / 2))  # the bin of exactly 1.0 lies right of 1
    top.set_ylim(0, 1.02)
    top.tick_params(labelbottom=False)
    top.set_title(f"{loss}: ECE {pooled:.4f} pooled ({len(preds)} seeds), {per_seed:.4f} per seed", fontsize=8)
    bottom.bar(bins.centers, bins.count, width=width * 0.9, color="0.5")
    bottom.set_xlabel("p(y = 1)" if bins.binary else "confidence (top probability)", fontsize=8)
    bottom.set_ylabel("examples", fontsize=8)


def reliability_caption(per_loss: dict[str, list[dict[str, Any]]]) -> str:
    """The caption under the grid: what the marks are, and why a panel's pooled ECE is below the per-seed mean."""
    binary = any(np.asarray(preds[0]["proba"]).ndim == 1 for preds in per_loss.values())
    pairs = "; ".join(
        f"{loss}: {pooled:.4f} pooled, {seed:.4f} per seed"
        for loss, (pooled, seed) in ((loss, ece_pair(preds)) for loss, preds in per_loss.items())
    )
    return CAPTION.format(observed="share of positives" if binary else "accuracy", pairs=pairs)


def render_reliability(
    predictions: dict[tuple[str, int], dict[str, Any]], losses: list[str], drawn: PlotCache
) -> list[Path]:
    """The reliability grid of the losses whose saved test predictions hold probabilities; its path (or none)."""
    per_loss = class_predictions(predictions, losses)
    if not per_loss:
        return []
    return [drawn.draw(RELIABILITY_PNG, per_loss, lambda path: plot_reliability_grid(per_loss, path))]

"""The report's reliability diagrams (class tasks, on the test split): one figure per loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lossbench.compare.analysis.calibration import reliability_bins
from lossbench.compare.report.plots import _figure, _save, file_stem


def plot_reliability(loss: str, predictions: list[dict[str, Any]], path: str | Path) -> Path:
    """One loss's reliability diagram (its seeds pooled), with the bins' counts as a histogram below."""
    bins = reliability_bins(predictions)
    fig = _figure((4.2, 4.6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = bins.edges[1] - bins.edges[0]
    top.bar(bins.centers, bins.accuracy, width=width * 0.9, color="tab:blue", alpha=0.75, label="observed")
    top.plot(bins.confidence, bins.accuracy, "o", color="tab:red", ms=3, label="bin mean confidence")
    top.plot([0, 1], [0, 1], color="0.4", ls="--", lw=1, label="calibrated")
    top.set_xlim(0, max(1.0, float(bins.centers.max()) + width / 2))  # the bin of exactly 1.0 lies right of 1
    top.set_ylim(0, 1)
    top.set_ylabel("share of positives" if bins.binary else "accuracy")
    top.set_title(f"{loss}: test ECE {bins.ece:.4f} ({len(predictions)} seed(s) pooled)", fontsize=9)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(bins.centers, bins.count, width=width * 0.9, color="0.5")
    bottom.set_xlabel("p(y = 1)" if bins.binary else "confidence (top probability)")
    bottom.set_ylabel("examples", fontsize=8)
    return _save(fig, path)


def reliability_name(loss: str) -> str:
    """The plot file of ``loss``: ``reliability_<loss>.png``, one file per label (:func:`.plots.file_stem`)."""
    return f"reliability_{file_stem(loss)}.png"


def render_reliability(
    predictions: dict[tuple[str, int], dict[str, Any]], losses: list[str], plots_dir: Path
) -> list[Path]:
    """A reliability diagram per loss whose saved test predictions hold probabilities; returns their paths."""
    paths = []
    for loss in losses:
        preds = [p for (label, _), p in sorted(predictions.items()) if label == loss and "proba" in p]
        if preds and np.asarray(preds[0]["proba"]).ndim <= 2:
            paths.append(plot_reliability(loss, preds, plots_dir / reliability_name(loss)))
    return paths

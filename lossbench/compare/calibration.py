"""Calibration on the test split: reliability diagrams per loss, from the saved test predictions.

A reliability diagram bins the test examples by the model's confidence (multiclass: the top
probability; binary: ``p(y=1)``) into the same 15 equal-width bins as the ECE metric, and
plots each bin's accuracy (binary: its share of positives) against its mean confidence; a
calibrated model lies on the diagonal (Guo et al. 2017). The examples of every seed of a loss
are pooled. The ECE printed in each title is the bins' weighted gap, on the pooled examples.

Example:
    >>> import numpy as np
    >>> proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> bins = reliability_bins([{"proba": proba, "target": np.array([0, 1, 1, 0])}], n_bins=5)
    >>> bins.confidence.round(2).tolist(), bins.accuracy.tolist(), bins.count.tolist(), round(bins.ece, 3)
    ([0.6, 0.75, 0.9], [1.0, 0.5, 1.0], [1, 2, 1], 0.25)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lossbench.compare.plots import _figure, _save

N_BINS = 15  # as MulticlassCalibrationError(n_bins=15) in lossbench.metrics


@dataclass
class ReliabilityBins:
    """The non-empty bins: mean confidence, accuracy and count each; ``ece`` over all of them."""

    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    centers: np.ndarray  # of the non-empty bins, where their bars are drawn
    edges: np.ndarray
    ece: float
    binary: bool


def reliability_bins(predictions: list[dict[str, Any]], n_bins: int = N_BINS) -> ReliabilityBins:
    """Pool ``predictions`` (each with ``proba`` and ``target``) and bin them by confidence."""
    proba = np.concatenate([np.asarray(p["proba"], dtype=np.float64) for p in predictions])
    target = np.concatenate([np.asarray(p["target"]) for p in predictions])
    binary = proba.ndim == 1
    if binary:
        confidence, hit = proba, (target == 1).astype(np.float64)
    else:
        confidence, hit = proba.max(-1), (proba.argmax(-1) == target).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)  # (lo, hi] bins
    count = np.bincount(index, minlength=n_bins)
    conf = np.bincount(index, weights=confidence, minlength=n_bins) / np.maximum(count, 1)
    acc = np.bincount(index, weights=hit, minlength=n_bins) / np.maximum(count, 1)
    keep = count > 0
    ece = float(np.sum(count[keep] * np.abs(acc[keep] - conf[keep])) / max(len(confidence), 1))
    centers = (edges[:-1] + edges[1:]) / 2
    return ReliabilityBins(conf[keep], acc[keep], count[keep], centers[keep], edges, ece, binary)


def plot_reliability(loss: str, predictions: list[dict[str, Any]], path: str | Path) -> Path:
    """One loss's reliability diagram (its seeds pooled), with the bins' counts as a histogram below."""
    bins = reliability_bins(predictions)
    fig = _figure((4.2, 4.6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = bins.edges[1] - bins.edges[0]
    top.bar(bins.centers, bins.accuracy, width=width * 0.9, color="tab:blue", alpha=0.75, label="observed")
    top.plot(bins.confidence, bins.accuracy, "o", color="tab:red", ms=3, label="bin mean confidence")
    top.plot([0, 1], [0, 1], color="0.4", ls="--", lw=1, label="calibrated")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("share of positives" if bins.binary else "accuracy")
    top.set_title(f"{loss}: test ECE {bins.ece:.4f} ({len(predictions)} seed(s) pooled)", fontsize=9)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(bins.centers, bins.count, width=width * 0.9, color="0.5")
    bottom.set_xlabel("p(y = 1)" if bins.binary else "confidence (top probability)")
    bottom.set_ylabel("examples", fontsize=8)
    return _save(fig, path)


def reliability_name(loss: str) -> str:
    """The plot file of ``loss``: ``reliability_<loss>.png`` (labels are letters, digits, ``_`` and ``-``)."""
    return f"reliability_{re.sub(r'[^A-Za-z0-9_.-]', '_', loss)}.png"


def render_reliability(predictions: dict[tuple[str, int], dict[str, Any]], losses: list[str],
                       plots_dir: Path) -> list[Path]:
    """A reliability diagram per loss whose saved test predictions hold probabilities; returns their paths."""
    paths = []
    for loss in losses:
        preds = [p for (label, _), p in sorted(predictions.items()) if label == loss and "proba" in p]
        if preds and np.asarray(preds[0]["proba"]).ndim <= 2:
            paths.append(plot_reliability(loss, preds, plots_dir / reliability_name(loss)))
    return paths

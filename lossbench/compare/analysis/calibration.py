"""Calibration on the test split: reliability diagrams per loss, from the saved test predictions.

A reliability diagram bins the test examples by the model's confidence (multiclass: the top
probability; binary: ``p(y=1)``) into the bins of the ``ece`` metric (torchmetrics' calibration
error, :func:`lossbench.metrics.calibration_bins`: 15 equal-width bins ``[lo, hi)`` and one more for a confidence of
exactly 1.0), and plots each bin's accuracy (binary: its share of positives) against its mean
confidence; a calibrated model lies on the diagonal (Guo et al. 2017). The examples of every seed
of a loss are pooled; rows whose target is the head's ``ignore_index`` are left out, as the metric
does. The ECE printed in each title is the bins' weighted gap, on the pooled examples: on one
seed, the logged test ``ece``.

Example:
    >>> import numpy as np
    >>> proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [1.0, 0.0]])
    >>> bins = reliability_bins([{"proba": proba, "target": np.array([0, 1, 1, 0, 1])}], n_bins=5)
    >>> bins.confidence.round(2).tolist(), bins.accuracy.tolist(), bins.count.tolist(), round(bins.ece, 3)
    ([0.65, 0.85, 1.0], [1.0, 0.5, 0.0], [2, 2, 1], 0.48)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lossbench._metric_rules import ECE_BINS, calibration_bins
from lossbench.compare.store.tensors import IGNORE_INDEX_KEY


@dataclass
class ReliabilityBins:
    """The non-empty bins: mean confidence, accuracy and count each; ``ece`` over all of them."""

    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    centers: np.ndarray  # of the non-empty bins, where their bars are drawn (the bin of 1.0 just right of 1)
    edges: np.ndarray
    ece: float
    binary: bool


def _confidence_and_hit(pred: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """What torchmetrics' calibration error reads of one prediction dict: the confidence (in the probabilities'
    dtype) and whether it is a hit (binary: the target is 1), ignored rows left out."""
    proba, target = torch.as_tensor(np.asarray(pred["proba"])), torch.as_tensor(np.asarray(pred["target"]))
    if proba.dim() == 1:  # binary: p(y=1) against the rounded 0/1 target
        return proba, (target.round() == 1).double()
    if IGNORE_INDEX_KEY in pred:
        keep = target != int(np.asarray(pred[IGNORE_INDEX_KEY]))
        proba, target = proba[keep], target[keep]
    confidence, label = proba.float().max(dim=1)
    return confidence, (label == target).double()


def reliability_bins(predictions: list[dict[str, Any]], n_bins: int = ECE_BINS) -> ReliabilityBins:
    """Pool ``predictions`` (each with ``proba`` and ``target``) and bin them by
    :func:`lossbench.metrics.calibration_bins`."""
    pairs = [_confidence_and_hit(p) for p in predictions]
    confidence = torch.cat([c for c, _ in pairs])
    index = calibration_bins(confidence, n_bins).numpy()
    values, hit = confidence.double().numpy(), torch.cat([h for _, h in pairs]).numpy()
    count = np.bincount(index, minlength=n_bins + 1)
    conf = np.bincount(index, weights=values, minlength=n_bins + 1) / np.maximum(count, 1)
    acc = np.bincount(index, weights=hit, minlength=n_bins + 1) / np.maximum(count, 1)
    keep = count > 0
    ece = float(np.sum(count[keep] * np.abs(acc[keep] - conf[keep])) / max(len(values), 1))
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centers = np.append((edges[:-1] + edges[1:]) / 2, 1.0 + 0.5 / n_bins)
    binary = np.asarray(predictions[0]["proba"]).ndim == 1
    return ReliabilityBins(conf[keep], acc[keep], count[keep], centers[keep], edges, ece, binary)

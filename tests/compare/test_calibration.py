"""Reliability diagrams (lossbench.compare.analysis.calibration) bin as the logged ``ece`` does."""

from __future__ import annotations

import pytest
import torch

from lossbench.compare.analysis.calibration import reliability_bins
from lossbench.compare.execution.evaluate import metrics_from_predictions
from lossbench.metrics import ECE_BINS as N_BINS

EDGES = torch.linspace(0, 1, N_BINS + 1)  # float32, as torchmetrics builds them for float32 probabilities


def _numpy(pred):
    return {key: value.numpy() for key, value in pred.items()}


def test_the_diagrams_ece_is_the_logged_ece_at_bin_edges_and_at_exactly_one():
    """Issue 19: torchmetrics puts a confidence of exactly 1.0 in a bin of its own and an edge in the bin above it;
    reliability_bins put 1.0 in the last bin and binned in float64 (0.525 logged vs 0.475 drawn)."""
    g = torch.Generator().manual_seed(0)
    # binary: p(y=1) on every edge and at 1.0 (three times each), then random; the targets mix hits and misses
    p = torch.cat([EDGES.repeat(3), torch.ones(8), torch.rand(100, generator=g)])
    y = (torch.rand(p.shape, generator=g) < p).long()
    y[-108:-100] = torch.tensor([1, 0, 0, 0, 1, 0, 0, 1])  # at p = 1.0: mostly wrong
    binary = {"proba": p, "target": y}
    assert reliability_bins([_numpy(binary)]).ece == pytest.approx(
        metrics_from_predictions("binary", None, binary)["test/ece"], abs=1e-6
    )
    # multiclass (16 classes, so that every edge above 1/16 can be the top probability), ignore_index 2 left out
    top = torch.cat([EDGES[1:].repeat(3), torch.ones(5)])
    proba = ((1 - top) / 15).unsqueeze(1).repeat(1, 16)
    proba[:, 0] = top
    target = torch.randint(0, 16, top.shape, generator=g)
    target[::2] = 0
    target[1::7] = 2
    multiclass = {"proba": proba, "label": proba.argmax(-1), "target": target, "ignore_index": torch.tensor(2)}
    logged = metrics_from_predictions("multiclass", 16, multiclass)["test/ece"]
    assert reliability_bins([_numpy(multiclass)]).ece == pytest.approx(logged, abs=1e-6)
    # seeds pooled: the ECE of the pooled rows
    pooled = {key: torch.cat([binary[key], binary[key].flip(0)]) for key in ("proba", "target")}
    assert reliability_bins([_numpy(binary), _numpy({k: v.flip(0) for k, v in binary.items()})]).ece == pytest.approx(
        metrics_from_predictions("binary", None, pooled)["test/ece"], abs=1e-6
    )
    bins = reliability_bins([_numpy(binary)])
    assert bins.count.sum() == len(p) and bins.confidence[-1] == 1.0 and bins.count[-1] == int((p == 1).sum())

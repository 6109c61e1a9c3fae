"""Reliability diagrams (lossbench.compare.analysis.calibration) bin as the logged ``ece`` does."""

from __future__ import annotations

import pytest
import torch

from lossbench.compare.analysis.calibration import reliability_bins
from lossbench.compare.execution.evaluate import metrics_from_predictions
from lossbench.compare.report.calibration import _panel, ece_pair, plot_reliability_grid, reliability_caption
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


def _seeds(n_seeds=4, rows=60, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(n_seeds):
        logits = torch.randn(rows, classes, generator=g) * (1 + s)  # each seed calibrated differently
        out.append(
            {"proba": logits.softmax(1).numpy(), "target": torch.randint(0, classes, (rows,), generator=g).numpy()}
        )
    return out


def test_the_pooled_ece_is_never_above_the_mean_of_the_seeds_own():
    """The caption's claim: a pooled bin's gap is the average of the seeds' gaps, so (triangle inequality, seeds of
    equal size) the pooled ECE is at most the mean per-seed ECE; each is torchmetrics' ECE of its rows."""
    for seed in range(20):
        preds = _seeds(seed=seed)
        pooled, per_seed = ece_pair(preds)
        assert pooled <= per_seed + 1e-12
        tensors = [{k: torch.as_tensor(v) for k, v in p.items()} for p in preds]
        logged = [metrics_from_predictions("multiclass", 3, t | {"label": t["proba"].argmax(1)}) for t in tensors]
        assert per_seed == pytest.approx(sum(m["test/ece"] for m in logged) / len(logged), abs=1e-6)
    assert pooled < per_seed  # strictly, on seeds that miss in different ways


def test_a_panel_draws_accuracy_bars_and_mean_confidence_dots_over_the_bin_centers():
    from lossbench.compare.report.plots import _figure

    preds = _seeds(n_seeds=2)
    fig = _figure((4, 4))
    top, bottom = fig.subplots(2, 1)
    _panel(top, bottom, "ce", preds)
    bins = reliability_bins(preds)
    dots = next(line for line in top.get_lines() if line.get_label() == "mean confidence of the bin")
    assert dots.get_xdata().tolist() == bins.centers.tolist()  # the dot is where its label says: the confidence
    assert dots.get_ydata().tolist() == pytest.approx(bins.confidence.tolist())
    bars = [patch for patch in top.patches]
    assert [b.get_height() for b in bars] == pytest.approx(bins.accuracy.tolist())
    assert [b.get_x() + b.get_width() / 2 for b in bars] == pytest.approx(bins.centers.tolist())
    pooled, per_seed = ece_pair(preds)
    assert top.get_title() == f"ce: ECE {pooled:.4f} pooled (2 seeds), {per_seed:.4f} per seed"


def test_the_grid_has_a_panel_per_loss_and_the_caption_names_both_eces(tmp_path):
    from PIL import Image

    per_loss = {label: _seeds(n_seeds=2, seed=i) for i, label in enumerate(["çe", "ée", "_e", "ce"])}  # one panel each
    path = plot_reliability_grid(per_loss, tmp_path / "reliability.png")
    width, height = Image.open(path).size
    assert width > height  # 3 panels in the first row, 1 in the second
    caption = reliability_caption(per_loss)
    for loss, preds in per_loss.items():
        pooled, per_seed = ece_pair(preds)
        assert f"{loss}: {pooled:.4f} pooled, {per_seed:.4f} per seed" in caption
    assert "never above the mean of the seeds' own ECEs" in caption and "bin's accuracy" in caption

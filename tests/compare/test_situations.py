"""Issue 12 in a comparison: label noise and imbalance in the recipe's data, `weight: balanced`, the report's
Data section, per-class recall and reliability diagrams; every number still recomputes from the folder."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

from lossbench.compare import Comparison, load_recipe
from lossbench.compare.analysis.calibration import reliability_bins
from lossbench.compare.execution.recompute import recompute
from lossbench.compare.execution.runner import balanced_weights
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import RunRecord
from tests.compare.conftest import tiny_recipe


def test_reliability_bins_give_torchmetrics_ece():
    g = torch.Generator().manual_seed(0)
    proba, target = torch.softmax(torch.randn(400, 5, generator=g) * 2, -1), torch.randint(0, 5, (400,), generator=g)
    metric = MulticlassCalibrationError(5, n_bins=15)
    metric.update(proba, target)
    assert reliability_bins([{"proba": proba.numpy(), "target": target.numpy()}]).ece == pytest.approx(
        float(metric.compute()), abs=1e-6
    )
    p, t = torch.rand(300, generator=g), (torch.rand(300, generator=g) < 0.4).long()
    metric = BinaryCalibrationError(n_bins=15)
    metric.update(p, t)
    bins = reliability_bins([{"proba": p.numpy(), "target": t.numpy()}])
    assert bins.binary and bins.ece == pytest.approx(float(metric.compute()), abs=1e-6) and bins.count.sum() == 300


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("situations") / "out"
    raw = tiny_recipe(
        executor="fused",
        losses=["ce", {"name": "ce", "label": "ce_balanced", "args": {"weight": "balanced"}}],
        data={
            "path": "lossbench:wine",
            "batch_size": 16,
            "imbalance": {"kind": "longtail", "ratio": 4, "seed": 3},
            "label_noise": {"kind": "pairflip", "rate": 0.2, "seed": 3},
        },
    )
    recipe = load_recipe(raw)
    Comparison(recipe, out, progress=False).run()
    return recipe, out


def test_balanced_weights_follow_the_imbalanced_training_counts(done):
    recipe, out = done
    cmp = Comparison(recipe, out, progress=False)
    cmp.prepare()
    counts = cmp.data["train"]["class_counts"]  # of the noisy labels the heads train on
    targets = np.asarray(cmp.datamodule(0).train_dataset["target"])
    assert list(counts.values()) == np.bincount(targets, minlength=3).tolist()
    assert cmp.data["train"]["imbalance"]["after"] == [33, 16, 8]  # wine's smallest class has 33 training rows
    n, c = sum(counts.values()), len(counts)
    weights = balanced_weights(counts, cmp.datamodule(0).spec)
    assert weights == pytest.approx([n / (c * k) for k in counts.values()])
    model = cmp.build_model(
        recipe.loss("ce_balanced"), 0, cmp.datamodule(0).spec, cmp.initial_state(0, cmp.datamodule(0).spec)
    )
    assert model.head.weight.tolist() == pytest.approx(weights)
    record = RunRecord.load(run_dir(out, "ce_balanced", 0) / "record.json")
    assert record.head_args == {"weight": "balanced"} and record.status == "finished"


def test_the_report_states_the_noise_and_imbalance_and_shows_recall_and_reliability(done):
    recipe, out = done
    text = (out / "report.md").read_text()
    assert (
        "Class imbalance, made on purpose: the train split was subsampled to a longtail profile with "
        "largest/smallest class ratio 4 (seed 3)" in text
    )
    assert "Label noise, made on purpose: 0.2 pair-flip (class c -> c + 1 mod C) on the train split (seed 3)" in text
    assert "| true \\ given | 0 | 1 | 2 |" in text and "### Per-class recall (test)" in text
    assert (out / "plots" / "reliability.png").stat().st_size > 1000  # one grid, a panel per loss
    assert "![reliability diagrams (test), a panel per loss](plots/reliability.png)" in text
    for loss in ("ce", "ce_balanced"):
        assert re.search(rf"{loss}: 0\.\d{{4}} pooled, 0\.\d{{4}} per seed", text)
    assert "WARNING" not in text


def test_every_number_recomputes_with_balanced_weights_and_noisy_data(done):
    recipe, out = done
    assert recompute(out).ok


def test_test_metrics_include_balanced_accuracy_and_brier(done):
    recipe, out = done
    record = RunRecord.load(run_dir(out, "ce", 1) / "record.json")
    assert {"test/balanced_accuracy", "test/brier", "test/f1_macro", "test/nll", "test/ece"} <= set(record.test)
    assert 0 <= record.test["test/brier"] <= 2 and np.isfinite(record.final["val/balanced_accuracy"])

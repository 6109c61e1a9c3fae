"""Real targets are standardised for the loss, and metrics and predictions stay on the original scale.

Regression test of a reported bug: on a CSV whose target has mean 50 and sd 3.8, every loss ended at
R² between -110 and -119 (the untrained outputs are near 0, 13 sds away, and the loss's learning rate
was set for unit-scale targets); standardising the target gives R² well above 0.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from lossbench import LossbenchModule
from lossbench.data import HFDataModule

SMALL = {"d_model": 16, "nhead": 2, "num_layers": 1}


def _csv(path, n=400, mean=50.0, sd=3.8, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    signal = x @ np.array([0.8, -0.5, 0.3])
    y = mean + sd * (signal / signal.std() * 0.9 + 0.3 * rng.normal(size=n)) + shift
    lines = ["a,b,c,target"] + [f"{r[0]:.6f},{r[1]:.6f},{r[2]:.6f},{t:.6f}" for r, t in zip(x, y)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _dm(tmp_path, **kw):
    files = _csv(tmp_path / "data.csv", **{k: kw.pop(k) for k in ("shift",) if k in kw})
    return HFDataModule(
        "csv",
        data_files=files,
        feature_columns=["a", "b", "c"],
        label_column="target",
        batch_size=32,
        cache_dir=str(tmp_path / "cache"),
        **kw,
    )


def _trainer(**kw):
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kw,
    )


def test_spec_carries_the_training_splits_target_stats(tmp_path):
    dm = _dm(tmp_path)
    dm.setup("fit")
    train = dm.train_dataset.with_format("numpy")["target"][:].astype(np.float64)  # the processed training split
    spec = dm.spec
    assert spec.target_mean == pytest.approx(train.mean(), rel=1e-9)
    assert spec.target_std == pytest.approx(train.std(), rel=1e-9)
    assert 45 < spec.target_mean < 55 and 3 < spec.target_std < 5
    assert _dm(tmp_path, standardize_target=False).spec.target_std is None


def test_loss_on_standardised_target_and_predictions_on_original_scale(tmp_path):
    dm = _dm(tmp_path)
    model = LossbenchModule("mse", data_spec=dm.spec, backbone=SMALL, seed=0)
    mean, std = dm.spec.target_mean, dm.spec.target_std
    assert model.target_scale == (mean, std)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    outputs = model(batch["inputs"])
    # hand-computed: the loss is MSE against (y - mean) / std; the values are outputs * std + mean
    expected = torch.mean((outputs - (batch["target"] - mean) / std) ** 2)
    torch.testing.assert_close(model.head.loss(outputs, model._loss_target(batch["target"])), expected)
    torch.testing.assert_close(model.predict_values(outputs), outputs * std + mean)
    torch.testing.assert_close(model.predict_step(batch, 0), outputs * std + mean)
    # poisson_nll keeps its counts: no standardisation
    assert LossbenchModule("poisson_nll", data_spec=dm.spec, backbone=SMALL, seed=0).target_scale is None


def test_raw_scale_target_learns_by_default_and_not_without_standardising(tmp_path):
    """Before the fix (= standardize_target=False) R² was about -100 after training; now it is > 0.3."""
    r2 = {}
    for standardize in (True, False):
        dm = _dm(tmp_path, standardize_target=standardize)
        model = LossbenchModule("mse", data_spec=dm.spec, backbone=SMALL, lr=3e-3, seed=0)
        trainer = _trainer(max_epochs=4)
        trainer.fit(model, dm)
        r2[standardize] = float(trainer.callback_metrics["val/r2"])
        mse = float(trainer.callback_metrics["val/mse"])
        if standardize:  # metrics on the original scale: the MSE is in target units², near sd² (1 - R²)
            assert 0 < mse < 3.8**2
    assert r2[True] > 0.3, r2
    assert r2[False] < -10, r2


def test_poisson_on_negative_targets_names_the_target(tmp_path):
    dm = _dm(tmp_path, shift=-100.0)
    model = LossbenchModule("poisson_nll", data_spec=dm.spec, backbone=SMALL, seed=0)
    with pytest.raises(ValueError, match="`target` must hold non-negative counts"):
        _trainer(max_steps=1, limit_val_batches=0).fit(model, dm)


def test_metrics_from_saved_checkpoint_hparams_keep_the_scale(tmp_path):
    dm = _dm(tmp_path)
    model = LossbenchModule("huber", data_spec=dm.spec, backbone=SMALL, seed=0)
    again = LossbenchModule(**{k: v for k, v in model.hparams.items()})
    assert again.target_scale == model.target_scale and all(math.isfinite(v) for v in again.target_scale)

"""Step values belong to the step they are written under: the module's train/ logs and compare's rows."""

import csv

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from lossbench import LossbenchModule
from lossbench.compare import Comparison, load_recipe
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import read_csv
from lossbench.data import DataSpec
from tests.compare.conftest import tiny_recipe

SMALL = {"d_model": 16, "nhead": 2, "num_layers": 1}
FEATURES = DataSpec("features", "class", num_classes=3, num_features=4)


def class_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return [{"inputs": a, "target": b} for a, b in zip(x, y)]


def grad_norm(module):
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


class Spy(pl.Callback):
    """Each optimizer step's loss, loss terms, gradient norm and learning rate, by its step (``global_step``
    before the step: the step a logger row of that batch is written under)."""

    def __init__(self):
        self.loss, self.terms, self.grad_norm, self.lr = {}, {}, {}, {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        with torch.no_grad():  # the weights the batch's training_step sees: the same terms (no dropout)
            _, terms = module.head.compute(module(batch["inputs"]), batch["target"])
        self.terms[trainer.global_step] = {k: float(v) for k, v in terms.items()}

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.grad_norm[trainer.global_step] = grad_norm(module)
        self.lr[trainer.global_step] = float(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.loss[trainer.global_step - 1] = float(outputs["loss"])  # global_step counts this step already


def csv_steps(path):
    """step -> the union of the values of every row written under it (LearningRateMonitor writes its own rows)."""
    steps = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            merged = steps.setdefault(int(row["step"]), {})
            for key, value in row.items():
                if key != "step" and value != "":
                    assert key not in merged or merged[key] == float(value), (row["step"], key)
                    merged[key] = float(value)
    return steps


@pytest.mark.parametrize("every", [5, 7])
def test_user_trainer_csv_rows_hold_the_values_of_their_own_step(tmp_path, every):
    steps = 40
    model = LossbenchModule(
        "poly1", data_spec=FEATURES, backbone=SMALL, lr=1e-2, schedule="cosine", warmup_steps=5, seed=0
    )
    spy = Spy()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        log_every_n_steps=every,
        logger=CSVLogger(save_dir=tmp_path),
        callbacks=[LearningRateMonitor(logging_interval="step"), spy],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(class_data(4 * steps), batch_size=4))
    rows = csv_steps(f"{trainer.logger.log_dir}/metrics.csv")

    written = sorted(s for s, row in rows.items() if "train/loss" in row)
    assert written == [s for s in range(steps) if (s + 1) % every == 0]  # Lightning writes these steps
    assert sorted(s for s, row in rows.items() if "train/grad_norm" in row) == written
    close = dict(rel=1e-6, abs=1e-6)
    for step in written:
        row = rows[step]
        assert row["train/loss"] == pytest.approx(spy.loss[step], **close), step
        for term, value in spy.terms[step].items():
            assert row[f"train/{term}"] == pytest.approx(value, **close), (step, term)
        assert row["train/grad_norm"] == pytest.approx(spy.grad_norm[step], rel=1e-5), step
        assert row["train/lr"] == pytest.approx(spy.lr[step], **close), step
        monitored = [v for k, v in row.items() if k.startswith("lr-")]
        assert monitored and all(v == pytest.approx(row["train/lr"], **close) for v in monitored), step
    assert len({rows[s]["train/lr"] for s in written}) == len(written)  # the schedule moved the lr every row


@pytest.mark.parametrize("log_every", [None, 3], ids=["engine-default", "log-every-3"])
def test_compare_rows_hold_the_last_optimizer_steps_grad_norm_and_lr(tmp_path, log_every):
    recipe = load_recipe(tiny_recipe(losses=["ce"], seeds=[0], schedule={"name": "cosine", "warmup_steps": 2}))
    out = tmp_path / "out"
    spy = Spy()
    comparison = Comparison(recipe, out, progress=False)
    make = comparison.book.trainer  # the run lifecycle (RunBook) makes every Trainer

    def trainer(callbacks, root, run=None):
        made = make(callbacks + [spy], root, run)
        if log_every is not None:  # the module's step logs fall elsewhere than the rows
            made.log_every_n_steps = log_every
        return made

    comparison.book.trainer = trainer
    comparison.run()
    rows = read_csv(run_dir(out, "ce", 0) / "metrics.csv")
    assert [r["step"] for r in rows] == [0, 4, 8]
    assert rows[0]["grad_norm"] is None  # no optimizer step before the step-0 evaluation
    for row in rows[1:]:
        last = row["step"] - 1  # the last optimizer step before this evaluation
        assert row["grad_norm"] == pytest.approx(spy.grad_norm[last], rel=1e-5), row["step"]
        assert row["lr"] == pytest.approx(spy.lr[last], rel=1e-6), row["step"]

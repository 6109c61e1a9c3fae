"""Every head trains under ``bf16-mixed`` on CPU: finite losses, first step within 1e-2 of float32.

The heads come from :func:`lossbench.list_heads`, so a new head (built-in or plugin) is
included automatically; its data is built from its task kind alone.
"""

from __future__ import annotations

import copy
import math
import warnings

import lightning.pytorch as pl
import pytest
import torch

import lossbench
from lossbench import LossbenchModule
from lossbench.data import DataSpec

BACKBONE = {"d_model": 16, "nhead": 2, "num_layers": 1}
STEPS, BATCH, FEATURES, CLASSES, VOCAB, LENGTH = 3, 16, 4, 3, 11, 6
TOLERANCE = 1e-2  # |bf16 - fp32| <= TOLERANCE * max(1, |fp32|) on the first step
HEADS = {info.name: info.task for info in lossbench.list_heads()}


def task_data(name: str, task: str) -> tuple[DataSpec, list[dict[str, torch.Tensor]]]:
    """A data spec fitting ``task`` and ``STEPS`` fixed batches of it (as HFDataModule would collate them)."""
    gen = torch.Generator().manual_seed(1234)
    batches = []
    if task == "lm":
        spec = DataSpec("tokens", "token", num_classes=VOCAB, vocab_size=VOCAB, max_length=LENGTH, pad_id=0)
        for _ in range(STEPS):
            tokens = torch.randint(1, VOCAB, (BATCH, LENGTH + 1), generator=gen)
            batches.append({"inputs": tokens[:, :-1].contiguous(), "target": tokens[:, 1:].contiguous()})
        return spec, batches
    classes = 2 if task == "binary" else CLASSES
    kind = {"regression": "real", "distribution": "probability"}.get(task, "class")
    spec = DataSpec("features", kind, num_classes=None if kind == "real" else classes, num_features=FEATURES)
    for _ in range(STEPS):
        x = torch.randn(BATCH, FEATURES, generator=gen)
        if kind == "class":
            y = torch.randint(0, classes, (BATCH,), generator=gen)
        elif kind == "probability":
            y = torch.softmax(2 * torch.randn(BATCH, classes, generator=gen), dim=-1)
        elif name == "poisson_nll":  # counts
            y = torch.poisson(torch.full((BATCH,), 3.0), generator=gen)
        else:
            y = torch.randn(BATCH, generator=gen)
        batches.append({"inputs": x, "target": y})
    return spec, batches


class LossRecorder(pl.Callback):
    """The training loss of every step, as the module returned it."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss.detach().float()))


def train(model: LossbenchModule, batches, precision: str) -> list[float]:
    recorder = LossRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[recorder],
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None)  # each item is a ready batch
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*bf16.*")
        warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")
        trainer.fit(model, train_dataloaders=loader)
    return recorder.losses


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_trains_under_bf16_mixed_close_to_fp32(name):
    spec, batches = task_data(name, HEADS[name])
    fp32 = LossbenchModule(name, data_spec=spec, backbone=BACKBONE, lr=1e-3, seed=0)
    bf16 = copy.deepcopy(fp32)  # the same initial weights
    ref = train(fp32, batches, "32")
    low = train(bf16, batches, "bf16-mixed")
    assert len(ref) == len(low) == STEPS, (ref, low)
    assert all(math.isfinite(v) for v in ref + low), f"{name}: fp32 {ref}, bf16-mixed {low}"
    gap = abs(low[0] - ref[0])
    assert gap <= TOLERANCE * max(1.0, abs(ref[0])), (
        f"{name}: first-step loss bf16-mixed {low[0]:.6f} vs fp32 {ref[0]:.6f} (gap {gap:.2e})"
    )
    assert low != ref, f"{name}: bf16-mixed gave exactly the fp32 losses: autocast did not run"
    # parameters stay float32 under mixed precision (only the compute is bf16)
    assert all(p.dtype == torch.float32 for p in bf16.parameters())

"""Which weights a run reports: the final ones, or the best on validation (``select: best``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch


class BestWeights(pl.Callback):
    """Keeps a copy (on the CPU) of the weights of the best validation evaluation of ``metric`` (step 0 excluded).

    Strictly better only (the earliest of equal values wins); non-finite values never count.
    The best value, step and weights are saved in checkpoints, so a run resumed from any of its checkpoints
    holds the best weights of the evaluations before it and keeps selecting the same way (and nothing is
    written when a new best is found).
    """

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.best: float | None = None
        self.step: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.offer(int(trainer.global_step), trainer.callback_metrics.get(self.metric), module.state_dict)

    def offer(self, step: int, value: Any, state_dict: Callable[[], dict[str, Any]]) -> bool:
        """Keep ``state_dict()`` if ``value`` (at ``step``) is the best so far; returns whether it was."""
        if step == 0 or value is None:
            return False
        value = float(value)
        if not math.isfinite(value):
            return False
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in state_dict().items()}
            self.best, self.step = value, step
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "step": self.step, "weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.step = state_dict.get("best"), state_dict.get("step")
        self.weights = state_dict.get("weights")

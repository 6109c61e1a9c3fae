"""Which weights a run reports: the final ones, or the best on validation (``select: best``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lossbench.compare.evaluate import save_tensors

SELECT = ("final", "best")


class BestWeights(pl.Callback):
    """Keeps the weights of the best validation evaluation of ``metric`` (step 0 excluded) in ``path``.

    Strictly better only (the earliest of equal values wins); non-finite values never count.
    Its best value and step are saved in checkpoints, so a resumed run keeps selecting the same way.
    """

    def __init__(self, metric: str, mode: str, path: str | Path) -> None:
        self.metric, self.mode, self.path = metric, mode, Path(path)
        self.best: float | None = None
        self.step: int | None = None

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
            save_tensors(self.path, state_dict())
            self.best, self.step = value, step
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "step": self.step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.step = state_dict.get("best"), state_dict.get("step")

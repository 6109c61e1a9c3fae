"""Callbacks of a comparison run: the evaluation recorder, the batch-order fingerprint and the resume point."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint

from lossbench.compare.store.fingerprints import order_fingerprint
from lossbench.config import finite_number
from lossbench.distributed import same_on_all_ranks


def _float(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value.item() if isinstance(value, torch.Tensor) else value)
    return v  # non-finite values are kept: the report shows them


class DataOrderFingerprint(pl.Callback):
    """Records, for each training epoch, the sha256 of the index order the training sampler serves.

    Under DDP the order is the global one (all processes' shares interleaved), checked to be the
    same on every process (:class:`~lossbench.distributed.RankMismatchError` otherwise).
    """

    def __init__(self) -> None:
        self.hashes: dict[str, str] = {}

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        order = getattr(sampler, "order", None)
        if order is None:  # a sampler lossbench did not make: fall back to the data module's order
            order = getattr(getattr(trainer, "datamodule", None), "train_order", None)
        if order is not None:
            digest = order_fingerprint(order(trainer.current_epoch))
            same_on_all_ranks(f"the batch order of epoch {trainer.current_epoch}", digest)
            self.hashes[str(trainer.current_epoch)] = digest

    def state_dict(self) -> dict[str, Any]:
        return {"hashes": dict(self.hashes)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.hashes = dict(state_dict.get("hashes", {}))


def evaluation_row(
    step: int,
    epoch: int,
    wall_time: float,
    train_loss: float | None,
    grad_norm: Any,
    lr: float | None,
    values: dict[str, Any],
) -> dict[str, Any]:
    """One metrics.csv row: METRIC_COLUMNS, then every ``val/`` value in name order.

    One rule for both executors (sequential runs and fused array members): ``train_loss`` is the mean of the
    finite training losses since the last evaluation (a step skipped on its loss under ``nan_policy: skip`` has
    none; one skipped on its gradient has a finite loss and counts); ``grad_norm`` (before clipping) and ``lr``
    are those of the last optimizer step that updated the weights before this evaluation: a skipped step (on
    its loss or its gradient, or a loss scaler's overflow) changes neither. ``grad_norm`` is empty at step 0 and
    until a step has updated the weights; ``lr`` is then the optimizer's.
    """
    row = {
        "step": step,
        "epoch": epoch,
        "wall_time": round(wall_time, 6),
        "train_loss": train_loss,
        "grad_norm": _float(grad_norm) if step else None,
        "lr": lr,
    }
    row.update({k: _float(v) for k, v in sorted(values.items()) if k.startswith("val/")})
    return row


class LossMean:
    """The mean training loss since the last evaluation, summed on the device (no sync per step)."""

    def __init__(self) -> None:
        self._sum: torch.Tensor | None = None
        self._count = 0

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self._sum = loss if self._sum is None else self._sum + loss
        self._count += 1

    def take(self, trainer: pl.Trainer) -> float | None:
        """The mean (over processes too: they train equal batches in step), then start over; None if no loss."""
        if not self._count or self._sum is None:
            return None
        mean = self._sum.double() / self._count
        if trainer.world_size > 1:
            mean = trainer.strategy.reduce(mean, reduce_op="mean")
        self._sum, self._count = None, 0
        return float(mean)


class Recorder(pl.Callback):
    """An evaluation table kept by a callback (:class:`RunRecorder`, the fused executor's ``ArrayRecorder``)."""

    def needs_evaluation(self, step: int) -> bool:
        """Whether the table lacks the evaluation of ``step`` (after ``fit``: the final point of the curves)."""
        raise NotImplementedError

    def latest(self, metric: str) -> list[Any]:
        """``metric`` in the last row of each table (one per member), where there is one."""
        raise NotImplementedError


class RunRecorder(Recorder):
    """One row per evaluation of a :class:`~lossbench.LossbenchModule`: step, epoch, training wall time, mean
    train loss since the last evaluation, gradient norm, learning rate and every ``val/`` metric
    (:func:`evaluation_row`). Its rows and clocks are saved in checkpoints, so a resumed run continues the same
    table.

    ``on_row(rows)`` is called after each new row (the engine writes metrics.csv atomically).
    """

    def __init__(self, on_row: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self._started: float | None = None
        self._loss = LossMean()
        self.on_row = on_row

    # clocks: training time only, validation excluded
    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self._started is not None:
            self.train_seconds += time.perf_counter() - self._started
            self._started = None
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # None: a skipped step
        if isinstance(outputs, dict) and outputs.get("skipped"):  # skipped under DDP: a zero loss, not a loss
            loss = None
        if isinstance(loss, torch.Tensor):
            self._loss.add(loss)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.rows and self.on_row is not None:  # resumed: the table is the checkpoint's (rows after it are redone)
            self.on_row(self.rows)

    def on_validation_end(self, trainer: pl.Trainer, module: Any) -> None:  # a LossbenchModule
        if trainer.sanity_checking:
            return
        step = int(trainer.global_step)
        if self.rows and self.rows[-1]["step"] == step:  # an evaluation of this step is already recorded
            return
        # the last optimizer step that updated the weights (the module keeps its norm before clipping and its
        # learning rate: it logs train/grad_norm only every log_every_n_steps steps, and the scheduler has stepped
        # by the evaluation); before any, the optimizer's learning rate, if there is one
        lr = module.step_lr
        if lr is None and trainer.optimizers:
            lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.rows.append(
            evaluation_row(
                step,
                int(trainer.current_epoch),
                self.train_seconds,
                self._loss.take(trainer),
                module.step_grad_norm,
                lr,
                dict(trainer.callback_metrics),
            )
        )
        if self.on_row is not None:
            self.on_row(self.rows)

    def needs_evaluation(self, step: int) -> bool:
        return not self.rows or self.rows[-1]["step"] != step

    def latest(self, metric: str) -> list[Any]:
        return [self.rows[-1].get(metric)] if self.rows else []

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "train_seconds": self.train_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))


class StepProgress(pl.Callback):
    """Tells ``report(steps, epoch, latest)`` after every optimizer step and every evaluation: the new optimizer
    steps times the members trained (an array of K losses advances K runs a step at a time), the epoch, and the
    latest evaluation of ``metric`` in ``recorder``'s table (``"val/accuracy 0.8125"``; an array's members as a
    range, ``"val/accuracy 0.7500..0.8125"``; ``""`` before the first). What moves a comparison's progress
    display within a run or an array."""

    def __init__(self, report: Callable[[int, int, str], None], recorder: Recorder, metric: str) -> None:
        self.report, self.recorder, self.metric = report, recorder, metric
        self.last = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last = int(trainer.global_step)  # a resumed run counts from where it stood

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = int(trainer.global_step)
        if step > self.last:
            members = len(getattr(pl_module, "labels", None) or [None])
            self.report((step - self.last) * members, int(trainer.current_epoch), self.latest())
            self.last = step

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:  # after the recorder's row (it comes first among the callbacks)
            self.report(0, int(trainer.current_epoch), self.latest())

    def latest(self) -> str:
        values = [v for v in self.recorder.latest(self.metric) if finite_number(v)]
        if not values:
            return ""
        low, high = min(values), max(values)
        return f"{self.metric} {low:.4f}" if len(values) == 1 else f"{self.metric} {low:.4f}..{high:.4f}"


class LastCheckpoint(Checkpoint):
    """Saves the resume point (``path``, e.g. ``last.ckpt``) after an evaluation during ``fit``, at most once every
    ``every_s`` seconds (0: after every evaluation). A kill -9 loses at most that much training: the run resumes
    from its last checkpoint and replays the same steps on the same batches (the recorder's rows, the selection's
    best weights and the RNG states are in the checkpoint, so the replay continues exactly).

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning runs it after the other callbacks (the
    evaluation's row is recorded before it is saved) and adds no default ``ModelCheckpoint``. Under DDP the
    moment is global rank 0's, so every process saves together.
    """

    clock = staticmethod(time.monotonic)  # seconds (tests replace it)

    def __init__(self, path: str | Path, every_s: float) -> None:
        self.path, self.every_s = Path(path), float(every_s)
        self.saves = 0
        self._since = 0.0
        self.step: int | None = None  # the step last saved (an evaluation of it may run twice)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._since = self.clock()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.step == trainer.global_step:
            return
        due = self.every_s <= 0 or self.clock() - self._since >= self.every_s
        if trainer.world_size > 1:
            due = trainer.strategy.broadcast(due)
        if due:
            self.save(trainer)

    def save(self, trainer: pl.Trainer) -> None:
        """Save now (on every process: Lightning writes on global rank 0)."""
        self.step = int(trainer.global_step)
        trainer.save_checkpoint(self.path)
        self._since = self.clock()
        self.saves += 1

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.step = state_dict.get("step")

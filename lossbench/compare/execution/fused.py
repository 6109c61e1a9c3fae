"""The fused executor: every pending loss of one seed trained in lockstep as one :class:`ModelArray`.

One Trainer, one pass over each batch for all members (:mod:`lossbench.compare.execution.array`), one
checkpoint of the whole array (``DIR/arrays/seed_<k>/last.ckpt``, deleted when the array ends).
Every member writes what a sequential run of its loss writes: its record (with the same
fingerprints: same initial weights, same data, same batch order), its metrics.csv, its selected
weights and test predictions. ``record.execution`` says how it was trained::

    {"executor": "fused", "members": ["ce", "focal", ...], "vmapped": true}
    {"executor": "sequential", "fallback": "<why it could not train in the array>"}

Wall-time columns (``wall_time``, ``seconds_to_target``) of a fused member are the array's: the
time all its members took together to reach that step. Compare them between members of one array
or between arrays, not against sequential runs; steps are comparable everywhere.

A member whose head declares ``fusable = False``, or whose loss in the array differs from its loss
alone on the first batch (or raises only in the array), falls back to a sequential run.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch

from lossbench.compare.execution.array import ModelArray
from lossbench.compare.execution.callbacks import (
    DataOrderFingerprint,
    LastCheckpoint,
    LossMean,
    evaluation_row,
)
from lossbench.compare.execution.selection import BestWeights
from lossbench.compare.store import killpoint
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import RunRecord, is_global_zero, write_csv
from lossbench.compare.store.storage import (
    confined,
    move_aside,
    remove_tree,
    write_failure,
)
from lossbench.config import BackboneConfig
from lossbench.distributed import RankMismatchError
from lossbench.module import model_values
from lossbench.resume import seed_rngs

if TYPE_CHECKING:
    from lossbench.compare.execution.engine import Comparison, InitialState
    from lossbench.compare.recipe.schema import LossSpec

PROBE_TOLERANCE = 1e-5  # relative: a member's first-batch loss in the array against alone
MAX_ARRAY_MEMBERS = 64  # members of one array: its activations grow with them; more train in several arrays
MAX_ARRAY_VALUES = 50_000_000  # parameters and buffers of one array's members together (~0.2 GB in float32,
# about 1 GB with gradients, optimizer state and the stacked copy); more train in several arrays


class ArrayRecorder(pl.Callback):
    """:class:`~lossbench.compare.execution.callbacks.RunRecorder` for every member of a :class:`ModelArray`.

    ``on_row(i, rows)`` is called after member ``i``'s new row (:func:`evaluation_row`: the same columns, by the
    same rule, as a sequential run's). Failed members get no more rows.
    """

    def __init__(self, labels: list[str], on_row=None) -> None:
        self.labels = labels
        self.rows: list[list[dict[str, Any]]] = [[] for _ in labels]
        self.train_seconds = 0.0
        self._started: float | None = None
        self._loss = [LossMean() for _ in labels]
        self.on_row = on_row

    def on_train_start(self, trainer: pl.Trainer, module: ModelArray) -> None:
        for i, rows in enumerate(self.rows):  # resumed: each table is the checkpoint's (rows after it are redone)
            if rows and self.on_row is not None:
                self.on_row(i, rows)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module: ModelArray, outputs, batch, batch_idx) -> None:
        if self._started is not None:
            self.train_seconds += time.perf_counter() - self._started
            self._started = None
        for i, loss in enumerate(module.step_losses):
            if loss is not None:
                self._loss[i].add(loss)

    def on_validation_end(self, trainer: pl.Trainer, module: ModelArray) -> None:
        if trainer.sanity_checking:
            return
        step = int(trainer.global_step)
        for i, label in enumerate(self.labels):
            rows = self.rows[i]
            if label in module.failed or (rows and rows[-1]["step"] == step):
                continue
            lr = module.step_lrs[i]  # the member's last step that updated its weights (before any: the optimizer's)
            if lr is None and trainer.optimizers:
                lr = module.member_lr(trainer.optimizers[0], i)
            rows.append(
                evaluation_row(
                    step,
                    int(trainer.current_epoch),
                    self.train_seconds,
                    self._loss[i].take(trainer),
                    module.step_grad_norms[i],
                    lr,
                    module.values[i],
                )
            )
            if self.on_row is not None:
                self.on_row(i, rows)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [[dict(r) for r in rows] for rows in self.rows], "train_seconds": self.train_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [[dict(r) for r in rows] for rows in state_dict.get("rows", self.rows)]
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))


class ArrayBest(pl.Callback):
    """:class:`~lossbench.compare.execution.selection.BestWeights` for every member (``select: best``)."""

    def __init__(self, metric: str, mode: str, members: int) -> None:
        self.metric = metric
        self.best = [BestWeights(metric, mode) for _ in range(members)]

    def on_validation_end(self, trainer: pl.Trainer, module: ModelArray) -> None:
        if trainer.sanity_checking:
            return
        for i, (best, member) in enumerate(zip(self.best, module.members)):
            if module.labels[i] not in module.failed:
                best.offer(int(trainer.global_step), module.values[i].get(self.metric), member.state_dict)

    def state_dict(self) -> dict[str, Any]:
        return {"best": [b.state_dict() for b in self.best]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for best, saved in zip(self.best, state_dict.get("best", [])):
            best.load_state_dict(saved)


def fusable(model, fused: Any, batch: Any) -> str | None:
    """Why ``model`` cannot train in its array (None: it can): its head says so, or on the first batch its loss in
    the array (``fused``: its entry of :meth:`ModelArray.probe_losses`) raises or differs from its loss alone."""
    head = model.head
    if not getattr(head, "fusable", True):
        return f"its head {type(head).__name__} declares fusable = False"
    training = model.training
    model.eval()  # no dropout draws: both compute the same function, and the global RNG is left alone
    try:
        with torch.no_grad():
            inputs, target = model._unpack(batch)
            alone = model.head_loss(model(inputs), target, batch)[0]
    except Exception:  # fails alone too: the sequential run reports it, as it would have anyway
        return None
    finally:
        model.train(training)
    if isinstance(fused, BaseException):
        return f"its loss raises in the array ({type(fused).__name__}: {str(fused).splitlines()[0][:160]})"
    a, b = float(alone), float(fused[0])
    if not (math.isclose(a, b, rel_tol=PROBE_TOLERANCE, abs_tol=PROBE_TOLERANCE) or (a != a and b != b)):
        return f"its first-batch loss in the array ({b:.8g}) differs from its loss alone ({a:.8g})"
    return None


def _probe_batch(dm) -> Any:
    """The first validation batch (the validation loader keeps no state; the training one counts its batches)."""
    dm.setup("fit")
    return next(iter(dm.val_dataloader()))


def _held_members(cmp: Comparison, ckpt: Path) -> tuple[list[str] | None, str | None]:
    """The member labels ``ckpt`` holds (None: no checkpoint), after moving aside an unreadable one."""
    from lossbench.compare.execution.engine import checkpoint_state

    held, note = None, None
    if cmp.processes.is_global_zero:
        state, note = checkpoint_state(ckpt)
        if state is not None:
            held = list((state.get("lossbench_array") or {}).get("labels") or [])
    return cmp.processes.broadcast((held, note))


def _set_aside(ckpt: Path, held: list[str], labels: list[str]) -> str:
    name = move_aside(ckpt, "other-members").name if is_global_zero() else f"{ckpt.name}.other-members-*"
    return (
        f"array checkpoint {ckpt.name} holds members {held}, the array now {labels}; moved to {name}, run started over"
    )


def array_parts(sizes: list[int], members: int = MAX_ARRAY_MEMBERS, values: int = MAX_ARRAY_VALUES) -> list[list[int]]:
    """Consecutive groups of member indices, each at most ``members`` long and ``values`` in total size
    (a member larger than ``values`` alone is a group of its own): the arrays a seed's losses train in.

    Example:
        >>> array_parts([10, 10, 10, 10, 10], members=2)
        [[0, 1], [2, 3], [4]]
        >>> array_parts([30, 30, 50, 10], values=60)
        [[0, 1], [2, 3]]
    """
    parts: list[list[int]] = []
    total = 0
    for i, size in enumerate(sizes):
        if not parts or len(parts[-1]) >= members or total + size > values:
            parts.append([])
            total = 0
        parts[-1].append(i)
        total += size
    return parts


def run_arrays(
    cmp: Comparison, seed: int, losses: list[LossSpec], dm, init: InitialState
) -> tuple[dict[str, str], dict[str, str]]:
    """Train the pending ``losses`` of ``seed`` in arrays bounded by :data:`MAX_ARRAY_MEMBERS` and
    :data:`MAX_ARRAY_VALUES` (:func:`array_parts`, in plan order; one array when they fit): what
    :func:`run_array` returns, merged over the arrays."""
    backbone = BackboneConfig(**cmp.recipe.backbone)
    counted: dict[tuple[str, str], int] = {}  # a head and its arguments: counted once, however many trials share them
    sizes = []
    for loss in losses:
        key = (loss.head, repr(sorted(loss.args.items())))
        if key not in counted:
            counted[key] = model_values(loss.head, loss.args, dm.spec, backbone)
        sizes.append(counted[key])
    parts = array_parts(sizes, MAX_ARRAY_MEMBERS, MAX_ARRAY_VALUES)  # the bounds read now: tests lower them
    lines: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    for j, part in enumerate(parts):
        done, sequential = run_array(
            cmp,
            seed,
            [losses[i] for i in part],
            dm,
            init,
            f"seed_{seed}" if len(parts) == 1 else f"seed_{seed}_part_{j}",
        )
        lines.update(done)
        fallbacks.update(sequential)
    return lines, fallbacks


def run_array(
    cmp: Comparison, seed: int, losses: list[LossSpec], dm, init: InitialState, name: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Train the pending ``losses`` of ``seed`` as one array, checkpointed in ``DIR/arrays/<name>``
    (default ``seed_<seed>``).

    Returns label -> summary line of the losses it handled (finished earlier, trained, failed), and label ->
    why, of those that cannot train in the array (the caller runs them sequentially).
    """
    lines: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    root = cmp.output / "arrays" / (name or f"seed_{seed}")
    ckpt = root / "last.ckpt"
    state: dict[str, tuple[RunRecord | None, str | None]] = {}
    for loss in losses:
        member_ckpt = run_dir(cmp.output, loss.label, seed) / "checkpoints" / "last.ckpt"
        record, restart, finished, _ = cmp.read_run(loss, seed, member_ckpt)
        if finished:
            lines[loss.label] = f"{loss.label} seed {seed}: finished earlier, skipped"
        else:
            state[loss.label] = (record, restart)
    by_label = {loss.label: loss for loss in losses}
    if not state:  # every member finished (a kill before the array's clean-up leaves its checkpoint)
        _remove(cmp, root)
        return lines, fallbacks
    models = {label: cmp.build_model(by_label[label], seed, dm.spec, init) for label in state}
    probe = ModelArray(models)  # the Trainer's gradient_clip_val reaches it (configure_gradient_clipping)
    batch = _probe_batch(dm)
    for label, fused in zip(models, probe.probe_losses(batch)):  # the array's losses, once for every member
        why = fusable(models[label], fused, batch)
        if why is not None:
            fallbacks[label] = why
    pending = [label for label in state if label not in fallbacks]
    if not pending:
        return lines, fallbacks
    held, note = _held_members(cmp, ckpt)
    labels = pending
    # killed while the members' records were being finished: the checkpoint (at its last step) also holds
    # members finished since; they are loaded with it, their records are not touched again
    if (
        held is not None
        and set(pending) <= set(held)
        and all(h in by_label and (h in pending or h in lines) for h in held)
    ):
        labels = held
    elif held is not None:
        note = _set_aside(ckpt, held, labels)
    for label in labels:
        if label not in models:
            models[label] = cmp.build_model(by_label[label], seed, dm.spec, init)
    array = probe if labels == probe.labels else ModelArray({label: models[label] for label in labels})
    resume = cmp.processes.broadcast(ckpt.exists())
    execution = {"executor": "fused", "members": labels}
    records: dict[str, RunRecord] = {}
    for label in pending:
        record, restart = state[label]
        restart = restart or note
        # a member resumes only with its array: without the array's checkpoint it starts over
        records[label] = cmp.open_record(
            by_label[label], seed, models[label], dm, record, resume, restart, dict(execution)
        )
    folders = [run_dir(cmp.output, label, seed) for label in labels]

    def on_row(i: int, rows: list[dict[str, Any]]) -> None:
        if labels[i] in records:  # a member finished before a kill keeps its files as they are
            write_csv(folders[i] / "metrics.csv", rows)

    recorder = ArrayRecorder(labels, on_row=on_row)
    order = DataOrderFingerprint()
    r = cmp.recipe
    best = ArrayBest(r.target["metric"], r.target["mode"], len(labels))
    selection = [best] if r.select == "best" else []
    checkpoint = LastCheckpoint(ckpt, r.trainer["checkpoint_every_s"])
    try:
        trainer = cmp.trainer([recorder, order, *selection, checkpoint, *killpoint.callbacks()], root)
        if not resume:  # evaluation at step 0, in the same Trainer
            trainer.validate(array, datamodule=dm, verbose=False)
        seed_rngs(seed)
        trainer.fit(array, datamodule=dm, ckpt_path=str(ckpt) if resume else None, weights_only=True)
        if any(rows and rows[-1]["step"] != trainer.global_step for rows in recorder.rows):
            trainer.validate(array, datamodule=dm, verbose=False)  # the final point of every curve
        if checkpoint.step != trainer.global_step:  # a kill while the members are recorded resumes from the end
            checkpoint.save(trainer)
    except RankMismatchError:
        raise
    except Exception as exc:  # the array fails as a whole: every member is recorded failed
        if write_failure(exc, cmp.output) is not None:
            raise
        for label, record in records.items():
            lines[label] = cmp.fail_record(
                record, f"{type(exc).__name__}: {exc}", models[label].skipped_steps, order.hashes
            )
        return lines, fallbacks
    for i, label in enumerate(labels):
        if label not in records:  # finished before a kill; resumed with the array only to load it
            continue
        record, model = records[label], models[label]
        record.execution["vmapped"] = bool(array.vmapped)
        if array.vmap_error:
            record.execution["vmap_error"] = array.vmap_error
        if label in array.failed:
            lines[label] = cmp.fail_record(record, array.failed[label], model.skipped_steps, order.hashes)
            continue
        try:
            if cmp.processes.is_global_zero:
                cmp.evaluate_test(record, model, dm, folders[i], best.best[i] if selection else None, trainer)
        except Exception as exc:
            if write_failure(exc, cmp.output) is not None:
                raise
            lines[label] = cmp.fail_record(record, f"{type(exc).__name__}: {exc}", model.skipped_steps, order.hashes)
            continue
        lines[label] = cmp.finish_record(record, recorder.rows[i], trainer, model, order.hashes)
    _remove(cmp, root)
    return lines, fallbacks


def _remove(cmp: Comparison, root: Path) -> None:
    """Delete an array's folder (its checkpoint) and ``arrays/`` with its last array."""
    if cmp.processes.is_global_zero:  # never through a symlink out of the results folder (remove_tree)
        remove_tree(root)
        with contextlib.suppress(OSError):
            confined(root.parent, "delete").rmdir()

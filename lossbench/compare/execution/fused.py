"""The fused executor: every pending loss of one seed trained in lockstep as one :class:`ModelArray`.

One Trainer, one pass over each batch for all members (:mod:`lossbench.compare.execution.array`), one
checkpoint of the whole array (``DIR/arrays/seed_<k>/last.ckpt``, deleted when the array ends).
Every member writes what a sequential run of its loss writes: its record (with the same
fingerprints: same initial weights, same data, same batch order), its metrics.csv, its selected
weights and test predictions. ``record.execution`` says how it was trained::

    {"executor": "fused", "members": ["ce", "focal", ...], "vmapped": true,
     "forward": {"path": "vmapped", "step_seconds": {"vmapped": 0.012, "looped": 0.019}}}
    {"executor": "sequential", "fallback": "<why it could not train in the array>"}

``forward`` says how the training forward was chosen (``ModelArray``'s ``auto``, on a CPU: each path timed on the
first training steps, the faster kept; both compute the same function, so a rerun may differ from this run in
float rounding only: ``LOSSBENCH_FUSED_FORWARD=vmapped`` or ``looped`` pins it, and the record has no ``forward``).

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
from typing import Any, cast

import lightning.pytorch as pl
import torch

from lossbench._io import is_global_zero
from lossbench.compare.execution.array import LAYOUT, ModelArray, head_key
from lossbench.compare.execution.callbacks import (
    DataOrderFingerprint,
    LastCheckpoint,
    LossMean,
    Recorder,
    evaluation_row,
)
from lossbench.compare.execution.runner import FUSED, InitialState, RunBook, checkpoint_state
from lossbench.compare.execution.selection import BestWeights
from lossbench.compare.recipe.schema import LossSpec
from lossbench.compare.store.layout import LAST_CHECKPOINT, METRICS_FILE, array_dir, run_checkpoint, run_dir
from lossbench.compare.store.records import RunRecord, write_csv
from lossbench.compare.store.storage import confined, move_aside, remove_tree
from lossbench.module import model_values

PROBE_TOLERANCE = 1e-5  # relative: a member's first-batch loss in the array against alone
MAX_ARRAY_MEMBERS = 64  # members of one array: its activations grow with them; more train in several arrays
MAX_ARRAY_VALUES = 50_000_000  # parameters and buffers of one array's members together (~0.2 GB in float32,
# about 1 GB with gradients, optimizer state and the stacked copy); more train in several arrays


class ArrayRecorder(Recorder):
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

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        for i, rows in enumerate(self.rows):  # resumed: each table is the checkpoint's (rows after it are redone)
            if rows and self.on_row is not None:
                self.on_row(i, rows)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if self._started is not None:
            self.train_seconds += time.perf_counter() - self._started
            self._started = None
        for i, loss in enumerate(cast(ModelArray, module).step_losses):
            if loss is not None:
                self._loss[i].add(loss)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        array = cast(ModelArray, module)
        step = int(trainer.global_step)
        for i, label in enumerate(self.labels):
            rows = self.rows[i]
            if label in array.failed or (rows and rows[-1]["step"] == step):
                continue
            lr = array.step_lrs[i]  # the member's last step that updated its weights (before any: the optimizer's)
            if lr is None and trainer.optimizers:
                lr = array.member_lr(trainer.optimizers[0], i)
            rows.append(
                evaluation_row(
                    step,
                    int(trainer.current_epoch),
                    self.train_seconds,
                    self._loss[i].take(trainer),
                    array.step_grad_norms[i],
                    lr,
                    array.values[i],
                )
            )
            if self.on_row is not None:
                self.on_row(i, rows)

    def needs_evaluation(self, step: int) -> bool:
        """Whether a member that has rows (a failed member may have none) lacks the evaluation of ``step``."""
        return any(rows and rows[-1]["step"] != step for rows in self.rows)

    def latest(self, metric: str) -> list[Any]:
        return [rows[-1].get(metric) for rows in self.rows if rows]

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

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        array = cast(ModelArray, module)
        for i, (best, member) in enumerate(zip(self.best, array.members)):
            if array.labels[i] not in array.failed:
                best.offer(int(trainer.global_step), array.values[i].get(self.metric), member.state_dict)

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
            inputs, target = model.unpack_batch(batch)
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


def _held_members(book: RunBook, ckpt: Path) -> tuple[list[str] | None, str | None]:
    """The member labels ``ckpt`` holds (None: no checkpoint), after moving aside an unreadable one."""
    held, note = None, None
    if book.processes.is_global_zero:
        state, note = checkpoint_state(ckpt)
        saved = (state or {}).get("lossbench_array") or {}
        if state is not None and saved.get("layout") != LAYOUT:  # the members' own parameters: not loadable now
            note = (
                f"array checkpoint {ckpt.name} was written by an older lossbench (without stacked parameters); "
                f"moved to {move_aside(ckpt, 'older-layout').name}, run started over"
            )
        elif state is not None:
            held = list(saved.get("labels") or [])
    return book.processes.broadcast((held, note))


def _set_aside(ckpt: Path, held: list[str], labels: list[str]) -> str:
    name = move_aside(ckpt, "other-members").name if is_global_zero() else f"{ckpt.name}.other-members-*"
    return (
        f"array checkpoint {ckpt.name} holds members {held}, the array now {labels}; moved to {name}, run started over"
    )


def _members(
    book: RunBook, ckpt: Path, pending: list[str], losses: list[str], done: dict[str, str]
) -> tuple[list[str], str | None]:
    """The array's members and why its pending ones start over (None: they do not, or for their own reasons).

    The ``pending`` members, unless the array's checkpoint holds them and members finished since (``done``: killed
    while the members' records were being finished, the checkpoint at its last step): those are loaded with it,
    their records are not touched again. A checkpoint of other members is moved aside."""
    held, note = _held_members(book, ckpt)
    if held is None:
        return pending, note
    if set(pending) <= set(held) and all(h in losses and (h in pending or h in done) for h in held):
        return held, note
    return pending, _set_aside(ckpt, held, pending)


def _stateful_backbone(model: Any) -> str | None:
    """Why a backbone cannot train in a vmapped array (None: it can): it has state buffers (BatchNorm's running
    statistics, counters: those its state dict keeps), which the array's functional forward would update on
    stacked copies, not per member. Non-persistent buffers are constants (BERT's ``position_ids``): they fuse."""
    kept = model.backbone.state_dict(keep_vars=True)
    names = [name for name, _ in model.backbone.named_buffers() if name in kept]
    if not names:
        return None
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"its backbone has buffers ({shown}) that a vmapped array would not update per member"


def _fallbacks(probe: ModelArray, models: dict[str, Any], dm: Any) -> dict[str, str]:
    """label -> why, of the members that cannot train in the array (:func:`fusable`, on the first batch): one member
    is checked per distinct head class and arguments (the others share its code path, so its answer), and every
    member whose loss raises in the array."""
    batch = _probe_batch(dm)
    out: dict[str, str] = {}
    checked: dict[tuple[Any, str], tuple[str, str | None]] = {}  # key -> the member checked, its answer
    for label, fused in zip(models, probe.probe_losses(batch)):  # the array's losses, once for every member
        model = models[label]
        key = head_key(model)
        if key not in checked or isinstance(fused, BaseException):
            why = fusable(model, fused, batch)
            checked.setdefault(key, (label, why))
        else:
            first, why = checked[key]
            why = None if why is None else f"{why} (checked on {first!r}, which has the same head and arguments)"
        if why is not None:
            out[label] = why
    return out


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
    book: RunBook, seed: int, losses: list[LossSpec], dm: Any, init: InitialState
) -> tuple[dict[str, str], dict[str, str]]:
    """Train the pending ``losses`` of ``seed`` in arrays bounded by :data:`MAX_ARRAY_MEMBERS` and
    :data:`MAX_ARRAY_VALUES` (:func:`array_parts`, in plan order; one array when they fit): what
    :func:`run_array` returns, merged over the arrays."""
    why = trainer_fallback(book.recipe.trainer)
    if why is not None:  # every loss alone, as a sequential run: the caller trains them
        return {}, {loss.label: why for loss in losses}
    backbone = book.recipe.backbone
    counted: dict[tuple[str, str], int] = {}  # a head and its arguments: counted once, however many trials share them
    sizes = []
    for loss in losses:
        if loss.head_key not in counted:
            counted[loss.head_key] = model_values(loss.head, loss.args, dm.spec, backbone)
        sizes.append(counted[loss.head_key])
    parts = array_parts(sizes, MAX_ARRAY_MEMBERS, MAX_ARRAY_VALUES)  # the bounds read now: tests lower them
    lines: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    for j, part in enumerate(parts):
        done, sequential = run_array(
            book,
            seed,
            [losses[i] for i in part],
            dm,
            init,
            f"seed_{seed}" if len(parts) == 1 else f"seed_{seed}_part_{j}",
        )
        lines.update(done)
        fallbacks.update(sequential)
    return lines, fallbacks


def trainer_fallback(trainer: dict[str, Any]) -> str | None:
    """Why the recipe's trainer settings need one Trainer per run (the losses then train sequentially), or None:
    a logger and callbacks belong to one run; the array steps its members itself, one batch a step."""
    if trainer["logger"] is not None:
        return "trainer.logger: each run logs to a logger of its own, which needs a Trainer of its own"
    if trainer["callbacks"]:
        return "trainer.callbacks: each run gets its own callbacks (one may stop it early), in a Trainer of its own"
    if trainer["accumulate_grad_batches"] != 1:
        return "trainer.accumulate_grad_batches: the array steps its members on every batch"
    return None


def run_array(
    book: RunBook, seed: int, losses: list[LossSpec], dm: Any, init: InitialState, name: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Train the pending ``losses`` of ``seed`` as one array, checkpointed in ``DIR/arrays/<name>``
    (default ``seed_<seed>``).

    Returns label -> summary line of the losses it handled (finished earlier, trained, failed), and label ->
    why, of those that cannot train in the array (the caller runs them sequentially).
    """
    lines: dict[str, str] = {}
    root = array_dir(book.output, seed, name)
    states = {}
    for loss in losses:
        state = book.read_run(loss, seed, run_checkpoint(book.output, loss.label, seed))
        if state.finished:
            lines[loss.label] = f"{loss.label} seed {seed}: finished earlier, skipped"
        else:
            states[loss.label] = state
    if not states:  # every member finished (a kill before the array's clean-up leaves its checkpoint)
        _remove(book, root)
        return lines, {}
    by_label = {loss.label: loss for loss in losses}
    models = {label: book.build_model(by_label[label], seed, dm.spec, init) for label in states}
    stateful = _stateful_backbone(next(iter(models.values())))
    if stateful is not None:  # every member alone, as a sequential run: the caller trains them
        return lines, {label: stateful for label in states}
    probe = ModelArray(models)  # the Trainer's gradient_clip_val reaches it (configure_gradient_clipping)
    fallbacks = _fallbacks(probe, models, dm)
    pending = [label for label in states if label not in fallbacks]
    if not pending:
        return lines, fallbacks
    ckpt = root / LAST_CHECKPOINT
    labels, note = _members(book, ckpt, pending, list(by_label), lines)
    for label in labels:
        if label not in models:
            models[label] = book.build_model(by_label[label], seed, dm.spec, init)
    array = probe if labels == probe.labels else ModelArray({label: models[label] for label in labels})
    resume = book.processes.broadcast(ckpt.exists())
    records = {  # a member resumes only with its array: without the array's checkpoint it starts over
        label: book.open_record(
            by_label[label],
            seed,
            models[label],
            dm,
            states[label].record,
            resume,
            states[label].restart or note,
            {"executor": FUSED, "members": labels},
        )
        for label in pending
    }
    trained = _ArrayRun(book, seed, array, models, records, dm)
    lines.update(trained.train(root, ckpt, resume))
    if trained.finished:
        _remove(book, root)
    return lines, fallbacks


class _ArrayRun:
    """One array's training and its members' records: ``records`` holds the pending members' (a member finished
    before a kill is in the array only to load its checkpoint; its files are kept as they are)."""

    def __init__(
        self,
        book: RunBook,
        seed: int,
        array: ModelArray,
        models: dict[str, Any],
        records: dict[str, RunRecord],
        dm: Any,
    ) -> None:
        self.book, self.seed, self.array, self.models, self.records, self.dm = book, seed, array, models, records, dm
        self.labels: list[str] = list(array.labels)
        self.folders = [run_dir(book.output, label, seed) for label in self.labels]
        self.order = DataOrderFingerprint()
        self.finished = False  # trained to the end (its members recorded): its checkpoint goes

    def _on_row(self, i: int, rows: list[dict[str, Any]]) -> None:
        if self.labels[i] in self.records:  # a member finished before a kill keeps its files as they are
            write_csv(self.folders[i] / METRICS_FILE, rows)

    def train(self, root: Path, ckpt: Path, resume: bool) -> dict[str, str]:
        """Train the array (the whole array fails as one: every pending member is recorded failed), then record
        each pending member; label -> summary line."""
        r = self.book.recipe
        recorder = ArrayRecorder(self.labels, on_row=self._on_row)
        best = ArrayBest(r.target["metric"], r.target["mode"], len(self.labels)) if r.select == "best" else None
        checkpoint = LastCheckpoint(ckpt, r.trainer["checkpoint_every_s"])
        callbacks: list[pl.Callback] = [self.order, *([best] if best is not None else []), checkpoint]
        try:
            trainer = self.book.train(self.array, self.dm, self.seed, ckpt, resume, root, recorder, callbacks)
            if checkpoint.step != trainer.global_step:  # a kill while the members are recorded resumes from the end
                checkpoint.save(trainer)
        except Exception as exc:
            error = self.book.run_error(exc)
            return {label: self._fail(label, error) for label in self.records}
        predictions = self._predict(trainer, best)
        lines = {}
        for i, label in enumerate(self.labels):
            if label in self.records:
                lines[label] = self._finish(i, label, recorder, trainer, predictions.get(label))
        self.finished = True
        return lines

    def _predict(self, trainer: pl.Trainer, best: ArrayBest | None) -> dict[str, Any]:
        """label -> test predictions on its reported weights (or the error that selecting or predicting raised) of
        each pending member that did not fail, all made in one pass over the test split (on the first process)."""
        if not self.book.processes.is_global_zero:
            return {}
        out: dict[str, Any] = {}
        selected = []
        for i, label in enumerate(self.labels):
            if label not in self.records or label in self.array.failed:
                continue
            try:
                self.book.select_weights(
                    self.records[label], self.models[label], best.best[i] if best is not None else None, trainer
                )
                selected.append(label)
            except Exception as exc:
                out[label] = exc
        predicted = self.book.test_predictions([self.models[label] for label in selected], self.dm, trainer)
        return {**out, **dict(zip(selected, predicted))}

    def _fail(self, label: str, error: str) -> str:
        return self.book.fail_record(self.records[label], error, self.models[label].skipped_steps, self.order.hashes)

    def _finish(self, i: int, label: str, recorder: ArrayRecorder, trainer: pl.Trainer, predictions: Any) -> str:
        """Record member ``i``: failed in the array (its NaN policy), or tested on its reported weights (their
        ``predictions``, :meth:`_predict`'s)."""
        record, model = self.records[label], self.models[label]
        record.execution["vmapped"] = bool(self.array.vmapped)
        if self.array.vmap_error:
            record.execution["vmap_error"] = self.array.vmap_error
        choice = self.array.forward_choice()
        if choice is not None:
            record.execution["forward"] = choice
        if label in self.array.failed:
            return self._fail(label, self.array.failed[label])
        try:
            if self.book.processes.is_global_zero:
                self.book.evaluate_test(record, model, self.dm, self.folders[i], None, trainer, predictions)
        except Exception as exc:
            return self._fail(label, self.book.run_error(exc))
        return self.book.finish_record(record, recorder.rows[i], trainer, model, self.order.hashes)


def _remove(book: RunBook, root: Path) -> None:
    """Delete an array's folder (its checkpoint) and ``arrays/`` with its last array."""
    if book.processes.is_global_zero:  # never through a symlink out of the results folder (remove_tree)
        remove_tree(root)
        with contextlib.suppress(OSError):
            confined(root.parent, "delete").rmdir()

"""One run's lifecycle, the same for a sequential run and for each member of a fused array: :class:`RunBook`.

A :class:`RunBook` holds what the runs of one results folder need (the recipe, the folder, the processes, the
data's description, the teachers' fingerprints) and does, for a run, everything but the choice of executor:

- :meth:`RunBook.read_run`: the run's record and state (finished, resumable, restarted after an unreadable file);
- :meth:`RunBook.open_record`: its record, new or resumed, with its fingerprints, marked running;
- :meth:`RunBook.trainer` and :meth:`RunBook.train`: one Trainer; the evaluation at step 0, the fit (resumed
  from the checkpoint), the final evaluation;
- :meth:`RunBook.evaluate_test`: the reported weights, the test predictions and metrics, once;
- :meth:`RunBook.run_error`, :meth:`RunBook.fail_record`, :meth:`RunBook.finish_record`: a failed run is
  recorded and the others go on; a failure of the folder (disk full, a symlink out of it) stops everything.

:meth:`RunBook.run_one` is the sequential run; :func:`~lossbench.compare.execution.fused.run_arrays` trains
several runs in lockstep with the same steps. A RunBook is plain state (no Comparison): a worker process builds
one from a unit's description (:mod:`lossbench.compare.execution.unit`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import torch

from lossbench import _killpoint as killpoint
from lossbench.compare.analysis.summary import summarise_run
from lossbench.compare.analysis.tuning import diverged
from lossbench.compare.execution.callbacks import (
    DataOrderFingerprint,
    LastCheckpoint,
    Recorder,
    RunRecorder,
    StepProgress,
)
from lossbench.compare.execution.evaluate import metrics_from_predictions, predict_many
from lossbench.compare.execution.selection import BestWeights
from lossbench.compare.execution.teacher import fingerprint as teacher_fingerprint
from lossbench.compare.execution.teacher import load_checkpoint_teacher, teacher_recipe, training_logits
from lossbench.compare.recipe.checks import RecipeError
from lossbench.compare.recipe.schema import EXECUTORS, LossSpec, Recipe
from lossbench.compare.recipe.trainer_parts import describe_callbacks, make_callbacks, make_logger
from lossbench.compare.store.fingerprints import combine, state_fingerprint
from lossbench.compare.store.layout import (
    CHECKPOINTS_DIR,
    METRICS_FILE,
    PREDICTIONS_FILE,
    RECORD_FILE,
    TEACHER_DIR,
    TEACHER_LABEL,
    WEIGHTS_FILE,
    run_checkpoint,
    run_dir,
)
from lossbench.compare.store.records import STATUS, CorruptFileError, RunRecord, read_metrics, test_metric, write_csv
from lossbench.compare.store.storage import confined, move_aside, remove_tree, write_failure
from lossbench.compare.store.tensors import load_tensors, save_tensors
from lossbench.data.identity import fingerprints_of
from lossbench.distributed import Processes, RankMismatchError, same_on_all_ranks
from lossbench.resume import AtomicCheckpointIO, seed_rngs

FUSED, SEQUENTIAL = EXECUTORS  # the recipe's `executor` values, and a record's `execution.executor`


def library_versions() -> dict[str, str]:
    import datasets
    import lightning
    import torchmetrics

    from lossbench._version import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torchmetrics": torchmetrics.__version__,
        "datasets": datasets.__version__,
        "lossbench": __version__,
    }


def environment(trainer: pl.Trainer | None = None, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the numbers of a run depend on besides the recipe: threads, device, precision, determinism.

    Seconds measured under it are machine-dependent; the results can change slightly with the thread count.
    """
    settings = settings or {}
    env: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "accelerator": settings.get("accelerator"),
        "devices": settings.get("devices"),
        "precision": str(settings.get("precision")),
        "deterministic": settings.get("deterministic"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if trainer is not None:
        env.update(
            accelerator=type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
            devices=int(trainer.num_devices),
            world_size=int(trainer.world_size),
            precision=str(trainer.precision),
        )
    if torch.cuda.is_available() and env["accelerator"] in ("cuda", "gpu"):
        env["device_name"] = torch.cuda.get_device_name(0)
    return env


def utc_now() -> str:
    """Now, as a UTC ISO time to the millisecond (``2026-12-07T01:02:03.456+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def worker_info(launcher: str) -> dict[str, Any]:
    """Who trains a run and since when: the launcher, this node and process (a record's ``worker``)."""
    return {"launcher": launcher, "node": socket.gethostname(), "pid": os.getpid(), "device": None,
            "started_at": utc_now(), "finished_at": None}  # fmt: skip


def device_text(trainer: pl.Trainer) -> str:
    """The device a trainer trained on: ``cpu``, or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def data_setup_hash(recipe_setup_hash: str, data: dict[str, str]) -> str:
    """The setup hash of a comparison: the recipe's setup and every processed split's content fingerprint."""
    return combine([recipe_setup_hash, *(f"{split}={fp}" for split, fp in sorted(data.items()))])


def balanced_weights(class_counts: dict[str, int], spec: Any) -> list[float]:
    """``weight: balanced`` (scikit-learn's rule): ``n / (C * n_c)`` per class id, from the training split's counts
    (``describe_splits()["train"]["class_counts"]``, keyed by class name), so that every class weighs the same."""
    names = list(spec.class_names) if spec.class_names else [str(i) for i in range(int(spec.num_classes))]
    counts = [int(class_counts.get(name, 0)) for name in names]
    if min(counts, default=0) <= 0:
        missing = [name for name, n in zip(names, counts) if n <= 0]
        raise ValueError(f"`weight: balanced` needs training rows of every class; classes {missing} have none")
    total = sum(counts)
    return [total / (len(counts) * n) for n in counts]


def build_module(
    recipe: dict[str, Any],
    head: str,
    head_args: dict[str, Any],
    spec: Any,
    seed: int,
    overrides: dict[str, Any] | None = None,
    class_counts: dict[str, int] | None = None,
) -> Any:
    """The LossbenchModule of one run, from a resolved recipe dict (``Recipe.to_dict()`` / comparison.json) and the
    run's own ``optimizer.*`` values (a tuning trial's point, :attr:`LossSpec.overrides`). A head argument
    ``weight: balanced`` becomes :func:`balanced_weights` of the training split's ``class_counts``."""
    from lossbench.config import ScheduleConfig
    from lossbench.module import LossbenchModule

    if head_args.get("weight") == "balanced":
        if class_counts is None:
            raise ValueError("`weight: balanced` needs the training split's class counts")
        head_args = {**head_args, "weight": balanced_weights(class_counts, spec)}
    return LossbenchModule(
        head,
        head_args=head_args,
        data_spec=spec,
        backbone=recipe["backbone"],
        seed=seed,
        nan_policy=recipe.get("nan_policy", "raise"),
        optimizer=optimizer_config(recipe, overrides),
        schedule=ScheduleConfig(**recipe["schedule"]),
    )


def optimizer_config(recipe: dict[str, Any], overrides: dict[str, Any] | None = None) -> Any:
    """The :class:`~lossbench.config.OptimizerConfig` of one run: the recipe's ``optimizer`` with the run's own
    ``optimizer.*`` values (a tuning trial's point) set."""
    from lossbench.config import OptimizerConfig

    opt = dict(recipe["optimizer"])
    for path, value in (overrides or {}).items():
        section, key = path.split(".", 1)
        if section != "optimizer":
            raise ValueError(f"build_module: `overrides` may set optimizer.* values only, got {path!r}")
        opt[key] = value
    return OptimizerConfig(**opt)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence Lightning's and datasets' per-run chatter (one progress display is the engine's)."""
    import datasets

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*LeafSpec.*")
            warnings.filterwarnings("ignore", ".*val_check_interval.*")
            warnings.filterwarnings("ignore", ".*exists and is not empty.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if was_enabled:
            datasets.enable_progress_bars()


@dataclass
class InitialState:
    """The weights every loss of one seed starts from."""

    backbone: dict[str, torch.Tensor]
    heads: dict[tuple[int, ...], dict[str, torch.Tensor]]  # projection shape -> projection state
    pretrained_sha256: str | None = None  # a pretrained backbone's loaded weights (HFEncoder), as records hold it


# -- a run's files, read back -------------------------------------------------------------------------------
def checkpoint_state(ckpt: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``ckpt``'s contents (read once, weights only), or (None, what happened) after moving an unreadable one
    aside (kept for inspection, so that its run starts over instead of failing on every rerun); (None, None) when
    there is none."""
    if not ckpt.exists():
        return None, None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and "global_step" in state:
            return state, None
        problem = f"not a Lightning checkpoint (a {type(state).__name__})"
    except Exception as exc:  # truncated, random bytes, empty, a folder, a pickle that needs code ...
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'unreadable'}"
    return None, quarantine(ckpt, problem, "checkpoint ", ckpt.parent.parent)  # checkpoints/ goes when it ends


_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError)  # JSON, shape, types


def read_record(path: Path) -> tuple[RunRecord | None, str | None]:
    """The run's record, or (None, why) when the file is unreadable or ill-typed (it is not moved here)."""
    if not path.exists():
        return None, None
    try:
        record = RunRecord.load(path)
        bad = [
            name
            for name, ok in (
                ("status", record.status in STATUS),
                ("seed", isinstance(record.seed, int)),
                ("steps", isinstance(record.steps, int)),
                ("fingerprints", isinstance(record.fingerprints, dict)),
                *((name, isinstance(getattr(record, name), dict)) for name in ("final", "best", "test", "head_args")),
            )
            if not ok
        ]
        if bad:
            raise ValueError(f"ill-typed fields {bad}")
        return record, None
    except _UNREADABLE as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'unreadable'}"


def quarantine(path: Path, problem: str, what: str = "", folder: Path | None = None) -> str:
    """Move a run's unreadable file (checkpoint, record, metrics) aside, into ``folder`` (default its own), kept
    for inspection: its run is trained again, which rebuilds it. Returns what happened, for the record."""
    aside = move_aside(path, "unreadable", folder)
    return f"{what}{path.name} unreadable ({problem}); moved to {aside.name}, run started over"


def _quarantine_metrics(path: Path) -> str | None:
    """Move a finished run's unreadable metrics file aside (kept for inspection), as for a record: the run is
    trained again, which rebuilds it; returns what happened, or None when the file reads (or there is none)."""
    if not path.exists():
        return None
    try:
        read_metrics(path)
        return None
    except CorruptFileError as exc:
        problem = f"{exc.problem}: expected {exc.expected}, found {exc.found}"
    except OSError as exc:  # a folder, unreadable permissions
        problem = f"{type(exc).__name__}: {exc.strerror or exc}"
    return quarantine(path, problem)


def backbone_record(setting: dict[str, Any], model: Any) -> dict[str, Any]:
    """What a record says of its backbone: its name (a class path with its arguments, or the built-in Transformer's
    shape), its parameters, and the feature width F with how it was found (``out_features`` or a 2-row ``probe``)."""
    from lossbench.models.custom import describe, is_class_path

    if is_class_path(setting):
        given = {"class_path": setting["class_path"], "init_args": dict(setting.get("init_args") or {})}
        name = describe(given)
    else:
        given = {}
        shape = ", ".join(f"{k}={setting[k]}" for k in ("d_model", "nhead", "num_layers") if k in setting)
        name = f"the built-in Transformer ({shape})"
    return {
        "name": name,
        **given,
        "parameters": int(sum(p.numel() for p in model.backbone.parameters())),
        "width": int(model.head.in_features),
        "width_from": getattr(model, "width_from", "out_features"),
        **({"pretrained_sha256": sha} if (sha := getattr(model.backbone, "pretrained_sha256", None)) else {}),
    }


class RunState(NamedTuple):
    """What :meth:`RunBook.read_run` found, as global rank 0 sees it (every process follows rank 0)."""

    record: RunRecord | None  # the run's readable record, if any
    restart: str | None  # why it starts over (an unreadable file moved aside), for the record
    finished: bool  # nothing to do (finished, or a tuning trial that diverged)
    resume: bool  # its checkpoint is there to resume from


class RunBook:
    """The runs of one results folder: their data, initial states and models, and each run's lifecycle.

    Args:
        recipe: the comparison's validated recipe (its losses at their tuned points are the caller's).
        output: the results folder.
        processes: the comparison's processes (one by default); global rank 0 writes.
        data: split -> description (``HFDataModule.describe_splits()`` of the first seed, as in comparison.json):
            the class counts of ``weight: balanced``.
    """

    def __init__(
        self,
        recipe: Recipe,
        output: str | Path,
        processes: Processes | None = None,
        data: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.recipe = recipe
        self.output = Path(output)
        self.processes = processes if processes is not None else Processes()
        self.data: dict[str, dict[str, Any]] = data if data is not None else {}
        self.teacher_fingerprints: dict[int, str] = {}  # seed -> sha256 of its teacher's training logits (teach)
        self.failed: list[str] = []  # "loss seed s (error)" of the runs that failed here
        self.launcher = "local"  # what started this process's units: records say so (worker_info)
        # progress: (optimizer steps x members, epoch, the latest evaluation of the target metric)
        self.on_steps: Callable[[int, int, str], None] | None = None
        self._datamodules: dict[int, Any] = {}

    # -- data, initial state, models ------------------------------------------------------------------
    def datamodule(self, seed: int) -> Any:
        """The seed's data module (made once): the batch order is a function of (seed, epoch)."""
        if seed not in self._datamodules:
            from lossbench.data import HFDataModule

            self._datamodules[seed] = HFDataModule(**self.recipe.data, seed=seed)
        return self._datamodules[seed]

    def initial_state(self, seed: int, spec: Any) -> InitialState:
        """The backbone every loss of ``seed`` starts from."""
        from lossbench.module import make_backbone

        backbone = make_backbone(spec, self.recipe.backbone, seed=seed)
        state = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
        return InitialState(state, {}, getattr(backbone, "pretrained_sha256", None))

    def build_model(self, loss: LossSpec, seed: int, spec: Any, init: InitialState) -> Any:
        """A LossbenchModule for ``loss`` whose backbone (and same-shape head projection) is ``init``'s."""
        counts = (self.data.get("train") or {}).get("class_counts")
        model = build_module(self.recipe.to_dict(), loss.head, loss.args, spec, seed, loss.overrides, counts)
        model.backbone.load_state_dict(init.backbone)
        proj = model.head.proj
        shape = tuple(proj.weight.shape)
        if shape in init.heads:
            proj.load_state_dict(init.heads[shape])
        else:
            init.heads[shape] = {k: v.detach().clone() for k, v in proj.state_dict().items()}
        return model

    def teacher_book(self) -> RunBook:
        """The runs of the teachers trained first (``DIR/teacher``), in these processes, on this data."""
        return RunBook(teacher_recipe(self.recipe), self.output / TEACHER_DIR, self.processes, self.data)

    def trained_teacher(self, seed: int) -> Any:
        """``seed``'s teacher from ``DIR/teacher`` (its selected weights); a RecipeError when it did not finish."""
        book = self.teacher_book()
        folder = run_dir(book.output, TEACHER_LABEL, seed)
        record, _ = read_record(folder / RECORD_FILE)
        if record is None or record.status != "finished":
            why = record.error if record is not None else "no record"
            raise RecipeError(
                f"compare: the teacher of seed {seed} did not finish ({why}); its students "
                f"cannot distil from it (see {folder})"
            )
        spec = self.datamodule(seed).spec
        model = book.build_model(book.recipe.losses[0], seed, spec, book.initial_state(seed, spec))
        model.load_state_dict(load_tensors(folder / WEIGHTS_FILE))
        return model

    def teach(self, seed: int, model: Any = None) -> None:
        """Give ``seed``'s training batches its teacher's logits (``HFDataModule.set_teacher``) and keep their
        fingerprint for the records: ``model``, or the recipe's checkpoint, or the teacher trained in DIR/teacher."""
        given = self.recipe.teacher
        if given is None:
            return
        dm = self.datamodule(seed)
        if model is None:
            model = (
                load_checkpoint_teacher(given["checkpoint"], dm.spec, given.get("sha256"))
                if "checkpoint" in given
                else self.trained_teacher(seed)
            )
        logits = training_logits(model, dm)
        dm.set_teacher(logits)
        self.teacher_fingerprints[seed] = teacher_fingerprint(logits)

    # -- one run's lifecycle -------------------------------------------------------------------------
    def read_run(self, loss: LossSpec, seed: int, ckpt: Path) -> RunState:
        """A run's record, why it restarts (an unreadable checkpoint or record moved aside), and whether it is
        finished and can resume from ``ckpt``, as global rank 0 sees it (every process follows rank 0)."""
        record_path = run_dir(self.output, loss.label, seed) / RECORD_FILE
        record, unreadable = read_record(record_path)
        zero = self.processes.is_global_zero
        restart = checkpoint_state(ckpt)[1] if zero else None
        if unreadable and zero:
            restart = quarantine(record_path, unreadable, "record ")
        redo = None  # a finished run whose metrics are unreadable is trained again, which rebuilds them
        if record is not None and record.status == "finished" and zero:
            redo = _quarantine_metrics(record_path.parent / METRICS_FILE)
            restart = redo or restart
        finished, resume = self.processes.broadcast(
            (
                record is not None and (record.status == "finished" or diverged(record)) and not redo,
                ckpt.exists() and not unreadable and not redo,
            )
        )
        if finished and zero:  # left if killed right after finishing
            remove_tree(record_path.parent / CHECKPOINTS_DIR)
        return RunState(record, restart, finished, resume)

    def open_record(
        self,
        loss: LossSpec,
        seed: int,
        model: Any,
        dm: Any,
        record: RunRecord | None,
        resume: bool,
        restart: str | None,
        execution: dict[str, Any],
    ) -> RunRecord:
        """The run's record, new or resumed, with its fingerprints, marked running and saved."""
        initial = {
            "backbone_init": state_fingerprint(model.backbone.state_dict()),
            "head_init": state_fingerprint(model.head.proj.state_dict()),
        }
        for key, value in initial.items():  # every process must start from rank 0's weights (RankMismatchError)
            same_on_all_ranks(f"the {key} fingerprint of loss {loss.label!r} seed {seed}", value)
        data = fingerprints_of(dm.describe_splits())  # this seed's data
        if record is None or not resume:
            earlier = (record.restarts if record is not None else []) + ([restart] if restart else [])
            record = RunRecord(loss=loss.label, head=loss.head, head_args=loss.args, seed=seed, restarts=earlier)
            record.fingerprints = {
                **initial,
                "head_shape": "x".join(str(s) for s in model.head.proj.weight.shape),
                "data_order": {},
            }
        else:
            record.resumed += 1
        r = self.recipe
        record.fingerprints["data"] = data
        if seed in self.teacher_fingerprints:
            record.fingerprints["teacher"] = self.teacher_fingerprints[seed]
        record.status, record.error = "running", None
        record.recipe_hash, record.versions = r.recipe_hash, library_versions()
        record.setup_hash = data_setup_hash(r.setup_hash, data)
        record.target = dict(r.target)
        record.environment = environment(settings=r.trainer)
        record.execution = execution
        record.tuning = dict(loss.tuning)
        record.backbone = backbone_record(r.backbone, model)
        record.fingerprints["backbone"] = combine([json.dumps(r.backbone, sort_keys=True, default=str)])
        record.worker = worker_info(self.launcher)
        if r.trainer["callbacks"] or r.trainer["logger"] is not None:  # what every run of the comparison had
            record.execution["callbacks"] = describe_callbacks(r.trainer["callbacks"])
            record.execution["logger"] = r.trainer["logger"]
        record.save(run_dir(self.output, loss.label, seed) / RECORD_FILE)
        return record

    def trainer(self, callbacks: list[pl.Callback], root: Path, run: RunRecord | None = None) -> pl.Trainer:
        """A run's (or an array's) one Trainer: its step-0 evaluation, its fit and its final evaluation. A run's
        (``run``: its record) has the recipe's own logger and callbacks (an array never does: fused.py)."""
        t = self.recipe.trainer
        every = t["eval_every_n_steps"]
        logger: Any = False
        if run is not None:
            tags = {"comparison": self.recipe.name, "loss": run.loss, "seed": run.seed, "head": run.head}
            logger = make_logger(t["logger"], run_dir(self.output, run.loss, run.seed), tags)
            callbacks = [*callbacks, *make_callbacks(t["callbacks"])]
        return pl.Trainer(
            accelerator=t["accelerator"],
            devices=t["devices"],
            num_nodes=t["num_nodes"],
            strategy=t["strategy"],
            precision=t["precision"],
            deterministic=t["deterministic"],
            logger=logger,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
            default_root_dir=str(root),
            num_sanity_val_steps=0,
            plugins=[AtomicCheckpointIO(guard=confined)],  # whole or absent after kill -9; inside the folder
            inference_mode=False,  # validation under no_grad: inference tensors would leak into metric states
            max_epochs=t["max_epochs"] if t["max_epochs"] is not None else -1,
            max_steps=t["max_steps"] if t["max_steps"] is not None else -1,
            val_check_interval=every,
            check_val_every_n_epoch=None,
            log_every_n_steps=t["log_every_n_steps"] or min(every, 50),
            gradient_clip_val=t["gradient_clip_val"],
            accumulate_grad_batches=t["accumulate_grad_batches"],
        )

    def train(
        self,
        model: Any,
        dm: Any,
        seed: int,
        ckpt: Path,
        resume: bool,
        root: Path,
        recorder: Recorder,
        callbacks: list[pl.Callback],
        run: RunRecord | None = None,
    ) -> pl.Trainer:
        """Train ``model`` (a run's module or an array) in one Trainer: the evaluation at step 0 (every curve starts
        from the shared initial weights; not when resuming from ``ckpt``), the fit, and the final evaluation when
        ``recorder`` lacks the last step. ``callbacks`` come after ``recorder``, the test hook's last."""
        progress = [StepProgress(self.on_steps, recorder, self.recipe.target["metric"])] if self.on_steps else []
        trainer = self.trainer([recorder, *callbacks, *progress, *killpoint.callbacks()], root, run)
        if not resume:
            trainer.validate(model, datamodule=dm, verbose=False)
        seed_rngs(seed)  # dropout draws from the global RNG; a resumed run restores the checkpoint's (ResumeState)
        trainer.fit(model, datamodule=dm, ckpt_path=str(ckpt) if resume else None, weights_only=True)
        if recorder.needs_evaluation(int(trainer.global_step)):
            trainer.validate(model, datamodule=dm, verbose=False)  # the final point of the curve
        return trainer

    def evaluate_test(
        self,
        record: RunRecord,
        model: Any,
        dm: Any,
        folder: Path,
        best: BestWeights | None,
        trainer: pl.Trainer,
        predictions: dict[str, torch.Tensor] | BaseException | None = None,
    ) -> None:
        """Select the reported weights, keep them and the test predictions, and fill ``record.test``.

        ``predictions``: the model's test predictions on the reported weights, made already (an array's members are
        predicted together, :meth:`test_predictions`; an exception: the one its prediction raised); None: made here.
        """
        killpoint.kill_point("test")
        if predictions is None:
            self.select_weights(record, model, best, trainer)
            predictions = self.test_predictions([model], dm, trainer)[0]
        if isinstance(predictions, BaseException):
            raise predictions
        save_tensors(folder / WEIGHTS_FILE, model.state_dict())
        save_tensors(folder / PREDICTIONS_FILE, predictions)
        record.test = metrics_from_predictions(model.head.task, getattr(model.head, "num_classes", None), predictions)

    @staticmethod
    def select_weights(record: RunRecord, model: Any, best: BestWeights | None, trainer: pl.Trainer) -> None:
        """Load the weights ``model`` reports on test (best on validation, or its final ones) and say which."""
        if best is not None and best.weights is not None:
            model.load_state_dict(best.weights)
            record.selected = {"rule": "best", "metric": best.metric, "step": best.step, "value": best.best}
        else:
            rule = "final" if best is None else "final (no finite validation value after step 0 to select on)"
            record.selected = {"rule": rule, "step": int(trainer.global_step)}

    @staticmethod
    def test_predictions(
        models: list[Any], dm: Any, trainer: pl.Trainer
    ) -> list[dict[str, torch.Tensor] | BaseException]:
        """Each of ``models``' test predictions, in one pass over the test split (:func:`predict_many`)."""
        return predict_many(
            models,
            dm.test_dataset,
            dm.spec,
            padding=dm.padding,
            batch_size=dm.eval_batch_size or dm.batch_size,
            precision=str(trainer.precision),
        )

    def run_error(self, exc: Exception) -> str:
        """A run's failure as its record's error (``Type: message``), or ``exc`` raised again when it is not the
        run's: processes that disagree (RankMismatchError) and storage failures (disk full, a symlink out of the
        folder) stop the comparison, and the folder resumes."""
        if isinstance(exc, RankMismatchError) or write_failure(exc, self.output) is not None:
            raise exc
        return f"{type(exc).__name__}: {exc}"

    def fail_record(self, record: RunRecord, error: str, skipped_steps: int, order: dict[str, str]) -> str:
        """Record a failed run (it is reported; the others go on); returns its summary line."""
        record.status, record.error = "failed", error
        record.skipped_steps = skipped_steps
        record.worker["finished_at"] = utc_now()
        record.fingerprints["data_order"].update(order)
        record.save(run_dir(self.output, record.loss, record.seed) / RECORD_FILE)
        first = error.splitlines()[0][:200]
        if diverged(record):  # a trial that diverged is a result of tuning (its worst score), not a failure
            return f"{record.loss} seed {record.seed}: DIVERGED, scored worst among its loss's trials ({first})"
        self.failed.append(f"{record.loss} seed {record.seed} ({first})")
        return f"{record.loss} seed {record.seed}: FAILED ({first})"

    def finish_record(
        self, record: RunRecord, rows: list[dict[str, Any]], trainer: pl.Trainer, model: Any, order: dict[str, str]
    ) -> str:
        """Record a finished run from its evaluation rows, delete its checkpoints; returns its summary line."""
        r, folder = self.recipe, run_dir(self.output, record.loss, record.seed)
        record.fingerprints["data_order"].update(order)
        summarise_run(record, rows, trainer, model)
        record.environment = environment(trainer, r.trainer)
        record.skipped_steps = model.skipped_steps
        record.status = "finished"
        record.worker.update(device=device_text(trainer), finished_at=utc_now())
        record.save(folder / RECORD_FILE)
        killpoint.kill_point("finished")
        if self.processes.is_global_zero:
            remove_tree(folder / CHECKPOINTS_DIR)
        label = f"{record.loss} seed {record.seed}"
        value = record.final.get(r.target["metric"])
        headline = test_metric(r.target["metric"])
        tested = f", {headline} {record.test[headline]:.4f}" if headline in record.test else ""
        reached = f"step {record.steps_to_target}" if record.steps_to_target is not None else "not reached"
        members = record.execution.get("members") or []
        took = (  # an array's members share its time: said once per array, not copied to each
            f"in a {len(members)}-member array" if len(members) > 1 else f"{record.train_seconds:.1f}s train"
        )
        return (
            f"{label}: {r.target['metric']} {value:.4f} final{tested}, target {reached}, {took}"
            if value is not None
            else f"{label}: done"
        )

    def run_one(
        self, loss: LossSpec, seed: int, dm: Any, init: InitialState, execution: dict[str, Any] | None = None
    ) -> str:
        """Train one (loss, seed) run, or skip/resume it; return its summary line."""
        folder = run_dir(self.output, loss.label, seed)
        ckpt = run_checkpoint(self.output, loss.label, seed)
        state = self.read_run(loss, seed, ckpt)
        if state.finished:
            return f"{loss.label} seed {seed}: finished earlier, skipped"
        model = self.build_model(loss, seed, dm.spec, init)
        record = self.open_record(
            loss, seed, model, dm, state.record, state.resume, state.restart, execution or {"executor": SEQUENTIAL}
        )
        r = self.recipe
        recorder = RunRecorder(on_row=lambda rows: write_csv(folder / METRICS_FILE, rows))
        order = DataOrderFingerprint()
        best = BestWeights(r.target["metric"], r.target["mode"]) if r.select == "best" else None
        checkpoint = LastCheckpoint(ckpt, r.trainer["checkpoint_every_s"])
        try:
            callbacks = [order, *([best] if best is not None else []), checkpoint]
            trainer = self.train(model, dm, seed, ckpt, state.resume, folder, recorder, callbacks, record)
            if self.processes.is_global_zero:  # the test split, once, on the reported weights (rank 0 writes)
                self.evaluate_test(record, model, dm, folder, best, trainer)
        except Exception as exc:  # a failed run is recorded and reported; the others go on
            return self.fail_record(record, self.run_error(exc), model.skipped_steps, order.hashes)
        return self.finish_record(record, recorder.rows, trainer, model, order.hashes)

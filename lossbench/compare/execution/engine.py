"""The comparison engine: for each seed, one initial state and one batch order; for each loss, a run.

``Comparison(recipe, output).run()`` validates everything (recipe, data, every loss
against the data, the output folder) before writing anything, then trains each
pending (loss, seed) run, skipping finished ones and resuming unfinished ones from
their last checkpoint, and finally renders the report from the records alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lossbench._hints import did_you_mean
from lossbench.compare.analysis.summary import summarise_run
from lossbench.compare.analysis.tuning import diverged, select_trials
from lossbench.compare.execution.callbacks import (
    DataOrderFingerprint,
    LastCheckpoint,
    RunRecorder,
)
from lossbench.compare.execution.evaluate import metrics_from_predictions, predict
from lossbench.compare.execution.interrupt import stop_on_signals
from lossbench.compare.execution.selection import BestWeights
from lossbench.compare.execution.teacher import (
    check_distillers,
    check_same_teacher,
    load_checkpoint_teacher,
    teacher_recipe,
    training_logits,
)
from lossbench.compare.execution.teacher import (
    fingerprint as teacher_fingerprint,
)
from lossbench.compare.execution.tuning import write_summary
from lossbench.compare.recipe.checks import MAX_PARAMETERS, RecipeError
from lossbench.compare.recipe.schema import LossSpec, Recipe
from lossbench.compare.recipe.trials import tuning_recipe, with_point
from lossbench.compare.store import killpoint
from lossbench.compare.store.fingerprints import combine, state_fingerprint
from lossbench.compare.store.layout import (
    LOCK_FILE,
    PREDICTIONS_FILE,
    TEACHER_DIR,
    TEACHER_LABEL,
    TUNING_DIR,
    WEIGHTS_FILE,
    run_dir,
)
from lossbench.compare.store.lock import FolderLock
from lossbench.compare.store.records import (
    STATUS,
    CorruptFileError,
    RunRecord,
    atomic_write_text,
    read_json,
    read_metrics,
    remove_temporary_files,
    test_metric,
    tuning_records,
    write_csv,
    write_json,
)
from lossbench.compare.store.storage import (
    check_writable,
    move_aside,
    nesting_problem,
    remove_tree,
    results_folder,
    write_failure,
)
from lossbench.compare.store.tensors import save_tensors
from lossbench.data.identity import fingerprints_of
from lossbench.distributed import Processes, RankMismatchError, same_on_all_ranks
from lossbench.resume import AtomicCheckpointIO, seed_rngs

# a comparison's own sub-comparisons, relative to its folder: a teacher, tuning trials, and the tuning's teacher
OWN_PARTS = (TEACHER_DIR, TUNING_DIR, f"{TUNING_DIR}/{TEACHER_DIR}")


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


def data_setup_hash(recipe_setup_hash: str, data: dict[str, str]) -> str:
    """The setup hash of a comparison: the recipe's setup and every processed split's content fingerprint."""
    return combine([recipe_setup_hash, *(f"{split}={fp}" for split, fp in sorted(data.items()))])


def balanced_weights(class_counts: dict[str, int], spec) -> list[float]:
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
    spec,
    seed: int,
    overrides: dict[str, Any] | None = None,
    class_counts: dict[str, int] | None = None,
):
    """The LossbenchModule of one run, from a resolved recipe dict (``Recipe.to_dict()`` / comparison.json) and the
    run's own ``optimizer.*`` values (a tuning trial's point, :attr:`LossSpec.overrides`). A head argument
    ``weight: balanced`` becomes :func:`balanced_weights` of the training split's ``class_counts``."""
    from lossbench.config import OptimizerConfig, ScheduleConfig
    from lossbench.module import LossbenchModule

    opt = dict(recipe["optimizer"])
    for path, value in (overrides or {}).items():
        section, key = path.split(".", 1)
        if section != "optimizer":
            raise ValueError(f"build_module: `overrides` may set optimizer.* values only, got {path!r}")
        opt[key] = value
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
        optimizer=OptimizerConfig(**opt),
        schedule=ScheduleConfig(**recipe["schedule"]),
    )


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


def _quarantine_unreadable(ckpt: Path) -> str | None:
    """Move an unreadable checkpoint aside (kept for inspection) so that its run starts over instead of failing
    on every rerun; returns what happened, for the record, or None when there was nothing to do."""
    return checkpoint_state(ckpt)[1]


def checkpoint_state(ckpt: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``ckpt``'s contents (read once, weights only), or (None, what happened) after moving an unreadable one
    aside (:func:`_quarantine_unreadable`); (None, None) when there is none."""
    if not ckpt.exists():
        return None, None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and "global_step" in state:
            return state, None
        problem = f"not a Lightning checkpoint (a {type(state).__name__})"
    except Exception as exc:  # truncated, random bytes, empty, a folder, a pickle that needs code ...
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'unreadable'}"
    return None, _quarantine(ckpt, problem, "checkpoint ", ckpt.parent.parent)  # checkpoints/ goes when it ends


_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError)  # JSON, shape, types


def _read_record(path: Path) -> tuple[RunRecord | None, str | None]:
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


def _quarantine(path: Path, problem: str, what: str = "", folder: Path | None = None) -> str:
    """Move a run's unreadable file (checkpoint, record.json, metrics.csv) aside, into ``folder`` (default its own),
    kept for inspection: its run is trained again, which rebuilds it. Returns what happened, for the record."""
    aside = move_aside(path, "unreadable", folder)
    return f"{what}{path.name} unreadable ({problem}); moved to {aside.name}, run started over"


def _quarantine_metrics(path: Path) -> str | None:
    """Move a finished run's unreadable metrics.csv aside (kept for inspection), as for a record: the run is trained
    again, which rebuilds it; returns what happened, or None when the file reads (or there is none)."""
    if not path.exists():
        return None
    try:
        read_metrics(path)
        return None
    except CorruptFileError as exc:
        problem = f"{exc.problem}: expected {exc.expected}, found {exc.found}"
    except OSError as exc:  # a folder, unreadable permissions
        problem = f"{type(exc).__name__}: {exc.strerror or exc}"
    return _quarantine(path, problem)


def _untuned(args: dict[str, Any], tuned: set[str]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k not in tuned}


def _own_start_up_file(path: Path) -> bool:
    """What a comparison killed on its first start can leave before comparison.json: its lock, its recipe copy,
    temporary files. Such a folder resumes instead of being refused as foreign."""
    name = path.name
    return name in (LOCK_FILE, "recipe.yaml") or (name.startswith(".") and name.endswith(".tmp"))


class Comparison:
    """Train every (loss, seed) of a recipe into ``output`` and report.

    Args:
        recipe: a validated :class:`Recipe`.
        output: the results folder; it may hold an earlier run of the same recipe setup.
        progress: show one progress display over the runs and a line per finished run.
    """

    def __init__(self, recipe: Recipe, output: str | Path, progress: bool = True, wait: bool = False) -> None:
        self.recipe = recipe
        self.output = Path(output)
        self.progress = progress
        self.wait = wait  # another process holds the folder: wait for it (True) or refuse (FolderBusyError)
        self.position = "start-up"  # where the comparison is, for the line an interruption prints
        self.failed: list[str] = []  # "loss seed s: error" of the runs that failed in this invocation
        self.losses: list[LossSpec] = list(recipe.losses)  # trained on the final seeds: at the chosen points once tuned
        self.teacher_fingerprints: dict[int, str] = {}  # seed -> sha256 of its teacher's training logits (_teach)
        self._datamodules: dict[int, Any] = {}
        self.data: dict[str, dict[str, Any]] = {}  # split -> source, rows, fingerprint, class counts (prepare)
        self.processes = Processes()  # one process until run() launches the ones the recipe's trainer asks for
        self.part_of: Path | None = None  # the comparison whose sub-comparison (teacher/, tuning/) this is

    # -- validation, before anything is written ------------------------------------------------
    def prepare(self) -> None:
        """Check the output folder, the data and every loss against the data. Writes nothing."""
        self._check_output()
        dm = self.datamodule(self.recipe.seeds[0])
        spec = dm.spec
        self.data = dm.describe_splits()
        for split in ("validation", "test"):
            if split not in self.data:
                raise RecipeError(
                    f"recipe: the data has no {split} split and carves none (`data.{'val' if split == 'validation' else 'test'}"
                    f"_fraction` is 0): a comparison needs validation rows to select on and test rows to report; "
                    f"give a {split} split or a fraction > 0"
                )
        self._check_data()
        from lossbench.metrics import metric_specs
        from lossbench.module import check_head_fits_data, resolve_head_class

        chosen_by = {"target.metric": self.recipe.target["metric"]}  # every metric a choice is made on
        if self.recipe.tune is not None:
            chosen_by["tune.select.metric"] = self.recipe.tune.metric
        for loss in self.recipe.losses:
            task = resolve_head_class(loss.head).task
            try:
                check_head_fits_data(loss.label, task, loss.args.get("num_classes"), spec)
            except ValueError as exc:
                raise RecipeError(f"recipe: loss {loss.label!r} does not fit the data: {exc}") from None
            logged = sorted({f"val/{n}" for n in metric_specs(task, spec.num_classes)} | {"val/loss"})
            for key, metric in chosen_by.items():
                if metric not in logged:
                    raise RecipeError(
                        f"recipe: `{key}` {metric!r} is not logged for loss {loss.label!r} ({task} head)"
                        f"{did_you_mean(metric, logged)} (it logs {logged})"
                    )
        self._check_model_size(spec)
        check_distillers(self.recipe)
        if self.recipe.teacher is not None and "checkpoint" in self.recipe.teacher:
            load_checkpoint_teacher(
                self.recipe.teacher["checkpoint"],
                spec,  # its classes, data and contents, now
                self.recipe.teacher.get("sha256"),
            )
        probe = self.initial_state(self.recipe.seeds[0], spec)
        for loss in self.recipe.losses:  # the heads' own argument checks, before anything is written
            try:
                self.build_model(loss, self.recipe.seeds[0], spec, probe)
            except (ValueError, TypeError) as exc:
                raise RecipeError(f"recipe: loss {loss.label!r} cannot be built for the data: {exc}") from None
        if self.recipe.tune is not None:
            self._check_trials(spec, probe)

    def _check_trials(self, spec, probe: InitialState) -> None:
        """Every loss builds at every trial point (a head argument or optimizer value out of its range is refused
        now, not when its trial starts)."""
        tune = self.recipe.tune
        for loss in self.recipe.losses:
            for j, point in enumerate(tune.loss_points(loss.label)):
                try:
                    self.build_model(with_point(loss, point, "trial", j), self.recipe.seeds[0], spec, probe)
                except (ValueError, TypeError) as exc:
                    raise RecipeError(
                        f"recipe: loss {loss.label!r} cannot be built at tuning trial {j} "
                        f"({point}): {exc}; narrow `tune.space`"
                    ) from None

    def _check_model_size(self, spec) -> None:
        """Refuse a backbone above MAX_PARAMETERS before allocating it (counted on the meta device)."""
        from lossbench.module import BackboneConfig, build_backbone

        with torch.device("meta"):
            meta = build_backbone(spec, BackboneConfig(**self.recipe.backbone))
        count = sum(p.numel() for p in meta.parameters())
        if count > MAX_PARAMETERS:
            raise RecipeError(
                f"recipe: the backbone would have {count:,} parameters (`backbone` {self.recipe.backbone} on this "
                f"data), more than the {MAX_PARAMETERS:,} a comparison allows; refused before allocating it"
            )

    def _check_output(self) -> None:
        meta = self.output / "comparison.json"
        unwritable = check_writable(self.output)
        if unwritable:
            raise RecipeError(f"compare: `--output` {unwritable}; choose another folder")
        if self.part_of is None:  # teacher/ and tuning/ are this comparison's own, checked with it
            nested = nesting_problem(self.output, parts=OWN_PARTS)
            if nested:
                raise RecipeError(f"compare: `--output` {nested}")
        if meta.exists():
            previous = self._read_meta()
            check_same_teacher(previous.get("recipe"), self.recipe, self.output)  # names a changed checkpoint
            if previous.get("recipe_setup_hash", previous.get("setup_hash")) != self.recipe.setup_hash:
                raise RecipeError(
                    f"compare: `--output` {str(self.output)!r} holds results of another recipe setup "
                    f"({previous.get('name')!r}, setup {str(previous.get('recipe_setup_hash', previous.get('setup_hash')))[:12]} vs "
                    f"{self.recipe.setup_hash[:12]} now): refusing to mix them; use a new --output folder"
                )
        elif self.output.exists() and any(not _own_start_up_file(p) for p in self.output.iterdir()):
            raise RecipeError(
                f"compare: `--output` {str(self.output)!r} is not empty and holds no lossbench comparison; "
                "choose an empty or new folder"
            )
        tune = self.recipe.tune  # a tuned head argument is the chosen trial's: compared after tuning, not here
        for loss in self.recipe.losses:
            tuned = {d.key for d in tune.space if d.loss == loss.label} if tune is not None else set()
            for seed in self.recipe.seeds:
                record, _ = _read_record(run_dir(self.output, loss.label, seed) / "record.json")
                if record is not None:  # an unreadable one is moved aside and its run trained again (run_one)
                    if record.head != loss.head or _untuned(record.head_args, tuned) != _untuned(loss.args, tuned):
                        raise RecipeError(
                            f"compare: loss {loss.label!r} in {str(self.output)!r} was run as {record.head} "
                            f"{record.head_args}, the recipe now says {loss.head} {loss.args}; "
                            "give it another label or use a new --output folder"
                        )

    def _check_data(self) -> None:
        """Refuse to resume or mix when a split's contents differ from those the folder's runs were trained on."""
        meta = self.output / "comparison.json"
        if not meta.exists():
            return
        before = self._read_meta().get("data") or {}
        changed = [
            f"{split!r} (fingerprint {str(before.get(split, {}).get('fingerprint'))[:12]} then, "
            f"{str(now.get('fingerprint'))[:12]} now; {before.get(split, {}).get('rows')} rows then, {now.get('rows')} now)"
            for split, now in self.data.items()
            if before.get(split, {}).get("fingerprint") != now.get("fingerprint")
        ]
        if changed:
            raise RecipeError(
                f"compare: the data changed since the runs in `--output` {str(self.output)!r} were trained: the "
                f"contents of split {', '.join(changed)} differ; refusing to resume or mix runs on different data; "
                "use a new --output folder (or restore the data)"
            )

    def _read_meta(self) -> dict[str, Any]:
        """``comparison.json``, or a RecipeError naming it when it is unreadable (it says what the folder holds)."""
        path = self.output / "comparison.json"
        try:
            meta = read_json(path)
        except (ValueError, UnicodeDecodeError) as exc:
            meta, problem = None, f"not valid JSON ({str(exc).splitlines()[0][:120]})"
        else:
            problem = f"a JSON {type(meta).__name__}, not an object"
        if not isinstance(meta, dict) or not isinstance(meta.get("data", {}), dict):
            problem = problem if not isinstance(meta, dict) else "its 'data' is not an object"
            raise RecipeError(
                f"compare: {str(path)!r} is unreadable: {problem}; it records which recipe and data this folder "
                "holds, so its runs cannot be resumed without it: restore it, or use a new --output folder"
            )
        return meta

    @property
    def data_fingerprints(self) -> dict[str, str]:
        return fingerprints_of(self.data)

    @property
    def setup_hash(self) -> str:
        """The recipe's setup hash combined with the data's content fingerprints."""
        return data_setup_hash(self.recipe.setup_hash, self.data_fingerprints)

    # -- data and initial state --------------------------------------------------------------------
    def datamodule(self, seed: int):
        """The seed's data module: the batch order is a function of (seed, epoch)."""
        if seed not in self._datamodules:
            from lossbench.data import HFDataModule

            self._datamodules[seed] = HFDataModule(**self.recipe.data, seed=seed)
        return self._datamodules[seed]

    def initial_state(self, seed: int, spec) -> InitialState:
        """The backbone every loss of ``seed`` starts from, built once."""
        from lossbench.module import BackboneConfig, build_backbone

        backbone = build_backbone(spec, BackboneConfig(**self.recipe.backbone), seed=seed)
        return InitialState({k: v.detach().clone() for k, v in backbone.state_dict().items()}, {})

    def build_model(self, loss: LossSpec, seed: int, spec, init: InitialState):
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

    # -- running ---------------------------------------------------------------------------------
    def plan(self) -> list[tuple[int, LossSpec]]:
        return [(seed, loss) for seed in self.recipe.seeds for loss in self.losses]

    def _run_part(self, recipe: Recipe, folder: str) -> Comparison:
        """Run ``recipe`` as a comparison of its own in ``DIR/<folder>`` (teachers, tuning trials), in this
        comparison's processes and under its lock, without a report; its failed runs are this one's too."""
        sub = Comparison(recipe, self.output / folder, progress=self.progress)
        sub.processes, sub.part_of = self.processes, self.output
        sub.prepare()
        sub._run_locked(report=False)
        self.failed += [f"{folder}: {line}" for line in sub.failed]
        return sub

    def _teach(self) -> None:
        """Every seed's teacher (trained in ``DIR/teacher``, or the checkpoint): its logits on the training rows go
        with the seed's training batches (``HFDataModule.set_teacher``) and their fingerprint into each record."""
        from lossbench.compare.store.layout import WEIGHTS_FILE
        from lossbench.compare.store.tensors import load_tensors

        given = self.recipe.teacher or {}
        self.position = "the teachers"
        if "checkpoint" in given:
            model = load_checkpoint_teacher(
                given["checkpoint"], self.datamodule(self.recipe.seeds[0]).spec, given.get("sha256")
            )
            models = {seed: model for seed in self.recipe.seeds}
        else:
            sub = self._run_part(teacher_recipe(self.recipe), TEACHER_DIR)
            models = {}
            for seed in self.recipe.seeds:
                folder = run_dir(sub.output, TEACHER_LABEL, seed)
                record, _ = _read_record(folder / "record.json")
                if record is None or record.status != "finished":
                    why = record.error if record is not None else "no record"
                    raise RecipeError(
                        f"compare: the teacher of seed {seed} did not finish ({why}); its students "
                        f"cannot distil from it (see {folder})"
                    )
                model = sub.build_model(
                    sub.recipe.losses[0],
                    seed,
                    self.datamodule(seed).spec,
                    sub.initial_state(seed, self.datamodule(seed).spec),
                )
                model.load_state_dict(load_tensors(folder / WEIGHTS_FILE))
                models[seed] = model
        for seed, model in models.items():
            logits = training_logits(model, self.datamodule(seed))
            self.datamodule(seed).set_teacher(logits)
            self.teacher_fingerprints[seed] = teacher_fingerprint(logits)

    def _tune(self) -> None:
        """Train every loss's trials (``DIR/tuning``, a comparison of its own), then set :attr:`losses` to the
        points their trials select on validation (written to ``DIR/tuning.json``)."""
        tune = self.recipe.tune
        self.position = "tuning"
        self._run_part(tuning_recipe(self.recipe), TUNING_DIR)
        chosen = None
        if self.processes.is_global_zero:
            chosen = select_trials(
                tune, [l.label for l in self.recipe.losses], tuning_records(self.output), self.recipe.select
            )
            write_summary(self.output, tune, chosen)
        chosen = self.processes.broadcast(chosen)
        self.losses = [
            with_point(loss, chosen[loss.label].point, "final", chosen[loss.label].chosen)
            for loss in self.recipe.losses
        ]

    def run(self) -> Path:
        """Validate, lock the folder, train what is not finished, render the report; returns the report's path.

        Raises :class:`~lossbench.compare.store.lock.FolderBusyError` when another process holds the folder (unless
        ``wait``) and :class:`~lossbench.compare.execution.interrupt.Interrupted` on SIGTERM/SIGINT (the folder resumes).
        """
        with quiet():
            self.prepare()
            self.processes = self._launch()  # every process exists before anything is decided or written
        # one writer per folder (rank 0 of a distributed run is the only one that writes)
        lock = (
            FolderLock(self.output, wait=self.wait, on_wait=self._waiting)
            if self.processes.is_global_zero
            else contextlib.nullcontext()
        )
        with results_folder(self.output), stop_on_signals(), lock:  # a signal while waiting for the lock stops too
            try:
                return self._run_locked()
            except OSError as exc:  # disk full, quota, read-only: stop (every later write would fail too)
                failure = write_failure(exc, self.output)
                if failure is None:
                    raise
                raise failure from exc

    def _waiting(self, holder: str) -> None:
        """``--wait``: say that (and whom) this process waits for; a signal meanwhile names it."""
        self.position = f"start-up, waiting for the other lossbench compare ({holder})"
        if self.progress:
            print(
                f"lossbench compare: {str(self.output)!r} is in use by another lossbench compare ({holder}); "
                "waiting for it to finish (--wait)",
                file=sys.stderr,
                flush=True,
            )

    def _run_locked(self, report: bool = True) -> Path:
        from tqdm.auto import tqdm

        with quiet():
            if self.processes.is_global_zero:  # under the lock, again: another process may have written meanwhile
                self._check_output()
                self._check_data()
            remove_temporary_files(self.output)  # left by a process killed mid-write (nobody else writes here now)
            self._write_meta()
            if self.recipe.teacher is not None:
                self._teach()
            if self.recipe.tune is not None:
                self._tune()
            plan = self.plan()
            show = self.progress and self.processes.is_global_zero  # one display, on global rank 0
            bar = tqdm(
                total=len(plan),
                desc="lossbench compare",
                unit="run",
                disable=not show,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            inits: dict[int, InitialState] = {}
            fused: dict[int, tuple[dict[str, str], dict[str, str]]] = {}  # seed -> (lines, fallbacks) of its array
            try:
                for i, (seed, loss) in enumerate(plan, 1):
                    self.position = f"run {i}/{len(plan)} ({loss.label} seed {seed})"
                    killpoint.kill_point(f"run:{i}")  # test hook (LOSSBENCH_TEST_KILL_AT); a no-op otherwise
                    bar.set_postfix_str(f"run {i}/{len(plan)}: {loss.label} seed {seed}")
                    dm = self.datamodule(seed)
                    if seed not in inits:
                        inits[seed] = self.initial_state(seed, dm.spec)
                    if self.recipe.executor == "fused" and seed not in fused:
                        from lossbench.compare.execution.fused import run_arrays

                        last = i + len(self.losses) - 1
                        self.position = f"the arrays of seed {seed} (runs {i}-{last}/{len(plan)})"
                        fused[seed] = run_arrays(self, seed, self.losses, dm, inits[seed])
                    lines, fallbacks = fused.get(seed, ({}, {}))
                    line = lines.get(loss.label)
                    if line is None:
                        execution = {"executor": "sequential"}
                        if loss.label in fallbacks:
                            execution["fallback"] = fallbacks[loss.label]
                        line = self.run_one(loss, seed, dm, inits[seed], execution)
                    bar.update(1)
                    if show:
                        bar.write(f"[{i}/{len(plan)}] {line}")
            finally:
                bar.close()
        self.position = "the report"
        self.processes.barrier()
        from lossbench.compare.report.render import render_report

        if not self.processes.is_global_zero or not report:  # the report is rank 0's to write
            return self.output / "report.md"
        return render_report(self.output)

    def _launch(self) -> Processes:
        try:
            return Processes.launch(self.recipe.trainer)
        except Exception as exc:  # bad devices/strategy: refused before anything is written
            raise RecipeError(f"compare: the `trainer` settings cannot start their processes: {exc}") from None

    def _write_meta(self) -> None:
        r = self.recipe
        meta = {
            "name": r.name,
            "recipe": r.to_dict(),
            "recipe_hash": r.recipe_hash,
            "setup_hash": self.setup_hash,
            "recipe_setup_hash": r.setup_hash,
            "data": self.data,
            "select": r.select,
            "baseline": r.baseline,
            "losses": [l.label for l in r.losses],
            "seeds": r.seeds,
            "target": r.target,
            "budget": {
                "max_epochs": r.trainer["max_epochs"],
                "max_steps": r.trainer["max_steps"],
                "eval_every_n_steps": r.trainer["eval_every_n_steps"],
            },
            "optimizer": dict(r.optimizer),
            "schedule": dict(r.schedule),
            "tuned": r.tune is not None,
            "versions": library_versions(),
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        }
        path = self.output / "comparison.json"
        if path.exists():
            meta["created"] = self._read_meta().get("created", meta["created"])
        if r.runnable:  # `lossbench compare DIR/recipe.yaml`; a tuning comparison's trials are run by its parent's
            atomic_write_text(self.output / "recipe.yaml", r.to_yaml())
        write_json(path, meta)

    def trainer(self, callbacks: list[pl.Callback], root: Path) -> pl.Trainer:
        """A run's (or an array's) one Trainer: its step-0 evaluation, its fit and its final evaluation."""
        t = self.recipe.trainer
        every = t["eval_every_n_steps"]
        return pl.Trainer(
            accelerator=t["accelerator"],
            devices=t["devices"],
            num_nodes=t["num_nodes"],
            strategy=t["strategy"],
            precision=t["precision"],
            deterministic=t["deterministic"],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
            default_root_dir=str(root),
            num_sanity_val_steps=0,
            plugins=[AtomicCheckpointIO()],  # a checkpoint is whole or absent, even after kill -9
            inference_mode=False,  # validation under no_grad: inference tensors would leak into metric states
            max_epochs=t["max_epochs"] if t["max_epochs"] is not None else -1,
            max_steps=t["max_steps"] if t["max_steps"] is not None else -1,
            val_check_interval=every,
            check_val_every_n_epoch=None,
            log_every_n_steps=min(every, 50),
            gradient_clip_val=t["gradient_clip_val"],
        )

    def evaluate_test(self, record: RunRecord, model, dm, folder: Path, best: BestWeights | None, trainer) -> None:
        """Select the reported weights, keep them and the test predictions, and fill ``record.test``."""
        killpoint.kill_point("test")
        if best is not None and best.weights is not None:
            model.load_state_dict(best.weights)
            record.selected = {"rule": "best", "metric": best.metric, "step": best.step, "value": best.best}
        else:
            rule = "final" if best is None else "final (no finite validation value after step 0 to select on)"
            record.selected = {"rule": rule, "step": int(trainer.global_step)}
        save_tensors(folder / WEIGHTS_FILE, model.state_dict())
        predictions = predict(
            model,
            dm.test_dataset,
            dm.spec,
            padding=dm.padding,
            batch_size=dm.eval_batch_size or dm.batch_size,
            precision=str(trainer.precision),
        )
        save_tensors(folder / PREDICTIONS_FILE, predictions)
        record.test = metrics_from_predictions(model.head.task, getattr(model.head, "num_classes", None), predictions)

    def read_run(self, loss: LossSpec, seed: int, ckpt: Path) -> tuple[RunRecord | None, str | None, bool, bool]:
        """A run's record, why it restarts (an unreadable checkpoint or record moved aside), and whether it is
        finished and can resume from ``ckpt``, as global rank 0 sees it (every process follows rank 0)."""
        record_path = run_dir(self.output, loss.label, seed) / "record.json"
        record, unreadable = _read_record(record_path)
        restart = _quarantine_unreadable(ckpt) if self.processes.is_global_zero else None
        if unreadable and self.processes.is_global_zero:
            restart = _quarantine(record_path, unreadable, "record ")
        redo = None  # a finished run whose metrics.csv is unreadable is trained again, which rebuilds it
        if record is not None and record.status == "finished" and self.processes.is_global_zero:
            redo = _quarantine_metrics(record_path.parent / "metrics.csv")
            restart = redo or restart
        finished, resume = self.processes.broadcast(
            (
                record is not None and (record.status == "finished" or diverged(record)) and not redo,
                ckpt.exists() and not unreadable and not redo,
            )
        )
        if finished and self.processes.is_global_zero:  # left if killed right after finishing
            remove_tree(record_path.parent / "checkpoints")
        return record, restart, finished, resume

    def open_record(
        self,
        loss: LossSpec,
        seed: int,
        model,
        dm,
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
        record.save(run_dir(self.output, loss.label, seed) / "record.json")
        return record

    def fail_record(self, record: RunRecord, error: str, skipped_steps: int, order: dict[str, str]) -> str:
        """Record a failed run (it is reported; the others go on); returns its summary line."""
        record.status, record.error = "failed", error
        record.skipped_steps = skipped_steps
        record.fingerprints["data_order"].update(order)
        record.save(run_dir(self.output, record.loss, record.seed) / "record.json")
        first = error.splitlines()[0][:200]
        if diverged(record):  # a trial that diverged is a result of tuning (its worst score), not a failure
            return f"{record.loss} seed {record.seed}: DIVERGED, scored worst among its loss's trials ({first})"
        self.failed.append(f"{record.loss} seed {record.seed} ({first})")
        return f"{record.loss} seed {record.seed}: FAILED ({first})"

    def finish_record(
        self, record: RunRecord, rows: list[dict[str, Any]], trainer, model, order: dict[str, str]
    ) -> str:
        """Record a finished run from its evaluation rows, delete its checkpoints; returns its summary line."""
        r, folder = self.recipe, run_dir(self.output, record.loss, record.seed)
        record.fingerprints["data_order"].update(order)
        summarise_run(record, rows, trainer, model)
        record.environment = environment(trainer, r.trainer)
        record.skipped_steps = model.skipped_steps
        record.status = "finished"
        record.save(folder / "record.json")
        killpoint.kill_point("finished")
        if self.processes.is_global_zero:
            remove_tree(folder / "checkpoints")
        label = f"{record.loss} seed {record.seed}"
        value = record.final.get(r.target["metric"])
        headline = test_metric(r.target["metric"])
        tested = f", {headline} {record.test[headline]:.4f}" if headline in record.test else ""
        reached = f"step {record.steps_to_target}" if record.steps_to_target is not None else "not reached"
        return (
            f"{label}: {r.target['metric']} {value:.4f} final{tested}, target {reached}, "
            f"{record.train_seconds:.1f}s train"
            if value is not None
            else f"{label}: done"
        )

    def run_one(
        self, loss: LossSpec, seed: int, dm, init: InitialState, execution: dict[str, Any] | None = None
    ) -> str:
        """Train one (loss, seed) run, or skip/resume it; return its summary line."""
        folder = run_dir(self.output, loss.label, seed)
        ckpt = folder / "checkpoints" / "last.ckpt"
        record, restart, finished, resume = self.read_run(loss, seed, ckpt)
        if finished:
            return f"{loss.label} seed {seed}: finished earlier, skipped"
        model = self.build_model(loss, seed, dm.spec, init)
        record = self.open_record(
            loss, seed, model, dm, record, resume, restart, execution or {"executor": "sequential"}
        )
        r = self.recipe
        recorder = RunRecorder(on_row=lambda rows: write_csv(folder / "metrics.csv", rows))
        order = DataOrderFingerprint()
        checkpoint = LastCheckpoint(ckpt, r.trainer["checkpoint_every_s"])
        best = BestWeights(r.target["metric"], r.target["mode"])
        selection = [best] if r.select == "best" else []
        try:
            trainer = self.trainer([recorder, order, *selection, checkpoint, *killpoint.callbacks()], folder)
            if not resume:  # evaluation at step 0: every curve starts from the shared initial weights
                trainer.validate(model, datamodule=dm, verbose=False)
            seed_rngs(seed)  # dropout draws from the global RNG; a resumed run restores the checkpoint's (ResumeState)
            trainer.fit(model, datamodule=dm, ckpt_path=str(ckpt) if resume else None, weights_only=True)
            if not recorder.rows or recorder.rows[-1]["step"] != trainer.global_step:
                trainer.validate(model, datamodule=dm, verbose=False)  # the final point of the curve
            if self.processes.is_global_zero:  # the test split, once, on the reported weights (rank 0 writes)
                self.evaluate_test(record, model, dm, folder, best if r.select == "best" else None, trainer)
        except RankMismatchError:  # processes disagree on the batch order: stop the whole comparison, loudly
            raise
        except Exception as exc:  # a failed run is recorded and reported; the others go on
            if write_failure(exc, self.output) is not None:  # not the run's fault: stop, the folder resumes
                raise
            return self.fail_record(record, f"{type(exc).__name__}: {exc}", model.skipped_steps, order.hashes)
        return self.finish_record(record, recorder.rows, trainer, model, order.hashes)

"""The comparison engine: for each seed, one initial state and one batch order; for each loss, a run.

``Comparison(recipe, output).run()`` validates everything (recipe, data, every loss
against the data, the output folder) before writing anything, then trains each
pending (loss, seed) run, skipping finished ones and resuming unfinished ones from
their last checkpoint, and finally renders the report from the records alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lossbench import _killpoint as killpoint
from lossbench._hints import did_you_mean
from lossbench.compare.analysis.tuning import select_trials
from lossbench.compare.execution.fused import run_arrays
from lossbench.compare.execution.interrupt import stop_on_signals
from lossbench.compare.execution.ray_launcher import RayLauncher
from lossbench.compare.execution.runner import (
    FUSED,
    SEQUENTIAL,
    InitialState,
    RunBook,
    data_setup_hash,
    library_versions,
    optimizer_config,
    quiet,
    read_record,
)
from lossbench.compare.execution.teacher import (
    check_distillers,
    check_same_teacher,
    load_checkpoint_teacher,
    teacher_recipe,
)
from lossbench.compare.execution.tuning import write_summary
from lossbench.compare.execution.unit import Unit
from lossbench.compare.recipe.checks import MAX_PARAMETERS, RecipeError, check_config
from lossbench.compare.recipe.schema import LossSpec, Recipe
from lossbench.compare.recipe.trials import tuning_recipe, with_point
from lossbench.compare.recipe.tune import TuneSpec
from lossbench.compare.store.layout import (
    LOCK_FILE,
    RECIPE_FILE,
    RECORD_FILE,
    REPORT_FILE,
    TEACHER_DIR,
    TUNING_DIR,
    run_dir,
)
from lossbench.compare.store.lock import FolderLock
from lossbench.compare.store.meta import ComparisonMeta, comparison_path, write_comparison
from lossbench.compare.store.records import (
    RunRecord,
    atomic_write_text,
    read_json,
    remove_temporary_files,
    tuning_records,
)
from lossbench.compare.store.storage import (
    check_writable,
    nesting_problem,
    results_folder,
    write_failure,
)
from lossbench.data.identity import fingerprints_of
from lossbench.data.memory import is_memory_name, memory_dataset
from lossbench.distributed import Processes

# a comparison's own sub-comparisons, relative to its folder: a teacher, tuning trials, and the tuning's teacher
OWN_PARTS = (TEACHER_DIR, TUNING_DIR, f"{TUNING_DIR}/{TEACHER_DIR}")


def _untuned(args: dict[str, Any], tuned: set[str]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k not in tuned}


def _setup_keys_text(previous: Any, recipe: Recipe) -> str:
    """``"; it differs in `backbone`"``: the setup sections in which the folder's recipe and ``recipe`` differ."""
    try:
        before = Recipe.from_dict(previous).setup()
    except Exception:  # a folder from an older lossbench, or an edited file: the hashes alone
        return ""
    now = recipe.setup()

    def same(key: str) -> bool:
        return json.dumps(before.get(key), sort_keys=True, default=str) == json.dumps(
            now.get(key), sort_keys=True, default=str
        )

    keys = sorted(k for k in set(before) | set(now) if not same(k))
    return f"; it differs in {', '.join(f'`{k}`' for k in keys)}" if keys else ""


def _own_start_up_file(path: Path) -> bool:
    """What a comparison killed on its first start can leave before comparison.json: its lock, its recipe copy,
    temporary files. Such a folder resumes instead of being refused as foreign."""
    name = path.name
    return name in (LOCK_FILE, RECIPE_FILE) or (name.startswith(".") and name.endswith(".tmp"))


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
        self.losses: list[LossSpec] = list(recipe.losses)  # trained on the final seeds: at the chosen points once tuned
        # the runs' data, initial states, models and lifecycle; its processes are one until run() launches the
        # ones the recipe's trainer asks for, its data is set by prepare()
        self.book = RunBook(recipe, self.output)
        self.part_of: Path | None = None  # the comparison whose sub-comparison (teacher/, tuning/) this is
        self.built_by_parent = False  # the tuning's trials: its parent built each loss at each point (prepare)
        self.launcher: RayLauncher | None = None  # launcher ray: its connection (run() opens it, parts share it)
        self._prepared = False

    @property
    def processes(self) -> Processes:
        return self.book.processes

    @processes.setter
    def processes(self, processes: Processes) -> None:
        self.book.processes = processes

    @property
    def data(self) -> dict[str, dict[str, Any]]:
        """split -> source, rows, fingerprint, class counts (prepare)."""
        return self.book.data

    @data.setter
    def data(self, data: dict[str, dict[str, Any]]) -> None:
        self.book.data = data

    @property
    def failed(self) -> list[str]:
        """The runs that failed in this invocation: ``"loss seed s (error)"``."""
        return self.book.failed

    @property
    def teacher_fingerprints(self) -> dict[int, str]:
        """seed -> sha256 of its teacher's training logits (_teach)."""
        return self.book.teacher_fingerprints

    # -- validation, before anything is written ------------------------------------------------
    def prepare(self) -> None:
        """Check the output folder, the data, every loss against the data, and build every loss (at every tuning
        point). Writes nothing.

        Once per comparison: a second call does nothing (``lossbench compare`` prepares before it runs). What
        another process can change meanwhile (the folder's comparison.json and records, against the data's
        fingerprints) is checked again under the folder's lock, by reading files: no model is built again.
        """
        if self._prepared:
            return
        self._check_output()
        dm = self.datamodule(self.recipe.seeds[0])
        spec = dm.spec
        self.data = dm.describe_splits()
        self._check_splits()
        self._check_data()
        self._check_losses(spec)
        self._check_model_size(spec)
        check_distillers(self.recipe)
        if self.recipe.teacher is not None and "checkpoint" in self.recipe.teacher:
            load_checkpoint_teacher(
                self.recipe.teacher["checkpoint"],
                spec,  # its classes, data and contents, now
                self.recipe.teacher.get("sha256"),
            )
        if not self.built_by_parent:
            self._check_builds(spec)
        self._prepared = True

    def _check_splits(self) -> None:
        for split in ("validation", "test"):
            if split not in self.data:
                fraction = "val_fraction" if split == "validation" else "test_fraction"
                raise RecipeError(
                    f"recipe: the data has no {split} split and carves none (`data.{fraction}` is 0): a comparison "
                    f"needs validation rows to select on and test rows to report; give a {split} split or a "
                    "fraction > 0"
                )

    def _check_losses(self, spec: Any) -> None:
        """Every loss's task fits the data, and logs every metric a choice is made on."""
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

    def _check_builds(self, spec: Any) -> None:
        """The heads' own argument checks, before anything is written: every loss builds (at every trial point); a
        model is built once per distinct head and arguments (losses that differ only in their label build alike)."""
        probe = self.initial_state(self.recipe.seeds[0], spec)
        self._check_pretrained(probe.pretrained_sha256)
        built: set[tuple[str, str]] = set()
        for loss in self.recipe.losses:
            if loss.head_key in built:
                continue
            try:
                self.build_model(loss, self.recipe.seeds[0], spec, probe)
            except (ValueError, TypeError) as exc:
                raise RecipeError(f"recipe: loss {loss.label!r} cannot be built for the data: {exc}") from None
            built.add(loss.head_key)
        if self.recipe.tune is not None:
            self._check_trials(self.recipe.tune, spec, probe, built)

    def _check_trials(self, tune: TuneSpec, spec: Any, probe: InitialState, built: set[tuple[str, str]]) -> None:
        """Every loss builds at every trial point (a head argument or optimizer value out of its range is refused
        now, not when its trial starts). A model is built once per distinct head and arguments (``built``: those
        built already): a point's optimizer values build nothing, and are checked as the module checks them
        (:meth:`OptimizerConfig.check`)."""
        recipe = self.recipe.to_dict()
        for loss in self.recipe.losses:
            for j, point in enumerate(tune.loss_points(loss.label)):
                trial = with_point(loss, point, "trial", j)
                try:
                    check_config(optimizer_config(recipe, trial.overrides), "optimizer")
                    if trial.head_key not in built:
                        self.build_model(trial, self.recipe.seeds[0], spec, probe)
                        built.add(trial.head_key)
                except (ValueError, TypeError, RecipeError) as exc:
                    raise RecipeError(
                        f"recipe: loss {loss.label!r} cannot be built at tuning trial {j} "
                        f"({point}): {str(exc).removeprefix('recipe: ')}; narrow `tune.space`"
                    ) from None

    def _check_pretrained(self, sha: str | None) -> None:
        """Refuse to resume or mix when the pretrained weights the folder's runs started from differ from those now
        at the same `backbone` path (the recipe, which names only the path, is unchanged)."""
        if sha is None:
            return
        for loss in self.recipe.losses:
            for seed in self.recipe.seeds:
                record, _ = read_record(run_dir(self.output, loss.label, seed) / RECORD_FILE)
                before = (record.backbone or {}).get("pretrained_sha256") if record is not None else None
                if before is not None and before != sha:
                    raise RecipeError(
                        f"compare: the pretrained weights of `backbone` changed since the runs in `--output` "
                        f"{str(self.output)!r} were trained (run {loss.label!r} seed {seed}: sha256 {before[:12]} "
                        f"then, {sha[:12]} now); refusing to resume or mix runs from other weights; use a new "
                        "--output folder (or restore the weights)"
                    )

    def _check_model_size(self, spec) -> None:
        """Refuse a backbone above MAX_PARAMETERS before allocating it (counted on the meta device)."""
        from lossbench.module import make_backbone

        with torch.device("meta"):
            meta = make_backbone(spec, self.recipe.backbone)
        count = sum(p.numel() for p in meta.parameters())
        if count > MAX_PARAMETERS:
            raise RecipeError(
                f"recipe: the backbone would have {count:,} parameters (`backbone` {self.recipe.backbone} on this "
                f"data), more than the {MAX_PARAMETERS:,} a comparison allows; refused before allocating it"
            )

    def _check_output(self) -> None:
        meta = comparison_path(self.output)
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
            setup = previous.get("recipe_setup_hash", previous.get("setup_hash"))
            if setup != self.recipe.setup_hash:
                raise RecipeError(
                    f"compare: `--output` {str(self.output)!r} holds results of another recipe setup "
                    f"({previous.get('name')!r}, setup {str(setup)[:12]} vs "
                    f"{self.recipe.setup_hash[:12]} now{_setup_keys_text(previous.get('recipe'), self.recipe)}): "
                    "refusing to mix them; use a new --output folder"
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
                record, _ = read_record(run_dir(self.output, loss.label, seed) / RECORD_FILE)
                if record is not None:  # an unreadable one is moved aside and its run trained again (run_one)
                    if record.head != loss.head or _untuned(record.head_args, tuned) != _untuned(loss.args, tuned):
                        raise RecipeError(
                            f"compare: loss {loss.label!r} in {str(self.output)!r} was run as {record.head} "
                            f"{record.head_args}, the recipe now says {loss.head} {loss.args}; "
                            "give it another label or use a new --output folder"
                        )

    def _check_data(self) -> None:
        """Refuse to resume or mix when a split's contents differ from those the folder's runs were trained on."""
        meta = comparison_path(self.output)
        if not meta.exists():
            return
        before = self._read_meta().get("data") or {}
        changed = [
            f"{split!r} (fingerprint {str(before.get(split, {}).get('fingerprint'))[:12]} then, "
            f"{str(now.get('fingerprint'))[:12]} now; {before.get(split, {}).get('rows')} rows then, "
            f"{now.get('rows')} now)"
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
        path = comparison_path(self.output)
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
    def datamodule(self, seed: int) -> Any:
        """The seed's data module: the batch order is a function of (seed, epoch)."""
        return self.book.datamodule(seed)

    def initial_state(self, seed: int, spec: Any) -> InitialState:
        """The backbone every loss of ``seed`` starts from, built once."""
        return self.book.initial_state(seed, spec)

    def build_model(self, loss: LossSpec, seed: int, spec: Any, init: InitialState) -> Any:
        """A LossbenchModule for ``loss`` whose backbone (and same-shape head projection) is ``init``'s."""
        return self.book.build_model(loss, seed, spec, init)

    # -- running ---------------------------------------------------------------------------------
    def plan(self) -> list[tuple[int, LossSpec]]:
        return [(seed, loss) for seed in self.recipe.seeds for loss in self.losses]

    def units(self) -> list[Unit]:
        """The plan as units of work (:mod:`~lossbench.compare.execution.unit`), each executable in a fresh process:
        one per seed (its losses in arrays) with the fused executor, one per run with the sequential one."""
        recipe, out, labels = self.recipe.to_dict(), str(self.output), [loss.label for loss in self.losses]
        if self.recipe.executor == FUSED:
            return [Unit(recipe, seed, labels, out, FUSED) for seed in self.recipe.seeds]
        return [Unit(recipe, seed, [loss.label], out, SEQUENTIAL) for seed, loss in self.plan()]

    def _run_part(self, recipe: Recipe, folder: str, built: bool = False) -> Comparison:
        """Run ``recipe`` as a comparison of its own in ``DIR/<folder>`` (teachers, tuning trials), in this
        comparison's processes and under its lock, without a report; its failed runs are this one's too.
        ``built``: this comparison's prepare() built each of its losses already."""
        sub = Comparison(recipe, self.output / folder, progress=self.progress)
        sub.processes, sub.part_of, sub.built_by_parent = self.processes, self.output, built
        sub.launcher = self.launcher  # its units run where this comparison's do
        sub.prepare()
        sub._run_locked(report=False)
        self.failed.extend(f"{folder}: {line}" for line in sub.failed)
        return sub

    def _teach(self) -> None:
        """Every seed's teacher (trained in ``DIR/teacher``, or the checkpoint): its logits on the training rows go
        with the seed's training batches (``HFDataModule.set_teacher``) and their fingerprint into each record."""
        given = self.recipe.teacher or {}
        self.position = "the teachers"
        if "checkpoint" in given:
            model = load_checkpoint_teacher(
                given["checkpoint"], self.datamodule(self.recipe.seeds[0]).spec, given.get("sha256")
            )
            models = {seed: model for seed in self.recipe.seeds}
        else:
            self._run_part(teacher_recipe(self.recipe), TEACHER_DIR)
            models = {seed: self.book.trained_teacher(seed) for seed in self.recipe.seeds}
        for seed, model in models.items():
            self.book.teach(seed, model)

    def _tune(self) -> None:
        """Train every loss's trials (``DIR/tuning``, a comparison of its own), then set :attr:`losses` to the
        points their trials select on validation (written to ``DIR/tuning.json``)."""
        tune = self.recipe.tune
        if tune is None:
            return
        self.position = "tuning"
        self._run_part(tuning_recipe(self.recipe), TUNING_DIR, built=True)  # prepare() built every trial
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
        ``wait``) and :class:`~lossbench.compare.execution.interrupt.Interrupted` on SIGTERM/SIGINT (the folder
        resumes).
        """
        with quiet():
            self.prepare()
            self.processes = self._launch()  # every process exists before anything is decided or written
        opened = self.launcher is None and self.recipe.launcher["name"] == "ray"
        if opened:  # connected before anything is written: an unreachable cluster is refused here
            self.launcher = RayLauncher(self.recipe.launcher)
            self.launcher.open()
        # one writer per folder (rank 0 of a distributed run is the only one that writes)
        lock = (
            FolderLock(self.output, wait=self.wait, on_wait=self._waiting)
            if self.processes.is_global_zero
            else contextlib.nullcontext()
        )
        try:
            with results_folder(self.output), stop_on_signals(), lock:  # a signal waiting for the lock stops too
                try:
                    if self.launcher is not None:
                        self.launcher.check_shared(self.output)  # every worker reaches the folder, or nothing written
                    return self._run_locked()
                except OSError as exc:  # disk full, quota, read-only: stop (every later write would fail too)
                    failure = write_failure(exc, self.output)
                    if failure is None:
                        raise
                    raise failure from exc
        finally:
            if opened and self.launcher is not None:
                self.launcher.close()
                self.launcher = None

    @staticmethod
    def _say(line: str) -> None:
        """A line of the comparison's console (stderr, beside the progress display's)."""
        print(line, file=sys.stderr, flush=True)

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
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

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
            per_run = 1 if self.launcher is not None else self._steps_per_run()  # Ray: a unit's lines when it ends
            bar = tqdm(
                total=len(plan) * per_run,
                desc="lossbench compare",
                unit="run" if per_run == 1 else "step",
                disable=not show or not sys.stderr.isatty(),  # not a terminal: one line per finished run only
                file=sys.stderr,
                dynamic_ncols=True,
            )
            try:
                if self.launcher is not None:
                    self._run_ray(bar, show)
                else:
                    self._run_local(plan, bar, show, per_run)
            finally:
                bar.close()
        self.position = "the report"
        self.processes.barrier()
        from lossbench.compare.report.render import render_report

        if not self.processes.is_global_zero or not report:  # the report is rank 0's to write
            return self.output / REPORT_FILE
        return render_report(self.output, say=self._say if self.progress else None)

    def _steps_per_run(self) -> int:
        """Optimizer steps of one run: the progress display's unit (every run of a comparison has the same budget)."""
        t = self.recipe.trainer
        if t["max_steps"] is not None:
            return int(t["max_steps"])
        dm = self.datamodule(self.recipe.seeds[0])
        batches = math.ceil(int((self.data.get("train") or {}).get("rows") or 0) / int(dm.batch_size))
        return max(1, int(t["max_epochs"]) * math.ceil(batches / int(t["accumulate_grad_batches"])))

    def _run_local(self, plan: list[tuple[int, LossSpec]], bar: Any, show: bool, per_run: int = 1) -> None:
        """The plan in this process (and its DDP processes), one run or one seed's arrays after another; the
        display moves with every optimizer step (an array's step is a step of each of its members)."""
        where = ["start-up"]

        def moved(steps: int, epoch: int, latest: str) -> None:
            bar.update(steps)
            bar.set_postfix_str(", ".join(filter(None, [where[0], f"epoch {epoch + 1}", latest])), refresh=False)

        self.book.on_steps = moved if show and per_run > 1 else None
        try:
            self._run_plan(plan, bar, show, per_run, where)
        finally:
            self.book.on_steps = None

    def _run_plan(self, plan: list[tuple[int, LossSpec]], bar: Any, show: bool, per_run: int, where: list[str]) -> None:
        inits: dict[int, InitialState] = {}
        fused: dict[int, tuple[dict[str, str], dict[str, str]]] = {}  # seed -> (lines, fallbacks) of its array
        for i, (seed, loss) in enumerate(plan, 1):
            self.position = f"run {i}/{len(plan)} ({loss.label} seed {seed})"
            killpoint.kill_point(f"run:{i}")  # test hook (LOSSBENCH_TEST_KILL_AT); a no-op otherwise
            bar.set_postfix_str(f"run {i}/{len(plan)}: {loss.label} seed {seed}")
            dm = self.datamodule(seed)
            if seed not in inits:
                inits[seed] = self.initial_state(seed, dm.spec)
            where[0] = f"{loss.label} seed {seed}"
            if self.recipe.executor == FUSED and seed not in fused:
                last = i + len(self.losses) - 1
                self.position = f"the arrays of seed {seed} (runs {i}-{last}/{len(plan)})"
                where[0] = f"seed {seed}: {', '.join(loss.label for loss in self.losses)} as one array"
                fused[seed] = run_arrays(self.book, seed, self.losses, dm, inits[seed])
            lines, fallbacks = fused.get(seed, ({}, {}))
            line = lines.get(loss.label)
            if line is None:
                execution = {"executor": SEQUENTIAL}
                if loss.label in fallbacks:
                    execution["fallback"] = fallbacks[loss.label]
                line = self.run_one(loss, seed, dm, inits[seed], execution)
            if bar.n < i * per_run:  # a skipped, failed or early-stopped run: the display catches up
                bar.update(i * per_run - bar.n)
            if show:
                bar.write(f"[{i}/{len(plan)}] {line}")

    def _run_ray(self, bar: Any, show: bool) -> None:
        """The plan's units as Ray tasks, in parallel; each unit's lines are shown as it ends."""
        assert self.launcher is not None
        units, path = self.units(), self.recipe.data["path"]
        data = memory_dataset(path) if is_memory_name(path) else None  # workers register it under its name
        self.position = f"{len(units)} unit(s) on Ray"

        ended, planned = [0], len(self.plan())  # runs ended so far (a disabled bar, not a terminal, counts none)

        def done(unit: Unit, result: dict[str, Any] | None, error: str | None) -> None:
            if result is not None:
                lines = list(result["lines"].values())
                self.book.failed.extend(result["failed"])
            else:
                lines = self._fail_unit(unit, error or "unknown")
            for line in lines:
                ended[0] += 1
                bar.update(1)
                if show:
                    bar.write(f"[{ended[0]}/{planned}] {line}")

        self.launcher.run(units, data, done)

    def _fail_unit(self, unit: Unit, error: str) -> list[str]:
        """A unit whose Ray task failed for good: its runs that did not finish are recorded failed."""
        losses, lines = {loss.label: loss for loss in self.losses}, []
        for label in unit.losses:
            record, _ = read_record(run_dir(self.output, label, unit.seed) / RECORD_FILE)
            if record is not None and record.status == "finished":
                lines.append(f"{label} seed {unit.seed}: finished")
                continue
            loss = losses[label]
            if record is None:
                record = RunRecord(loss=label, head=loss.head, head_args=loss.args, seed=unit.seed)
                record.tuning, record.setup_hash = dict(loss.tuning), self.setup_hash
            record.fingerprints.setdefault("data_order", {})
            why = f"RayTaskFailed: the Ray task of seed {unit.seed}'s unit failed for good: {error}"
            lines.append(self.book.fail_record(record, why, record.skipped_steps, {}))
        return lines

    def _launch(self) -> Processes:
        try:
            return Processes.launch(self.recipe.trainer)
        except Exception as exc:  # bad devices/strategy: refused before anything is written
            raise RecipeError(f"compare: the `trainer` settings cannot start their processes: {exc}") from None

    def _write_meta(self) -> None:
        r = self.recipe
        created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        if comparison_path(self.output).exists():  # the first write's time is kept when the folder resumes
            created = self._read_meta().get("created", created)
        meta = ComparisonMeta(
            name=r.name,
            recipe=r.to_dict(),
            recipe_hash=r.recipe_hash,
            setup_hash=self.setup_hash,
            baseline=r.baseline,
            losses=[loss.label for loss in r.losses],
            seeds=list(r.seeds),
            target=dict(r.target),
            budget={
                "max_epochs": r.trainer["max_epochs"],
                "max_steps": r.trainer["max_steps"],
                "eval_every_n_steps": r.trainer["eval_every_n_steps"],
            },
            versions=library_versions(),
            created=created,
            recipe_setup_hash=r.setup_hash,
            data=self.data,
            select=r.select,
            optimizer=dict(r.optimizer),
            schedule=dict(r.schedule),
            tuned=r.tune is not None,
        )
        if r.runnable:  # `lossbench compare DIR/recipe.yaml`; a tuning comparison's trials are run by its parent's
            atomic_write_text(self.output / RECIPE_FILE, r.to_yaml())
        write_comparison(self.output, meta)

    def run_one(
        self, loss: LossSpec, seed: int, dm: Any, init: InitialState, execution: dict[str, Any] | None = None
    ) -> str:
        """Train one (loss, seed) run, or skip/resume it; return its summary line (:meth:`RunBook.run_one`)."""
        return self.book.run_one(loss, seed, dm, init, execution)

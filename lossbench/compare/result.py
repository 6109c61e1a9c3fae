"""A comparison from Python: ``lossbench.compare(recipe, output=..., **overrides)`` runs it and returns a
:class:`ComparisonResult`; ``ComparisonResult.load(DIR)`` is the same object for any finished results folder.

The result is read from the results folder alone, like the report: its table is ``results.csv``, its verdicts and
ranking are the statistics report.md is rendered from (:func:`lossbench.compare.analysis.stats.compare_losses` over
the same records, fairness check and test predictions), and :meth:`ComparisonResult.load_module` rebuilds a run's
module from the recipe in comparison.json and loads its kept weights, as ``lossbench report DIR --recompute`` does.

``lossbench compare`` runs the same three steps: :func:`resolve_recipe`, :func:`prepare_comparison` (everything
checked, nothing written) and :func:`finish_comparison` (train, report, result).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossbench._hints import did_you_mean
from lossbench.compare.analysis.stats import ComparisonStats
from lossbench.compare.recipe.checks import RecipeError
from lossbench.compare.recipe.schema import TOP_LEVEL, Recipe
from lossbench.compare.report.verdicts import LossVerdict, verdict_of
from lossbench.compare.store.layout import (
    RECORD_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    TEACHER_DIR,
    TUNING_DIR,
    run_dir,
)

if TYPE_CHECKING:
    import pandas as pd

    from lossbench.compare.execution.engine import Comparison
    from lossbench.module import LossbenchModule

SEPARATOR = "__"
"""``trainer__max_steps=20`` is the override ``trainer.max_steps: 20`` (a keyword argument cannot hold a dot)."""
PARTS = (TEACHER_DIR, TUNING_DIR)  # a folder's sub-comparisons, whose failed runs are the comparison's too


# -- running -------------------------------------------------------------------------------------------------------
def resolve_recipe(
    recipe: str | Path | dict[str, Any] | Recipe,
    *,
    overrides: dict[str, Any] | None = None,
    seeds: int | Sequence[int] | None = None,
    losses: Sequence[str] | None = None,
    executor: str | None = None,
    launcher: str | None = None,
    address: str | None = None,
    **dotted: Any,
) -> Recipe:
    """The recipe to run, overrides applied and checked (:func:`~lossbench.compare.load_recipe`). Nothing is run.

    Args:
        recipe: a YAML path, a bundled recipe name, a recipe dict, or a :class:`Recipe`.
        overrides: dotted keys -> values, as on the command line: ``{"trainer.max_steps": "20"}``; a string value is
            read as YAML (``"20"`` is 20, ``"[0, 1]"`` a list).
        seeds: a count (seeds ``0 .. n-1``, like ``--seeds``) or the list of seeds to run.
        losses: keep only these loss labels (the baseline is always kept), like ``--losses``.
        executor: ``"fused"`` or ``"sequential"``, like ``--executor``.
        launcher: ``"local"`` or ``"ray"``, like ``--launcher``; address: the Ray cluster's, like ``--address``.
        **dotted: overrides as keyword arguments, ``__`` for the dot: ``trainer__max_steps=20``. Their values are
            Python values, used as given (a string stays a string).

    Raises:
        RecipeError: naming the first override or value that the recipe does not take.
    """
    given = dict(overrides or {})
    for name, value in dotted.items():
        key = name.replace(SEPARATOR, ".")
        top = key.split(".")[0]
        if top not in TOP_LEVEL:
            shown = f"`{name}`" if name == key else f"`{name}` (`{key}`)"
            raise RecipeError(
                f"recipe: unknown override {shown}: `{top}` is not a recipe key (a keyword override names one, "
                f"`{SEPARATOR}` between sections: trainer{SEPARATOR}max_steps=20){did_you_mean(top, list(TOP_LEVEL))}"
            )
        if key in given:
            raise RecipeError(f"recipe: override `{key}` is given twice (`{name}=` and in `overrides`)")
        given[key] = _quoted(value) if isinstance(value, str) else value  # kept as given, not read as YAML
    if executor is not None:
        given["executor"] = executor  # like --executor, over a dotted `executor`
    for key, value in (("launcher.name", launcher), ("launcher.address", address)):
        if value is not None:  # like --launcher and --address, over dotted ones
            given[key] = _quoted(value) if isinstance(value, str) else value
    count = None
    if seeds is not None:
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            count = seeds
        elif isinstance(seeds, Sequence) and not isinstance(seeds, str):
            given["seeds"] = list(seeds)
        else:
            raise RecipeError(f"recipe: `seeds` must be a count or a list of seeds, got {seeds!r}")
    from lossbench.compare.recipe.bounded_yaml import safe_yaml
    from lossbench.compare.recipe.recipe import load_recipe

    source: str | Path | dict[str, Any]
    if isinstance(recipe, Recipe):
        if not given and count is None and not losses:
            return recipe
        source = safe_yaml(recipe.to_yaml(), "the recipe")  # its recipe file: load_recipe of it gives it back
    else:
        source = recipe
    return load_recipe(source, overrides=given, seeds=count, losses=list(losses) if losses else None)


def _quoted(text: str) -> str:
    """``text`` as a double-quoted YAML scalar, which reads back as ``text`` itself (what an override string is read
    as): printable ASCII as it is, every other character escaped by its code point."""
    return '"' + "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\U{ord(c):08x}" for c in text) + '"'


def prepare_comparison(
    recipe: Recipe, output: str | Path | None = None, *, progress: bool = True, wait: bool = False
) -> Comparison:
    """The comparison of ``recipe`` into ``output``, checked (recipe, output folder, data, every loss against the
    data, every model built): :meth:`Comparison.prepare`. Nothing is written.

    Args:
        output: the results folder (default ``runs/<recipe name>``); a folder of the same recipe setup resumes.
        progress: one progress display over the runs.
        wait: another process writes ``output``: wait for it (True) or refuse (``FolderBusyError``).
    """
    from lossbench.compare.execution.engine import Comparison
    from lossbench.compare.execution.runner import quiet
    from lossbench.compare.store.storage import folder_name_problem

    unnamed = folder_name_problem(recipe.name) if output is None else None  # `name: ../../x`: not in runs/
    if unnamed:
        raise RecipeError(
            f"recipe: `name` must be one folder name when --output is not given (the results go to "
            f"runs/<name>), got {recipe.name!r}: {unnamed}; rename it or pass --output DIR"
        )
    comparison = Comparison(recipe, output if output is not None else f"runs/{recipe.name}", progress, wait)
    with quiet():
        comparison.prepare()
    return comparison


def finish_comparison(comparison: Comparison) -> ComparisonResult:
    """Run a prepared comparison (:meth:`Comparison.run`: train what is not finished, render the report) and return
    its result. Under DDP every process returns one; the report is global rank 0's to write."""
    comparison.run()
    result = ComparisonResult(comparison.output)
    result._own = True  # the recipe is the caller's: its data arguments are used as given (see load_module)
    return result


def run_comparison(
    recipe: str | Path | dict[str, Any] | Recipe,
    output: str | Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    seeds: int | Sequence[int] | None = None,
    losses: Sequence[str] | None = None,
    executor: str | None = None,
    launcher: str | None = None,
    address: str | None = None,
    progress: bool = True,
    wait: bool = False,
    **dotted: Any,
) -> ComparisonResult:
    """Check, run and report a comparison; ``lossbench.compare(...)`` is this function.

    Everything is checked before anything is written (:func:`resolve_recipe`, :func:`prepare_comparison`), then
    every (loss, seed) run that is not finished in ``output`` is trained and the report rendered
    (:func:`finish_comparison`). Rerunning it resumes.

    Args:
        recipe: a YAML path, a bundled recipe name, a recipe dict, or a :class:`Recipe`.
        output: the results folder (default ``runs/<recipe name>``).
        overrides: dotted keys -> values as on the command line (``{"trainer.max_steps": "20"}``, strings read as
            YAML).
        seeds, losses, executor: ``--seeds`` (a count, or a list of seeds), ``--losses``, ``--executor``.
        launcher, address: ``--launcher`` (``"local"`` or ``"ray"``: units in parallel as Ray tasks) and
            ``--address`` (a Ray cluster's; none: a local Ray).
        progress: one progress display over the runs.
        wait: another process writes ``output``: wait for it, or refuse (``FolderBusyError``).
        **dotted: overrides as keyword arguments, ``__`` for the dot, Python values used as given:
            ``trainer__max_steps=20, optimizer__lr=1e-3``.

    Raises:
        RecipeError: a bad recipe, override, output folder or data (nothing written).
    """
    chosen = resolve_recipe(
        recipe,
        overrides=overrides,
        seeds=seeds,
        losses=losses,
        executor=executor,
        launcher=launcher,
        address=address,
        **dotted,
    )
    return finish_comparison(prepare_comparison(chosen, output, progress=progress, wait=wait))


# -- the result ----------------------------------------------------------------------------------------------------
class ComparisonResult:
    """A comparison's results, read from its folder alone (:meth:`load` opens any finished folder).

    Attributes:
        folder: the results folder.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._own = False  # a folder of anyone's: a data cache_dir outside it is not written to (load_module)
        self._datamodules: dict[int, Any] = {}
        self._cache: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def load(cls, folder: str | Path) -> ComparisonResult:
        """The result of the comparison in ``folder``.

        Raises:
            FileNotFoundError: ``folder`` holds no comparison.json.
            CorruptFileError: its comparison.json is unreadable.
        """
        result = cls(folder)
        result.comparison  # noqa: B018  # read now: a folder that is no comparison is refused here
        return result

    def __repr__(self) -> str:
        return f"ComparisonResult({str(self.folder)!r})"

    # -- what the folder says ------------------------------------------------------------------------------------
    @cached_property
    def comparison(self) -> dict[str, Any]:
        """comparison.json: the recipe, the losses, the seeds, the baseline, the data."""
        from lossbench.compare.store.meta import load_comparison

        return load_comparison(self.folder)

    @property
    def report_path(self) -> Path:
        """report.md (``lossbench report DIR`` renders it again from the records)."""
        return self.folder / REPORT_FILE

    @property
    def table(self) -> pd.DataFrame:
        """results.csv as a DataFrame: one row per planned (loss, seed), its status, test and validation metrics,
        fingerprints and times. A new DataFrame on every access."""
        import pandas as pd

        path = self.folder / RESULTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: render the report first (`lossbench report {self.folder}`)")
        return pd.read_csv(path)

    @cached_property
    def stats(self) -> ComparisonStats:
        """The statistics report.md is rendered from: the same records, fairness check and test predictions."""
        from lossbench.compare.analysis.fairness import check_fairness
        from lossbench.compare.analysis.stats import compare_losses
        from lossbench.compare.report.render import check_tuning_of, find_irregular, load_predictions
        from lossbench.compare.store.records import load_records

        comparison = self.comparison
        losses, seeds = list(comparison["losses"]), [int(s) for s in comparison["seeds"]]
        planned = {(loss, seed) for loss in losses for seed in seeds}
        runs = [(r, rows) for r, rows in load_records(self.folder) if (r.loss, r.seed) in planned]
        fairness = check_fairness(runs)
        check_tuning_of(self.folder, comparison, runs, fairness)  # its problems mark runs invalid, as in the report
        return compare_losses(
            runs,
            comparison["baseline"],
            target=comparison["target"],
            losses=losses,
            invalid=fairness.invalid,
            predictions=load_predictions(self.folder, runs, fairness),
            irregular=find_irregular(self.folder, runs),
        )

    @property
    def baseline(self) -> str:
        return str(self.comparison["baseline"])

    @property
    def ranking(self) -> list[str]:
        """The losses with a result, best first by mean headline metric (report.md's Ranking)."""
        return [entry.loss for entry in self.stats.ranking]

    @property
    def verdicts(self) -> dict[str, LossVerdict]:
        """Each loss but the baseline -> its headline verdict against the baseline (report.md's Outcome)."""
        return {loss: verdict_of(loss, self.stats) for loss in self.stats.verdicts}

    @property
    def failed(self) -> list[str]:
        """The runs whose record says they failed, ``"loss seed s (error)"`` (``"tuning: ..."``/``"teacher: ..."``
        in the tuning and teacher comparisons), in the order ``lossbench compare`` runs them. Rerunning retries
        them."""
        return _failed(self.folder)

    # -- a run's model -------------------------------------------------------------------------------------------
    def load_module(self, loss: str, seed: int) -> LossbenchModule:
        """The trained :class:`~lossbench.LossbenchModule` of ``(loss, seed)``, in eval mode: built from the recipe
        in comparison.json and the run's record, as the engine built it, with the weights the run reported
        (``weights.pt``: final or best, as the recipe's ``select`` says). Its test predictions are the run's.

        The data is read again (its spec sizes the model) and must be the data the run was trained on. A head or
        backbone named by a class path whose module is not imported yet is refused: a folder never makes lossbench
        import a module on its word; import it yourself first.

        Raises:
            ValueError: an unknown loss or seed, a run that did not finish, other data, weights that do not fit.
        """
        from lossbench.compare.execution.recompute import load_run_model
        from lossbench.compare.store.records import RunRecord
        from lossbench.data.identity import fingerprints_of
        from lossbench.module import imports_a_module

        losses, seeds = list(self.comparison["losses"]), [int(s) for s in self.comparison["seeds"]]
        if loss not in losses:
            raise ValueError(f"load_module: `loss` must be one of {losses}, got {loss!r}{did_you_mean(loss, losses)}")
        if seed not in seeds:
            raise ValueError(f"load_module: `seed` must be one of {seeds}, got {seed!r}")
        folder = run_dir(self.folder, loss, seed)
        if not (folder / RECORD_FILE).is_file():
            raise ValueError(f"load_module: {loss} seed {seed} has no {RECORD_FILE} in {folder}: it never ran")
        record = RunRecord.load(folder / RECORD_FILE)
        if record.status != "finished":
            raise ValueError(
                f"load_module: {loss} seed {seed} is {record.status!r}, not finished: it kept no reported weights"
            )
        recipe = self.comparison["recipe"]
        backbone = recipe.get("backbone")
        named = [str(record.head)]
        if isinstance(backbone, dict) and "class_path" in backbone:
            named.append(str(backbone["class_path"]))
        for path in named:
            if imports_a_module(path):
                raise ValueError(
                    f"load_module: the run names {path!r}, a class path whose module is not imported; a results "
                    f"folder never makes lossbench import a module: if you trust it, import "
                    f"{path.rpartition('.')[0]} yourself first"
                )
        dm = self._datamodule(seed)
        now, before = fingerprints_of(dm.describe_splits()), record.fingerprints.get("data") or {}
        changed = [split for split in now if before.get(split) not in (None, now[split])]
        if changed:
            raise ValueError(
                f"load_module: the contents of split {', '.join(map(repr, changed))} differ from those {loss} seed "
                f"{seed} was trained on: its model would not be the one the comparison scored"
            )
        model = load_run_model(record, folder, recipe, dm)
        model.eval()
        return model

    def _datamodule(self, seed: int) -> Any:
        """The seed's data module from the recipe; a ``cache_dir`` outside the folder is a temporary folder unless
        the recipe is the caller's own (the result of :func:`run_comparison`), as in ``--recompute``."""
        from lossbench.compare.store.storage import is_under
        from lossbench.data import HFDataModule

        if seed not in self._datamodules:
            args = dict(self.comparison["recipe"]["data"])
            given = args.get("cache_dir")
            if given is not None and not self._own and not is_under(str(given), self.folder):
                if self._cache is None:
                    self._cache = tempfile.TemporaryDirectory(prefix="lossbench-result-")
                args["cache_dir"] = str(Path(self._cache.name) / "data")
            self._datamodules[seed] = HFDataModule(**args, seed=seed)
        return self._datamodules[seed]

    # -- for notebooks -------------------------------------------------------------------------------------------
    def _repr_markdown_(self) -> str:
        """The answer, as report.md's first section says it: a sentence, then per loss its headline metric, its
        difference from the baseline and the verdict; failed runs and the report's path after it."""
        from lossbench.compare.report.verdicts import verdict_section

        lines = [f"**{self.comparison.get('name', self.folder.name)}**", "", *verdict_section(self.stats)]
        failed = self.failed
        if failed:
            lines += [f"Failed runs: {'; '.join(failed)}.", ""]
        lines.append(f"Report: [{self.report_path}]({self.report_path.as_posix()})")
        return "\n".join(lines) + "\n"


def _failed(folder: Path, prefix: str = "") -> list[str]:
    """The failed runs of ``folder`` and its parts, in the order the engine runs them (parts first, then seeds)."""
    from lossbench.compare.analysis.tuning import diverged
    from lossbench.compare.store.meta import comparison_path, load_comparison
    from lossbench.compare.store.records import RunRecord

    out: list[str] = []
    for part in PARTS:
        if comparison_path(folder / part).is_file():
            out += _failed(folder / part, f"{prefix}{part}: ")
    comparison = load_comparison(folder)
    for seed in comparison["seeds"]:
        for loss in comparison["losses"]:
            path = run_dir(folder, loss, int(seed)) / RECORD_FILE
            if path.is_file():
                record = RunRecord.load(path)
                if record.status == "failed" and not diverged(record):  # a diverged trial is a tuning result
                    first = (record.error or "").splitlines()[0][:200] if record.error else ""
                    out.append(f"{prefix}{loss} seed {seed} ({first})")
    return out

"""A unit of work from a plain description: one sequential run, or one seed's losses trained as fused arrays.

A :class:`Unit` is JSON: the resolved recipe (``Recipe.to_dict()``), the seed, the member loss labels, the results
folder and the executor. :func:`run_unit` executes it in whatever process it is in; the worker rebuilds everything
else itself (the data module, the seed's initial state and batch order, the teacher's logits, a tuned loss's chosen
point from ``DIR/tuning.json``), so its records carry the same fingerprints as when the comparison runs it in its
own process. That is the shape a launcher spreads over processes and machines::

    python -m lossbench.compare.execution.unit UNIT.json

The folder must hold the comparison (its ``comparison.json``, written by ``Comparison`` before any run), and the
process that launches units holds the folder's lock; a unit takes none.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossbench.compare.execution.fused import run_arrays
from lossbench.compare.execution.interrupt import Interrupted, stop_on_signals
from lossbench.compare.execution.runner import FUSED, SEQUENTIAL, InitialState, RunBook, quiet
from lossbench.compare.recipe.schema import EXECUTORS, LossSpec, Recipe
from lossbench.compare.recipe.trials import with_point
from lossbench.compare.store.layout import SUMMARY_FILE
from lossbench.compare.store.meta import load_comparison
from lossbench.compare.store.records import read_json
from lossbench.compare.store.storage import WriteFailed, results_folder
from lossbench.distributed import Processes


@dataclass
class Unit:
    """One unit of work, as plain data (:meth:`to_dict` is JSON)."""

    recipe: dict[str, Any]  # the resolved recipe, as Recipe.to_dict() gives it (comparison.json's "recipe")
    seed: int  # the seed: its initial weights and batch order
    losses: list[str]  # the member loss labels, in plan order (one for a sequential run)
    output: str  # the results folder (it holds the comparison's comparison.json)
    executor: str  # "fused": the losses in lockstep as model arrays; "sequential": one run after another

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> Unit:
        """A unit from :meth:`to_dict`'s form; a ValueError naming the field that is missing or ill-typed."""
        if not isinstance(values, dict):
            raise ValueError(f"a unit must be a JSON object, got {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing, unknown = [n for n in names if n not in values], sorted(set(values) - set(names))
        if missing or unknown:
            raise ValueError(f"a unit has the keys {names}; missing {missing}, unknown {unknown}")
        checks = {
            "recipe": isinstance(values["recipe"], dict),
            "seed": isinstance(values["seed"], int) and not isinstance(values["seed"], bool),
            "losses": isinstance(values["losses"], list)
            and bool(values["losses"])
            and all(isinstance(label, str) for label in values["losses"]),
            "output": isinstance(values["output"], str) and bool(values["output"]),
            "executor": values["executor"] in EXECUTORS,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = {name: values[name] for name in bad if name != "recipe"}
            raise ValueError(f"a unit's {bad} are ill-typed ({shown}; executor one of {list(EXECUTORS)})")
        return cls(**{name: copy.deepcopy(values[name]) for name in names})


def unit_losses(recipe: Recipe, labels: list[str], output: Path) -> list[LossSpec]:
    """The losses ``labels`` of ``recipe`` as its comparison trains them on the final seeds: a tuned comparison's
    at their chosen trial points (``DIR/tuning.json``, written when the tuning ended)."""
    known = [loss.label for loss in recipe.losses]
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise ValueError(f"a unit's losses {unknown} are not the recipe's (it has {known})")
    losses = [recipe.loss(label) for label in labels]
    if recipe.tune is None:
        return losses
    chosen = read_json(output / SUMMARY_FILE)["losses"]
    return [with_point(loss, chosen[loss.label]["point"], "final", chosen[loss.label]["chosen"]) for loss in losses]


def execute(
    book: RunBook, seed: int, losses: list[LossSpec], executor: str, dm: Any, init: InitialState
) -> dict[str, str]:
    """Train ``losses`` of ``seed`` in this process: in fused arrays (a loss that cannot fuse then runs alone) or
    one run after another. Returns label -> summary line, in the order of ``losses``."""
    lines, fallbacks = run_arrays(book, seed, losses, dm, init) if executor == FUSED else ({}, {})
    for loss in losses:
        if loss.label not in lines:
            execution = {"executor": SEQUENTIAL}
            if loss.label in fallbacks:
                execution["fallback"] = fallbacks[loss.label]
            lines[loss.label] = book.run_one(loss, seed, dm, init, execution)
    return {loss.label: lines[loss.label] for loss in losses}


def unit_book(unit: Unit, processes: Processes | None = None) -> tuple[RunBook, list[LossSpec]]:
    """The unit's RunBook (recipe, folder, the data's description from its comparison.json) and its losses."""
    recipe = Recipe.from_dict(unit.recipe)
    output = Path(unit.output)
    meta = load_comparison(output)  # FileNotFoundError: not a comparison folder
    if meta.get("recipe_setup_hash", meta["setup_hash"]) != recipe.setup_hash:
        raise ValueError(
            f"the unit's recipe (setup {recipe.setup_hash[:12]}) is not that of the comparison in {str(output)!r} "
            f"(setup {str(meta.get('recipe_setup_hash', meta['setup_hash']))[:12]}): refusing to mix runs"
        )
    book = RunBook(recipe, output, processes if processes is not None else Processes(), meta.get("data") or {})
    return book, unit_losses(recipe, unit.losses, output)


def run_unit(
    unit: Unit, processes: Processes | None = None, launcher: str = "local"
) -> tuple[dict[str, str], list[str]]:
    """Execute ``unit`` in this process: its data module, initial state and teacher rebuilt here, its runs
    trained, skipped (finished) or resumed as the comparison would. Returns label -> summary line, and the
    runs that failed (``"loss seed s (error)"``; their records say why). ``launcher``: what started this
    process, for the records."""
    book, losses = unit_book(unit, processes)
    book.launcher = launcher
    with quiet(), results_folder(book.output):
        dm = book.datamodule(unit.seed)
        book.teach(unit.seed)  # a recipe with a teacher: its logits ride along the seed's batches
        init = book.initial_state(unit.seed, dm.spec)
        lines = execute(book, unit.seed, losses, unit.executor, dm, init)
    return lines, book.failed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lossbench.compare.execution.unit UNIT.json``: one line per run; exit 1 if a run failed, 2 for
    a unit that cannot run, 128 + signal when stopped by SIGTERM/SIGINT (the folder resumes)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m lossbench.compare.execution.unit UNIT.json", file=sys.stderr)
        return 2
    try:
        unit = Unit.from_dict(json.loads(Path(args[0]).read_text(encoding="utf-8")))
        with stop_on_signals():
            lines, failed = run_unit(unit, Processes.launch(unit.recipe["trainer"]))
    except Interrupted as exc:
        print(f"lossbench unit: stopped by {exc.name}; the folder resumes", file=sys.stderr)
        return exc.exit_code
    except (ValueError, OSError, WriteFailed) as exc:  # a bad description, no comparison folder, another recipe
        print(f"lossbench unit: {exc}", file=sys.stderr)
        return 2
    for line in lines.values():
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

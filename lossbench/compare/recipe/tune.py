"""Equal-budget tuning per loss: the same quasirandom trial points for every loss, selected on validation.

A recipe's ``tune:`` section::

    tune:
      trials: 8                     # per loss; every loss gets the same trial points
      seeds: [1000]                 # tuning seeds, disjoint from the final seeds
      select: {metric: val/accuracy, mode: max}   # default: the recipe's target
      space:
        optimizer.lr: {low: 1.0e-4, high: 3.0e-2, log: true}
        optimizer.weight_decay: {low: 0.0, high: 0.1}
        losses.focal.args.gamma: {low: 0.5, high: 4.0}   # a head argument, tuned for that loss only

The points are the first ``trials`` points of a scrambled Sobol sequence (``scipy.stats.qmc``,
seeded by ``tune.seed``, default 0) over every dimension of the space: each dimension has its
own column (in the order of the paths' names, not of the YAML), so the shared dimensions
(``optimizer.*``) of trial ``j`` are the same numbers for every loss, and a loss's own dimensions
(``losses.<label>.args.<name>``) vary for that loss
only. Every (loss, trial) is a run of the tuning comparison in ``DIR/tuning`` (same initial
weights, batches and budget as every other run of its seed; on the fused executor one array
per tuning seed). Each loss's trial with the best mean selection metric over the tuning seeds
(ties: the lowest trial) is its chosen configuration, trained on the recipe's ``seeds`` and
scored on the test split. Everything here is recomputed from the records by the report and
the fairness check (:func:`check_tuning`); ``DIR/tuning.json`` is a summary of it.

Only the optimizer and the heads' arguments are tunable: the backbone, the data and the
trainer are what every run of a seed shares (initial weights, batch order, budget).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from lossbench._hints import did_you_mean
from lossbench.compare.recipe.checks import MAX_SEED, MAX_SEEDS, RecipeError, check_keys, is_seed_list, shown_seeds
from lossbench.config import finite_number

TUNABLE_OPTIMIZER = ("lr", "weight_decay", "momentum")
"""``optimizer.<key>`` paths a trial may set (a number each; the optimizer's name is shared)."""
OPTIMIZER_ONLY = {"momentum": "sgd"}
"""Tunable optimizer values that only one optimizer reads (tuned under another, they change nothing)."""
MAX_TRIALS = 1024
POINT_TOLERANCE = 1e-9  # relative: a recorded trial point against the recipe's regenerated one


class TuneError(RecipeError):
    """A ``tune:`` section that cannot run; the message names the key, the expected and the given value."""


@dataclass(frozen=True)
class Dimension:
    """One tuned value: a dotted recipe path and its range (``log``: sampled uniformly in log space)."""

    path: str
    low: float
    high: float
    log: bool = False

    @property
    def loss(self) -> str | None:
        """The loss label a ``losses.<label>.args.<name>`` dimension belongs to (None: shared by every loss)."""
        parts = self.path.split(".")
        return parts[1] if parts[0] == "losses" else None

    @property
    def key(self) -> str:
        """The optimizer key or head argument this dimension sets."""
        return self.path.rsplit(".", 1)[-1]

    def value(self, u: float) -> float:
        """The value at ``u`` in [0, 1)."""
        if self.log:
            return float(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return float(self.low + u * (self.high - self.low))

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class TuneSpec:
    """A validated ``tune:`` section."""

    trials: int
    seeds: tuple[int, ...]
    metric: str
    mode: str
    space: tuple[Dimension, ...]  # sorted by path: the Sobol columns, whatever the YAML's order
    seed: int = 0  # scrambling seed of the Sobol sequence

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "seeds": list(self.seeds),
            "select": {"metric": self.metric, "mode": self.mode},
            "space": {d.path: d.to_dict() for d in self.space},
            "seed": self.seed,
        }

    @property
    def shared(self) -> tuple[Dimension, ...]:
        return tuple(d for d in self.space if d.loss is None)

    def points(self) -> list[dict[str, float]]:
        """Every trial's values of every dimension (path -> value), from the seeded scrambled Sobol sequence."""
        from scipy.stats import qmc

        with warnings.catch_warnings():  # "balance properties ... power of 2": any n is a valid prefix
            warnings.simplefilter("ignore")
            unit = qmc.Sobol(d=len(self.space), scramble=True, seed=self.seed).random(self.trials)
        return [{d.path: d.value(float(u[i])) for i, d in enumerate(self.space)} for u in unit]

    def loss_points(self, label: str) -> list[dict[str, float]]:
        """The trial points of loss ``label``: the shared dimensions and its own."""
        own = [d.path for d in self.space if d.loss in (None, label)]
        return [{path: point[path] for path in own} for point in self.points()]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TuneSpec:
        """Rebuild a spec from :meth:`to_dict` (comparison.json); no checks."""
        space = tuple(
            Dimension(path, float(d["low"]), float(d["high"]), bool(d.get("log", False)))
            for path, d in sorted(raw["space"].items())
        )
        select = raw.get("select") or {}
        return cls(
            int(raw["trials"]),
            tuple(int(s) for s in raw["seeds"]),
            str(select.get("metric")),
            str(select.get("mode")),
            space,
            int(raw.get("seed", 0)),
        )


# -- validation ------------------------------------------------------------------------------------
def parse_tune(
    raw: Any, labels: list[str], target: dict[str, Any], seeds: list[int], optimizer: dict[str, Any] | None = None
) -> TuneSpec:
    """Check a recipe's ``tune:`` section against its loss labels, target, final seeds and optimizer."""
    if not isinstance(raw, dict):
        raise TuneError(f"recipe: `tune` must be a mapping with `trials` and `space`, got {raw!r}")
    check_keys("tune.", raw, ["trials", "seeds", "select", "space", "seed"])
    trials = raw.get("trials")
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise TuneError(
            f"recipe: `tune.trials` must be a whole number of trials per loss in [1, {MAX_TRIALS}], got {trials!r}"
        )
    tune_seeds = _tune_seeds(raw.get("seeds", [1000]), seeds)
    metric, mode = _select(raw.get("select") or {}, target)
    scramble = raw.get("seed", 0)
    if isinstance(scramble, bool) or not isinstance(scramble, int) or not 0 <= scramble <= MAX_SEED:
        raise TuneError(
            f"recipe: `tune.seed` (the Sobol sequence's scrambling seed) must be an int in "
            f"[0, {MAX_SEED}], got {scramble!r}"
        )
    space = raw.get("space")
    if not isinstance(space, dict) or not space:
        raise TuneError(f"recipe: `tune.space` must map dotted paths to ranges {{low, high, log}}, got {space!r}")
    dims = [_dimension(str(path), rng, labels, (optimizer or {}).get("name")) for path, rng in space.items()]
    return TuneSpec(trials, tuple(tune_seeds), metric, mode, tuple(sorted(dims, key=lambda d: d.path)), scramble)


def _tune_seeds(tune_seeds: Any, seeds: list[int]) -> list[int]:
    if not is_seed_list(tune_seeds) or len(set(tune_seeds)) != len(tune_seeds):
        raise TuneError(
            f"recipe: `tune.seeds` must be a list of 1 to {MAX_SEEDS} distinct ints in [0, {MAX_SEED}], "
            f"got {shown_seeds(tune_seeds)}"
        )
    overlap = sorted(set(tune_seeds) & set(seeds))
    if overlap:
        raise TuneError(
            f"recipe: `tune.seeds` must be disjoint from the final `seeds` (a configuration chosen on a "
            f"seed would be scored on the same seed), both hold {overlap}"
        )
    return tune_seeds


def _select(select: Any, target: dict[str, Any]) -> tuple[str, str]:
    if not isinstance(select, dict):
        raise TuneError(f"recipe: `tune.select` must be a mapping {{metric, mode}}, got {select!r}")
    check_keys("tune.select.", select, ["metric", "mode"])
    metric, mode = select.get("metric", target.get("metric")), select.get("mode", target.get("mode"))
    if not isinstance(metric, str) or not metric.startswith("val/"):
        raise TuneError(
            f"recipe: `tune.select.metric` must name a validation metric like 'val/accuracy' (trials are "
            f"selected on validation, never on test), got {metric!r}"
        )
    if mode not in ("max", "min"):
        raise TuneError(f"recipe: `tune.select.mode` must be 'max' or 'min', got {mode!r}")
    return metric, mode


def _dimension(path: str, rng: Any, labels: list[str], optimizer: str | None) -> Dimension:
    where = f"tune.space.{path}"
    _check_path(path, labels, optimizer)
    if not isinstance(rng, dict):
        raise TuneError(f"recipe: `{where}` must be a mapping {{low, high, log}}, got {rng!r}")
    check_keys(f"{where}.", rng, ["low", "high", "log"])
    low, high, log = rng.get("low"), rng.get("high"), rng.get("log", False)
    if not finite_number(low):
        raise TuneError(f"recipe: `{where}.low` must be a finite number, got {low!r}")
    if not finite_number(high):
        raise TuneError(f"recipe: `{where}.high` must be a finite number, got {high!r}")
    if not low < high:
        raise TuneError(f"recipe: `{where}` needs low < high, got low={low!r}, high={high!r}")
    if not isinstance(log, bool):
        raise TuneError(f"recipe: `{where}.log` must be true or false, got {log!r}")
    if log and low <= 0:
        raise TuneError(f"recipe: `{where}` is log-scaled, so `low` must be > 0, got {low!r}")
    return Dimension(path, float(low), float(high), log)


def _check_path(path: str, labels: list[str], optimizer: str | None) -> None:
    parts = path.split(".")
    allowed = [f"optimizer.{k}" for k in TUNABLE_OPTIMIZER] + ["losses.<label>.args.<name>"]
    if parts[0] == "optimizer" and len(parts) == 2:
        reader = OPTIMIZER_ONLY.get(parts[1])
        if reader is not None and optimizer != reader:
            raise TuneError(
                f"recipe: `tune.space.{path}` changes nothing under `optimizer.name` {optimizer!r} "
                f"(only {reader!r} reads {parts[1]}); set `optimizer.name: {reader}` or remove it"
            )
        if parts[1] in TUNABLE_OPTIMIZER:
            return
        raise TuneError(
            f"recipe: `tune.space.{path}` is not a tunable optimizer value"
            f"{did_you_mean(path, allowed[:-1])} (tunable: {', '.join(allowed)})"
        )
    if parts[0] == "losses" and len(parts) == 4 and parts[2] == "args" and parts[3]:
        if parts[1] in labels:
            return
        raise TuneError(
            f"recipe: `tune.space.{path}` names loss {parts[1]!r}, which is not one of the losses "
            f"{labels}{did_you_mean(parts[1], labels)}"
        )
    raise TuneError(
        f"recipe: `tune.space.{path}` cannot be tuned{did_you_mean(path, allowed)}: tunable are "
        f"{', '.join(allowed)}; the "
        "backbone, data and trainer are shared by every run of a seed (same initial weights, batches and budget)"
    )

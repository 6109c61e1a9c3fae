"""A tuned comparison's trials as recipes: each (loss, trial) a run of the tuning comparison at its point, and the
check that every tuned head argument exists on its loss's head."""

from __future__ import annotations

import dataclasses

from lossbench.compare.recipe.checks import import_head_class
from lossbench.compare.recipe.schema import LossSpec, Recipe
from lossbench.compare.recipe.tune import TuneError, TuneSpec


def check_tuned_heads(tune: TuneSpec, losses: list[LossSpec]) -> None:
    """Every tuned head argument of a loss in ``losses`` takes a real number (a trial's value is sampled from a
    range): an integer or true/false argument (``ignore_index``) is refused, naming it."""
    specs = {spec.label: spec for spec in losses}
    for dim in tune.space:
        spec = specs.get(dim.loss) if dim.loss is not None else None
        if spec is None:
            continue
        cls = _head_class(spec, list(specs).index(spec.label))
        kind = _whole_kind(cls, dim.key)
        if kind is not None:
            raise TuneError(
                f"recipe: `tune.space.{dim.path}` is {kind} argument of {cls.__name__} (`{dim.key}`), "
                "but a trial's value is a real number sampled from [low, high]; tune real-valued "
                f"arguments only and set `{dim.key}` in the loss's `args`"
            )


def _head_class(spec: LossSpec, i: int) -> type:
    """A checked loss's head class: a registry name's, or its (already imported) ``class_path``'s."""
    from lossbench.heads.registry import get_head_class

    return import_head_class(spec.head, i) if "." in spec.head else get_head_class(spec.head)


def _whole_kind(cls: type, name: str) -> str | None:
    """'an integer' or 'a true/false' when ``cls``'s argument ``name`` is declared (or defaults to) one, else None."""
    import inspect

    param = inspect.signature(cls).parameters.get(name)
    if param is None:  # not a named argument: the trial-point build check names it
        return None
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        text = type(param.default).__name__
    else:  # a type's name, or the text of an annotation (postponed, or a union such as `int | None`)
        text = ann if isinstance(ann, str) else getattr(ann, "__name__", None) or str(ann)
    names = {part.strip() for part in text.split("|")} - {"None"}
    if names == {"bool"}:
        return "a true/false"
    return "an integer" if names and names <= {"int", "bool"} else None


# -- the runs ----------------------------------------------------------------------------------------
def trial_label(label: str, trial: int, trials: int) -> str:
    """The run folder name of ``label``'s trial ``trial``: ``ce.t03``."""
    return f"{label}.t{trial:0{len(str(trials - 1))}d}"


def with_point(loss: LossSpec, point: dict[str, float], role: str, trial: int, label: str | None = None) -> LossSpec:
    """``loss`` at a trial point: its head arguments set, the optimizer values as overrides, the point recorded."""
    args = dict(loss.args)
    args.update({p.rsplit(".", 1)[-1]: v for p, v in point.items() if p.startswith("losses.")})
    tuning = {"role": role, "loss": loss.label, "trial": trial, "point": dict(point)}
    return dataclasses.replace(loss, label=label or loss.label, args=args, tuning=tuning)


def tuning_recipe(recipe: Recipe) -> Recipe:
    """The tuning comparison: every (loss, trial) of ``recipe`` a run, on the tuning seeds, selected by tune.select."""
    tune = recipe.tune
    assert tune is not None
    losses = [
        with_point(loss, point, "trial", j, trial_label(loss.label, j, tune.trials))
        for loss in recipe.losses
        for j, point in enumerate(tune.loss_points(loss.label))
    ]
    return dataclasses.replace(
        recipe,
        name=f"{recipe.name}-tuning",
        losses=losses,
        baseline=losses[0].label,
        seeds=list(tune.seeds),
        tune=None,
        target={**recipe.target, "metric": tune.metric, "mode": tune.mode},
    )

"""The report's tuning section and sensitivity plot, recomputed from the tuning comparison's records."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from lossbench.compare.analysis.tuning import LossTuning
from lossbench.compare.recipe.tune import Dimension, TuneSpec
from lossbench.compare.report.format import _num, _plain
from lossbench.compare.report.plots import _color, _figure, _save


def sensitivity_axis(tune: TuneSpec) -> Dimension:
    """The dimension the sensitivity plot puts on its x-axis: ``optimizer.lr`` when tuned, else the first shared
    one (else the first)."""
    by_path = {d.path: d for d in tune.space}
    return by_path.get("optimizer.lr") or (tune.shared or tune.space)[0]


def plot_sensitivity(tune: TuneSpec, tuning: dict[str, LossTuning], path: str | Path) -> Path:
    """Selection metric against the x-axis dimension (:func:`sensitivity_axis`), one line per loss; the chosen
    trial of each loss is starred. A trial without a finite score on every tuning seed is left out."""
    dim = sensitivity_axis(tune)
    fig = _figure((7, 4.5))
    ax = fig.add_subplot()
    drawn = False
    for i, (loss, t) in enumerate(tuning.items()):
        pts = sorted((p[dim.path], s) for p, s in zip(t.points, t.scores) if s is not None and dim.path in p)
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", ms=4, lw=1.3, color=_color(i), label=loss)
        chosen = t.scores[t.chosen]
        if chosen is not None and dim.path in t.point:
            ax.plot([t.point[dim.path]], [chosen], marker="*", ms=13, color=_color(i), lw=0)
        drawn = True
    if dim.log:
        ax.set_xscale("log")
    ax.set_xlabel(dim.path + (" (log scale)" if dim.log else ""))
    ax.set_ylabel(f"{tune.metric} (mean over {len(tune.seeds)} tuning seed(s))")
    ax.set_title(f"tuning: {tune.metric} per trial against {dim.path} (star: chosen trial)", fontsize=10)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished trials", ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def tuning_section(tune: TuneSpec, tuning: dict[str, LossTuning], seeds: list[int], plot: Path | None) -> list[str]:
    """Markdown: the protocol, the space, and per loss the chosen values, the best and the median trial."""
    space = "; ".join(
        f"`{d.path}` in [{_plain(d.low)}, {_plain(d.high)}]" + (" (log)" if d.log else "") for d in tune.space
    )
    lines = [
        "## Tuning",
        "",
        f"Every loss got the same budget: {tune.trials} trials, each the full training budget, at the first "
        f"{tune.trials} points of a scrambled Sobol sequence (seed {tune.seed}) over {space}; the shared values of "
        f"trial j are the same numbers for every loss. Trials ran on tuning seed(s) "
        f"{', '.join(str(s) for s in tune.seeds)}, disjoint from the final seeds ({', '.join(str(s) for s in seeds)}), "
        f"and were selected by mean {tune.metric} ({tune.mode}) on the validation split; the chosen configuration of "
        "each loss was then trained on the final seeds and scored once on the test split. Recomputed from "
        f"`tuning/runs/*/seed_*/record.json`.",
        "",
        f"| loss | chosen trial | chosen values | chosen {tune.metric} | median trial | worst trial "
        "| finished trials |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = min if tune.mode == "max" else max
    for loss, t in tuning.items():
        scores = [s for s in t.scores if s is not None]
        values = ", ".join(f"{path} = {_plain(_round(v))}" for path, v in sorted(t.point.items()))
        chosen = _num(t.scores[t.chosen]) if t.scores[t.chosen] is not None else "—"
        lines.append(
            f"| {loss} | {t.chosen} | {values} | {chosen} | {_num(statistics.median(scores)) if scores else '—'} | "
            f"{_num(worst(scores)) if scores else '—'} | {len(scores)}/{tune.trials} |"
        )
    notes = [f"- {loss}: {t.reason}" for loss, t in tuning.items() if t.reason]
    notes += [
        f"- {loss}: trial{'s' if len(t.diverged) > 1 else ''} {', '.join(map(str, t.diverged))} diverged (a "
        "non-finite training loss or gradient under `nan_policy: raise`) on a tuning seed: a result, scored "
        "worst, never preferred to a trial that finished"
        for loss, t in tuning.items()
        if t.diverged
    ]
    notes += [
        f"- {note} ({_plain(_round(value))}), and its score is better than the nearest trial's inward: "
        f"the best value may lie outside the range; widen `tune.space.{path}`"
        for note, path, value in _edges(tune, tuning)
    ]
    lines += [""] + (notes + [""] if notes else [])
    if plot is not None:
        dim = sensitivity_axis(tune)
        lines += [
            f"How picky each loss is about `{dim.path}`: a flat line tolerates a wide range, a peaked one "
            "needs its value found.",
            "",
            f"![tuning sensitivity]({plot.as_posix()})",
            "",
        ]
    return lines


def _round(value: float) -> float:
    """Four significant digits, for the table (the records keep every digit)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.4g}")


def _edges(tune: TuneSpec, tuning: dict[str, LossTuning]) -> list[tuple[str, str, float]]:
    """``("square's best lr is the largest tried", path, value)`` for every chosen trial at the edge of the
    range it was tried in, with the score still rising there (:meth:`LossTuning.edges`)."""
    return [
        (f"{loss}'s best {dim.key} is the {side} tried", dim.path, t.point[dim.path])
        for loss, t in tuning.items()
        for dim, side in t.edges(tune)
    ]


def tuning_conditions(tune: TuneSpec, tuning: dict[str, LossTuning] | None = None) -> dict[str, Any]:
    """The tuning conditions the verdicts hold under (:func:`outcome.conditions_sentence`); ``edges``: the losses
    whose chosen value is at the edge of its range."""
    return {
        "trials": tune.trials,
        "paths": [d.path for d in tune.space],
        "seeds": list(tune.seeds),
        "metric": tune.metric,
        "edges": [note for note, _, _ in _edges(tune, tuning or {})],
    }

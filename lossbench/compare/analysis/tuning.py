"""Tuning's choices from the records: each loss's trial selected on validation, and the check that every loss got the
same trials and budget (the report and recompute call it; the engine uses the same selection for the final runs)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from lossbench.compare.recipe.tune import POINT_TOLERANCE, Dimension, TuneSpec
from lossbench.compare.store.records import RunRecord
from lossbench.config import finite_number


def diverged(record: RunRecord) -> bool:
    """A tuning trial stopped by a non-finite training loss or gradient (``nan_policy: raise``): a result, the
    worst score, not a failure of the comparison (a search space may well reach learning rates that diverge);
    done, like a finished run, so a rerun does not train it again."""
    return (
        (record.tuning or {}).get("role") == "trial"
        and record.status == "failed"
        and str(record.error or "").startswith("FloatingPointError")
    )


def trial_score(record: RunRecord, metric: str, select: str) -> float | None:
    """A finished trial run's selection value: its best validation value (``select: best``) or its final one."""
    if record.status != "finished":
        return None
    value = (record.best if select == "best" else record.final).get(metric)
    return float(value) if value is not None and finite_number(value) else None


@dataclass
class LossTuning:
    """One loss's trials: their points, scores (mean over tuning seeds; None: a trial without a finite score on
    every seed) and the chosen trial."""

    loss: str
    points: list[dict[str, float]]
    scores: list[float | None]
    chosen: int
    reason: str = ""  # why the chosen trial is not the best one (none had a finite score)
    diverged: list[int] = field(default_factory=list)  # trials that diverged on a tuning seed (scored worst)

    @property
    def point(self) -> dict[str, float]:
        return self.points[self.chosen]

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "scores": self.scores,
            "chosen": self.chosen,
            "point": self.point,
            "reason": self.reason,
            "diverged": self.diverged,
        }

    def edges(self, tune: TuneSpec) -> list[tuple[Dimension, str]]:
        """The dimensions whose smallest or largest value tried is the chosen trial's while its score is better
        than that of the nearest trial inward (the curve still rising at the edge): ``(dimension, "smallest" |
        "largest")``. A trial without a score (diverged, unfinished) counts as worse."""
        best = self.scores[self.chosen]
        if best is None:
            return []
        sign = 1.0 if tune.mode == "max" else -1.0
        out = []
        for dim in tune.space:
            values = [p.get(dim.path) for p in self.points]
            x = values[self.chosen]
            others = [v for v in values if v is not None and v != x]
            if x is None or not others or min(others) < x < max(others):
                continue
            inward = [(j, v) for j, v in enumerate(values) if v is not None and v in others]
            nearest = min(inward, key=lambda jv: abs(jv[1] - x))[0]
            score = self.scores[nearest]
            if score is None or sign * (best - score) > 0:  # still rising there
                out.append((dim, "smallest" if x < min(others) else "largest"))
        return out


def select_trials(tune: TuneSpec, labels: list[str], records: list[RunRecord], select: str) -> dict[str, LossTuning]:
    """Each loss's trial with the best mean score over the tuning seeds, from the tuning comparison's records."""
    scores: dict[tuple[str, int], list[float | None]] = {}
    points: dict[tuple[str, int], dict[str, float]] = {}
    diverging: dict[str, set[int]] = {}  # loss -> its trials that diverged on a tuning seed
    for r in records:
        info = r.tuning or {}
        if info.get("role") != "trial" or r.seed not in tune.seeds:
            continue
        key = (str(info.get("loss")), int(info.get("trial", -1)))
        scores.setdefault(key, []).append(trial_score(r, tune.metric, select))
        points.setdefault(key, dict(info.get("point") or {}))
        if diverged(r):
            diverging.setdefault(key[0], set()).add(key[1])
    out = {}
    sign = 1.0 if tune.mode == "max" else -1.0
    for label in labels:
        expected = tune.loss_points(label)
        means: list[float | None] = []
        for j in range(tune.trials):
            values = scores.get((label, j), [])
            ok = len(values) == len(tune.seeds) and all(v is not None for v in values)
            means.append(statistics.fmean(values) if ok else None)  # type: ignore[arg-type]
        finite = [j for j, m in enumerate(means) if m is not None]
        if finite:
            chosen, reason = max(finite, key=lambda j: (sign * means[j], -j)), ""  # type: ignore[operator]
        else:
            chosen, reason = 0, "no trial finished with a finite score on every tuning seed: trial 0 is used"
        recorded = [points.get((label, j), expected[j]) for j in range(tune.trials)]
        out[label] = LossTuning(label, recorded, means, chosen, reason, sorted(diverging.get(label, set())))
    return out


# -- the fairness check ------------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    return (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and math.isclose(float(a), float(b), rel_tol=POINT_TOLERANCE, abs_tol=1e-15)
    )


def check_tuning(
    comparison: dict[str, Any],
    records: list[RunRecord],
    final: list[RunRecord],
    chosen: dict[str, LossTuning] | None = None,
) -> tuple[list[str], set[tuple[str, int]]]:
    """Problems with a tuned comparison's budget and choices, and the final (loss, seed) runs they make invalid.

    Checks, from the records alone: every loss has the recipe's number of trials on every tuning seed, with the
    same number of steps; trial ``j``'s shared values are the same for every loss and equal the recipe's
    regenerated point (a tampered record fails); each final run was trained at the point its loss's trials
    select on validation (``chosen``: :func:`select_trials` of these records, computed here when not given).
    """
    tune = TuneSpec.from_dict((comparison.get("recipe") or {})["tune"])
    select = comparison.get("select") or "final"
    labels = list(comparison["losses"])
    problems: list[str] = []
    bad_losses: set[str] = set()
    expected = tune.points()
    trials = [r for r in records if (r.tuning or {}).get("role") == "trial"]
    by_loss: dict[str, list[RunRecord]] = {}
    for r in trials:
        by_loss.setdefault(str(r.tuning.get("loss")), []).append(r)
    for label in labels:
        runs = by_loss.get(label, [])
        for seed in tune.seeds:
            done = sorted(int(r.tuning.get("trial", -1)) for r in runs if r.seed == seed)
            if done != list(range(tune.trials)):
                problems.append(
                    f"Tuning: loss '{label}' has trials {done} on tuning seed {seed}, the budget is "
                    f"{tune.trials} trials (0 to {tune.trials - 1}) for every loss."
                )
                bad_losses.add(label)
        for r in runs:
            j, point = int(r.tuning.get("trial", -1)), r.tuning.get("point") or {}
            want = {p: v for p, v in expected[j].items() if _owns(p, label)} if 0 <= j < tune.trials else {}
            wrong = sorted(p for p in set(want) | set(point) if not _same(point.get(p), want.get(p)))
            if wrong:
                shown = ", ".join(f"{p}={point.get(p)!r} (the recipe's point: {want.get(p)!r})" for p in wrong)
                problems.append(
                    f"Tuning: trial {j} of loss '{label}' (seed {r.seed}) was recorded at {shown}: its "
                    "point is not the recipe's, so the losses did not get the same trials."
                )
                bad_losses.add(label)
    for j in range(tune.trials):  # the shared dimensions of trial j, across losses
        for dim in tune.shared:
            values = {
                label: (r.tuning.get("point") or {}).get(dim.path)
                for label in labels
                for r in by_loss.get(label, [])
                if int(r.tuning.get("trial", -1)) == j
            }
            if len({repr(v) for v in values.values()}) > 1:
                shown = ", ".join(f"{k}={v!r}" for k, v in sorted(values.items()))
                problems.append(f"Tuning: trial {j} has different {dim.path} across losses ({shown}).")
                bad_losses.update(values)
    steps = {r.steps for r in trials if r.status == "finished"}
    if len(steps) > 1:
        problems.append(
            f"Tuning: finished trials trained different numbers of steps ({sorted(steps)}); every trial "
            "must get the same budget."
        )
        bad_losses.update(labels)
    chosen = select_trials(tune, labels, records, select) if chosen is None else chosen
    invalid = {(r.loss, r.seed) for r in final if r.loss in bad_losses}
    for r in final:
        point = (r.tuning or {}).get("point") or {}
        selected = chosen[r.loss].point if r.loss in chosen else None
        if selected is None or set(point) != set(selected) or not all(_same(point[p], selected[p]) for p in selected):
            problems.append(
                f"Tuning: the final run of '{r.loss}' seed {r.seed} was trained at {point}, its trials "
                f"select {selected} on validation."
            )
            invalid.add((r.loss, r.seed))
    return problems, invalid


def _owns(path: str, label: str) -> bool:
    parts = path.split(".")
    return parts[0] != "losses" or parts[1] == label

"""Statistics across seeds: per-loss summaries, paired comparisons against the baseline, ranking.

Only runs that finished (and that the fairness check did not mark invalid) enter the
statistics. Intervals are two-sided 95% Student-t intervals over seeds; paired tests are
two-sided paired t-tests (``scipy.stats.ttest_rel``) over the seeds both losses finished.
A run that never reached the target is counted as "not reached", never as 0 or infinity.
``val/loss`` (each loss's own value, on its own scale) is never compared across losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from scipy import stats as sps

from lossbench.compare.fairness import as_records
from lossbench.compare.records import RunRecord

CONFIDENCE = 0.95
ALPHA = 0.05
ECE_METRIC = "val/ece"
OWN_SCALE = ("val/loss",)  # each loss's own value: on a different scale per loss, never compared across losses
MODES = ("max", "min")


@dataclass(frozen=True)
class Estimate:
    """Mean over ``n`` values with a two-sided 95% t-interval (``low``/``high`` are None when n < 2)."""

    n: int
    mean: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def half_width(self) -> float | None:
        """Half the interval's width (``mean ± half_width``), None without an interval."""
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


@dataclass(frozen=True)
class Reached:
    """Steps (or seconds) to the target over the finished seeds of one loss.

    ``mean``/``median``/``interval`` are over the ``reached`` seeds only; ``n`` counts the finished seeds.
    """

    reached: int
    n: int
    values: tuple[float, ...] = ()
    mean: float | None = None
    median: float | None = None
    interval: Estimate = Estimate(0)

    @property
    def label(self) -> str:
        """``"k/n reached"``."""
        return f"{self.reached}/{self.n} reached"


@dataclass(frozen=True)
class Paired:
    """Paired difference ``loss - other`` of one quantity over the seeds where both have it."""

    quantity: str  # "final <metric>", "steps to target" or "auc"
    loss: str
    other: str
    seeds: tuple[int, ...]
    diff: Estimate  # mean difference with its 95% t-interval
    p: float | None  # two-sided paired t-test; None when n < 2 or every difference is equal
    loss_values: tuple[float, ...] = ()
    other_values: tuple[float, ...] = ()

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def significant(self) -> bool:
        """True when p < 0.05 and the interval excludes 0 (False when either is missing)."""
        if self.p is None or self.diff.low is None or self.diff.high is None:
            return False
        return self.p < ALPHA and not (self.diff.low <= 0.0 <= self.diff.high)


@dataclass(frozen=True)
class LossSummary:
    """Everything the report says about one loss, across its finished seeds."""

    loss: str
    seeds: tuple[int, ...]  # finished seeds that entered the statistics
    final: dict[str, Estimate]  # "val/<metric>" -> estimate of the value at the last evaluation
    best: dict[str, Estimate]  # "val/<metric>" -> estimate of the best value
    steps_to_target: Reached
    seconds_to_target: Reached
    auc: Estimate
    ece: float | None  # mean final val/ece where present
    seconds_per_step: float | None

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class RankEntry:
    """One place in the ranking by mean final target metric."""

    rank: int
    loss: str
    mean: float
    next_loss: str | None = None  # the loss ranked just below, None for the last one
    vs_next: Paired | None = None  # paired comparison of the final target, this loss - next

    @property
    def separated(self) -> bool:
        """True when the difference to the next loss is significant."""
        return self.vs_next is not None and self.vs_next.significant


@dataclass
class ComparisonStats:
    """All statistics of one comparison."""

    metric: str
    mode: str
    threshold: float | None
    baseline: str
    losses: list[str]
    metrics: list[str]  # target metric first, then the other "val/" metrics, sorted
    summaries: dict[str, LossSummary] = field(default_factory=dict)
    vs_baseline: dict[str, dict[str, Paired | None]] = field(default_factory=dict)  # loss -> {"final", "steps", "auc"}
    ranking: list[RankEntry] = field(default_factory=list)
    unranked: list[str] = field(default_factory=list)  # losses without a finished seed


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean and two-sided Student-t interval of ``values`` (None entries and NaN are dropped).

    Example:
        >>> e = mean_ci([0.9, 0.92, 0.94])
        >>> round(e.mean, 4), round(e.half_width, 4)
        (0.92, 0.0497)
        >>> mean_ci([0.5]).low is None
        True
    """
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(data)
    if n == 0:
        return Estimate(0)
    mean = float(data.mean())
    if n < 2:
        return Estimate(n, mean)
    sem = float(data.std(ddof=1)) / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + confidence / 2, df=n - 1)) * sem
    return Estimate(n, mean, mean - half, mean + half)


def paired(
    quantity: str, loss: str, other: str, seeds: Iterable[int], a: Iterable[float], b: Iterable[float]
) -> Paired:
    """Paired comparison ``a - b`` over ``seeds``: mean difference, 95% t-interval, paired t-test p-value."""
    seeds, a, b = tuple(seeds), tuple(float(x) for x in a), tuple(float(x) for x in b)
    if not len(seeds) == len(a) == len(b):
        raise ValueError(f"paired: seeds, a and b must have equal lengths, got {len(seeds)}, {len(a)}, {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    diff = mean_ci(diffs)
    p = None
    if len(diffs) >= 2 and len(set(diffs)) > 1:
        p = float(sps.ttest_rel(a, b).pvalue)
    return Paired(quantity, loss, other, seeds, diff, p, a, b)


def summarize(loss: str, records: list[RunRecord], metric: str, metrics: list[str]) -> LossSummary:
    """Summary of one loss over its (finished, valid) records, one per seed."""
    records = sorted(records, key=lambda r: r.seed)
    final = {m: mean_ci(r.final.get(m) for r in records) for m in metrics}
    best = {m: mean_ci(r.best.get(m) for r in records) for m in metrics}
    ece = mean_ci(r.final.get(ECE_METRIC) for r in records)
    speed = mean_ci(r.seconds_per_step for r in records)
    return LossSummary(
        loss=loss,
        seeds=tuple(r.seed for r in records),
        final=final,
        best=best,
        steps_to_target=_reached([r.steps_to_target for r in records]),
        seconds_to_target=_reached([r.seconds_to_target for r in records]),
        auc=mean_ci(r.auc for r in records),
        ece=ece.mean,
        seconds_per_step=speed.mean,
    )


def compare_losses(
    records: Iterable[Any],
    baseline: str,
    *,
    target: dict[str, Any] | None = None,
    losses: list[str] | None = None,
    invalid: Iterable[tuple[str, int]] = (),
) -> ComparisonStats:
    """Per-loss summaries, paired comparisons against ``baseline`` and the ranking.

    Args:
        records: RunRecords (or ``(RunRecord, rows)`` pairs); only ``status == "finished"`` runs count.
        baseline: the loss label every other loss is compared with.
        target: ``{"metric", "mode", "threshold"}``; default: the first record's ``target``.
        losses: loss labels in report order; default: the losses of the records, sorted.
        invalid: (loss, seed) runs the fairness check marked; they enter no statistic.
    """
    all_records = as_records(records)
    target = dict(target if target is not None else next((r.target for r in all_records if r.target), {}))
    metric, mode = target.get("metric"), target.get("mode")
    if not metric:
        raise ValueError("target: expected a dict with a 'metric' key (e.g. 'val/accuracy'), got none")
    if mode not in MODES:
        raise ValueError(f"target['mode']: expected one of {MODES}, got {mode!r}")
    losses = list(losses) if losses is not None else sorted({r.loss for r in all_records})
    if baseline not in losses:
        raise ValueError(f"baseline: expected one of the losses {losses}, got {baseline!r}")
    excluded = set(invalid)
    used: dict[str, dict[int, RunRecord]] = {loss: {} for loss in losses}
    for r in all_records:
        if r.status == "finished" and r.loss in used and (r.loss, r.seed) not in excluded:
            used[r.loss][r.seed] = r
    others = sorted({m for rs in used.values() for r in rs.values() for m in (*r.final, *r.best)} - {metric})
    metrics = [metric] + [m for m in others if m.startswith("val/") and m not in OWN_SCALE]

    result = ComparisonStats(metric, mode, target.get("threshold"), baseline, losses, metrics)
    for loss in losses:
        result.summaries[loss] = summarize(loss, list(used[loss].values()), metric, metrics)
    for loss in losses:
        if loss != baseline:
            result.vs_baseline[loss] = {
                "final": _paired_final(used, loss, baseline, metric),
                "steps": _paired_steps(used, loss, baseline),
                "auc": _paired_attr(used, loss, baseline, "auc", "auc"),
            }
    result.ranking, result.unranked = _rank(result, used)
    return result


def median(values: Iterable[float]) -> float:
    """Median of ``values`` (as a float)."""
    return float(np.median(np.asarray(list(values), dtype=float)))


def _reached(values: list[float | None]) -> Reached:
    got = tuple(float(v) for v in values if v is not None)
    if not got:
        return Reached(0, len(values))
    return Reached(len(got), len(values), got, float(np.mean(got)), float(np.median(got)), mean_ci(got))


def _common(used: dict[str, dict[int, RunRecord]], a: str, b: str) -> list[int]:
    return sorted(set(used[a]) & set(used[b]))


def _paired_final(used: dict[str, dict[int, RunRecord]], loss: str, other: str, metric: str) -> Paired | None:
    both = _common(used, loss, other)
    seeds = [s for s in both if _has(used[loss][s].final, metric) and _has(used[other][s].final, metric)]
    if not seeds:
        return None
    a = [used[loss][s].final[metric] for s in seeds]
    b = [used[other][s].final[metric] for s in seeds]
    return paired(f"final {metric}", loss, other, seeds, a, b)


def _paired_attr(used: dict[str, dict[int, RunRecord]], loss: str, other: str, attr: str, name: str) -> Paired | None:
    seeds = [
        s
        for s in _common(used, loss, other)
        if getattr(used[loss][s], attr) is not None and getattr(used[other][s], attr) is not None
    ]
    if not seeds:
        return None
    a = [getattr(used[loss][s], attr) for s in seeds]
    b = [getattr(used[other][s], attr) for s in seeds]
    return paired(name, loss, other, seeds, a, b)


def _paired_steps(used: dict[str, dict[int, RunRecord]], loss: str, other: str) -> Paired | None:
    """Steps-to-target difference, only when both reached the target on at least 2 common seeds."""
    result = _paired_attr(used, loss, other, "steps_to_target", "steps to target")
    return result if result is not None and result.n >= 2 else None


def _rank(result: ComparisonStats, used: dict[str, dict[int, RunRecord]]) -> tuple[list[RankEntry], list[str]]:
    """Order losses by mean final target metric (ties keep report order); compare each with the next."""
    order = {loss: i for i, loss in enumerate(result.losses)}
    means = {loss: s.final[result.metric].mean for loss, s in result.summaries.items()}
    ranked = [loss for loss in result.losses if means[loss] is not None]
    sign = -1.0 if result.mode == "max" else 1.0
    ranked.sort(key=lambda loss: (sign * means[loss], order[loss]))
    entries = []
    for i, loss in enumerate(ranked):
        nxt = ranked[i + 1] if i + 1 < len(ranked) else None
        vs = _paired_final(used, loss, nxt, result.metric) if nxt is not None else None
        entries.append(RankEntry(i + 1, loss, float(means[loss]), nxt, vs))
    return entries, [loss for loss in result.losses if means[loss] is None]


def _has(values: dict[str, Any], key: str) -> bool:
    value = values.get(key)
    return value is not None and not (isinstance(value, float) and math.isnan(value))

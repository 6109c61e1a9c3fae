"""Statistics across seeds: per-loss summaries, paired comparisons against the baseline, ranking.

Only runs that finished (and that the fairness check did not mark invalid) enter the
statistics. Intervals are two-sided 95% Student-t intervals over seeds; paired tests are
two-sided paired t-tests (``scipy.stats.ttest_rel``) over the seeds both losses finished.
A run that never reached the target is counted as "not reached", never as 0 or infinity.
``val/loss`` (each loss's own value, on its own scale) is never compared across losses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from lossbench.compare.analysis.fairness import as_records
from lossbench.compare.store.layout import METRICS_FILE
from lossbench.compare.store.records import RunRecord, test_metric

CONFIDENCE = 0.95
ALPHA = 0.05
ECE_METRIC = "val/ece"
OWN_SCALE = ("val/loss",)  # each loss's own value: on a different scale per loss, never compared across losses
MODES = ("max", "min")
PRIMARY = "headline"  # the vs_baseline key of the primary family: the headline metric against the baseline
SECONDARY = ("steps", "auc")  # vs_baseline keys of the secondary family (steps to target, AUC), labelled so
ROUNDING = 4 * float(np.finfo(np.float32).eps)  # relative float32 rounding of metric values (see same_differences)


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
    p_adj: float | None = None  # Holm-adjusted within its family of tests (what decides significance)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def differences(self) -> list[float]:
        """loss - other on each paired seed, in seed order."""
        return [a - b for a, b in zip(self.loss_values, self.other_values)]

    @property
    def decisive_p(self) -> float | None:
        """The p-value that decides: the Holm-adjusted one once adjusted, else the raw one."""
        return self.p_adj if self.p_adj is not None else self.p

    @property
    def significant(self) -> bool:
        """True when the (adjusted) p < 0.05 and the interval excludes 0 (False when either is missing)."""
        p = self.decisive_p
        if p is None or self.diff.low is None or self.diff.high is None:
            return False
        return p < ALPHA and not (self.diff.low <= 0.0 <= self.diff.high)


@dataclass(frozen=True)
class Verdict:
    """The headline comparison of one loss with another: seed-level t-test and example-level test together.

    Significant only when both (Holm-adjusted) say so -- a difference must hold across seeds AND be
    larger than what resampling the test examples produces -- and when the larger of the two raw p-values,
    Holm-adjusted over the losses (``joint_p_adj``: the intersection-union test of the two), is below 0.05,
    which keeps the family's error rate at 0.05 whichever of a loss's two nulls are true.
    """

    seeds: Paired | None  # paired t-test over seeds of the headline test metric
    examples: Any = None  # lossbench.compare.analysis.significance.ExampleTest over pooled test examples (or None)
    examples_p_adj: float | None = None
    joint_p_adj: float | None = None  # Holm over the losses of max(seed p, example p) (seed p without examples)

    @property
    def significant(self) -> bool:
        if self.seeds is None or not self.seeds.significant:
            return False
        if self.examples is not None:
            if self.examples.p is None:
                return False
            if (self.examples_p_adj if self.examples_p_adj is not None else self.examples.p) >= ALPHA:
                return False
        # no test predictions kept (every metric has a test): the seed-level test decides
        return self.joint_p_adj is None or self.joint_p_adj < ALPHA

    @property
    def untested(self) -> bool:
        return self.seeds is None or self.seeds.p is None


@dataclass(frozen=True)
class LossSummary:
    """Everything the report says about one loss, across its finished seeds."""

    loss: str
    seeds: tuple[int, ...]  # finished seeds that entered the statistics
    final: dict[str, Estimate]  # "val/<metric>" -> estimate of the value at the last evaluation
    best: dict[str, Estimate]  # "val/<metric>" -> estimate of the best value (after step 0)
    test: dict[str, Estimate]  # "test/<metric>" -> estimate on the reported weights
    improving: tuple[int, int]  # (seeds whose validation curve was still improving at the end, seeds tested)
    steps_to_target: Reached
    seconds_to_target: Reached
    auc: Estimate
    ece: float | None  # mean final val/ece where present
    seconds_per_step: float | None
    irregular: tuple[int, ...] = ()  # seeds among ``seeds`` whose run was irregular (:data:`FLAGGING`)
    irregular_kinds: tuple[str, ...] = ()  # what was irregular about them (:data:`KIND_LABELS` values), sorted

    @property
    def n(self) -> int:
        return len(self.seeds)


KIND_LABELS = {
    "skipped": "skipped optimizer steps",
    "nonfinite": "non-finite validation loss",
    "nonfinite_metric": "non-finite validation metrics",
    "truncated": "a truncated metrics.csv",
}
"""What each kind of :class:`Irregularity` is called in the outcome's sentences."""
FLAGGING = ("skipped", "nonfinite", "nonfinite_metric")
"""Kinds that flag a loss in the per-loss table, the ranking and the outcome: they say the training itself went
wrong. A truncated or missing metrics.csv is listed in the report but flags nothing: the record's numbers (and so
every statistic) do not come from it, only the plotted curves do."""


@dataclass(frozen=True)
class Irregularity:
    """Something wrong with a finished run that does not stop it from being reported (see :func:`irregularities`)."""

    loss: str
    seed: int
    kind: str  # one of KIND_LABELS
    text: str  # one sentence for the report, e.g. "val/loss was not finite at 2 of 3 evaluations"

    @property
    def flags(self) -> bool:
        """True when the loss is flagged for it in the tables and the outcome (:data:`FLAGGING`)."""
        return self.kind in FLAGGING


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def irregularities(
    record: RunRecord, rows: list[dict[str, Any]] | None, metrics_file: str = METRICS_FILE, missing: bool = False
) -> list[Irregularity]:
    """What is irregular about a finished run: its metrics.csv missing or truncated (rows end before the record's
    ``steps``), optimizer steps skipped under ``nan_policy: skip``, or validation metrics that were not finite at
    some evaluations (in metrics.csv, or the record's ``final`` values).

    Args:
        record: the run's record; runs not ``finished`` have none (the report lists them as unfinished).
        rows: its metrics.csv rows; None when unknown (then only the record is checked).
        metrics_file: how the report names that file (e.g. ``"runs/ce/seed_0/metrics.csv"``).
        missing: the run folder has no metrics.csv.
    """
    if record.status != "finished":
        return []
    out: list[Irregularity] = []

    def add(kind: str, text: str) -> None:
        out.append(Irregularity(record.loss, record.seed, kind, text))

    if missing:
        add("truncated", f"{metrics_file} is missing although the run finished at step {record.steps}")
    elif rows is not None:
        steps = [row["step"] for row in rows]
        if not steps and record.steps:
            add(
                "truncated",
                f"{metrics_file} has no evaluation rows but the run finished at step {record.steps} (truncated?)",
            )
        elif steps and steps[-1] < record.steps:
            add(
                "truncated",
                f"{metrics_file} ends at step {steps[-1]} but the run finished at step {record.steps} (truncated?)",
            )
        back = next((i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]), None)
        if back is not None:
            add(
                "truncated",
                f"{metrics_file}'s steps do not increase (row {back + 1}: step {steps[back]} after {steps[back - 1]})",
            )
    if record.skipped_steps:
        add(
            "skipped",
            f"skipped {record.skipped_steps} of {record.steps} optimizer steps on a non-finite loss or "
            "gradient (nan_policy: skip)",
        )
    columns = sorted({k for row in rows or () for k in row if k.startswith("val/")})
    for metric in sorted(
        {*columns, *(m for m in record.final if m.startswith("val/"))}, key=lambda m: (m != "val/loss", m)
    ):
        kind = "nonfinite" if metric == "val/loss" else "nonfinite_metric"
        values = [row[metric] for row in rows or () if row.get(metric) is not None]
        bad = sum(1 for v in values if not _finite(v))
        if bad:
            add(kind, f"{metric} was not finite at {bad} of {len(values)} evaluations")
        elif not _finite(record.final.get(metric)):
            add(kind, f"{metric} was not finite at the last evaluation (record.json)")
    return out


@dataclass(frozen=True)
class RankEntry:
    """One place in the ranking by mean final target metric."""

    rank: int
    loss: str
    mean: float
    next_loss: str | None = None  # the loss ranked just below, None for the last one
    vs_next: Paired | None = None  # paired comparison of the headline metric, this loss - next
    verdict: Verdict | None = None  # with the example-level test (Holm over the ranking's tests)

    @property
    def separated(self) -> bool:
        """True when the difference to the next loss is significant."""
        if self.verdict is not None:
            return self.verdict.significant
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
    headline: str = ""  # "test/<target>": what verdicts are about ("val/<target>" final without test metrics)
    test_metrics: list[str] = field(default_factory=list)  # headline first, then the other "test/" metrics
    summaries: dict[str, LossSummary] = field(default_factory=dict)
    # loss -> {"headline", "steps", "auc"}: seed-level paired tests; "headline" is Holm-adjusted in the primary
    # family (over the losses), "steps" and "auc" in the secondary one (see compare_losses)
    vs_baseline: dict[str, dict[str, Paired | None]] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # loss -> headline verdict against the baseline
    ranking: list[RankEntry] = field(default_factory=list)
    unranked: list[str] = field(default_factory=list)  # losses without a finished seed
    # (loss, seed) -> what was irregular about that finished run (every finished run of the plan, used or not)
    irregular: dict[tuple[str, int], list[Irregularity]] = field(default_factory=dict)

    @property
    def headline_label(self) -> str:
        """How sentences and tables name the headline: ``"test/accuracy"`` or ``"final val/accuracy"``."""
        return self.headline if self.headline.startswith("test/") else f"final {self.metric}"

    @property
    def primary_size(self) -> int:
        """How many losses were tested against the baseline on the headline across seeds (the primary family's
        Holm size for the seed-level tests; :attr:`primary_examples_size` for the example-level ones)."""
        return sum(1 for tests in self.vs_baseline.values() if _tested(tests.get(PRIMARY)))

    @property
    def primary_examples_size(self) -> int:
        """How many losses were tested against the baseline on the headline over test examples (Holm over them)."""
        return sum(1 for v in self.verdicts.values() if v.examples is not None and v.examples.p is not None)

    @property
    def secondary_size(self) -> int:
        """How many secondary tests (steps to target, AUC) against the baseline were Holm-adjusted together."""
        return sum(1 for tests in self.vs_baseline.values() for key in SECONDARY if _tested(tests.get(key)))


def _tested(p: Paired | None) -> bool:
    return p is not None and p.p is not None


def mean_ci(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Estimate:
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
    if len(diffs) >= 2 and not same_differences(a, b):
        p = float(sps.ttest_rel(a, b).pvalue)
    return Paired(quantity, loss, other, seeds, diff, p, a, b)


def same_differences(a: Iterable[float], b: Iterable[float]) -> bool:
    """True when the paired differences ``a - b`` agree on every seed up to the values' float32 rounding.

    Metrics are computed in float32: 269/270 - 268/270 and 200/270 - 199/270 are the same count of test rows
    (1/270), yet their float32 values differ by about 6e-8. A t-test over such differences would read that
    rounding as a spread and return a tiny p-value, so differences whose spread is within
    :data:`ROUNDING` times the largest value are the same difference: there is no seed-level spread to test.
    A spread of one count (1/n for a rate in [0, 1]) is wider for splits of up to 2**21 (about 2 million) rows or
    token positions; on larger splits a spread of a few counts falls within the tolerance and is not tested.

    Example:
        >>> import numpy as np
        >>> a = [float(np.float32(k / 270)) for k in (180, 181)]
        >>> b = [float(np.float32((k + 1) / 270)) for k in (180, 181)]
        >>> len({x - y for x, y in zip(a, b)}), same_differences(a, b), same_differences([0.5, 0.6], [0.4, 0.4])
        (2, True, False)
    """
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if a.size == 0:
        return True
    scale = float(np.max(np.abs(np.concatenate([a, b]))))
    if not math.isfinite(scale):  # an inf or NaN value: no rounding bound (inf - 1 and 5 - 1 are not the same)
        return bool(np.all(a - b == (a - b)[0]))
    return bool(np.ptp(a - b) <= ROUNDING * scale)


def summarize(
    loss: str,
    records: list[RunRecord],
    metric: str,
    metrics: list[str],
    test_metrics: Sequence[str] = (),
    irregular: dict[tuple[str, int], list[Irregularity]] | None = None,
) -> LossSummary:
    """Summary of one loss over its (finished, valid) records, one per seed; ``irregular`` as
    :attr:`ComparisonStats.irregular` (default: from the records alone, :func:`irregularities`)."""
    records = sorted(records, key=lambda r: r.seed)
    if irregular is None:
        irregular = {(r.loss, r.seed): irregularities(r, None) for r in records}
    flagged = {r.seed: [i for i in irregular.get((r.loss, r.seed), ()) if i.flags] for r in records}
    final = {m: mean_ci(r.final.get(m) for r in records) for m in metrics}
    best = {m: mean_ci(r.best.get(m) for r in records) for m in metrics}
    test = {m: mean_ci(r.test.get(m) for r in records) for m in test_metrics}
    flags = [r.improving.get("flag") for r in records if r.improving]
    improving = (sum(1 for f in flags if f), sum(1 for f in flags if f is not None))
    ece = mean_ci(r.final.get(ECE_METRIC) for r in records)
    speed = mean_ci(r.seconds_per_step for r in records)
    return LossSummary(
        loss=loss,
        seeds=tuple(r.seed for r in records),
        final=final,
        best=best,
        test=test,
        improving=improving,
        steps_to_target=_reached([r.steps_to_target for r in records]),
        seconds_to_target=_reached([r.seconds_to_target for r in records]),
        auc=mean_ci(r.auc for r in records),
        ece=ece.mean,
        seconds_per_step=speed.mean,
        irregular=tuple(seed for seed, found in flagged.items() if found),
        irregular_kinds=tuple(sorted({KIND_LABELS[i.kind] for found in flagged.values() for i in found})),
    )


def compare_losses(
    records: Iterable[Any],
    baseline: str,
    *,
    target: dict[str, Any] | None = None,
    losses: list[str] | None = None,
    invalid: Iterable[tuple[str, int]] = (),
    predictions: dict[tuple[str, int], dict[str, Any]] | None = None,
    irregular: dict[tuple[str, int], list[Irregularity]] | None = None,
) -> ComparisonStats:
    """Per-loss summaries, paired comparisons against ``baseline`` and the ranking.

    The headline is the target metric on the test split (``test/<name>``, evaluated once per run
    on its reported weights); without test metrics in the records, the final validation value.
    The tests against the baseline form two families whose p-values are Holm-adjusted apart; the adjusted
    values decide what is called significant:

    * primary: the headline metric, one test per loss, Holm over the losses. A headline verdict needs both
      its seed-level t-test and its example-level test, each adjusted over the losses on its own, and the
      larger of its two raw p-values adjusted over the losses (the intersection-union test of the pair, which
      bounds the family's error rate whichever of each loss's two nulls hold);
    * secondary: steps to target and AUC, Holm over all of them together (labelled "secondary").

    The ranking's tests of neighbours (seed-level and example-level together) form a third family.

    Args:
        records: RunRecords (or ``(RunRecord, rows)`` pairs); only ``status == "finished"`` runs count.
        baseline: the loss label every other loss is compared with.
        target: ``{"metric", "mode", "threshold"}``; default: the first record's ``target``.
        losses: loss labels in report order; default: the losses of the records, sorted.
        invalid: (loss, seed) runs the fairness check marked; they enter no statistic.
        predictions: (loss, seed) -> test predictions (``compare.evaluate``) for the example-level tests.
        irregular: (loss, seed) -> what was irregular about that finished run (the report passes what it found
            in the run folders); default: :func:`irregularities` of each record with its metrics rows when
            ``records`` are pairs.

    Irregular runs (skipped steps, non-finite validation losses) stay in every statistic; their loss is flagged
    (:attr:`LossSummary.irregular`). Excluding them would be survivorship bias: the seeds on which a loss
    diverged are evidence against that loss, and dropping them would rank an unstable loss on its lucky seeds
    only (and compare it with the baseline on other seeds than the rest).
    """
    records = list(records)
    all_records = as_records(records)
    if irregular is None:
        irregular = {}
        for item in records:
            record, rows = item if isinstance(item, tuple) else (item, None)
            if record.status == "finished":
                irregular[(record.loss, record.seed)] = irregularities(record, rows)
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
    tested = test_metric(metric)
    test_names = sorted({m for rs in used.values() for r in rs.values() for m in r.test} - {tested})
    has_test = any(tested in r.test for rs in used.values() for r in rs.values())
    headline = tested if has_test else metric

    result = ComparisonStats(
        metric,
        mode,
        target.get("threshold"),
        baseline,
        losses,
        metrics,
        headline=headline,
        test_metrics=[tested, *test_names] if has_test else [],
        irregular={key: list(found) for key, found in sorted(irregular.items()) if found},
    )
    for loss in losses:
        result.summaries[loss] = summarize(
            loss, list(used[loss].values()), metric, metrics, result.test_metrics, irregular
        )
    predictions = predictions or {}
    examples = {}
    for loss in losses:
        if loss != baseline:
            result.vs_baseline[loss] = {
                PRIMARY: _paired_headline(used, loss, baseline, headline),
                "steps": _paired_steps(used, loss, baseline),
                "auc": _paired_attr(used, loss, baseline, "auc", "auc"),
            }
            examples[loss] = _example_test(used, predictions, loss, baseline, headline, mode) if has_test else None
    _adjust_baseline_family(result, examples)
    result.ranking, result.unranked = _rank(result, used, predictions if has_test else {})
    return result


def _adjust_baseline_family(result: ComparisonStats, examples: dict[str, Any]) -> None:
    """Holm within each family of tests against the baseline (see :func:`compare_losses`); fills ``p_adj`` and
    the headline verdicts."""
    from lossbench.compare.analysis.significance import holm

    losses = list(result.vs_baseline)
    seeds = holm([_raw(result.vs_baseline[loss][PRIMARY]) for loss in losses])
    per_example = holm([None if examples.get(loss) is None else examples[loss].p for loss in losses])
    joint = holm([_larger(_raw(result.vs_baseline[loss][PRIMARY]), examples.get(loss)) for loss in losses])
    slots = [(loss, key) for loss in losses for key in SECONDARY]
    secondary = dict(zip(slots, holm([_raw(result.vs_baseline[loss][key]) for loss, key in slots])))
    for i, loss in enumerate(losses):
        tests = result.vs_baseline[loss]
        adjusted = {PRIMARY: seeds[i], **{key: secondary[(loss, key)] for key in SECONDARY}}
        for key, p in list(tests.items()):
            if p is not None:
                tests[key] = replace(p, p_adj=adjusted[key])
        result.verdicts[loss] = Verdict(tests[PRIMARY], examples.get(loss), per_example[i], joint[i])


def _raw(p: Paired | None) -> float | None:
    return None if p is None else p.p


def _larger(seed_p: float | None, example: Any) -> float | None:
    """The intersection-union p-value of a headline verdict: the larger of its seed-level and example-level
    p-values (the seed-level one alone without an example test; None when either cannot be computed)."""
    if seed_p is None or example is None:
        return seed_p
    return None if example.p is None else max(seed_p, example.p)


def _example_test(used, predictions, loss: str, other: str, headline: str, mode: str):
    """Example-level test of the headline metric pooled over the common seeds with saved predictions."""
    from lossbench.compare.analysis.significance import example_level_test

    seeds = [s for s in _common(used, loss, other) if (loss, s) in predictions and (other, s) in predictions]
    if not seeds:
        return None
    name = headline.split("/", 1)[-1]
    return example_level_test(
        name, [predictions[(loss, s)] for s in seeds], [predictions[(other, s)] for s in seeds], mode=mode
    )


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


def _headline_values(record: RunRecord, headline: str) -> dict[str, float]:
    return record.test if headline.startswith("test/") else record.final


def _paired_headline(used: dict[str, dict[int, RunRecord]], loss: str, other: str, headline: str) -> Paired | None:
    both = _common(used, loss, other)
    values = {key: {s: _headline_values(used[key][s], headline) for s in both} for key in (loss, other)}
    seeds = [s for s in both if _has(values[loss][s], headline) and _has(values[other][s], headline)]
    if not seeds:
        return None
    a = [values[loss][s][headline] for s in seeds]
    b = [values[other][s][headline] for s in seeds]
    name = headline if headline.startswith("test/") else f"final {headline}"
    return paired(name, loss, other, seeds, a, b)


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


def _rank(
    result: ComparisonStats, used: dict[str, dict[int, RunRecord]], predictions: dict[tuple[str, int], dict[str, Any]]
) -> tuple[list[RankEntry], list[str]]:
    """Order losses by mean headline metric (ties keep report order); compare each with the next (Holm)."""
    from lossbench.compare.analysis.significance import holm

    order = {loss: i for i, loss in enumerate(result.losses)}
    pick = (
        (lambda s: s.test[result.headline])
        if result.headline.startswith("test/")
        else (lambda s: s.final[result.metric])
    )
    means = {loss: pick(s).mean for loss, s in result.summaries.items()}
    ranked = [loss for loss in result.losses if means[loss] is not None]
    sign = -1.0 if result.mode == "max" else 1.0
    ranked.sort(key=lambda loss: (sign * means[loss], order[loss]))
    pairs = []
    for i, loss in enumerate(ranked):
        nxt = ranked[i + 1] if i + 1 < len(ranked) else None
        vs = _paired_headline(used, loss, nxt, result.headline) if nxt is not None else None
        ex = _example_test(used, predictions, loss, nxt, result.headline, result.mode) if nxt is not None else None
        pairs.append((loss, nxt, vs, ex))
    raw = [p for _, _, vs, ex in pairs for p in ((vs.p if vs else None), (ex.p if ex else None))]
    adjusted = holm(raw)
    entries = []
    for i, (loss, nxt, vs, ex) in enumerate(pairs):
        if vs is not None:
            vs = replace(vs, p_adj=adjusted[2 * i])
        verdict = Verdict(vs, ex, adjusted[2 * i + 1]) if nxt is not None else None
        entries.append(RankEntry(i + 1, loss, float(means[loss]), nxt, vs, verdict))
    return entries, [loss for loss in result.losses if means[loss] is None]


def _has(values: dict[str, Any], key: str) -> bool:
    value = values.get(key)
    return value is not None and not (isinstance(value, float) and math.isnan(value))

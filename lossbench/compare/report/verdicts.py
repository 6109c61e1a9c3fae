"""Each loss's headline verdict against the baseline (better / worse / no difference / inconclusive), decided
from the statistics the report is rendered from: report.md's first section and ``ComparisonResult.verdicts``."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from lossbench.compare.analysis.stats import ComparisonStats, Estimate, Paired, Verdict
from lossbench.compare.report.format import _untested

OUTCOMES = ("better", "worse", "no difference", "inconclusive")
"""What a loss's headline verdict against the baseline can be (:attr:`LossVerdict.outcome`)."""


@dataclass(frozen=True)
class LossVerdict:
    """One loss's headline verdict against the baseline, as report.md's Outcome states it.

    ``outcome``: ``better`` / ``worse`` (significant: across seeds and test examples, Holm-adjusted over the
    losses), ``no difference`` (tested, within noise: not significant, which is not proof of equality), or
    ``inconclusive`` (untested, e.g. fewer than 2 paired seeds; or a difference on the pooled test examples that
    does not hold across seeds).
    """

    loss: str
    baseline: str
    outcome: str  # one of OUTCOMES
    metric: str  # the headline: "test/accuracy" (or "final val/accuracy" without test metrics)
    effect: float | None  # mean over the paired seeds of loss - baseline on the headline
    ci: tuple[float | None, float | None]  # its two-sided 95% t-interval over seeds
    p_adj: float | None  # the largest Holm-adjusted p-value the verdict needs below 0.05 (seeds, examples, both)
    seeds: int  # paired seeds
    reason: str  # why, in a few words
    seeds_p_adj: float | None = None  # the seed-level paired t-test, Holm over the losses
    examples_p_adj: float | None = None  # the test-example-level test, Holm over the losses
    verdict: Verdict | None = field(default=None, compare=False, repr=False)  # everything the analysis found


def verdict_of(loss: str, stats: ComparisonStats) -> LossVerdict:
    """``loss``'s verdict against the baseline, from the statistics the report is rendered from (the rules of
    report.md's Outcome sentences, :mod:`lossbench.compare.report.outcome`)."""
    verdict = stats.verdicts[loss]
    p = verdict.seeds
    needed = [verdict.joint_p_adj, verdict.examples_p_adj if verdict.examples is not None else None]
    adjusted = [x for x in (p.decisive_p if p is not None else None, *needed) if x is not None]
    examples_only = (
        verdict.examples is not None
        and verdict.examples_p_adj is not None
        and verdict.examples_p_adj < 0.05
        and (p is None or not p.significant)
    )
    if p is None or p.p is None:
        outcome, reason = "inconclusive", "not tested: " + ("no common finished seed" if p is None else _untested(p))
    elif not verdict.significant and examples_only:
        outcome = "inconclusive"
        same, n = same_sign_seeds(p)
        reason = (
            f"consistent on {same} of {n} seeds, not yet significant at the seed level: run more seeds"
            if same == n
            else f"differs on the pooled test examples, in the same direction on {same} of {n} seeds: more seeds "
            "would tell"
        )
    elif not verdict.significant:
        outcome, reason = "no difference", "within noise: not significant after Holm correction"
    else:
        assert p.diff.mean is not None  # a tested pair has a mean
        outcome = "better" if (p.diff.mean > 0) == (stats.mode == "max") else "worse"
        reason = "significant across seeds and test examples after Holm correction"
    return LossVerdict(
        loss=loss,
        baseline=stats.baseline,
        outcome=outcome,
        metric=stats.headline_label,
        effect=None if p is None else p.diff.mean,
        ci=(None, None) if p is None else (p.diff.low, p.diff.high),
        p_adj=max(adjusted) if adjusted and p is not None and p.p is not None else None,
        seeds=0 if p is None else p.n,
        reason=reason,
        seeds_p_adj=None if p is None else p.p_adj,
        examples_p_adj=verdict.examples_p_adj,
        verdict=verdict,
    )


def same_sign_seeds(p: Paired) -> tuple[int, int]:
    """On how many of the paired seeds the difference has the sign of its mean, and of how many seeds."""
    diffs = p.differences
    mean = sum(diffs) / len(diffs) if diffs else 0.0
    return sum(1 for d in diffs if d * mean > 0), len(diffs)


UNIT_INTERVAL = ("accuracy", "f1", "auroc", "ece", "brier", "agreement")  # metric names (parts) within [0, 1]
NON_NEGATIVE = ("nll", "mse", "mae", "kl", "perplexity", "loss")  # metric names (parts) >= 0
POWER = 0.8  # the power of the seeds-needed estimate


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take, from its name: [0, 1] for accuracies, AUROC, ECE, Brier; [0, inf) for errors
    and likelihoods; unbounded otherwise. Intervals are clipped to it (an accuracy's CI never passes 1)."""
    name = metric.rsplit("/", 1)[-1]
    if any(part in name for part in UNIT_INTERVAL):
        return 0.0, 1.0
    if any(part in name for part in NON_NEGATIVE):
        return 0.0, float("inf")
    return float("-inf"), float("inf")


def _interval(mean: float | None, low: float | None, high: float | None, bounds: tuple[float, float]) -> str:
    if mean is None:
        return "—"
    if low is None or high is None:
        return f"{mean:.4g} (one seed)"
    return f"{mean:.4g} [{max(low, bounds[0]):.4g}, {min(high, bounds[1]):.4g}]"


def _headline(stats: ComparisonStats, loss: str) -> Estimate | None:
    summary = stats.summaries[loss]
    return summary.test.get(stats.headline) if stats.headline.startswith("test/") else summary.final.get(stats.metric)


FLOAT32_NOISE = 1e-6
"""Metrics are computed in float32: a mean difference below this share of the metrics' size is rounding, not a
difference (two losses with the same accuracy on every seed differ by ~1e-8 after averaging)."""


def _difference(effect: float, scale: float) -> str:
    """A mean difference as the table shows it: ``+0.01111``, or ``0`` when it is float32 rounding.

    >>> _difference(-1.987e-08, 0.9395), _difference(0.004938, 0.94)
    ('0', '+0.004938')
    """
    return "0" if abs(effect) <= FLOAT32_NOISE * max(scale, 1e-30) else f"{effect:+.4g}"


def _headline_size(stats: ComparisonStats, loss: str) -> float:
    """The size of ``loss``'s headline mean (its absolute value; 0 without one): the scale of float32 rounding."""
    estimate = _headline(stats, loss)
    return abs(estimate.mean) if estimate is not None and estimate.mean is not None else 0.0


def verdict_section(stats: ComparisonStats) -> list[str]:
    """report.md's first section: one plain sentence, then per loss its headline metric (mean and 95% CI over
    seeds, clipped to the metric's range), its difference from the baseline and the verdict word."""
    if not stats.summaries:
        return ["No loss has a finished run that passed the fairness check: there is no verdict yet.", ""]
    verdicts = {loss: verdict_of(loss, stats) for loss in stats.verdicts}
    bounds, base = metric_range(stats.headline_label), stats.baseline
    rows = []
    for loss in stats.losses:
        estimate, v = _headline(stats, loss), verdicts.get(loss)
        shown = "—" if estimate is None else _interval(estimate.mean, estimate.low, estimate.high, bounds)
        if v is None:
            rows.append(f"| {loss} (baseline) | {shown} | — | — |")
            continue
        low, high = v.ci
        scale = max(_headline_size(stats, loss), _headline_size(stats, base))
        diff = "—" if v.effect is None else _difference(v.effect, scale)
        diff += "" if v.effect is None or low is None else f" [{low:+.4g}, {high:+.4g}]"
        rows.append(f"| {loss} | {shown} | {diff} | {v.outcome} |")
    better = "higher" if stats.mode == "max" else "lower"
    header = f"| loss | {stats.headline_label} ({better} is better), mean [95% CI] | vs {base} [95% CI] | verdict |"
    return [verdict_sentence(stats, verdicts), "", header, "|---|---|---|---|", *rows, ""]


def verdict_sentence(stats: ComparisonStats, verdicts: dict[str, LossVerdict]) -> str:
    """The answer in plain words: who beat the baseline (or that none did), who did worse, and how many seeds
    would separate the rest."""
    base, m = stats.baseline, stats.headline_label
    better = [v for v in verdicts.values() if v.outcome == "better"]
    worse = [v for v in verdicts.values() if v.outcome == "worse"]
    words = (
        [f"{_names(better)} beat {base} on {m} ({', '.join(f'{v.loss} {v.effect:+.4g}' for v in better)})"]
        if better
        else [f"No loss beat {base} on {m}"]
    )
    if worse:
        words.append(f"{_names(worse)} did worse ({', '.join(f'{v.loss} {v.effect:+.4g}' for v in worse)})")
    text = "; ".join(words) + "."
    unsettled = [v for v in verdicts.values() if v.outcome in ("no difference", "inconclusive")]
    return text + (" " + _seeds_text(stats, unsettled) if unsettled else "")


def _names(verdicts: list[LossVerdict]) -> str:
    names = [v.loss for v in verdicts]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _seeds_text(stats: ComparisonStats, unsettled: list[LossVerdict]) -> str:
    """How many seeds would detect a 1-point difference (a 10% one for metrics not within [0, 1]), from the
    observed seed-to-seed spread of the paired differences; the tests' own wording when that cannot be told."""
    spreads = []
    for v in unsettled:
        p = v.verdict.seeds if v.verdict is not None else None
        if p is not None and p.n >= 2:
            spreads.append(statistics.stdev(p.differences))
    seeds = max((v.seeds for v in unsettled), default=0)
    names = _names(unsettled)
    if not spreads:
        return f"{names} could not be tested against {stats.baseline} ({seeds} paired seed(s)): run more seeds."
    sd = statistics.median(spreads)
    baseline = _headline(stats, stats.baseline)
    unit = metric_range(stats.headline_label) == (0.0, 1.0)
    delta = 0.01 if unit else 0.1 * abs(baseline.mean if baseline is not None and baseline.mean else 1.0)
    size = "a 1-point" if unit else f"a 10% ({delta:.3g})"
    needed = seeds_needed(sd, delta, max(1, stats.primary_size))
    if needed <= seeds:
        return (
            f"{names}: {seeds} seeds can detect {size} difference from {stats.baseline}; the differences seen are "
            "smaller than that, or not consistent across seeds."
        )
    return (
        f"{seeds} seeds are too few to separate {names} from {stats.baseline}: about {needed} seeds would be needed "
        f"to detect {size} difference (from the seed-to-seed spread of the differences seen, sd {sd:.2g}; "
        f"{POWER:.0%} power at Holm's first level over {max(1, stats.primary_size)} loss(es))."
    )


def seeds_needed(sd: float, delta: float, tests: int = 1, limit: int = 10_000) -> int:
    """The fewest seeds n at which a two-sided paired t-test at level 0.05 / ``tests`` has :data:`POWER` to detect
    a mean difference ``delta`` when the differences spread with standard deviation ``sd`` (the exact power, from
    the noncentral t distribution with n - 1 degrees of freedom and noncentrality delta / sd * sqrt(n))."""
    from scipy.stats import nct, t

    if sd <= 0:
        return 2
    alpha = 0.05 / tests
    for n in range(2, limit + 1):
        crit, shift = t.ppf(1 - alpha / 2, n - 1), delta / sd * n**0.5
        if nct.sf(crit, n - 1, shift) + nct.cdf(-crit, n - 1, shift) >= POWER:
            return n
    return limit


def budget_lines(records: list[Any]) -> list[str]:
    """A warning next to the verdicts when finished runs of one seed trained for different numbers of steps (a
    callback such as EarlyStopping ended some early): the verdicts then compare different budgets."""
    steps: dict[int, dict[str, int]] = {}
    for r in records:
        if r.status == "finished":
            steps.setdefault(int(r.seed), {})[r.loss] = int(r.steps)
    uneven = {seed: by_loss for seed, by_loss in sorted(steps.items()) if len(set(by_loss.values())) > 1}
    if not uneven:
        return []
    seed, by_loss = next(iter(uneven.items()))
    shown = ", ".join(f"{loss} {n}" for loss, n in by_loss.items())
    callbacks = sorted({c for r in records for c in (r.execution or {}).get("callbacks", [])})
    why = f" (trainer.callbacks: {'; '.join(callbacks)})" if callbacks else ""
    return [
        f"> **The budgets differ:** runs of the same seed stopped after different numbers of steps (seed {seed}: "
        f"{shown}; {len(uneven)} seed(s) so){why}, so these verdicts compare losses trained for different budgets.",
        "",
    ]

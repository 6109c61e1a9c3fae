"""Each loss's headline verdict against the baseline (better / worse / no difference / inconclusive), decided
from the statistics the report is rendered from: report.md's first section and ``ComparisonResult.verdicts``."""

from __future__ import annotations

from dataclasses import dataclass, field

from lossbench.compare.analysis.stats import ComparisonStats, Verdict
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
        reason = "differs on the pooled test examples, not consistently across seeds: more seeds would tell"
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

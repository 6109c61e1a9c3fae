"""The report's outcome in plain sentences, generated from the numbers and the conditions they hold under.

Rules: "significantly" only when the Holm-adjusted seed-level test and, where test predictions were
kept, the example-level test both say so (Holm over the losses: the headline is the primary family);
steps to target are a secondary endpoint and say so; "within noise" only of differences that are
tested and not significant, and an untested difference says why; speed verdicts in optimizer steps
(never seconds, which depend on the machine); every verdict names its conditions (budget, learning
rate, seeds, selected weights), and losses whose validation curve was still improving at the end, or
with irregular runs (skipped optimizer steps, non-finite validation values), are flagged.
"""

from __future__ import annotations

from typing import Any

from lossbench.compare.analysis.stats import ComparisonStats, Paired, Verdict, median
from lossbench.compare.report.format import (
    _num,
    _p,
    _padj,
    _plain,
    _pvalue,
    _signed,
    _untested,
)
from lossbench.compare.report.verdicts import same_sign_seeds

LOW_POWER_SEEDS = 5


def conditions_sentence(conditions: dict[str, Any]) -> str:
    """Under what the verdicts hold: budget, learning rate (shared and untuned), seeds, weights, test rows."""
    parts = []
    steps, epochs = conditions.get("steps"), conditions.get("epochs")
    if steps:
        parts.append(f"a budget of {steps} optimizer steps" + (f" ({epochs} epochs)" if epochs else ""))
    opt = conditions.get("optimizer") or {}
    tuning = conditions.get("tuning")
    if tuning:
        paths = ", ".join(tuning["paths"])
        parts.append(
            f"{opt.get('name', 'the optimizer')} with {paths} tuned per loss under an equal budget of "
            f"{tuning['trials']} trials (the same points for every loss, selected by {tuning['metric']} on "
            f"tuning seed(s) {', '.join(str(s) for s in tuning['seeds'])})"
        )
    elif opt:
        tuned = "tuned per loss" if conditions.get("tuned") else "shared by every loss and not tuned per loss"
        sched = conditions.get("schedule") or {}
        schedule = f", {sched.get('name')} schedule" if sched.get("name") not in (None, "none") else ""
        warm = f" with {sched.get('warmup_steps')} warmup steps" if sched.get("warmup_steps") else ""
        parts.append(f"one learning rate ({opt.get('name')}, lr {_plain(opt.get('lr'))}{schedule}{warm}) {tuned}")
    if conditions.get("seeds"):
        parts.append(f"{conditions['seeds']} seeds")
    select = conditions.get("select")
    if select:
        parts.append("the weights of the best validation evaluation" if select == "best" else "the final weights")
    text = "These verdicts hold under " + (", ".join(parts) if parts else "the recipe's settings")
    if conditions.get("test_rows"):
        text += f", scored once on the {conditions['test_rows']}-row test split"
    text += (
        "; another budget or search space can change them."
        if tuning
        else "; another budget or learning rate can change them."
    )
    edges = (tuning or {}).get("edges")
    return text + (f" At the edge of the search space: {'; '.join(edges)}: widen the range." if edges else "")


def outcome_sentences(stats: ComparisonStats, conditions: dict[str, Any] | None = None) -> list[str]:
    """Plain sentences on the outcome, generated from the numbers (see the module's rules)."""
    if not stats.ranking:
        return ["No loss has a finished run that passed the fairness check, so nothing can be concluded yet."]
    out = [conditions_sentence(conditions)] if conditions else []
    out += [_ranking_sentence(stats), *_first_irregular_sentences(stats), *_headline_sentences(stats)]
    out += _steps_sentences(stats) + _improving_sentences(stats) + _irregular_sentences(stats)
    out += _power_sentences(stats)
    return out


def _ranking_sentence(stats: ComparisonStats) -> str:
    first = stats.ranking[0]
    text = f"By mean {stats.headline_label}, {first.loss} ranks first ({_num(first.mean)}"
    if first.next_loss is None:
        return text + "), but it is the only loss with finished runs."
    second = stats.ranking[1]
    if _num(first.mean) == _num(second.mean):  # equal as shown: a tie, not a first place
        text = f"By mean {stats.headline_label}, {first.loss} and {second.loss} tie for first ({_num(first.mean)})"
    else:
        text += f", next {second.loss} with {_num(second.mean)})"
    vs = first.vs_next
    if vs is None:
        return text + "; the two share no finished seed, so the gap is untested."
    if first.separated:
        return text + f", and the gap is significant ({_verdict_ps(first.verdict)})."
    if vs.p is None:
        return text + f"; the gap is untested ({_untested(vs)})."
    return text + f"; the gap is within noise ({_verdict_ps(first.verdict)})."


def _first_irregular_sentences(stats: ComparisonStats) -> list[str]:
    """A loss that ranks first on irregular runs is said so right after the ranking (never silently first)."""
    s = stats.summaries.get(stats.ranking[0].loss)
    if s is None or not s.irregular:
        return []
    k, n = len(s.irregular), s.n
    had = "had an irregular run" if k == 1 else "had irregular runs"
    return [
        f"That first place is flagged: {k} of {s.loss}'s {n} seed{'s' if n != 1 else ''} {had} "
        f"({', '.join(s.irregular_kinds)}), so read it with care."
    ]


def _irregular_sentences(stats: ComparisonStats) -> list[str]:
    flagged = [s for s in stats.summaries.values() if s.irregular]
    if not flagged:
        return []
    names = "; ".join(f"{s.loss} ({len(s.irregular)}/{s.n} seeds: {', '.join(s.irregular_kinds)})" for s in flagged)
    return [f'Irregular runs, kept in the statistics and flagged (see "Unfinished or irregular runs"): {names}.']


def _verdict_ps(verdict: Verdict | None) -> str:
    """'p = raw (Holm adj) over seeds; per-example p = ... (Holm ...)'."""
    if verdict is None or verdict.seeds is None:
        return "untested"
    text = f"seeds: p = {_p(verdict.seeds)}, Holm {_padj(verdict.seeds)}"
    ex = verdict.examples
    if ex is not None and ex.p is not None:
        text += f"; test examples ({ex.method}): p = {_pvalue(ex.p)}, Holm {_pvalue(verdict.examples_p_adj)}"
        if verdict.joint_p_adj is not None:
            text += f"; both: Holm {_pvalue(verdict.joint_p_adj)}"
    return text


def _headline_sentences(stats: ComparisonStats) -> list[str]:
    base, m = stats.baseline, stats.headline_label
    # (loss, its verdict, the verdict's seed-level test: a tested one)
    better: list[tuple[str, Verdict, Paired]] = []
    worse: list[tuple[str, Verdict, Paired]] = []
    noise: list[tuple[str, Verdict, Paired]] = []
    untested: list[str] = []
    for loss, verdict in stats.verdicts.items():
        p = verdict.seeds
        if p is None or p.p is None:
            untested.append(f"{loss} ({'no common finished seed' if p is None else _untested(p)})")
        elif not verdict.significant:
            noise.append((loss, verdict, p))
        elif (_mean_diff(p) > 0) == (stats.mode == "max"):
            better.append((loss, verdict, p))
        else:
            worse.append((loss, verdict, p))
    sentences = []
    for (loss, v, p), word in [(x, "better") for x in better] + [(x, "worse") for x in worse]:
        direction = "higher" if _mean_diff(p) > 0 else "lower"
        sentences.append(
            f"{loss} has a significantly {word} {m} than {base} ({direction} by {_num(abs(_mean_diff(p)))}, "
            f"95% CI [{_num(p.diff.low)}, {_num(p.diff.high)}], {p.n} seeds; {_verdict_ps(v)})."
        )
    split = [(loss, v, p) for loss, v, p in noise if _examples_only(v)]
    noise = [(loss, v, p) for loss, v, p in noise if not _examples_only(v)]
    consistent = [(loss, v, p) for loss, v, p in split if same_sign_seeds(p)[0] == p.n]
    split = [(loss, v, p) for loss, v, p in split if same_sign_seeds(p)[0] != p.n]
    if consistent:
        names = ", ".join(f"{loss} ({_signed(p.diff.mean)}, {p.n} of {p.n} seeds)" for loss, _, p in consistent)
        verb = "differs" if len(consistent) == 1 else "differ"
        sentences.append(
            f"The {m} of {names} {verb} from {base} in the same direction on every seed and on the pooled test "
            "examples, but is not yet significant at the seed level: run more seeds."
        )
    if split:
        names = ", ".join(
            f"{loss} ({_signed(p.diff.mean)}; examples Holm {_pvalue(v.examples_p_adj)}, "
            f"seeds Holm {_pvalue(p.decisive_p)})"
            for loss, v, p in split
        )
        verb = "differs" if len(split) == 1 else "differ"
        sentences.append(
            f"The {m} of {names} {verb} from {base} on the pooled test examples but not consistently across seeds: "
            "not significant, the seed-to-seed spread is too large to call it; more seeds would tell."
        )
    if noise:
        names = ", ".join(loss for loss, _, _ in noise)
        sentences.append(
            f"Differences in {m} from {base} are within noise for {names} (not significant after Holm correction over "
            f"the {stats.primary_size} losses compared with {base} on {m}, the primary family, across seeds and test "
            "examples)."
        )
    if untested:
        sentences.append(
            f"{m} of {', '.join(untested)} could not be tested against {base} across seeds, so no p-value is given "
            "and it is not called significant."
        )
    return sentences


def _mean_diff(p: Paired) -> float:
    """The mean difference of a tested pair (a p-value needs two seeds or more, which give a mean)."""
    assert p.diff.mean is not None, p
    return p.diff.mean


def _examples_only(verdict: Verdict) -> bool:
    """The example-level test is significant (Holm) but the seed-level one is not."""
    ex, p = verdict.examples, verdict.examples_p_adj
    return ex is not None and p is not None and p < 0.05 and (verdict.seeds is None or not verdict.seeds.significant)


def _steps_sentences(stats: ComparisonStats) -> list[str]:
    if stats.threshold is None or not stats.vs_baseline:
        return []
    base, m = stats.baseline, stats.metric
    goal = f"{m} {'>=' if stats.mode == 'max' else '<='} {_plain(stats.threshold)}"
    sentences, missing = [], []
    for loss, results in stats.vs_baseline.items():
        p = results["steps"]
        if p is None:
            missing.append(loss)
            continue
        mine, theirs = median(p.loss_values), median(p.other_values)
        if mine == theirs or theirs <= 0:
            how = f"at the same median step as {base}" if mine == theirs else f"at a different step than {base}"
        else:
            pct = abs(theirs - mine) / theirs * 100
            how = f"{pct:.0f}% {'sooner' if mine < theirs else 'later'} than {base}"
        if p.significant:
            verdict = f"secondary: p = {_p(p)}, Holm {_padj(p)}, significant"
        elif p.p is None:
            verdict = f"secondary, untested: {_untested(p)}"
        else:
            verdict = f"secondary: p = {_p(p)}, Holm {_padj(p)}, within noise"
        sentences.append(
            f"{loss} reached {goal} {how} (median {_num(mine)} vs {_num(theirs)} optimizer steps on the {p.n} seeds "
            f"where both reached it; {verdict})."
        )
    if missing:
        sentences.append(
            f"Steps to {goal} are not compared with {base} for {', '.join(missing)}: "
            "they and the baseline reached it together on fewer than 2 seeds."
        )
    return sentences


def _improving_sentences(stats: ComparisonStats) -> list[str]:
    flagged = [(loss, s.improving) for loss, s in stats.summaries.items() if s.improving[0]]
    if not flagged:
        return []
    names = ", ".join(f"{loss} ({k}/{n} seeds)" for loss, (k, n) in flagged)
    return [
        f"Still improving at the end of the budget (the validation {stats.metric} curve's last third rises "
        f"beyond its noise): {names}; a longer budget may change the verdicts that involve them."
    ]


def _power_sentences(stats: ComparisonStats) -> list[str]:
    n = max((s.n for s in stats.summaries.values()), default=0)
    if n >= LOW_POWER_SEEDS:
        return []
    return [
        f"With {n} seed{'s' if n != 1 else ''} (fewer than {LOW_POWER_SEEDS}) the comparison has low power: "
        'a real difference can easily go undetected, so "within noise" is not evidence of no difference.'
    ]


def worse_than_mean(stats: ComparisonStats) -> bool:
    """True when every loss with a result predicts worse than the training mean would (R² <= 0 on the headline
    split)."""
    key = next((m for m in (stats.test_metrics or []) if m.endswith("/r2")), None)
    means = [s.test[key].mean for s in stats.summaries.values()] if key else []
    if not any(v is not None for v in means):
        means = [s.final["val/r2"].mean for s in stats.summaries.values() if "val/r2" in s.final]
    values = [v for v in means if v is not None]
    return bool(values) and all(v <= 0 for v in values)

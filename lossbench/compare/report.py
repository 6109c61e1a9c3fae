"""Render a comparison folder's report from its records alone: results.csv, report.md and plots/.

:func:`render_report` reads ``DIR/comparison.json`` and the run records under ``DIR/runs``,
and nothing else: a report can be re-rendered at any time without training again. The
output depends only on those files (no clock, no environment), so rendering twice gives
identical bytes. Plots and results.csv are written before report.md, each atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lossbench.compare import plots as plotting
from lossbench.compare.fairness import FairnessResult, check_fairness, data_fingerprint
from lossbench.compare.records import RunRecord, atomic_write_text, load_records, read_json, write_csv
from lossbench.compare.stats import OWN_SCALE, ComparisonStats, Estimate, Paired, Reached, compare_losses, median

REQUIRED_KEYS = (
    "name", "recipe", "recipe_hash", "setup_hash", "baseline", "losses",
    "seeds", "target", "budget", "versions", "created",
)  # fmt: skip
Runs = list[tuple[RunRecord, list[dict[str, Any]]]]


def load_comparison(root: str | Path) -> dict[str, Any]:
    """Read and check ``root/comparison.json``.

    Raises:
        FileNotFoundError: when the file is missing (``root`` is not a comparison folder).
        ValueError: when a required key is missing or the baseline is not one of the losses.
    """
    path = Path(root) / "comparison.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {Path(root)} is not a lossbench comparison folder "
            "(`lossbench compare RECIPE` creates one)"
        )
    try:
        comparison = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not valid JSON ({exc}); it is written by `lossbench compare`") from None
    if not isinstance(comparison, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(comparison).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in comparison]
    if missing:
        raise ValueError(f"{path}: missing keys {missing} (expected {list(REQUIRED_KEYS)})")
    if comparison["baseline"] not in comparison["losses"]:
        raise ValueError(
            f"{path}: 'baseline' must be one of 'losses' {comparison['losses']}, got {comparison['baseline']!r}"
        )
    target = comparison["target"]
    if not isinstance(target, dict) or not target.get("metric") or target.get("mode") not in ("max", "min"):
        raise ValueError(f"{path}: 'target' must be {{'metric', 'mode': 'max'|'min', 'threshold'}}, got {target!r}")
    return comparison


def render_report(root: str | Path) -> Path:
    """Write ``root/results.csv``, ``root/plots/*.png`` and ``root/report.md`` from the records alone.

    Returns:
        The path of report.md.
    """
    root = Path(root)
    comparison = load_comparison(root)
    losses, seeds = list(comparison["losses"]), [int(s) for s in comparison["seeds"]]
    planned = {(loss, seed) for loss in losses for seed in seeds}
    every = load_records(root)
    runs = [(r, rows) for r, rows in every if (r.loss, r.seed) in planned]
    outside = sorted((r.loss, r.seed) for r, _ in every if (r.loss, r.seed) not in planned)
    fairness = check_fairness(runs)
    stats = compare_losses(
        runs, comparison["baseline"], target=comparison["target"], losses=losses, invalid=fairness.invalid
    )
    used = [(r, rows) for r, rows in runs if r.status == "finished" and (r.loss, r.seed) not in fairness.invalid]
    plot_paths = plotting.render_plots(used, root / "plots", stats.metric, losses)
    columns, rows = results_table(comparison, runs, fairness)
    write_csv(root / "results.csv", rows, columns)
    text = report_markdown(comparison, runs, fairness, stats, [p.relative_to(root) for p in plot_paths], outside)
    path = root / "report.md"
    atomic_write_text(path, text)
    return path


def results_table(comparison: dict[str, Any], runs: Runs, fairness: FairnessResult) -> tuple[list[str], list[dict]]:
    """Columns and rows of results.csv: one row per planned loss x seed (status "missing" without a record)."""
    metric = comparison["target"]["metric"]
    others = sorted({m for r, _ in runs for m in (*r.final, *r.best) if m.startswith("val/")} - {metric})
    metric_columns = [f"{kind}_{m}" for m in [metric, *others] for kind in ("final", "best")]
    columns = [
        "loss", "seed", "status", "fairness", *metric_columns, "steps_to_target", "seconds_to_target", "auc",
        "backbone_init", "head_init", "data_order", "train_seconds", "seconds_per_step", "skipped_steps",
        "resumed", "error",
    ]  # fmt: skip
    by_key = {(r.loss, r.seed): r for r, _ in runs}
    rows = []
    for loss in comparison["losses"]:
        for seed in comparison["seeds"]:
            r = by_key.get((loss, int(seed)))
            if r is None:
                rows.append({"loss": loss, "seed": seed, "status": "missing"})
                continue
            row = {
                "loss": loss,
                "seed": seed,
                "status": r.status,
                "fairness": "invalid" if (loss, r.seed) in fairness.invalid else "ok",
                "steps_to_target": r.steps_to_target,
                "seconds_to_target": r.seconds_to_target,
                "auc": r.auc,
                "backbone_init": r.fingerprints.get("backbone_init"),
                "head_init": r.fingerprints.get("head_init"),
                "data_order": data_fingerprint(r),
                "train_seconds": r.train_seconds,
                "seconds_per_step": r.seconds_per_step,
                "skipped_steps": r.skipped_steps,
                "resumed": r.resumed,
                "error": r.error,
            }
            for m in [metric, *others]:
                row[f"final_{m}"], row[f"best_{m}"] = r.final.get(m), r.best.get(m)
            rows.append(row)
    return columns, rows


def report_markdown(
    comparison: dict[str, Any],
    runs: Runs,
    fairness: FairnessResult,
    stats: ComparisonStats,
    plot_paths: list[Path],
    outside: list[tuple[str, int]] = (),
) -> str:
    """The text of report.md."""
    lines: list[str] = []
    if not fairness.ok:
        lines += _warning(fairness)
    lines += [f"# Loss comparison: {comparison['name']}", ""]
    lines += _setup_section(comparison, runs, fairness, stats)
    own_scale = sorted({m for r, _ in runs for m in (*r.final, *r.best) if m in OWN_SCALE})
    lines += _per_loss_section(stats, own_scale)
    lines += _paired_section(stats)
    lines += _ranking_section(stats)
    lines += ["## Outcome", "", " ".join(outcome_sentences(stats)), ""]
    lines += _unfinished_section(comparison, runs, outside)
    lines += ["## Plots", ""]
    titles = {
        plotting.TARGET_PNG: f"{stats.metric} vs step",
        plotting.TRAIN_LOSS_PNG: "training loss per loss",
        plotting.GRAD_NORM_PNG: "gradient norm vs step",
    }
    for path in plot_paths:
        lines += [f"![{titles.get(path.name, path.stem)}]({path.as_posix()})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _warning(fairness: FairnessResult) -> list[str]:
    affected = ", ".join(f"{loss} seed {seed}" for loss, seed in sorted(fairness.invalid, key=lambda x: (x[1], x[0])))
    lines = ["> **WARNING: the fairness check failed.** Some runs were not trained under identical setups:", ">"]
    lines += [f"> - {problem}" for problem in fairness.problems]
    lines += [
        ">",
        f"> The affected comparisons are marked invalid: these runs are excluded from every statistic, "
        f"table and plot below: {affected}.",
        "",
    ]
    return lines


def _setup_section(
    comparison: dict[str, Any], runs: Runs, fairness: FairnessResult, stats: ComparisonStats
) -> list[str]:
    heads = {}
    for r, _ in runs:
        heads.setdefault(r.loss, _head_text(r))
    losses = ", ".join(
        f"`{loss}`" + (" (baseline)" if loss == stats.baseline else "") + (f" = {heads[loss]}" if loss in heads else "")
        for loss in stats.losses
    )
    budget = ", ".join(f"{k}={_plain(v)}" for k, v in comparison["budget"].items())
    versions = ", ".join(f"{k} {v}" for k, v in sorted(comparison["versions"].items()))
    lines = [
        "## What was compared",
        "",
        f"- Recipe: `{comparison['name']}` (recipe hash `{str(comparison['recipe_hash'])[:12]}`, "
        f"setup hash `{str(comparison['setup_hash'])[:12]}`)",
        f"- Losses: {losses}",
        f"- Seeds: {', '.join(str(s) for s in comparison['seeds'])}",
        f"- Budget: {budget or 'not given'}",
        f"- Target: {_target_text(stats)}",
        f"- Versions: {versions or 'not recorded'}",
        f"- Created: {comparison['created']}",
        "- Fairness check (initial weights, setup hash and batch order of every epoch, from the run records):",
    ]
    for seed in comparison["seeds"]:
        seed = int(seed)
        checked = fairness.checked.get(seed, [])
        if not checked:
            lines.append(f"  - seed {seed}: no run records yet, nothing to check")
        elif not fairness.seed_ok(seed):
            bad = sorted(loss for loss, s in fairness.invalid if s == seed)
            lines.append(f"  - seed {seed}: FAILED: runs {', '.join(bad)} differ (see the warning above); invalid")
        elif len(checked) == 1:
            lines.append(f"  - seed {seed}: only one run ({checked[0]}), nothing to compare it with")
        else:
            runs_text = "both runs" if len(checked) == 2 else f"all {len(checked)} runs"
            lines.append(f"  - seed {seed}: {runs_text} of seed {seed} share the same initial weights and batch order")
    n_used = sum(s.n for s in stats.summaries.values())
    lines += [
        "",
        f"Statistics use the {n_used} finished run(s) that passed the fairness check. Values are mean ± half-width "
        "of the 95% Student-t interval over seeds (no interval with one seed); paired comparisons are two-sided "
        "paired t-tests over the seeds both losses finished.",
        "",
    ]
    return lines


def _per_loss_section(stats: ComparisonStats, own_scale: list[str]) -> list[str]:
    m = stats.metric
    show_ece = any(s.ece is not None for s in stats.summaries.values())
    header = ["loss", "seeds", f"final {m}", f"best {m}", "steps to target", "seconds to target", "AUC"]
    header += ["final ECE"] * show_ece + ["s/step"]
    rows = []
    for loss, s in stats.summaries.items():
        row = [_loss_name(loss, stats), str(s.n), _est(s.final[m]), _est(s.best[m])]
        row += [_reached(s.steps_to_target), _reached(s.seconds_to_target), _est(s.auc)]
        row += [_num(s.ece)] * show_ece + [_num(s.seconds_per_step)]
        rows.append(row)
    lines = ["## Results per loss", "", *_table(header, rows), ""]
    lines += [
        "Steps/seconds to target: mean over the seeds that reached the target, with how many did; "
        "a seed that never reached it is not averaged in.",
        "",
    ]
    others = stats.metrics[1:]
    if others:
        header = ["loss"] + [f"{kind} {o}" for o in others for kind in ("final", "best")]
        rows = [
            [_loss_name(loss, stats)] + [_est(getattr(s, kind)[o]) for o in others for kind in ("final", "best")]
            for loss, s in stats.summaries.items()
        ]
        lines += ["Other validation metrics:", "", *_table(header, rows), ""]
    if own_scale:
        lines += [
            f"{', '.join(own_scale)}: each loss's own value, on its own scale, so not compared across losses "
            "(per run in results.csv).",
            "",
        ]
    return lines


def _paired_section(stats: ComparisonStats) -> list[str]:
    base = stats.baseline
    header = ["loss", "quantity", "seeds", f"mean diff (loss − {base})", "95% CI", "p"]
    rows = []
    for loss, results in stats.vs_baseline.items():
        for key, name in (("final", f"final {stats.metric}"), ("steps", "steps to target"), ("auc", "AUC")):
            p = results[key]
            if p is None:
                why = "both reached the target on fewer than 2 seeds" if key == "steps" else "no common finished seed"
                rows.append([loss, name, "0" if key != "steps" else "<2", f"not compared ({why})", "—", "—"])
            else:
                rows.append([loss, name, str(p.n), _signed(p.diff.mean), _ci(p.diff), _p(p)])
    lines = [f"## Paired comparison against the baseline ({base})", ""]
    if not rows:
        return lines + ["Only the baseline was compared.", ""]
    lines += [*_table(header, rows), ""]
    lines += [
        "A difference is loss minus baseline on the same seeds; a negative steps difference means the target "
        "was reached sooner. p: two-sided paired t-test (— with fewer than 2 seeds or when every difference is equal).",
        "",
    ]
    return lines


def _ranking_section(stats: ComparisonStats) -> list[str]:
    better = "higher" if stats.mode == "max" else "lower"
    header = ["rank", "loss", f"mean final {stats.metric}", "difference to next", "vs next"]
    rows = []
    for e in stats.ranking:
        if e.next_loss is None:
            diff, flag = "—", "—"
        elif e.vs_next is None:
            diff, flag = "—", f"not tested: no common finished seed with {e.next_loss}"
        else:
            diff = f"{_signed(e.vs_next.diff.mean)} vs {e.next_loss}"
            if e.separated:
                flag = f"significant (p = {_p(e.vs_next)})"
            elif e.vs_next.p is None:
                flag = f"not significant: untested ({_untested(e.vs_next)})"
            else:
                flag = f"not significant (p = {_p(e.vs_next)})"
        rows.append([str(e.rank), _loss_name(e.loss, stats), _num(e.mean), diff, flag])
    lines = ["## Ranking", "", f"By mean final {stats.metric} ({better} is better).", ""]
    if rows:
        lines += [*_table(header, rows), ""]
    if stats.unranked:
        lines += [f"Not ranked (no finished run that passed the fairness check): {', '.join(stats.unranked)}.", ""]
    return lines


def _unfinished_section(comparison: dict[str, Any], runs: Runs, outside: list[tuple[str, int]]) -> list[str]:
    by_key = {(r.loss, r.seed): r for r, _ in runs}
    items = []
    for loss in comparison["losses"]:
        for seed in comparison["seeds"]:
            r = by_key.get((loss, int(seed)))
            if r is None:
                items.append(f"- {loss}, seed {seed}: missing (no run record)")
            elif r.status == "failed":
                error = (r.error or "no error recorded").strip().splitlines() or ["no error recorded"]
                items.append(f"- {loss}, seed {seed}: failed after {r.steps} steps: {error[-1]}")
            elif r.status != "finished":
                items.append(f"- {loss}, seed {seed}: {r.status} ({r.steps} steps done, resumed {r.resumed} times)")
    lines = ["## Failed or unfinished runs", ""]
    total = len(comparison["losses"]) * len(comparison["seeds"])
    lines += items or [f"None: all {total} planned runs finished."]
    lines.append("")
    if items:
        lines += ["These runs are excluded from the statistics.", ""]
    if outside:
        shown = ", ".join(f"{loss} seed {seed}" for loss, seed in outside)
        lines += [f"Run records outside the plan in comparison.json (ignored): {shown}.", ""]
    skipped = [f"{r.loss} seed {r.seed}: {r.skipped_steps}" for r, _ in runs if r.skipped_steps]
    if skipped:
        lines += [f"Optimizer steps skipped on a non-finite loss (nan_policy: skip): {'; '.join(skipped)}.", ""]
    return lines


def _target_text(stats: ComparisonStats) -> str:
    better = "higher" if stats.mode == "max" else "lower"
    text = f"{stats.metric} ({better} is better)"
    if stats.threshold is None:
        return text + "; no threshold, so no steps-to-target"
    op = ">=" if stats.mode == "max" else "<="
    return text + f"; reached at the first evaluation with {stats.metric} {op} {_plain(stats.threshold)}"


def _head_text(record: RunRecord) -> str:
    args = ", ".join(f"{k}={_plain(v)}" for k, v in sorted(record.head_args.items()))
    return f"`{record.head}({args})`"


def _loss_name(loss: str, stats: ComparisonStats) -> str:
    return f"{loss} (baseline)" if loss == stats.baseline else loss


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)]


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def _signed(x: float | None) -> str:
    if x is None:
        return "—"
    return "0" if x == 0 else f"{x:+.4g}"


def _plain(v: Any) -> str:
    return "none" if v is None else str(v)


def _est(e: Estimate) -> str:
    if e.mean is None:
        return "—"
    if e.half_width is None:
        return f"{e.mean:.4g} (n=1)"
    return f"{e.mean:.4g} ± {e.half_width:.2g}"


def _ci(e: Estimate) -> str:
    return "—" if e.low is None else f"[{e.low:.4g}, {e.high:.4g}]"


def _p(p: Paired) -> str:
    if p.p is None:
        return "—"
    return "<0.001" if p.p < 0.001 else f"{p.p:.3g}"


def _untested(p: Paired) -> str:
    """Why a paired comparison has no p-value."""
    if p.n < 2:
        return "fewer than 2 paired seeds"
    if p.diff.mean == 0:
        return "identical on every seed"
    return f"the same difference ({_signed(p.diff.mean)}) on every seed"


def _reached(r: Reached) -> str:
    if r.n == 0:
        return "—"
    if r.reached == 0:
        return f"not reached (0/{r.n})"
    return f"{r.mean:.4g} ({r.label})"


def outcome_sentences(stats: ComparisonStats) -> list[str]:
    """Two or three plain sentences on the outcome, generated from the numbers.

    "within noise" is said only of differences that are tested and not significant;
    "sooner"/"later" only where a steps-to-target comparison exists.
    """
    if not stats.ranking:
        return ["No loss has a finished run that passed the fairness check, so nothing can be concluded yet."]
    return [_ranking_sentence(stats), *_final_sentences(stats), *_steps_sentences(stats)]


def _ranking_sentence(stats: ComparisonStats) -> str:
    first = stats.ranking[0]
    text = f"By mean final {stats.metric}, {first.loss} ranks first ({_num(first.mean)}"
    if first.next_loss is None:
        return text + "), but it is the only loss with finished runs."
    second = stats.ranking[1]
    text += f", next {second.loss} with {_num(second.mean)})"
    vs = first.vs_next
    if vs is None:
        return text + "; the two share no finished seed, so the gap is untested."
    if first.separated:
        return text + f", and the gap is significant (p = {_p(vs)})."
    if vs.p is None:
        return text + f"; the gap is untested ({_untested(vs)})."
    return text + f"; the gap is within noise (p = {_p(vs)})."


def _final_sentences(stats: ComparisonStats) -> list[str]:
    base, m = stats.baseline, stats.metric
    better, worse, noise, untested = [], [], [], []
    for loss, results in stats.vs_baseline.items():
        p = results["final"]
        if p is None or p.p is None:
            untested.append(loss)
        elif not p.significant:
            noise.append(p)
        elif (p.diff.mean > 0) == (stats.mode == "max"):
            better.append(p)
        else:
            worse.append(p)
    sentences = []
    for p, word in [(p, "better") for p in better] + [(p, "worse") for p in worse]:
        direction = "higher" if p.diff.mean > 0 else "lower"
        sentences.append(
            f"{p.loss} ends with a significantly {word} final {m} than {base} ({direction} by "
            f"{_num(abs(p.diff.mean))}, 95% CI {_ci(p.diff)}, p = {_p(p)}, {p.n} seeds)."
        )
    if noise:
        names = ", ".join(p.loss for p in noise)
        ps = "all p >= 0.05" if len(noise) > 1 else f"p = {_p(noise[0])}"
        sentences.append(f"Final {m} differences from {base} are within noise for {names} ({ps}).")
    if untested:
        sentences.append(
            f"Final {m} of {', '.join(untested)} could not be tested against {base} "
            "(fewer than 2 common finished seeds, or every paired difference equal)."
        )
    return sentences


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
            verdict = f"p = {_p(p)}, significant"
        elif p.p is None:
            verdict = f"untested: {_untested(p)}"
        else:
            verdict = f"p = {_p(p)}, within noise"
        sentences.append(
            f"{loss} reached {goal} {how} (median {_num(mine)} vs {_num(theirs)} steps on the {p.n} seeds "
            f"where both reached it; {verdict})."
        )
    if missing:
        sentences.append(
            f"Steps to {goal} are not compared with {base} for {', '.join(missing)}: "
            "they and the baseline reached it together on fewer than 2 seeds."
        )
    return sentences

"""Render a comparison folder's report from its records alone: results.csv, report.md and plots/.

:func:`render_report` reads ``DIR/comparison.json`` and the run records under ``DIR/runs``,
and nothing else: a report can be re-rendered at any time without training again. The
output depends only on those files (no clock, no environment), so rendering twice gives
identical bytes. Plots and results.csv are written before report.md, each atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lossbench.compare.analysis.fairness import (
    FairnessResult,
    check_fairness,
    data_content_fingerprint,
    data_fingerprint,
)
from lossbench.compare.analysis.stats import (
    OWN_SCALE,
    PRIMARY,
    ComparisonStats,
    Irregularity,
    compare_losses,
    irregularities,
)
from lossbench.compare.analysis.tuning import LossTuning, check_tuning, select_trials
from lossbench.compare.recipe.tune import TuneSpec
from lossbench.compare.report import plots as plotting
from lossbench.compare.report.calibration import class_predictions, reliability_caption, render_reliability
from lossbench.compare.report.data import _table, data_section
from lossbench.compare.report.drawn import PlotCache
from lossbench.compare.report.format import (
    _ci,
    _est,
    _num,
    _p,
    _padj,
    _plain,
    _pvalue,
    _reached,
    _signed,
    _untested,
)
from lossbench.compare.report.outcome import outcome_sentences, worse_than_mean
from lossbench.compare.report.per_class import per_class_section
from lossbench.compare.report.teacher import teacher_section
from lossbench.compare.report.tuning import (
    plot_sensitivity,
    tuning_conditions,
    tuning_section,
)
from lossbench.compare.report.verdicts import budget_lines, verdict_section
from lossbench.compare.store.layout import (
    METRICS_FILE,
    PLOTS_DIR,
    PREDICTIONS_FILE,
    RELIABILITY_PNG,
    REPORT_FILE,
    RESULTS_FILE,
    TUNING_PNG,
    run_dir,
)
from lossbench.compare.store.meta import load_comparison
from lossbench.compare.store.records import (
    RunRecord,
    atomic_write_text,
    load_records,
    test_metric,
    tuning_records,
    write_csv,
)
from lossbench.compare.store.storage import results_folder
from lossbench.compare.store.tensors import load_run_tensors

Runs = list[tuple[RunRecord, list[dict[str, Any]]]]


def render_report(root: str | Path, say: Callable[[str], None] | None = None) -> Path:
    """Write ``root/results.csv``, ``root/plots/*.png`` and ``root/report.md`` from the records alone; a plot is
    drawn only when what it shows changed since it was last drawn, and ``say`` (e.g. ``print``) is told how many
    were (``plots: none redrawn (5 unchanged)``).

    Returns:
        The path of report.md.
    """
    with results_folder(root):  # nothing written through a symlink out of the folder (plots/ -> elsewhere)
        return _render_report(Path(root), say)


def _render_report(root: Path, say: Callable[[str], None] | None) -> Path:
    comparison = load_comparison(root)
    losses, seeds = list(comparison["losses"]), [int(s) for s in comparison["seeds"]]
    planned = {(loss, seed) for loss in losses for seed in seeds}
    every = load_records(root)
    runs = [(r, rows) for r, rows in every if (r.loss, r.seed) in planned]
    outside = sorted((r.loss, r.seed) for r, _ in every if (r.loss, r.seed) not in planned)
    fairness = check_fairness(runs)
    tuning = check_tuning_of(root, comparison, runs, fairness)
    predictions = load_predictions(root, runs, fairness)
    stats = compare_losses(
        runs,
        comparison["baseline"],
        target=comparison["target"],
        losses=losses,
        invalid=fairness.invalid,
        predictions=predictions,
        irregular=find_irregular(root, runs),
    )
    used = [(r, rows) for r, rows in runs if r.status == "finished" and (r.loss, r.seed) not in fairness.invalid]
    drawn = PlotCache(root / PLOTS_DIR)  # a plot is redrawn only when what it shows changed
    plot_paths = plotting.render_plots(used, root / PLOTS_DIR, stats.metric, losses, drawn)
    if tuning is not None:
        plot_paths.append(drawn.draw(TUNING_PNG, tuning, lambda path: plot_sensitivity(*tuning, path)))
    plot_paths += render_reliability(predictions, losses, drawn)  # class tasks: calibration on test
    drawn.save()
    if say is not None:
        say(drawn.summary())
    columns, rows = results_table(comparison, runs, fairness)
    write_csv(root / RESULTS_FILE, rows, columns)
    text = report_markdown(
        comparison, runs, fairness, stats, [p.relative_to(root) for p in plot_paths], outside, tuning, predictions, root
    )
    path = root / REPORT_FILE
    atomic_write_text(path, text)
    return path


def check_tuning_of(
    root: Path, comparison: dict[str, Any], runs: Runs, fairness: FairnessResult
) -> tuple[TuneSpec, dict[str, LossTuning]] | None:
    """A tuned comparison's spec and per-loss trials, recomputed from ``DIR/tuning``'s records; its budget and
    choices are checked (:func:`tuning.check_tuning`) and their problems added to ``fairness``."""
    raw = (comparison.get("recipe") or {}).get("tune")
    if not raw:
        return None
    tune = TuneSpec.from_dict(raw)
    records = tuning_records(root)
    chosen = select_trials(tune, list(comparison["losses"]), records, comparison.get("select") or "final")
    problems, invalid = check_tuning(comparison, records, [r for r, _ in runs], chosen)
    fairness.problems += problems
    fairness.invalid |= invalid
    fairness.ok = fairness.ok and not problems
    return tune, chosen


def find_irregular(root: Path, runs: Runs) -> dict[tuple[str, int], list[Irregularity]]:
    """What is irregular about each finished run (:func:`stats.irregularities`), its metrics.csv named by its
    path relative to ``root`` (so the report does not depend on where the folder is)."""
    out = {}
    for r, rows in runs:
        if r.status == "finished":
            relative = f"runs/{r.loss}/seed_{r.seed}/metrics.csv"
            missing = not (run_dir(root, r.loss, r.seed) / METRICS_FILE).exists()
            out[(r.loss, r.seed)] = irregularities(r, rows, relative, missing=missing)
    return out


def steps_done(record: RunRecord, rows: list[dict[str, Any]]) -> int:
    """Optimizer steps a run did: its record's ``steps``, or its metrics.csv's last step when that is further (a
    failed or interrupted run's record can lag its metrics, which are written after each evaluation)."""
    return max([record.steps, *(row["step"] for row in rows[-1:])])


def load_predictions(root: Path, runs: Runs, fairness: FairnessResult) -> dict[tuple[str, int], dict[str, Any]]:
    """The saved test predictions of every finished, fair run, as numpy arrays (for example-level tests).

    Raises:
        CorruptFileError: naming a test_predictions.pt that cannot be read as a mapping of tensors.
    """

    out = {}
    for r, _ in runs:
        path = run_dir(root, r.loss, r.seed) / PREDICTIONS_FILE
        if r.status != "finished" or (r.loss, r.seed) in fairness.invalid or not path.is_file():
            continue
        arrays = {k: v.numpy() for k, v in load_run_tensors(path, "test predictions").items()}
        if "label" in arrays and "proba" not in arrays and arrays["label"].dtype.kind == "f":
            arrays["value"] = arrays.pop("label")  # regression: predicted values
        out[(r.loss, r.seed)] = arrays
    return out


def results_table(comparison: dict[str, Any], runs: Runs, fairness: FairnessResult) -> tuple[list[str], list[dict]]:
    """Columns and rows of results.csv: one row per planned loss x seed (status "missing" without a record).

    Test metrics (on the reported weights) lead; validation final/best values follow.
    """
    metric = comparison["target"]["metric"]
    headline = test_metric(metric)
    tests = sorted({m for r, _ in runs for m in r.test} - {headline})
    tests = [headline, *tests] if any(r.test for r, _ in runs) else []
    others = sorted({m for r, _ in runs for m in (*r.final, *r.best) if m.startswith("val/")} - {metric})
    metric_columns = [f"{kind}_{m}" for m in [metric, *others] for kind in ("final", "best")]
    columns = [
        "loss", "seed", "status", "fairness", *tests, "selected_step", *metric_columns, "steps_to_target", "auc",
        "still_improving", "backbone_init", "head_init", "data_order", "data", "train_seconds", "seconds_per_step",
        "seconds_to_target", "torch_threads", "skipped_steps", "resumed", "error",
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
                "data": data_content_fingerprint(r),
                "selected_step": r.selected.get("step"),
                "still_improving": r.improving.get("flag"),
                "torch_threads": r.environment.get("torch_threads"),
                "train_seconds": r.train_seconds,
                "seconds_per_step": r.seconds_per_step,
                "skipped_steps": r.skipped_steps,
                "resumed": r.resumed,
                "error": r.error,
            }
            for m in [metric, *others]:
                row[f"final_{m}"], row[f"best_{m}"] = r.final.get(m), r.best.get(m)
            for m in tests:
                row[m] = r.test.get(m)
            rows.append(row)
    return columns, rows


def report_markdown(
    comparison: dict[str, Any],
    runs: Runs,
    fairness: FairnessResult,
    stats: ComparisonStats,
    plot_paths: list[Path],
    outside: Sequence[tuple[str, int]] = (),
    tuning: tuple[TuneSpec, dict[str, LossTuning]] | None = None,
    predictions: dict[tuple[str, int], dict[str, Any]] | None = None,
    root: Path | None = None,
) -> str:
    """The text of report.md."""
    lines: list[str] = []
    if not fairness.ok:
        lines += _warning(fairness)
    if worse_than_mean(stats):
        lines += [
            "> **WARNING: every loss predicts worse than the mean of the targets** (R² <= 0). The verdicts below "
            "compare failures: check the target's scale (`data.standardize_target`), the budget and the learning "
            "rate before reading them.",
            "",
        ]
    lines += [f"# Loss comparison: {comparison['name']}", ""]
    lines += verdict_section(stats)  # the answer first; provenance, methods and every table follow
    lines += budget_lines([r for r, _ in runs])
    lines += _setup_section(comparison, runs, fairness, stats)
    lines += teacher_section(root, comparison) if root is not None else []
    if tuning is not None:
        plot = next((p for p in plot_paths if p.name == TUNING_PNG), None)
        lines += tuning_section(*tuning, [int(s) for s in comparison["seeds"]], plot)
    lines += data_section(comparison)
    own_scale = sorted({m for r, _ in runs for m in (*r.final, *r.best) if m in OWN_SCALE})
    lines += _per_loss_section(stats, own_scale)
    imbalance = ((comparison.get("data") or {}).get("train") or {}).get("imbalance")
    if imbalance and predictions:
        counts = imbalance.get("after") or []
        lines += per_class_section(predictions, stats.losses, [f"{i} (n={n})" for i, n in enumerate(counts)])
    lines += _paired_section(stats)
    lines += _ranking_section(stats)
    told = conditions(comparison, runs, stats)
    if tuning is not None:
        told["tuning"] = tuning_conditions(*tuning)
    lines += ["## Outcome", "", " ".join(outcome_sentences(stats, told)), ""]
    lines += _unfinished_section(comparison, runs, outside, stats)
    lines += ["## Plots", ""]
    titles = {
        plotting.TARGET_PNG: f"{stats.metric} vs step",
        plotting.TRAIN_LOSS_PNG: "training loss per loss",
        plotting.GRAD_NORM_PNG: "gradient norm vs step",
        RELIABILITY_PNG: "reliability diagrams (test), a panel per loss",
    }
    for path in plot_paths:
        if path.name == TUNING_PNG:  # shown in the tuning section
            continue
        title = titles.get(path.name) or path.stem
        lines += [f"![{title}]({path.as_posix()})", ""]
        if path.name == RELIABILITY_PNG:
            lines += [reliability_caption(class_predictions(predictions or {}, stats.losses)), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def conditions(comparison: dict[str, Any], runs: Runs, stats: ComparisonStats) -> dict[str, Any]:
    """What the verdicts hold under, from comparison.json and the records (for the outcome sentences)."""
    finished = [r for r, _ in runs if r.status == "finished"]
    recipe = comparison.get("recipe") or {}
    test = (comparison.get("data") or {}).get("test") or {}
    return {
        "steps": max((r.steps for r in finished), default=None),
        "epochs": max((r.epochs for r in finished), default=None) or comparison["budget"].get("max_epochs"),
        "optimizer": comparison.get("optimizer") or recipe.get("optimizer"),
        "schedule": comparison.get("schedule") or recipe.get("schedule"),
        "tuned": bool(comparison.get("tuned")),
        "seeds": max((s.n for s in stats.summaries.values()), default=0),
        "select": comparison.get("select") or recipe.get("select"),
        "test_rows": test.get("rows") if stats.headline.startswith("test/") else None,
    }


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


def _backbone_text(runs: Runs) -> str:
    """``my_pkg.CNN(channels=32), 81.2k parameters, F=64 (out_features)``, from the records (one backbone a
    comparison: the fairness check refuses runs whose backbone differs within a seed)."""
    from lossbench.models.custom import count_text

    seen = sorted(
        {
            (b["name"], b.get("parameters"), b.get("width"), b.get("width_from"), b.get("pretrained_sha256"))
            for b in (r.backbone for r, _ in runs)
            if b.get("name")
        },
        key=repr,
    )
    if not seen:
        return "not recorded (a results folder from an older lossbench)"
    return "; ".join(
        f"{name}, {count_text(int(n)) if n is not None else '?'} parameters, features F={width} ({how})"
        + (f", pretrained weights sha256 `{str(sha)[:12]}`" if sha else "")
        for name, n, width, how, sha in seen
    )


def _setup_section(
    comparison: dict[str, Any], runs: Runs, fairness: FairnessResult, stats: ComparisonStats
) -> list[str]:
    heads: dict[str, str] = {}
    for r, _ in runs:
        heads.setdefault(r.loss, _head_text(r))
    losses = ", ".join(
        f"`{loss}`" + (" (baseline)" if loss == stats.baseline else "") + (f" = {heads[loss]}" if loss in heads else "")
        for loss in stats.losses
    )
    budget = ", ".join(f"{k}={_plain(v)}" for k, v in comparison["budget"].items())
    versions = ", ".join(f"{k} {v}" for k, v in sorted(comparison["versions"].items()))
    opt = comparison.get("optimizer") or (comparison.get("recipe") or {}).get("optimizer") or {}
    select = comparison.get("select") or (comparison.get("recipe") or {}).get("select") or "final"
    lines = [
        "## What was compared",
        "",
        f"- Recipe: `{comparison['name']}` (recipe hash `{str(comparison['recipe_hash'])[:12]}`, "
        f"setup hash `{str(comparison['setup_hash'])[:12]}`, which includes the data's contents)",
        f"- Losses: {losses}",
        f"- Backbone: {_backbone_text(runs)}",
        f"- Seeds: {', '.join(str(s) for s in comparison['seeds'])}",
        f"- Budget: {budget or 'not given'}",
    ]
    tune = (comparison.get("recipe") or {}).get("tune")
    if opt and tune:
        lines.append(
            f"- Tuned per loss, {tune['trials']} trials each (the same points for every loss): "
            f"{', '.join(f'`{p}`' for p in tune['space'])}; {opt.get('name')}, the rest as the recipe says "
            f"(lr {_plain(opt.get('lr'))}, weight decay {_plain(opt.get('weight_decay'))} where not tuned); "
            "the chosen values are in the Tuning section"
        )
    elif opt:
        lines.append(
            f"- Learning rate: {opt.get('name')} lr {_plain(opt.get('lr'))}, weight decay "
            f"{_plain(opt.get('weight_decay'))}, shared by every loss"
            + (" (tuned)" if comparison.get("tuned") else " and not tuned per loss")
        )
    lines += [
        f"- Headline: {_headline_text(stats, select)}",
        f"- Target: {_target_text(stats)}",
        f"- Environment: {_environment_text(runs)}",
        f"- Execution: {_execution_text(runs)}",
        f"- Versions: {versions or 'not recorded'}",
        f"- Created: {comparison['created']}",
        "- Fairness check (initial weights, setup hash, batch order of every epoch and the contents of every split, "
        "from the run records):",
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
            data = " and data" if any(r.fingerprints.get("data") for r, _ in runs if r.seed == seed) else ""
            lines.append(
                f"  - seed {seed}: {runs_text} of seed {seed} share the same initial weights{data} and batch order"
            )
    n_used = sum(s.n for s in stats.summaries.values())
    lines += [
        "",
        f"Statistics use the {n_used} finished run(s) that passed the fairness check. Values are mean ± half-width "
        "of the 95% Student-t interval over seeds (no interval with one seed). Each loss is compared with the "
        "baseline by a two-sided paired t-test over the seeds both finished (none when the difference is the "
        "same on every seed, up to float32 rounding: there is no spread to test) and, for the headline metric, "
        "by a test over the pooled test examples (exact McNemar for accuracy, a paired bootstrap over examples "
        "and seeds that recomputes the metric otherwise). " + _families_text(stats) + " The adjusted p-values "
        "decide what is called significant (raw p-values stay in the tables).",
        "",
    ]
    return lines


def _families_text(stats: ComparisonStats) -> str:
    """The correction families, as the method line and the paired table state them."""
    return (
        f"Primary family: {stats.headline_label} against the baseline, Holm over the losses, separately for "
        f"the seed-level ({stats.primary_size} tested) and the per-example test ({stats.primary_examples_size} "
        "tested), and the larger of a loss's two p-values, Holm-adjusted over the losses: a headline verdict "
        "needs all three below 0.05 (an intersection-union test). Secondary family: steps to target and AUC "
        f'against the baseline, Holm over their {stats.secondary_size} tests together, labelled "secondary". The '
        "ranking's tests of neighbours are a family of their own."
    )


def _headline_text(stats: ComparisonStats, select: str) -> str:
    if not stats.headline.startswith("test/"):
        return (
            f"final {stats.metric} on validation (these records hold no test metrics, so the numbers below were "
            "also used to make choices: treat them as optimistic)"
        )
    weights = (
        "the weights of the best validation evaluation of " + stats.metric + " (step 0 excluded)"
        if select == "best"
        else "the final weights"
    )
    return f"{stats.headline}, evaluated once per run on the test split with {weights}"


def _execution_text(runs: Runs) -> str:
    """How the runs were trained (``record.execution``): fused arrays, sequential runs and why a loss fell back."""
    fused = sorted(
        {(r.seed, tuple(r.execution.get("members") or ())) for r, _ in runs if r.execution.get("executor") == "fused"}
    )
    sequential = [r for r, _ in runs if r.execution.get("executor", "sequential") == "sequential"]
    parts = []
    if fused:
        sizes = sorted({len(members) for _, members in fused})
        parts.append(
            f"{len(fused)} fused array(s) (each seed's losses trained in lockstep as one model, "
            f"{'/'.join(map(str, sizes))} members; wall times are the array's)"
        )
    if sequential:
        parts.append(f"{len(sequential)} sequential run(s)")
    fallbacks = sorted({f"{r.loss} ({r.execution['fallback']})" for r in sequential if r.execution.get("fallback")})
    if fallbacks:
        parts.append("fell back to sequential: " + "; ".join(fallbacks))
    return ", ".join(parts) if parts else "not recorded"


def _environment_text(runs: Runs) -> str:
    envs = [r.environment for r, _ in runs if r.environment]
    if not envs:
        return "not recorded"
    parts = []
    for key, name in (
        ("accelerator", "device"),
        ("devices", "devices"),
        ("torch_threads", "torch threads"),
        ("precision", "precision"),
        ("deterministic", "deterministic"),
    ):
        values = sorted({str(e.get(key)) for e in envs})
        parts.append(f"{name} {'/'.join(values)}")
    return ", ".join(parts) + "; seconds are machine-dependent and never decide a verdict"


def _per_loss_section(stats: ComparisonStats, own_scale: list[str]) -> list[str]:
    m, h = stats.metric, stats.headline
    tested = h.startswith("test/")
    header = (
        ["loss", "seeds"]
        + ([h] if tested else [])
        + [f"final {m}", f"best {m}", "steps to target", "AUC", "still improving", "irregular runs"]
    )
    rows = []
    for loss, s in stats.summaries.items():
        row = [_loss_name(loss, stats), str(s.n)] + ([_est(s.test[h])] if tested else [])
        row += [_est(s.final[m]), _est(s.best[m]), _reached(s.steps_to_target), _est(s.auc)]
        k, n = s.improving
        row.append(f"{k}/{n} seeds" if n else "—")
        row.append(f"{len(s.irregular)}/{s.n} seeds" if s.irregular else "—")
        rows.append(row)
    lines = ["## Results per loss", "", *_table(header, rows), ""]
    lines += [
        "Steps to target: mean over the seeds that reached the target, with how many did; a seed that never "
        "reached it is not averaged in. Best: over the evaluations after step 0. Still improving: seeds whose "
        f"validation {m} curve was still rising beyond its noise over the last third of the budget. Irregular runs: "
        "seeds that skipped optimizer steps or had non-finite validation values (kept in the statistics; see "
        '"Unfinished or irregular runs").',
        "",
    ]
    others = stats.test_metrics[1:]
    if others:
        header = ["loss"] + others
        rows = [[_loss_name(loss, stats)] + [_est(s.test[o]) for o in others] for loss, s in stats.summaries.items()]
        lines += ["Other test metrics (same weights):", "", *_table(header, rows), ""]
    val_others = stats.metrics[1:]
    if val_others:
        header = ["loss"] + [f"{kind} {o}" for o in val_others for kind in ("final", "best")]
        rows = [
            [_loss_name(loss, stats)] + [_est(getattr(s, kind)[o]) for o in val_others for kind in ("final", "best")]
            for loss, s in stats.summaries.items()
        ]
        lines += ["Other validation metrics:", "", *_table(header, rows), ""]
    header = ["loss", "s/step", "seconds to target"]
    rows = [
        [_loss_name(loss, stats), _num(s.seconds_per_step), _reached(s.seconds_to_target)]
        for loss, s in stats.summaries.items()
    ]
    lines += [
        "Time (machine-dependent: it varies with load and threads, so it is shown but never ranked):",
        "",
        *_table(header, rows),
        "",
    ]
    if own_scale:
        lines += [
            f"{', '.join(own_scale)}: each loss's own value, on its own scale, so not compared across losses "
            "(per run in results.csv).",
            "",
        ]
    return lines


def _paired_section(stats: ComparisonStats) -> list[str]:
    base = stats.baseline
    header = ["loss", "quantity", "seeds", f"mean diff (loss − {base})", "95% CI", "p", "p (Holm)"]
    rows = []
    names = ((PRIMARY, stats.headline_label), ("steps", "steps to target (secondary)"), ("auc", "AUC (secondary)"))
    for loss, results in stats.vs_baseline.items():
        for key, name in names:
            p = results[key]
            if p is None:
                why = "both reached the target on fewer than 2 seeds" if key == "steps" else "no common finished seed"
                rows.append([loss, name, "0" if key != "steps" else "<2", f"not compared ({why})", "—", "—", "—"])
            else:
                untested = f"— ({_untested(p)})" if p.p is None else None
                rows.append(
                    [
                        loss,
                        name,
                        str(p.n),
                        _signed(p.diff.mean),
                        _ci(p.diff),
                        untested or _p(p),
                        "—" if untested else _padj(p),
                    ]
                )
            if key == PRIMARY:
                verdict = stats.verdicts.get(loss)
                ex = verdict.examples if verdict is not None else None
                if verdict is not None and ex is not None:
                    low, high = (
                        (ex.detail or {}).get("ci", (None, None)) if isinstance(ex.detail, dict) else (None, None)
                    )
                    ci = f"[{_num(low)}, {_num(high)}]" if low is not None else "—"
                    rows.append(
                        [
                            loss,
                            f"{name}, per test example ({ex.method})",
                            f"{ex.n_seeds} × {ex.n_examples}",
                            _signed(ex.diff),
                            ci,
                            _pvalue(ex.p),
                            _pvalue(verdict.examples_p_adj),
                        ]
                    )
    lines = [f"## Paired comparison against the baseline ({base})", ""]
    if not rows:
        return lines + ["Only the baseline was compared.", ""]
    lines += [*_table(header, rows), ""]
    lines += [
        "A difference is loss minus baseline on the same seeds; a negative steps difference means the target "
        "was reached sooner. p: two-sided paired t-test over seeds (— with fewer than 2 seeds or when every "
        "difference is the same, with the reason), or the per-example test pooled over seeds. p (Holm): adjusted "
        f"within its family: the headline's over the losses (primary: {stats.primary_size} seed-level and "
        f"{stats.primary_examples_size} per-example tests, each row kind on its own), the rows marked secondary over "
        f"their {stats.secondary_size} tests. "
        "Significance needs p (Holm) < 0.05 (for the headline, in both its seed-level and its per-example row).",
        "",
    ]
    return lines


def _ranking_section(stats: ComparisonStats) -> list[str]:
    better = "higher" if stats.mode == "max" else "lower"
    header = ["rank", "loss", f"mean {stats.headline_label}", "difference to next", "vs next"]
    rows = []
    for e in stats.ranking:
        if e.next_loss is None:
            diff, flag = "—", "—"
        elif e.vs_next is None:
            diff, flag = "—", f"not tested: no common finished seed with {e.next_loss}"
        else:
            diff = f"{_signed(e.vs_next.diff.mean)} vs {e.next_loss}"
            if e.separated:
                flag = f"significant (Holm p = {_padj(e.vs_next)})"
            elif e.vs_next.p is None:
                flag = f"not significant: untested ({_untested(e.vs_next)})"
            else:
                flag = f"not significant (p = {_p(e.vs_next)}, Holm {_padj(e.vs_next)})"
        rows.append([str(e.rank), _flagged_name(e.loss, stats), _num(e.mean), diff, flag])
    lines = [
        "## Ranking",
        "",
        f"By mean {stats.headline_label} ({better} is better); neighbours are tested like the "
        "baseline comparisons (seeds and test examples, Holm over the ranking's tests).",
        "",
    ]
    if rows:
        lines += [*_table(header, rows), ""]
    if stats.unranked:
        lines += [f"Not ranked (no finished run that passed the fairness check): {', '.join(stats.unranked)}.", ""]
    return lines


def _unfinished_section(
    comparison: dict[str, Any], runs: Runs, outside: Sequence[tuple[str, int]], stats: ComparisonStats | None = None
) -> list[str]:
    """Runs that are missing, failed or unfinished (excluded), and finished runs that were irregular (kept)."""
    by_key = {(r.loss, r.seed): (r, rows) for r, rows in runs}
    irregular = stats.irregular if stats is not None else {}
    items, unfinished, flagged, files = [], 0, 0, False
    for loss in comparison["losses"]:
        for seed in comparison["seeds"]:
            r, rows = by_key.get((loss, int(seed)), (None, []))
            if r is None:
                items.append(f"- {loss}, seed {seed}: missing (no run record)")
                unfinished += 1
            elif r.status == "failed":
                error = (r.error or "no error recorded").strip().splitlines() or ["no error recorded"]
                items.append(f"- {loss}, seed {seed}: failed after {steps_done(r, rows)} steps: {error[-1]}")
                unfinished += 1
            elif r.status != "finished":
                items.append(
                    f"- {loss}, seed {seed}: {r.status} ({steps_done(r, rows)} steps done, resumed {r.resumed} times)"
                )
                unfinished += 1
            elif irregular.get((loss, int(seed))):
                found = irregular[(loss, int(seed))]
                items.append(f"- {loss}, seed {seed}: {'; '.join(i.text for i in found)}")
                flagged += any(i.flags for i in found)
                files = files or not all(i.flags for i in found)
    lines = ["## Unfinished or irregular runs", ""]
    total = len(comparison["losses"]) * len(comparison["seeds"])
    lines += items or [f"None: all {total} planned runs finished."]
    lines.append("")
    if unfinished:
        lines += ["Missing, failed and unfinished runs are excluded from the statistics.", ""]
    if flagged:
        # kept, not excluded: see compare_losses (dropping the seeds where a loss went wrong flatters that loss)
        lines += [
            "Finished runs that skipped optimizer steps or had non-finite validation values are kept in the "
            "statistics (dropping them would judge a loss only on the seeds where it behaved) and their loss "
            "is flagged in the tables, the ranking and the outcome.",
            "",
        ]
    if files:
        lines += [
            "A missing or truncated metrics.csv only affects the plotted curves: every number above comes "
            "from the run records.",
            "",
        ]
    if outside:
        shown = ", ".join(f"{loss} seed {seed}" for loss, seed in outside)
        lines += [f"Run records outside the plan in comparison.json (ignored): {shown}.", ""]
    restarted = [f"{r.loss} seed {r.seed}: {'; '.join(r.restarts)}" for r, _ in runs if r.restarts]
    if restarted:
        lines += [f"Runs that started over from their initial weights: {' | '.join(restarted)}.", ""]
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


def _flagged_name(loss: str, stats: ComparisonStats) -> str:
    """The loss's name, with how many of its seeds were irregular (the ranking must not hide them)."""
    s = stats.summaries.get(loss)
    flag = f" (irregular: {len(s.irregular)}/{s.n} seeds)" if s is not None and s.irregular else ""
    return _loss_name(loss, stats) + flag

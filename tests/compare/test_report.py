import json

import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from lossbench.compare.analysis.fairness import data_fingerprint
from lossbench.compare.analysis.stats import compare_losses
from lossbench.compare.report.outcome import outcome_sentences
from lossbench.compare.report.render import render_report
from lossbench.compare.store.records import read_csv
from tests.compare.fake import AUC, FINAL, LOSSES, SEEDS, TARGET, make_folder, make_record, write_comparison

PNG = b"\x89PNG\r\n\x1a\n"
COLUMNS = [
    "loss", "seed", "status", "fairness", "selected_step",
    "final_val/accuracy", "best_val/accuracy", "final_val/ece", "best_val/ece",
    "steps_to_target", "auc", "still_improving", "backbone_init", "head_init", "data_order", "data",
    "train_seconds", "seconds_per_step", "seconds_to_target", "torch_threads", "skipped_steps", "resumed", "error",
]  # fmt: skip


def _p(a, b):
    return f"{sps.ttest_rel(a, b).pvalue:.3g}"


def _fingerprints(loss, seed, **changes):
    return {**make_record(loss, seed).fingerprints, **changes}


def test_report_of_a_complete_comparison(tmp_path):
    root = make_folder(tmp_path)
    path = render_report(root)
    assert path == root / "report.md"

    rows = read_csv(root / "results.csv")
    assert list(rows[0]) == COLUMNS and len(rows) == 9
    assert [(r["loss"], r["seed"]) for r in rows[:4]] == [("ce", 0), ("ce", 1), ("ce", 2), ("focal", 0)]
    ce0 = rows[0]
    assert ce0["status"] == "finished" and ce0["fairness"] == "ok"
    assert ce0["final_val/accuracy"] == 0.8 and ce0["best_val/accuracy"] == 0.82
    assert ce0["steps_to_target"] is None and rows[1]["steps_to_target"] == 100
    assert ce0["backbone_init"] == "backbone-0" and ce0["head_init"] == "head-0"
    assert ce0["data_order"] == data_fingerprint(make_record("ce", 0))

    text = path.read_text()
    assert "WARNING" not in text
    assert text.startswith("# Loss comparison: toy\n")
    for seed in (0, 1, 2):
        assert f"all 3 runs of seed {seed} share the same initial weights and batch order" in text
    assert "- Budget: eval_every_n_steps=20, max_epochs=2, max_steps=none" in text
    assert "- Headline: final val/accuracy on validation (these records hold no test metrics" in text
    # per-loss table: mean ± t half-width (0.02 sd over 3 seeds -> 0.0497), steps as "k/n reached"
    assert "| focal | 3 | 0.92 ± 0.05 | 0.9267 ± 0.038 | 46.67 (3/3 reached) | 0.7433 ± 0.1 | — |" in text
    assert "| ce (baseline) | 3 | 0.85 ± 0.12 | 0.86 ± 0.099 | 90 (2/3 reached) |" in text
    assert "| mse | 3 | 0.5167 ± 0.038 | 0.5233 ± 0.063 | not reached (0/3) |" in text
    # seconds are shown apart, as machine-dependent, and never ranked
    assert "Time (machine-dependent" in text and "| focal | 0.1 | 4.667 (3/3 reached) |" in text
    # paired comparisons against ce: raw p, and Holm within each family decides: the headline of focal and mse
    # (primary, over the 2 losses), steps to target and AUC (secondary, over the 3 tested)
    p_final = _p(FINAL["focal"], FINAL["ce"])
    p_steps = _p([40, 40], [100, 80])
    primary = {"focal final": float(p_final), "mse final": float(_p(FINAL["mse"], FINAL["ce"]))}
    secondary = {
        "focal steps": float(p_steps),
        "focal auc": float(_p(AUC["focal"], AUC["ce"])),
        "mse auc": float(_p(AUC["mse"], AUC["ce"])),
    }
    holm = {
        **dict(zip(primary, multipletests(list(primary.values()), method="holm")[1])),
        **dict(zip(secondary, multipletests(list(secondary.values()), method="holm")[1])),
    }
    assert holm["focal final"] > 0.05 and holm["mse final"] < 0.05  # hand-check of what decides below
    assert (
        f"| focal | final val/accuracy | 3 | +0.07 | [-0.004524, 0.1445] | {p_final} | {holm['focal final']:.3g} |"
    ) in text
    assert (
        f"| focal | steps to target (secondary) | 2 | -50 | [-177.1, 77.06] | {p_steps} | {holm['focal steps']:.3g} |"
    ) in text
    assert "| mse | AUC (secondary) | 3 |" in text and "| mse | steps to target (secondary) | <2 | not compared" in text
    assert "the headline's over the losses (primary: 2 seed-level and 0 per-example tests" in text
    assert "the rows marked secondary over their 3 tests" in text
    # the method line states the families
    assert (
        "Primary family: final val/accuracy against the baseline, Holm over the losses, separately for the "
        "seed-level (2 tested) and the per-example test (0 tested)"
    ) in text
    assert "Secondary family: steps to target and AUC against the baseline, Holm over their 3 tests together" in text
    # ranking: its own family of neighbour tests (focal-ce, ce-mse)
    rank = multipletests([float(p_final), float(_p(FINAL["ce"], FINAL["mse"]))], method="holm")[1]
    assert f"| 1 | focal | 0.92 | +0.07 vs ce | not significant (p = {p_final}, Holm {rank[0]:.3g}) |" in text
    assert f"| 2 | ce (baseline) | 0.85 | +0.3333 vs mse | significant (Holm p = {rank[1]:.3g}) |" in text
    # generated sentences: conditions first, Holm decides, low power said
    assert "These verdicts hold under a budget of 120 optimizer steps (2 epochs), 3 seeds" in text
    assert (
        f"focal ranks first (0.92, next ce with 0.85); the gap is within noise (seeds: p = {p_final}, "
        f"Holm {rank[0]:.3g})."
    ) in text
    assert "mse has a significantly worse final val/accuracy than ce (lower by 0.3333" in text
    assert "Differences in final val/accuracy from ce are within noise for focal" in text
    assert (
        "focal reached val/accuracy >= 0.85 56% sooner than ce (median 40 vs 90 optimizer steps on the 2 seeds where "
        f"both reached it; secondary: p = {p_steps}, Holm {holm['focal steps']:.3g}, within noise)." in text
    )
    assert "With 3 seeds (fewer than 5) the comparison has low power" in text
    assert "None: all 9 planned runs finished." in text
    for name in ("target_metric", "train_loss", "grad_norm"):
        assert f"(plots/{name}.png)" in text
        assert (root / "plots" / f"{name}.png").read_bytes().startswith(PNG)


def test_rendering_twice_gives_identical_bytes(tmp_path):
    root = make_folder(tmp_path)
    render_report(root)
    names = ["report.md", "results.csv", "plots/target_metric.png", "plots/train_loss.png", "plots/grad_norm.png"]
    first = {name: (root / name).read_bytes() for name in names}
    render_report(root)
    assert {name: (root / name).read_bytes() for name in names} == first


def test_unfair_run_is_flagged_and_excluded(tmp_path):
    changes = {("focal", 1): {"fingerprints": _fingerprints("focal", 1, backbone_init="other")}}
    root = make_folder(tmp_path, changes=changes)
    text = render_report(root).read_text()
    assert text.startswith("> **WARNING: the fairness check failed.**")
    warning = text.split("# Loss comparison")[0]
    assert "Seed 1: 'focal' has a different initial backbone weights (backbone_init)" in warning
    assert "marked invalid" in warning and "focal seed 1" in warning
    assert "seed 1: FAILED: runs focal differ" in text
    assert "all 3 runs of seed 0 share the same initial weights and batch order" in text
    rows = {(r["loss"], r["seed"]): r for r in read_csv(root / "results.csv")}
    assert rows[("focal", 1)]["fairness"] == "invalid" and rows[("ce", 1)]["fairness"] == "ok"
    # the paired test of focal against ce uses seeds 0 and 2 only
    assert "| focal | final val/accuracy | 2 | +0.07 |" in text
    assert _p([0.9, 0.94], [0.8, 0.9]) in text
    assert "| focal | 2 | 0.92 ± 0.25 |" in text


def test_data_order_and_head_init_mismatches_reported(tmp_path):
    changes = {
        ("mse", 0): {"fingerprints": _fingerprints("mse", 0, data_order={"0": "order-0-0", "1": "shuffled"})},
        ("ce", 1): {"fingerprints": _fingerprints("ce", 1, head_init="other")},
        ("focal", 2): {"fingerprints": _fingerprints("focal", 2, head_shape="(1, 8)", head_init="x")},  # fine
    }
    text = render_report(make_folder(tmp_path, changes=changes)).read_text()
    warning = text.split("# Loss comparison")[0]
    assert "Seed 0: 'mse' has a different batch order of epoch 1 (data_order)" in warning
    assert "Seed 1: 'ce' has a different initial head weights (head_init) among heads of shape (5, 8)" in warning
    assert "Seed 2" not in warning  # heads of another shape may differ
    rows = {(r["loss"], r["seed"]): r["fairness"] for r in read_csv(tmp_path / "results.csv")}
    assert [k for k, v in rows.items() if v == "invalid"] == [("ce", 1), ("mse", 0)]


def test_failed_unfinished_and_missing_runs_listed_and_excluded(tmp_path):
    changes = {
        ("focal", 2): {"status": "failed", "error": "Traceback (most recent call last):\nRuntimeError: NaN loss"},
        ("mse", 1): {"status": "running", "steps": 40},
        ("ce", 2): None,  # no record at all
    }
    root = make_folder(tmp_path, changes=changes)
    text = render_report(root).read_text()
    assert "- ce, seed 2: missing (no run record)" in text
    assert "- focal, seed 2: failed after 120 steps: RuntimeError: NaN loss" in text
    assert "- mse, seed 1: running (40 steps done, resumed 0 times)" in text
    assert "| ce (baseline) | 2 | 0.825 ± 0.32 |" in text and "| focal | 2 | 0.91 ± 0.13 |" in text
    assert "| focal | final val/accuracy | 2 | +0.085 |" in text  # seeds 0 and 1
    outcome = text.split("## Outcome")[1].split("##")[0]
    assert "sooner" not in outcome  # focal and ce both reached the target on one finished seed only
    assert "Steps to val/accuracy >= 0.85 are not compared with ce for focal, mse" in outcome
    rows = {(r["loss"], r["seed"]): r for r in read_csv(root / "results.csv")}
    assert rows[("ce", 2)]["status"] == "missing" and rows[("ce", 2)]["final_val/accuracy"] is None
    assert rows[("focal", 2)]["error"].endswith("NaN loss")


def test_nothing_to_conclude_without_finished_runs(tmp_path):
    changes = {(loss, seed): {"status": "pending"} for loss in ("ce", "focal") for seed in (0, 1, 2)}
    root = make_folder(tmp_path, losses=["ce", "focal"], changes=changes)
    text = render_report(root).read_text()
    assert "nothing can be concluded" in text
    assert "Not ranked (no finished run that passed the fairness check): ce, focal." in text
    assert (root / "plots" / "target_metric.png").read_bytes().startswith(PNG)


def test_not_a_comparison_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a lossbench comparison folder") as info:
        render_report(tmp_path)
    assert str(tmp_path / "comparison.json") in str(info.value)
    assert not (tmp_path / "report.md").exists()


def test_incomplete_comparison_json(tmp_path):
    write_comparison(tmp_path)
    data = json.loads((tmp_path / "comparison.json").read_text())
    del data["target"]
    (tmp_path / "comparison.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="missing keys \\['target'\\]"):
        render_report(tmp_path)
    data["target"], data["baseline"] = {"metric": "val/accuracy", "mode": "max", "threshold": 0.9}, "nope"
    (tmp_path / "comparison.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="baseline"):
        render_report(tmp_path)


def test_own_loss_value_is_not_compared_across_losses(tmp_path):
    changes = {
        (loss, seed): {"final": {**make_record(loss, seed).final, "val/loss": 1.0 + seed}}
        for loss in ("ce", "focal")
        for seed in (0, 1, 2)
    }
    root = make_folder(tmp_path, losses=["ce", "focal"], changes=changes)
    text = render_report(root).read_text()
    assert "final val/loss" not in text and "val/loss: each loss's own value" in text
    assert read_csv(root / "results.csv")[0]["final_val/loss"] == 1.0


def test_sentences_follow_the_mode_and_equal_steps():
    records = [make_record(loss, seed) for loss in LOSSES for seed in SEEDS]
    for r in records:
        if r.loss == "focal":
            r.steps_to_target = {0: 70, 1: 100, 2: 80}[r.seed]  # ce: never, 100, 80 -> identical where both reached
    low = compare_losses(records, "ce", target={**TARGET, "mode": "min"}, losses=LOSSES)
    text = " ".join(outcome_sentences(low))
    assert text.startswith("By mean final val/accuracy, mse ranks first (0.5167, next ce with 0.85)")
    assert "mse has a significantly better final val/accuracy than ce (lower by 0.3333" in text
    assert "focal has a significantly" not in text  # p ~ 0.056: within noise
    assert "within noise for focal" in text
    high = " ".join(outcome_sentences(compare_losses(records, "ce", target=TARGET, losses=LOSSES)))
    assert "focal reached val/accuracy >= 0.85 at the same median step as ce" in high
    assert "untested: identical on every seed" in high and "sooner" not in high


def test_report_warns_when_every_loss_is_worse_than_the_mean(tmp_path):
    def r2(values):
        return {
            (loss, seed): {"final": {**make_record(loss, seed).final, "val/r2": values[loss]}}
            for loss in LOSSES
            for seed in SEEDS
        }

    bad = render_report(make_folder(tmp_path / "bad", changes=r2({"ce": -110.0, "focal": -0.2, "mse": 0.0})))
    assert "WARNING: every loss predicts worse than the mean of the targets" in bad.read_text()
    good = render_report(make_folder(tmp_path / "good", changes=r2({"ce": -110.0, "focal": 0.4, "mse": 0.0})))
    assert "worse than the mean" not in good.read_text()


def test_examples_without_seed_consistency_are_not_called_significant():
    """A big per-example difference that flips across seeds: not significant, and said so apart from "noise"."""
    import numpy as np

    test = {"ce": [0.8, 0.85, 0.9], "focal": [0.95, 0.8, 0.99], "mse": [0.81, 0.86, 0.9]}
    records = [
        make_record(loss, seed, test={"test/accuracy": test[loss][i]})
        for loss in LOSSES
        for i, seed in enumerate(SEEDS)
    ]
    target = np.arange(300) % 5
    right = {"target": target, "label": target}
    half = {"target": target, "label": np.where(np.arange(300) < 150, target, (target + 1) % 5)}
    predictions = (
        {("focal", s): right for s in SEEDS} | {("ce", s): half for s in SEEDS} | {("mse", s): half for s in SEEDS}
    )
    stats = compare_losses(records, "ce", target=TARGET, losses=LOSSES, predictions=predictions)
    verdict = stats.verdicts["focal"]
    assert verdict.examples.p < 1e-10 and verdict.seeds.p > 0.05 and not verdict.significant
    text = " ".join(outcome_sentences(stats))
    assert "The test/accuracy of focal (+0.06333; examples Holm <0.001, seeds Holm " in text
    assert "differs from ce on the pooled test examples but not consistently across seeds" in text
    assert "within noise for mse" in text and "significantly" not in text

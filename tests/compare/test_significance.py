"""Example-level tests, Holm's correction and the still-improving flag, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassF1Score
from torchmetrics.regression import R2Score

from lossbench.compare.analysis.curves import still_improving
from lossbench.compare.analysis.significance import SCORES, example_level_test, holm, mcnemar_pooled, paired_bootstrap
from lossbench.compare.execution.evaluate import metrics_from_predictions
from lossbench.metrics import MeanTargetNLL, metric_specs


def test_holm_by_hand_and_none_kept_out_of_the_family():
    # sorted 0.01, 0.02, 0.04 over m = 3: 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert holm([0.04, None, 0.01, 0.02]) == pytest.approx([0.04, None, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 2 * 0.5, then max(1.0, 0.9): capped at 1
    assert holm([None, None]) == [None, None] and holm([]) == []


def test_holm_is_statsmodels_holm():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 7, 20):
        for _ in range(50):
            p = rng.uniform(0, 1, m) ** rng.uniform(1, 6)  # many small ones too
            if m > 2:
                p[rng.integers(m)] = p[rng.integers(m)]  # ties
            assert holm(list(p)) == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-15)


def _class_preds(target, correct):
    """Labels equal to the target where ``correct``, else the next class (3 classes)."""
    return {"target": target, "label": np.where(correct, target, (target + 1) % 3)}


def test_mcnemar_pooled_matches_the_exact_binomial_by_hand():
    target = np.arange(60) % 3
    # seed 0: a alone right on rows 0-4, b alone right on row 5; seed 1: a alone on 6-8, b alone on 9
    a0, b0 = np.ones(60, bool), np.ones(60, bool)
    a0[5], b0[:5] = False, False
    a1, b1 = np.ones(60, bool), np.ones(60, bool)
    a1[9], b1[6:9] = False, False
    test = mcnemar_pooled(
        [_class_preds(target, a0), _class_preds(target, a1)], [_class_preds(target, b0), _class_preds(target, b1)]
    )
    assert (test.detail["a_only"], test.detail["b_only"]) == (8, 2)
    # two-sided exact: 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * (1 + 10 + 45) / 1024
    assert test.p == pytest.approx(2 * 56 / 1024)
    assert test.diff == pytest.approx(((5 - 1) / 60 + (3 - 1) / 60) / 2)
    assert (test.n_seeds, test.n_examples) == (2, 60)


def test_a_gap_of_a_few_test_rows_is_not_significant():
    """The reported case: 2-4 of 540 test rows apart; a seed-level t-test said p = 0.035, McNemar says no."""
    target = np.arange(540) % 3
    a, b = np.ones(540, bool), np.ones(540, bool)
    b[:3], a[3] = False, False  # a alone right on 3 rows, b alone on 1
    test = example_level_test("accuracy", [_class_preds(target, a)] * 3, [_class_preds(target, b)] * 3)
    assert test.method.startswith("McNemar") and test.p > 0.1  # 9 vs 3 discordant rows pooled over 3 seeds


def test_no_discordant_rows_gives_p_one():
    target = np.arange(30) % 3
    same = _class_preds(target, np.arange(30) % 2 == 0)
    assert mcnemar_pooled([same], [same]).p == 1.0


def _proba(rng, target, sharp):
    logits = rng.normal(size=(len(target), 3))
    logits[np.arange(len(target)), target] += sharp
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True)


def test_bootstrap_point_estimates_equal_torchmetrics():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 300)
    a = [{"target": target, "proba": (p := _proba(rng, target, 2.0)), "label": p.argmax(-1)} for _ in range(2)]
    b = [{"target": target, "proba": (p := _proba(rng, target, 0.5)), "label": p.argmax(-1)} for _ in range(2)]

    def f1(pred):
        return MulticlassF1Score(3, average="macro")(torch.from_numpy(pred["label"]), torch.from_numpy(target)).item()

    def nll(pred):
        m = MeanTargetNLL()
        m.update(torch.from_numpy(pred["proba"]).float(), torch.from_numpy(target))
        return m.compute().item()

    for name, ref in (("f1_macro", f1), ("nll", nll)):
        test = paired_bootstrap(name, a, b, resamples=300)
        expected = np.mean([ref(x) - ref(y) for x, y in zip(a, b)])
        assert test.diff == pytest.approx(expected, abs=1e-5), name
        low, high = test.detail["ci"]
        assert low < test.diff < high and test.p < 0.01, name


def test_bootstrap_regression_r2_and_no_difference():
    rng = np.random.default_rng(1)
    target = rng.normal(50, 4, 200)
    good = {"target": target, "value": target + rng.normal(0, 1, 200)}
    bad = {"target": target, "value": target + rng.normal(0, 3, 200)}
    test = paired_bootstrap("r2", [good], [bad], resamples=400)
    r2 = [R2Score()(torch.from_numpy(p["value"]), torch.from_numpy(target)).item() for p in (good, bad)]
    assert test.diff == pytest.approx(r2[0] - r2[1], rel=1e-6) and test.p < 0.01
    same = paired_bootstrap("mse", [good], [good], resamples=200)
    assert same.diff == 0 and same.p == 1.0
    # a fixed generator: the same predictions give the same p-value (a report recomputes exactly)
    assert paired_bootstrap("r2", [good], [bad], resamples=400) == test


def test_example_level_test_scope_and_errors():
    target = np.arange(10) % 2
    pred = {"target": target, "proba": np.full(10, 0.5)}
    assert example_level_test("ece", [pred], [pred]).method.startswith("paired bootstrap")
    assert example_level_test("mse", [pred], [pred]) is None  # needs regression values
    with pytest.raises(ValueError, match="same test rows"):
        example_level_test("accuracy", [pred], [{"target": 1 - target, "proba": np.full(10, 0.5)}])
    with pytest.raises(ValueError, match="`metric` must be one of"):
        paired_bootstrap("calibration", [pred], [pred])


@pytest.mark.parametrize(
    "task,num_classes",
    [("multiclass", 3), ("binary", None), ("regression", None), ("distribution", 3), ("ordinal", 4), ("lm", 5)],
)
def test_every_task_metric_has_an_example_level_test(task, num_classes):
    """Issue 19, item 3: a headline (ECE, AUROC, perplexity, ...) is never decided by the seed-level test alone."""
    missing = sorted(set(metric_specs(task, num_classes)) - set(SCORES))
    assert not missing


def _direct(task, num_classes, pred, rows):
    """The metric computed directly (lossbench's torchmetrics) on the resampled rows, materialised."""
    taken = {k: torch.from_numpy(np.asarray(v)[rows]) for k, v in pred.items()}
    if "value" in taken:
        taken["label"] = taken.pop("value")
    return metrics_from_predictions(task, num_classes, taken, prefix="")


def _cases():
    rng = np.random.default_rng(3)
    n = 60
    target = rng.integers(0, 3, n)
    proba = _proba(rng, target, 1.0).astype(np.float32)
    proba[:4] = [1.0, 0.0, 0.0]  # confidence exactly 1.0: torchmetrics' bin of its own
    proba[4:8] = [0.6, 0.2, 0.2]  # confidence exactly on a bin edge (9/15)
    multiclass = {"target": target, "proba": proba, "label": proba.argmax(-1)}
    p1 = np.round(rng.random(n), 1).astype(np.float32)  # ties in the scores
    p1[:3] = 1.0
    binary = {"target": (rng.random(n) < p1).astype(np.float32), "proba": p1}
    soft = _proba(rng, target, 1.0).astype(np.float32)
    distribution = {"target": soft, "proba": _proba(rng, target, 0.5).astype(np.float32)}
    tokens = rng.integers(0, 5, (n, 4))
    tokens[rng.random((n, 4)) < 0.3] = -100  # padding and ignored positions
    lm = {
        "target": tokens,
        "target_proba": rng.random((n, 4)).astype(np.float32),
        "label": np.where(rng.random((n, 4)) < 0.5, tokens, 0),
    }
    return [
        ("multiclass", 3, multiclass, "ece"),
        ("binary", None, binary, "ece"),
        ("binary", None, binary, "auroc"),
        ("distribution", 3, distribution, "kl"),
        ("distribution", 3, distribution, "top1_agreement"),
        ("lm", 5, lm, "perplexity"),
        ("lm", 5, lm, "token_accuracy"),
    ]


@pytest.mark.parametrize("task,num_classes,pred,metric", _cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_bootstrap_resamples_recompute_the_metric_directly(task, num_classes, pred, metric):
    """Each resample's score is the metric recomputed on the resampled rows (rows drawn twice count twice)."""
    n = np.asarray(pred["target"]).shape[0]
    idx = np.random.default_rng(0).integers(0, n, (4, n))
    idx[0] = np.arange(n)  # the full split
    got = SCORES[metric](pred, idx)
    expected = [_direct(task, num_classes, pred, rows)[metric] for rows in idx]
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_bootstrap_of_ece_and_auroc_against_a_direct_difference():
    rng = np.random.default_rng(4)
    target = rng.integers(0, 2, 400).astype(np.float32)
    sharp = np.clip(target * 0.8 + 0.1 + rng.normal(0, 0.05, 400), 0, 1).astype(np.float32)
    flipped = np.where(rng.random(400) < 0.7, target, 1 - target)  # overconfident: 0.95 but right 70% of the time
    overconfident = (flipped * 0.9 + 0.05 + rng.normal(0, 0.01, 400)).astype(np.float32)
    a, b = [{"target": target, "proba": sharp}], [{"target": target, "proba": overconfident}]
    full = np.arange(400)
    for metric in ("ece", "auroc"):
        test = example_level_test(metric, a, b, mode="min" if metric == "ece" else "max")
        direct = _direct("binary", None, a[0], full)[metric] - _direct("binary", None, b[0], full)[metric]
        assert test.diff == pytest.approx(direct, abs=1e-6) and test.p < 0.01, metric
        assert test.detail["ci"][0] < test.diff < test.detail["ci"][1]
        assert example_level_test(metric, a, a).p == 1.0


STEPS = list(range(0, 130, 10))


@pytest.mark.parametrize("mode,sign", [("max", 1.0), ("min", -1.0)])
def test_still_improving_on_rising_and_flat_curves(mode, sign):
    rng = np.random.default_rng(0)
    rising = [0.5 + sign * 0.003 * s + 0.002 * rng.normal() for s in STEPS]
    result = still_improving(STEPS, rising, mode)
    assert result.flag is True and result.gain > 2 * result.noise and result.points == 4
    flat = [0.5 + 0.01 * rng.normal() for _ in STEPS]
    assert still_improving(STEPS, flat, mode).flag is False
    # improving in the other direction is not "still improving"
    assert still_improving(STEPS, [0.5 - sign * 0.003 * s for s in STEPS], mode).flag is False


def test_still_improving_ignores_step_zero_and_noise():
    # one jump from the untrained step 0, flat after: not improving
    assert still_improving(STEPS, [0.1] + [0.9] * 12, "max").flag is False
    # a small trend drowned in noise: not improving
    noisy = [0.9 + 0.0001 * s + (0.05 if i % 2 else -0.05) for i, s in enumerate(STEPS)]
    assert still_improving(STEPS, noisy, "max").flag is False
    assert still_improving([0, 10, 20, 30], [0.1, 0.2, 0.3, 0.4], "max").flag is None  # 3 trained points
    assert still_improving(STEPS, [None] * 13, "max").flag is None
    assert not math.isnan(still_improving(STEPS, [0.2 + 0.001 * s for s in STEPS], "max").noise)
    with pytest.raises(ValueError, match="`mode` must be 'max' or 'min'"):
        still_improving(STEPS, STEPS, "up")


def test_steps_to_target_counts_an_exact_hit_in_float32():
    """Issue 9, finding 7: accuracy 14/20 is stored as 0.699999988 and must reach a threshold of 0.7."""
    from lossbench.compare.analysis.summary import summarise_rows

    value = float(torch.tensor(14 / 20, dtype=torch.float32))
    assert value < 0.7
    rows = [{"step": 0, "wall_time": 0.0, "val/accuracy": 0.1}, {"step": 10, "wall_time": 1.0, "val/accuracy": value}]
    got = summarise_rows(rows, {"val/accuracy": "max"}, {"metric": "val/accuracy", "mode": "max", "threshold": 0.7})
    assert got["steps_to_target"] == 10
    low = summarise_rows(
        [{**r, "val/loss": 1 - r["val/accuracy"]} for r in rows],
        {"val/loss": "min"},
        {"metric": "val/loss", "mode": "min", "threshold": 0.3},
    )
    assert low["steps_to_target"] == 10  # 1 - 0.699999988 = 0.300000012 <= float32(0.3)


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro", "balanced_accuracy", "nll", "brier", "ece"])
def test_example_level_tests_leave_out_the_heads_ignore_index_as_the_test_metrics_do(metric):
    """A head with ignore_index=1: its rows of class 1 are out of the logged test metrics, so out of the tests."""
    gen = torch.Generator().manual_seed(3)
    target = torch.randint(0, 3, (90,), generator=gen)
    assert (target == 1).any()

    def preds():
        proba = torch.softmax(torch.randn(90, 3, generator=gen) * 2, -1)
        return {"target": target, "proba": proba, "label": proba.argmax(-1), "ignore_index": torch.tensor(1)}

    a, b = preds(), preds()
    logged = [metrics_from_predictions("multiclass", 3, p)[f"test/{metric}"] for p in (a, b)]
    test = example_level_test(metric, [{k: v.numpy() for k, v in a.items()}], [{k: v.numpy() for k, v in b.items()}])
    assert test.n_examples == int((target != 1).sum())
    assert test.diff == pytest.approx(logged[0] - logged[1], abs=1e-6)

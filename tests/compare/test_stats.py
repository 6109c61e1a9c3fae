import math

import numpy as np
import pytest
from scipy import stats as sps

from lossbench.compare.stats import compare_losses, mean_ci, paired
from tests.compare.fake import FINAL, LOSSES, SEEDS, TARGET, make_record


def _records(changes=None):
    changes = changes or {}
    return [make_record(loss, seed, **changes.get((loss, seed), {})) for loss in LOSSES for seed in SEEDS]


def _t_half(values):
    values = np.asarray(values, dtype=float)
    return sps.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))


def test_mean_ci_matches_t_interval():
    e = mean_ci([0.9, 0.92, 0.94])
    assert e.n == 3 and e.mean == pytest.approx(0.92)
    assert e.half_width == pytest.approx(4.302652729911275 * 0.02 / math.sqrt(3))
    assert (e.low, e.high) == pytest.approx(sps.t.interval(0.95, 2, loc=0.92, scale=0.02 / math.sqrt(3)))
    assert mean_ci([0.5]).mean == 0.5 and mean_ci([0.5]).low is None
    assert mean_ci([]).mean is None and mean_ci([None, 0.3]).n == 1


def test_per_loss_summary():
    result = compare_losses(_records(), "ce", target=TARGET, losses=LOSSES)
    focal, ce, mse = (result.summaries[k] for k in ("focal", "ce", "mse"))
    assert result.metrics == ["val/accuracy", "val/ece"]
    assert focal.n == 3 and focal.final["val/accuracy"].mean == pytest.approx(0.92)
    assert focal.final["val/accuracy"].half_width == pytest.approx(_t_half(FINAL["focal"]))
    assert focal.best["val/accuracy"].mean == pytest.approx((0.91 + 0.93 + 0.94) / 3)
    assert ce.final["val/ece"].mean == pytest.approx(0.12)
    # steps to target: ce reached on 2 of 3 seeds, the mean is over those two only
    assert (ce.steps_to_target.reached, ce.steps_to_target.n) == (2, 3)
    assert ce.steps_to_target.mean == pytest.approx(90) and ce.steps_to_target.label == "2/3 reached"
    assert ce.seconds_to_target.mean == pytest.approx(9.0)
    assert focal.steps_to_target.mean == pytest.approx(140 / 3)
    assert mse.steps_to_target.reached == 0 and mse.steps_to_target.mean is None
    assert focal.auc.mean == pytest.approx(2.23 / 3) and focal.ece == pytest.approx(0.06)
    assert focal.seconds_per_step == pytest.approx(0.1)


def test_paired_against_baseline():
    result = compare_losses(_records(), "ce", target=TARGET, losses=LOSSES)
    final = result.vs_baseline["focal"]["headline"]
    assert final.seeds == (0, 1, 2)
    assert final.diff.mean == pytest.approx(0.07)
    assert final.p == pytest.approx(sps.ttest_rel(FINAL["focal"], FINAL["ce"]).pvalue)
    assert final.diff.half_width == pytest.approx(_t_half([0.1, 0.07, 0.04]))
    assert not final.significant  # p ~ 0.056
    steps = result.vs_baseline["focal"]["steps"]  # both reached on seeds 1 and 2 only
    assert steps.seeds == (1, 2) and steps.diff.mean == pytest.approx(-50)
    assert steps.p == pytest.approx(sps.ttest_rel([40, 40], [100, 80]).pvalue)
    assert result.vs_baseline["mse"]["steps"] is None  # mse never reached the target
    auc = result.vs_baseline["focal"]["auc"]
    assert auc.p == pytest.approx(sps.ttest_rel([0.7, 0.75, 0.78], [0.6, 0.65, 0.7]).pvalue)
    assert result.vs_baseline["mse"]["headline"].significant


def test_paired_without_a_test():
    assert paired("x", "a", "b", [0], [1.0], [0.5]).p is None  # one seed
    same = paired("x", "a", "b", [0, 1], [1.0, 2.0], [0.5, 1.5])  # every difference equal
    assert same.p is None and same.diff.mean == pytest.approx(0.5) and not same.significant


def test_ranking_and_flags():
    result = compare_losses(_records(), "ce", target=TARGET, losses=LOSSES)
    assert [e.loss for e in result.ranking] == ["focal", "ce", "mse"]
    assert not result.ranking[0].separated  # focal vs ce: p >= 0.05
    assert result.ranking[1].separated  # ce vs mse
    assert result.ranking[2].next_loss is None
    low = compare_losses(_records(), "ce", target={**TARGET, "mode": "min"}, losses=LOSSES)
    assert [e.loss for e in low.ranking] == ["mse", "ce", "focal"]


def test_invalid_and_unfinished_runs_are_excluded():
    records = _records({("focal", 1): {"status": "failed"}, ("mse", 2): {"status": "running"}})
    result = compare_losses(records, "ce", target=TARGET, losses=LOSSES, invalid={("ce", 0)})
    assert result.summaries["focal"].seeds == (0, 2)
    assert result.summaries["ce"].seeds == (1, 2)
    assert result.vs_baseline["focal"]["headline"].seeds == (2,)
    assert result.vs_baseline["focal"]["headline"].p is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="baseline"):
        compare_losses(_records(), "nope", target=TARGET, losses=LOSSES)
    with pytest.raises(ValueError, match="mode"):
        compare_losses(_records(), "ce", target={**TARGET, "mode": "up"}, losses=LOSSES)

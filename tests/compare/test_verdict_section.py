"""report.md answers first (issue 23 item 2): a sentence and a verdict table within its first 15 lines, intervals
clipped to the metric's range, ties worded as ties, seeds needed from the observed spread."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import TTestPower

from lossbench.compare.analysis.stats import Estimate, Paired
from lossbench.compare.report.render import render_report
from lossbench.compare.report.verdicts import metric_range, same_sign_seeds, seeds_needed

from .fake import FINAL, make_folder


def first_lines(folder, n=15):
    return (folder / "report.md").read_text().splitlines()[:n]


def test_the_first_15_lines_hold_the_sentence_and_every_losss_verdict(tmp_path):
    render_report(make_folder(tmp_path))
    head = first_lines(tmp_path)
    assert head[0] == "# Loss comparison: toy"
    # focal's +0.07 on 3 seeds (differences 0.1, 0.07, 0.04: sd 0.03) is not significant; mse's -0.33 is
    assert head[2].startswith(
        "No loss beat ce on final val/accuracy; mse did worse (mse -0.3333). 3 seeds are too few to separate focal "
        "from ce: about 89 seeds would be needed to detect a 1-point difference (from the seed-to-seed spread of "
        "the differences seen, sd 0.03;"
    ), head[2]
    assert seeds_needed(0.03, 0.01, 2) == 89
    table = [line for line in head if line.startswith("| ")]
    assert table[0] == "| loss | final val/accuracy (higher is better), mean [95% CI] | vs ce [95% CI] | verdict |"
    rows = {line.split(" | ")[0][2:]: line for line in table[1:]}
    assert set(rows) == {"ce (baseline)", "focal", "mse"}
    assert rows["mse"].endswith("| worse |") and rows["ce (baseline)"].endswith("| — | — |")
    body = (tmp_path / "report.md").read_text()
    assert "## What was compared" in body and "## Outcome" in body  # nothing that was there is lost


def test_intervals_are_clipped_to_the_metrics_range(tmp_path):
    spread = {("focal", s): {"final": {"val/accuracy": v, "val/ece": 0.1}} for s, v in zip((0, 1, 2), (0.6, 1.0, 1.0))}
    render_report(make_folder(tmp_path, changes=spread))
    row = next(line for line in first_lines(tmp_path) if line.startswith("| focal |"))
    mean = sum((0.6, 1.0, 1.0)) / 3
    half = 4.302652729911275 * 0.23094010767585033 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(3): past 1
    assert mean + half > 1 and f"{mean:.4g} [{mean - half:.4g}, 1]" in row
    assert metric_range("test/accuracy") == (0.0, 1.0) and metric_range("test/f1_macro") == (0.0, 1.0)
    assert metric_range("test/mse") == (0.0, math.inf) and metric_range("test/r2") == (-math.inf, math.inf)


def test_a_tie_is_worded_as_a_tie(tmp_path):
    same = {("focal", s): {"final": {"val/accuracy": v, "val/ece": 0.1}} for s, v in zip((0, 1, 2), FINAL["ce"])}
    render_report(make_folder(tmp_path, changes=same))
    body = (tmp_path / "report.md").read_text()
    assert "tie for first (0.85)" in body and "ranks first" not in body


@pytest.mark.parametrize(("sd", "delta", "tests"), [(0.0047, 0.01, 5), (0.01, 0.01, 1), (0.02, 0.01, 3), (0.3, 1, 1)])
def test_seeds_needed_is_the_power_analysis_of_a_paired_t_test(sd, delta, tests):
    """The reference: statsmodels' TTestPower (noncentral t) solved for n at 80% power."""
    reference = TTestPower().solve_power(effect_size=delta / sd, alpha=0.05 / tests, power=0.8)
    assert seeds_needed(sd, delta, tests) == max(2, math.ceil(reference))


def test_same_sign_seeds_counts_the_seeds_that_agree_with_the_mean():
    def pair(a, b):
        return Paired("q", "x", "ce", tuple(range(len(a))), Estimate(len(a)), None, tuple(a), tuple(b))

    assert same_sign_seeds(pair([0.9, 0.8, 0.7], [0.6, 0.6, 0.6])) == (3, 3)
    assert same_sign_seeds(pair([0.9, 0.5, 0.7], [0.6, 0.6, 0.6])) == (2, 3)
    assert same_sign_seeds(pair([0.6, 0.6], [0.6, 0.6])) == (0, 2)

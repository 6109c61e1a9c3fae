"""Issue 11: equal-budget tuning per loss (``tune:``), its fairness proof and its report.

Every loss gets the same scrambled Sobol trial points in the shared dimensions; its trials are runs of
``DIR/tuning`` on tuning seeds disjoint from the final ones, selected on validation; the chosen point of each
loss is what its final runs train with. The report and the fairness check recompute all of it from the records.
"""

from __future__ import annotations

import json
import math
import statistics

import pytest
from scipy.stats import qmc

from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.compare.records import RunRecord, load_records, read_csv, run_dir
from lossbench.compare.report import render_report
from lossbench.compare.tuning import TuneSpec, check_tuning, select_trials, trial_label, tuning_records
from tests.compare.conftest import tiny_recipe

SPACE = {"optimizer.lr": {"low": 1e-3, "high": 3e-2, "log": True},
         "losses.focal.args.gamma": {"low": 0.5, "high": 4.0}}


def tuned(trials=3, space=SPACE, **changes):
    raw = tiny_recipe(executor="fused", **changes)
    raw["tune"] = {"trials": trials, "seeds": [100], "space": space}
    return raw


# -- the points ------------------------------------------------------------------------------------
def test_points_are_the_seeded_scrambled_sobol_sequence_mapped_onto_each_range():
    tune = load_recipe(tuned(trials=4)).tune
    unit = qmc.Sobol(d=2, scramble=True, seed=0).random(4)  # columns by path: gamma, then lr
    points = tune.points()
    for u, point in zip(unit, points):
        assert point["losses.focal.args.gamma"] == pytest.approx(0.5 + u[0] * 3.5, rel=1e-12)
        assert point["optimizer.lr"] == pytest.approx(math.exp(math.log(1e-3) + u[1] * math.log(30)), rel=1e-12)
    assert all(1e-3 <= p["optimizer.lr"] <= 3e-2 and 0.5 <= p["losses.focal.args.gamma"] <= 4.0 for p in points)
    assert len({p["optimizer.lr"] for p in points}) == 4


def test_every_loss_gets_the_same_shared_values_and_only_its_own_head_arguments():
    tune = load_recipe(tuned(trials=5)).tune
    ce, focal, sce = (tune.loss_points(label) for label in ("ce", "focal", "sce"))
    assert [p["optimizer.lr"] for p in ce] == [p["optimizer.lr"] for p in focal] == [p["optimizer.lr"] for p in sce]
    assert all(set(p) == {"optimizer.lr"} for p in ce + sce)
    assert all(set(p) == {"optimizer.lr", "losses.focal.args.gamma"} for p in focal)


def test_the_points_depend_on_the_space_not_on_its_order_in_the_yaml_and_change_with_the_seed():
    forward = load_recipe(tuned()).tune.points()
    backward = load_recipe(tuned(space=dict(reversed(list(SPACE.items()))))).tune.points()
    assert forward == backward
    raw = tuned()
    raw["tune"]["seed"] = 1
    assert load_recipe(raw).tune.points() != forward


def test_a_spec_survives_comparison_json():
    tune = load_recipe(tuned()).tune
    again = TuneSpec.from_dict(json.loads(json.dumps(tune.to_dict(), sort_keys=True)))
    assert again == tune and again.points() == tune.points()


def test_an_untuned_recipe_keeps_its_hashes():
    plain = load_recipe(tiny_recipe())
    assert "tune" not in plain.to_dict() and all("tuning" not in loss for loss in plain.to_dict()["losses"])
    assert load_recipe(tuned()).setup_hash != plain.setup_hash  # the tuning protocol is part of the setup


@pytest.mark.parametrize(("change", "message"), [
    ({"trials": 0}, "`tune.trials` must be a whole number of trials per loss in [1, 1024], got 0"),
    ({"seeds": [0]}, "`tune.seeds` must be disjoint from the final `seeds`"),
    ({"space": {"backbone.d_model": {"low": 8, "high": 16}}}, "`tune.space.backbone.d_model` cannot be tuned"),
    ({"space": {"optimizer.lrr": {"low": 1e-3, "high": 1e-2}}}, "did you mean 'optimizer.lr'"),
    ({"space": {"losses.focl.args.gamma": {"low": 1, "high": 2}}}, "names loss 'focl'"),
    ({"space": {"optimizer.lr": {"low": 0, "high": 1e-2, "log": True}}}, "is log-scaled, so `low` must be > 0"),
    ({"space": {"optimizer.lr": {"low": 1e-2, "high": 1e-3}}}, "needs low < high, got low=0.01, high=0.001"),
    ({"space": {"optimizer.lr": {"low": 1e-3, "hihg": 1e-2}}}, "unknown key `tune.space.optimizer.lr.hihg`"),
    ({"select": {"metric": "test/accuracy"}}, "trials are selected on validation, never on test"),
    ({"trails": 3}, "unknown key `tune.trails`"),
])
def test_bad_tune_sections_are_refused_naming_the_key(change, message):
    raw = tuned()
    raw["tune"].update(change)
    with pytest.raises(RecipeError, match="recipe: ") as info:
        load_recipe(raw)
    assert message in str(info.value)


def test_a_head_argument_out_of_range_at_a_trial_point_is_refused_before_anything_is_written(tmp_path):
    recipe = load_recipe(tuned(space={"losses.focal.args.gamma": {"low": -3.0, "high": -1.0}}))
    with pytest.raises(RecipeError, match="loss 'focal' cannot be built at tuning trial 0") as info:
        Comparison(recipe, tmp_path / "out", progress=False).run()
    assert "gamma" in str(info.value) and "narrow `tune.space`" in str(info.value)
    assert not (tmp_path / "out").exists()


# -- a tuned comparison, end to end ------------------------------------------------------------------
@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "out"
    recipe = load_recipe(tuned(trials=3, trainer={"max_steps": 8, "eval_every_n_steps": 4}))
    Comparison(recipe, out, progress=False).run()
    return recipe, out


def test_every_loss_trains_every_trial_on_the_tuning_seed_in_one_array(done):
    recipe, out = done
    runs = tuning_records(out)
    assert sorted(r.loss for r in runs) == sorted(trial_label(l, j, 3) for l in ("ce", "focal", "sce") for j in range(3))
    assert {r.seed for r in runs} == {100} and {r.status for r in runs} == {"finished"} and {r.steps for r in runs} == {8}
    assert {len(r.execution["members"]) for r in runs} == {9}  # one array: 3 losses x 3 trials
    for r in runs:  # each trial trained with its point: the head argument and the learning rate it logged
        point = recipe.tune.loss_points(r.tuning["loss"])[r.tuning["trial"]]
        assert r.tuning["point"] == point and r.tuning["role"] == "trial"
        if r.tuning["loss"] == "focal":
            assert r.head_args["gamma"] == point["losses.focal.args.gamma"]
        lrs = [row["lr"] for row in read_csv(run_dir(out / "tuning", r.loss, 100) / "metrics.csv") if row["lr"]]
        assert lrs and all(lr == pytest.approx(point["optimizer.lr"], rel=1e-6) for lr in lrs)  # schedule "none"


def test_each_loss_gets_its_best_trial_on_validation_and_its_final_runs_train_at_it(done):
    recipe, out = done
    runs = tuning_records(out)
    summary = json.loads((out / "tuning.json").read_text())
    for label in ("ce", "focal", "sce"):
        scores = [statistics.fmean(r.final["val/accuracy"] for r in runs if r.tuning["loss"] == label
                                   and r.tuning["trial"] == j) for j in range(3)]
        best = max(range(3), key=lambda j: (scores[j], -j))
        assert summary["losses"][label]["scores"] == pytest.approx(scores)
        assert summary["losses"][label]["chosen"] == best
        point = recipe.tune.loss_points(label)[best]
        for seed in (0, 1):
            final = RunRecord.load(run_dir(out, label, seed) / "record.json")
            assert final.tuning == {"role": "final", "loss": label, "trial": best, "point": point}
            lrs = [row["lr"] for row in read_csv(run_dir(out, label, seed) / "metrics.csv") if row["lr"]]
            assert all(lr == pytest.approx(point["optimizer.lr"], rel=1e-6) for lr in lrs)
            if label == "focal":
                assert final.head_args["gamma"] == point["losses.focal.args.gamma"]


def test_the_report_shows_the_tuning_and_states_the_budget_in_its_verdicts(done):
    recipe, out = done
    text = (out / "report.md").read_text()
    assert "WARNING" not in text and "## Tuning" in text and "![tuning sensitivity](plots/tuning_sensitivity.png)" in text
    assert (out / "plots" / "tuning_sensitivity.png").stat().st_size > 1000
    assert "tuned per loss under an equal budget of 3 trials" in text
    assert "not tuned per loss" not in text
    summary = json.loads((out / "tuning.json").read_text())
    chosen = summary["losses"]["focal"]
    gamma = float(f"{chosen['point']['losses.focal.args.gamma']:.4g}")
    assert f"| focal | {chosen['chosen']} | losses.focal.args.gamma = {gamma}" in text


def test_a_rerun_of_a_finished_tuned_folder_trains_nothing_and_renders_the_same_report(done):
    recipe, out = done
    before = {p: p.read_bytes() for p in out.rglob("record.json")}
    report = (out / "report.md").read_bytes()
    Comparison(recipe, out, progress=False).run()
    assert {p: p.read_bytes() for p in out.rglob("record.json")} == before
    assert (out / "report.md").read_bytes() == report


def _tamper(path, edit):
    values = json.loads(path.read_text())
    edit(values)
    path.write_text(json.dumps(values))


def test_the_fairness_check_fails_a_folder_whose_trial_points_were_tampered_with(done, tmp_path):
    import shutil

    recipe, src = done
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    path = run_dir(out / "tuning", trial_label("sce", 1, 3), 100) / "record.json"
    _tamper(path, lambda v: v["tuning"]["point"].update({"optimizer.lr": 0.02}))
    text = render_report(out).read_text()
    assert "WARNING: the fairness check failed" in text
    assert "trial 1 of loss 'sce' (seed 100) was recorded at optimizer.lr=0.02" in text
    assert "trial 1 has different optimizer.lr across losses" in text
    rows = {(r["loss"], r["seed"]): r["fairness"] for r in read_csv(out / "results.csv")}
    assert rows[("sce", 0)] == rows[("sce", 1)] == "invalid"


def test_the_fairness_check_fails_a_final_run_trained_at_another_point_and_a_missing_trial(done):
    recipe, out = done
    comparison = json.loads((out / "comparison.json").read_text())
    trials = tuning_records(out)
    finals = [r for r, _ in load_records(out)]
    assert check_tuning(comparison, trials, finals) == ([], set())
    moved = finals[0]
    moved.tuning = {**moved.tuning, "point": {"optimizer.lr": 1e-3}}
    problems, invalid = check_tuning(comparison, trials, finals)
    assert invalid == {(moved.loss, moved.seed)} and "its trials select" in problems[0]
    fewer = [r for r in trials if r.loss != trial_label("ce", 2, 3)]
    problems, invalid = check_tuning(comparison, fewer, [r for r, _ in load_records(out)])
    assert problems == ["Tuning: loss 'ce' has trials [0, 1] on tuning seed 100, the budget is 3 trials (0 to 2) "
                        "for every loss."]
    assert invalid == {("ce", 0), ("ce", 1)}


def test_ties_go_to_the_lowest_trial_and_a_loss_without_a_finished_trial_falls_back_to_trial_0():
    tune = load_recipe(tuned(trials=3)).tune

    def trial(label, j, value, status="finished"):
        return RunRecord(loss=f"{label}.t{j}", head=label, head_args={}, seed=100, status=status,
                         final={"val/accuracy": value}, tuning={"role": "trial", "loss": label, "trial": j, "point": {}})

    records = [trial("ce", 0, 0.5), trial("ce", 1, 0.9), trial("ce", 2, 0.9),
               *(trial("sce", j, math.nan) for j in range(2)), trial("sce", 2, 0.8, status="failed")]
    chosen = select_trials(tune, ["ce", "sce"], records, "final")
    assert chosen["ce"].chosen == 1 and chosen["ce"].scores == [0.5, 0.9, 0.9]
    assert chosen["sce"].chosen == 0 and chosen["sce"].scores == [None] * 3 and "trial 0 is used" in chosen["sce"].reason

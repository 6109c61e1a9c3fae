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
import torch
from scipy.stats import qmc
from torch import Tensor

from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.compare.analysis.tuning import check_tuning, select_trials
from lossbench.compare.execution.runner import RunBook
from lossbench.compare.recipe.trials import trial_label, with_point
from lossbench.compare.recipe.tune import TuneSpec
from lossbench.compare.report.render import render_report
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import RunRecord, load_records, read_csv, tuning_records
from lossbench.heads.base import LossHead
from tests.compare.conftest import tiny_recipe

SPACE = {"optimizer.lr": {"low": 1e-3, "high": 3e-2, "log": True}, "losses.focal.args.gamma": {"low": 0.5, "high": 4.0}}


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


@pytest.mark.parametrize(
    ("change", "message"),
    [
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
        # issue 19, item 11: a dimension that changes nothing, or that cannot take a sampled real number
        (
            {"space": {"optimizer.momentum": {"low": 0.5, "high": 0.99}}},
            "`tune.space.optimizer.momentum` changes nothing under `optimizer.name` 'adamw' "
            "(only 'sgd' reads momentum)",
        ),
        (
            {"space": {"losses.ce.args.ignore_index": {"low": 0, "high": 2}}},
            "`tune.space.losses.ce.args.ignore_index` is an integer argument of CrossEntropyHead (`ignore_index`)",
        ),
    ],
)
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
    assert sorted(r.loss for r in runs) == sorted(
        trial_label(l, j, 3) for l in ("ce", "focal", "sce") for j in range(3)
    )
    assert (
        {r.seed for r in runs} == {100} and {r.status for r in runs} == {"finished"} and {r.steps for r in runs} == {8}
    )
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
        scores = [
            statistics.fmean(
                r.final["val/accuracy"] for r in runs if r.tuning["loss"] == label and r.tuning["trial"] == j
            )
            for j in range(3)
        ]
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
    assert (
        "WARNING" not in text and "## Tuning" in text and "![tuning sensitivity](plots/tuning_sensitivity.png)" in text
    )
    assert (out / "plots" / "tuning_sensitivity.png").stat().st_size > 1000
    assert "tuned per loss under an equal budget of 3 trials" in text
    assert "not tuned per loss" not in text
    summary = json.loads((out / "tuning.json").read_text())
    chosen = summary["losses"]["focal"]
    gamma = float(f"{chosen['point']['losses.focal.args.gamma']:.4g}")
    assert f"| focal | {chosen['chosen']} | losses.focal.args.gamma = {gamma}" in text


def test_the_tuning_folder_holds_no_recipe_that_looks_runnable_and_the_parent_recipe_runs_it_all(done):
    """Issue 19, item 11: `DIR/tuning/recipe.yaml` listed the trials as losses (labels `ce.t0` that a recipe refuses,
    without their learning rates): not runnable. It is no longer written; `DIR/recipe.yaml` is the recipe that
    runs the tuning and the final runs."""
    recipe, out = done
    assert not (out / "tuning" / "recipe.yaml").exists() and (out / "tuning" / "comparison.json").is_file()
    again = load_recipe(out / "recipe.yaml")
    assert again.setup_hash == recipe.setup_hash and again.tune == recipe.tune


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
    assert problems == [
        "Tuning: loss 'ce' has trials [0, 1] on tuning seed 100, the budget is 3 trials (0 to 2) for every loss."
    ]
    assert invalid == {("ce", 0), ("ce", 1)}


def test_ties_go_to_the_lowest_trial_and_a_loss_without_a_finished_trial_falls_back_to_trial_0():
    tune = load_recipe(tuned(trials=3)).tune

    def trial(label, j, value, status="finished"):
        return RunRecord(
            loss=f"{label}.t{j}",
            head=label,
            head_args={},
            seed=100,
            status=status,
            final={"val/accuracy": value},
            tuning={"role": "trial", "loss": label, "trial": j, "point": {}},
        )

    records = [
        trial("ce", 0, 0.5),
        trial("ce", 1, 0.9),
        trial("ce", 2, 0.9),
        *(trial("sce", j, math.nan) for j in range(2)),
        trial("sce", 2, 0.8, status="failed"),
    ]
    chosen = select_trials(tune, ["ce", "sce"], records, "final")
    assert chosen["ce"].chosen == 1 and chosen["ce"].scores == [0.5, 0.9, 0.9]
    assert (
        chosen["sce"].chosen == 0 and chosen["sce"].scores == [None] * 3 and "trial 0 is used" in chosen["sce"].reason
    )


def test_momentum_is_tunable_under_sgd_and_real_head_arguments_stay_tunable():
    raw = tuned(space={"optimizer.momentum": {"low": 0.5, "high": 0.99}, **SPACE})
    raw["optimizer"]["name"] = "sgd"
    assert [d.path for d in load_recipe(raw).tune.space] == [
        "losses.focal.args.gamma",
        "optimizer.lr",
        "optimizer.momentum",
    ]


def test_a_misspelt_selection_metric_is_refused_before_the_folder_is_written(tmp_path):
    """Issue 19, B9: `tune.select.metric: val/acuracy` passed validation and failed after comparison.json was
    written; the corrected recipe was then refused as another recipe setup."""
    raw = tuned()
    raw["tune"]["select"] = {"metric": "val/acuracy", "mode": "max"}
    with pytest.raises(RecipeError) as info:
        Comparison(load_recipe(raw), tmp_path / "out", progress=False).run()
    message = str(info.value)
    assert message.startswith("recipe: `tune.select.metric` 'val/acuracy' is not logged for loss 'ce'")
    assert "did you mean 'val/accuracy'" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


# -- at the edge of the range (issue 19, item 9) ------------------------------------------------------
def _edge_case(scores, mode="max", lrs=(1e-3, 3e-3, 1e-2, 3e-2)):
    from lossbench.compare.analysis.tuning import LossTuning

    raw = tuned(trials=len(lrs), space={"optimizer.lr": {"low": 1e-3, "high": 3e-2, "log": True}})
    raw["tune"]["select"] = {"metric": "val/loss" if mode == "min" else "val/accuracy", "mode": mode}
    tune = load_recipe(raw).tune
    present = [j for j, s in enumerate(scores) if s is not None]
    sign = 1 if mode == "max" else -1
    chosen = max(present, key=lambda j: (sign * scores[j], -j))
    return tune, LossTuning("square", [{"optimizer.lr": lr} for lr in lrs], list(scores), chosen)


@pytest.mark.parametrize(
    ("scores", "mode", "edge"),
    [
        ([0.5, 0.6, 0.7, 0.8], "max", ("optimizer.lr", "largest")),  # still rising at the largest lr
        ([0.9, 0.6, 0.7, 0.8], "max", ("optimizer.lr", "smallest")),
        ([0.6, 0.5, 0.4, 0.2], "min", ("optimizer.lr", "largest")),  # mode min: lower is better
        ([0.8, None, 0.5, 0.4], "max", ("optimizer.lr", "smallest")),  # the nearest trial inward diverged: worse
        ([0.5, 0.9, 0.7, 0.6], "max", None),  # chosen inside the range
        ([0.5, 0.6, 0.8, 0.8], "max", None),  # the largest ties its neighbour: the lower trial is chosen, inside
        ([0.5, 0.6, 0.8, 0.8][::-1], "max", None),  # chosen at the smallest, but flat toward it (a tie)
    ],
)
def test_a_chosen_trial_at_the_edge_of_its_range_is_found_only_while_the_curve_still_rises(scores, mode, edge):
    tune, t = _edge_case(scores, mode)
    found = [(d.path, side) for d, side in t.edges(tune)]
    assert found == ([edge] if edge else [])


def test_the_tuning_section_and_the_verdicts_conditions_say_a_best_value_is_at_the_edge():
    from lossbench.compare.report.outcome import conditions_sentence
    from lossbench.compare.report.tuning import tuning_conditions, tuning_section

    tune, t = _edge_case([0.5, 0.6, 0.7, 0.8])
    text = "\n".join(tuning_section(tune, {"square": t}, [0, 1], None))
    assert "- square's best lr is the largest tried (0.03)" in text and "widen `tune.space.optimizer.lr`" in text
    sentence = conditions_sentence({"seeds": 2, "tuning": tuning_conditions(tune, {"square": t})})
    assert sentence.endswith("At the edge of the search space: square's best lr is the largest tried: widen the range.")
    tune, inside = _edge_case([0.5, 0.9, 0.7, 0.6])
    assert "widen" not in "\n".join(tuning_section(tune, {"square": inside}, [0, 1], None))
    assert "edge" not in conditions_sentence({"seeds": 2, "tuning": tuning_conditions(tune, {"square": inside})})


# -- a diverged trial is a result (issue 19, item 11) -------------------------------------------------
class DivergesAboveHead(LossHead):
    """Cross-entropy whose training loss is NaN when ``blowup`` > 0.5: a tuning dimension whose upper part
    diverges, as a too-large learning rate does."""

    task = "multiclass"

    def __init__(self, in_features: int, num_classes: int, blowup: float = 0.0, **kwargs) -> None:
        super().__init__(in_features, num_classes, **kwargs)
        self.num_classes, self.blowup = num_classes, blowup

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        loss = torch.nn.functional.cross_entropy(outputs.float(), target, reduction=reduction)
        return loss * float("nan") if self.training and self.blowup > 0.5 else loss


def test_a_diverged_trial_is_scored_worst_never_chosen_and_reported_and_the_comparison_succeeds(tmp_path, monkeypatch):
    bad = {"class_path": "tests.compare.test_tuning.DivergesAboveHead", "label": "bad"}
    raw = tiny_recipe(executor="sequential", losses=["ce", bad], seeds=[0], nan_policy="raise")
    raw["tune"] = {"trials": 4, "seeds": [100], "space": {"losses.bad.args.blowup": {"low": 0.0, "high": 1.0}}}
    recipe = load_recipe(raw)
    blowups = [p["losses.bad.args.blowup"] for p in recipe.tune.loss_points("bad")]
    diverging = [j for j, b in enumerate(blowups) if b > 0.5]
    assert 0 < len(diverging) < 4  # the reference: the trials whose point diverges
    comparison = Comparison(recipe, tmp_path / "out", progress=False)
    report = comparison.run()
    assert comparison.failed == []  # the command exits 0
    trials = {r.tuning["trial"]: r for r in tuning_records(tmp_path / "out") if r.tuning["loss"] == "bad"}
    assert sorted(j for j, r in trials.items() if r.status == "failed") == diverging
    assert all(trials[j].error.startswith("FloatingPointError") for j in diverging)
    summary = json.loads((tmp_path / "out" / "tuning.json").read_text())["losses"]["bad"]
    assert summary["diverged"] == diverging and summary["chosen"] not in diverging
    assert all(summary["scores"][j] is None for j in diverging)
    final = RunRecord.load(run_dir(tmp_path / "out", "bad", 0) / "record.json")
    assert final.status == "finished" and final.head_args["blowup"] <= 0.5
    text = report.read_text()
    trials_text = ", ".join(map(str, diverging))
    assert f"- bad: trial{'s' if len(diverging) > 1 else ''} {trials_text} diverged (a non-finite training loss" in text
    assert "WARNING" not in text
    trained = []  # a diverged trial is done, like a finished one: the rerun trains nothing
    monkeypatch.setattr(RunBook, "trainer", lambda self, *a, **k: trained.append(self.output) or 1 / 0)
    again = Comparison(recipe, tmp_path / "out", progress=False)
    again.run()
    assert again.failed == [] and trained == []


def test_a_trial_value_beyond_a_float_is_no_score_not_an_overflow_traceback():
    """A record's 400-digit selection value (JSON holds any integer) raised OverflowError in `trial_score`, so in
    `lossbench report` and the recompute; it is a value without a score, like NaN (issue 19, B11's rule)."""
    tune = load_recipe(tuned(trials=2)).tune
    records = [
        RunRecord(
            loss=f"ce.t{j}",
            head="ce",
            head_args={},
            seed=100,
            status="finished",
            final={"val/accuracy": value},
            tuning={"role": "trial", "loss": "ce", "trial": j, "point": {}},
        )
        for j, value in enumerate([10**400, 0.5])
    ]
    chosen = select_trials(tune, ["ce"], records, "final")["ce"]
    assert chosen.scores == [None, 0.5] and chosen.chosen == 1


@pytest.mark.parametrize(
    ("annotation", "kind"),
    [
        ("int", "an integer"),
        ("int | None", "an integer"),
        (int, "an integer"),
        (int | None, "an integer"),
        ("bool", "a true/false"),
        (bool, "a true/false"),
        (float, None),
        (float | None, None),
        ("float", None),
    ],
)
def test_an_integer_argument_is_found_whether_its_annotation_is_text_or_a_type(annotation, kind):
    """A head module without `from __future__ import annotations` has real types as annotations: `int | None` (a
    types.UnionType, without __name__) passed as real-valued, where its text `"int | None"` was refused."""
    from lossbench.compare.recipe.trials import _whole_kind

    class Head:
        def __init__(self, in_features, ignore_index=None):
            pass

    Head.__init__.__annotations__ = {"ignore_index": annotation}
    assert _whole_kind(Head, "ignore_index") == kind


def test_an_optimizer_value_out_of_range_at_a_trial_point_is_refused_without_building_a_model(tmp_path, monkeypatch):
    """A trial's optimizer values are checked as the module checks them; a model is built once per distinct head
    arguments, not once per trial (digits_tuned: 6 builds instead of 48 before anything is written)."""
    recipe = load_recipe(tuned(space={"optimizer.weight_decay": {"low": -0.5, "high": -0.1}}))
    with pytest.raises(RecipeError, match=r"loss 'ce' cannot be built at tuning trial 0 \(\{'optimizer.weight_decay'"):
        Comparison(recipe, tmp_path / "out", progress=False).run()
    assert not (tmp_path / "out").exists()
    from lossbench.compare.execution.runner import RunBook

    built = []
    real = RunBook.build_model
    monkeypatch.setattr(RunBook, "build_model", lambda self, loss, *a: built.append(loss.label) or real(self, loss, *a))
    ok = load_recipe(tuned(trials=4))
    comparison = Comparison(ok, tmp_path / "ok", progress=False)
    comparison.prepare()
    for loss in ok.losses:  # one model per distinct head arguments, the loss's own and its trials'
        heads = {repr(sorted(loss.args.items()))} | {
            repr(sorted(with_point(loss, p, "trial", j).args.items()))
            for j, p in enumerate(ok.tune.loss_points(loss.label))
        }
        assert built.count(loss.label) == len(heads) > 0, (loss.label, built)
    assert built.count("ce") == 1  # ce's trials differ in optimizer values only: its own model checks them all

"""Recipes are validated before anything trains; bundled recipes are available by name."""

import pytest

from lossbench.compare import Comparison, RecipeError, bundled_recipes, load_recipe
from lossbench.heads import UnknownHeadError
from tests.compare.conftest import tiny_recipe


def test_bundled_recipes_are_the_documented_four_and_open_with_their_command():
    recipes = bundled_recipes()
    assert set(recipes) >= {"digits", "digits_tuned", "breast_cancer", "diabetes", "wine"}
    for name, path in recipes.items():
        text = path.read_text()
        assert text.startswith("#") and f"lossbench compare {name}" in text


@pytest.mark.parametrize("name", sorted(bundled_recipes()))
def test_bundled_recipe_validates_against_its_data(name, tmp_path):
    recipe = load_recipe(name)
    assert recipe.baseline in [l.label for l in recipe.losses] and len(recipe.seeds) >= 3
    Comparison(recipe, tmp_path / "out").prepare()  # data loads, every loss fits, target is logged
    assert not (tmp_path / "out").exists()


def test_digits_recipe_compares_the_documented_losses():
    labels = [l.label for l in load_recipe("digits").losses]
    assert labels == ["ce", "label_smoothing", "focal", "poly1", "square", "mae_prob"]
    assert [l.label for l in load_recipe("breast_cancer").losses] == ["bce", "binary_focal", "squared_hinge"]
    assert [l.label for l in load_recipe("diabetes").losses] == ["mse", "mae", "huber", "log_cosh", "gaussian_nll"]


def test_overrides_seeds_and_loss_subsets():
    r = load_recipe("digits", overrides={"trainer.max_epochs": "2", "optimizer.lr": "0.01"}, seeds=2, losses=["focal"])
    assert r.trainer["max_epochs"] == 2 and r.optimizer["lr"] == 0.01 and r.seeds == [0, 1]
    assert [l.label for l in r.losses] == ["ce", "focal"]  # the baseline stays


def test_setup_hash_ignores_seeds_and_losses_but_not_the_budget():
    base = load_recipe(tiny_recipe())
    assert load_recipe(tiny_recipe(seeds=[0, 1, 2])).setup_hash == base.setup_hash
    assert load_recipe(tiny_recipe(losses=["ce"])).setup_hash == base.setup_hash
    assert load_recipe(tiny_recipe(trainer={"max_steps": 9, "eval_every_n_steps": 4})).setup_hash != base.setup_hash


def test_class_path_losses(tmp_path):
    r = load_recipe(
        tiny_recipe(losses=["ce", {"class_path": "lossbench.heads.FocalHead", "init_args": {"gamma": 1.0}}])
    )
    assert r.losses[1].label == "FocalHead" and r.losses[1].head == "lossbench.heads.FocalHead"


@pytest.mark.parametrize(
    "changes, error, match",
    [
        (
            {"trainer": {"max_steps": 8, "max_epoch": 2}},
            RecipeError,
            r"unknown key `trainer.max_epoch`; did you mean 'max_epochs'",
        ),
        ({"optimiser": {}}, RecipeError, r"unknown key `optimiser`; did you mean 'optimizer'"),
        ({"losses": ["ce", "focall"]}, UnknownHeadError, r"did you mean 'focal'"),
        ({"baseline": "cee"}, RecipeError, r"`baseline` 'cee' is not one of the losses .*did you mean 'ce'"),
        ({"losses": ["ce", "ce"]}, RecipeError, "labels must be unique"),
        ({"losses": []}, RecipeError, "`losses` must be a non-empty list"),
        ({"seeds": 0}, RecipeError, "`seeds` must be a count in \\[1, 1000\\]"),
        ({"seeds": [0, 0]}, RecipeError, "`seeds` must be distinct"),
        ({"trainer": {"max_steps": 8, "max_epochs": 2}}, RecipeError, "exactly one of `max_epochs` or `max_steps`"),
        ({"trainer": {"max_steps": -1}}, RecipeError, r"`trainer.max_steps` must be a positive int, got -1"),
        (
            {"target": {"metric": "accuracy", "mode": "max", "threshold": 1}},
            RecipeError,
            "`target.metric` must name a validation metric",
        ),
        (
            {"target": {"metric": "val/accuracy", "mode": "up", "threshold": 1}},
            RecipeError,
            "`target.mode` must be 'max' or 'min', got 'up'",
        ),
        (
            {"target": {"metric": "val/accuracy", "mode": "max", "threshold": float("nan")}},
            RecipeError,
            "`target.threshold` must be a finite number or null, got nan",
        ),
        (
            {"optimizer": {"name": "adamw", "lr": -0.1}},
            RecipeError,
            r"`optimizer.lr` must be a finite number > 0, got -0.1",
        ),
        (
            {"optimizer": {"name": "adam"}},
            RecipeError,
            r"recipe: `optimizer.name` must be 'sgd' or 'adamw', got 'adam'",
        ),
        (
            {"optimizer": {"name": "adamw", "nesterov": True}},
            RecipeError,
            r"`optimizer.nesterov=True` needs `optimizer.name`='sgd' and `optimizer.momentum` > 0",
        ),
        ({"schedule": {"name": "step"}}, RecipeError, r"`schedule.name` must be 'none', 'cosine' or 'linear'"),
        ({"schedule": {"warmup_steps": 1.5}}, RecipeError, r"`schedule.warmup_steps` must be an int >= 0, got 1.5"),
        (
            {"backbone": {"d_model": 8, "nhead": 2, "num_layers": 0}},
            RecipeError,
            r"`backbone.num_layers` must be a positive int, got 0",
        ),
        (
            {"backbone": {"d_model": 8, "nhead": 2, "dropout": 1.0}},
            RecipeError,
            r"`backbone.dropout` must be a number in \[0, 1\), got 1.0",
        ),
        (
            {"data": {"path": "lossbench:wine", "batchsize": 4}},
            RecipeError,
            r"unknown key `data.batchsize`; did you mean 'batch_size'",
        ),
        ({"data": {"path": "lossbench:wine", "seed": 4}}, RecipeError, "`data.seed` is set by the comparison"),
        ({"nan_policy": "ignore"}, RecipeError, "`nan_policy` must be 'raise' or 'skip'"),
        ({"losses": ["ce", {"class_path": "no.such.Head"}]}, RecipeError, "cannot be imported"),
        ({"losses": ["ce", {"class_path": "torch.nn.Linear"}]}, RecipeError, "is not a LossHead subclass"),
    ],
)
def test_bad_recipes_name_the_key_and_the_value(changes, error, match):  # the module's own checks (config.py)
    with pytest.raises(error, match=match):
        load_recipe(tiny_recipe(**changes))


def test_unknown_recipe_name_and_override():
    with pytest.raises(RecipeError, match=r"neither a YAML file nor a bundled recipe; did you mean 'digits'"):
        load_recipe("digit")
    with pytest.raises(RecipeError, match=r"unknown override `--trainr.max_epochs`; did you mean 'trainer'"):
        load_recipe("digits", overrides={"trainr.max_epochs": "2"})
    with pytest.raises(RecipeError, match=r"`--seeds` must be a count in \[1, 1000\], got 0"):
        load_recipe("digits", seeds=0)
    with pytest.raises(RecipeError, match=r"`--losses` \['nope'\] are not in the recipe's losses"):
        load_recipe("digits", losses=["nope"])


REDUCED = {  # CI's budget for the recipes that are slow in full (`make demo` and the commands run them in full)
    "digits_tuned": {"tune.trials": 2, "trainer.max_epochs": 3},
    "digits_noisy": {"trainer.max_epochs": 4},
    "digits_imbalanced": {"trainer.max_epochs": 8},
    "digits_calibration": {"trainer.max_epochs": 4},
    "digits_distill": {"trainer.max_epochs": 3, "teacher.max_epochs": 3},
    "digits_cnn": {"trainer.max_epochs": 3},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(bundled_recipes()))
def test_bundled_recipe_runs_in_full_with_a_fair_report(name, tmp_path):
    """The whole recipe (digits on 2 seeds), measured on 2 cores: digits ~100 s, the others 30-50 s (no timing
    asserted)."""
    from lossbench.compare.analysis.fairness import check_fairness
    from lossbench.compare.store.records import load_records

    # digits on 2 seeds; the tuned and situation recipes on 1 seed at a reduced budget (in full: their command)
    seeds = 1 if name in REDUCED else 2 if name == "digits" else None
    recipe = load_recipe(name, seeds=seeds, overrides=REDUCED.get(name))
    report = Comparison(recipe, tmp_path / name, progress=False).run()
    records = load_records(tmp_path / name)
    assert len(records) == len(recipe.losses) * len(recipe.seeds)
    assert all(r.status == "finished" for r, _ in records), [(r.loss, r.seed, r.error) for r, _ in records]
    assert check_fairness([r for r, _ in records]).ok
    text = report.read_text()
    assert "## Outcome" in text and "plots/target_metric.png" in text
    head = text.splitlines()[:15]  # the answer first: the sentence and every loss's verdict
    assert head[2].startswith(f"No loss beat {recipe.baseline} on ") or f" beat {recipe.baseline} on " in head[2]
    assert any(line.startswith("| loss | ") and line.endswith("| verdict |") for line in head)
    assert {loss.label for loss in recipe.losses} <= {line.split(" | ")[0][2:].split(" (")[0] for line in head}
    # the test split is the headline of results.csv and of the report, and the Data section lists the splits
    from lossbench.compare.execution.recompute import recompute

    headline = "test/" + recipe.target["metric"].split("/", 1)[1]
    with open(tmp_path / name / "results.csv", encoding="utf-8") as f:
        assert f.readline().split(",")[4] == headline
    assert f"- Headline: {headline}, evaluated once per run on the test split" in text
    for split in ("train", "validation", "test"):
        assert f"| {split} | given: split '{split}' of '{recipe.data['path']}' |" in text
    assert "WARNING: the fairness check failed" not in text  # tuned: the tuning's budget and choices too
    assert recompute(tmp_path / name).ok


def test_each_default_is_defined_once_by_the_module_configs():
    import inspect
    from dataclasses import fields

    from lossbench.compare.recipe.schema import SECTIONS
    from lossbench.config import BackboneConfig, OptimizerConfig, ScheduleConfig
    from lossbench.module import LossbenchModule

    for section, config in (("backbone", BackboneConfig), ("optimizer", OptimizerConfig), ("schedule", ScheduleConfig)):
        assert list(SECTIONS[section]) == [f.name for f in fields(config)]
        for f in fields(config):
            assert SECTIONS[section][f.name] == (list(f.default) if isinstance(f.default, tuple) else f.default)
    module = inspect.signature(LossbenchModule).parameters
    names = {"optimizer": "name", "schedule": "name"}
    for arg in ("optimizer", "lr", "weight_decay", "momentum", "nesterov", "betas"):
        assert module[arg].default == getattr(OptimizerConfig, names.get(arg, arg))
    assert module["schedule"].default == ScheduleConfig.name and module["warmup_steps"].default == 0
    assert load_recipe(tiny_recipe(backbone={})).backbone["d_model"] == BackboneConfig.d_model == 64


@pytest.mark.parametrize("name", sorted(bundled_recipes()))
def test_a_resolved_recipe_loads_back_as_itself(name):
    """``load_recipe(recipe.to_dict())`` round-trips (a result object's, a unit's, comparison.json's recipe)."""
    recipe = load_recipe(name)
    again = load_recipe(recipe.to_dict())
    assert again == recipe
    assert (again.setup_hash, again.recipe_hash) == (recipe.setup_hash, recipe.recipe_hash)

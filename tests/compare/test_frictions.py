"""Small frictions a new user met (issue 23 item 5): exponent floats in YAML and on the command line, "did you mean"
for head arguments, --seeds as a list, a missing target said as missing, the command's prefix said once."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

import lossbench
from lossbench.cli import main
from lossbench.compare import RecipeError, load_recipe
from lossbench.compare.recipe.bounded_yaml import safe_yaml
from lossbench.compare.store.records import load_records

from .conftest import tiny_recipe


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 0.001), ("5E+2", 500.0), ("-2e-4", -0.0002), ("1.5e3", 1500.0), (".5e1", 5.0), ("3e0", 3.0)],
)
def test_exponent_numbers_are_floats_as_in_yaml_1_2(text, value):
    assert safe_yaml(f"a: {text}", "x") == {"a": value}
    assert safe_yaml(f"a: '{text}'", "x") == {"a": text}  # quoted: a string, as the writer asked


def test_a_recipe_file_and_an_override_take_1e_3(tmp_path, capsys):
    raw = tiny_recipe()
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw).replace("lr: 0.01", "lr: 1e-3"))
    assert "lr: 1e-3" in path.read_text() and load_recipe(path).optimizer["lr"] == 0.001
    assert load_recipe(raw, overrides={"optimizer.lr": "3e-4"}).optimizer["lr"] == 0.0003
    assert main(["compare", str(path), "--optimizer.lr", "2e-3", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optimizer"]["lr"] == 0.002
    assert yaml.safe_load("a: 1e-3") == {"a": "1e-3"}  # PyYAML itself is left as it is


def test_a_head_argument_typo_names_the_argument_it_meant():
    raw = tiny_recipe(losses=["ce", {"name": "focal", "args": {"gama": 2.0}}])
    with pytest.raises(RecipeError, match=r"`losses\[1\].args.gama` is not an argument of FocalHead; did you mean "
                       r"'gamma'\? \(it takes in_features, num_classes, gamma, "):  # fmt: skip
        load_recipe(raw)
    raw = tiny_recipe(losses=["ce", {"class_path": "lossbench.heads.FocalHead", "args": {"gamm": 2.0}}])
    with pytest.raises(RecipeError, match=r"`losses\[1\].args.gamm` is not an argument of FocalHead; did you mean"):
        load_recipe(raw)
    raw = tiny_recipe(losses=["ce", {"name": "focal", "args": [2.0]}])
    with pytest.raises(RecipeError, match=r"`losses\[1\].args` must be a mapping of the head's arguments, got"):
        load_recipe(raw)


def test_seeds_on_the_command_line_are_a_count_or_a_list(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe()))
    for given, seeds in (("3", [0, 1, 2]), ("0,1", [0, 1]), ("7,2", [7, 2])):
        assert main(["compare", str(path), "--seeds", given, "--print-config"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["seeds"] == seeds
    with pytest.raises(SystemExit) as stop:
        main(["compare", str(path), "--seeds", "0;1"])
    assert stop.value.code == 2
    assert "must be a count (4) or a comma-separated list of seeds (0,1,7), got '0;1'" in capsys.readouterr().err


def test_target_is_optional_its_gaps_filled_from_the_heads_and_the_metric():
    raw = tiny_recipe()
    raw["target"] = {"metric": "val/accuracy"}
    assert load_recipe(raw).target == {"metric": "val/accuracy", "mode": "max", "threshold": None}
    raw["target"] = {"metric": "val/nll"}
    assert load_recipe(raw).target["mode"] == "min"
    del raw["target"]
    recipe = load_recipe(raw)  # ce, focal, sce: multiclass heads
    assert recipe.target == {"metric": "val/accuracy", "mode": "max", "threshold": None}
    assert recipe.to_dict()["target"] == recipe.target and load_recipe(recipe.to_dict()) == recipe  # filled in
    regression = tiny_recipe(losses=["mse", "huber"], baseline="mse", data={"path": "lossbench:diabetes"})
    del regression["target"]
    assert load_recipe(regression).target == {"metric": "val/mse", "mode": "min", "threshold": None}


@pytest.mark.parametrize(
    ("target", "losses", "match"),
    [
        ({"metric": "val/custom"}, None, r"`target.mode` is missing and 'val/custom' is not a metric lossbench logs"),
        (
            None,
            ["ce", "mse"],
            r"`target.metric` is missing, and the losses' heads have no one task .* \['multic",
        ),
        ({"metric": "accuracy"}, None, r"`target.metric` must name a validation metric like 'val/accuracy', got 'acc"),
        ({"threshold": "high"}, None, r"`target.threshold` must be a finite number or null, got 'high'"),
    ],
)
def test_what_cannot_be_filled_in_is_said(target, losses, match):
    raw = tiny_recipe(**({"losses": losses} if losses else {}))
    raw.pop("target")
    if target is not None:
        raw["target"] = target
    with pytest.raises(RecipeError, match=match):
        load_recipe(raw)


@pytest.mark.slow
def test_a_comparison_without_a_target_says_it_measures_no_steps_to_target(tmp_path):
    raw = tiny_recipe(executor="fused", seeds=[0], losses=["ce", "sce"])
    del raw["target"]
    result = lossbench.compare(raw, output=tmp_path / "out", progress=False)
    text = result.report_path.read_text()
    assert "val/accuracy" in text and "no threshold, so no steps-to-target" in text
    assert [r.steps_to_target for r, _ in load_records(tmp_path / "out")] == [None, None]


def test_the_commands_prefix_is_said_once(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(seeds=[0], losses=["ce"])))
    command = [sys.executable, "-m", "lossbench.cli", "compare", str(path), "--output", str(tmp_path / "out"),
               "--no-progress"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    again = subprocess.run([*command, "--optimizer.lr", "2e-2"], capture_output=True, text=True)
    assert again.returncode == 2
    assert again.stderr.startswith("lossbench compare: `--output` ") and "compare: compare:" not in again.stderr
    assert "it differs in `optimizer`" in again.stderr

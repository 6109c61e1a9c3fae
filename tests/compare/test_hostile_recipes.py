"""Issue 9, findings 8, 10 and 13: recipes that ask for unbounded resources, for a device the machine lacks, or
that name a head module which runs code are refused before anything is allocated, trained or imported (before:
a YAML alias bomb ran out of memory, 3000-deep nesting raised RecursionError, `--seeds 10**12` a MemoryError,
`accelerator: gpu` passed validation on a CPU-only machine and failed every run, and every `class_path` module was
imported even for losses left out with --losses; one that called sys.exit(0) ended compare with exit 0)."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
import yaml

from lossbench.cli import main
from lossbench.compare.execution.engine import Comparison
from lossbench.compare.recipe.bounded_yaml import MAX_YAML_DEPTH, MAX_YAML_VALUES, safe_yaml
from lossbench.compare.recipe.checks import MAX_LENGTH, MAX_SEEDS, RecipeError
from lossbench.compare.recipe.recipe import load_recipe
from tests.compare.conftest import tiny_recipe


def _write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _bomb(levels: int) -> str:
    """A "billion laughs" document: each anchor holds nine aliases of the previous one (9**levels values)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    recipe = yaml.safe_dump(tiny_recipe(), sort_keys=False) + "description:\n  " + _bomb(7).replace("\n", "\n  ")
    with pytest.raises(RecipeError, match=rf"expands to more than {MAX_YAML_VALUES} values once its aliases"):
        load_recipe(_write(tmp_path, recipe))
    with pytest.raises(RecipeError, match="aliases"):  # 9**9 values: the file of the report (2.7 GB before)
        safe_yaml(_bomb(9), "bomb")
    # aliases within the bound are plain YAML and still work
    assert safe_yaml("a: &x [1, 2]\nb: *x\n", "small") == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.parametrize("style", ["block", "flow"])
def test_deep_nesting_is_a_recipe_error_not_a_recursion_error(tmp_path, style):
    depth = 3000
    if style == "flow":
        text = "description: " + "[" * depth + "]" * depth + "\n"
    else:
        text = "".join("  " * i + f"k{i}:\n" for i in range(depth))
    with pytest.raises(RecipeError, match=rf"nested more than {MAX_YAML_DEPTH} levels deep"):
        load_recipe(_write(tmp_path, text))
    nested = "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, MAX_YAML_DEPTH - 1))
    assert safe_yaml(nested, "ok") is not None  # up to the bound: parsed


def test_seed_counts_are_bounded(tmp_path):
    with pytest.raises(RecipeError, match=rf"`--seeds` must be a count in \[1, {MAX_SEEDS}\], got 1000000000000"):
        load_recipe(tiny_recipe(), seeds=10**12)
    with pytest.raises(RecipeError, match=rf"`seeds` must be a count in \[1, {MAX_SEEDS}\].*got 100000000"):
        load_recipe(tiny_recipe(seeds=100_000_000))
    with pytest.raises(RecipeError, match=r"`seeds` must be .*ints in \[0, 4294967295\]"):
        load_recipe(tiny_recipe(seeds=[0, 2**40]))
    assert load_recipe(tiny_recipe(), seeds=MAX_SEEDS).seeds[-1] == MAX_SEEDS - 1


def test_sequence_length_is_bounded_before_the_position_table_is_allocated():
    with pytest.raises(RecipeError, match=rf"`data.max_length` must be at most {MAX_LENGTH} tokens, got 100000000"):
        load_recipe(tiny_recipe(data={"path": "lossbench:wine", "max_length": 100_000_000}))


def test_a_backbone_beyond_the_parameter_bound_is_refused_before_allocation(tmp_path):
    recipe = load_recipe(tiny_recipe(backbone={"d_model": 16384, "nhead": 2, "num_layers": 4}))
    with pytest.raises(RecipeError, match=r"would have [\d,]+ parameters .* refused before allocating it"):
        Comparison(recipe, tmp_path / "out", progress=False).prepare()
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "mps"])
def test_an_accelerator_the_machine_lacks_is_refused_in_validation(accelerator, tmp_path, capsys):
    with pytest.raises(RecipeError, match=rf"`trainer.accelerator` is '{accelerator}' but this machine has no"):
        load_recipe(tiny_recipe(trainer={"max_steps": 4, "eval_every_n_steps": 2, "accelerator": accelerator}))
    path = _write(tmp_path, yaml.safe_dump(tiny_recipe(), sort_keys=False))
    out = tmp_path / "out"
    assert (
        main(["compare", str(path), "--output", str(out), "--no-progress", f"--trainer.accelerator={accelerator}"]) == 2
    )
    assert "no " in capsys.readouterr().err and not out.exists()


def test_an_unknown_accelerator_name_gets_the_nearest():
    with pytest.raises(RecipeError, match=r"got 'cpux'; did you mean 'cpu'"):
        load_recipe(tiny_recipe(trainer={"max_steps": 4, "eval_every_n_steps": 2, "accelerator": "cpux"}))


def _module(tmp_path, name: str, body: str, monkeypatch) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


HEAD_MODULE = """
    from pathlib import Path
    Path(__file__).with_suffix(".imported").write_text("ran")
    from lossbench.heads.classification import CrossEntropyHead

    class Head(CrossEntropyHead):
        pass
"""


def test_a_class_path_left_out_with_losses_is_never_imported(tmp_path, monkeypatch):
    _module(tmp_path, "lb_side_effect_head", HEAD_MODULE, monkeypatch)
    raw = tiny_recipe(losses=["ce", {"class_path": "lb_side_effect_head.Head", "label": "mine"}])
    recipe = load_recipe(raw, losses=["ce"])
    assert [l.label for l in recipe.losses] == ["ce"]
    assert "lb_side_effect_head" not in sys.modules and not (tmp_path / "lb_side_effect_head.imported").exists()
    # kept: imported (that is what class_path is for)
    assert [l.label for l in load_recipe(raw).losses] == ["ce", "mine"]
    assert (tmp_path / "lb_side_effect_head.imported").exists()


@pytest.mark.parametrize("code", [0, 3])
def test_a_head_module_that_exits_on_import_is_a_clear_error(tmp_path, monkeypatch, capsys, code):
    _module(tmp_path, f"lb_exiting_head_{code}", f"import sys\nsys.exit({code})\n", monkeypatch)
    raw = tiny_recipe(losses=["ce", {"class_path": f"lb_exiting_head_{code}.Head"}])
    path = _write(tmp_path, yaml.safe_dump(raw, sort_keys=False))
    assert main(["compare", str(path), "--output", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"importing 'lb_exiting_head_{code}' called sys.exit({code})" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


HUGE = 10**400  # a 401-digit integer: beyond what a float holds (math.isfinite raised OverflowError on it)


def _huge_at(where: str) -> dict:
    raw = tiny_recipe()
    if where == "tune.space":
        raw["tune"] = {"trials": 2, "seeds": [100], "space": {"optimizer.lr": {"low": 1e-3, "high": HUGE}}}
    elif where == "data.imbalance.ratio":
        raw["data"]["imbalance"] = {"ratio": HUGE}
    else:
        section, key = where.split(".")
        raw[section][key] = HUGE
    return raw


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ("target.threshold", "`target.threshold` must be a finite number"),
        ("trainer.checkpoint_every_s", "`trainer.checkpoint_every_s` must be a number of seconds >= 0"),
        ("tune.space", "`tune.space.optimizer.lr.high` must be a finite number"),
        ("data.imbalance.ratio", "`imbalance.ratio` must be a number >= 1"),
        ("optimizer.lr", "`optimizer.lr` must be a finite number > 0"),
        ("data.max_length", "`data.max_length` must be at most"),
    ],
)
def test_a_400_digit_number_is_one_recipe_error_not_an_overflow_traceback(tmp_path, capsys, where, named):
    """Issue 19, B11: the shared number check (lossbench.config.finite_number) bounds every one of them."""
    path = _write(tmp_path, yaml.safe_dump(_huge_at(where), sort_keys=False))
    out = tmp_path / "out"
    assert main(["compare", str(path), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert named in err and "OverflowError" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_tuning_seeds_are_bounded_like_seeds():
    """Issue 19, B12: `tune.seeds` took any number of seeds (each a run per loss and trial)."""
    raw = tiny_recipe()
    raw["tune"] = {
        "trials": 2,
        "seeds": list(range(100, 100 + MAX_SEEDS + 1)),
        "space": {"optimizer.lr": {"low": 1e-3, "high": 1e-2}},
    }
    with pytest.raises(
        RecipeError,
        match=rf"`tune.seeds` must be a list of 1 to {MAX_SEEDS} distinct ints .*got a "
        rf"list of {MAX_SEEDS + 1} starting \[100, 101, 102, 103, 104\]",
    ):
        load_recipe(raw)
    raw["tune"]["seeds"] = raw["tune"]["seeds"][:MAX_SEEDS]
    assert len(load_recipe(raw).tune.seeds) == MAX_SEEDS


def test_an_infinite_max_length_is_one_error_naming_its_bound_not_an_overflow_traceback(tmp_path, capsys):
    """`data.max_length: .inf` raised OverflowError formatting the bound's message."""
    raw = tiny_recipe()
    raw["data"]["max_length"] = float("inf")
    path = _write(tmp_path, yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"
    assert main(["compare", str(path), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"`data.max_length` must be at most {MAX_LENGTH} tokens, got inf" in err
    assert "OverflowError" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()

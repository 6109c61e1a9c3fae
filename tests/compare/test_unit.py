"""A unit of work (one seed's array, one sequential run) executed from its plain JSON description in a fresh process
trains what the comparison trains in its own: the same initial weights, data and batch order (fingerprints), the
same curves and test metrics."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from lossbench.compare import Comparison, load_recipe
from lossbench.compare.execution.unit import Unit, unit_book, unit_losses
from lossbench.compare.recipe.schema import Recipe
from lossbench.compare.store.layout import COMPARISON_FILE, TEACHER_DIR
from lossbench.compare.store.records import load_records
from tests.compare.conftest import tiny_recipe

# digits (10 classes, 64 features): two losses of one projection shape, two seeds, float64 so that the numbers of
# two processes agree to rounding whatever their order of reductions
RECIPE = tiny_recipe(
    name="unit",
    data={"path": "lossbench:digits", "batch_size": 64},
    backbone={"d_model": 16, "nhead": 2, "num_layers": 1},
    losses=["ce", {"name": "focal", "args": {"gamma": 2.0}}],
    trainer={"max_steps": 6, "eval_every_n_steps": 3, "precision": "64-true"},
    executor="fused",
)


def run_unit_process(unit: Unit, tmp_path, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(unit.to_dict()))  # plain JSON: nothing but the description crosses over
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lossbench.compare.execution.unit", str(path)], capture_output=True, text=True, env=env
    )


def runs(folder):
    return {(r.loss, r.seed): (r, rows) for r, rows in load_records(folder)}


def close(a, b, tol=1e-9):
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol) or (math.isnan(a) and math.isnan(b))


def assert_same_run(mine, theirs):
    (record, rows), (ref, ref_rows) = mine, theirs
    assert record.status == ref.status == "finished"
    assert record.fingerprints == ref.fingerprints  # initial weights, head shape, data, batch order of every epoch
    assert record.fingerprints["backbone_init"] and record.fingerprints["data_order"]
    assert record.test.keys() == ref.test.keys() and record.test
    assert all(close(record.test[k], ref.test[k]) for k in ref.test), (record.test, ref.test)
    assert all(close(record.final[k], ref.final[k]) for k in ref.final)
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows] == [0, 3, 6]
    for row, other in zip(rows, ref_rows):
        assert all(close(row[c], other[c]) for c in other if c != "wall_time" and other[c] is not None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The comparison run in this process, and an empty folder prepared as a launcher leaves it (comparison.json)."""
    tmp = tmp_path_factory.mktemp("unit")
    comparison = Comparison(load_recipe(RECIPE), tmp / "ref", progress=False)
    comparison.run()
    return comparison, runs(tmp / "ref")


def prepared(comparison, folder):
    folder.mkdir()
    shutil.copy(comparison.output / COMPARISON_FILE, folder / COMPARISON_FILE)
    return str(folder)


def test_a_seeds_array_run_as_a_unit_in_a_fresh_process_equals_the_comparisons(reference, tmp_path):
    comparison, ref = reference
    units = comparison.units()
    assert [(u.seed, u.losses, u.executor) for u in units] == [
        (0, ["ce", "focal"], "fused"),
        (1, ["ce", "focal"], "fused"),
    ]
    unit = Unit.from_dict({**units[1].to_dict(), "output": prepared(comparison, tmp_path / "work")})
    done = run_unit_process(unit, tmp_path, "seed1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0].startswith("ce seed 1: val/accuracy ")
    mine = runs(tmp_path / "work")
    assert set(mine) == {("ce", 1), ("focal", 1)}  # that seed only
    for key in mine:
        assert_same_run(mine[key], ref[key])
        assert (
            mine[key][0].execution
            == ref[key][0].execution
            == {
                "executor": "fused",
                "members": ["ce", "focal"],
                "vmapped": True,
            }
        )
    again = run_unit_process(unit, tmp_path, "seed1-again")  # as the comparison would: finished runs are skipped
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.splitlines() == [
        "ce seed 1: finished earlier, skipped",
        "focal seed 1: finished earlier, skipped",
    ]


def test_a_sequential_run_of_the_second_loss_alone_has_the_fingerprints_of_its_seed(reference, tmp_path):
    """In a fresh process nothing of the seed is built before it (not the first loss's model, not the array)."""
    comparison, ref = reference
    unit = Unit(comparison.recipe.to_dict(), 0, ["focal"], prepared(comparison, tmp_path / "work"), "sequential")
    done = run_unit_process(unit, tmp_path, "focal0")
    assert done.returncode == 0, done.stderr[-3000:]
    mine = runs(tmp_path / "work")
    assert set(mine) == {("focal", 0)}
    assert_same_run(mine[("focal", 0)], ref[("focal", 0)])  # fused there, alone here: the same run
    assert mine[("focal", 0)][0].execution == {"executor": "sequential"}


def test_a_unit_is_plain_json_and_its_recipe_the_resolved_one():
    recipe = load_recipe(RECIPE)
    unit = Unit(recipe.to_dict(), 3, ["ce"], "out", "sequential")
    assert Unit.from_dict(json.loads(json.dumps(unit.to_dict()))) == unit
    again = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe and again.recipe_hash == recipe.recipe_hash and again.setup_hash == recipe.setup_hash
    tuned = load_recipe(
        {**RECIPE, "tune": {"trials": 2, "seeds": [9], "space": {"optimizer.lr": {"low": 1e-3, "high": 1e-2}}}}
    )
    assert tuned.tune is not None and Recipe.from_dict(tuned.to_dict()) == tuned
    assert Recipe.from_dict(tuned.to_dict()).setup_hash == tuned.setup_hash


@pytest.mark.parametrize(
    "change, match",
    [
        ({"executor": "ray"}, r"\['executor'\] are ill-typed"),
        ({"seed": True}, r"\['seed'\] are ill-typed"),
        ({"losses": []}, r"\['losses'\] are ill-typed"),
        ({"extra": 1}, r"unknown \['extra'\]"),
    ],
)
def test_a_bad_unit_description_is_refused_naming_the_field(change, match):
    values = {**Unit(load_recipe(RECIPE).to_dict(), 0, ["ce"], "out", "fused").to_dict(), **change}
    with pytest.raises(ValueError, match=match):
        Unit.from_dict(values)


def test_a_unit_of_another_recipe_or_an_unknown_loss_is_refused(reference, tmp_path):
    comparison, _ = reference
    folder = prepared(comparison, tmp_path / "work")
    other = load_recipe({**RECIPE, "optimizer": {"name": "adamw", "lr": 0.02}})
    with pytest.raises(ValueError, match="is not that of the comparison in"):
        unit_book(Unit(other.to_dict(), 0, ["ce"], folder, "fused"))
    with pytest.raises(ValueError, match=r"losses \['sce'\] are not the recipe's"):
        unit_losses(comparison.recipe, ["sce"], tmp_path)
    done = run_unit_process(Unit(other.to_dict(), 0, ["ce"], folder, "fused"), tmp_path, "other")
    assert done.returncode == 2 and "is not that of the comparison" in done.stderr
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [COMPARISON_FILE]  # nothing written


def test_a_unit_of_a_distilling_comparison_rebuilds_its_teachers_logits(tmp_path):
    """The worker loads the seed's teacher from DIR/teacher (trained before any unit) and gives its batches the
    same logits: the students' records carry the same teacher fingerprint and the same numbers."""
    from tests.compare.test_distill import distil

    comparison = Comparison(load_recipe(distil(seeds=[0])), tmp_path / "ref", progress=False)
    comparison.run()
    ref = runs(tmp_path / "ref")
    work = tmp_path / "work"
    shutil.copytree(comparison.output / TEACHER_DIR, work / TEACHER_DIR)  # the teachers come first
    shutil.copy(comparison.output / COMPARISON_FILE, work / COMPARISON_FILE)
    (unit,) = comparison.units()
    done = run_unit_process(Unit.from_dict({**unit.to_dict(), "output": str(work)}), tmp_path, "students")
    assert done.returncode == 0, done.stderr[-3000:]
    mine = runs(work)
    assert set(mine) == {("ce", 0), ("kd", 0), ("kd_hard", 0)}
    for key, run in mine.items():
        assert run[0].fingerprints["teacher"] == comparison.teacher_fingerprints[0]
        record, rows = run
        ref_record, ref_rows = ref[key]
        assert record.fingerprints == ref_record.fingerprints and record.test.keys() == ref_record.test.keys()
        assert all(math.isclose(record.test[k], ref_record.test[k], rel_tol=1e-5, abs_tol=1e-6) for k in record.test)


def test_a_tuned_comparisons_unit_trains_each_loss_at_its_chosen_point(tmp_path):
    raw = {
        **tiny_recipe(
            losses=["ce", "focal"], seeds=[0], executor="fused", trainer={"max_steps": 2, "eval_every_n_steps": 2}
        ),
        "tune": {"trials": 2, "seeds": [100], "space": {"optimizer.lr": {"low": 1e-3, "high": 3e-2, "log": True}}},
    }
    comparison = Comparison(load_recipe(raw), tmp_path / "out", progress=False)
    comparison.run()
    (unit,) = comparison.units()
    book, losses = unit_book(Unit.from_dict(json.loads(json.dumps(unit.to_dict()))))
    assert losses == comparison.losses  # read back from DIR/tuning.json: the points the comparison trained at
    assert [loss.tuning["role"] for loss in losses] == ["final", "final"] and losses[0].overrides
    assert {r.loss: r.tuning for r, _ in load_records(tmp_path / "out")} == {l.label: l.tuning for l in losses}

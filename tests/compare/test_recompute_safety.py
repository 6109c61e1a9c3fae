"""Issue 19 (B5, B6, weak): `lossbench report DIR --recompute` reads a folder someone else may have made.

It reads it as a checkpoint is read: a record never makes lossbench import a module, a model much larger than the
weights it would load is refused before it is allocated, a data cache never lands outside the folder (or a temporary
one), and one run that cannot be checked is one difference -- every other run is still checked. The teacher/ and
tuning/ parts of a folder are recomputed too, and each loss's tuning choice is selected again from the trial records.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pytest
import torch

from lossbench.cli import main
from lossbench.compare import Comparison, load_recipe
from lossbench.compare.execution.recompute import recompute
from lossbench.compare.recipe.trials import trial_label
from lossbench.compare.store.layout import SUMMARY_FILE, TUNING_DIR, WEIGHTS_FILE, run_dir
from lossbench.compare.store.records import RunRecord, read_csv, write_csv
from tests.compare.conftest import tiny_recipe


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("recompute") / "out"
    Comparison(load_recipe(tiny_recipe(losses=["ce", "sce"])), out, progress=False).run()
    assert recompute(out).ok
    return out


@pytest.fixture
def copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "copy")
    return tmp_path / "copy"


def _edit_record(folder, loss, seed, **values):
    path = run_dir(folder, loss, seed) / "record.json"
    record = json.loads(path.read_text())
    record.update(values)
    path.write_text(json.dumps(record))


def _edit_comparison(folder, **recipe):
    path = folder / "comparison.json"
    meta = json.loads(path.read_text())
    for key, value in recipe.items():
        meta["recipe"][key] = value
    path.write_text(json.dumps(meta))


ALL_RUNS = ["ce seed 0", "ce seed 1", "sce seed 0", "sce seed 1"]


# -- B5: a record never makes lossbench import a module ---------------------------------------------------------


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """An importable module that leaves a marker when imported; ``Head`` is a ce head under another name."""
    name = "lossbench_recompute_probe"
    marker = tmp_path / "IMPORTED"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("imported")
        from lossbench.heads import get_head_class

        class Head(get_head_class("ce")):
            pass
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


@pytest.mark.parametrize("head", ["this.X", "probe"])
def test_a_record_naming_a_class_path_imports_nothing_and_every_other_run_is_checked(copy, probe, head, capsys):
    name, marker = probe
    head = f"{name}.Head" if head == "probe" else head
    _edit_record(copy, "ce", 1, head=head)
    result = recompute(copy)
    assert name not in sys.modules and "this" not in sys.modules and not marker.exists()
    assert result.checked == ALL_RUNS
    assert len(result.problems) == 1, result.problems
    assert result.problems[0].startswith(f"ce seed 1: its record names the head {head!r}, a dotted class path")
    assert f"--trust-head {head}" in result.problems[0]
    capsys.readouterr()
    assert main(["report", str(copy), "--recompute"]) == 1
    printed = capsys.readouterr().out
    assert "The Zen of Python" not in printed and "recomputed 4 finished run(s)" in printed
    assert printed.count("DIFFERS:") == 1


def test_a_class_path_passed_explicitly_is_imported_and_recomputed(copy, probe):
    name, marker = probe
    _edit_record(copy, "ce", 1, head=f"{name}.Head")
    result = recompute(copy, trusted_heads=[f"{name}.Head"])
    assert marker.exists() and result.ok, result.problems
    assert main(["report", str(copy), "--recompute", "--trust-head", f"{name}.Head"]) == 0


# -- B6: no model much larger than its weights, no cache outside the folder ------------------------------------


def test_a_recipe_asking_for_a_huge_backbone_is_refused_per_run_before_allocating(copy, monkeypatch):
    _edit_comparison(copy, backbone={"d_model": 512, "nhead": 2, "num_layers": 2})
    built = []
    init = torch.nn.Linear.__init__

    def spy(self, in_features, out_features, *args, **kwargs):
        if torch.empty(0).device.type != "meta":
            built.append(in_features * out_features)
        init(self, in_features, out_features, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Linear, "__init__", spy)
    result = recompute(copy)
    assert result.checked == ALL_RUNS and len(result.problems) == 4
    for run, problem in zip(ALL_RUNS, result.problems):
        assert problem.startswith(f"{run}: comparison.json's recipe and the record build a model of ")
        assert "refusing to allocate it" in problem and "'d_model': 512" in problem
    assert max(built, default=0) < 512 * 512  # nothing of the recipe's size was built


def test_a_data_cache_outside_the_folder_is_never_written(copy, tmp_path):
    outside = tmp_path / "elsewhere" / "cache"
    meta = json.loads((copy / "comparison.json").read_text())
    _edit_comparison(copy, data={**meta["recipe"]["data"], "cache_dir": str(outside)})
    assert recompute(copy).ok
    assert not (tmp_path / "elsewhere").exists()
    inside = copy / "data-cache"  # a cache inside the results folder is the folder's own: kept
    _edit_comparison(copy, data={**meta["recipe"]["data"], "cache_dir": str(inside)})
    assert recompute(copy).ok and inside.is_dir()


# -- weak: a run that cannot be checked is one difference ---------------------------------------------------------


@pytest.mark.parametrize("change", ["extra key", "wrong shape", "not a record"])
def test_a_run_that_cannot_be_checked_is_one_difference_and_the_others_are_checked(copy, change):
    folder = run_dir(copy, "sce", 0)
    if change == "not a record":
        (folder / "record.json").write_text("[1, 2")
    else:
        weights = torch.load(folder / WEIGHTS_FILE, weights_only=True)
        if change == "extra key":
            weights["head.extra"] = torch.zeros(3)
        else:
            weights["head.proj.weight"] = torch.zeros(5, weights["head.proj.weight"].shape[1])
        torch.save(weights, folder / WEIGHTS_FILE)
    result = recompute(copy)
    others = [run for run in ALL_RUNS if run != "sce seed 0"]
    assert [run for run in result.checked if run != "sce seed 0"] == others
    assert len(result.problems) == 1, result.problems
    if change == "not a record":
        assert result.problems[0].startswith("sce seed 0: ") and "record.json" in result.problems[0]
    else:
        assert result.problems[0].startswith("sce seed 0: weights.pt does not fit the model its recipe builds: ")
        assert ("head.extra" if change == "extra key" else "size mismatch") in result.problems[0]


# -- weak: DIR/tuning is recomputed, and each loss's choice selected again -------------------------------------


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "out"
    raw = tiny_recipe(losses=["ce", "sce"], seeds=[0])
    raw["tune"] = {"trials": 2, "seeds": [100], "space": {"optimizer.lr": {"low": 1e-3, "high": 3e-2, "log": True}}}
    Comparison(load_recipe(raw), out, progress=False).run()
    return out


def test_the_tuning_trials_and_the_choice_are_recomputed(tuned, tmp_path):
    result = recompute(tuned)
    assert result.ok, result.problems
    trials = [f"tuning/{trial_label(loss, j, 2)} seed 100" for loss in ("ce", "sce") for j in range(2)]
    assert sorted(result.checked) == sorted(["ce seed 0", "sce seed 0", *trials])
    out = shutil.copytree(tuned, tmp_path / "copy")
    summary = json.loads((out / SUMMARY_FILE).read_text())["losses"]["ce"]
    loser = 1 - summary["chosen"]
    # the losing trial made the winner, consistently in its record and its metrics.csv: the final run no longer
    # matches the choice, and neither does tuning.json
    folder = run_dir(out / TUNING_DIR, trial_label("ce", loser, 2), 100)
    rows = read_csv(folder / "metrics.csv")
    rows[-1]["val/accuracy"] = 1.0
    write_csv(folder / "metrics.csv", rows)
    record = RunRecord.load(folder / "record.json")
    record.final["val/accuracy"] = 1.0
    record.best["val/accuracy"] = 1.0
    record.save(folder / "record.json")
    # and a trial's test number tampered: recomputed like a final run's
    other = run_dir(out / TUNING_DIR, trial_label("sce", 0, 2), 100) / "record.json"
    record = RunRecord.load(other)
    record.test["test/accuracy"] += 0.001
    record.save(other)
    problems = recompute(out).problems
    assert any(p.startswith(f"tuning/{trial_label('sce', 0, 2)} seed 100: test/accuracy is ") for p in problems)
    assert any(p.startswith("Tuning: the final run of 'ce' seed 0 was trained at") for p in problems), problems
    assert any(p.startswith(f"{SUMMARY_FILE}: loss 'ce' records") and f"select trial {loser}" in p for p in problems)
    # the rewritten selection value is not what the trial's kept weights score on validation
    assert any(
        p.startswith(f"tuning/{trial_label('ce', loser, 2)} seed 100: val/accuracy is 1.0 in metrics.csv at step 8, ")
        and p.endswith("from weights.pt on the validation split")
        for p in problems
    )


def test_a_validation_number_rewritten_in_the_record_and_metrics_csv_is_caught_from_the_weights(copy):
    """Rewritten consistently, a curve's last point (a trial's selection value) passed every other check."""
    folder = run_dir(copy, "sce", 1)
    rows = read_csv(folder / "metrics.csv")
    true = rows[-1]["val/accuracy"]
    rows[-1]["val/accuracy"] = true + 0.05
    write_csv(folder / "metrics.csv", rows)
    record = RunRecord.load(folder / "record.json")
    record.final["val/accuracy"] = true + 0.05
    record.best["val/accuracy"] = max(r["val/accuracy"] for r in rows[1:])
    record.save(folder / "record.json")
    problems = [p for p in recompute(copy).problems if "steps_to_target" not in p and "auc" not in p]
    assert len(problems) == 1, problems
    head = f"sce seed 1: val/accuracy is {true + 0.05} in metrics.csv at step 8, "
    assert problems[0].startswith(head) and problems[0].endswith(" from weights.pt on the validation split")
    assert float(problems[0][len(head) :].split()[0]) == pytest.approx(true, abs=1e-6)  # what training logged

"""A tuned comparison survives kill -9 mid-tuning (issue 11): a real subprocess is SIGKILLed inside the tuning
array, after the tuning array finished (before the trials were selected) and once a final run is recorded; each rerun
resumes, never trains a finished trial again, and the end equals an uninterrupted tuned comparison."""

from __future__ import annotations

import json

import pytest
import yaml

from lossbench.compare.recipe.trials import trial_label
from lossbench.compare.store.records import RunRecord
from tests.compare.test_kill import RECIPE, same_results, survive_beside_reference

pytestmark = pytest.mark.slow

TUNED = {
    **RECIPE,
    "executor": "fused",
    "tune": {"trials": 2, "seeds": [100], "space": {"optimizer.lr": {"low": 3e-3, "high": 3e-2, "log": True}}},
}
TRIALS = [trial_label(loss, j, 2) for loss in ("ce", "focal") for j in range(2)]


def trial_status(out):
    status = []
    for label in TRIALS:
        path = out / "tuning" / "runs" / label / "seed_100" / "record.json"
        status.append(RunRecord.load(path).status if path.exists() else None)
    return status


def test_a_tuned_compare_survives_kill_9_mid_tuning_and_ends_as_an_uninterrupted_one(tmp_path):
    recipe = tmp_path / "tuned.yaml"
    recipe.write_text(yaml.safe_dump(TUNED, sort_keys=False), encoding="utf-8")

    def mid_tuning(o):  # killed at step 6 of the tuning array: its checkpoint is step 4's; nothing chosen yet
        assert trial_status(o) == ["running"] * 4 and (o / "tuning" / "arrays" / "seed_100" / "last.ckpt").exists()
        assert not (o / "tuning.json").exists() and not (o / "runs").exists()

    def tuned_not_selected(o):  # resumed and finished every trial; killed before the selection was written
        assert trial_status(o) == ["finished"] * 4 and not (o / "tuning.json").exists()

    def final_recorded(o):  # selected; the first final array trained, killed once its first member was recorded
        assert (o / "tuning.json").exists()
        assert RunRecord.load(o / "runs" / "ce" / "seed_0" / "record.json").status == "finished"
        assert not (o / "runs" / "ce" / "seed_1").exists()

    # run:2 is the tuning comparison's second run (its array trained them all at run:1); "finished" the first
    # run recorded finished by the third process: every trial finished before it started
    out, reference_out = survive_beside_reference(
        recipe, tmp_path, [("step:6", mid_tuning), ("run:2", tuned_not_selected), ("finished", final_recorded)]
    )
    assert [RunRecord.load(out / "tuning" / "runs" / t / "seed_100" / "record.json").resumed for t in TRIALS] == [1] * 4
    assert json.loads((out / "tuning.json").read_text()) == json.loads((reference_out / "tuning.json").read_text())
    same_results(out, reference_out)
    assert (out / "report.md").read_text().count("## Tuning") == 1

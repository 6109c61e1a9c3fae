"""The fused executor survives kill -9 (as ``test_kill.py`` does for sequential runs): a real subprocess is
SIGKILLed mid-array, while writing the array's checkpoint, after the first member of an array is recorded
finished and between arrays. Each rerun resumes the array from its one checkpoint, never trains a finished
member again, and the end equals an uninterrupted fused comparison (timings aside)."""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.compare.test_kill import RECIPE, compare, record, same_results, survive_beside_reference

pytestmark = pytest.mark.slow

FUSED = {**RECIPE, "executor": "fused"}  # ce and focal, seeds 0 and 1, dropout 0.1, 12 steps, evaluations every 4


def array_step(out, seed):
    path = out / "arrays" / f"seed_{seed}" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"] if path.exists() else None


def status(out):
    return [
        (record(out, loss, seed) or {}).get("status")
        for loss, seed in [("ce", 0), ("focal", 0), ("ce", 1), ("focal", 1)]
    ]


def test_fused_compare_survives_kill_9_and_resumes_its_arrays_exactly(tmp_path):
    recipe = tmp_path / "fused.yaml"
    recipe.write_text(yaml.safe_dump(FUSED, sort_keys=False), encoding="utf-8")

    def mid_array(o):  # killed at step 6: the array's checkpoint is the evaluation of step 4, one for both members
        assert status(o) == ["running", "running", None, None] and array_step(o, 0) == 4
        assert not (o / "runs" / "ce" / "seed_0" / "checkpoints").exists()

    def writing_checkpoint(o):  # resumed from 4, killed writing step 8's checkpoint: step 4's is there, whole
        assert array_step(o, 0) == 4

    def first_member_finished(o):  # resumed again, trained to the end; ce recorded finished, focal not yet
        assert status(o) == ["finished", "running", None, None] and array_step(o, 0) == 12

    def between_arrays(o):  # focal finished from the array's last checkpoint (ce loaded with it, not retrained)
        assert status(o) == ["finished", "finished", None, None] and not (o / "arrays").exists()

    out, reference = survive_beside_reference(
        recipe,
        tmp_path,
        [
            ("step:6", mid_array),
            ("write:last.ckpt", writing_checkpoint),
            ("finished", first_member_finished),
            ("run:3", between_arrays),
        ],
    )
    assert [record(out, loss, 0)["resumed"] for loss in ("ce", "focal")] == [2, 3]
    assert [record(out, loss, 1)["resumed"] for loss in ("ce", "focal")] == [0, 0]
    assert record(out, "ce", 0)["execution"]["members"] == ["ce", "focal"]
    same_results(out, reference)


def test_an_array_checkpoint_of_the_older_layout_is_set_aside_and_the_array_started_over(tmp_path):
    """An array checkpoint written before the backbones were stacked holds each member's own parameters: it cannot
    be loaded into stacked leaves, so it is moved aside, the array starts over, and the records say why."""
    recipe = tmp_path / "fused.yaml"
    recipe.write_text(yaml.safe_dump(FUSED, sort_keys=False), encoding="utf-8")
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert compare(recipe, out, cache, kill_at="step:6").returncode != 0
    ckpt = out / "arrays" / "seed_0" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["lossbench_array"].pop("layout") == "stacked"
    torch.save(state, ckpt)  # as an older lossbench wrote it
    assert compare(recipe, out, cache).returncode == 0
    for loss in ("ce", "focal"):
        done = record(out, loss, 0)
        assert done["status"] == "finished" and done["resumed"] == 0, loss
        assert any("written by an older lossbench" in note and "run started over" in note for note in done["restarts"])

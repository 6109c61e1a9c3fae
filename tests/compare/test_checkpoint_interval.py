"""Issue 10, deliverable 4: checkpoints no more often than the resume guarantee needs.

``trainer.checkpoint_every_s`` saves the resume point after an evaluation at most once per that many seconds
(0: after every evaluation). A run stopped after evaluations that were never checkpointed resumes from the older
checkpoint and replays them: its table (metrics.csv), its best-on-validation weights and its test results end
exactly as an uninterrupted run's, on both executors.
"""

from __future__ import annotations

import signal

import lightning.pytorch as pl
import pytest
import torch

from lossbench import _killpoint as killpoint
from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.compare.execution.callbacks import LastCheckpoint
from lossbench.compare.execution.interrupt import Interrupted
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import load_records, read_csv
from tests.compare.conftest import tiny_recipe

# wine in batches of 16: evaluations at steps 4, 8 and 12; dropout makes the replayed RNG states matter
TRAINER = {"max_steps": 12, "eval_every_n_steps": 4}


def recipe(executor: str, every_s: float) -> dict:
    return tiny_recipe(
        losses=["ce", "square"],
        seeds=[0],
        select="best",
        executor=executor,
        data__batch_size=16,
        backbone__dropout=0.1,
        trainer={**TRAINER, "checkpoint_every_s": every_s},
    )


@pytest.fixture
def saves(monkeypatch):
    """The global step of every checkpoint the Trainer writes."""
    steps: list[int] = []
    save = pl.Trainer.save_checkpoint

    def spy(trainer, *args, **kwargs):
        steps.append(int(trainer.global_step))
        return save(trainer, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", spy)
    return steps


@pytest.mark.parametrize("executor", ["sequential", "fused"])
def test_checkpoints_are_written_at_most_once_per_interval(tmp_path, saves, executor):
    Comparison(load_recipe(recipe(executor, 0)), tmp_path / "every", progress=False).run()
    runs = 2 if executor == "sequential" else 1  # the array is one checkpoint for both members
    assert saves == [4, 8, 12] * runs
    saves.clear()
    Comparison(load_recipe(recipe(executor, 3600)), tmp_path / "rarely", progress=False).run()
    # sequential: none (a kill restarts a run shorter than the interval); fused: one when training ends, so that a
    # kill while its members are being recorded resumes the array at its end
    assert saves == ([] if executor == "sequential" else [12])


def stop_at_step(step: int):
    class Stop(pl.Callback):  # what SIGTERM does to a comparison (lossbench.compare.execution.interrupt)
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == step:
                raise Interrupted(signal.SIGTERM)

    return lambda: [Stop()]


def tables(out):
    return {
        (r.loss, r.seed): (
            [{k: v for k, v in row.items() if k != "wall_time"} for row in rows],
            r.selected,
            r.test,
            r.best,
            r.final,
        )
        for r, rows in load_records(out)
    }


@pytest.mark.parametrize("executor", ["sequential", "fused"])
def test_a_run_stopped_after_unsaved_evaluations_replays_them_exactly(tmp_path, monkeypatch, executor):
    Comparison(load_recipe(recipe(executor, 0)), tmp_path / "reference", progress=False).run()
    # a clock under which the step-4 evaluation is saved (due after 50 s), the step-8 one is not
    ticks = iter([0.0, 100.0, 100.0, 120.0])
    monkeypatch.setattr(LastCheckpoint, "clock", staticmethod(lambda: next(ticks, 1000.0)))
    monkeypatch.setattr(killpoint, "callbacks", stop_at_step(10))
    out = tmp_path / "stopped"
    with pytest.raises(Interrupted):
        Comparison(load_recipe(recipe(executor, 50)), out, progress=False).run()
    first = run_dir(out, "ce", 0)
    assert [row["step"] for row in read_csv(first / "metrics.csv")] == [0, 4, 8]  # step 8 evaluated, not saved
    ckpt = out / "arrays" / "seed_0" / "last.ckpt" if executor == "fused" else first / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 4
    monkeypatch.setattr(killpoint, "callbacks", lambda: [])
    Comparison(load_recipe(recipe(executor, 50)), out, progress=False).run()
    assert tables(out) == tables(tmp_path / "reference")
    resumed = {"ce": 1, "square": 1 if executor == "fused" else 0}  # sequential: square had not started
    assert {r.loss: r.resumed for r, _ in load_records(out)} == resumed
    assert all(r.selected["rule"] == "best" for r, _ in load_records(out))


def test_checkpoint_interval_is_checked_and_outside_the_setup_hash():
    with pytest.raises(RecipeError, match=r"`trainer.checkpoint_every_s` must be a number of seconds >= 0.*got -1"):
        load_recipe(recipe("fused", -1))
    assert load_recipe(recipe("fused", 0)).setup_hash == load_recipe(recipe("fused", 60)).setup_hash
    default = tiny_recipe(trainer=dict(TRAINER))
    del default["trainer"]["checkpoint_every_s"]
    assert load_recipe(default).trainer["checkpoint_every_s"] == 60

"""Lightning's Trainer options in a recipe (issue 23 item 1): a logger per run, callbacks per run (and the report's
word when they make budgets differ), gradient accumulation, the logger's step rows."""

from __future__ import annotations

import struct

import pytest
import torch

import lossbench
from lossbench.compare import RecipeError, load_recipe
from lossbench.compare.store.layout import WEIGHTS_FILE, run_dir
from lossbench.compare.store.records import load_records

from .conftest import tiny_recipe

EARLY = {"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val/loss", "mode": "min"}}


def trainer_recipe(**trainer):
    recipe = tiny_recipe(executor="fused", seeds=[0], losses=["ce", "sce"])
    recipe["trainer"].update(trainer)
    return recipe


def runs(folder):
    return {(r.loss, r.seed): r for r, _ in load_records(folder)}


@pytest.mark.parametrize(
    ("trainer", "match"),
    [
        ({"logger": "wandb"}, r"`trainer.logger` must be 'csv' or 'tensorboard', a \{class_path, init_args\} logger"),
        ({"logger": {"class_path": "torch.nn.Linear"}}, r"`trainer.logger.class_path` 'torch.nn.Linear' is not a "),
        ({"callbacks": EARLY}, r"`trainer.callbacks` must be a list of \{class_path, init_args\} items"),
        ({"callbacks": [{"class_path": "nowhere.Callback"}]}, r"`trainer.callbacks\[0\].class_path` 'nowhere.Call"),
        ({"callbacks": [{**EARLY, "args": {}}]}, r"`trainer.callbacks\[0\]` takes only `class_path` and `init_args`"),
        ({"accumulate_grad_batches": 0}, r"`trainer.accumulate_grad_batches` must be an int >= 1, got 0"),
        ({"log_every_n_steps": 0}, r"`trainer.log_every_n_steps` must be an int >= 1 or null, got 0"),
    ],
)
def test_bad_trainer_options_are_named(trainer, match):
    with pytest.raises(RecipeError, match=match):
        load_recipe(trainer_recipe(**trainer))


def test_tensorboard_without_tensorboard_says_how_to_install_it(monkeypatch):
    import lightning.fabric.loggers.tensorboard as tb

    monkeypatch.setattr(tb, "_TENSORBOARD_AVAILABLE", False)
    monkeypatch.setattr(tb, "_TENSORBOARDX_AVAILABLE", False)
    with pytest.raises(RecipeError, match=r"`trainer.logger: tensorboard` needs TensorBoard: pip install tensorboard"):
        load_recipe(trainer_recipe(logger="tensorboard"))


def test_what_a_run_computes_is_in_the_setup_hash_and_how_it_logs_is_not():
    plain = load_recipe(trainer_recipe())
    assert "callbacks" not in plain.setup()["trainer"] and "accumulate_grad_batches" not in plain.setup()["trainer"]
    assert load_recipe(trainer_recipe(logger="csv", log_every_n_steps=1)).setup_hash == plain.setup_hash
    assert load_recipe(trainer_recipe(callbacks=[EARLY])).setup_hash != plain.setup_hash
    assert load_recipe(trainer_recipe(accumulate_grad_batches=2)).setup_hash != plain.setup_hash


def test_accelerator_auto_is_the_default_and_hashed_as_the_device_it_resolves_to(monkeypatch):
    """Lightning's default; a folder made with `cpu` (the old default) resumes with `auto` where there is no GPU,
    and is refused where `auto` would train on a GPU."""
    auto, cpu = load_recipe(trainer_recipe()), load_recipe(trainer_recipe(accelerator="cpu"))
    assert auto.trainer["accelerator"] == "auto" and auto.to_dict()["trainer"]["accelerator"] == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert auto.setup()["trainer"]["accelerator"] == "cpu" and auto.setup_hash == cpu.setup_hash
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto.setup()["trainer"]["accelerator"] == "cuda" and auto.setup_hash != cpu.setup_hash


def tensorboard_tags(folder) -> dict[str, list[int]]:
    """tag -> steps of every scalar in the TensorBoard event files of ``folder`` (TFRecord framing, read here)."""
    from tensorboardX.proto import event_pb2

    tags: dict[str, list[int]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (size,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12 : i + 12 + size])
            i += 12 + size + 4
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


@pytest.mark.slow
def test_a_tensorboard_logger_per_run_with_per_step_loss_terms(tmp_path):
    pytest.importorskip("tensorboardX")
    recipe = trainer_recipe(logger="tensorboard", log_every_n_steps=1)
    lossbench.compare(recipe, output=tmp_path / "out", progress=False)
    for (loss, seed), record in runs(tmp_path / "out").items():
        assert record.status == "finished" and record.execution["executor"] == "sequential"
        assert record.execution["fallback"].startswith("trainer.logger: each run logs to a logger of its own")
        tags = tensorboard_tags(run_dir(tmp_path / "out", loss, seed) / "logs")
        steps = list(range(record.steps))
        assert tags["train/loss"] == steps and tags["train/grad_norm"] == steps and tags["train/lr"] == steps
        # the evaluations after steps 4 and 8 (at Lightning's step index); the one before training (step 0) reaches
        # the logger in some runs and not in others (Lightning's validate before fit), so it is left out here
        assert [s for s in tags["val/accuracy"] if s != 0] == [3, 7]
    sce = tensorboard_tags(run_dir(tmp_path / "out", "sce", 0) / "logs")
    terms = sorted(t for t in sce if t.startswith("train/") and t.split("/")[1] in ("ce", "rce"))
    assert terms == ["train/ce", "train/rce"] and sce["train/rce"] == list(range(8))  # the loss's own terms


@pytest.mark.slow
def test_a_callback_that_stops_some_runs_early_is_said_next_to_the_verdicts(tmp_path):
    """sce's val/loss (ce + rce) stays above 1.2 where ce's falls below it: EarlyStopping's threshold stops ce."""
    stop = {**EARLY, "init_args": {**EARLY["init_args"], "stopping_threshold": 1.2}}
    recipe = trainer_recipe(callbacks=[stop])
    result = lossbench.compare(recipe, output=tmp_path / "out", progress=False)
    found = runs(tmp_path / "out")
    assert found[("ce", 0)].steps < found[("sce", 0)].steps == 8
    assert found[("ce", 0)].execution["callbacks"] == [
        "lightning.pytorch.callbacks.EarlyStopping(monitor='val/loss', mode='min', stopping_threshold=1.2)"
    ]
    head = result.report_path.read_text().splitlines()[:20]
    assert any(
        line.startswith("> **The budgets differ:** runs of the same seed stopped after different") for line in head
    )


@pytest.mark.slow
def test_accumulating_two_batches_of_16_is_one_batch_of_32(tmp_path):
    """The reference: mean losses, so two accumulated half batches give the full batch's gradient (float64, no
    dropout, within the first epoch: every batch full)."""

    def recipe(batch, accumulate):
        raw = trainer_recipe(accumulate_grad_batches=accumulate, precision="64-true", max_steps=3, eval_every_n_steps=3)
        raw["data"]["batch_size"], raw["backbone"]["dropout"] = batch, 0.0
        return raw

    lossbench.compare(recipe(16, 2), output=tmp_path / "acc", progress=False)
    lossbench.compare(recipe(32, 1), output=tmp_path / "full", progress=False)
    for loss in ("ce", "sce"):
        mine = torch.load(run_dir(tmp_path / "acc", loss, 0) / WEIGHTS_FILE, weights_only=True)
        full = torch.load(run_dir(tmp_path / "full", loss, 0) / WEIGHTS_FILE, weights_only=True)
        assert runs(tmp_path / "acc")[(loss, 0)].steps == 3
        for name, value in full.items():
            torch.testing.assert_close(mine[name], value, rtol=1e-9, atol=1e-9)  # summation order only

"""Exact resume: a run stopped at step k (mid-epoch or at an epoch's end) and resumed from its checkpoint
ends bitwise equal to the run that was never stopped, in float32 and float64 on CPU; without the RNG states
or without the batch-order position it does not (so these tests can fail)."""

from __future__ import annotations

import hashlib
import random
import warnings

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from lossbench import LossbenchModule
from lossbench.data import HFDataModule, SeededShuffleSampler
from lossbench.resume import AtomicCheckpointIO, ResumeState, get_rng_states, seed_rngs, set_rng_states

STEPS, EVERY, BATCH = 20, 4, 16  # wine: 124 training rows -> 8 batches per epoch, steps 1-8 are epoch 0


class Log(pl.Callback):
    """Per global step: the training loss and a hash of the batch's rows; per epoch: the logged epoch means."""

    def __init__(self) -> None:
        self.losses: dict[int, torch.Tensor] = {}
        self.batches: dict[int, str] = {}
        self.epochs: dict[int, dict[str, torch.Tensor]] = {}

    def _epoch_logs(self, trainer, epoch):
        step_logged = {"train/loss", "train/grad_norm", "train/lr"}
        self.epochs[epoch] = {
            k: v.clone() for k, v in trainer.callback_metrics.items() if k.startswith("train/") and k not in step_logged
        }

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch > 0:  # what the previous epoch's end logged
            self._epoch_logs(trainer, trainer.current_epoch - 1)

    def on_train_end(self, trainer, module):
        self._epoch_logs(trainer, trainer.current_epoch)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step = trainer.global_step
        self.losses[step] = outputs["loss"].detach().clone()
        self.batches[step] = hashlib.sha256(batch["inputs"].double().numpy().tobytes()).hexdigest()


class Stopped(Exception):
    pass


class Crash(pl.Callback):
    """Stops the run like a killed process, right after the checkpoint of step ``k`` was written."""

    def __init__(self, k: int) -> None:
        self.k = k

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.k:
            raise Stopped(f"stopped at step {self.k}")  # nothing after step k is saved


def fit(cache, precision, callbacks, ckpt_path=None, seed=0):
    dm = HFDataModule("lossbench:wine", batch_size=BATCH, cache_dir=cache, seed=3)
    model = LossbenchModule(
        "ce",
        data_spec=dm.spec,
        backbone={"d_model": 8, "nhead": 2, "num_layers": 1, "dropout": 0.2},
        lr=3e-3,
        weight_decay=0.01,
        schedule="cosine",
        warmup_steps=3,
        seed=0,
    )
    log = Log()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        deterministic=True,
        max_steps=STEPS,
        max_epochs=-1,
        val_check_interval=EVERY,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[log, *callbacks],
        enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks),
        plugins=[AtomicCheckpointIO()],
    )
    seed_rngs(seed)  # a resumed run starts in another process, with other RNG states: the checkpoint's must win
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*(does not have many workers|exists and is not empty).*")
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        except Stopped:
            pass
    return trainer, model, log


def checkpoints(folder, style):
    if style == "val_end":  # like `lossbench compare`: after each evaluation
        return pl.callbacks.ModelCheckpoint(dirpath=folder, filename="{step}", save_top_k=-1)
    return pl.callbacks.ModelCheckpoint(dirpath=folder, filename="{step}", save_top_k=-1, every_n_train_steps=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("hf-cache"))


@pytest.fixture(scope="module")
def uninterrupted(cache):
    return {p: fit(cache, p, []) for p in ("32-true", "64-true")}


def stop_and_resume(cache, tmp_path, precision, style, k):
    folder = tmp_path / "ckpt"
    trainer, _, first = fit(cache, precision, [checkpoints(folder, style), Crash(k)])
    assert trainer.global_step == k and sorted(first.losses) == list(range(1, k + 1))
    return fit(cache, precision, [checkpoints(folder, style)], ckpt_path=str(folder / f"step={k}.ckpt"), seed=1234)


def differences(a, b) -> list[str]:
    """Names of every parameter, optimizer and scheduler state tensor or value that is not bitwise equal."""
    (ta, ma, _), (tb, mb, _) = a, b
    out = [n for (n, p), (_, q) in zip(ma.named_parameters(), mb.named_parameters()) if not torch.equal(p, q)]
    oa, ob = ta.optimizers[0].state_dict(), tb.optimizers[0].state_dict()
    assert oa["state"].keys() == ob["state"].keys() and oa["param_groups"] == ob["param_groups"]
    for i, state in oa["state"].items():
        out += [f"optimizer {i} {k}" for k, v in state.items() if not torch.equal(v, ob["state"][i][k])]
    if ta.lr_scheduler_configs[0].scheduler.state_dict() != tb.lr_scheduler_configs[0].scheduler.state_dict():
        out.append("scheduler")
    return out


@pytest.mark.parametrize(
    "precision, style, k",
    [
        ("32-true", "val_end", 4),  # mid-epoch 0, after an evaluation (what `lossbench compare` saves)
        ("32-true", "val_end", 8),  # the end of epoch 0
        ("32-true", "batch_end", 5),  # mid-epoch, saved in on_train_batch_end
        ("32-true", "batch_end", 8),  # end of epoch, before that step's evaluation (Lightning skips it on resume)
        ("32-true", "batch_end", 11),  # mid-epoch 1
        ("64-true", "val_end", 12),
        ("64-true", "batch_end", 5),
    ],
)
def test_resumed_run_is_bitwise_the_uninterrupted_run(cache, uninterrupted, tmp_path, precision, style, k):
    reference = uninterrupted[precision]
    resumed = stop_and_resume(cache, tmp_path, precision, style, k)
    trainer, model, log = resumed
    assert trainer.global_step == STEPS and sorted(log.losses) == list(range(k + 1, STEPS + 1))
    ref_log = reference[2]
    assert log.batches == {s: ref_log.batches[s] for s in log.batches}  # the same rows, in the same order
    for step, loss in log.losses.items():
        assert abs(float(loss) - float(ref_log.losses[step])) < 1e-8
        assert torch.equal(loss, ref_log.losses[step]), f"training loss at step {step}"
    assert differences(reference, resumed) == []
    # the training epochs' logged means (loss, accuracy ...) cover the batches before the stop too
    assert log.epochs and all(
        log.epochs[e].keys() == ref_log.epochs[e].keys()
        and all(torch.equal(v, ref_log.epochs[e][k]) for k, v in log.epochs[e].items())
        for e in log.epochs
    ), "epoch means"
    val = trainer.callback_metrics["val/loss"]
    assert torch.equal(val, reference[0].callback_metrics["val/loss"])  # the evaluation after the last step


@pytest.mark.parametrize(
    "disable, same_batches",
    [
        ("rng", True),  # the same batches, other dropout masks
        ("position", False),  # the resumed epoch starts over from its first batch
    ],
)
def test_without_the_mechanism_the_resumed_run_differs(
    cache, uninterrupted, tmp_path, monkeypatch, disable, same_batches
):
    if disable == "rng":
        monkeypatch.setattr(ResumeState, "on_train_start", lambda self, trainer, module: None)
    else:
        monkeypatch.setattr(HFDataModule, "_resume_sampler", lambda self, sampler, position: None)
    reference = uninterrupted["32-true"]
    resumed = stop_and_resume(cache, tmp_path, "32-true", "val_end", 4)
    log, ref_log = resumed[2], reference[2]
    assert (log.batches == {s: ref_log.batches[s] for s in log.batches}) is same_batches
    assert not torch.equal(log.losses[STEPS], ref_log.losses[STEPS])
    assert len(differences(reference, resumed)) > 0


def test_checkpoints_carry_rng_states_and_the_batch_order_position(cache, tmp_path):
    folder = tmp_path / "ckpt"
    fit(cache, "32-true", [checkpoints(folder, "batch_end"), Crash(5)])
    ckpt = torch.load(folder / "step=5.ckpt", weights_only=True)  # plain types: loads without unpickling code
    rng = ckpt["callbacks"]["ResumeState"]["rng"]
    assert set(rng) >= {"torch", "numpy", "python"}
    assert ckpt["HFDataModule"]["train_position"] == {
        "epoch": 0,
        "batches": 5,
        "batch_size": BATCH,
        "num_rows": 124,
        "seed": 3,
        "world_size": 1,
    }


def test_rng_states_round_trip():
    seed_rngs(7)
    states = get_rng_states()
    first = (torch.rand(3), np.random.rand(3), random.random())
    seed_rngs(8)
    set_rng_states(states)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_sampler_resumes_once_in_the_saved_epoch_only():
    sampler = SeededShuffleSampler(10, seed=1)
    sampler.resume(epoch=2, start=4)
    assert len(sampler) == 10 and sampler.epoch == 2
    assert list(sampler) == sampler.order(2)[4:]
    assert list(sampler) == sampler.order(2)  # then whole epochs again
    sampler.resume(epoch=2, start=4)
    sampler.set_epoch(3)  # Lightning went on to the next epoch: nothing to skip there
    assert list(sampler) == sampler.order(3)
    with pytest.raises(ValueError, match="`start` must be in"):
        sampler.resume(epoch=0, start=11)


def test_a_changed_batch_size_is_not_resumed_at_a_wrong_position(cache):
    dm = HFDataModule("lossbench:wine", batch_size=8, cache_dir=cache, seed=3)
    dm.load_state_dict(
        {"train_position": {"epoch": 0, "batches": 2, "batch_size": 16, "num_rows": 124, "seed": 3, "world_size": 1}}
    )
    with pytest.warns(UserWarning, match="batch_size 16 then, 8 now"):
        loader = dm.train_dataloader()
    assert list(loader.sampler) == loader.sampler.order(0)


def test_loaders_leave_the_global_rng_alone(cache):
    dm = HFDataModule("lossbench:wine", batch_size=BATCH, cache_dir=cache)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        next(iter(loader))
    assert torch.equal(torch.get_rng_state(), before)

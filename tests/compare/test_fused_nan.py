"""The NaN policy and loss scaling per member of a fused array, and one metrics.csv rule for skipped steps.

A member whose loss is finite but whose gradient is not is skipped (``nan_policy: skip``, counted) or failed
(``raise``) alone; a skipped step writes the same ``train_loss``/``grad_norm``/``lr`` columns in both executors;
under ``16-mixed`` each member has its own loss scale, so one member's overflow skips its step only (CPU runs
float16 autocast with a ``GradScaler`` too: the same code path as on a GPU).
"""

from __future__ import annotations

import copy
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from torch.utils.data import DataLoader

from lossbench import LossbenchModule
from lossbench.compare.execution.array import ModelArray
from tests.compare.conftest import tiny_recipe
from tests.compare.fused_heads import BadGradientHead
from tests.compare.test_fused import close, make_members, run

BAD_GRAD = {"class_path": "tests.compare.fused_heads.BadGradientHead", "init_args": {"bad_from": 3}, "label": "badgrad"}
NAN_LOSS = {"class_path": "tests.compare.fused_heads.NaNFromHead", "init_args": {"nan_from": 3}, "label": "nan"}


def without_wall_time(rows):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_a_non_finite_gradient_in_one_member_touches_only_that_member(tmp_path, policy):
    _, fused = run(tmp_path, tiny_recipe(losses=["ce", BAD_GRAD, "focal"], seeds=[0], nan_policy=policy), "fused")
    _, alone = run(tmp_path, tiny_recipe(losses=["ce", "focal"], seeds=[0]), "fused", name="without")
    for loss in ("ce", "focal"):  # the others train exactly as in an array without the member
        record, rows = fused[(loss, 0)]
        assert record.status == "finished" and record.skipped_steps == 0
        assert without_wall_time(rows) == without_wall_time(alone[(loss, 0)][1])
    record, rows = fused[("badgrad", 0)]
    if policy == "skip":  # steps 2..7 (training calls 3..8) skipped: the weights of step 2 to the end
        assert record.status == "finished" and record.skipped_steps == 6
        assert all(math.isfinite(r["val/loss"]) for r in rows)
        assert rows[-1]["val/loss"] == rows[-2]["val/loss"]
        assert rows[-1]["grad_norm"] == rows[-2]["grad_norm"] and math.isfinite(rows[-1]["grad_norm"])
    else:
        assert record.status == "failed" and record.error.startswith("FloatingPointError: ")
        assert (
            "at step 2 (batch 2)" in record.error
            and "but its gradient is not finite (gradient norm nan)" in record.error
        )
        assert [r["step"] for r in rows] == [0]


def test_skipped_steps_write_the_same_columns_in_both_executors(tmp_path):
    """A step skipped on its loss or its gradient: train_loss, grad_norm and lr by one rule (evaluation_row)."""
    recipe = tiny_recipe(
        losses=["ce", NAN_LOSS, BAD_GRAD],
        seeds=[0],
        nan_policy="skip",
        trainer={"max_steps": 8, "eval_every_n_steps": 2, "precision": "64-true"},
        schedule={"name": "cosine", "warmup_steps": 1},
    )
    _, fused = run(tmp_path, recipe, "fused")
    _, seq = run(tmp_path, recipe, "sequential")
    for key in fused:
        (record, rows), (other, other_rows) = fused[key], seq[key]
        assert record.skipped_steps == other.skipped_steps == (0 if key[0] == "ce" else 6), key
        assert [r["step"] for r in rows] == [r["step"] for r in other_rows] == [0, 2, 4, 6, 8]
        for row, ref in zip(rows, other_rows):
            for column in ("train_loss", "grad_norm", "lr", "val/loss"):
                assert close(row[column], ref[column], 1e-10), (key, row["step"], column, row[column], ref[column])
    for key in (("nan", 0), ("badgrad", 0)):  # steps 0 and 1 updated the weights; 2..7 were skipped
        rows = fused[key][1]
        assert rows[1]["grad_norm"] is not None and all(r["grad_norm"] == rows[1]["grad_norm"] for r in rows[2:])
        assert all(r["lr"] == rows[1]["lr"] for r in rows[2:])  # the last update's, not the schedule's since
    assert fused[("nan", 0)][1][-1]["train_loss"] is None  # no finite loss since the last evaluation
    assert fused[("badgrad", 0)][1][-1]["train_loss"] is not None  # finite losses, skipped on their gradient


def two_members():
    members = make_members([("a", "ce"), ("b", "ce")])
    return members, ModelArray(members)


def test_each_member_has_its_own_loss_scale():
    members, array = two_members()
    ref_members, ref = two_members()
    opt, ref_opt = array.configure_optimizers(), ref.configure_optimizers()
    array.use_loss_scaling(init_scale=2.0**10, growth_interval=2)
    torch.manual_seed(0)
    batch = (torch.randn(16, 5), torch.randint(0, 3, (16,)))
    array.training_step(batch, 0).backward()
    ref.training_step(batch, 0).backward()  # no loss scaling
    members["b"].head.proj.weight.grad[0, 0] = math.inf  # a fake overflow in b's scaled gradient
    before = {label: copy.deepcopy(m.state_dict()) for label, m in members.items()}
    array.on_before_optimizer_step(opt)
    ref.on_before_optimizer_step(ref_opt)
    for p, q in zip(array.member_grads(0), ref.member_grads(0)):
        assert torch.equal(p, q)  # unscaled by its own (power of two) scale: exactly the gradient
    assert all(p.grad is None for p in members["b"].head.parameters())  # dropped; its backbone slice is masked
    assert array.loss_scales == [2.0**10, 2.0**9]  # only b's scale backs off
    assert members["b"].skipped_steps == 0 and not array.failed  # an overflow is the scale's, not the NaN policy's
    assert array.step_grad_norms[1] is None and torch.equal(array.step_grad_norms[0], ref.grad_norm(0))
    opt.step()
    assert not all(torch.equal(p, before["a"][n]) for n, p in members["a"].state_dict().items())
    assert all(torch.equal(p, before["b"][n]) for n, p in members["b"].state_dict().items())
    opt.zero_grad()
    array.training_step(batch, 1).backward()
    array.on_before_optimizer_step(opt)
    assert array.loss_scales == [2.0**11, 2.0**9]  # a grows after 2 finite steps in a row, b has had 1


def fit_16_mixed(array, steps=4):
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(steps)]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler)],
    )
    trainer.fit(array, DataLoader(data, batch_size=None))
    return trainer


def test_under_16_mixed_one_members_overflow_skips_only_its_own_step():
    a = make_members([("a", "ce")])["a"]
    overflow = BadGradientHead(a.head.in_features, 3, bad_from=2, bad_until=2, value="inf")  # at step 1 only
    b = LossbenchModule(
        overflow, data_spec=a.data_spec, backbone={"d_model": 16, "nhead": 2, "num_layers": 2}, seed=7, lr=1e-3
    )
    array = ModelArray({"a": a, "b": b})
    alone = ModelArray(make_members([("a", "ce")]))
    trainer = fit_16_mixed(array)
    fit_16_mixed(alone)
    for p, q in zip(a.parameters(), alone.members[0].parameters()):  # a took every step, as alone
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)
    assert array.loss_scales == [2.0**10, 2.0**9] and alone.loss_scales == [2.0**10]
    assert b.skipped_steps == 0 and not array.failed and all(torch.isfinite(p).all() for p in b.parameters())
    assert not trainer.precision_plugin.scaler.is_enabled()  # the array scales per member instead


def overflow_array(bad_at):
    """Members a (ce) and b (an inf gradient at its training call ``bad_at``; None: never), same initial weights."""
    a = make_members([("a", "ce")])["a"]
    calls = 10**9 if bad_at is None else bad_at
    head = BadGradientHead(a.head.in_features, 3, bad_from=calls, bad_until=calls, value="inf")
    b = LossbenchModule(
        head, data_spec=a.data_spec, backbone={"d_model": 16, "nhead": 2, "num_layers": 2}, seed=7, lr=1e-3
    )
    return ModelArray({"a": a, "b": b})


def fit_16_mixed_resumable(array, steps, ckpt_path=None):
    torch.manual_seed(0)
    batch = (torch.randn(16, 5), torch.randint(0, 3, (16,)))  # one batch: a resumed epoch sees the same data
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler)],
    )
    trainer.fit(array, DataLoader([batch] * 6, batch_size=None), ckpt_path=ckpt_path)
    return trainer


def test_each_members_loss_scale_survives_a_checkpoint(tmp_path):
    """Resumed under 16-mixed, each member goes on with its own scale and growth count (not the scaler's init
    scale, and the Trainer's scaler stays disabled): the same scales as without the interruption."""
    straight = overflow_array(bad_at=2)
    fit_16_mixed_resumable(straight, 5)
    first = overflow_array(bad_at=2)
    trainer = fit_16_mixed_resumable(first, 3)
    assert first.loss_scales == [2.0**11, 2.0**9] and first._growth == [1, 1]  # b: 1 finite, backoff, 1 finite
    trainer.save_checkpoint(tmp_path / "array.ckpt")
    resumed = overflow_array(bad_at=None)  # the head's call counter restarts: the overflow is behind us
    trainer = fit_16_mixed_resumable(resumed, 5, ckpt_path=tmp_path / "array.ckpt")
    assert not trainer.precision_plugin.scaler.is_enabled()
    assert resumed.loss_scales == straight.loss_scales == [2.0**12, 2.0**10]
    assert resumed._growth == straight._growth == [1, 1]

"""NaN/Inf policy: raise names the step, the loss and the term; skip skips the step and counts it."""

import math

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from lossbench import LossbenchModule
from lossbench.compare import Comparison, load_recipe
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import RunRecord
from lossbench.data import DataSpec
from tests.compare.conftest import tiny_recipe

SPEC = DataSpec("features", "class", num_classes=3, num_features=4)
SMALL = {"d_model": 8, "nhead": 2, "num_layers": 1}


def batches(nan_at: int | None = None, n: int = 6):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        x = torch.randn(8, 4, generator=g)
        if i == nan_at:
            x[0, 0] = float("nan")
        out.append({"inputs": x, "target": torch.randint(0, 3, (8,), generator=g)})
    return out


def fit(model, data):
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, DataLoader(data, batch_size=None))
    return trainer


def test_raise_names_step_loss_and_term():
    model = LossbenchModule("poly1", data_spec=SPEC, backbone=SMALL, seed=0)
    with pytest.raises(
        FloatingPointError, match=r"at step 3 \(batch 3\) the 'poly1' loss is nan \(non-finite terms: ce, poly\)"
    ):
        fit(model, batches(nan_at=3))


def test_skip_skips_the_step_counts_it_and_leaves_weights_finite():
    model = LossbenchModule("ce", data_spec=SPEC, backbone=SMALL, seed=0, nan_policy="skip")
    trainer = fit(model, batches(nan_at=2))
    assert model.skipped_steps == 1
    assert float(trainer.callback_metrics["train/skipped_steps"]) == 1.0
    # the skipped batch changed nothing: same weights as training on the five clean batches alone
    clean = [b for i, b in enumerate(batches(nan_at=2)) if i != 2]
    reference = LossbenchModule("ce", data_spec=SPEC, backbone=SMALL, seed=0)
    fit(reference, clean)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.isfinite(p).all() and torch.equal(p, q), name


def test_nan_in_one_loss_term_is_named():
    class NaNTerm(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, idx):
            if idx == 1:
                module.head.epsilon = float("inf")  # poly term becomes inf; ce stays finite

    model = LossbenchModule("poly1", data_spec=SPEC, backbone=SMALL, seed=0)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[NaNTerm()],
    )
    with pytest.raises(FloatingPointError, match=r"step 1 .*non-finite terms: poly\)"):
        trainer.fit(model, DataLoader(batches(), batch_size=None))


def test_bad_policy_is_refused():
    with pytest.raises(ValueError, match="`nan_policy` must be 'raise' or 'skip', got 'ignore'"):
        LossbenchModule("ce", data_spec=SPEC, backbone=SMALL, nan_policy="ignore")


def test_skipped_steps_reach_the_run_record_and_report(tmp_path, monkeypatch):
    """A comparison with nan_policy: skip records and reports the count (NaN injected in one batch)."""
    from lossbench.data.loading import Collate

    original = Collate.__call__
    calls = {"n": 0}

    def poisoned(self, rows):
        batch = original(self, rows)
        calls["n"] += 1
        if calls["n"] == 3:
            batch["inputs"][0, 0] = math.nan
        return batch

    monkeypatch.setattr(Collate, "__call__", poisoned)
    recipe = load_recipe(tiny_recipe(losses=["ce"], seeds=[0], nan_policy="skip"))
    out = tmp_path / "out"
    Comparison(recipe, out, progress=False).run()
    record = RunRecord.load(run_dir(out, "ce", 0) / "record.json")
    assert record.status == "finished" and record.skipped_steps >= 1
    assert "nan_policy: skip" in (out / "report.md").read_text()


def bad_gradient_model(bad_at: int | None, policy: str = "raise"):
    """A model whose head's loss is finite at every batch but whose gradient is NaN at batch ``bad_at``."""
    from tests.compare.fused_heads import BadGradientHead

    calls = 10**9 if bad_at is None else bad_at + 1  # the head counts its training calls from 1
    torch.manual_seed(0)
    head = BadGradientHead(in_features=8, num_classes=3, bad_from=calls, bad_until=calls)
    return LossbenchModule(head, data_spec=SPEC, backbone=SMALL, seed=0, nan_policy=policy)


def test_skip_sees_a_non_finite_gradient_of_a_finite_loss():
    model = bad_gradient_model(bad_at=2, policy="skip")
    reference = bad_gradient_model(bad_at=None)
    reference.load_state_dict(model.state_dict())
    trainer = fit(model, batches())
    assert model.skipped_steps == 1
    assert float(trainer.callback_metrics["train/skipped_steps"]) == 1.0
    fit(reference, [b for i, b in enumerate(batches()) if i != 2])  # the skipped batch changed nothing
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.isfinite(p).all() and torch.equal(p, q), name
    assert torch.isfinite(model.step_grad_norm) and model.step_lr == 1e-3  # the last step that updated


def test_raise_names_a_non_finite_gradient_of_a_finite_loss():
    with pytest.raises(
        FloatingPointError,
        match=r"at step 2 \(batch 2\) the 'BadGradientHead' loss is \d\.\d+ "
        r"but its gradient is not finite \(gradient norm nan\)",
    ):
        fit(bad_gradient_model(bad_at=2), batches())


def test_under_a_loss_scaler_a_non_finite_gradient_is_the_scalers_overflow():
    """16-mixed: an inf gradient of a finite loss lowers the scale and skips that step (torch's GradScaler), and
    nan_policy="raise" does not raise on it nor count it; the last step that updated keeps its norm."""
    from lightning.pytorch.plugins import MixedPrecision

    from tests.compare.fused_heads import BadGradientHead

    torch.manual_seed(0)
    head = BadGradientHead(in_features=8, num_classes=3, bad_from=3, bad_until=3, value="inf")
    model = LossbenchModule(head, data_spec=SPEC, backbone=SMALL, seed=0, nan_policy="raise")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler)],
    )
    trainer.fit(model, DataLoader(batches(), batch_size=None))
    assert model.skipped_steps == 0 and scaler.get_scale() == 2.0**9
    assert torch.isfinite(model.step_grad_norm) and all(torch.isfinite(p).all() for p in model.parameters())


# -- the policy's public pieces (LossbenchModule's training step; a model array calls them on each member) --
TERMS = {"ce": torch.tensor(0.25), "poly": torch.tensor(math.nan)}


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_check_loss_lets_a_finite_loss_through_and_applies_the_policy_to_another(policy):
    model = LossbenchModule("poly1", data_spec=SPEC, backbone=SMALL, seed=0, nan_policy=policy)
    assert model.check_loss(torch.tensor(0.5), {"ce": torch.tensor(0.5)}, step=5, batch_idx=2)
    assert model.check_loss(torch.tensor(math.nan), TERMS, step=5, batch_idx=2, finite=True)  # the caller's word
    assert model.skipped_steps == 0
    if policy == "skip":
        assert not model.check_loss(torch.tensor(math.nan), TERMS, step=6, batch_idx=3)
        assert not model.check_loss(torch.tensor(1.0), TERMS, step=7, batch_idx=4, finite=False)
        assert model.skipped_steps == 2
    else:
        with pytest.raises(
            FloatingPointError,
            match=r"^LossbenchModule: at step 6 \(batch 3\) the 'poly1' loss is nan "
            r"\(non-finite terms: poly\); check the inputs",
        ):
            model.check_loss(torch.tensor(math.nan), TERMS, step=6, batch_idx=3)
        assert model.skipped_steps == 0


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_check_gradient_keeps_a_finite_norm_and_applies_the_policy_to_another(policy):
    model = LossbenchModule("ce", data_spec=SPEC, backbone=SMALL, seed=0, nan_policy=policy)
    model.check_loss(torch.tensor(0.75), {}, step=4, batch_idx=1)
    assert model.check_gradient(torch.tensor(2.5), 0.01)
    assert float(model.step_grad_norm) == 2.5 and model.step_lr == 0.01
    assert not model.check_gradient(torch.tensor(math.inf), 0.02, scaled=True)  # the scaler's overflow
    assert model.skipped_steps == 0
    if policy == "skip":
        assert not model.check_gradient(torch.tensor(math.nan), 0.02)
        assert not model.check_gradient(torch.tensor(3.0), 0.02, finite=False)
        assert model.skipped_steps == 2
    else:
        with pytest.raises(
            FloatingPointError,
            match=r"^LossbenchModule: at step 4 \(batch 1\) the 'ce' loss is 0.75 but its gradient is not finite "
            r"\(gradient norm nan\)",
        ):
            model.check_gradient(torch.tensor(math.nan), 0.02)
    assert float(model.step_grad_norm) == 2.5 and model.step_lr == 0.01  # a step that did not update: unchanged

"""LossbenchModule: standard Lightning training, logging, optimizers, checkpoints and clear errors."""

import math

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from lossbench import LossbenchModule, get_head
from lossbench.data import DataSpec

SMALL = {"d_model": 16, "nhead": 2, "num_layers": 1}
FEATURES = DataSpec("features", "class", num_classes=3, num_features=4)


def class_data(n=48, classes=3, features=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long() if classes == 3 else (x[:, 0] > 0).long()
    return [{"inputs": a, "target": b} for a, b in zip(x, y)]


def trainer(**kw):
    kw.setdefault("max_steps", 4)
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **kw,
    )


def loader(data, batch_size=16, shuffle=False):
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle)


def test_fit_logs_loss_terms_grad_norm_lr_and_metrics():
    model = LossbenchModule("poly1", data_spec=FEATURES, backbone=SMALL, seed=0)
    t = trainer(max_steps=3, limit_val_batches=1)
    t.fit(model, loader(class_data()), loader(class_data(seed=1)))
    logged = t.callback_metrics
    for key in (
        "train/loss",
        "train/ce",
        "train/poly",
        "train/grad_norm",
        "train/lr",
        "val/loss",
        "val/accuracy",
        "val/f1_macro",
        "val/nll",
        "val/ece",
    ):
        assert key in logged and math.isfinite(float(logged[key])), key
    assert torch.isclose(logged["val/loss"], logged["val/ce"] + logged["val/poly"], atol=1e-5)


def test_training_moves_every_weight_and_sgd_nesterov_works():
    model = LossbenchModule(
        "ce", data_spec=FEATURES, backbone=SMALL, optimizer="sgd", lr=0.1, nesterov=True, seed=0, metrics=False
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer(max_steps=3).fit(model, loader(class_data()))
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    params = [n for n, _ in model.named_parameters()]
    assert set(params) <= set(moved), set(params) - set(moved)


def test_weight_decay_spares_biases_norms_and_positions():
    model = LossbenchModule("ce", data_spec=FEATURES, backbone=SMALL, weight_decay=0.1, seed=0)
    opt = model.configure_optimizers()
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() >= 2 for p in decay["params"])
    assert any("position" in names[id(p)] for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_warmup_then_decay_schedule(schedule):
    model = LossbenchModule(
        "ce",
        data_spec=FEATURES,
        backbone=SMALL,
        lr=1.0,
        schedule=schedule,
        warmup_steps=2,
        seed=0,
        metrics=False,
        optimizer="sgd",
        momentum=0.0,
    )
    lrs = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer(max_steps=6, callbacks=[Record()]).fit(model, loader(class_data(n=96)))
    # steps 0,1 warm up (1/2, 2/2); then decay over the remaining 4 steps
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    if schedule == "linear":
        assert lrs[2:] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    else:
        assert lrs[2:] == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])


def test_same_seed_same_initial_weights_for_every_head_of_one_shape():
    a = LossbenchModule("ce", data_spec=FEATURES, backbone=SMALL, seed=5)
    b = LossbenchModule("focal", data_spec=FEATURES, backbone=SMALL, seed=5)
    sa, sb = a.state_dict(), b.state_dict()
    shared = [k for k in sa if k in sb and sa[k].shape == sb[k].shape]
    assert any(k.startswith("head.") for k in shared)
    assert all(torch.equal(sa[k], sb[k]) for k in shared)


def test_checkpoint_reloads_and_predicts_identically(tmp_path):
    model = LossbenchModule("label_smoothing", data_spec=FEATURES, backbone=SMALL, seed=0)
    t = trainer(max_steps=2)
    t.fit(model, loader(class_data()))
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    again = LossbenchModule.load_from_checkpoint(path)
    x = torch.randn(5, 4)
    model.eval(), again.eval()
    assert again.head.name == "label_smoothing" and again.head.label_smoothing == 0.1
    assert torch.equal(model(x), again(x))
    p1 = t.predict(model, loader(class_data(n=8)))
    p2 = trainer().predict(again, loader(class_data(n=8)))
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_instances_can_be_passed_directly():
    from lossbench.models import FeatureTokenizer, TransformerBackbone

    backbone = TransformerBackbone(FeatureTokenizer(4, 16), d_model=16, nhead=2, num_layers=1)
    head = get_head("bce", in_features=16)
    model = LossbenchModule(head, backbone=backbone, metrics=True)
    data = class_data(classes=2)
    trainer(max_steps=2, limit_val_batches=1).fit(model, loader(data), loader(data))
    with pytest.raises(ValueError, match="the head takes `in_features`=8, the backbone gives 16"):
        LossbenchModule(get_head("bce", in_features=8), backbone=backbone)


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_precisions(precision):
    model = LossbenchModule("focal", data_spec=FEATURES, backbone=SMALL, seed=0)
    t = trainer(max_steps=2, precision=precision)
    t.fit(model, loader(class_data()))
    assert math.isfinite(float(t.callback_metrics["train/loss"]))


@pytest.mark.parametrize(
    "head, spec, match",
    [
        ("mse", FEATURES, r"'mse' is a regression head, but the data has class labels \(3 classes\)"),
        ("kl", FEATURES, "distribution heads need probability-vector targets"),
        ("bce", FEATURES, "binary head, but the data has 3 classes"),
        ("ce", DataSpec("features", "real", num_features=4), "'ce' is a multiclass head, but the data has real-valued"),
        ("lm_ce", FEATURES, "'lm_ce' is a lm head"),
    ],
)
def test_head_that_does_not_fit_the_data_is_refused(head, spec, match):
    with pytest.raises(ValueError, match=match):
        LossbenchModule(head, data_spec=spec, backbone=SMALL)


def test_head_with_fewer_outputs_than_classes_is_refused():
    with pytest.raises(ValueError, match="has `num_classes`=2 outputs, but the data has 3 classes"):
        LossbenchModule("ce", head_args={"num_classes": 2}, data_spec=FEATURES, backbone=SMALL)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": -1.0}, "`lr` must be a finite number > 0, got -1.0"),
        ({"optimizer": "adam"}, "`optimizer` must be 'sgd' or 'adamw', got 'adam'"),
        ({"weight_decay": -0.1}, "`weight_decay` must be a number >= 0, got -0.1"),
        ({"momentum": 1.0}, "`momentum` must be in"),
        ({"nesterov": True}, "`nesterov=True` needs `optimizer`='sgd' and `momentum` > 0"),
        ({"betas": (0.9, 1.0)}, r"`betas` must be two numbers in \[0, 1\), got \(0.9, 1.0\)"),
        ({"schedule": "step"}, "`schedule` must be"),
        ({"warmup_steps": -1}, "`warmup_steps` must be an int >= 0"),
    ],
)
def test_bad_optimizer_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossbenchModule("ce", data_spec=FEATURES, backbone=SMALL, **kwargs)


def test_unknown_head_name_lists_nearest():
    from lossbench import UnknownHeadError

    with pytest.raises(UnknownHeadError, match="did you mean 'focal'"):
        LossbenchModule("focl", data_spec=FEATURES, backbone=SMALL)


def test_missing_spec_is_explained():
    with pytest.raises(ValueError, match="`data_spec` is needed to build the backbone"):
        LossbenchModule("ce", backbone=SMALL)


def test_the_optimizer_and_schedule_configs_are_accepted_and_stored_flat():
    from lossbench.config import OptimizerConfig, ScheduleConfig

    model = LossbenchModule(
        "ce",
        data_spec=FEATURES,
        backbone=SMALL,
        metrics=False,
        optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.5, nesterov=True),
        schedule=ScheduleConfig(name="cosine", warmup_steps=3),
    )
    hp = model.hparams
    assert (hp.optimizer, hp.lr, hp.momentum, hp.nesterov, hp.schedule, hp.warmup_steps) == (
        "sgd",
        0.1,
        0.5,
        True,
        "cosine",
        3,
    )
    same = LossbenchModule(
        "ce",
        data_spec=FEATURES,
        backbone=SMALL,
        metrics=False,
        optimizer="sgd",
        lr=0.1,
        momentum=0.5,
        nesterov=True,
        schedule="cosine",
        warmup_steps=3,
    )
    assert dict(same.hparams) == dict(hp)  # a checkpoint holds plain values either way (weights_only loads it)
    with pytest.raises(
        ValueError,
        match=r"`optimizer` is a OptimizerConfig, which holds every optimizer setting; "
        r"leave `lr` at the default",
    ):
        LossbenchModule("ce", data_spec=FEATURES, backbone=SMALL, optimizer=OptimizerConfig(), lr=0.5)
    with pytest.raises(ValueError, match=r"`lr` must be a finite number > 0, got 0.0"):
        LossbenchModule("ce", data_spec=FEATURES, backbone=SMALL, optimizer=OptimizerConfig(lr=0.0))


def test_accumulate_then_epoch_values_give_weighted_means_and_metrics_and_reset():
    """The epoch's values one stage logs: batch-size-weighted means of the loss and terms, the task metrics."""
    model = LossbenchModule("ce", data_spec=FEATURES, backbone=SMALL, seed=0)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(n, 3, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (3, 5)]
    losses, extra = [torch.tensor(0.5), torch.tensor(1.5)], [torch.tensor(2.0), torch.tensor(4.0)]
    for stage in ("val", "train"):
        for (outputs, target), loss, term in zip(batches, losses, extra):
            model.accumulate(stage, loss, {"extra": term}, outputs, target)
        values = model.epoch_values(stage)
        suffix = "_epoch" if stage == "train" else ""
        assert math.isclose(float(values[f"{stage}/loss{suffix}"]), (3 * 0.5 + 5 * 1.5) / 8, rel_tol=1e-6)
        assert math.isclose(float(values[f"{stage}/extra{suffix}"]), (3 * 2.0 + 5 * 4.0) / 8, rel_tol=1e-6)
        outputs, target = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        accuracy = float((outputs.argmax(-1) == target).float().mean())
        nll = float(torch.nn.functional.cross_entropy(outputs, target))
        assert math.isclose(float(values[f"{stage}/accuracy"]), accuracy, rel_tol=1e-6)
        assert math.isclose(float(values[f"{stage}/nll"]), nll, rel_tol=1e-5)
        assert model.epoch_values(stage) == {}  # both the sums and the metrics start again
    plain = LossbenchModule("ce", data_spec=FEATURES, backbone=SMALL, seed=0, metrics=False)
    plain.accumulate("test", torch.tensor(0.5), {}, *batches[0])
    assert list(plain.epoch_values("test")) == ["test/loss"]


def test_unpack_batch_reads_dicts_and_pairs():
    x, y = torch.zeros(2, 4), torch.ones(2)
    for batch in ({"inputs": x, "target": y}, (x, y), [x, y]):
        inputs, target = LossbenchModule.unpack_batch(batch)
        assert inputs is x and target is y


class _Rowsum(torch.nn.Module):
    def forward(self, x):
        return x.sum(dim=1)


def test_a_spec_without_what_its_inputs_need_and_a_backbone_without_a_width_are_refused():
    with pytest.raises(ValueError, match=r"build_backbone: 'features' inputs need the data spec's `num_features`"):
        LossbenchModule("ce", data_spec=DataSpec("features", "class", num_classes=3), backbone=SMALL)
    with pytest.raises(ValueError, match=r"'tokens' inputs need the data spec's `vocab_size`, got None"):
        LossbenchModule("ce", data_spec=DataSpec("tokens", "class", num_classes=3, max_length=8), backbone=SMALL)
    with pytest.raises(TypeError, match=r"a `backbone` module must have `out_features`.*; Identity has none"):
        LossbenchModule("ce", head_args={"num_classes": 3}, backbone=torch.nn.Identity())
    # with the data spec, a module without `out_features` is measured on a 2-row batch (the backbone contract)
    probed = LossbenchModule("ce", data_spec=FEATURES, backbone=torch.nn.Identity())
    assert probed.width_from == "probe" and probed.head.in_features == FEATURES.num_features
    with pytest.raises(ValueError, match=r"must return features \(B, F\).*returned \(2,\)"):
        LossbenchModule("ce", data_spec=FEATURES, backbone=_Rowsum())

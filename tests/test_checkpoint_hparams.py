"""Issue 9, finding 5: a weights-only checkpoint cannot make lossbench import a module or allocate a huge model.

Before: ``hyper_parameters["head"] = "evilmod.Head"`` made ``load_from_checkpoint`` import ``evilmod`` (any module
on sys.path, e.g. a ``.py`` in the working directory), and hyper-parameters asking for a 51 GB backbone were
allocated without question.
"""

from __future__ import annotations

import sys

import lightning.pytorch as pl
import pytest
import torch

from lossbench import LossbenchModule
from lossbench.data import DataSpec

SPEC = DataSpec("features", "class", num_classes=3, num_features=4)
SMALL = {"d_model": 8, "nhead": 2, "num_layers": 1}


@pytest.fixture
def checkpoint(tmp_path):
    model = LossbenchModule("ce", data_spec=SPEC, backbone=SMALL, seed=0)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        max_steps=1,
        enable_checkpointing=False,
    )
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    trainer.fit(model, torch.utils.data.DataLoader([{"inputs": a, "target": b} for a, b in zip(x, y)], batch_size=4))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


def _edit(path, **hparams):
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"].update(hparams)
    torch.save(ckpt, path)
    return path


def test_a_dotted_head_in_a_checkpoint_is_not_imported(checkpoint, tmp_path, monkeypatch):
    marker = tmp_path / "IMPORTED"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Head: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _edit(checkpoint, head="evilmod.Head")
    with pytest.raises(ValueError, match=r"names the head 'evilmod.Head'.*pass head='evilmod.Head'"):
        LossbenchModule.load_from_checkpoint(checkpoint)
    assert not marker.exists() and "evilmod" not in sys.modules
    # a registered short name loads as before, and the plain checkpoint too
    assert LossbenchModule.load_from_checkpoint(_edit(checkpoint, head="ce")).head.name == "ce"


def test_a_checkpoint_asking_for_a_huge_model_is_refused_before_allocating(checkpoint):
    _edit(checkpoint, backbone={**SMALL, "d_model": 65536, "nhead": 2, "num_layers": 4})
    with pytest.raises(ValueError, match=r"hyper-parameters build a model of [\d.]+ ?[GT]B .* its weights hold"):
        LossbenchModule.load_from_checkpoint(checkpoint)


@pytest.mark.parametrize(
    "hparams",
    [
        {"head_args": {"num_classes": 3_000_000}},  # issue 19 B7: a 210 kB checkpoint asked for a 7 GB head
        {"data_spec": {**SPEC.to_dict(), "num_classes": 3_000_000}},  # the head's classes from the data spec
        {"data_spec": {**SPEC.to_dict(), "num_features": 30_000_000}},  # the backbone's input adapter
    ],
    ids=["head-num_classes", "spec-num_classes", "spec-num_features"],
)
def test_a_checkpoint_asking_for_a_huge_head_or_data_is_refused_before_allocating(checkpoint, hparams, monkeypatch):
    """The size rule counts the whole model its hyper-parameters build (head and data spec too), not the backbone
    alone; nothing of that size is allocated (a Linear that large is never constructed)."""
    built = []
    init = torch.nn.Linear.__init__

    def spy(self, in_features, out_features, *args, **kwargs):
        if kwargs.get("device") is None and torch.empty(0).device.type != "meta":
            built.append(in_features * out_features)
        init(self, in_features, out_features, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Linear, "__init__", spy)
    _edit(checkpoint, **hparams)
    with pytest.raises(
        ValueError,
        match=r"hyper-parameters build a model of [\d.]+ ?[MGT]B .* its weights hold "
        r"[\d.]+ ?kB .*refusing to allocate it",
    ):
        LossbenchModule.load_from_checkpoint(checkpoint)
    assert max(built, default=0) < 10_000  # only the meta device saw the large layer


def test_the_size_rule_lets_every_built_in_head_load(tmp_path):
    """Counting the head on the meta device (or, for a head that checks values on construction, its projection)
    never refuses a real checkpoint: every built-in classification head, at 1000 classes."""
    from lossbench.heads import list_heads

    spec = DataSpec("features", "class", num_classes=1000, num_features=4)
    for info in list_heads():
        if info.task != "multiclass":
            continue
        model = LossbenchModule(info.name, data_spec=spec, backbone=SMALL, seed=0)
        path = tmp_path / f"{info.name}.ckpt"
        torch.save(
            {
                "state_dict": model.state_dict(),
                "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__,
            },
            path,
        )
        assert LossbenchModule.load_from_checkpoint(path).head.proj.out_features == 1000

"""Your own backbone in a comparison (issue 21, items 1-3): a module in a file outside the package, named by
``class_path``, on both executors; its fairness proof; a BatchNorm backbone falls back to sequential runs.

The user's file is written to a temporary folder on ``sys.path``, as a user's own package would be.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap

import pytest
import torch

from lossbench import LossbenchModule
from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.compare.analysis.fairness import check_fairness
from lossbench.compare.store.records import load_records
from lossbench.data import DataSpec
from tests.compare.conftest import tiny_recipe

USER_FILE = '''
import torch
from torch import nn


class MLP(nn.Module):
    """No out_features: lossbench measures F on a 2-row batch."""

    def __init__(self, in_features: int = 13, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())

    def forward(self, x):
        return self.net(x)


class NormedMLP(nn.Module):
    def __init__(self, in_features: int = 13, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.out_features = hidden

    def forward(self, x):
        return self.net(x)


class NotAModule:
    pass
'''


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "my_models.py").write_text(textwrap.dedent(USER_FILE))
    sys.path.insert(0, str(folder))
    yield "my_models"
    sys.path.remove(str(folder))
    sys.modules.pop("my_models", None)


def recipe(cls: str, **changes):
    base = tiny_recipe(
        losses=["ce", {"name": "square", "label": "sq"}],
        data__batch_size=16,
        backbone={"class_path": f"my_models.{cls}", "init_args": {"hidden": 16}},
        trainer={"max_steps": 8, "eval_every_n_steps": 4, "precision": "64-true"},
    )
    return {**base, **changes}


def run(tmp_path, values, executor):
    out = tmp_path / executor
    Comparison(load_recipe({**values, "executor": executor}), out, progress=False).run()
    return out, {(r.loss, r.seed): (r, rows) for r, rows in load_records(out)}


@pytest.fixture(scope="module")
def both(user_module, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("custom64")
    return run(tmp, recipe("MLP"), "fused"), run(tmp, recipe("MLP"), "sequential")


def test_a_class_path_backbone_runs_fused_and_equals_the_sequential_runs(both):
    (out, fused), (_, seq) = both
    assert set(fused) == set(seq) == {(loss, s) for loss in ("ce", "sq") for s in (0, 1)}
    for key, (record, rows) in fused.items():
        other, other_rows = seq[key]
        assert record.status == other.status == "finished"
        assert record.execution == {"executor": "fused", "members": ["ce", "sq"], "vmapped": True}
        for row, ref in zip(rows, other_rows):
            for column in ref:
                if column != "wall_time" and ref[column] is not None:
                    assert math.isclose(row[column], ref[column], rel_tol=1e-10, abs_tol=1e-10), (key, column)
        assert record.fingerprints == other.fingerprints  # initial weights, backbone, data and batch order
    assert check_fairness([r for r, _ in fused.values()]).ok


def test_every_record_names_the_backbone_and_its_width_and_the_report_says_it(both):
    (out, fused), _ = both
    for seed in (0, 1):
        inits = {fused[(loss, seed)][0].fingerprints["backbone_init"] for loss in ("ce", "sq")}
        assert len(inits) == 1  # built once per seed, copied to every loss
    assert fused[("ce", 0)][0].fingerprints["backbone_init"] != fused[("ce", 1)][0].fingerprints["backbone_init"]
    parameters = 13 * 16 + 16 + 16 * 16 + 16
    for record, _ in fused.values():
        assert record.backbone == {
            "name": "my_models.MLP(hidden=16)",
            "class_path": "my_models.MLP",
            "init_args": {"hidden": 16},
            "parameters": parameters,
            "width": 16,
            "width_from": "probe",
        }
    report = (out / "report.md").read_text()
    assert f"- Backbone: my_models.MLP(hidden=16), {parameters} parameters, features F=16 (probe)" in report
    recipe_in_folder = json.loads((out / "comparison.json").read_text())["recipe"]["backbone"]
    assert recipe_in_folder == {"class_path": "my_models.MLP", "init_args": {"hidden": 16}}


def test_the_backbone_is_in_the_setup_hash_and_a_rerun_with_another_is_refused_naming_it(both, user_module):
    (out, _), _ = both
    first = load_recipe(recipe("MLP"))
    assert load_recipe(
        recipe("MLP", backbone={"class_path": "my_models.MLP", "init_args": {"hidden": 8}})
    ).setup_hash != (first.setup_hash)
    other = load_recipe({**recipe("NormedMLP"), "executor": "fused"})
    with pytest.raises(RecipeError, match="it differs in `backbone`"):
        Comparison(other, out, progress=False).prepare()


def test_runs_of_one_seed_with_different_backbones_are_unfair(both):
    (_, fused), _ = both
    records = [r for r, _ in fused.values() if r.seed == 0]
    records[1].fingerprints = {**records[1].fingerprints, "backbone": "another"}
    result = check_fairness(records)
    assert not result.ok and any("backbone class and arguments" in p for p in result.problems)


def test_a_batchnorm_backbone_falls_back_to_sequential_runs_with_the_reason(user_module, tmp_path):
    values = recipe("NormedMLP", seeds=[0])
    out, fused = run(tmp_path, values, "fused")
    _, seq = run(tmp_path, values, "sequential")
    for key, (record, _) in fused.items():
        assert record.status == "finished"
        assert record.execution["executor"] == "sequential"
        assert "its backbone has buffers (net.1.running_mean, net.1.running_var" in record.execution["fallback"]
        assert record.final == seq[key][0].final  # the same runs: trained alone, as sequential runs are
        assert record.backbone["width_from"] == "out_features"
    assert "fell back to sequential" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "backbone, message",
    [
        ({"class_path": "my_models.Missing"}, r"`backbone.class_path` 'my_models.Missing' cannot be imported"),
        ({"class_path": "my_models.NotAModule"}, "is not a torch.nn.Module subclass"),
        ({"class_path": "my_models.MLP", "d_model": 8}, r"takes only `class_path` and `init_args`; got \['d_model'\]"),
        ({"class_path": "MLP"}, r"`backbone.class_path` must be a dotted path"),
        ({"class_path": "my_models.MLP", "init_args": [1]}, r"`backbone.init_args` must be a mapping"),
    ],
)
def test_a_bad_class_path_backbone_is_a_recipe_error_naming_the_key(user_module, backbone, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe("MLP", backbone=backbone))


def test_a_wrong_init_argument_is_refused_before_anything_is_written(user_module, tmp_path):
    comparison = Comparison(
        load_recipe(recipe("MLP", backbone={"class_path": "my_models.MLP", "init_args": {"width": 3}})),
        tmp_path / "out",
        progress=False,
    )
    with pytest.raises(Exception, match=r"my_models.MLP\(\*\*\{'width': 3\}\) failed"):
        comparison.prepare()
    assert not (tmp_path / "out").exists()


def test_the_module_takes_a_class_path_and_a_checkpoint_never_imports_one(user_module, tmp_path):
    import lightning.pytorch as pl

    spec = DataSpec("features", "class", num_classes=3, num_features=13)
    backbone = {"class_path": "my_models.MLP", "init_args": {"hidden": 8}}
    model = LossbenchModule("ce", data_spec=spec, backbone=backbone, seed=3)
    again = LossbenchModule("ce", data_spec=spec, backbone=backbone, seed=3)
    assert model.width_from == "probe" and model.head.in_features == 8
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert model.hparams["backbone"] == backbone
    trainer = pl.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    sys.modules.pop("my_models")  # as in a fresh process: the module is not imported
    with pytest.raises(
        ValueError, match="names the backbone class 'my_models.MLP'; loading a checkpoint never imports"
    ):
        LossbenchModule.load_from_checkpoint(path)
    loaded = LossbenchModule.load_from_checkpoint(path, backbone=backbone)  # trusted: passed explicitly
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))

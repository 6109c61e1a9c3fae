"""The fused executor (one model array per seed) against the sequential one (one run per loss and seed).

Same runs, same numbers: in float64 per-step values agree to 1e-10 and final and test metrics to 1e-9;
in float32 one step's losses and gradients agree to 1e-6. Members of different head shapes and tasks
train in one array; every member keeps its own NaN policy, clipping and learning rate.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from lossbench import LossbenchModule
from lossbench.compare import Comparison, load_recipe
from lossbench.compare.execution.array import ModelArray
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import load_records
from lossbench.data import DataSpec
from tests.compare.conftest import tiny_recipe

# wine (3 classes): ce (3 outputs, multiclass), coral (1 projection output and 2 thresholds, ordinal),
# square (3 outputs); 124 rows in batches of 16 -> 8 steps per epoch, so 12 steps cross an epoch boundary
LOSSES = ["ce", "coral", {"name": "square", "label": "sq"}]
RECIPE64 = tiny_recipe(
    losses=LOSSES,
    data__batch_size=16,
    backbone={"d_model": 16, "nhead": 2, "num_layers": 1},
    trainer={"max_steps": 12, "eval_every_n_steps": 4, "precision": "64-true"},
    schedule={"name": "cosine", "warmup_steps": 3},
    select="best",
)


def run(tmp_path, recipe, executor, name=None):
    out = tmp_path / (name or executor)
    Comparison(load_recipe({**recipe, "executor": executor}), out, progress=False).run()
    return out, {(r.loss, r.seed): (r, rows) for r, rows in load_records(out)}


def close(a, b, tol):
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol) or (math.isnan(a) and math.isnan(b))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fused64")
    with pytest.MonkeyPatch.context() as patch:  # the default: its first 6 steps alternate vmapped and looped
        patch.setenv("LOSSBENCH_FUSED_FORWARD", "auto")
        fused = run(tmp, RECIPE64, "fused")
    return fused, run(tmp, RECIPE64, "sequential")


def test_float64_fused_equals_sequential_per_step_and_final(both):
    (_, fused), (_, seq) = both
    assert set(fused) == set(seq) == {(l, s) for l in ("ce", "coral", "sq") for s in (0, 1)}
    for key, (record, rows) in fused.items():
        other, other_rows = seq[key]
        assert record.status == other.status == "finished"
        assert [r["step"] for r in rows] == [r["step"] for r in other_rows] == [0, 4, 8, 12]
        for row, ref in zip(rows, other_rows):
            for column in ref:
                if column != "wall_time":
                    assert close(row[column], ref[column], 1e-10), (key, row["step"], column, row[column], ref[column])
        for part in ("final", "best", "test"):
            mine, theirs = getattr(record, part), getattr(other, part)
            assert mine.keys() == theirs.keys() and mine
            assert all(close(mine[k], theirs[k], 1e-9) for k in mine), (key, part)
        assert record.selected == other.selected and record.steps == other.steps == 12
        assert record.fingerprints == other.fingerprints  # initial weights, data, batch order of every epoch
        execution = dict(record.execution)
        forward = execution.pop("forward")  # auto: chosen on the first 6 steps, each path's last 2 timed
        assert forward["path"] in ("vmapped", "looped") and set(forward["step_seconds"]) == {"vmapped", "looped"}
        vmapped = forward["path"] == "vmapped"
        assert execution == {"executor": "fused", "members": ["ce", "coral", "sq"], "vmapped": vmapped}
        assert other.execution == {"executor": "sequential"}


def test_fused_members_keep_their_head_shapes_and_tasks(both):
    (out, fused), _ = both
    shapes = {loss: fused[(loss, 0)][0].fingerprints["head_shape"] for loss in ("ce", "coral", "sq")}
    assert shapes == {"ce": "3x16", "coral": "1x16", "sq": "3x16"}
    assert "val/rank_mae" in fused[("coral", 0)][0].final and "val/nll" in fused[("ce", 0)][0].final
    assert not (out / "arrays").exists()  # the array's checkpoint goes when it ends
    assert "2 fused array(s)" in (out / "report.md").read_text()


def make_members(labels_heads, lrs=None, clip=None, dtype=torch.float32):
    spec = DataSpec("features", "class", num_classes=3, num_features=5)
    members = {}
    for label, head in labels_heads:
        m = LossbenchModule(
            head,
            data_spec=spec,
            backbone={"d_model": 16, "nhead": 2, "num_layers": 2},
            seed=7,
            lr=(lrs or {}).get(label, 1e-3),
        )
        members[label] = m.to(dtype)
    return members


def test_float32_step_one_losses_and_gradients_equal_each_member_alone():
    members = make_members([("ce", "ce"), ("coral", "coral"), ("focal", "focal")])
    alone = {label: copy.deepcopy(m) for label, m in members.items()}
    array = ModelArray(members)
    torch.manual_seed(0)
    batch = (torch.randn(32, 5), torch.randint(0, 3, (32,)))
    total = array.training_step(batch, 0)
    total.backward()
    assert array.vmapped
    for i, (label, ref) in enumerate(alone.items()):
        loss = ref.training_step(batch, 0)
        loss.backward()
        assert torch.allclose(array.step_losses[i], loss.detach(), rtol=1e-6, atol=1e-6), label
        for (name, p), q in zip(ref.named_parameters(), array.member_grads(i)):  # the backbone's: its slices
            assert torch.allclose(q, p.grad, rtol=1e-6, atol=1e-6), (label, name)


class Clock:
    """``time.perf_counter`` for the array: a vmapped training step takes 10 s, a looped one ``looped`` s."""

    def __init__(self, array, looped):
        self.array, self.looped, self.now = array, looped, 0.0

    def perf_counter(self):
        path = self.array._step_path
        self.now += 0.0 if path is None else 10.0 if path == "vmapped" else self.looped
        return self.now


@pytest.mark.parametrize(("looped", "chosen"), [(8.0, "looped"), (9.5, "vmapped")])
def test_auto_alternates_its_first_steps_then_keeps_the_faster_path(monkeypatch, looped, chosen):
    from lossbench.compare.execution import array as array_module

    array = ModelArray(make_members([("ce", "ce"), ("focal", "focal")]), forward="auto")
    monkeypatch.setattr(array_module, "time", Clock(array, looped))
    batch = (torch.randn(16, 5), torch.randint(0, 3, (16,)))
    paths = []
    for step in range(8):
        if step == 4:  # a checkpoint mid-trial: a resumed array goes on with the trial where it was
            saved: dict = {}
            array.on_save_checkpoint(saved)
            resumed = ModelArray(make_members([("ce", "ce"), ("focal", "focal")]), forward="auto")
            resumed.on_load_checkpoint(saved)
            assert resumed.step_seconds == array.step_seconds and resumed.forward_path is None
        array.on_train_batch_start(batch, step)
        array.training_step(batch, step).backward()
        paths.append(array._step_path)
        array.on_train_batch_end(None, batch, step)
    assert paths == ["vmapped", "looped"] * 3 + [chosen] * 2
    assert array.forward_path == chosen and array.vmapped == (chosen == "vmapped")
    assert array.forward_choice() == {"path": chosen, "step_seconds": {"vmapped": 10.0, "looped": looped}}
    assert ModelArray(make_members([("ce", "ce")]), forward="looped").forward_choice() is None
    with pytest.raises(ValueError, match=r"`forward` \(or \$LOSSBENCH_FUSED_FORWARD\) must be one of .* got 'fast'"):
        ModelArray(make_members([("ce", "ce")]), forward="fast")


def grouped_members():
    """ce twice and focal at gamma 2 twice (two groups of one head class and arguments each), focal at gamma 1 and
    coral alone; every member from its own seed (own weights), in float64."""
    spec = DataSpec("features", "class", num_classes=3, num_features=5)
    heads = [("ce", {}), ("ce", {}), ("focal", {"gamma": 2.0}), ("focal", {"gamma": 1.0})]
    heads += [("focal", {"gamma": 2.0}), ("coral", {})]
    backbone = {"d_model": 16, "nhead": 2, "num_layers": 2}
    return {
        f"{head}_{k}": LossbenchModule(head, head_args=args, data_spec=spec, backbone=backbone, seed=k).double()
        for k, (head, args) in enumerate(heads)
    }


@pytest.mark.parametrize("broken", [False, True])
def test_heads_of_one_class_and_arguments_run_as_one_vmapped_head_each_with_its_own_loss_and_gradient(broken):
    """Item 3 of issue 24: members whose heads share class, arguments and shapes run as one vmapped head; each
    member's loss and gradients are still exactly its own (float64, against each member alone). A group whose
    vmapped head raises (``broken``) is dissolved: its heads run one by one, with the same results."""
    members = grouped_members()
    alone = {label: copy.deepcopy(m) for label, m in members.items()}
    array = ModelArray(members)
    assert array.head_groups() == [[0, 1], [2, 4]]
    if broken:
        array._head_templates[0] = torch.nn.Module()  # no forward: the group's vmapped call raises
    batch = (torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 3, (32,)))
    array.training_step(batch, 0).backward()
    assert array.head_groups() == ([[2, 4]] if broken else [[0, 1], [2, 4]])
    for i, (label, ref) in enumerate(alone.items()):
        loss = ref.training_step(batch, 0)
        loss.backward()
        assert torch.allclose(array.step_losses[i], loss.detach(), rtol=1e-12, atol=1e-12), label
        for (name, p), q in zip(ref.named_parameters(), array.member_grads(i)):
            assert torch.allclose(q, p.grad, rtol=1e-10, atol=1e-12), (label, name)


def test_each_member_has_its_own_learning_rate_and_clipping():
    members = make_members([("a", "ce"), ("b", "ce")], lrs={"a": 1e-3, "b": 3e-2})
    array = ModelArray(members, gradient_clip_val=0.01)
    opt = array.configure_optimizers()
    # the heads: one group per distinct setting (weight decay 0: decayed and not decayed tensors share it); the
    # backbones: one group of stacked leaves, each member at its own rate
    assert [g["lr"] for g in opt.param_groups[:2]] == [1e-3, 3e-2]
    assert [len(g["params"]) for g in opt.param_groups[:2]] == [
        len(list(m.head.parameters())) for m in members.values()
    ]
    assert opt.param_groups[2]["stacked"] == 2 and opt.param_groups[2]["params"] == list(array.stacked)
    assert array.member_lr(opt, 1) == 3e-2
    same = ModelArray(make_members([("a", "ce"), ("b", "ce")])).configure_optimizers()
    assert len(same.param_groups) == 2  # equal settings: one group of heads, one of stacked leaves
    batch = (torch.randn(16, 5), torch.randint(0, 3, (16,)))
    array.training_step(batch, 0).backward()
    norms = [float(array.grad_norm(i)) for i in range(2)]
    members["b"].head.proj.weight.grad.mul_(100.0)  # a big gradient in one member must not shrink the other's
    array.configure_gradient_clipping(opt)
    assert math.isclose(float(array.grad_norm(0)), 0.01, rel_tol=1e-4) and norms[0] > 0.01
    assert math.isclose(float(array.grad_norm(1)), 0.01, rel_tol=1e-4)


def test_members_must_share_the_backbone_architecture():
    spec = DataSpec("features", "class", num_classes=3, num_features=5)
    a = LossbenchModule("ce", data_spec=spec, backbone={"d_model": 16, "nhead": 2}, seed=0)
    b = LossbenchModule("ce", data_spec=spec, backbone={"d_model": 8, "nhead": 2}, seed=0)
    with pytest.raises(ValueError, match="member 'b'.s backbone differs from 'a'.s"):
        ModelArray({"a": a, "b": b})


NAN = {"class_path": "tests.compare.fused_heads.NaNFromHead", "init_args": {"nan_from": 3}, "label": "nan"}


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_nan_in_one_member_touches_only_that_member(tmp_path, policy):
    recipe = tiny_recipe(losses=["ce", NAN, "focal"], seeds=[0], nan_policy=policy)
    _, fused = run(tmp_path, recipe, "fused")
    _, alone = run(tmp_path, tiny_recipe(losses=["ce", "focal"], seeds=[0]), "fused", name="without")
    for loss in ("ce", "focal"):  # the other members train exactly as in an array without the NaN member
        record, rows = fused[(loss, 0)]
        ref, ref_rows = alone[(loss, 0)]
        assert record.status == "finished" and record.skipped_steps == 0
        assert [{k: v for k, v in r.items() if k != "wall_time"} for r in rows] == [
            {k: v for k, v in r.items() if k != "wall_time"} for r in ref_rows
        ]
    record, rows = fused[("nan", 0)]
    if policy == "skip":  # steps 3..8 skipped: no update, the weights of step 2 to the end
        assert record.status == "finished" and record.skipped_steps == 6
        assert rows[-1]["val/loss"] == rows[-2]["val/loss"]  # no update between step 4 and step 8
    else:
        assert record.status == "failed" and record.error.startswith("FloatingPointError: ")
        assert "at step 2 (batch 2)" in record.error and "nan_policy='skip'" in record.error
        assert [r["step"] for r in rows] == [0]  # failed before the first evaluation after step 0


def test_a_head_that_cannot_fuse_falls_back_to_a_sequential_run(tmp_path):
    solo = {"class_path": "tests.compare.fused_heads.SoloHead", "label": "solo"}
    out, runs = run(tmp_path, tiny_recipe(losses=["ce", solo, "focal"], seeds=[0]), "fused")
    record = runs[("solo", 0)][0]
    assert record.status == "finished"
    assert record.execution == {"executor": "sequential", "fallback": "its head SoloHead declares fusable = False"}
    assert runs[("ce", 0)][0].execution["members"] == ["ce", "focal"]
    assert record.fingerprints == {**runs[("ce", 0)][0].fingerprints, "head_init": record.fingerprints["head_init"]}
    report = (out / "report.md").read_text()
    assert "fell back to sequential: solo (its head SoloHead declares fusable = False)" in report
    assert json.loads((run_dir(out, "solo", 0) / "record.json").read_text())["execution"]["fallback"]


def test_a_head_whose_loss_differs_in_the_array_falls_back_with_the_numbers(tmp_path):
    counting = {"class_path": "tests.compare.fused_heads.CountingHead", "label": "counting"}
    out, runs = run(tmp_path, tiny_recipe(losses=["ce", counting, {**counting, "label": "again"}], seeds=[0]), "fused")
    execution = runs[("counting", 0)][0].execution
    assert execution["executor"] == "sequential" and runs[("counting", 0)][0].status == "finished"
    assert (
        "its first-batch loss in the array" in execution["fallback"]
        and "differs from its loss alone" in execution["fallback"]
    )
    # the probe checks one member per head class and arguments: the second shares the first's answer, and says so
    again = runs[("again", 0)][0].execution["fallback"]
    assert again == f"{execution['fallback']} (checked on 'counting', which has the same head and arguments)"
    assert runs[("ce", 0)][0].execution["members"] == ["ce"]  # an array of one: still fused


def test_the_cli_offers_exactly_the_recipe_executors():
    from lossbench.cli import build_parser
    from lossbench.compare.recipe.schema import EXECUTORS

    compare = build_parser()._subparsers._group_actions[0].choices["compare"]
    executor = next(a for a in compare._actions if a.dest == "executor")
    assert tuple(executor.choices) == EXECUTORS

"""One training step: ``ModelArray`` drives its members through ``LossbenchModule``'s public step methods.

The NaN policy, the validation sums and metrics and the epoch-end values are written once, in
``LossbenchModule``; the array calls them on each member and touches no private name of the module.
"""

from __future__ import annotations

import ast
import copy
import inspect
import math

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

import lossbench.compare.execution.array as array_module
from lossbench.compare.execution.array import ModelArray
from tests.compare.test_fused import make_members

# torch's multi-tensor kernels (what its optimizers call with foreach=True): no public spelling exists
ALLOWED = {"torch._foreach_norm", "torch._foreach_mul_"}


def private_accesses(source: str) -> list[str]:
    """``line: expression`` of each private name ``source`` reaches on something other than ``self``/``cls``.

    Private: one leading underscore (dunders such as ``__class__`` are not). Reached: an attribute
    (``m._sums``, ``LossbenchModule._unpack``, ``self.members[0]._x``) or a string constant given to
    ``getattr``/``setattr``/``hasattr``/``delattr``.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        name, owner = None, None
        if isinstance(node, ast.Attribute):
            name, owner = node.attr, node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name, owner = node.args[1].value, node.args[0]
        if name is None or not name.startswith("_") or name.startswith("__"):
            continue
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue  # the array's own base class (nn.Module._apply), not a member
        text = ast.unparse(node)
        if text not in ALLOWED:
            found.append((node.lineno, node.col_offset, text))
    return [f"{line}: {text}" for line, _, text in sorted(found)]


def test_the_checker_finds_what_it_is_meant_to_find():
    sample = """
m._sums["val"].add(loss)
LossbenchModule._unpack(batch)
self.members[0]._updated = True
getattr(member, "_step_loss")
self._growth[0] += 1
cls._registry
torch._foreach_norm(grads)
x.__class__
m.skipped_steps
getattr(m, "skipped_steps")
"""
    assert [f.split(": ", 1)[1] for f in private_accesses(sample)] == [
        "m._sums",
        "LossbenchModule._unpack",
        "self.members[0]._updated",
        "getattr(member, '_step_loss')",
    ]


def test_the_array_touches_no_private_name_of_its_members():
    assert private_accesses(inspect.getsource(array_module)) == []


def validate(module, batches):
    trainer = pl.Trainer(
        accelerator="cpu",
        precision="64-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, DataLoader(batches, batch_size=None), verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_the_arrays_validation_values_are_what_each_member_logs_alone():
    """Float64: each member's ``values`` after a validation are the ``val/...`` numbers its own run logs."""
    members = make_members([("ce", "ce"), ("poly1", "poly1"), ("coral", "coral")], dtype=torch.float64)
    alone = {label: copy.deepcopy(m) for label, m in members.items()}
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g))
        for n in (16, 16, 7)
    ]
    array = ModelArray(members)
    validate(array, batches)
    for i, (label, model) in enumerate(alone.items()):
        logged = validate(model, batches)
        assert set(array.values[i]) == set(logged) and {"val/loss", "val/accuracy"} <= set(logged), label
        for key, value in logged.items():
            assert math.isclose(array.values[i][key], value, rel_tol=1e-12, abs_tol=1e-12), (label, key)
    assert {"val/ce", "val/poly"} <= set(array.values[1])  # a head with named terms: their means too

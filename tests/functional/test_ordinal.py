"""CORAL ordinal loss against the coral-pytorch formula, and the extended binary levels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossbench.functional as LF

REDUCTIONS = ("mean", "sum", "none")
TOL = {"atol": 1e-6, "rtol": 1e-6}
K = 5  # classes, K - 1 = 4 logits


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(seed: int, lead=(9,)):
    g = _gen(seed)
    x = torch.randn(*lead, K - 1, generator=g, dtype=torch.float64) * 2
    t = torch.randint(0, K, lead, generator=g)
    return x, t


def _coral_pytorch(logits, levels, importance=None, reduction="mean"):
    """coral_pytorch.losses.coral_loss, written out."""
    term = F.logsigmoid(logits) * levels + (F.logsigmoid(logits) - logits) * (1 - levels)
    if importance is not None:
        term = term * importance
    val = -term.sum(-1)
    return {"mean": val.mean(), "sum": val.sum(), "none": val}[reduction]


def test_ordinal_levels_hand_values():
    levels = LF.ordinal_levels(torch.tensor([0, 1, 2, 4]), num_classes=5)
    expected = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
    assert levels.dtype == torch.float32
    assert torch.equal(levels, expected)
    levels = LF.ordinal_levels(torch.tensor([[0, 2], [1, 1]]), num_classes=3, dtype=torch.float64)
    assert levels.shape == (2, 2, 2) and levels.dtype == torch.float64
    assert torch.equal(levels, torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64))
    # the count of ones is the rank
    t = torch.randint(0, 7, (20,), generator=_gen(0))
    assert torch.equal(LF.ordinal_levels(t, num_classes=7).sum(-1).long(), t)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_importance", [False, True])
@pytest.mark.parametrize("lead", [(9,), (3, 4)])
def test_coral_matches_coral_pytorch(reduction, use_importance, lead):
    x, t = _data(1, lead)
    imp = torch.tensor([1.0, 0.5, 2.0, 0.25], dtype=torch.float64) if use_importance else None
    levels = LF.ordinal_levels(t, K, torch.float64)

    def ours(a):
        return LF.coral_loss(a, t, importance=imp, reduction=reduction)

    def ref(a):
        return _coral_pytorch(a, levels, imp, reduction)

    torch.testing.assert_close(ours(x), ref(x), **TOL)
    a_in = x.clone().requires_grad_(True)
    b_in = x.clone().requires_grad_(True)
    a, b = ours(a_in), ref(b_in)
    up = torch.randn(a.shape, generator=_gen(2), dtype=a.dtype)
    (ga,) = torch.autograd.grad((a * up).sum(), a_in)
    (gb,) = torch.autograd.grad((b * up).sum(), b_in)
    torch.testing.assert_close(ga, gb, **TOL)
    if reduction == "none":
        assert a.shape == lead


def test_coral_hand_values():
    # zero logits: each of the K-1 tasks costs log 2
    assert LF.coral_loss(torch.zeros(1, 2, dtype=torch.float64), torch.tensor([1])).item() == pytest.approx(
        2 * math.log(2.0), abs=1e-12
    )
    # logits (2, -1), rank 1: -log sigmoid(2) - log(1 - sigmoid(-1)) = softplus(-2) + softplus(-1)
    x = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    expected = math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))
    assert LF.coral_loss(x, torch.tensor([1])).item() == pytest.approx(expected, abs=1e-12)
    # same logits, rank 0: softplus(2) + softplus(-1)
    expected = math.log1p(math.exp(2.0)) + math.log1p(math.exp(-1.0))
    assert LF.coral_loss(x, torch.tensor([0])).item() == pytest.approx(expected, abs=1e-12)


def test_coral_gradcheck():
    x, t = _data(3, (3,))
    x.requires_grad_(True)
    imp = torch.tensor([1.0, 0.5, 2.0, 0.25], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: LF.coral_loss(a, t, importance=imp), (x,))


def test_coral_argument_checks():
    x = torch.zeros(3, K - 1)
    with pytest.raises(ValueError, match=r"`target` values must be class indices in \[0, 4\], got 5"):
        LF.coral_loss(x, torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match=r"got -1"):
        LF.coral_loss(x, torch.tensor([0, -1, 1]))
    with pytest.raises(TypeError, match=r"`target` must hold integer ranks.*torch\.float32"):
        LF.coral_loss(x, torch.zeros(3))
    with pytest.raises(
        ValueError, match=r"`target` must have shape \(3,\) for `input` of shape \(3, 4\).*got \(3, 1\)"
    ):
        LF.coral_loss(x, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`importance` must have shape \(4,\), got \(3,\)"):
        LF.coral_loss(x, torch.zeros(3, dtype=torch.long), importance=torch.ones(3))
    with pytest.raises(ValueError, match=r"`reduction`.*\('mean', 'sum', 'none'\).*'batchmean'"):
        LF.coral_loss(x, torch.zeros(3, dtype=torch.long), reduction="batchmean")
    with pytest.raises(TypeError, match=r"`input`.*torch\.int64"):
        LF.coral_loss(torch.zeros(3, K - 1, dtype=torch.long), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_coral_half_inputs_are_upcast(half):
    x, t = _data(4, (16,))
    xh = x.to(half)
    out = LF.coral_loss(xh, t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, LF.coral_loss(xh.float(), t), atol=1e-2, rtol=1e-2)

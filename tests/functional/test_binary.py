"""Binary losses against torch (value and gradient, float64) and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossbench.functional as LF
from tests.helpers import assert_value_and_grad

REDUCTIONS = ("mean", "sum", "none")
TOL = {"atol": 1e-6, "rtol": 1e-6}
LOG2 = math.log(2.0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(seed: int, shape=(8, 3), soft: bool = False):
    g = _gen(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
    if soft:
        y = torch.rand(*shape, generator=g, dtype=torch.float64)
    else:
        y = torch.randint(0, 2, shape, generator=g).to(torch.float64)
    return x, y


def _check_value_and_grad(ours, ref, x):
    assert_value_and_grad(ours, ref, x, seed=123, **TOL)


# ----------------------------------------------------------------------------------------------
# binary cross-entropy vs torch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("shape", [(9,), (8, 3)])
def test_bce_matches_torch(reduction, soft, shape):
    x, y = _data(0, shape, soft)
    _check_value_and_grad(
        lambda a: LF.binary_cross_entropy_with_logits(a, y, reduction=reduction),
        lambda a: F.binary_cross_entropy_with_logits(a, y, reduction=reduction),
        x,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_weight_matches_torch(reduction):
    x, y = _data(1)
    w = torch.rand(x.shape, generator=_gen(2), dtype=torch.float64) * 3
    _check_value_and_grad(
        lambda a: LF.binary_cross_entropy_with_logits(a, y, weight=w, reduction=reduction),
        lambda a: F.binary_cross_entropy_with_logits(a, y, weight=w, reduction=reduction),
        x,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [0.0, 0.3, 2.0, 5.0, "per_output"])
def test_bce_pos_weight_matches_torch(reduction, pos_weight):
    x, y = _data(3)
    if pos_weight == "per_output":
        pw = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64)
    else:
        pw = torch.tensor(pos_weight, dtype=torch.float64)
    _check_value_and_grad(
        lambda a: LF.binary_cross_entropy_with_logits(a, y, pos_weight=pw, reduction=reduction),
        lambda a: F.binary_cross_entropy_with_logits(a, y, pos_weight=pw, reduction=reduction),
        x,
    )
    if pos_weight != "per_output":  # a python float works too
        torch.testing.assert_close(
            LF.binary_cross_entropy_with_logits(x, y, pos_weight=float(pos_weight), reduction=reduction),
            F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction=reduction),
            **TOL,
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.5, 1.0])
def test_bce_label_smoothing_matches_smoothed_targets(reduction, eps):
    x, y = _data(4)
    smoothed = y * (1 - eps) + eps / 2
    _check_value_and_grad(
        lambda a: LF.binary_cross_entropy_with_logits(a, y, label_smoothing=eps, reduction=reduction),
        lambda a: F.binary_cross_entropy_with_logits(a, smoothed, reduction=reduction),
        x,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_all_options_together(reduction):
    x, y = _data(5, soft=True)
    w = torch.rand(x.shape, generator=_gen(6), dtype=torch.float64)
    pw = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64)
    eps = 0.2
    _check_value_and_grad(
        lambda a: LF.binary_cross_entropy_with_logits(
            a, y, weight=w, pos_weight=pw, label_smoothing=eps, reduction=reduction
        ),
        lambda a: F.binary_cross_entropy_with_logits(
            a, y * (1 - eps) + eps / 2, weight=w, pos_weight=pw, reduction=reduction
        ),
        x,
    )


def test_bce_hand_values():
    x = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    expected = [LOG2, math.log(1 + math.exp(2.0)), math.log(1 + math.exp(1.0))]
    out = LF.binary_cross_entropy_with_logits(x, y, reduction="none")
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    # pos_weight 3 triples the positive terms only
    out = LF.binary_cross_entropy_with_logits(x, y, pos_weight=3.0, reduction="none")
    torch.testing.assert_close(out, torch.tensor([3 * expected[0], expected[1], 3 * expected[2]], dtype=torch.float64))


def test_bce_integer_and_bool_targets_are_accepted():
    x, y = _data(7)
    ref = F.binary_cross_entropy_with_logits(x, y)
    torch.testing.assert_close(LF.binary_cross_entropy_with_logits(x, y.long()), ref, **TOL)
    torch.testing.assert_close(LF.binary_cross_entropy_with_logits(x, y.bool()), ref, **TOL)


# ----------------------------------------------------------------------------------------------
# binary focal loss
# ----------------------------------------------------------------------------------------------


def _torchvision_focal(x, y, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss, written out."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None and alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
def test_binary_focal_gamma0_no_alpha_is_bce(reduction, soft):
    x, y = _data(8, soft=soft)
    _check_value_and_grad(
        lambda a: LF.binary_focal_loss(a, y, alpha=None, gamma=0.0, reduction=reduction),
        lambda a: F.binary_cross_entropy_with_logits(a, y, reduction=reduction),
        x,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (None, 1.0), (0.75, 0.5), (0.5, 3.0), (0.25, 0.0)])
def test_binary_focal_matches_torchvision_formula(reduction, alpha, gamma):
    x, y = _data(9)
    _check_value_and_grad(
        lambda a: LF.binary_focal_loss(a, y, alpha=alpha, gamma=gamma, reduction=reduction),
        lambda a: _torchvision_focal(a, y, alpha, gamma, reduction),
        x,
    )


def test_binary_focal_hand_values():
    # x = 0: p = 1/2 for both classes; ce = log 2, (1 - p_t)^2 = 1/4
    x = torch.zeros(2, dtype=torch.float64)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    out = LF.binary_focal_loss(x, y, alpha=0.25, gamma=2.0, reduction="none")
    torch.testing.assert_close(out, torch.tensor([0.25 * 0.25 * LOG2, 0.75 * 0.25 * LOG2], dtype=torch.float64))
    # x = log 3: p = 3/4; positive: p_t = 3/4, ce = log(4/3), factor (1/4)^2
    x = torch.tensor([math.log(3.0)], dtype=torch.float64)
    out = LF.binary_focal_loss(x, torch.ones(1, dtype=torch.float64), alpha=None, gamma=2.0, reduction="sum")
    assert out.item() == pytest.approx(math.log(4 / 3) / 16, abs=1e-12)
    # an easy example is down-weighted more than a hard one, relative to bce
    x = torch.tensor([4.0, -4.0], dtype=torch.float64)
    y = torch.ones(2, dtype=torch.float64)
    ratio = LF.binary_focal_loss(x, y, alpha=None, reduction="none") / F.binary_cross_entropy_with_logits(
        x, y, reduction="none"
    )
    assert ratio[0] < 1e-3 and ratio[1] > 0.9


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binary_focal_saturated_logits_keep_the_value_and_a_finite_gradient(gamma, dtype):
    """Issue 19: 1 - sigmoid(x) rounds to 0 from a logit of about 16.7 (float32), and (1 - p_t)^gamma, 0 < gamma < 1,
    then has an infinite derivative: torchvision's formula gives a nan gradient there."""
    x64 = torch.tensor(
        [17.0, 20.0, 30.0, 40.0, 100.0, 200.0, -17.0, -100.0, -200.0, 200.0, -30.0, 0.5, -1.0], dtype=torch.float64
    )
    y64 = torch.tensor([1.0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0], dtype=torch.float64)
    x = x64.to(dtype).requires_grad_(True)
    per = LF.binary_focal_loss(x, y64.to(dtype), alpha=0.25, gamma=gamma, reduction="none")
    (g,) = torch.autograd.grad(per.sum(), x)
    assert torch.isfinite(per).all() and torch.isfinite(g).all()
    leaf = x64.clone().requires_grad_(True)  # the formula in float64, where its gradient is finite
    ref = _torchvision_focal(leaf, y64, 0.25, gamma, "none")
    (ref_g,) = torch.autograd.grad(ref.sum(), leaf)
    finite = torch.isfinite(ref_g)
    assert finite[:3].all() and not finite.all()  # 17, 20, 30 are compared; 100 and 200 overflow the formula
    tol = {"rtol": 1e-5, "atol": 1e-6 if dtype == torch.float32 else 1e-12}
    torch.testing.assert_close(per.double(), ref.detach(), **tol)
    torch.testing.assert_close(g.double()[finite], ref_g[finite], **tol)


# ----------------------------------------------------------------------------------------------
# squared hinge
# ----------------------------------------------------------------------------------------------


def test_squared_hinge_hand_values():
    x = torch.tensor([0.5, -2.0, 2.0, 0.5, -0.5], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    # s = 2y - 1; max(0, 1 - s x)^2
    expected = torch.tensor([0.25, 9.0, 0.0, 2.25, 0.25], dtype=torch.float64)
    torch.testing.assert_close(LF.squared_hinge_loss(x, y, reduction="none"), expected)
    torch.testing.assert_close(LF.squared_hinge_loss(x, y), expected.mean())
    torch.testing.assert_close(LF.squared_hinge_loss(x, y, reduction="sum"), expected.sum())
    # margin 2: max(0, 2 - s x)^2
    expected = torch.tensor([2.25, 16.0, 0.0, 6.25, 2.25], dtype=torch.float64)
    torch.testing.assert_close(LF.squared_hinge_loss(x, y, margin=2.0, reduction="none"), expected)


def test_squared_hinge_gradient():
    x = torch.tensor([0.5, -2.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    (g,) = torch.autograd.grad(LF.squared_hinge_loss(x, y, reduction="sum"), x)
    # d/dx max(0, 1 - s x)^2 = -2 s max(0, 1 - s x)
    torch.testing.assert_close(g, torch.tensor([-1.0, -6.0, 0.0, 3.0], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------

BIN_FNS = [LF.binary_cross_entropy_with_logits, LF.binary_focal_loss, LF.squared_hinge_loss]


@pytest.mark.parametrize("fn", BIN_FNS, ids=lambda f: f.__name__)
def test_target_of_other_shape_is_not_broadcast(fn):
    with pytest.raises(ValueError, match=r"`target`.*\(4,\).*\(4, 1\)"):
        fn(torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"`target`.*\(4, 1\).*\(4,\)"):
        fn(torch.zeros(4, 1), torch.zeros(4))


@pytest.mark.parametrize("fn", BIN_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad,shown", [(2.0, "2.0"), (-0.5, "-0.5"), (1.5, "1.5")])
def test_binary_targets_outside_unit_interval(fn, bad, shown):
    y = torch.tensor([0.0, bad, 1.0])
    with pytest.raises(ValueError, match=rf"`target` values must be in \[0, 1\], got {shown}"):
        fn(torch.zeros(3), y)


@pytest.mark.parametrize("fn", BIN_FNS, ids=lambda f: f.__name__)
def test_binary_reduction_and_dtype(fn):
    with pytest.raises(ValueError, match=r"`reduction`.*\('mean', 'sum', 'none'\).*'batchmean'"):
        fn(torch.zeros(3), torch.zeros(3), reduction="batchmean")
    with pytest.raises(TypeError, match=r"`input`.*torch\.int64"):
        fn(torch.zeros(3, dtype=torch.long), torch.zeros(3))


@pytest.mark.parametrize("eps", [-0.1, 1.5])
def test_bce_label_smoothing_range(eps):
    with pytest.raises(ValueError, match=rf"`label_smoothing` must be in \[0.0, 1.0\], got {eps}"):
        LF.binary_cross_entropy_with_logits(torch.zeros(3), torch.zeros(3), label_smoothing=eps)


def test_bce_weight_and_pos_weight_shapes():
    x = torch.zeros(4, 3)
    y = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"`weight` must have the shape of `input` \(4, 3\), got \(3,\)"):
        LF.binary_cross_entropy_with_logits(x, y, weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"`pos_weight`.*\(4, 3\).*got shape \(4,\)"):
        LF.binary_cross_entropy_with_logits(x, y, pos_weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"`pos_weight`.*got shape \(4, 3\)"):
        LF.binary_cross_entropy_with_logits(x, y, pos_weight=torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"`pos_weight` must be >= 0, got -1"):
        LF.binary_cross_entropy_with_logits(x, y, pos_weight=-1.0)


def test_binary_focal_argument_ranges():
    x, y = torch.zeros(3), torch.zeros(3)
    with pytest.raises(ValueError, match=r"`gamma` must be >= 0, got -1\.0"):
        LF.binary_focal_loss(x, y, gamma=-1.0)
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0.0, 1.0\], got 1\.5"):
        LF.binary_focal_loss(x, y, alpha=1.5)
    with pytest.raises(ValueError, match=r"`margin` must be > 0, got 0\.0"):
        LF.squared_hinge_loss(x, y, margin=0.0)


def test_validate_args_off_skips_binary_range_but_not_shape():
    x = torch.zeros(3)
    y = torch.tensor([0.0, 1.2, 1.0])
    with LF.validate_args(False):
        LF.binary_cross_entropy_with_logits(x, y)
        with pytest.raises(ValueError, match="`target`"):
            LF.binary_cross_entropy_with_logits(x, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="got 1.2"):
        LF.binary_cross_entropy_with_logits(x, y)


# ----------------------------------------------------------------------------------------------
# half precision
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fn", BIN_FNS, ids=lambda f: f.__name__)
def test_half_inputs_are_upcast(fn, half):
    x, y = _data(10, (32,))
    xh, yh = x.to(half), y.to(half)
    out = fn(xh, yh)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fn(xh.float(), yh.float()), atol=1e-2, rtol=1e-2)
    xr = xh.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(xr, yh), xr)
    assert g.dtype == half

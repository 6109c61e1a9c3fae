"""Regression losses against torch (value and gradient, float64) and hand-computed values."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

import lossbench.functional as LF

REDUCTIONS = ("mean", "sum", "none")
TOL = {"atol": 1e-6, "rtol": 1e-6}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(seed: int, shape=(7, 5)):
    g = _gen(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 2.0
    y = torch.randn(*shape, generator=g, dtype=torch.float64) * 2.0
    return x, y


def _assert_grads_match(ours, ref, *inputs):
    """Values match and d(loss)/d(inputs) match (through a random upstream gradient for 'none')."""
    torch.testing.assert_close(ours(*inputs), ref(*inputs), **TOL)
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    a, b = ours(*leaves), ref(*leaves)
    up = torch.randn(a.shape, generator=_gen(99), dtype=a.dtype)
    ga = torch.autograd.grad((a * up).sum(), leaves)
    gb = torch.autograd.grad((b * up).sum(), leaves)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, **TOL)


# ----------------------------------------------------------------------------------------------
# against torch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7,), (4, 3), (2, 3, 4)])
def test_mse_matches_torch(reduction, shape):
    x, y = _pair(0, shape)
    _assert_grads_match(
        lambda a, b: LF.mse_loss(a, b, reduction=reduction),
        lambda a, b: F.mse_loss(a, b, reduction=reduction),
        x,
        y,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7,), (4, 3)])
def test_mae_matches_torch_l1(reduction, shape):
    x, y = _pair(1, shape)
    _assert_grads_match(
        lambda a, b: LF.mae_loss(a, b, reduction=reduction),
        lambda a, b: F.l1_loss(a, b, reduction=reduction),
        x,
        y,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.1, 0.5, 1.0, 2.5, 10.0])
def test_huber_matches_torch(reduction, delta):
    x, y = _pair(2)
    _assert_grads_match(
        lambda a, b: LF.huber_loss(a, b, delta=delta, reduction=reduction),
        lambda a, b: F.huber_loss(a, b, delta=delta, reduction=reduction),
        x,
        y,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [0.1, 0.5, 1.0, 3.0])
def test_smooth_l1_matches_torch(reduction, beta):
    x, y = _pair(3)
    _assert_grads_match(
        lambda a, b: LF.smooth_l1_loss(a, b, beta=beta, reduction=reduction),
        lambda a, b: F.smooth_l1_loss(a, b, beta=beta, reduction=reduction),
        x,
        y,
    )


def test_huber_and_smooth_l1_hand_values():
    x = torch.tensor([0.5, 3.0, -2.0], dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.float64)
    # delta = 1: 0.5 * 0.25, 1 * (3 - 0.5), 1 * (2 - 0.5)
    torch.testing.assert_close(
        LF.huber_loss(x, y, delta=1.0, reduction="none"), torch.tensor([0.125, 2.5, 1.5], dtype=torch.float64)
    )
    # beta = 2: 0.25 / 4, 3 - 1, 2 - 1 is on the boundary |d| = beta -> 0.5 * 4 / 2 = 1
    torch.testing.assert_close(
        LF.smooth_l1_loss(x, y, beta=2.0, reduction="none"), torch.tensor([0.0625, 2.0, 1.0], dtype=torch.float64)
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_matches_torch(reduction, full):
    g = _gen(4)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, 3, generator=g, dtype=torch.float64)
    var = torch.rand(6, 3, generator=g, dtype=torch.float64) * 2 + 0.05
    _assert_grads_match(
        lambda a, b, v: LF.gaussian_nll_loss(a, b, v, full=full, reduction=reduction),
        lambda a, b, v: F.gaussian_nll_loss(a, b, v, full=full, reduction=reduction),
        x,
        y,
        var,
    )


def test_gaussian_nll_hand_value_and_eps_clamp():
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0], dtype=torch.float64)
    var = torch.tensor([2.0, 0.0], dtype=torch.float64)
    expected0 = 0.5 * (math.log(2.0) + 1.0 / 2.0)
    expected1 = 0.5 * math.log(1e-3)  # var clamped to eps, zero error
    out = LF.gaussian_nll_loss(x, y, var, eps=1e-3, reduction="none")
    torch.testing.assert_close(out, torch.tensor([expected0, expected1], dtype=torch.float64))
    full = LF.gaussian_nll_loss(x[:1], y[:1], var[:1], full=True, reduction="sum")
    assert full.item() == pytest.approx(expected0 + 0.5 * math.log(2 * math.pi), abs=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("log_input", [True, False])
def test_poisson_nll_matches_torch(reduction, full, log_input):
    g = _gen(5)
    if log_input:
        x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    else:
        x = torch.rand(5, 4, generator=g, dtype=torch.float64) * 3 + 0.01
    y = torch.randint(0, 6, (5, 4), generator=g).to(torch.float64)
    _assert_grads_match(
        lambda a: LF.poisson_nll_loss(a, y, log_input=log_input, full=full, reduction=reduction),
        lambda a: F.poisson_nll_loss(a, y, log_input=log_input, full=full, reduction=reduction),
        x,
    )


def test_poisson_nll_accepts_integer_counts():
    g = _gen(6)
    x = torch.randn(8, generator=g, dtype=torch.float64)
    counts = torch.randint(0, 5, (8,), generator=g)
    torch.testing.assert_close(LF.poisson_nll_loss(x, counts), F.poisson_nll_loss(x, counts.double()), **TOL)
    # hand value: exp(0) - 2 * 0 = 1
    assert (
        LF.poisson_nll_loss(torch.zeros(1, dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)).item() == 1.0
    )


# ----------------------------------------------------------------------------------------------
# losses without a torch twin
# ----------------------------------------------------------------------------------------------


def test_log_cosh_moderate_values_match_log_cosh():
    g = _gen(7)
    x = torch.randn(50, generator=g, dtype=torch.float64) * 5
    y = torch.randn(50, generator=g, dtype=torch.float64) * 5
    d = x - y
    expected = torch.log(torch.cosh(d))
    torch.testing.assert_close(LF.log_cosh_loss(x, y, reduction="none"), expected, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(LF.log_cosh_loss(x, y), expected.mean(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(LF.log_cosh_loss(x, y, reduction="sum"), expected.sum(), atol=1e-10, rtol=1e-12)
    # gradient of log cosh d is tanh d
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(LF.log_cosh_loss(xr, y, reduction="sum"), xr)
    torch.testing.assert_close(grad, torch.tanh(d), atol=1e-12, rtol=1e-12)


def test_log_cosh_hand_values():
    x = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)
    out = LF.log_cosh_loss(x, torch.zeros(3, dtype=torch.float64), reduction="none")
    c = math.log(math.cosh(1.0))
    torch.testing.assert_close(out, torch.tensor([0.0, c, c], dtype=torch.float64), atol=1e-15, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_cosh_large_differences_do_not_overflow(dtype):
    d = torch.tensor([30.0, -50.0, 1000.0, -1000.0, 1e6], dtype=dtype)
    out = LF.log_cosh_loss(d, torch.zeros_like(d), reduction="none")
    assert torch.isfinite(out).all()
    # log cosh d = |d| - log 2 + log(1 + exp(-2|d|)), the last term is below 1e-26 here
    torch.testing.assert_close(out, d.abs() - math.log(2.0))
    # torch's own log(cosh(1000)) overflows: the stable form is needed
    assert torch.isinf(torch.log(torch.cosh(torch.tensor(1000.0, dtype=dtype))))
    dr = d.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(LF.log_cosh_loss(dr, torch.zeros_like(d), reduction="sum"), dr)
    torch.testing.assert_close(grad, torch.sign(d))


def _pinball(x, y, q):
    d = y - x
    return torch.where(d >= 0, q * d, (q - 1) * d)


@pytest.mark.parametrize("q", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_quantile_single_matches_pinball(q, reduction):
    x, y = _pair(8, (9,))
    expected = _pinball(x, y, q)
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    torch.testing.assert_close(LF.quantile_loss(x, y, quantiles=q, reduction=reduction), expected, **TOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_quantile_multiple_matches_pinball(reduction):
    qs = [0.1, 0.5, 0.9]
    g = _gen(9)
    y = torch.randn(6, generator=g, dtype=torch.float64)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    per = torch.stack([_pinball(x[:, i], y, q) for i, q in enumerate(qs)], dim=-1).mean(-1)
    expected = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    out = LF.quantile_loss(x, y, quantiles=qs, reduction=reduction)
    if reduction == "none":
        assert out.shape == y.shape
    torch.testing.assert_close(out, expected, **TOL)


def test_quantile_hand_values():
    # d = 1 - 0 = 1: q=0.1 -> 0.1, q=0.9 -> 0.9; mean 0.5
    out = LF.quantile_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1.0]), quantiles=[0.1, 0.9])
    assert out.item() == pytest.approx(0.5)
    # over-prediction d = -2 at q=0.1 costs 0.9 * 2
    out = LF.quantile_loss(torch.tensor([2.0]), torch.tensor([0.0]), quantiles=0.1, reduction="sum")
    assert out.item() == pytest.approx(1.8)
    # a one-element list is the multi-quantile form: input (N, 1)
    out = LF.quantile_loss(torch.tensor([[2.0]]), torch.tensor([0.0]), quantiles=[0.1], reduction="none")
    assert out.shape == (1,) and out.item() == pytest.approx(1.8)


def test_quantile_median_is_half_l1():
    x, y = _pair(10, (4, 5))
    for reduction in REDUCTIONS:
        torch.testing.assert_close(
            LF.quantile_loss(x, y, quantiles=0.5, reduction=reduction),
            0.5 * F.l1_loss(x, y, reduction=reduction),
            **TOL,
        )


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------

REG_FNS = [LF.mse_loss, LF.mae_loss, LF.huber_loss, LF.smooth_l1_loss, LF.log_cosh_loss]


@pytest.mark.parametrize("fn", REG_FNS, ids=lambda f: f.__name__)
def test_target_of_other_shape_is_not_broadcast(fn):
    x = torch.zeros(4)
    with pytest.raises(ValueError, match=r"`target`.*\(4,\).*\(4, 1\)"):
        fn(x, torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"`target`.*\(4,\).*\(1,\)"):
        fn(x, torch.zeros(1))
    # the name of the function leads the message
    with pytest.raises(ValueError, match=rf"^{fn.__name__}:"):
        fn(x, torch.zeros(4, 1))


@pytest.mark.parametrize("fn", REG_FNS, ids=lambda f: f.__name__)
def test_integer_regression_target_is_a_type_error(fn):
    with pytest.raises(TypeError, match=r"`target`.*floating-point.*torch\.int64"):
        fn(torch.zeros(3), torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("fn", REG_FNS, ids=lambda f: f.__name__)
def test_integer_input_is_a_type_error(fn):
    with pytest.raises(TypeError, match=r"`input`.*torch\.int64"):
        fn(torch.tensor([1, 2, 3]), torch.zeros(3))


@pytest.mark.parametrize("fn", REG_FNS, ids=lambda f: f.__name__)
def test_unknown_reduction_lists_the_allowed(fn):
    with pytest.raises(ValueError, match=r"`reduction`.*'mean', 'sum', 'none'.*'avg'"):
        fn(torch.zeros(3), torch.zeros(3), reduction="avg")


@pytest.mark.parametrize("fn,name", [(LF.huber_loss, "delta"), (LF.smooth_l1_loss, "beta")])
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_delta_beta(fn, name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be > 0, got {re.escape(repr(value))}"):
        fn(torch.zeros(3), torch.zeros(3), **{name: value})


def test_gaussian_nll_negative_variance_names_var():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match=r"`var` must be non-negative, got a minimum of -0\.5"):
        LF.gaussian_nll_loss(x, x, torch.tensor([1.0, -0.5, 1.0]))
    with pytest.raises(ValueError, match=r"`var`.*\(3,\).*\(3, 1\)"):
        LF.gaussian_nll_loss(x, x, torch.ones(3, 1))
    with pytest.raises(ValueError, match=r"`eps` must be > 0"):
        LF.gaussian_nll_loss(x, x, torch.ones(3), eps=0.0)


def test_poisson_nll_value_checks():
    with pytest.raises(ValueError, match=r"`target` must hold non-negative counts, got -1"):
        LF.poisson_nll_loss(torch.zeros(2), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"`input` must be a non-negative rate when log_input=False"):
        LF.poisson_nll_loss(torch.tensor([-1.0, 1.0]), torch.ones(2), log_input=False)
    # log rates may be negative
    LF.poisson_nll_loss(torch.tensor([-1.0, 1.0]), torch.ones(2), log_input=True)


@pytest.mark.parametrize("quantiles", [0.0, 1.0, -0.1, 1.5, [0.1, 1.0], [0.0, 0.5], []])
def test_quantiles_outside_open_unit_interval(quantiles):
    n = 1 if isinstance(quantiles, float) else max(1, len(quantiles))
    x = torch.zeros(2) if isinstance(quantiles, float) else torch.zeros(2, n)
    with pytest.raises(ValueError, match=r"`quantiles`.*\(0, 1\)"):
        LF.quantile_loss(x, torch.zeros(2), quantiles=quantiles)


def test_quantile_input_shape_names_quantiles():
    with pytest.raises(ValueError, match=r"`input` must have shape \(2, 3\).*3 quantile\(s\), got \(2,\)"):
        LF.quantile_loss(torch.zeros(2), torch.zeros(2), quantiles=[0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match=r"`input` must have shape \(2,\).*got \(2, 1\)"):
        LF.quantile_loss(torch.zeros(2, 1), torch.zeros(2), quantiles=0.5)


def test_validate_args_off_skips_value_checks_but_not_shapes():
    x = torch.zeros(3)
    bad_var = torch.tensor([1.0, -0.5, 1.0])
    with LF.validate_args(False):
        assert not LF.validate_args_enabled()
        # torch itself computes with a negative count; only lossbench's value check refuses it
        LF.poisson_nll_loss(x, torch.tensor([1.0, -1.0, 0.0]))
        with pytest.raises(ValueError, match=r"`target`.*\(3, 1\)"):
            LF.mse_loss(x, torch.zeros(3, 1))
        with pytest.raises(TypeError, match="dtype"):
            LF.mse_loss(x, torch.zeros(3, dtype=torch.long))
    assert LF.validate_args_enabled()
    with pytest.raises(ValueError, match="`var`"):
        LF.gaussian_nll_loss(x, x, bad_var)
    with pytest.raises(ValueError, match="non-negative counts"):
        LF.poisson_nll_loss(x, torch.tensor([1.0, -1.0, 0.0]))


def test_validate_args_restores_after_an_exception():
    with pytest.raises(RuntimeError):
        with LF.validate_args(False):
            raise RuntimeError("boom")
    assert LF.validate_args_enabled()


# ----------------------------------------------------------------------------------------------
# half precision
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "fn",
    [
        LF.mse_loss,
        LF.mae_loss,
        LF.huber_loss,
        LF.smooth_l1_loss,
        LF.log_cosh_loss,
        lambda a, b: LF.quantile_loss(a, b, quantiles=0.3),
        lambda a, b: LF.poisson_nll_loss(a, b.abs()),
        lambda a, b: LF.gaussian_nll_loss(a, b, (a * 0 + 0.5)),
    ],
    ids=["mse", "mae", "huber", "smooth_l1", "log_cosh", "quantile", "poisson", "gaussian"],
)
def test_half_inputs_are_upcast(fn, half):
    x, y = _pair(11, (16,))
    xh, yh = x.to(half), y.to(half)
    out = fn(xh, yh)
    assert out.dtype == torch.float32
    ref = fn(xh.float(), yh.float())
    torch.testing.assert_close(out, ref, atol=1e-2, rtol=1e-2)

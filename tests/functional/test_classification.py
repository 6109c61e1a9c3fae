"""Multiclass losses: cross-entropy against torch, the others against hand values and known limits."""

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
C = 5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(seed: int, shape=(12, C)) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64) * 2


def _targets(seed: int, shape=(12,), ignore: int | None = None, n_ignored: int = 3) -> torch.Tensor:
    g = _gen(seed + 1000)
    t = torch.randint(0, C, shape, generator=g)
    if ignore is not None:
        flat = t.view(-1)
        flat[torch.randperm(flat.numel(), generator=g)[:n_ignored]] = ignore
    return t


def _weight(seed: int = 77) -> torch.Tensor:
    return torch.rand(C, generator=_gen(seed), dtype=torch.float64) * 2 + 0.1


def _value_and_grad(fn, x):
    leaf = x.detach().clone().requires_grad_(True)
    out = fn(leaf)
    up = torch.randn(out.shape, generator=_gen(321), dtype=out.dtype)
    (grad,) = torch.autograd.grad((out * up).sum(), leaf)
    return out.detach(), grad


def _assert_same(ours, ref, x, tol=TOL):
    assert_value_and_grad(ours, ref, x, seed=321, **tol)


def _reduce(per, w, reduction):
    """torch's weighted reduction: mean divides by the summed weights."""
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / w.sum()


# ----------------------------------------------------------------------------------------------
# cross-entropy vs torch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("ignore_index", [None, -100, -1, 2])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.35])
def test_cross_entropy_matches_torch_2d(reduction, use_weight, ignore_index, label_smoothing):
    x = _logits(0)
    # ignore_index=2 is a real class: torch ignores those positions, and so must we
    t = _targets(0, ignore=None if ignore_index in (None, 2) else ignore_index)
    if ignore_index == 2:
        t[:2] = 2
    w = _weight() if use_weight else None
    kw = {} if ignore_index is None else {"ignore_index": ignore_index}
    _assert_same(
        lambda a: LF.cross_entropy(a, t, weight=w, label_smoothing=label_smoothing, reduction=reduction, **kw),
        lambda a: F.cross_entropy(a, t, weight=w, label_smoothing=label_smoothing, reduction=reduction, **kw),
        x,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_classes_last_3d(reduction, use_weight, label_smoothing):
    x = _logits(1, (3, 4, C))
    t = _targets(1, (3, 4), ignore=-100, n_ignored=4)
    w = _weight() if use_weight else None
    ours = LF.cross_entropy(x, t, weight=w, label_smoothing=label_smoothing, reduction=reduction)
    if reduction == "none":
        assert ours.shape == (3, 4)
    _assert_same(
        lambda a: LF.cross_entropy(a, t, weight=w, label_smoothing=label_smoothing, reduction=reduction),
        lambda a: F.cross_entropy(
            a.permute(0, 2, 1), t, weight=w, label_smoothing=label_smoothing, reduction=reduction
        ),
        x,
    )


def test_cross_entropy_single_unbatched_sample():
    x = _logits(2, (C,))
    t = torch.tensor(3)
    torch.testing.assert_close(LF.cross_entropy(x, t), F.cross_entropy(x, t), **TOL)


def test_cross_entropy_hand_values():
    x = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=torch.float64)
    t = torch.tensor([1, 0])
    out = LF.cross_entropy(x, t, reduction="none")
    torch.testing.assert_close(out, torch.tensor([LOG2, math.log(4 / 3)], dtype=torch.float64))
    # label smoothing 0.2, two classes: target (0.9, 0.1) on row 2: -(0.9 log 3/4 + 0.1 log 1/4)
    out = LF.cross_entropy(x[1:], t[1:], label_smoothing=0.2, reduction="sum")
    assert out.item() == pytest.approx(-(0.9 * math.log(0.75) + 0.1 * math.log(0.25)), abs=1e-12)
    # weights (1, 3): mean = (3 log 2 + 1 log 4/3) / (3 + 1)
    out = LF.cross_entropy(x, t, weight=torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert out.item() == pytest.approx((3 * LOG2 + math.log(4 / 3)) / 4, abs=1e-12)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("use_weight", [False, True])
def test_cross_entropy_ignored_positions_have_exactly_zero_gradient(label_smoothing, use_weight):
    x = _logits(3)
    t = _targets(3, ignore=-100, n_ignored=4)
    w = _weight() if use_weight else None
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(LF.cross_entropy(leaf, t, weight=w, label_smoothing=label_smoothing), leaf)
    ignored = t == -100
    assert ignored.sum() == 4
    assert torch.equal(g[ignored], torch.zeros_like(g[ignored]))
    assert (g[~ignored].abs().sum(-1) > 0).all()


# ----------------------------------------------------------------------------------------------
# weighted mean semantics, all-ignored batches
# ----------------------------------------------------------------------------------------------

CLASS_FNS = {
    "cross_entropy": lambda x, t, **kw: LF.cross_entropy(x, t, **kw),
    "cross_entropy_ls": lambda x, t, **kw: LF.cross_entropy(x, t, label_smoothing=0.1, **kw),
    "focal": lambda x, t, **kw: LF.focal_loss(x, t, gamma=2.0, **kw),
    "poly1": lambda x, t, **kw: LF.poly1_cross_entropy(x, t, epsilon=1.0, **kw),
    "poly1_ls": lambda x, t, **kw: LF.poly1_cross_entropy(x, t, epsilon=0.5, label_smoothing=0.2, **kw),
    "square": lambda x, t, **kw: LF.square_loss(x, t, k=2.0, M=3.0, **kw),
    "gce": lambda x, t, **kw: LF.generalized_cross_entropy(x, t, q=0.7, **kw),
    "mae_prob": lambda x, t, **kw: LF.mae_prob_loss(x, t, **kw),
    "sce": lambda x, t, **kw: LF.symmetric_cross_entropy(x, t, **kw),
    "nce_rce": lambda x, t, **kw: LF.nce_rce_loss(x, t, **kw),
}


@pytest.mark.parametrize("name", sorted(CLASS_FNS))
@pytest.mark.parametrize("ignore", [False, True])
def test_weighted_mean_is_sum_over_summed_target_weights(name, ignore):
    fn = CLASS_FNS[name]
    x = _logits(4)
    t = _targets(4, ignore=-100 if ignore else None, n_ignored=4)
    w = _weight()
    none = fn(x, t, weight=w, reduction="none")
    assert none.shape == t.shape
    valid = t != -100
    denom = w[t[valid]].sum()
    torch.testing.assert_close(fn(x, t, weight=w, reduction="mean"), none.sum() / denom, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(fn(x, t, weight=w, reduction="sum"), none.sum(), atol=1e-12, rtol=1e-12)
    # ignored positions contribute exactly 0 to "none"
    assert torch.equal(none[~valid], torch.zeros_like(none[~valid]))
    # the weighted per-position loss is the unweighted one times weight[target]
    # (not with label smoothing: torch weighs its smoothing term by the weight of each class)
    plain = fn(x, t, reduction="none")
    if not name.endswith("_ls"):
        torch.testing.assert_close(none[valid], plain[valid] * w[t[valid]], atol=1e-12, rtol=1e-12)
    # without weight, the mean runs over the non-ignored positions
    torch.testing.assert_close(fn(x, t), plain.sum() / valid.sum(), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(CLASS_FNS))
@pytest.mark.parametrize("use_weight", [False, True])
def test_all_ignored_batch_gives_zero_with_zero_gradient(name, use_weight):
    fn = CLASS_FNS[name]
    x = _logits(5, (4, 3, C)).requires_grad_(True)
    t = torch.full((4, 3), -100)
    w = _weight() if use_weight else None
    loss = fn(x, t, weight=w)
    assert loss.item() == 0.0
    assert not torch.isnan(loss)
    (g,) = torch.autograd.grad(loss, x)
    assert torch.equal(g, torch.zeros_like(g))
    assert fn(x, t, weight=w, reduction="sum").item() == 0.0


def test_torch_gives_nan_on_all_ignored_batch_where_lossbench_gives_zero():
    x = _logits(6)
    t = torch.full((12,), -100)
    assert torch.isnan(F.cross_entropy(x, t))
    assert torch.isnan(F.cross_entropy(x, t, weight=_weight()))
    assert LF.cross_entropy(x, t).item() == 0.0
    assert LF.cross_entropy(x, t, weight=_weight()).item() == 0.0


def test_all_ignored_with_custom_ignore_index():
    x = _logits(7).requires_grad_(True)
    t = torch.full((12,), 3)
    loss = LF.focal_loss(x, t, ignore_index=3)
    assert loss.item() == 0.0
    (g,) = torch.autograd.grad(loss, x)
    assert not g.any()


# ----------------------------------------------------------------------------------------------
# focal
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_focal_gamma0_is_cross_entropy(reduction, use_weight, ignore):
    x = _logits(8)
    t = _targets(8, ignore=-100 if ignore else None)
    w = _weight() if use_weight else None
    _assert_same(
        lambda a: LF.focal_loss(a, t, gamma=0.0, weight=w, reduction=reduction),
        lambda a: F.cross_entropy(a, t, weight=w, reduction=reduction),
        x,
    )


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_matches_formula(gamma, reduction):
    x = _logits(9)
    t = _targets(9, ignore=-100)
    w = _weight()

    def ref(a):
        valid = t != -100
        idx = torch.where(valid, t, 0)
        logp = F.log_softmax(a, -1).gather(-1, idx[:, None]).squeeze(-1)
        wt = w[idx] * valid
        per = -wt * (1 - logp.exp()) ** gamma * logp
        return _reduce(per, wt, reduction)

    _assert_same(lambda a: LF.focal_loss(a, t, gamma=gamma, weight=w, reduction=reduction), ref, x)


def test_focal_hand_values():
    x = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=torch.float64)
    t = torch.tensor([1, 0])
    # p_y = 1/2 -> 1/4 log 2; p_y = 3/4 -> (1/4)^2 log(4/3)
    out = LF.focal_loss(x, t, gamma=2.0, reduction="none")
    torch.testing.assert_close(out, torch.tensor([0.25 * LOG2, math.log(4 / 3) / 16], dtype=torch.float64))


def test_focal_issue_19_reproduction_has_finite_gradient_and_zero_for_the_ignored_row():
    """0 < gamma < 1: (1 - p)^gamma has an infinite derivative at p = 1; the ignored row got 0 * inf = nan."""
    x = torch.tensor([[20.0, 0.0, 0.0], [1.0, 0.5, -0.3], [30.0, 0.0, 0.0]], requires_grad=True)
    loss = LF.focal_loss(x, torch.tensor([0, 2, -100]), gamma=0.5)
    (g,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    assert (g[2] == 0).all()


def _focal_reference(a, t, gamma):
    """The focal loss written from its formula, per position: -(1 - p_y)^gamma log p_y (ignored rows: 0)."""
    valid = t != -100
    logp = F.log_softmax(a, -1).gather(-1, torch.where(valid, t, 0)[:, None]).squeeze(-1)
    return -((1 - logp.exp()) ** gamma) * logp * valid


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_saturated_logits_keep_the_value_and_a_finite_gradient(gamma, dtype):
    rows = [[20, 0, 0], [-20, 0, 0], [30, 0, 0], [100, 0, 0], [200, -200, 0], [1, 0.5, -0.3], [200, 0, 0], [35, 0, 1]]
    x64 = torch.tensor(rows, dtype=torch.float64)
    t = torch.tensor([0, 0, 0, 0, 0, 2, -100, 0])
    w = torch.tensor([1.0, 2.0, 0.5], dtype=dtype)
    x = x64.to(dtype).requires_grad_(True)
    per = LF.focal_loss(x, t, gamma=gamma, weight=w, reduction="none")
    (g,) = torch.autograd.grad(per.sum(), x)
    assert torch.isfinite(per).all() and torch.isfinite(g).all()
    assert (g[t == -100] == 0).all()
    leaf = x64.clone().requires_grad_(True)  # the formula in float64: its gradient is nan where 1 - p_y rounds to 0
    ref = _focal_reference(leaf, t, gamma) * w.double()[torch.where(t == -100, 0, t)]
    (ref_g,) = torch.autograd.grad(ref.sum(), leaf)
    tol = {"rtol": 1e-5, "atol": 1e-6 if dtype == torch.float32 else 1e-12}
    torch.testing.assert_close(per.double(), ref.detach(), **tol)
    finite = torch.isfinite(ref_g).all(-1)
    assert finite.sum() >= 4  # the comparison covers saturated rows too ([20, 0, 0], [-20, 0, 0], ...)
    torch.testing.assert_close(g.double()[finite], ref_g[finite], **tol)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 2.0])
def test_focal_gradcheck_float64(gamma):
    x = _logits(10, (6, C)).requires_grad_(True)
    t = _targets(10, (6,), ignore=-100, n_ignored=2)
    assert torch.autograd.gradcheck(lambda a: LF.focal_loss(a, t, gamma=gamma, weight=_weight()), (x,))


# ----------------------------------------------------------------------------------------------
# poly-1
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.4])
@pytest.mark.parametrize("ignore", [False, True])
def test_poly1_epsilon0_is_cross_entropy(reduction, use_weight, label_smoothing, ignore):
    x = _logits(10)
    t = _targets(10, ignore=-100 if ignore else None)
    w = _weight() if use_weight else None
    _assert_same(
        lambda a: LF.poly1_cross_entropy(
            a, t, epsilon=0.0, weight=w, label_smoothing=label_smoothing, reduction=reduction
        ),
        lambda a: F.cross_entropy(a, t, weight=w, label_smoothing=label_smoothing, reduction=reduction),
        x,
    )


@pytest.mark.parametrize("epsilon", [1.0, 2.0, -0.5])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poly1_matches_formula_and_terms_sum(epsilon, label_smoothing, reduction):
    x = _logits(11)
    t = _targets(11, ignore=-100)
    w = _weight()

    def ref(a):
        valid = t != -100
        idx = torch.where(valid, t, 0)
        wt = w[idx] * valid
        p_y = F.softmax(a, -1).gather(-1, idx[:, None]).squeeze(-1)
        p_t = (1 - label_smoothing) * p_y + label_smoothing / C
        ce = F.cross_entropy(a, t, weight=w, label_smoothing=label_smoothing, reduction="none")
        return _reduce(ce + epsilon * (1 - p_t) * wt, wt, reduction)

    ours = lambda a: LF.poly1_cross_entropy(  # noqa: E731
        a, t, epsilon=epsilon, weight=w, label_smoothing=label_smoothing, reduction=reduction
    )
    _assert_same(ours, ref, x)
    terms = LF.poly1_cross_entropy(
        x, t, epsilon=epsilon, weight=w, label_smoothing=label_smoothing, reduction=reduction, return_terms=True
    )
    assert set(terms) == {"ce", "poly"}
    torch.testing.assert_close(terms["ce"] + terms["poly"], ours(x), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(
        terms["ce"],
        F.cross_entropy(x, t, weight=w, label_smoothing=label_smoothing, reduction=reduction),
        **TOL,
    )


def test_poly1_hand_value():
    out = LF.poly1_cross_entropy(torch.tensor([[0.0, 0.0]], dtype=torch.float64), torch.tensor([1]), epsilon=1.0)
    assert out.item() == pytest.approx(LOG2 + 0.5, abs=1e-12)
    # smoothing 0.5 over 2 classes: p_t = 0.5 * 0.5 + 0.25 = 0.5 still; ce = log 2
    out = LF.poly1_cross_entropy(
        torch.tensor([[0.0, 0.0]], dtype=torch.float64), torch.tensor([1]), epsilon=2.0, label_smoothing=0.5
    )
    assert out.item() == pytest.approx(LOG2 + 1.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# square loss
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_square_loss_k1_m1_is_mse_to_one_hot(reduction):
    x = _logits(12)
    t = _targets(12)
    _assert_same(
        lambda a: LF.square_loss(a, t, k=1.0, M=1.0, reduction=reduction),
        lambda a: F.mse_loss(a, F.one_hot(t, C).double(), reduction=reduction) / (1 if reduction == "mean" else C),
        x,
    )
    none = LF.square_loss(x, t, reduction="none")
    torch.testing.assert_close(none, F.mse_loss(x, F.one_hot(t, C).double(), reduction="none").mean(-1), **TOL)


def test_square_loss_hand_values_k2_m3():
    x = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [-1.0, 1.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([1, 2, 0])
    # row 1: (1^2 + 0.5^2 + 2 (2 - 3)^2) / 3 = 3.25 / 3
    # row 2: (0 + 0 + 2 (3 - 3)^2) / 3 = 0
    # row 3: (1 + 1 + 2 (-1 - 3)^2) / 3 = 34 / 3
    expected = torch.tensor([3.25 / 3, 0.0, 34 / 3], dtype=torch.float64)
    torch.testing.assert_close(LF.square_loss(x, t, k=2.0, M=3.0, reduction="none"), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(LF.square_loss(x, t, k=2.0, M=3.0), expected.mean(), atol=1e-12, rtol=0)
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(LF.square_loss(x, t, k=2.0, M=3.0, reduction="sum"), x)
    # d/dx_c = 2 x_c / C off target, 2 k (x_y - M) / C on target
    expected_g = 2 * x.detach() / 3
    rows = torch.arange(3)
    expected_g[rows, t] = 2 * 2.0 * (x.detach()[rows, t] - 3.0) / 3
    torch.testing.assert_close(g, expected_g, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------------------------
# generalized cross-entropy, MAE
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_weight", [False, True])
def test_gce_tends_to_cross_entropy_as_q_goes_to_zero(use_weight):
    x = _logits(13)
    t = _targets(13, ignore=-100)
    w = _weight() if use_weight else None
    ce = F.cross_entropy(x, t, weight=w)
    gce = LF.generalized_cross_entropy(x, t, q=1e-4, weight=w)
    torch.testing.assert_close(gce, ce, atol=1e-3, rtol=1e-3)
    # and it gets closer as q shrinks
    errs = [abs(float(LF.generalized_cross_entropy(x, t, q=q, weight=w) - ce)) for q in (0.5, 0.1, 1e-2, 1e-4)]
    assert errs == sorted(errs, reverse=True)
    _, ga = _value_and_grad(lambda a: LF.generalized_cross_entropy(a, t, q=1e-6, weight=w), x)
    _, gb = _value_and_grad(lambda a: F.cross_entropy(a, t, weight=w), x)
    torch.testing.assert_close(ga, gb, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
def test_gce_q1_is_mae_prob(reduction, use_weight):
    x = _logits(14)
    t = _targets(14, ignore=-100)
    w = _weight() if use_weight else None
    _assert_same(
        lambda a: LF.generalized_cross_entropy(a, t, q=1.0, weight=w, reduction=reduction),
        lambda a: LF.mae_prob_loss(a, t, weight=w, reduction=reduction),
        x,
        tol={"atol": 1e-12, "rtol": 1e-12},
    )


def test_gce_and_mae_hand_values():
    x = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=torch.float64)
    t = torch.tensor([1, 0])
    # (1 - p^q) / q with p = 1/2, 3/4, q = 0.5
    out = LF.generalized_cross_entropy(x, t, q=0.5, reduction="none")
    torch.testing.assert_close(
        out, torch.tensor([(1 - 0.5**0.5) / 0.5, (1 - 0.75**0.5) / 0.5], dtype=torch.float64), atol=1e-12, rtol=0
    )
    out = LF.mae_prob_loss(x, t, reduction="none")
    torch.testing.assert_close(out, torch.tensor([0.5, 0.25], dtype=torch.float64), atol=1e-12, rtol=0)


def test_mae_prob_is_half_l1_to_one_hot():
    x = _logits(15)
    t = _targets(15)
    expected = 0.5 * (F.softmax(x, -1) - F.one_hot(t, C).double()).abs().sum(-1)
    torch.testing.assert_close(LF.mae_prob_loss(x, t, reduction="none"), expected, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------------------------
# symmetric cross-entropy, NCE+RCE
# ----------------------------------------------------------------------------------------------


def _rce(x, t, log_zero):
    """-sum_k p_k log q_k with q the one-hot target and log 0 := A."""
    p = F.softmax(x, -1)
    log_q = torch.where(F.one_hot(t, x.shape[-1]).bool(), 0.0, log_zero).to(x.dtype)
    return -(p * log_q).sum(-1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [0.1, 1.0, 2.5])
@pytest.mark.parametrize("use_weight", [False, True])
def test_sce_beta0_is_alpha_cross_entropy(reduction, alpha, use_weight):
    x = _logits(16)
    t = _targets(16, ignore=-100)
    w = _weight() if use_weight else None
    _assert_same(
        lambda a: LF.symmetric_cross_entropy(a, t, alpha=alpha, beta=0.0, weight=w, reduction=reduction),
        lambda a: alpha * F.cross_entropy(a, t, weight=w, reduction=reduction),
        x,
    )


@pytest.mark.parametrize("log_zero", [-4.0, -1.0, math.log(1e-4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sce_matches_formula_and_terms(log_zero, reduction):
    x = _logits(17)
    t = _targets(17)
    alpha, beta = 0.3, 1.5

    def ref(a):
        return _reduce(
            alpha * F.cross_entropy(a, t, reduction="none") + beta * _rce(a, t, log_zero), t * 0 + 1, reduction
        )

    ours = lambda a: LF.symmetric_cross_entropy(  # noqa: E731
        a, t, alpha=alpha, beta=beta, log_zero=log_zero, reduction=reduction
    )
    _assert_same(ours, ref, x)
    terms = LF.symmetric_cross_entropy(
        x, t, alpha=alpha, beta=beta, log_zero=log_zero, reduction=reduction, return_terms=True
    )
    assert set(terms) == {"ce", "rce"}
    torch.testing.assert_close(terms["ce"] + terms["rce"], ours(x), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(terms["ce"], alpha * F.cross_entropy(x, t, reduction=reduction), **TOL)


def test_sce_hand_value():
    out = LF.symmetric_cross_entropy(
        torch.tensor([[0.0, 0.0]], dtype=torch.float64), torch.tensor([1]), alpha=1.0, beta=1.0
    )
    # CE = log 2, RCE = -(-4) * (1 - 1/2) = 2
    assert out.item() == pytest.approx(LOG2 + 2.0, abs=1e-12)


def _authors_rce(x, t):
    """The reverse cross-entropy of the authors' code (Wang et al. 2019; Ma et al. 2020): the one-hot target
    clamped at 1e-4 before the log, the probabilities at 1e-7."""
    p = F.softmax(x, -1).clamp(1e-7, 1.0)
    return -(p * F.one_hot(t, x.shape[-1]).to(x.dtype).clamp(1e-4, 1.0).log()).sum(-1)


def _authors_nce(x, t):
    logp = F.log_softmax(x, -1)
    return -(F.one_hot(t, x.shape[-1]).to(x.dtype) * logp).sum(-1) / -logp.sum(-1)


@pytest.mark.parametrize("name", ["sce", "nce_rce"])
def test_log_zero_of_the_authors_code_is_log_1e4_and_stated_in_the_docstring(name):
    """Issue 19: the default A = -4 is the paper's; the authors' code uses log(1e-4) = -9.21, which a user gets by
    passing it. Both are stated where a user reads them."""
    x, t = _logits(19), _targets(19)
    assert F.softmax(x, -1).min() > 1e-7  # the authors' floor of the probabilities is inactive here
    alpha, beta = (0.1, 1.0) if name == "sce" else (1.0, 1.0)  # each loss's default weights
    fn, first = {
        "sce": (LF.symmetric_cross_entropy, lambda: F.cross_entropy(x, t, reduction="none")),
        "nce_rce": (LF.nce_rce_loss, lambda: _authors_nce(x, t)),
    }[name]
    authors = (alpha * first() + beta * _authors_rce(x, t)).mean()
    assert fn(x, t, log_zero=math.log(1e-4)).item() == pytest.approx(authors.item(), rel=1e-12)
    assert fn(x, t).item() < 0.6 * authors.item()  # the default differs, by much
    rce = fn(x, t, alpha=0.0, beta=1.0, log_zero=math.log(1e-4)) / fn(x, t, alpha=0.0, beta=1.0)
    assert rce.item() == pytest.approx(math.log(1e4) / 4, rel=1e-12)
    assert "math.log(1e-4)" in fn.__doc__ and "-9.21" in fn.__doc__


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
def test_nce_rce_terms_sum_and_nce_in_unit_interval(reduction, use_weight):
    x = _logits(18, (30, C)) * 2
    t = torch.randint(0, C, (30,), generator=_gen(18))
    w = _weight() if use_weight else None
    alpha, beta = 0.7, 1.3
    terms = LF.nce_rce_loss(x, t, alpha=alpha, beta=beta, weight=w, reduction=reduction, return_terms=True)
    assert set(terms) == {"nce", "rce"}
    loss = LF.nce_rce_loss(x, t, alpha=alpha, beta=beta, weight=w, reduction=reduction)
    torch.testing.assert_close(terms["nce"] + terms["rce"], loss, atol=1e-12, rtol=1e-12)
    # unweighted, per sample: NCE = log p_y / sum_k log p_k in [0, 1]
    nce = LF.nce_rce_loss(x, t, alpha=1.0, beta=0.0, reduction="none")
    assert ((nce >= 0) & (nce <= 1)).all()
    logp = F.log_softmax(x, -1)
    torch.testing.assert_close(nce, logp.gather(-1, t[:, None]).squeeze(-1) / logp.sum(-1), atol=1e-12, rtol=0)
    rce = LF.nce_rce_loss(x, t, alpha=0.0, beta=1.0, reduction="none")
    torch.testing.assert_close(rce, _rce(x, t, -4.0), atol=1e-12, rtol=0)


def test_nce_rce_hand_value_and_extremes():
    out = LF.nce_rce_loss(torch.tensor([[0.0, 0.0]], dtype=torch.float64), torch.tensor([1]))
    # NCE = log(1/2) / (2 log(1/2)) = 1/2, RCE = 4 * 1/2
    assert out.item() == pytest.approx(2.5, abs=1e-12)
    # uniform logits over C classes: NCE = 1/C
    out = LF.nce_rce_loss(torch.zeros(1, C, dtype=torch.float64), torch.tensor([0]), beta=0.0)
    assert out.item() == pytest.approx(1 / C, abs=1e-12)
    # confident and right: NCE -> 0; confident and wrong -> large share of the normaliser
    x = torch.tensor([[20.0, 0.0, 0.0]], dtype=torch.float64)
    right = LF.nce_rce_loss(x, torch.tensor([0]), beta=0.0).item()
    wrong = LF.nce_rce_loss(x, torch.tensor([1]), beta=0.0).item()
    assert right < 1e-6 and 0.49 < wrong <= 0.5


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------

ALL_FNS = [
    LF.cross_entropy,
    LF.focal_loss,
    LF.poly1_cross_entropy,
    LF.square_loss,
    LF.generalized_cross_entropy,
    LF.mae_prob_loss,
    LF.symmetric_cross_entropy,
    LF.nce_rce_loss,
]
ids = [f.__name__ for f in ALL_FNS]


@pytest.mark.parametrize("fn", ALL_FNS, ids=ids)
@pytest.mark.parametrize("bad", [5, 7, -1, -3])
def test_out_of_range_target_names_the_value(fn, bad):
    t = torch.tensor([0, 1, bad, 2])
    with pytest.raises(ValueError, match=rf"`target` values must be class indices in \[0, 4\].*got {bad}$"):
        fn(torch.zeros(4, C), t)


@pytest.mark.parametrize("fn", ALL_FNS, ids=ids)
def test_ignore_index_is_allowed_outside_the_range(fn):
    t = torch.tensor([0, 1, -7, 2])
    fn(torch.zeros(4, C), t, ignore_index=-7)
    with pytest.raises(ValueError, match=r"or ignore_index=-100, got -7"):
        fn(torch.zeros(4, C), t)


@pytest.mark.parametrize("fn", ALL_FNS, ids=ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_non_integer_class_targets_are_type_errors(fn, dtype):
    with pytest.raises(TypeError, match=rf"`target` must hold integer class indices.*dtype {dtype}"):
        fn(torch.zeros(4, C), torch.zeros(4, dtype=dtype))


@pytest.mark.parametrize("fn", ALL_FNS, ids=ids)
def test_target_shape_must_be_input_without_classes(fn):
    with pytest.raises(
        ValueError, match=r"`target` must have shape \(4,\) for `input` of shape \(4, 5\).*got \(4, 1\)"
    ):
        fn(torch.zeros(4, C), torch.zeros(4, 1, dtype=torch.long))
    # a (N, T) target against (N, C) logits (classes first by mistake)
    with pytest.raises(ValueError, match=r"`target` must have shape \(2, 5\) for `input` of shape \(2, 5, 3\)"):
        fn(torch.zeros(2, C, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="scalar"):
        fn(torch.tensor(0.0), torch.tensor(0))


@pytest.mark.parametrize("fn", ALL_FNS, ids=ids)
def test_weight_shape_and_sign(fn):
    x, t = torch.zeros(4, C), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`weight` must have one value per class, shape \(5,\), got \(4,\)"):
        fn(x, t, weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"`weight`.*got \(1, 5\)"):
        fn(x, t, weight=torch.ones(1, C))
    with pytest.raises(ValueError, match=r"`weight` must be >= 0, got -1"):
        fn(x, t, weight=torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(TypeError, match=r"`weight`.*torch\.int64"):
        fn(x, t, weight=torch.ones(C, dtype=torch.long))


@pytest.mark.parametrize("fn", ALL_FNS, ids=ids)
def test_unknown_reduction_lists_allowed(fn):
    with pytest.raises(ValueError, match=r"`reduction` must be one of \('mean', 'sum', 'none'\), got 'batchmean'"):
        fn(torch.zeros(4, C), torch.zeros(4, dtype=torch.long), reduction="batchmean")


@pytest.mark.parametrize("fn", [LF.cross_entropy, LF.poly1_cross_entropy], ids=lambda f: f.__name__)
@pytest.mark.parametrize("eps", [-0.01, 1.01, 2.0])
def test_label_smoothing_outside_unit_interval(fn, eps):
    with pytest.raises(ValueError, match=rf"`label_smoothing` must be in \[0.0, 1.0\], got {eps}"):
        fn(torch.zeros(4, C), torch.zeros(4, dtype=torch.long), label_smoothing=eps)


@pytest.mark.parametrize("q", [0.0, -0.5, 1.0001, 2.0])
def test_gce_q_outside_half_open_interval(q):
    with pytest.raises(ValueError, match=rf"`q` must be in \(0.0, 1.0\], got {q}"):
        LF.generalized_cross_entropy(torch.zeros(4, C), torch.zeros(4, dtype=torch.long), q=q)


def test_other_hyperparameter_checks():
    x, t = torch.zeros(4, C), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`gamma` must be >= 0, got -0\.5"):
        LF.focal_loss(x, t, gamma=-0.5)
    for name in ("k", "M"):
        with pytest.raises(ValueError, match=rf"`{name}` must be > 0, got 0\.0"):
            LF.square_loss(x, t, **{name: 0.0})
    for fn in (LF.symmetric_cross_entropy, LF.nce_rce_loss):
        with pytest.raises(ValueError, match=r"`log_zero`.*must be < 0, got 0\.0"):
            fn(x, t, log_zero=0.0)


def test_validate_args_off_skips_range_scan_but_not_shapes():
    x = torch.zeros(4, C)
    with LF.validate_args(False):
        # a negative weight is a value check: skipped
        LF.cross_entropy(x, torch.zeros(4, dtype=torch.long), weight=torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0]))
        with pytest.raises(ValueError, match=r"`target` must have shape \(4,\)"):
            LF.cross_entropy(x, torch.zeros(4, 1, dtype=torch.long))
        with pytest.raises(TypeError, match="dtype"):
            LF.cross_entropy(x, torch.zeros(4))
        with pytest.raises(ValueError, match="`weight` must have one value per class"):
            LF.cross_entropy(x, torch.zeros(4, dtype=torch.long), weight=torch.ones(3))
    with pytest.raises(ValueError, match="`weight` must be >= 0"):
        LF.cross_entropy(x, torch.zeros(4, dtype=torch.long), weight=torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0]))


# ----------------------------------------------------------------------------------------------
# half precision
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(CLASS_FNS))
def test_half_inputs_are_upcast(name, half):
    fn = CLASS_FNS[name]
    x = _logits(19, (16, C)).to(half)
    t = _targets(19, (16,), ignore=-100)
    w = _weight().float()
    out = fn(x, t, weight=w)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fn(x.float(), t, weight=w), atol=1e-2, rtol=1e-2)
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(leaf, t, weight=w), leaf)
    assert g.dtype == half and torch.isfinite(g.float()).all()


@pytest.mark.parametrize("name", sorted(CLASS_FNS))
@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_narrow_integer_targets_equal_int64(name, dtype):
    fn = CLASS_FNS[name]
    x = _logits(20)
    t = _targets(20)
    w = _weight()
    for reduction in REDUCTIONS:
        torch.testing.assert_close(
            fn(x, t.to(dtype), weight=w, reduction=reduction), fn(x, t, weight=w, reduction=reduction), atol=0, rtol=0
        )

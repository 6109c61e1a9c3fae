"""Token-level cross-entropy (with z-loss) and the fused, chunked linear + cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossbench.functional as LF

TOL = {"atol": 1e-6, "rtol": 1e-6}
TIGHT = {"atol": 1e-10, "rtol": 1e-10}
N, T, V, D = 3, 5, 11, 4


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(seed: int):
    g = _gen(seed)
    x = torch.randn(N, T, V, generator=g, dtype=torch.float64) * 2 + 1.0  # log Z away from 0
    t = torch.randint(0, V, (N, T), generator=g)
    t[0, -2:] = -100  # padding
    t[2, 0] = -100
    return x, t


def _fused_data(seed: int, ignore_index: int = -100):
    g = _gen(seed)
    h = torch.randn(N, T, D, generator=g, dtype=torch.float64)
    w = torch.randn(V, D, generator=g, dtype=torch.float64)
    b = torch.randn(V, generator=g, dtype=torch.float64)
    t = torch.randint(0, V, (N, T), generator=g)
    t[0, -2:] = ignore_index
    t[1, 1] = ignore_index
    return h, w, b, t


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


# ----------------------------------------------------------------------------------------------
# lm_cross_entropy
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_lm_cross_entropy_matches_flattened_torch(reduction, label_smoothing, ignore_index):
    x, t = _logits(0)
    t = torch.where(t == -100, ignore_index, t)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    ours = LF.lm_cross_entropy(x1, t, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)
    ref = F.cross_entropy(
        x2.reshape(-1, V),
        t.reshape(-1),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    if reduction == "none":
        assert ours.shape == (N, T)
        ref = ref.reshape(N, T)
    torch.testing.assert_close(ours, ref, **TOL)
    up = torch.randn(ours.shape, generator=_gen(1), dtype=torch.float64)
    (g1,) = _grads((ours * up).sum(), [x1])
    (g2,) = _grads((ref * up).sum(), [x2])
    torch.testing.assert_close(g1, g2, **TOL)
    ignored = t == ignore_index
    assert ignored.any()
    assert torch.equal(g1[ignored], torch.zeros_like(g1[ignored]))


@pytest.mark.parametrize("z_loss", [1e-4, 0.1, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_lm_z_loss_matches_hand_computation(z_loss, reduction):
    x, t = _logits(2)
    valid = t != -100
    lse = torch.logsumexp(x, -1)
    ce_ref = F.cross_entropy(x.reshape(-1, V), t.reshape(-1), reduction="none").reshape(N, T)
    if reduction == "mean":
        z_ref = z_loss * (lse[valid] ** 2).mean()
        ce_ref = ce_ref[valid].mean()
    elif reduction == "sum":
        z_ref = z_loss * (lse[valid] ** 2).sum()
        ce_ref = ce_ref.sum()
    else:
        z_ref = z_loss * torch.where(valid, lse**2, 0.0)
    terms = LF.lm_cross_entropy(x, t, z_loss=z_loss, reduction=reduction, return_terms=True)
    assert set(terms) == {"ce", "z_loss"}
    torch.testing.assert_close(terms["z_loss"], z_ref, **TIGHT)
    torch.testing.assert_close(terms["ce"], ce_ref, **TOL)
    total = LF.lm_cross_entropy(x, t, z_loss=z_loss, reduction=reduction)
    torch.testing.assert_close(total, terms["ce"] + terms["z_loss"], **TIGHT)


def test_lm_z_loss_gradient_matches_autograd_of_formula():
    x, t = _logits(3)
    z = 0.05
    valid = t != -100
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    ours = LF.lm_cross_entropy(x1, t, z_loss=z)
    ref = F.cross_entropy(x2.reshape(-1, V), t.reshape(-1)) + z * (torch.logsumexp(x2, -1)[valid] ** 2).mean()
    torch.testing.assert_close(ours, ref, **TIGHT)
    (g1,) = _grads(ours, [x1])
    (g2,) = _grads(ref, [x2])
    torch.testing.assert_close(g1, g2, **TIGHT)
    assert not g1[~valid].any()


def test_lm_hand_values():
    # uniform logits over 4 tokens: log 4 per token, padding ignored
    out = LF.lm_cross_entropy(torch.zeros(1, 2, 4, dtype=torch.float64), torch.tensor([[1, -100]]))
    assert out.item() == pytest.approx(math.log(4.0), abs=1e-12)
    # z-loss of uniform logits: (log 4)^2 per token
    terms = LF.lm_cross_entropy(
        torch.zeros(1, 2, 4, dtype=torch.float64), torch.tensor([[1, 2]]), z_loss=0.5, return_terms=True
    )
    assert terms["z_loss"].item() == pytest.approx(0.5 * math.log(4.0) ** 2, abs=1e-12)
    # no z-loss: a plain tensor, and return_terms holds only "ce"
    out = LF.lm_cross_entropy(torch.zeros(1, 2, 4), torch.tensor([[1, 2]]), return_terms=True)
    assert set(out) == {"ce"}


@pytest.mark.parametrize("z_loss", [0.0, 1e-3])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_lm_all_ignored_is_zero_with_zero_gradient(z_loss, label_smoothing):
    x, _ = _logits(4)
    t = torch.full((N, T), -100)
    x = x.requires_grad_(True)
    loss = LF.lm_cross_entropy(x, t, z_loss=z_loss, label_smoothing=label_smoothing)
    assert loss.item() == 0.0
    (g,) = _grads(loss, [x])
    assert torch.equal(g, torch.zeros_like(g))
    assert torch.isnan(F.cross_entropy(x.detach().reshape(-1, V), t.reshape(-1)))


def test_lm_argument_checks():
    x, t = _logits(5)
    with pytest.raises(ValueError, match=r"`z_loss` must be >= 0, got -0\.1"):
        LF.lm_cross_entropy(x, t, z_loss=-0.1)
    with pytest.raises(ValueError, match=r"`target` values must be class indices in \[0, 10\].*got 11"):
        LF.lm_cross_entropy(x, torch.full((N, T), V))
    with pytest.raises(TypeError, match=r"`target`.*dtype torch\.float64"):
        LF.lm_cross_entropy(x, t.double())
    with pytest.raises(ValueError, match=r"`target` must have shape \(3, 5\).*got \(15,\)"):
        LF.lm_cross_entropy(x, t.reshape(-1))
    with pytest.raises(ValueError, match=r"`label_smoothing` must be in \[0.0, 1.0\], got 1\.5"):
        LF.lm_cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"`reduction` must be one of \('mean', 'sum', 'none'\), got 'tokens'"):
        LF.lm_cross_entropy(x, t, reduction="tokens")


# ----------------------------------------------------------------------------------------------
# linear_cross_entropy (fused, chunked)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 15, 64, None])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("label_smoothing,z_loss", [(0.0, 0.0), (0.1, 0.0), (0.0, 1e-2), (0.2, 0.3)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_linear_cross_entropy_matches_lm_cross_entropy(chunk_size, reduction, label_smoothing, z_loss, use_bias):
    h, w, b, t = _fused_data(6)
    b = b if use_bias else None
    leaves1 = [v.clone().requires_grad_(True) for v in (h, w) + ((b,) if use_bias else ())]
    leaves2 = [v.clone().requires_grad_(True) for v in (h, w) + ((b,) if use_bias else ())]
    ours = LF.linear_cross_entropy(
        leaves1[0],
        leaves1[1],
        t,
        bias=leaves1[2] if use_bias else None,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        chunk_size=chunk_size,
        reduction=reduction,
    )
    logits = leaves2[0] @ leaves2[1].T + (leaves2[2] if use_bias else 0.0)
    ref = LF.lm_cross_entropy(logits, t, label_smoothing=label_smoothing, z_loss=z_loss, reduction=reduction)
    assert ours.shape == ()
    torch.testing.assert_close(ours, ref, **TIGHT)
    for g1, g2 in zip(_grads(ours * 1.7, leaves1), _grads(ref * 1.7, leaves2)):
        torch.testing.assert_close(g1, g2, **TIGHT)


@pytest.mark.parametrize("chunk_size", [1, 4])
def test_linear_cross_entropy_custom_ignore_index_and_zero_grad_rows(chunk_size):
    h, w, b, t = _fused_data(7, ignore_index=3)
    h.requires_grad_(True)
    loss = LF.linear_cross_entropy(h, w, t, bias=b, ignore_index=3, chunk_size=chunk_size)
    ref = F.cross_entropy((h @ w.T + b).reshape(-1, V), t.reshape(-1), ignore_index=3)
    torch.testing.assert_close(loss, ref, **TIGHT)
    (g,) = _grads(loss, [h])
    ignored = t == 3
    assert ignored.sum() >= 3
    assert torch.equal(g[ignored], torch.zeros_like(g[ignored]))


def test_linear_cross_entropy_matches_torch_directly():
    h, w, b, t = _fused_data(8)
    out = LF.linear_cross_entropy(h, w, t, bias=b, chunk_size=4, label_smoothing=0.1, reduction="sum")
    ref = F.cross_entropy((h @ w.T + b).reshape(-1, V), t.reshape(-1), label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(out, ref, **TIGHT)


@pytest.mark.parametrize("z_loss,label_smoothing", [(0.0, 0.0), (0.1, 0.2)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_linear_cross_entropy_gradcheck(z_loss, label_smoothing, reduction):
    g = _gen(9)
    h = torch.randn(2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0, 3, -100], [2, 1, 1]])
    assert torch.autograd.gradcheck(
        lambda hh, ww, bb: LF.linear_cross_entropy(
            hh, ww, t, bias=bb, z_loss=z_loss, label_smoothing=label_smoothing, chunk_size=2, reduction=reduction
        ),
        (h, w, b),
    )


def test_linear_cross_entropy_return_terms():
    h, w, b, t = _fused_data(10)
    z = 0.05
    w = w.requires_grad_(True)
    terms = LF.linear_cross_entropy(h, w, t, bias=b, z_loss=z, chunk_size=4, return_terms=True)
    assert set(terms) == {"loss", "ce", "z_loss"}
    ref = LF.lm_cross_entropy(h @ w.detach().T + b, t, z_loss=z, return_terms=True)
    torch.testing.assert_close(terms["ce"], ref["ce"], **TIGHT)
    torch.testing.assert_close(terms["z_loss"], ref["z_loss"], **TIGHT)
    torch.testing.assert_close(terms["loss"], terms["ce"] + terms["z_loss"], **TIGHT)
    assert terms["loss"].requires_grad
    assert not terms["ce"].requires_grad and not terms["z_loss"].requires_grad
    # without z-loss there is no z_loss term
    terms = LF.linear_cross_entropy(h, w, t, bias=b, return_terms=True)
    assert set(terms) == {"loss", "ce"}
    torch.testing.assert_close(terms["loss"], terms["ce"], **TIGHT)


def test_linear_cross_entropy_only_some_inputs_need_grad():
    h, w, b, t = _fused_data(11)
    w.requires_grad_(True)  # frozen hidden and bias
    loss = LF.linear_cross_entropy(h, w, t, bias=b, chunk_size=2)
    (gw,) = _grads(loss, [w])
    ww = w.detach().clone().requires_grad_(True)
    (gref,) = _grads(LF.lm_cross_entropy(h @ ww.T + b, t), [ww])
    torch.testing.assert_close(gw, gref, **TIGHT)
    # nothing needs grad: a plain value
    with torch.no_grad():
        out = LF.linear_cross_entropy(h, w, t, bias=b)
    torch.testing.assert_close(out, loss.detach(), **TIGHT)


def test_linear_cross_entropy_upstream_gradient_scales():
    h, w, b, t = _fused_data(12)
    h1 = h.clone().requires_grad_(True)
    h2 = h.clone().requires_grad_(True)
    (g1,) = _grads(3.0 * LF.linear_cross_entropy(h1, w, t, bias=b), [h1])
    (g2,) = _grads(LF.linear_cross_entropy(h2, w, t, bias=b), [h2])
    torch.testing.assert_close(g1, 3.0 * g2, **TIGHT)


@pytest.mark.parametrize("z_loss", [0.0, 0.1])
def test_linear_cross_entropy_all_ignored(z_loss):
    h, w, b, _ = _fused_data(13)
    t = torch.full((N, T), -100)
    leaves = [v.clone().requires_grad_(True) for v in (h, w, b)]
    loss = LF.linear_cross_entropy(*leaves[:2], t, bias=leaves[2], z_loss=z_loss, chunk_size=4)
    assert loss.item() == 0.0
    for g in _grads(loss, leaves):
        assert torch.equal(g, torch.zeros_like(g))


def test_linear_cross_entropy_argument_checks():
    h, w, b, t = _fused_data(14)
    with pytest.raises(ValueError, match=r"`reduction` must be one of \('mean', 'sum'\), got 'none'"):
        LF.linear_cross_entropy(h, w, t, reduction="none")
    with pytest.raises(
        ValueError, match=r"`weight` must have shape \(V, 4\) for `hidden` of shape \(3, 5, 4\), got \(11, 3\)"
    ):
        LF.linear_cross_entropy(h, w[:, :3], t)
    with pytest.raises(ValueError, match=r"`bias` must have shape \(11,\), got \(10,\)"):
        LF.linear_cross_entropy(h, w, t, bias=b[:10])
    with pytest.raises(ValueError, match=r"`target` must have shape \(3, 5\).*got \(3, 4\)"):
        LF.linear_cross_entropy(h, w, t[:, :4])
    with pytest.raises(TypeError, match=r"`target`.*dtype torch\.float32"):
        LF.linear_cross_entropy(h, w, t.float())
    with pytest.raises(ValueError, match=r"`target` values must be class indices in \[0, 10\].*got 11"):
        LF.linear_cross_entropy(h, w, torch.full((N, T), V))
    with pytest.raises(ValueError, match=r"`chunk_size` must be >= 1, got 0"):
        LF.linear_cross_entropy(h, w, t, chunk_size=0)
    with pytest.raises(ValueError, match=r"`z_loss` must be >= 0"):
        LF.linear_cross_entropy(h, w, t, z_loss=-1.0)
    with pytest.raises(ValueError, match=r"`label_smoothing` must be in \[0.0, 1.0\], got -0\.1"):
        LF.linear_cross_entropy(h, w, t, label_smoothing=-0.1)
    with pytest.raises(TypeError, match=r"`hidden`.*torch\.int64"):
        LF.linear_cross_entropy(h.long(), w, t)


# ----------------------------------------------------------------------------------------------
# half precision
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_lm_cross_entropy_half_is_upcast(half):
    x, t = _logits(15)
    xh = x.to(half)
    out = LF.lm_cross_entropy(xh, t, z_loss=1e-2)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, LF.lm_cross_entropy(xh.float(), t, z_loss=1e-2), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_linear_cross_entropy_half_is_upcast(half):
    h, w, b, t = _fused_data(16)
    hh, wh, bh = (v.to(half).requires_grad_(True) for v in (h, w, b))
    out = LF.linear_cross_entropy(hh, wh, t, bias=bh, z_loss=1e-2, chunk_size=4)
    assert out.dtype == torch.float32
    ref = LF.linear_cross_entropy(hh.detach().float(), wh.detach().float(), t, bias=bh.detach().float(), z_loss=1e-2)
    torch.testing.assert_close(out, ref, atol=1e-2, rtol=1e-2)
    grads = _grads(out, [hh, wh, bh])
    assert all(g.dtype == half and torch.isfinite(g.float()).all() for g in grads)

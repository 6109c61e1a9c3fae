"""Language-model losses over (N, T, V) logits, and a fused linear + cross-entropy that never materialises them."""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor

from lossbench.functional._checks import (
    check_class_input,
    check_class_target_values,
    check_float,
    check_range,
    check_reduction,
    shape_str,
)
from lossbench.functional._reduce import upcast, weighted_reduce
from lossbench.functional.classification import cross_entropy


@overload
def lm_cross_entropy(
    input: Tensor,
    target: Tensor,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    reduction: str = ...,
    return_terms: Literal[False] = ...,
) -> Tensor: ...


@overload
def lm_cross_entropy(
    input: Tensor,
    target: Tensor,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    reduction: str = ...,
    *,
    return_terms: Literal[True],
) -> dict[str, Tensor]: ...


@overload
def lm_cross_entropy(
    input: Tensor,
    target: Tensor,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    reduction: str = ...,
    return_terms: bool = ...,
) -> Tensor | dict[str, Tensor]: ...


def lm_cross_entropy(
    input: Tensor,
    target: Tensor,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "mean",
    return_terms: bool = False,
) -> Tensor | dict[str, Tensor]:
    r"""Token-level cross-entropy with an optional z-loss :math:`\lambda_z \log^2 Z` (PaLM, Chowdhery et al. 2022).

    ``input`` holds logits (N, T, V) (any leading shape), ``target`` token ids (N, T)
    with ``ignore_index`` for padding. The mean runs over non-ignored tokens; an
    all-ignored batch gives 0 with zero gradient. The z-loss pulls the log-partition
    :math:`\log Z = \mathrm{logsumexp}(x)` towards 0, which keeps large-vocabulary
    logits from drifting (1e-4 is the usual weight). ``return_terms=True`` returns
    ``{"ce": ..., "z_loss": ...}``.

    Example:
        >>> import torch
        >>> from lossbench.functional import lm_cross_entropy
        >>> lm_cross_entropy(torch.zeros(1, 2, 4), torch.tensor([[1, -100]]))
        tensor(1.3863)
    """
    fn = "lm_cross_entropy"
    check_reduction(fn, reduction)
    if z_loss < 0:
        raise ValueError(f"{fn}: `z_loss` must be >= 0, got {z_loss!r}")
    terms = {
        "ce": cross_entropy(
            input, target, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
        )
    }
    if z_loss:
        valid = (target != ignore_index).to(upcast(input).dtype)
        lse = torch.logsumexp(upcast(input), dim=-1)
        terms["z_loss"] = z_loss * weighted_reduce(lse.square(), valid, reduction)
    if return_terms:
        return terms
    return terms["ce"] + terms["z_loss"] if z_loss else terms["ce"]


def default_chunk_size(vocab_size: int, budget: int = 1 << 22) -> int:
    """Rows per chunk so that one chunk of logits holds about ``budget`` elements (16 MiB in float32)."""
    return max(1, budget // max(1, vocab_size))


class _LinearCrossEntropy(torch.autograd.Function):
    """Chunked linear + cross-entropy: gradients are computed chunk by chunk in forward.

    Peak extra memory is one (chunk, V) block instead of (M, V) logits and their gradient.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, target, ignore_index, label_smoothing, z_loss, chunk_size, reduction):
        # the chunks run in float32 (or float64) whatever autocast says: they are the loss
        with torch.autocast(hidden.device.type, enabled=False):
            return _LinearCrossEntropy._forward(
                ctx, hidden, weight, bias, target, ignore_index, label_smoothing, z_loss, chunk_size, reduction
            )

    @staticmethod
    def _forward(ctx, hidden, weight, bias, target, ignore_index, label_smoothing, z_loss, chunk_size, reduction):
        cd = upcast(hidden).dtype
        w = weight.to(cd)
        b = None if bias is None else bias.to(cd)
        valid = target != ignore_index
        count = valid.sum()
        denom = count.clamp_min(1).to(cd) if reduction == "mean" else torch.ones((), dtype=cd, device=hidden.device)
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_h = torch.zeros_like(hidden, dtype=cd) if need_h else None
        grad_w = torch.zeros_like(w) if need_w else None
        grad_b = torch.zeros_like(b) if (need_b and b is not None) else None
        ce_sum = torch.zeros((), dtype=cd, device=hidden.device)
        z_sum = torch.zeros((), dtype=cd, device=hidden.device)
        vocab = w.shape[0]
        for start in range(0, hidden.shape[0], chunk_size):
            stop = min(start + chunk_size, hidden.shape[0])
            h = hidden[start:stop].to(cd)
            v = valid[start:stop].to(cd)
            idx = torch.where(valid[start:stop], target[start:stop], 0).unsqueeze(1)
            logits = h @ w.T if b is None else torch.addmm(b, h, w.T)
            lse = torch.logsumexp(logits, dim=1)
            nll = lse - logits.gather(1, idx).squeeze(1)
            if label_smoothing:
                nll = (1.0 - label_smoothing) * nll + label_smoothing * (lse - logits.mean(1))
            ce_sum = ce_sum + (nll * v).sum()
            if z_loss:
                z_sum = z_sum + (lse.square() * v).sum()
            if not (need_h or need_w or grad_b is not None):
                continue
            # d/dlogits of (nll + z_loss * lse^2): softmax * (1 + 2 z lse) - smoothed one-hot
            grad = logits.sub_(lse.unsqueeze(1)).exp_()
            if z_loss:
                grad.mul_((1.0 + 2.0 * z_loss * lse).unsqueeze(1))
            if label_smoothing:
                grad.sub_(label_smoothing / vocab)
            grad.scatter_add_(1, idx, torch.full_like(idx, -(1.0 - label_smoothing), dtype=cd))
            grad.mul_((v / denom).unsqueeze(1))
            if need_h:
                grad_h[start:stop] = grad @ w
            if need_w:
                grad_w.addmm_(grad.T, h)
            if grad_b is not None:
                grad_b.add_(grad.sum(0))
        ctx.save_for_backward(
            *(t if t is not None else torch.empty(0) for t in (grad_h, grad_w, grad_b)),
        )
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.has = (grad_h is not None, grad_w is not None, grad_b is not None)
        ce, z = ce_sum / denom, z_loss * z_sum / denom
        ctx.mark_non_differentiable(ce, z)
        return ce + z, ce, z

    @staticmethod
    def backward(ctx, grad_out, _g_ce, _g_z):
        saved = ctx.saved_tensors
        grads = []
        for g, has, dtype in zip(saved, ctx.has, ctx.dtypes):
            grads.append((g * grad_out).to(dtype) if has else None)
        return (*grads, None, None, None, None, None, None)


@overload
def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    chunk_size: int | None = ...,
    reduction: str = ...,
    return_terms: Literal[False] = ...,
) -> Tensor: ...


@overload
def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    chunk_size: int | None = ...,
    reduction: str = ...,
    *,
    return_terms: Literal[True],
) -> dict[str, Tensor]: ...


@overload
def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    chunk_size: int | None = ...,
    reduction: str = ...,
    return_terms: bool = ...,
) -> Tensor | dict[str, Tensor]: ...


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    chunk_size: int | None = None,
    reduction: str = "mean",
    return_terms: bool = False,
) -> Tensor | dict[str, Tensor]:
    r"""Cross-entropy of ``hidden @ weight.T + bias`` without materialising the (..., V) logits.

    Same value and gradients as :func:`lm_cross_entropy` on the projected logits
    (``reduction`` "mean" or "sum"), computed over chunks of ``chunk_size`` rows: the
    peak extra memory is one (chunk, V) block, which matters for large vocabularies.
    With ``return_terms=True`` the terms ``ce`` and ``z_loss`` come back for logging
    (without gradient) next to the differentiable ``loss``.

    Example:
        >>> import torch
        >>> from lossbench.functional import linear_cross_entropy
        >>> linear_cross_entropy(torch.zeros(1, 2, 3), torch.zeros(4, 3), torch.tensor([[1, -100]]))
        tensor(1.3863)
    """
    fn = "linear_cross_entropy"
    check_reduction(fn, reduction, ("mean", "sum"))
    check_float(fn, "hidden", hidden)
    check_float(fn, "weight", weight)
    if weight.dim() != 2 or hidden.dim() < 1 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"{fn}: `weight` must have shape (V, {hidden.shape[-1] if hidden.dim() else 'D'}) for `hidden` of shape "
            f"{shape_str(hidden.shape)}, got {shape_str(weight.shape)}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"{fn}: `bias` must have shape ({weight.shape[0]},), got {shape_str(bias.shape)}")
    # reuse the logits checks on a zero-stride view: shape/dtype of target against (..., V)
    check_class_input(fn, hidden.new_empty(()).expand(*hidden.shape[:-1], weight.shape[0]), target)
    check_class_target_values(fn, target, weight.shape[0], ignore_index)
    check_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)
    if z_loss < 0:
        raise ValueError(f"{fn}: `z_loss` must be >= 0, got {z_loss!r}")
    chunk = default_chunk_size(weight.shape[0]) if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"{fn}: `chunk_size` must be >= 1, got {chunk_size!r}")
    loss, ce, z = _LinearCrossEntropy.apply(
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        bias,
        target.reshape(-1),
        ignore_index,
        float(label_smoothing),
        float(z_loss),
        chunk,
        reduction,
    )
    if not return_terms:
        return loss
    terms = {"loss": loss, "ce": ce}
    if z_loss:
        terms["z_loss"] = z
    return terms

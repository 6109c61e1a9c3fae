"""Multiclass losses: ``input`` holds logits of shape (..., C) with classes last, ``target`` int64 class indices (...).

All take ``weight`` (one weight per class), ``ignore_index`` (default -100) and
``reduction`` with torch's semantics: ``mean`` divides by the summed weights of the
non-ignored targets; ignored positions give zero loss and zero gradient. An
all-ignored batch gives a mean of 0 (torch gives NaN) with zero gradient.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.functional._checks import (
    check_class_input,
    check_class_target_values,
    check_float,
    check_range,
    check_reduction,
    shape_str,
    validate_args_enabled,
)
from lossbench.functional._focal import modulating_factor
from lossbench.functional._reduce import class_weights, normalise, upcast, weighted_reduce


def _check(
    fn: str, input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int | None, reduction: str
) -> tuple[int, int | None]:
    """Check the arguments; return C and the ignore_index to mask with (None when no position is ignored)."""
    check_reduction(fn, reduction)
    num_classes = check_class_input(fn, input, target)
    if weight is not None:
        check_float(fn, "weight", weight)
        if weight.shape != (num_classes,):
            raise ValueError(
                f"{fn}: `weight` must have one value per class, shape ({num_classes},), got {shape_str(weight.shape)}"
            )
        if validate_args_enabled() and float(weight.min()) < 0:
            raise ValueError(f"{fn}: `weight` must be >= 0, got {float(weight.min())}")
    may_ignore = check_class_target_values(fn, target, num_classes, ignore_index)
    return num_classes, ignore_index if may_ignore else None


def _rows(x: Tensor) -> Tensor:
    """(..., C) -> (M, C) for torch's losses; no view node when already 2-D (its backward is not free)."""
    return x if x.dim() == 2 else x.reshape(-1, x.shape[-1])


def _log_p_target(input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int | None):
    """log-softmax, log-probability of the target class and per-position weights (0 where ignored)."""
    logp = F.log_softmax(upcast(input), dim=-1)
    index, w = class_weights(target, weight, ignore_index, logp.dtype)
    return logp, logp.gather(-1, index.unsqueeze(-1)).squeeze(-1), w


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy :math:`-w_y \log \mathrm{softmax}(x)_y`, with torch's label smoothing.

    With smoothing :math:`\varepsilon` the target is :math:`(1 - \varepsilon)\,e_y + \varepsilon/C`.

    Example:
        >>> import torch
        >>> from lossbench.functional import cross_entropy
        >>> cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
        tensor(0.6931)
    """
    fn = "cross_entropy"
    num_classes, ignore = _check(fn, input, target, weight, ignore_index, reduction)
    check_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)
    x = upcast(input)
    rows, flat = _rows(x), target.reshape(-1).long()
    if ignore is None and weight is None:  # nothing masked or weighted: torch's fused reduction
        loss = F.cross_entropy(rows, flat, label_smoothing=label_smoothing, reduction=reduction)
        return loss.reshape(target.shape) if reduction == "none" else loss
    w = None if weight is None else weight.to(x.dtype)
    loss = F.cross_entropy(
        rows,
        flat,
        weight=w,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction="none" if reduction == "none" else "sum",
    )
    if reduction != "mean":
        return loss.reshape(target.shape) if reduction == "none" else loss
    _, per_position = class_weights(target, weight, ignore, x.dtype)
    assert per_position is not None  # something is ignored or weighted: the fast path above took the rest
    return loss / per_position.sum().clamp_min(torch.finfo(loss.dtype).tiny)


def focal_loss(
    input: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Multiclass focal loss (Lin et al. 2017): :math:`-w_y (1 - p_y)^\gamma \log p_y`.

    ``weight`` plays the role of the per-class :math:`\alpha`. ``gamma=0`` gives the cross-entropy.

    Example:
        >>> import torch
        >>> from lossbench.functional import focal_loss
        >>> focal_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]), gamma=2.0)
        tensor(0.1733)
    """
    fn = "focal_loss"
    num_classes, ignore = _check(fn, input, target, weight, ignore_index, reduction)
    if gamma < 0:
        raise ValueError(f"{fn}: `gamma` must be >= 0, got {gamma!r}")
    x = upcast(input)
    index, w = class_weights(target, weight, ignore, x.dtype)
    ce = F.cross_entropy(_rows(x), index.reshape(-1), reduction="none").reshape(target.shape)
    loss = ce * modulating_factor(-torch.expm1(-ce), gamma) if gamma else ce  # (1 - p_y)^gamma * -log p_y
    return weighted_reduce(loss, w, reduction)


@overload
def poly1_cross_entropy(
    input: Tensor,
    target: Tensor,
    epsilon: float = ...,
    weight: Tensor | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: str = ...,
    return_terms: Literal[False] = ...,
) -> Tensor: ...


@overload
def poly1_cross_entropy(
    input: Tensor,
    target: Tensor,
    epsilon: float = ...,
    weight: Tensor | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: str = ...,
    *,
    return_terms: Literal[True],
) -> dict[str, Tensor]: ...


@overload
def poly1_cross_entropy(
    input: Tensor,
    target: Tensor,
    epsilon: float = ...,
    weight: Tensor | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: str = ...,
    return_terms: bool = ...,
) -> Tensor | dict[str, Tensor]: ...


def poly1_cross_entropy(
    input: Tensor,
    target: Tensor,
    epsilon: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    return_terms: bool = False,
) -> Tensor | dict[str, Tensor]:
    r"""Poly-1 loss (Leng et al. 2022): :math:`\mathrm{CE} + \epsilon\,(1 - p_t)`.

    :math:`p_t` is the probability the model puts on the (smoothed) target,
    :math:`(1 - \varepsilon_{ls})\,p_y + \varepsilon_{ls}/C`. ``epsilon=0`` gives the
    cross-entropy. ``return_terms=True`` returns ``{"ce": ..., "poly": ...}`` whose sum is the loss.

    Example:
        >>> import torch
        >>> from lossbench.functional import poly1_cross_entropy
        >>> poly1_cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([1]), epsilon=1.0)
        tensor(1.1931)
    """
    fn = "poly1_cross_entropy"
    num_classes, ignore = _check(fn, input, target, weight, ignore_index, reduction)
    check_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)
    logp, logp_y, w = _log_p_target(input, target, weight, ignore)
    # the class-weighted, smoothed cross-entropy of torch, per position
    ce = -logp_y if w is None else -logp_y * w
    if label_smoothing:
        smooth = -(logp if weight is None else logp * weight.to(logp.dtype)).sum(-1) / num_classes
        if ignore is not None:
            smooth = smooth * (target != ignore).to(smooth.dtype)
        ce = (1.0 - label_smoothing) * ce + label_smoothing * smooth
    p_t = (1.0 - label_smoothing) * logp_y.exp() + label_smoothing / num_classes
    poly = epsilon * (1.0 - p_t)
    terms = {"ce": ce, "poly": poly if w is None else poly * w}
    terms = {k: normalise(v, w, reduction) for k, v in terms.items()}
    return terms if return_terms else terms["ce"] + terms["poly"]


def square_loss(
    input: Tensor,
    target: Tensor,
    k: float = 1.0,
    M: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Square loss for classification (Hui & Belkin 2021) on one-hot targets.

    :math:`\ell = \tfrac{1}{C}\big[k\,(x_y - M)^2 + \sum_{c \ne y} x_c^2\big]`. With
    ``k = M = 1`` this is the mean squared error against the one-hot target; for
    many classes the paper rescales the true class by ``k`` and the target by ``M``
    (both grow with the number of classes). The minimiser is
    :math:`x_c = k M p_c / (k p_c + 1 - p_c)`.

    Example:
        >>> import torch
        >>> from lossbench.functional import square_loss
        >>> square_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
        tensor(0.)
    """
    fn = "square_loss"
    num_classes, ignore = _check(fn, input, target, weight, ignore_index, reduction)
    for name, value in (("k", k), ("M", M)):
        if not value > 0:
            raise ValueError(f"{fn}: `{name}` must be > 0, got {value!r}")
    x = upcast(input)
    index, w = class_weights(target, weight, ignore, x.dtype)
    x_y = x.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    loss = (x.square().sum(-1) - x_y.square() + k * (x_y - M).square()) / num_classes
    return weighted_reduce(loss, w, reduction)


def generalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    q: float = 0.7,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Generalized cross-entropy :math:`L_q = (1 - p_y^q)/q` (Zhang & Sabuncu 2018), robust to label noise.

    Tends to the cross-entropy as :math:`q \to 0` and equals :func:`mae_prob_loss` at ``q=1``.

    Example:
        >>> import torch
        >>> from lossbench.functional import generalized_cross_entropy
        >>> generalized_cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([1]), q=1.0)
        tensor(0.5000)
    """
    fn = "generalized_cross_entropy"
    _, ignore = _check(fn, input, target, weight, ignore_index, reduction)
    check_range(fn, "q", q, 0.0, 1.0, low_open=True)
    _, logp_y, w = _log_p_target(input, target, weight, ignore)
    return weighted_reduce(-torch.expm1(q * logp_y) / q, w, reduction)


def mae_prob_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Mean absolute error between the softmax and the one-hot target, halved: :math:`1 - p_y`.

    :math:`\tfrac12\lVert e_y - p\rVert_1 = 1 - p_y`; the halving makes it equal to
    :func:`generalized_cross_entropy` at ``q=1``. Robust to label noise (Ghosh et al. 2017), slow to fit.

    Example:
        >>> import torch
        >>> from lossbench.functional import mae_prob_loss
        >>> mae_prob_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
        tensor(0.5000)
    """
    fn = "mae_prob_loss"
    _, ignore = _check(fn, input, target, weight, ignore_index, reduction)
    x = upcast(input)
    index, w = class_weights(target, weight, ignore, x.dtype)
    # softmax, not log-softmax: its backward needs no second exp over (N, C)
    p_y = torch.softmax(x, dim=-1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    return weighted_reduce(1.0 - p_y, w, reduction)


def _reverse_ce(logp_y: Tensor, log_zero: float) -> Tensor:
    # -sum_k p_k log q_k with q the one-hot target and log 0 := log_zero: -log_zero * (1 - p_y)
    return -log_zero * (-torch.expm1(logp_y))


def _check_log_zero(fn: str, log_zero: float) -> None:
    if not log_zero < 0:
        raise ValueError(f"{fn}: `log_zero` (the A of the paper, log of 0) must be < 0, got {log_zero!r}")


@overload
def symmetric_cross_entropy(
    input: Tensor,
    target: Tensor,
    alpha: float = ...,
    beta: float = ...,
    log_zero: float = ...,
    weight: Tensor | None = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    return_terms: Literal[False] = ...,
) -> Tensor: ...


@overload
def symmetric_cross_entropy(
    input: Tensor,
    target: Tensor,
    alpha: float = ...,
    beta: float = ...,
    log_zero: float = ...,
    weight: Tensor | None = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    *,
    return_terms: Literal[True],
) -> dict[str, Tensor]: ...


@overload
def symmetric_cross_entropy(
    input: Tensor,
    target: Tensor,
    alpha: float = ...,
    beta: float = ...,
    log_zero: float = ...,
    weight: Tensor | None = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    return_terms: bool = ...,
) -> Tensor | dict[str, Tensor]: ...


def symmetric_cross_entropy(
    input: Tensor,
    target: Tensor,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = -4.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_terms: bool = False,
) -> Tensor | dict[str, Tensor]:
    r"""Symmetric cross-entropy (Wang et al. 2019): :math:`\alpha\,\mathrm{CE} + \beta\,\mathrm{RCE}`.

    The reverse cross-entropy :math:`-\sum_k p_k \log q_k` uses the one-hot target
    with :math:`\log 0 := A` (``log_zero``), so :math:`\mathrm{RCE} = -A\,(1 - p_y)`.
    ``return_terms=True`` returns ``{"ce": alpha * CE, "rce": beta * RCE}``, whose sum is the loss.

    The default ``log_zero=-4`` is the paper's :math:`A`. The authors' code clamps the one-hot
    target at 1e-4 before the log instead, so its :math:`A = \log 10^{-4} \approx -9.21`: its RCE
    term is 2.3 times lossbench's at the defaults, and so is most of the loss. Pass
    ``log_zero=math.log(1e-4)`` for the authors' behaviour (equal to their code up to its floor of
    the probabilities at 1e-7).

    Example:
        >>> import math, torch
        >>> from lossbench.functional import symmetric_cross_entropy
        >>> x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([1])
        >>> symmetric_cross_entropy(x, y, alpha=1.0, beta=1.0)  # log 2 + 4 (1 - 1/2)
        tensor(2.6931)
        >>> symmetric_cross_entropy(x, y, alpha=1.0, beta=1.0, log_zero=math.log(1e-4))  # the authors' A
        tensor(5.2983)
    """
    fn = "symmetric_cross_entropy"
    _, ignore = _check(fn, input, target, weight, ignore_index, reduction)
    _check_log_zero(fn, log_zero)
    _, logp_y, w = _log_p_target(input, target, weight, ignore)
    terms = {"ce": alpha * -logp_y, "rce": beta * _reverse_ce(logp_y, log_zero)}
    terms = {k: weighted_reduce(v, w, reduction) for k, v in terms.items()}
    return terms if return_terms else terms["ce"] + terms["rce"]


@overload
def nce_rce_loss(
    input: Tensor,
    target: Tensor,
    alpha: float = ...,
    beta: float = ...,
    log_zero: float = ...,
    weight: Tensor | None = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    return_terms: Literal[False] = ...,
) -> Tensor: ...


@overload
def nce_rce_loss(
    input: Tensor,
    target: Tensor,
    alpha: float = ...,
    beta: float = ...,
    log_zero: float = ...,
    weight: Tensor | None = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    *,
    return_terms: Literal[True],
) -> dict[str, Tensor]: ...


@overload
def nce_rce_loss(
    input: Tensor,
    target: Tensor,
    alpha: float = ...,
    beta: float = ...,
    log_zero: float = ...,
    weight: Tensor | None = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    return_terms: bool = ...,
) -> Tensor | dict[str, Tensor]: ...


def nce_rce_loss(
    input: Tensor,
    target: Tensor,
    alpha: float = 1.0,
    beta: float = 1.0,
    log_zero: float = -4.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_terms: bool = False,
) -> Tensor | dict[str, Tensor]:
    r"""Active-passive loss NCE+RCE (Ma et al. 2020): :math:`\alpha\,\mathrm{NCE} + \beta\,\mathrm{RCE}`.

    The normalized cross-entropy is :math:`\log p_y / \sum_k \log p_k`, in [0, 1];
    the reverse cross-entropy is as in :func:`symmetric_cross_entropy`, with the same
    ``log_zero=-4`` default where the authors' code uses :math:`\log 10^{-4} \approx -9.21`
    (pass ``log_zero=math.log(1e-4)`` for their behaviour). Both terms are robust to symmetric
    label noise. ``return_terms=True`` returns ``{"nce": ..., "rce": ...}``.

    Example:
        >>> import math, torch
        >>> from lossbench.functional import nce_rce_loss
        >>> nce_rce_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))  # 1/2 + 4 (1 - 1/2)
        tensor(2.5000)
        >>> nce_rce_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]), log_zero=math.log(1e-4))  # the authors' A
        tensor(5.1052)
    """
    fn = "nce_rce_loss"
    _, ignore = _check(fn, input, target, weight, ignore_index, reduction)
    _check_log_zero(fn, log_zero)
    logp, logp_y, w = _log_p_target(input, target, weight, ignore)
    terms = {"nce": alpha * logp_y / logp.sum(-1), "rce": beta * _reverse_ce(logp_y, log_zero)}
    terms = {k: weighted_reduce(v, w, reduction) for k, v in terms.items()}
    return terms if return_terms else terms["nce"] + terms["rce"]

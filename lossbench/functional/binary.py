"""Binary losses: ``input`` holds logits (scores), ``target`` holds labels in [0, 1] of the same shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.functional._checks import (
    check_binary_target_values,
    check_float,
    check_positive,
    check_range,
    check_reduction,
    check_same_shape,
    shape_str,
)
from lossbench.functional._focal import modulating_factor
from lossbench.functional._reduce import reduce, upcast


def _binary_target(fn: str, input: Tensor, target: Tensor, reduction: str) -> Tensor:
    check_reduction(fn, reduction)
    check_float(fn, "input", input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{fn}: `target` must be a torch.Tensor, got {type(target).__name__}")
    check_same_shape(fn, input, target)
    check_binary_target_values(fn, target)
    return upcast(target) if target.is_floating_point() else target.to(upcast(input).dtype)


def _pos_weight(fn: str, value: Tensor | float | None, like: Tensor) -> Tensor | None:
    """A scalar, or one weight per output in the last dimension (as torch's pos_weight)."""
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.dim() > 1 or (t.dim() == 1 and (like.dim() == 0 or t.shape[0] != like.shape[-1])):
        raise ValueError(
            f"{fn}: `pos_weight` must be a scalar or have one value per output (last dimension of "
            f"`input` {shape_str(like.shape)}), got shape {shape_str(t.shape)}"
        )
    if float(t.min()) < 0:
        raise ValueError(f"{fn}: `pos_weight` must be >= 0, got {float(t.min())}")
    return t


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    pos_weight: Tensor | float | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Binary cross-entropy on logits, :math:`-w[p\,y \log\sigma(x) + (1 - y)\log(1 - \sigma(x))]`.

    ``pos_weight`` (:math:`p`) scales the positive term, as in torch. ``label_smoothing``
    :math:`\varepsilon` replaces the target by :math:`y(1 - \varepsilon) + \varepsilon/2`.
    ``weight`` is a per-element rescaling of the target's shape (a plain mean, as in torch).

    Example:
        >>> import torch
        >>> from lossbench.functional import binary_cross_entropy_with_logits
        >>> binary_cross_entropy_with_logits(torch.tensor([0.0]), torch.tensor([1.0]))
        tensor(0.6931)
    """
    fn = "binary_cross_entropy_with_logits"
    y = _binary_target(fn, input, target, reduction)
    check_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)
    x = upcast(input)
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if weight is not None:
        check_float(fn, "weight", weight)
        if weight.shape != input.shape:
            raise ValueError(
                f"{fn}: `weight` must have the shape of `input` {shape_str(input.shape)}, "
                f"got {shape_str(weight.shape)} (lossbench never broadcasts)"
            )
        weight = upcast(weight)
    pw = _pos_weight(fn, pos_weight, x)
    return F.binary_cross_entropy_with_logits(x, y, weight=weight, pos_weight=pw, reduction=reduction)


def binary_focal_loss(
    input: Tensor,
    target: Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Sigmoid focal loss (Lin et al. 2017): :math:`-\alpha_t (1 - p_t)^\gamma \log p_t`.

    :math:`p_t = \sigma(x)` for positives and :math:`1 - \sigma(x)` for negatives;
    :math:`\alpha_t = \alpha` for positives and :math:`1 - \alpha` for negatives
    (``alpha=None`` weighs both by 1). With ``gamma=0`` and ``alpha=None`` it is the
    binary cross-entropy.

    Example:
        >>> import torch
        >>> from lossbench.functional import binary_focal_loss
        >>> binary_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]), alpha=None, gamma=0.0)
        tensor(0.6931)
    """
    fn = "binary_focal_loss"
    y = _binary_target(fn, input, target, reduction)
    if gamma < 0:
        raise ValueError(f"{fn}: `gamma` must be >= 0, got {gamma!r}")
    if alpha is not None:
        check_range(fn, "alpha", alpha, 0.0, 1.0)
    x = upcast(input)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    if gamma:  # 1 - p_t from sigmoid(-x), not 1 - sigmoid(x), which rounds to 0 from a logit of about 17
        loss = ce * modulating_factor(y * torch.sigmoid(-x) + (1.0 - y) * torch.sigmoid(x), gamma)
    else:
        loss = ce
    if alpha is not None:
        loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
    return reduce(loss, reduction)


def squared_hinge_loss(input: Tensor, target: Tensor, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    r"""Squared hinge :math:`\max(0, m - s\,x)^2` with :math:`s = 2y - 1 \in \{-1, +1\}`.

    Its population minimiser is :math:`x = 2p - 1` (clipped to [-1, 1] for ``margin=1``),
    so :math:`(x + 1)/2` estimates the probability of the positive class.

    Example:
        >>> import torch
        >>> from lossbench.functional import squared_hinge_loss
        >>> squared_hinge_loss(torch.tensor([0.5, -2.0]), torch.tensor([1.0, 1.0]), reduction="none")
        tensor([0.2500, 9.0000])
    """
    fn = "squared_hinge_loss"
    y = _binary_target(fn, input, target, reduction)
    check_positive(fn, "margin", margin)
    x = upcast(input)
    return reduce(F.relu(margin - (2.0 * y - 1.0) * x).square(), reduction)

"""Reductions shared by the functional losses (torch semantics, lossbench's all-ignored rule)."""

from __future__ import annotations

import torch
from torch import Tensor

from lossbench.functional._checks import check_reduction

_HALF = (torch.float16, torch.bfloat16)


def upcast(x: Tensor) -> Tensor:
    """Compute losses of half-precision inputs in float32, as autocast does for torch's losses."""
    return x.float() if x.dtype in _HALF else x


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """Plain reduction of an elementwise or per-sample loss."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """Check ``reduction`` and apply it: the helper for writing your own loss function.

    Example:
        >>> import torch
        >>> reduce_loss(torch.tensor([1.0, 3.0]), "mean")
        tensor(2.)
    """
    check_reduction("reduce_loss", reduction)
    return reduce(loss, reduction)


def weighted_reduce(loss: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """Reduce a per-position loss whose positions carry weights (0 for ignored positions).

    ``mean`` divides by the sum of the weights, as torch's weighted losses do. When
    every weight is zero (an all-ignored batch) the mean is 0 with zero gradient,
    where torch returns NaN: a batch of padding must not poison the weights.
    """
    if weight is None:
        return reduce(loss, reduction)
    return normalise(loss * weight, weight, reduction)


def normalise(weighted_loss: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """Reduce a loss that already carries its weights: the mean divides by their sum (0 if all are 0)."""
    if reduction == "none":
        return weighted_loss
    total = weighted_loss.sum()
    if reduction == "sum" or weight is None:
        return total if reduction == "sum" else weighted_loss.mean()
    return total / weight.sum().clamp_min(torch.finfo(total.dtype).tiny)


def class_weights(
    target: Tensor, weight: Tensor | None, ignore_index: int | None, dtype: torch.dtype
) -> tuple[Tensor, Tensor | None]:
    """Safe gather indices and per-position weights for class targets.

    Returns ``(index, w)`` where ``index`` has ignored positions replaced by 0 (so a
    gather stays in range) and ``w`` is the per-position weight (class weight of the
    target, 0 where ignored), or ``None`` when nothing is weighted or ignored.
    """
    w: Tensor | None = None
    index = target = target.long()
    if ignore_index is not None:
        valid = target != ignore_index
        index = torch.where(valid, target, torch.zeros((), dtype=target.dtype, device=target.device))
        w = valid.to(dtype)
    if weight is not None:
        wt = weight.to(dtype)[index]
        w = wt if w is None else wt * w
    return index, w

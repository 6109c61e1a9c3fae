"""Ordinal regression losses: ordered classes 0 < 1 < ... < K-1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.functional._checks import (
    check_class_target_values,
    check_float,
    check_reduction,
    shape_str,
)
from lossbench.functional._reduce import reduce, upcast


def ordinal_levels(target: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Extended binary targets of CORAL: ``levels[..., k] = 1[target > k]`` for k = 0..K-2.

    Example:
        >>> import torch
        >>> ordinal_levels(torch.tensor([0, 2]), num_classes=3)
        tensor([[0., 0.],
                [1., 1.]])
    """
    ranks = torch.arange(num_classes - 1, device=target.device)
    return (target.unsqueeze(-1) > ranks).to(dtype)


def coral_loss(
    input: Tensor,
    target: Tensor,
    importance: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""CORAL loss (Cao, Mirjalili & Raschka 2020) for rank-consistent ordinal regression.

    ``input`` holds K-1 logits :math:`z_k` of :math:`P(y > k)`, shape (..., K-1); ``target``
    int64 ranks in [0, K-1]. The loss sums binary cross-entropies over the K-1 tasks,
    :math:`-\sum_k \lambda_k[\,\mathbb{1}[y > k]\log\sigma(z_k) + \mathbb{1}[y \le k]\log(1 - \sigma(z_k))]`,
    with optional task ``importance`` :math:`\lambda` (K-1,).

    Example:
        >>> import torch
        >>> from lossbench.functional import coral_loss
        >>> coral_loss(torch.zeros(1, 2), torch.tensor([1]))
        tensor(1.3863)
    """
    fn = "coral_loss"
    check_reduction(fn, reduction)
    check_float(fn, "input", input)
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(f"{fn}: `target` must hold integer ranks (int64), got {got}")
    if input.dim() < 1 or target.shape != input.shape[:-1]:
        raise ValueError(
            f"{fn}: `target` must have shape {shape_str(input.shape[:-1])} for `input` of shape "
            f"{shape_str(input.shape)} (K-1 logits last), got {shape_str(target.shape)}"
        )
    num_classes = input.shape[-1] + 1
    check_class_target_values(fn, target, num_classes, None)
    x = upcast(input)
    loss = F.binary_cross_entropy_with_logits(x, ordinal_levels(target, num_classes, x.dtype), reduction="none")
    if importance is not None:
        if importance.shape != (num_classes - 1,):
            raise ValueError(
                f"{fn}: `importance` must have shape ({num_classes - 1},), got {shape_str(importance.shape)}"
            )
        loss = loss * importance.to(x.dtype)
    return reduce(loss.sum(-1), reduction)

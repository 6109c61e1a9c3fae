"""Distribution losses: ``input`` holds logits (..., C), ``target`` probability vectors of the same shape.

Losses are summed over classes; ``reduction="mean"`` averages over the leading
positions and ``"none"`` returns one value per position, of shape ``input.shape[:-1]``.
``"batchmean"`` is accepted as an alias of ``"mean"``: on ``(N, C)`` input it is torch's
``batchmean``, but on ``(N, T, C)`` input it divides by the N·T positions, where
``torch.nn.functional.kl_div(..., reduction="batchmean")`` divides by N alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.functional._checks import REDUCTIONS, check_positive, check_probability_target, check_reduction
from lossbench.functional._reduce import reduce, upcast

_DIST_REDUCTIONS = (*REDUCTIONS, "batchmean")


def _prepare(fn: str, input: Tensor, target: Tensor, reduction: str) -> tuple[Tensor, Tensor, str]:
    check_reduction(fn, reduction, _DIST_REDUCTIONS)
    check_probability_target(fn, input, target)
    return upcast(input), upcast(target), "mean" if reduction == "batchmean" else reduction


def kl_divergence(input: Tensor, target: Tensor, temperature: float = 1.0, reduction: str = "mean") -> Tensor:
    r"""Forward KL :math:`T^2\,\mathrm{KL}(p \,\Vert\, \mathrm{softmax}(x/T)) = T^2 \sum_c p_c(\log p_c - \log q_c)`.

    The :math:`T^2` factor keeps gradient magnitudes independent of the temperature, as
    in distillation (Hinton et al. 2015); pass teacher probabilities softened with the
    same temperature as ``target``. Zero target probabilities contribute 0.

    ``reduction="mean"`` (alias ``"batchmean"``) divides the sum by the number of positions:
    N·T on ``(N, T, C)`` input, where torch's ``kl_div(..., reduction="batchmean")`` divides by N.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from lossbench.functional import kl_divergence
        >>> kl_divergence(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.5, 0.5]]))
        tensor(0.)
        >>> x, p = torch.zeros(2, 3, 4), torch.tensor([0.7, 0.1, 0.1, 0.1]).expand(2, 3, 4)
        >>> per_position = kl_divergence(x, p, reduction="batchmean")
        >>> torch.allclose(F.kl_div(x.log_softmax(-1), p, reduction="batchmean"), 3 * per_position)  # N, not N*T
        True
    """
    fn = "kl_divergence"
    x, p, reduction = _prepare(fn, input, target, reduction)
    check_positive(fn, "temperature", temperature)
    logq = F.log_softmax(x / temperature if temperature != 1.0 else x, dim=-1)
    scale = temperature * temperature
    if reduction == "mean":
        rows = logq.reshape(-1, logq.shape[-1])
        return F.kl_div(rows, p.reshape(rows.shape), reduction="batchmean") * scale
    if reduction == "sum":
        return F.kl_div(logq, p, reduction="sum") * scale
    return F.kl_div(logq, p, reduction="none").sum(-1) * scale


def reverse_kl_divergence(input: Tensor, target: Tensor, eps: float = 1e-8, reduction: str = "mean") -> Tensor:
    r"""Reverse KL :math:`\mathrm{KL}(q \,\Vert\, p) = \sum_c q_c(\log q_c - \log \max(p_c, \epsilon))`, mode-seeking.

    It is infinite where the target is 0 and the model is not; ``eps`` caps that
    penalty at :math:`-\log\epsilon` per unit of model mass.

    Example:
        >>> import torch
        >>> from lossbench.functional import reverse_kl_divergence
        >>> reverse_kl_divergence(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.5, 0.5]]))
        tensor(0.)
    """
    fn = "reverse_kl_divergence"
    x, p, reduction = _prepare(fn, input, target, reduction)
    check_positive(fn, "eps", eps)
    logq = F.log_softmax(x, dim=-1)
    loss = (logq.exp() * (logq - p.clamp_min(eps).log())).sum(-1)
    return reduce(loss, reduction)


def js_divergence(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Jensen-Shannon divergence :math:`\tfrac12\mathrm{KL}(p\Vert m) + \tfrac12\mathrm{KL}(q\Vert m)`,
    :math:`m = (p + q)/2`.

    Symmetric and bounded by :math:`\log 2`.

    Example:
        >>> import torch
        >>> from lossbench.functional import js_divergence
        >>> js_divergence(torch.tensor([[0.0, -100.0]]), torch.tensor([[0.0, 1.0]]))
        tensor(0.6931)
    """
    fn = "js_divergence"
    x, p, reduction = _prepare(fn, input, target, reduction)
    logq = F.log_softmax(x, dim=-1)
    q = logq.exp()
    log_m = torch.log((p + q) * 0.5)
    loss = 0.5 * (torch.xlogy(p, p) - p * log_m + q * (logq - log_m)).sum(-1)
    return reduce(loss, reduction)


def soft_cross_entropy(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Cross-entropy with probability targets :math:`-\sum_c p_c \log \mathrm{softmax}(x)_c` (mixup, soft labels).

    Equals :func:`kl_divergence` plus the target's entropy, which has no gradient.

    Example:
        >>> import torch
        >>> from lossbench.functional import soft_cross_entropy
        >>> soft_cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.25, 0.75]]))
        tensor(0.6931)
    """
    fn = "soft_cross_entropy"
    x, p, reduction = _prepare(fn, input, target, reduction)
    rows = x.reshape(-1, x.shape[-1])
    loss = F.cross_entropy(rows, p.reshape(rows.shape), reduction="none" if reduction == "none" else reduction)
    return loss.reshape(x.shape[:-1]) if reduction == "none" else loss

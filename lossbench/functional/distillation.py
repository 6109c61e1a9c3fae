"""Knowledge distillation (Hinton et al. 2015): a student's logits against a teacher's logits, softened by T.

``input`` and ``teacher`` hold logits of the same shape (..., C); ``target`` the hard class ids (...).
Soft-target losses are scaled by :math:`T^2` so that their gradients keep the same magnitude
whatever the temperature.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lossbench.functional._checks import check_positive, check_range, check_reduction, check_same_shape
from lossbench.functional.classification import cross_entropy
from lossbench.functional.distribution import js_divergence, kl_divergence, reverse_kl_divergence, soft_cross_entropy

DIVERGENCES = ("kl", "soft_ce", "js", "reverse_kl")
_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "kl": kl_divergence,
    "soft_ce": soft_cross_entropy,
    "js": js_divergence,
    "reverse_kl": reverse_kl_divergence,
}


def soft_target_loss(
    input: Tensor, teacher: Tensor, temperature: float = 4.0, divergence: str = "kl", reduction: str = "mean"
) -> Tensor:
    r""":math:`T^2\,D(\mathrm{softmax}(t/T),\ \mathrm{softmax}(x/T))`: the student's softened distribution against the
    teacher's, by ``divergence``: ``"kl"`` (forward KL, Hinton et al.), ``"soft_ce"`` (KL plus the teacher's entropy:
    the same gradients), ``"js"`` (Jensen-Shannon) or ``"reverse_kl"`` (mode-seeking).

    Example:
        >>> import torch
        >>> from lossbench.functional import soft_target_loss
        >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
        >>> soft_target_loss(logits, logits)  # the student equals its teacher
        tensor(0.)
    """
    fn = "soft_target_loss"
    check_reduction(fn, reduction)
    check_positive(fn, "temperature", temperature)
    if divergence not in DIVERGENCES:
        raise ValueError(f"{fn}: `divergence` must be one of {DIVERGENCES}, got {divergence!r}")
    check_same_shape(fn, input, teacher)
    soft = torch.softmax(teacher.detach().double() / temperature, dim=-1).to(
        torch.promote_types(input.dtype, torch.float32)
    )
    loss = _FUNCTIONS[divergence](input / temperature, soft, reduction=reduction)
    return loss * (temperature * temperature)


def distillation_loss(
    input: Tensor,
    target: Tensor,
    teacher: Tensor,
    temperature: float = 4.0,
    alpha: float = 0.5,
    divergence: str = "kl",
    reduction: str = "mean",
) -> Tensor:
    r"""Hinton et al.'s mixture :math:`\alpha\,\mathrm{CE}(x, y) + (1 - \alpha)\,T^2 D(\mathrm{softmax}(t/T),
    \mathrm{softmax}(x/T))`: hard labels and the teacher's softened probabilities (:func:`soft_target_loss`).

    Example:
        >>> import torch
        >>> from lossbench.functional import cross_entropy, distillation_loss
        >>> x, t, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, -3.0]]), torch.tensor([0])
        >>> bool(torch.isclose(distillation_loss(x, y, t, alpha=1.0), cross_entropy(x, y)))
        True
    """
    check_range("distillation_loss", "alpha", alpha, 0.0, 1.0)
    hard = cross_entropy(input, target, reduction=reduction)
    return alpha * hard + (1.0 - alpha) * soft_target_loss(input, teacher, temperature, divergence, reduction)

"""Distillation heads: hard class labels and, in training, a teacher's logits (Hinton et al. 2015)."""

from __future__ import annotations

from torch import Tensor

from lossbench import functional as LF
from lossbench.functional.distillation import DIVERGENCES
from lossbench.heads.base import LossHead, check_num_classes
from lossbench.heads.registry import register_head


@register_head("kd")
class DistillationHead(LossHead):
    """Knowledge distillation: alpha CE + (1 - alpha) T^2 D(teacher_T || student_T); D: kl, soft_ce, js, reverse_kl.

    CE is the cross-entropy on the hard labels.

    Without a teacher (validation, test, or a batch that carries none) the loss is the hard-label
    cross-entropy. ``alpha=0`` learns from the teacher alone.

    Example:
        >>> import torch
        >>> from lossbench import get_head
        >>> head = get_head("kd", in_features=4, num_classes=3, temperature=2.0, alpha=0.5)
        >>> outputs, target = head(torch.randn(5, 4)), torch.tensor([0, 1, 2, 1, 0])
        >>> loss, terms = head.compute(outputs, target, teacher=torch.randn(5, 3))
        >>> sorted(terms), bool(torch.isclose(loss, terms["ce"] + terms["distill"]))
        (['ce', 'distill'], True)
    """

    task = "multiclass"
    distils = True

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        temperature: float = 4.0,
        alpha: float = 0.5,
        divergence: str = "kl",
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        name = type(self).__name__
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"{name}: `temperature` must be a number > 0, got {temperature!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"{name}: `alpha` must be a number in [0, 1], got {alpha!r}")
        if divergence not in DIVERGENCES:
            raise ValueError(
                f"{name}: `divergence` must be one of {', '.join(map(repr, DIVERGENCES))}, got {divergence!r}"
            )
        self.num_classes, self.ignore_index = num_classes, -100
        self.temperature, self.alpha, self.divergence = float(temperature), float(alpha), divergence

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.cross_entropy(outputs, target, reduction=reduction)

    def _distil(self, outputs: Tensor, target: Tensor, teacher: Tensor, reduction: str) -> dict[str, Tensor]:
        hard = LF.cross_entropy(outputs, target, reduction=reduction)
        soft = LF.soft_target_loss(outputs, teacher, self.temperature, self.divergence, reduction=reduction)
        return {"ce": self.alpha * hard, "distill": (1.0 - self.alpha) * soft}

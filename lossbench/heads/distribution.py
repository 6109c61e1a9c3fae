"""Distribution heads: logits (N, C) against probability-vector targets (N, C) (soft labels, teachers)."""

from __future__ import annotations

import torch
from torch import Tensor

from lossbench import functional as LF
from lossbench.heads.base import LossHead, check_num_classes
from lossbench.heads.registry import register_head


def _probe(fn, num_classes: int, **kwargs) -> None:
    uniform = torch.full((1, num_classes), 1.0 / num_classes)
    fn(torch.zeros(1, num_classes), uniform, **kwargs)


@register_head("kl")
class KLHead(LossHead):
    """KL(target || model), batch mean, with distillation's temperature and T^2 gradient scaling."""

    task = "distribution"

    def __init__(self, in_features: int, num_classes: int, temperature: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _probe(LF.kl_divergence, num_classes, temperature=temperature)
        self.num_classes, self.temperature = num_classes, temperature

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.kl_divergence(outputs, target, temperature=self.temperature, reduction=reduction)


@register_head("reverse_kl")
class ReverseKLHead(LossHead):
    """Reverse KL(model || target): mode-seeking, puts mass on one high-probability class."""

    task = "distribution"

    def __init__(self, in_features: int, num_classes: int, eps: float = 1e-8, reduction: str = "mean") -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _probe(LF.reverse_kl_divergence, num_classes, eps=eps)
        self.num_classes, self.eps = num_classes, eps

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.reverse_kl_divergence(outputs, target, eps=self.eps, reduction=reduction)


@register_head("js")
class JSHead(LossHead):
    """Jensen-Shannon divergence: symmetric and bounded by log 2, robust to noisy soft labels."""

    task = "distribution"

    def __init__(self, in_features: int, num_classes: int, reduction: str = "mean") -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        self.num_classes = num_classes

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.js_divergence(outputs, target, reduction=reduction)


@register_head("soft_ce")
class SoftCrossEntropyHead(LossHead):
    """Cross-entropy with probability targets (mixup, soft labels): KL plus the target entropy."""

    task = "distribution"

    def __init__(self, in_features: int, num_classes: int, reduction: str = "mean") -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        self.num_classes = num_classes

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.soft_cross_entropy(outputs, target, reduction=reduction)

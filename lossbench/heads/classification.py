"""Multiclass heads: logits (N, C) for int64 targets (N,); token-level (N, T, C) for (N, T).

Every head takes ``weight`` (one per class), ``ignore_index`` (-100) and ``reduction``
with torch's semantics (see :mod:`lossbench.functional.classification`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lossbench import functional as LF
from lossbench.heads.base import LossHead, check_num_classes, class_weight_buffer
from lossbench.heads.registry import register_head

Weight = Sequence[float] | Tensor | None


def _setup(head: LossHead, num_classes: int, weight: Weight, ignore_index: int, probe, **kwargs) -> None:
    """Shared state of multiclass heads; ``probe`` validates the loss arguments now, not at the first step."""
    class_weight_buffer(head, "weight", weight, num_classes)
    head.num_classes, head.ignore_index = num_classes, ignore_index
    probe(torch.zeros(1, num_classes), torch.zeros(1, dtype=torch.long), **kwargs)


@register_head("ce")
class CrossEntropyHead(LossHead):
    """Cross-entropy: the multiclass default; class ``weight``, ``ignore_index`` and label smoothing."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        weight: Weight = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.cross_entropy, label_smoothing=label_smoothing)
        self.label_smoothing = label_smoothing

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.cross_entropy(
            outputs, target, self.weight, self.ignore_index, self.label_smoothing, reduction=reduction
        )


@register_head("label_smoothing")
class LabelSmoothingHead(LossHead):
    """Cross-entropy with label smoothing 0.1 by default (Szegedy et al. 2016): better calibration."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        label_smoothing: float = 0.1,
        weight: Weight = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.cross_entropy, label_smoothing=label_smoothing)
        self.label_smoothing = label_smoothing

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.cross_entropy(
            outputs, target, self.weight, self.ignore_index, self.label_smoothing, reduction=reduction
        )


@register_head("focal")
class FocalHead(LossHead):
    """Multiclass focal loss: (1 - p)^gamma down-weights easy examples; ``weight`` acts as alpha."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        gamma: float = 2.0,
        weight: Weight = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.focal_loss, gamma=gamma)
        self.gamma = gamma

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.focal_loss(outputs, target, self.gamma, self.weight, self.ignore_index, reduction=reduction)


@register_head("poly1")
class Poly1Head(LossHead):
    """Poly-1 (Leng et al. 2022): cross-entropy + epsilon (1 - p_t); terms ``ce`` and ``poly``."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        epsilon: float = 1.0,
        label_smoothing: float = 0.0,
        weight: Weight = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.poly1_cross_entropy, label_smoothing=label_smoothing)
        self.epsilon, self.label_smoothing = epsilon, label_smoothing

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> dict[str, Tensor]:
        return LF.poly1_cross_entropy(
            outputs, target, self.epsilon, self.weight, self.ignore_index, self.label_smoothing,
            reduction=reduction, return_terms=True,
        )


@register_head("square")
class SquareHead(LossHead):
    """Square loss on one-hot targets (Hui & Belkin 2021), with their k and M rescaling for many classes."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        k: float = 1.0,
        M: float = 1.0,
        weight: Weight = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.square_loss, k=k, M=M)
        self.k, self.M = k, M

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.square_loss(outputs, target, self.k, self.M, self.weight, self.ignore_index, reduction=reduction)

    def predict_proba(self, outputs: Tensor) -> Tensor:
        """Invert the minimiser x = k M p / (k p + 1 - p) per class, clip to [0, 1], normalise."""
        x = outputs.float().clamp(0.0, self.M)
        p = x / (self.k * (self.M - x) + x).clamp_min(torch.finfo(x.dtype).tiny)
        total = p.sum(-1, keepdim=True)
        uniform = torch.full_like(p, 1.0 / p.shape[-1])
        return torch.where(total > 0, p / total.clamp_min(torch.finfo(x.dtype).tiny), uniform)


@register_head("gce")
class GCEHead(LossHead):
    """Generalized cross-entropy (Zhang & Sabuncu 2018): (1 - p_y^q)/q, between CE (q->0) and MAE (q=1)."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        q: float = 0.7,
        weight: Weight = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.generalized_cross_entropy, q=q)
        self.q = q

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.generalized_cross_entropy(
            outputs, target, self.q, self.weight, self.ignore_index, reduction=reduction
        )


@register_head("sce")
class SCEHead(LossHead):
    """Symmetric cross-entropy (Wang et al. 2019): alpha CE + beta reverse CE; terms ``ce`` and ``rce``."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        alpha: float = 0.1,
        beta: float = 1.0,
        log_zero: float = -4.0,
        weight: Weight = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.symmetric_cross_entropy, log_zero=log_zero)
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> dict[str, Tensor]:
        return LF.symmetric_cross_entropy(
            outputs, target, self.alpha, self.beta, self.log_zero, self.weight, self.ignore_index,
            reduction=reduction, return_terms=True,
        )


@register_head("nce_rce")
class NCERCEHead(LossHead):
    """Active-passive loss NCE+RCE (Ma et al. 2020), robust to label noise; terms ``nce`` and ``rce``."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        alpha: float = 1.0,
        beta: float = 1.0,
        log_zero: float = -4.0,
        weight: Weight = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.nce_rce_loss, log_zero=log_zero)
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> dict[str, Tensor]:
        return LF.nce_rce_loss(
            outputs, target, self.alpha, self.beta, self.log_zero, self.weight, self.ignore_index,
            reduction=reduction, return_terms=True,
        )


@register_head("mae_prob")
class MAEProbHead(LossHead):
    """MAE between softmax and one-hot (halved, 1 - p_y): noise-robust, slow to fit clean data."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        weight: Weight = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.mae_prob_loss)

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.mae_prob_loss(outputs, target, self.weight, self.ignore_index, reduction=reduction)

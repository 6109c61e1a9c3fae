"""Binary heads: one logit per example, (N,) for targets (N,) in [0, 1]."""

from __future__ import annotations

import torch
from torch import Tensor

from lossbench import functional as LF
from lossbench.heads.base import LossHead
from lossbench.heads.registry import register_head

_PROBE = (torch.zeros(1), torch.zeros(1))  # validates constructor arguments against the functional


@register_head("bce")
class BCEHead(LossHead):
    """Binary cross-entropy on logits, with ``pos_weight`` for imbalance and label smoothing."""

    task = "binary"

    def __init__(
        self,
        in_features: int,
        pos_weight: float | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, 1, reduction=reduction, squeeze=True)
        LF.binary_cross_entropy_with_logits(*_PROBE, pos_weight=pos_weight, label_smoothing=label_smoothing)
        self.pos_weight, self.label_smoothing = pos_weight, label_smoothing

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.binary_cross_entropy_with_logits(
            outputs, target, pos_weight=self.pos_weight, label_smoothing=self.label_smoothing, reduction=reduction
        )


@register_head("binary_focal")
class BinaryFocalHead(LossHead):
    """Sigmoid focal loss: down-weights easy examples; for heavy class imbalance (dense detection)."""

    task = "binary"

    def __init__(
        self, in_features: int, alpha: float | None = 0.25, gamma: float = 2.0, reduction: str = "mean"
    ) -> None:
        super().__init__(in_features, 1, reduction=reduction, squeeze=True)
        LF.binary_focal_loss(*_PROBE, alpha=alpha, gamma=gamma)
        self.alpha, self.gamma = alpha, gamma

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.binary_focal_loss(outputs, target, alpha=self.alpha, gamma=self.gamma, reduction=reduction)


@register_head("squared_hinge")
class SquaredHingeHead(LossHead):
    """Squared hinge (L2-SVM): a margin loss whose score (x + 1)/2 estimates P(y=1)."""

    task = "binary"

    def __init__(self, in_features: int, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(in_features, 1, reduction=reduction, squeeze=True)
        LF.squared_hinge_loss(*_PROBE, margin=margin)
        self.margin = margin

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.squared_hinge_loss(outputs, target, margin=self.margin, reduction=reduction)

    def predict_proba(self, outputs: Tensor) -> Tensor:
        """The minimiser of the squared hinge is ``margin * (2p - 1)``: invert it, clipped to [0, 1]."""
        return ((outputs.float() / self.margin + 1.0) * 0.5).clamp(0.0, 1.0)

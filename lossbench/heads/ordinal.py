"""Ordinal heads: ordered classes 0 < 1 < ... < K-1."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lossbench import functional as LF
from lossbench.heads.base import LossHead, check_num_classes
from lossbench.heads.registry import register_head


@register_head("coral")
class CoralHead(LossHead):
    """CORAL (Cao et al. 2020): K-1 binary tasks sharing one weight vector, rank-consistent by design.

    Outputs (N, K-1) logits of P(y > k); ``predict`` counts the tasks with P > 0.5.
    """

    task = "ordinal"
    importance: Tensor | None  # a buffer, registered in __init__

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        importance: Sequence[float] | Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, 1, reduction=reduction, bias=False)
        self.num_classes = check_num_classes(self, num_classes)
        # decreasing thresholds, as in the reference implementation (coral-pytorch)
        self.bias = nn.Parameter(torch.arange(num_classes - 1, 0, -1, dtype=torch.float32) / (num_classes - 1))
        imp = None if importance is None else torch.as_tensor(importance, dtype=torch.float32).clone()
        self.register_buffer("importance", imp)
        LF.coral_loss(torch.zeros(1, num_classes - 1), torch.zeros(1, dtype=torch.long), importance=imp)

    def forward(self, features: Tensor) -> Tensor:
        return super().forward(features) + self.bias

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.coral_loss(outputs, target, importance=self.importance, reduction=reduction)

    def predict_proba(self, outputs: Tensor) -> Tensor:
        """P(y = k) from the cumulative P(y > k), clipped at 0 and renormalised."""
        above = torch.sigmoid(outputs.float())
        ones = torch.ones_like(above[..., :1])
        cumulative = torch.cat([ones, above, torch.zeros_like(ones)], dim=-1)
        proba = (cumulative[..., :-1] - cumulative[..., 1:]).clamp_min(0.0)
        return proba / proba.sum(-1, keepdim=True).clamp_min(torch.finfo(proba.dtype).tiny)

    def predict(self, outputs: Tensor) -> Tensor:
        return (outputs > 0).sum(-1)

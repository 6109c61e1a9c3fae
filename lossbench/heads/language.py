"""Language-model heads: token-level logits (N, T, V) for token ids (N, T), padding at ``ignore_index``."""

from __future__ import annotations

import torch
from torch import Tensor

from lossbench import functional as LF
from lossbench.heads.base import LossHead, check_num_classes
from lossbench.heads.registry import register_head


@register_head("lm_ce")
class LMCrossEntropyHead(LossHead):
    """Token cross-entropy over a vocabulary of ``num_classes``, with an optional z-loss; terms ``ce``, ``z_loss``."""

    task = "lm"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        LF.lm_cross_entropy(
            torch.zeros(1, 1, num_classes),
            torch.zeros(1, 1, dtype=torch.long),
            label_smoothing=label_smoothing,
            z_loss=z_loss,
        )
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.label_smoothing, self.z_loss = label_smoothing, z_loss

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor | dict[str, Tensor]:
        return LF.lm_cross_entropy(
            outputs,
            target,
            self.ignore_index,
            self.label_smoothing,
            self.z_loss,
            reduction=reduction,
            return_terms=self.z_loss > 0,
        )


@register_head("lm_ce_fused")
class FusedLMCrossEntropyHead(LossHead):
    """Memory-efficient token cross-entropy: projection + loss in chunks, never the full (N, T, V) logits.

    ``forward`` returns the features unchanged; the loss applies the head's projection
    chunk by chunk (:func:`lossbench.functional.linear_cross_entropy`). Reductions are
    ``mean`` and ``sum``.
    """

    task = "lm"
    reductions = ("mean", "sum")

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        chunk_size: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction, bias=False)
        LF.linear_cross_entropy(
            torch.zeros(1, in_features),
            torch.zeros(num_classes, in_features),
            torch.zeros(1, dtype=torch.long),
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            chunk_size=chunk_size,
        )
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.label_smoothing, self.z_loss, self.chunk_size = label_smoothing, z_loss, chunk_size

    def forward(self, features: Tensor) -> Tensor:
        self.check_features(features)
        return features

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> dict[str, Tensor]:
        terms = LF.linear_cross_entropy(
            outputs,
            self.proj.weight,
            target,
            self.proj.bias,
            self.ignore_index,
            self.label_smoothing,
            self.z_loss,
            self.chunk_size,
            reduction=reduction,
            return_terms=True,
        )
        return terms if self.z_loss else {"loss": terms["loss"]}

    def logits(self, outputs: Tensor) -> Tensor:
        """The full logits, for metrics on small vocabularies."""
        return self.proj(outputs)

    def predict_proba(self, outputs: Tensor) -> Tensor:
        return torch.softmax(self.logits(outputs).float(), dim=-1)

"""Multiclass heads: logits (N, C) for int64 targets (N,); token-level (N, T, C) for (N, T).

Every head takes ``weight`` (one per class), ``ignore_index`` (-100) and ``reduction``
with torch's semantics (see :mod:`lossbench.functional.classification`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lossbench import functional as LF
from lossbench.functional._checks import check_positive
from lossbench.heads.base import LossHead, check_num_classes, class_weight_buffer
from lossbench.heads.registry import register_head

Weight = Sequence[float] | Tensor | None


def _setup(
    head: LossHead, num_classes: int, weight: Weight, ignore_index: int, probe: Callable[..., object], **kwargs
) -> None:
    """The ``weight`` buffer of multiclass heads; ``probe`` validates the loss arguments now, not at the first step."""
    class_weight_buffer(head, "weight", weight, num_classes)
    probe(torch.zeros(1, num_classes), torch.zeros(1, dtype=torch.long), **kwargs)


@register_head("ce")
class CrossEntropyHead(LossHead):
    """Cross-entropy: the multiclass default; class ``weight``, ``ignore_index`` and label smoothing."""

    task = "multiclass"
    weight: Tensor | None  # a buffer, set by _setup

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
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.label_smoothing = label_smoothing

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.cross_entropy(
            outputs, target, self.weight, self.ignore_index, self.label_smoothing, reduction=reduction
        )


@register_head("label_smoothing")
class LabelSmoothingHead(LossHead):
    """Cross-entropy with label smoothing 0.1 by default (Szegedy et al. 2016): better calibration."""

    task = "multiclass"
    weight: Tensor | None  # a buffer, set by _setup

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
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.label_smoothing = label_smoothing

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.cross_entropy(
            outputs, target, self.weight, self.ignore_index, self.label_smoothing, reduction=reduction
        )


@register_head("focal")
class FocalHead(LossHead):
    """Multiclass focal loss: (1 - p)^gamma down-weights easy examples; ``weight`` acts as alpha."""

    task = "multiclass"
    weight: Tensor | None  # a buffer, set by _setup

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
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.gamma = gamma

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.focal_loss(outputs, target, self.gamma, self.weight, self.ignore_index, reduction=reduction)


@register_head("poly1")
class Poly1Head(LossHead):
    """Poly-1 (Leng et al. 2022): cross-entropy + epsilon (1 - p_t); terms ``ce`` and ``poly``."""

    task = "multiclass"
    weight: Tensor | None  # a buffer, set by _setup

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
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.epsilon, self.label_smoothing = epsilon, label_smoothing

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> dict[str, Tensor]:
        return LF.poly1_cross_entropy(
            outputs,
            target,
            self.epsilon,
            self.weight,
            self.ignore_index,
            self.label_smoothing,
            reduction=reduction,
            return_terms=True,
        )


@register_head("square")
class SquareHead(LossHead):
    """Square loss on one-hot targets (Hui & Belkin 2021), with their k and M rescaling for many classes.

    The outputs are scores, not logits. ``predict`` is the argmax of the raw scores; ``predict_proba``
    is a softmax of the scores at ``temperature`` (default ``M / ln(99 (C - 1))``: the ideal score
    vector, M on one class and 0 elsewhere, maps to probability 0.99 for that class, and an untrained
    model's near-zero scores to near-uniform probabilities). It never ties where the scores differ and
    always gives a finite NLL.

    >>> head = SquareHead(4, num_classes=3)
    >>> scores = torch.tensor([[-0.3, -0.1, -0.2], [1.0, 0.0, 0.0]])
    >>> head.predict(scores).tolist()
    [1, 0]
    >>> round(head.predict_proba(scores)[1, 0].item(), 4)
    0.99
    """

    task = "multiclass"
    weight: Tensor | None  # a buffer, set by _setup

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        k: float = 1.0,
        M: float = 1.0,
        weight: Weight = None,
        ignore_index: int = -100,
        temperature: float | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_features, check_num_classes(self, num_classes), reduction=reduction)
        _setup(self, num_classes, weight, ignore_index, LF.square_loss, k=k, M=M)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        if temperature is not None:
            check_positive("SquareHead", "temperature", temperature)
        self.k, self.M = k, M
        self.temperature = float(temperature) if temperature is not None else M / math.log(99.0 * (num_classes - 1))

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.square_loss(outputs, target, self.k, self.M, self.weight, self.ignore_index, reduction=reduction)

    def predict(self, outputs: Tensor) -> Tensor:
        """The class with the highest score."""
        return outputs.argmax(-1)

    def predict_proba(self, outputs: Tensor) -> Tensor:
        """Softmax of the scores at ``self.temperature`` (see the class docstring)."""
        return torch.softmax(outputs.float() / self.temperature, dim=-1)


@register_head("gce")
class GCEHead(LossHead):
    """Generalized cross-entropy (Zhang & Sabuncu 2018): (1 - p_y^q)/q, between CE (q->0) and MAE (q=1)."""

    task = "multiclass"
    weight: Tensor | None  # a buffer, set by _setup

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
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.q = q

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.generalized_cross_entropy(
            outputs, target, self.q, self.weight, self.ignore_index, reduction=reduction
        )


@register_head("sce")
class SCEHead(LossHead):
    """Symmetric cross-entropy (Wang et al. 2019): alpha CE + beta reverse CE; terms ``ce`` and ``rce``."""

    task = "multiclass"
    weight: Tensor | None  # a buffer, set by _setup

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
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> dict[str, Tensor]:
        return LF.symmetric_cross_entropy(
            outputs,
            target,
            self.alpha,
            self.beta,
            self.log_zero,
            self.weight,
            self.ignore_index,
            reduction=reduction,
            return_terms=True,
        )


@register_head("nce_rce")
class NCERCEHead(LossHead):
    """Active-passive loss NCE+RCE (Ma et al. 2020), robust to label noise; terms ``nce`` and ``rce``."""

    task = "multiclass"
    weight: Tensor | None  # a buffer, set by _setup

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
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> dict[str, Tensor]:
        return LF.nce_rce_loss(
            outputs,
            target,
            self.alpha,
            self.beta,
            self.log_zero,
            self.weight,
            self.ignore_index,
            reduction=reduction,
            return_terms=True,
        )


@register_head("mae_prob")
class MAEProbHead(LossHead):
    """MAE between softmax and one-hot (halved, 1 - p_y): noise-robust, slow to fit clean data."""

    task = "multiclass"
    weight: Tensor | None  # a buffer, set by _setup

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
        self.num_classes, self.ignore_index = num_classes, ignore_index

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.mae_prob_loss(outputs, target, self.weight, self.ignore_index, reduction=reduction)

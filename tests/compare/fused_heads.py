"""Heads for the fused executor's tests (imported by ``class_path``)."""

from __future__ import annotations

import torch
from torch import Tensor

from lossbench.heads.base import LossHead


class NaNFromHead(LossHead):
    """Cross-entropy whose training loss is NaN from its ``nan_from``-th training call on (counted per instance)."""

    task = "multiclass"

    def __init__(self, in_features: int, num_classes: int, nan_from: int = 3, **kwargs) -> None:
        super().__init__(in_features, num_classes, **kwargs)
        self.num_classes, self.nan_from, self.calls = num_classes, nan_from, 0

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        loss = torch.nn.functional.cross_entropy(outputs.float(), target, reduction=reduction)
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            if self.calls >= self.nan_from:
                return loss * float("nan")
        return loss


class SoloHead(LossHead):
    """Cross-entropy that must train alone (``fusable = False``)."""

    task = "multiclass"
    fusable = False

    def __init__(self, in_features: int, num_classes: int, **kwargs) -> None:
        super().__init__(in_features, num_classes, **kwargs)
        self.num_classes = num_classes

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return torch.nn.functional.cross_entropy(outputs.float(), target, reduction=reduction)


class CountingHead(LossHead):
    """Cross-entropy plus the number of times it was computed: state across calls, so the array's first-batch loss
    differs from the loss alone (the fusability probe sends it to a sequential run)."""

    task = "multiclass"

    def __init__(self, in_features: int, num_classes: int, **kwargs) -> None:
        super().__init__(in_features, num_classes, **kwargs)
        self.num_classes, self.calls = num_classes, 0

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        self.calls += 1
        return torch.nn.functional.cross_entropy(outputs.float(), target, reduction=reduction) + self.calls


class _BadGradient(torch.autograd.Function):
    """The identity, whose gradient is ``value`` everywhere: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, value: float) -> Tensor:
        ctx.value = value
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return torch.full_like(grad, ctx.value), None


class BadGradientHead(LossHead):
    """Cross-entropy whose loss stays finite but whose gradient is ``value`` ("nan", "inf") at its training calls
    ``bad_from`` to ``bad_until`` (counted per instance from 1; ``bad_until`` None: to the end)."""

    task = "multiclass"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        bad_from: int = 3,
        bad_until: int | None = None,
        value: str = "nan",
        **kwargs,
    ) -> None:
        super().__init__(in_features, num_classes, **kwargs)
        self.num_classes, self.bad_from, self.bad_until, self.value = num_classes, bad_from, bad_until, float(value)
        self.calls = 0

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            if self.calls >= self.bad_from and (self.bad_until is None or self.calls <= self.bad_until):
                outputs = _BadGradient.apply(outputs, self.value)
        return torch.nn.functional.cross_entropy(outputs.float(), target, reduction=reduction)

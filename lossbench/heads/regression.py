"""Regression heads: outputs (N,) for targets (N,), or (N, K) for ``num_targets=K``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench import functional as LF
from lossbench.heads.base import LossHead
from lossbench.heads.registry import register_head


def _num_targets(head: LossHead, num_targets: int) -> int:
    if isinstance(num_targets, bool) or not isinstance(num_targets, int) or num_targets < 1:
        raise ValueError(f"{type(head).__name__}: `num_targets` must be a positive int, got {num_targets!r}")
    return num_targets


@register_head("mse")
class MSEHead(LossHead):
    """Mean squared error: the regression default; fits the conditional mean, sensitive to outliers."""

    task = "regression"

    def __init__(self, in_features: int, num_targets: int = 1, reduction: str = "mean") -> None:
        super().__init__(in_features, _num_targets(self, num_targets), reduction=reduction, squeeze=num_targets == 1)
        self.num_targets = num_targets

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.mse_loss(outputs, target, reduction=reduction)


@register_head("mae")
class MAEHead(LossHead):
    """Mean absolute error (L1): fits the conditional median, robust to outliers."""

    task = "regression"

    def __init__(self, in_features: int, num_targets: int = 1, reduction: str = "mean") -> None:
        super().__init__(in_features, _num_targets(self, num_targets), reduction=reduction, squeeze=num_targets == 1)
        self.num_targets = num_targets

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.mae_loss(outputs, target, reduction=reduction)


@register_head("huber")
class HuberHead(LossHead):
    """Huber loss: quadratic for errors below ``delta``, linear above; MSE's speed with MAE's robustness."""

    task = "regression"

    def __init__(self, in_features: int, delta: float = 1.0, num_targets: int = 1, reduction: str = "mean") -> None:
        super().__init__(in_features, _num_targets(self, num_targets), reduction=reduction, squeeze=num_targets == 1)
        LF.huber_loss(torch.zeros(1), torch.zeros(1), delta=delta)  # validates delta now, not at the first step
        self.num_targets, self.delta = num_targets, delta

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.huber_loss(outputs, target, delta=self.delta, reduction=reduction)


@register_head("smooth_l1")
class SmoothL1Head(LossHead):
    """Smooth L1 (Huber divided by ``beta``): the box-regression loss of Fast R-CNN."""

    task = "regression"

    def __init__(self, in_features: int, beta: float = 1.0, num_targets: int = 1, reduction: str = "mean") -> None:
        super().__init__(in_features, _num_targets(self, num_targets), reduction=reduction, squeeze=num_targets == 1)
        LF.smooth_l1_loss(torch.zeros(1), torch.zeros(1), beta=beta)
        self.num_targets, self.beta = num_targets, beta

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.smooth_l1_loss(outputs, target, beta=self.beta, reduction=reduction)


@register_head("log_cosh")
class LogCoshHead(LossHead):
    """Log-cosh: like Huber with delta=1 but smooth everywhere (twice differentiable)."""

    task = "regression"

    def __init__(self, in_features: int, num_targets: int = 1, reduction: str = "mean") -> None:
        super().__init__(in_features, _num_targets(self, num_targets), reduction=reduction, squeeze=num_targets == 1)
        self.num_targets = num_targets

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.log_cosh_loss(outputs, target, reduction=reduction)


@register_head("gaussian_nll")
class GaussianNLLHead(LossHead):
    """Gaussian NLL: predicts a mean and a variance (softplus), learning its own uncertainty.

    Outputs have shape (N, 2): ``[..., 0]`` is the mean, ``[..., 1]`` the variance.
    """

    task = "regression"

    def __init__(self, in_features: int, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(in_features, 2, reduction=reduction)
        if not eps > 0:
            raise ValueError(f"GaussianNLLHead: `eps` must be > 0, got {eps!r}")
        self.full, self.eps = full, eps

    def forward(self, features: Tensor) -> Tensor:
        mean, raw = super().forward(features).unbind(-1)
        return torch.stack([mean, F.softplus(raw)], dim=-1)

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        if outputs.dim() < 1 or outputs.shape[-1] != 2:
            raise ValueError(
                f"GaussianNLLHead: `outputs` must have shape (..., 2) (mean, variance), got {tuple(outputs.shape)}"
            )
        return LF.gaussian_nll_loss(
            outputs[..., 0], target, outputs[..., 1], full=self.full, eps=self.eps, reduction=reduction
        )

    def predict(self, outputs: Tensor) -> Tensor:
        return outputs[..., 0]


@register_head("quantile")
class QuantileHead(LossHead):
    """Pinball loss for one or several quantiles: prediction intervals; the 0.5 quantile is the median."""

    task = "regression"

    def __init__(
        self, in_features: int, quantiles: float | Sequence[float] = (0.1, 0.5, 0.9), reduction: str = "mean"
    ) -> None:
        single = isinstance(quantiles, (int, float))
        qs = [float(quantiles)] if isinstance(quantiles, (int, float)) else [float(q) for q in quantiles]
        super().__init__(in_features, max(1, len(qs)), reduction=reduction, squeeze=single)
        LF.quantile_loss(torch.zeros(1) if single else torch.zeros(1, len(qs)), torch.zeros(1), quantiles=quantiles)
        self.quantiles = qs[0] if single else qs
        self._median = min(range(len(qs)), key=lambda i: abs(qs[i] - 0.5))

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.quantile_loss(outputs, target, quantiles=self.quantiles, reduction=reduction)

    def predict(self, outputs: Tensor) -> Tensor:
        """The quantile closest to the median."""
        return outputs if self.squeeze else outputs[..., self._median]


@register_head("poisson_nll")
class PoissonNLLHead(LossHead):
    """Poisson NLL for count targets; outputs the log-rate, predicts the rate. Trained on the raw counts."""

    task = "regression"
    standardized_target = False  # counts: a standardised target would be negative

    def __init__(self, in_features: int, full: bool = False, reduction: str = "mean") -> None:
        super().__init__(in_features, 1, reduction=reduction, squeeze=True)
        self.full = full

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        return LF.poisson_nll_loss(outputs, target, log_input=True, full=self.full, reduction=reduction)

    def predict(self, outputs: Tensor) -> Tensor:
        return outputs.exp()

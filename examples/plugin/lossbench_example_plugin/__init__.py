"""An example third-party head, registered through the ``lossbench.heads`` entry point."""

import torch
from torch import Tensor

from lossbench import LossHead
from lossbench.functional import check_regression_args, reduce_loss


class CauchyHead(LossHead):
    """Cauchy (Lorentzian) loss log(1 + (d/c)^2): very robust to outliers."""

    task = "regression"

    def __init__(self, in_features: int, scale: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(in_features, 1, reduction=reduction, squeeze=True)
        self.scale = scale

    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor:
        check_regression_args("CauchyHead", outputs, target, reduction)
        return reduce_loss(torch.log1p(((outputs - target) / self.scale).square()), reduction)

"""Pure loss functions, one module per family; no state, no nn.Module.

Every function takes ``reduction`` in {"mean", "sum", "none"} and checks its
arguments, raising errors that name the argument, what was expected and what was
given. Value checks can be switched off with :func:`set_validate_args`.
"""

from lossbench.functional._checks import check_same_shape, set_validate_args, validate_args, validate_args_enabled
from lossbench.functional._reduce import reduce_loss
from lossbench.functional.binary import binary_cross_entropy_with_logits, binary_focal_loss, squared_hinge_loss
from lossbench.functional.classification import (
    cross_entropy,
    focal_loss,
    generalized_cross_entropy,
    mae_prob_loss,
    nce_rce_loss,
    poly1_cross_entropy,
    square_loss,
    symmetric_cross_entropy,
)
from lossbench.functional.distillation import distillation_loss, soft_target_loss
from lossbench.functional.distribution import (
    js_divergence,
    kl_divergence,
    reverse_kl_divergence,
    soft_cross_entropy,
)
from lossbench.functional.language import linear_cross_entropy, lm_cross_entropy
from lossbench.functional.ordinal import coral_loss, ordinal_levels
from lossbench.functional.regression import (
    check_regression_args,
    gaussian_nll_loss,
    huber_loss,
    log_cosh_loss,
    mae_loss,
    mse_loss,
    poisson_nll_loss,
    quantile_loss,
    smooth_l1_loss,
)

__all__ = [
    "binary_cross_entropy_with_logits",
    "binary_focal_loss",
    "check_regression_args",
    "check_same_shape",
    "coral_loss",
    "cross_entropy",
    "distillation_loss",
    "focal_loss",
    "gaussian_nll_loss",
    "generalized_cross_entropy",
    "huber_loss",
    "js_divergence",
    "kl_divergence",
    "linear_cross_entropy",
    "lm_cross_entropy",
    "log_cosh_loss",
    "mae_loss",
    "mae_prob_loss",
    "mse_loss",
    "nce_rce_loss",
    "ordinal_levels",
    "poisson_nll_loss",
    "poly1_cross_entropy",
    "quantile_loss",
    "reduce_loss",
    "reverse_kl_divergence",
    "set_validate_args",
    "smooth_l1_loss",
    "soft_cross_entropy",
    "soft_target_loss",
    "square_loss",
    "squared_hinge_loss",
    "symmetric_cross_entropy",
    "validate_args",
    "validate_args_enabled",
]

"""Loss heads: each owns its output projection, loss, prediction rule and task kind.

Importing this package registers the built-in heads; see :func:`list_heads`.
"""

from lossbench.heads import binary, classification, distillation, distribution, language, ordinal, regression  # noqa: F401,E501  (registers)
from lossbench.heads.base import CLASS_TASKS, TASKS, LossHead
from lossbench.heads.binary import BCEHead, BinaryFocalHead, SquaredHingeHead
from lossbench.heads.classification import (
    CrossEntropyHead,
    FocalHead,
    GCEHead,
    LabelSmoothingHead,
    MAEProbHead,
    NCERCEHead,
    Poly1Head,
    SCEHead,
    SquareHead,
)
from lossbench.heads.distillation import DistillationHead
from lossbench.heads.distribution import JSHead, KLHead, ReverseKLHead, SoftCrossEntropyHead
from lossbench.heads.language import FusedLMCrossEntropyHead, LMCrossEntropyHead
from lossbench.heads.ordinal import CoralHead
from lossbench.heads.registry import (
    DuplicateHeadError,
    HeadInfo,
    UnknownHeadError,
    get_head,
    get_head_class,
    list_heads,
    refresh_plugins,
    register_head,
)
from lossbench.heads.regression import (
    GaussianNLLHead,
    HuberHead,
    LogCoshHead,
    MAEHead,
    MSEHead,
    PoissonNLLHead,
    QuantileHead,
    SmoothL1Head,
)

__all__ = [
    "CLASS_TASKS",
    "TASKS",
    "BCEHead",
    "BinaryFocalHead",
    "CoralHead",
    "DistillationHead",
    "CrossEntropyHead",
    "DuplicateHeadError",
    "FocalHead",
    "FusedLMCrossEntropyHead",
    "GCEHead",
    "GaussianNLLHead",
    "HeadInfo",
    "HuberHead",
    "JSHead",
    "KLHead",
    "LMCrossEntropyHead",
    "LabelSmoothingHead",
    "LogCoshHead",
    "LossHead",
    "MAEHead",
    "MAEProbHead",
    "MSEHead",
    "NCERCEHead",
    "PoissonNLLHead",
    "Poly1Head",
    "QuantileHead",
    "ReverseKLHead",
    "SCEHead",
    "SmoothL1Head",
    "SoftCrossEntropyHead",
    "SquareHead",
    "SquaredHingeHead",
    "UnknownHeadError",
    "get_head",
    "get_head_class",
    "list_heads",
    "refresh_plugins",
    "register_head",
]

"""lossbench: loss heads for PyTorch Lightning, and proof of which one trains best."""

from lossbench import functional
from lossbench.heads import LossHead, UnknownHeadError, get_head, get_head_class, list_heads, register_head

__version__ = "0.1.0"

__all__ = [
    "LossHead",
    "UnknownHeadError",
    "__version__",
    "functional",
    "get_head",
    "get_head_class",
    "list_heads",
    "register_head",
]

"""lossbench: loss heads for PyTorch Lightning, and proof of which one trains best."""

from importlib.metadata import PackageNotFoundError, version

from lossbench import functional
from lossbench.heads import LossHead, UnknownHeadError, get_head, get_head_class, list_heads, register_head


def __getattr__(name: str):
    # the Lightning module pulls in lightning and torchmetrics: import it on first use
    if name == "LossbenchModule":
        from lossbench.module import LossbenchModule

        return LossbenchModule
    raise AttributeError(f"module 'lossbench' has no attribute {name!r}")


try:  # defined once, in pyproject.toml
    __version__ = version("lossbench")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "LossHead",
    "LossbenchModule",
    "UnknownHeadError",
    "__version__",
    "functional",
    "get_head",
    "get_head_class",
    "list_heads",
    "register_head",
]

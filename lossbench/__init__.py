"""lossbench: loss heads for PyTorch Lightning, and proof of which one trains best."""

from typing import TYPE_CHECKING, Any

from lossbench import functional
from lossbench._version import __version__  # defined once, in pyproject.toml
from lossbench.heads import LossHead, UnknownHeadError, get_head, get_head_class, list_heads, register_head

if TYPE_CHECKING:
    from lossbench.module import LossbenchModule


def __getattr__(name: str) -> Any:
    # the Lightning module pulls in lightning and torchmetrics: import it on first use
    if name == "LossbenchModule":
        from lossbench.module import LossbenchModule

        return LossbenchModule
    if name == "compare":  # the comparison engine (callable: lossbench.compare(recipe, output=...)), on first use
        import importlib

        return importlib.import_module("lossbench.compare")
    raise AttributeError(f"module 'lossbench' has no attribute {name!r}")


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

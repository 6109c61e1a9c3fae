"""Data: Hugging Face ``datasets`` as LightningDataModules, bundled real datasets, offline tokenizers.

The public names load lazily, so that a light module of this package (``lossbench.data.memory``, which the report
reads names with) does not import the data module, Lightning and ``datasets``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lossbench.data.builtin import BUILTIN_DATASETS, UnknownDatasetError, load_builtin, standardization_stats
    from lossbench.data.config import DataConfig
    from lossbench.data.datamodule import HFDataModule, HubUnreachableError, SeededShuffleSampler
    from lossbench.data.spec import DataSpec
    from lossbench.data.tokenize import BPETokenizer, ByteTokenizer, HFTokenizer, train_bpe_tokenizer

_PUBLIC = {
    "BPETokenizer": "lossbench.data.tokenize",
    "BUILTIN_DATASETS": "lossbench.data.builtin",
    "ByteTokenizer": "lossbench.data.tokenize",
    "DataConfig": "lossbench.data.config",
    "DataSpec": "lossbench.data.spec",
    "HFDataModule": "lossbench.data.datamodule",
    "HFTokenizer": "lossbench.data.tokenize",
    "HubUnreachableError": "lossbench.data.datamodule",
    "SeededShuffleSampler": "lossbench.data.datamodule",
    "UnknownDatasetError": "lossbench.data.builtin",
    "load_builtin": "lossbench.data.builtin",
    "standardization_stats": "lossbench.data.builtin",
    "train_bpe_tokenizer": "lossbench.data.tokenize",
}

__all__ = [
    "BPETokenizer",
    "BUILTIN_DATASETS",
    "ByteTokenizer",
    "DataConfig",
    "DataSpec",
    "HFDataModule",
    "HFTokenizer",
    "HubUnreachableError",
    "SeededShuffleSampler",
    "UnknownDatasetError",
    "load_builtin",
    "standardization_stats",
    "train_bpe_tokenizer",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lossbench.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

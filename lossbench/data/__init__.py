"""Data: Hugging Face ``datasets`` as LightningDataModules, bundled real datasets, offline tokenizers."""

from lossbench.data.builtin import BUILTIN_DATASETS, UnknownDatasetError, load_builtin, standardization_stats
from lossbench.data.config import DataConfig
from lossbench.data.datamodule import HFDataModule, HubUnreachableError, SeededShuffleSampler
from lossbench.data.spec import DataSpec
from lossbench.data.tokenize import BPETokenizer, ByteTokenizer, HFTokenizer, train_bpe_tokenizer

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

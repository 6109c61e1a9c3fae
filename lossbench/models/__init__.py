"""The Transformer backbone and its input adapters; ``HFEncoder`` (a pretrained Hugging Face model, the ``hf``
extra) is loaded on first use, so importing this package does not import ``transformers``."""

from typing import Any

from lossbench.models.adapters import FeatureTokenizer, PatchEmbedding, TokenEmbedding
from lossbench.models.backbone import TransformerBackbone

__all__ = ["FeatureTokenizer", "HFEncoder", "PatchEmbedding", "TokenEmbedding", "TransformerBackbone"]


def __getattr__(name: str) -> Any:
    if name == "HFEncoder":
        from lossbench.models.hf import HFEncoder

        return HFEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The Transformer backbone and its input adapters."""

from lossbench.models.adapters import FeatureTokenizer, PatchEmbedding, TokenEmbedding
from lossbench.models.backbone import TransformerBackbone

__all__ = ["FeatureTokenizer", "PatchEmbedding", "TokenEmbedding", "TransformerBackbone"]

"""Input adapters: turn a batch of raw inputs into tokens (N, T, d_model) and a padding mask.

Each adapter returns ``(tokens, key_padding_mask)``, the mask ``True`` at padding
positions (or ``None`` when nothing is padded), and holds learned positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lossbench.functional._checks import shape_str


def _positive(owner: str, name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: `{name}` must be a positive int, got {value!r}")
    return value


class TokenEmbedding(nn.Module):
    """Token ids (N, T) -> embeddings plus learned positions; ``padding_idx`` positions are masked.

    Example:
        >>> import torch
        >>> emb = TokenEmbedding(vocab_size=10, d_model=8, max_length=5)
        >>> tokens, mask = emb(torch.tensor([[3, 4, 0, 0]]))
        >>> tokens.shape, mask.tolist()
        (torch.Size([1, 4, 8]), [[False, False, True, True]])
    """

    def __init__(self, vocab_size: int, d_model: int, max_length: int, padding_idx: int | None = 0) -> None:
        super().__init__()
        self.vocab_size = _positive("TokenEmbedding", "vocab_size", vocab_size)
        self.max_length = _positive("TokenEmbedding", "max_length", max_length)
        self.d_model = _positive("TokenEmbedding", "d_model", d_model)
        self.padding_idx = padding_idx
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.position = nn.Parameter(torch.zeros(max_length, d_model))
        nn.init.normal_(self.position, std=0.02)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        if tokens.dim() != 2 or tokens.is_floating_point():
            raise ValueError(
                "TokenEmbedding: `tokens` must be int64 ids of shape (N, T), "
                f"got {tokens.dtype} {shape_str(tokens.shape)}"
            )
        if tokens.shape[1] > self.max_length:
            raise ValueError(
                f"TokenEmbedding: sequences of length {tokens.shape[1]} exceed `max_length`={self.max_length}"
            )
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        mask = tokens.eq(self.padding_idx) if self.padding_idx is not None else None
        return x, mask


class FeatureTokenizer(nn.Module):
    """Numeric features (N, F) -> one token per feature, ``x_j * W_j + b_j`` (FT-Transformer, Gorishniy et al. 2021).

    The per-feature bias ``b_j`` is the feature's learned position.

    Example:
        >>> import torch
        >>> FeatureTokenizer(num_features=3, d_model=8)(torch.randn(2, 3))[0].shape
        torch.Size([2, 3, 8])
    """

    def __init__(self, num_features: int, d_model: int) -> None:
        super().__init__()
        self.num_features = _positive("FeatureTokenizer", "num_features", num_features)
        self.d_model = _positive("FeatureTokenizer", "d_model", d_model)
        bound = d_model**-0.5
        self.weight = nn.Parameter(torch.empty(num_features, d_model).uniform_(-bound, bound))
        self.position = nn.Parameter(torch.empty(num_features, d_model).uniform_(-bound, bound))

    def forward(self, features: Tensor) -> tuple[Tensor, None]:
        if features.dim() != 2 or features.shape[1] != self.num_features or not features.is_floating_point():
            raise ValueError(
                f"FeatureTokenizer: `features` must be floats of shape (N, {self.num_features}), "
                f"got {features.dtype} {shape_str(features.shape)}"
            )
        return features.unsqueeze(-1) * self.weight + self.position, None


class PatchEmbedding(nn.Module):
    """Images (N, C, H, W) or (N, H, W) -> one token per row (``patch_size=None``) or per patch.

    Example:
        >>> import torch
        >>> PatchEmbedding((1, 8, 8), d_model=16)(torch.randn(2, 8, 8))[0].shape    # 8 rows
        torch.Size([2, 8, 16])
        >>> PatchEmbedding((1, 8, 8), d_model=16, patch_size=4)(torch.randn(2, 1, 8, 8))[0].shape
        torch.Size([2, 4, 16])
    """

    def __init__(self, image_shape: Sequence[int], d_model: int, patch_size: int | None = None) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"PatchEmbedding: `image_shape` must be (C, H, W), got {tuple(image_shape)!r}")
        c, h, w = (_positive("PatchEmbedding", "image_shape", int(v)) for v in image_shape)
        self.image_shape = (c, h, w)
        self.d_model = _positive("PatchEmbedding", "d_model", d_model)
        self.patch_size = patch_size
        if patch_size is None:
            self.proj: nn.Module = nn.Linear(c * w, d_model)
            num_tokens = h
        else:
            _positive("PatchEmbedding", "patch_size", patch_size)
            if h % patch_size or w % patch_size:
                raise ValueError(f"PatchEmbedding: `patch_size`={patch_size} must divide the image size {h}x{w}")
            self.proj = nn.Conv2d(c, d_model, kernel_size=patch_size, stride=patch_size)
            num_tokens = (h // patch_size) * (w // patch_size)
        self.position = nn.Parameter(torch.zeros(num_tokens, d_model))
        nn.init.normal_(self.position, std=0.02)

    def forward(self, images: Tensor) -> tuple[Tensor, None]:
        if images.dim() == 3 and self.image_shape[0] == 1:
            images = images.unsqueeze(1)
        if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape or not images.is_floating_point():
            raise ValueError(
                f"PatchEmbedding: `images` must be floats of shape (N, {', '.join(map(str, self.image_shape))}), "
                f"got {images.dtype} {shape_str(images.shape)}"
            )
        if self.patch_size is None:
            n, c, h, w = images.shape
            x = self.proj(images.permute(0, 2, 1, 3).reshape(n, h, c * w))
        else:
            x = self.proj(images).flatten(2).transpose(1, 2)
        return x + self.position, None

"""Backbones of the kind users bring (``backbone: {class_path: ..., init_args: ...}``), for the bundled recipes
and the docs: each follows the contract of :mod:`lossbench.models.custom` and nothing else of lossbench's."""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Two 3x3 convolutions and a 2x2 average pool: ``(B, C, H, W)`` images -> ``(B, 4 * channels)`` features.

    Example:
        >>> import torch
        >>> SmallCNN(in_channels=1, channels=8)(torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3, 32])
    """

    def __init__(self, in_channels: int = 1, channels: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.out_features = 4 * channels

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

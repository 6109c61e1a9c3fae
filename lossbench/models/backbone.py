"""The Transformer backbone: an input adapter, ``torch.nn.TransformerEncoder`` and pooling."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from lossbench.config import BackboneConfig

Pooling = Literal["cls", "mean", "none"]


class TransformerBackbone(nn.Module):
    """Adapter -> ``nn.TransformerEncoder`` (batch_first) -> pooling.

    Args:
        adapter: an input adapter (``TokenEmbedding``, ``FeatureTokenizer``, ``PatchEmbedding``
            or any module returning ``(tokens, key_padding_mask)``) with ``d_model`` outputs.
        d_model: width of the tokens.
        nhead: attention heads; must divide ``d_model``.
        num_layers: encoder layers.
        dim_feedforward: width of the feed-forward block.
        dropout: dropout in the encoder layers.
        norm_first: pre-LayerNorm layers (with a final LayerNorm) instead of post-LN.
        activation: "relu" or "gelu".
        pooling: "cls" (a learned token), "mean" (over non-padding tokens) or "none" (token-level outputs).
        causal: a causal attention mask, for language modelling (requires ``pooling="none"``).
        seed: if given, the parameters are initialised from this seed (same seed, same weights).

    Example:
        >>> import torch
        >>> from lossbench.models import FeatureTokenizer, TransformerBackbone
        >>> net = TransformerBackbone(FeatureTokenizer(5, 16), d_model=16, nhead=2, num_layers=1, seed=0)
        >>> net(torch.randn(3, 5)).shape
        torch.Size([3, 16])
    """

    def __init__(
        self,
        adapter: nn.Module,
        d_model: int = BackboneConfig.d_model,  # every default and check is BackboneConfig's, defined once
        nhead: int = BackboneConfig.nhead,
        num_layers: int = BackboneConfig.num_layers,
        dim_feedforward: int | None = BackboneConfig.dim_feedforward,
        dropout: float = BackboneConfig.dropout,
        norm_first: bool = BackboneConfig.norm_first,
        activation: str = BackboneConfig.activation,
        pooling: Pooling = BackboneConfig.pooling,
        causal: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        owner = "TransformerBackbone"
        if pooling not in ("cls", "mean", "none"):  # "none" (token-level outputs) is the module's, not a recipe's
            raise ValueError(f"{owner}: `pooling` must be 'cls', 'mean' or 'none', got {pooling!r}")
        pooled: Literal["cls", "mean"] = "cls" if pooling == "none" else pooling
        config = BackboneConfig(d_model, nhead, num_layers, dim_feedforward, dropout, norm_first, activation, pooled)
        config.check(owner)  # a ConfigError (a ValueError) naming the argument
        if causal and pooling != "none":
            raise ValueError(
                f"{owner}: `causal=True` is for token-level outputs and needs pooling='none', got {pooling!r}"
            )
        if getattr(adapter, "d_model", d_model) != d_model:
            raise ValueError(f"{owner}: the adapter makes tokens of width {adapter.d_model}, but `d_model`={d_model}")
        self.d_model, self.pooling, self.causal, self.seed = d_model, pooling, causal, seed
        self.adapter = adapter
        layer = nn.TransformerEncoderLayer(
            d_model,
            nhead,
            dim_feedforward or 4 * d_model,
            dropout,
            activation,
            batch_first=True,
            norm_first=norm_first,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        if seed is not None:
            self.reset_parameters(seed)

    @property
    def out_features(self) -> int:
        """Width of the features handed to the head."""
        return self.d_model

    def reset_parameters(self, seed: int) -> None:
        """Re-initialise every parameter from ``seed``, without touching the global RNG."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() >= 2 and "position" not in name:
                    bound = (6.0 / (p.shape[-1] + p.shape[-2])) ** 0.5  # xavier-uniform
                    p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)
                elif "norm" in name and name.endswith("weight"):
                    p.fill_(1.0)
                elif "position" in name or name == "cls":
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
                else:
                    p.zero_()

    def forward(self, inputs: Tensor) -> Tensor:
        x, pad = self.adapter(inputs)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
            if pad is not None:
                pad = torch.cat([pad.new_zeros(pad.shape[0], 1), pad], dim=1)
        mask = None
        if self.causal:
            n = x.shape[1]
            mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)  # True: may not attend
        x = self.norm(self.encoder(x, mask=mask, src_key_padding_mask=pad, is_causal=self.causal))
        if self.pooling == "cls":
            return x[:, 0]
        if self.pooling == "mean":
            if pad is None:
                return x.mean(1)
            keep = (~pad).unsqueeze(-1).to(x.dtype)
            return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return x

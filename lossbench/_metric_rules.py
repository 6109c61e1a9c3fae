"""The rules of the metrics that the report applies again to saved predictions: torch alone, so that reading a
results folder does not import torchmetrics (nor what torchmetrics imports). :mod:`lossbench.metrics` uses them.
"""

from __future__ import annotations

import torch
from torch import Tensor

NLL_FLOOR = 1e-12  # probabilities are floored here before a log: one example adds at most -log(1e-12) = 27.63
ECE_BINS = 15  # equal-width confidence bins of the ``ece`` metric (and of the reliability diagrams)


def calibration_bins(confidence: Tensor, n_bins: int = ECE_BINS) -> Tensor:
    """The bin of each confidence under torchmetrics' calibration-error rule, which the ``ece`` metric uses.

    ``n_bins`` equal-width bins ``[lo, hi)`` with edges ``torch.linspace(0, 1, n_bins + 1)`` in the
    confidences' own dtype (so that a confidence equal to an edge lands where torchmetrics puts it), and one
    more bin, index ``n_bins``, that holds a confidence of exactly 1.0. The reliability diagrams and the
    example-level test of ``ece`` bin with it.

    Example:
        >>> calibration_bins(torch.tensor([0.0, 0.1, 0.2, 0.99, 1.0]), n_bins=5).tolist()
        [0, 0, 1, 4, 5]
    """
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=confidence.dtype)
    return torch.bucketize(confidence, edges, right=True) - 1

"""The focal modulating factor shared by the multiclass and the binary focal loss."""

from __future__ import annotations

import torch
from torch import Tensor


def modulating_factor(base: Tensor, gamma: float) -> Tensor:
    r"""``base ** gamma`` for ``base = 1 - p_t`` in [0, 1], with a finite gradient everywhere.

    For :math:`0 < \gamma < 1` the derivative :math:`\gamma\,b^{\gamma - 1}` is infinite at
    :math:`b = 0` (a saturated, correct prediction) and overflows for denormal :math:`b`;
    multiplied by a zero upstream gradient (an ignored position) it gives NaN. Below the
    dtype's smallest normal number the value is kept (a detached power) and the gradient
    through the factor is 0, which is the limit of the whole loss's gradient there: the
    loss :math:`b^\gamma \cdot \mathrm{CE}` has :math:`\mathrm{CE} \approx b`.

    Example:
        >>> import torch
        >>> b = torch.tensor([0.0, 0.25], requires_grad=True)
        >>> f = modulating_factor(b, 0.5)
        >>> f.detach(), torch.autograd.grad(f.sum(), b)[0]
        (tensor([0.0000, 0.5000]), tensor([0., 1.]))
    """
    small = base < torch.finfo(base.dtype).tiny
    safe = torch.where(small, torch.ones_like(base), base)  # no infinite derivative enters the backward
    return torch.where(small, base.detach().clamp_min(0.0).pow(gamma), safe.pow(gamma))

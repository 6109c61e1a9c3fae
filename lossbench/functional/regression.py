"""Regression losses: ``input`` and ``target`` are real values of the same shape."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.functional._checks import (
    check_float,
    check_positive,
    check_reduction,
    check_same_shape,
    shape_str,
    validate_args_enabled,
)
from lossbench.functional._reduce import reduce, upcast


def check_regression_args(fn: str, input: Tensor, target: Tensor, reduction: str) -> None:
    """Check a regression loss's arguments: known ``reduction``, real tensors of one shape.

    For writing your own regression loss; ``fn`` names it in the error messages.
    """
    check_reduction(fn, reduction)
    check_float(fn, "input", input)
    if isinstance(target, Tensor) and not target.is_floating_point():
        raise TypeError(
            f"{fn}: `target` must be a floating-point tensor of real values, got dtype {target.dtype}; "
            "class labels need a classification loss"
        )
    check_float(fn, "target", target)
    check_same_shape(fn, input, target)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Mean squared error :math:`\ell = (x - y)^2`.

    Example:
        >>> import torch
        >>> from lossbench.functional import mse_loss
        >>> mse_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
        tensor(2.5000)
    """
    check_regression_args("mse_loss", input, target, reduction)
    return F.mse_loss(upcast(input), upcast(target), reduction=reduction)


def mae_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Mean absolute error (L1) :math:`\ell = |x - y|`.

    Example:
        >>> import torch
        >>> from lossbench.functional import mae_loss
        >>> mae_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
        tensor(1.5000)
    """
    check_regression_args("mae_loss", input, target, reduction)
    return F.l1_loss(upcast(input), upcast(target), reduction=reduction)


def huber_loss(input: Tensor, target: Tensor, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    r"""Huber loss: :math:`\tfrac12 d^2` for :math:`|d| \le \delta`, else :math:`\delta(|d| - \tfrac12\delta)`.

    Example:
        >>> import torch
        >>> from lossbench.functional import huber_loss
        >>> huber_loss(torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0]), delta=1.0, reduction="none")
        tensor([0.1250, 2.5000])
    """
    check_regression_args("huber_loss", input, target, reduction)
    check_positive("huber_loss", "delta", delta)
    return F.huber_loss(upcast(input), upcast(target), reduction=reduction, delta=delta)


def smooth_l1_loss(input: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "mean") -> Tensor:
    r"""Smooth L1: Huber divided by ``beta`` (:math:`\tfrac{1}{2\beta} d^2` near zero, :math:`|d| - \tfrac12\beta` far).

    Example:
        >>> import torch
        >>> from lossbench.functional import smooth_l1_loss
        >>> smooth_l1_loss(torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0]), beta=1.0, reduction="none")
        tensor([0.1250, 2.5000])
    """
    check_regression_args("smooth_l1_loss", input, target, reduction)
    check_positive("smooth_l1_loss", "beta", beta)
    return F.smooth_l1_loss(upcast(input), upcast(target), reduction=reduction, beta=beta)


def log_cosh_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Log-cosh loss :math:`\ell = \log\cosh(x - y)`, computed stably as
    :math:`|d| + \mathrm{softplus}(-2|d|) - \log 2`.

    Quadratic near zero, linear in the tails, smooth everywhere.

    Example:
        >>> import torch
        >>> from lossbench.functional import log_cosh_loss
        >>> log_cosh_loss(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0]), reduction="none")
        tensor([0.0000, 0.4338])
    """
    check_regression_args("log_cosh_loss", input, target, reduction)
    d = upcast(input) - upcast(target)
    # log cosh d = d + softplus(-2d) - log 2, stable for both signs; softplus turns linear past
    # its threshold, dropping log1p(exp(-threshold)): 50 keeps that below float64 precision
    return reduce(d + F.softplus(-2.0 * d, threshold=50.0) - math.log(2.0), reduction)


def gaussian_nll_loss(
    input: Tensor,
    target: Tensor,
    var: Tensor,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    r"""Gaussian negative log-likelihood :math:`\tfrac12(\log\sigma^2 + (x - y)^2/\sigma^2)`
    (+ :math:`\tfrac12\log 2\pi` if ``full``).

    ``input`` is the predicted mean and ``var`` the predicted variance, both of the
    target's shape (no broadcasting). The variance is clamped to at least ``eps`` for
    stability, as in torch; a negative variance is an error.

    Example:
        >>> import torch
        >>> from lossbench.functional import gaussian_nll_loss
        >>> gaussian_nll_loss(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([1.0]))
        tensor(0.5000)
    """
    fn = "gaussian_nll_loss"
    check_regression_args(fn, input, target, reduction)
    check_float(fn, "var", var)
    if var.shape != input.shape:
        raise ValueError(
            f"{fn}: `var` must have the shape of `input` {shape_str(input.shape)}, got {shape_str(var.shape)}"
        )
    check_positive(fn, "eps", eps)
    try:  # torch checks the variance's sign anyway: reuse its pass, give our message
        return F.gaussian_nll_loss(upcast(input), upcast(target), upcast(var), full=full, eps=eps, reduction=reduction)
    except ValueError as exc:
        if "negative" not in str(exc):
            raise
        raise ValueError(f"{fn}: `var` must be non-negative, got a minimum of {float(var.detach().min())}") from None


def poisson_nll_loss(
    input: Tensor,
    target: Tensor,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: str = "mean",
) -> Tensor:
    r"""Poisson negative log-likelihood for count targets: :math:`e^x - yx` (with ``log_input``).

    ``target`` holds non-negative counts (integer or float). ``full`` adds Stirling's
    term for :math:`\log y!`, as in torch.

    Example:
        >>> import torch
        >>> from lossbench.functional import poisson_nll_loss
        >>> poisson_nll_loss(torch.tensor([0.0]), torch.tensor([2.0]))
        tensor(1.)
    """
    fn = "poisson_nll_loss"
    if isinstance(target, Tensor) and not target.is_floating_point() and not target.is_complex():
        target = target.to(input.dtype if isinstance(input, Tensor) else torch.float32)
    check_regression_args(fn, input, target, reduction)
    if validate_args_enabled() and target.numel() and float(target.min()) < 0:
        raise ValueError(f"{fn}: `target` must hold non-negative counts, got {float(target.min())}")
    if not log_input and validate_args_enabled() and input.numel() and float(input.detach().min()) < 0:
        raise ValueError(
            f"{fn}: `input` must be a non-negative rate when log_input=False, got {float(input.detach().min())}"
        )
    return F.poisson_nll_loss(
        upcast(input), upcast(target), log_input=log_input, full=full, eps=eps, reduction=reduction
    )


def quantile_loss(
    input: Tensor,
    target: Tensor,
    quantiles: float | Sequence[float] = 0.5,
    reduction: str = "mean",
) -> Tensor:
    r"""Pinball (quantile) loss :math:`\ell_q = \max(q\,d, (q - 1)\,d)` with :math:`d = y - x`, averaged over quantiles.

    With one quantile, ``input`` has the target's shape; with ``Q`` quantiles it has
    shape ``(*target.shape, Q)``. ``reduction="none"`` returns the target's shape.
    At ``q = 0.5`` it is half the absolute error.

    Example:
        >>> import torch
        >>> from lossbench.functional import quantile_loss
        >>> quantile_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1.0]), quantiles=[0.1, 0.9])
        tensor(0.5000)
    """
    fn = "quantile_loss"
    qs = [float(quantiles)] if isinstance(quantiles, (int, float)) else [float(q) for q in quantiles]
    if not qs:
        raise ValueError(f"{fn}: `quantiles` must hold at least one value in (0, 1), got []")
    for q in qs:
        if not 0.0 < q < 1.0:
            raise ValueError(f"{fn}: `quantiles` must be in (0, 1), got {q!r}")
    check_reduction(fn, reduction)
    check_float(fn, "input", input)
    check_float(fn, "target", target)
    single = isinstance(quantiles, (int, float))
    expected = tuple(target.shape) if single else (*target.shape, len(qs))
    if tuple(input.shape) != expected:
        raise ValueError(
            f"{fn}: `input` must have shape {shape_str(expected)} for `target` of shape "
            f"{shape_str(target.shape)} and {len(qs)} quantile(s), got {shape_str(input.shape)}"
        )
    x, y = upcast(input), upcast(target)
    # max(q d, (q - 1) d) = q d + max(-d, 0): relu's backward is cheaper than maximum's
    if single:
        d = y - x
        return reduce(qs[0] * d + F.relu(-d), reduction)
    levels = torch.tensor(qs, dtype=x.dtype, device=x.device)
    d = y.unsqueeze(-1) - x
    loss = levels * d + F.relu(-d)
    if reduction == "mean":
        return loss.mean()  # one flat mean: the mean over positions of the mean over quantiles
    return reduce(loss.mean(-1), reduction)

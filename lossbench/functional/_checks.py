"""Argument checks shared by the functional losses.

Every check raises an error that names the function, the argument, what was
expected and what was given. Shape and dtype checks are pure Python and always
run; value checks (ranges, probability sums, variances) read tensor values and
can be switched off with :func:`set_validate_args` for speed, as
``torch.distributions`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")
_VALIDATE_ARGS = True


def set_validate_args(enabled: bool) -> None:
    """Turn value checks (target ranges, probability sums, variances) on or off globally.

    Shape and dtype checks always run: they cost no tensor pass and no device sync.
    """
    global _VALIDATE_ARGS
    _VALIDATE_ARGS = bool(enabled)


def validate_args_enabled() -> bool:
    """Whether value checks are on (the default)."""
    return _VALIDATE_ARGS


@contextlib.contextmanager
def validate_args(enabled: bool) -> Iterator[None]:
    """Context manager that sets :func:`set_validate_args` for a block and restores it."""
    previous = _VALIDATE_ARGS
    set_validate_args(enabled)
    try:
        yield
    finally:
        set_validate_args(previous)


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_reduction(fn: str, reduction: str, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{fn}: `reduction` must be one of {allowed}, got {reduction!r}")


def check_float(fn: str, name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: `{name}` must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: `{name}` must be a floating-point tensor, got dtype {x.dtype}")


def check_same_shape(fn: str, input: Tensor, target: Tensor, input_name: str = "input") -> None:
    if input.shape != target.shape:
        raise ValueError(
            f"{fn}: `target` must have the shape of `{input_name}` {shape_str(input.shape)}, "
            f"got {shape_str(target.shape)} (lossbench never broadcasts)"
        )


def check_range(fn: str, name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{fn}: `{name}` must be in {bracket}{low}, {high}], got {value!r}")


def check_positive(fn: str, name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{fn}: `{name}` must be > 0, got {value!r}")


def check_class_input(fn: str, input: Tensor, target: Tensor) -> int:
    """Check (..., C) logits against (...) integer targets; return C."""
    check_float(fn, "input", input)
    if input.dim() < 1:
        raise ValueError(f"{fn}: `input` must have shape (..., C) with classes last, got a scalar")
    if not isinstance(target, Tensor):
        raise TypeError(f"{fn}: `target` must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"{fn}: `target` must hold integer class indices (int64), got dtype {target.dtype}; "
            "for probability targets use a distribution loss such as soft_cross_entropy"
        )
    if target.shape != input.shape[:-1]:
        raise ValueError(
            f"{fn}: `target` must have shape {shape_str(input.shape[:-1])} for `input` of shape "
            f"{shape_str(input.shape)} (classes last), got {shape_str(target.shape)}"
        )
    return input.shape[-1]


def check_class_target_values(fn: str, target: Tensor, num_classes: int, ignore_index: int | None) -> bool:
    """Targets must lie in [0, C) or equal ``ignore_index``; one fused pass in the common case.

    Returns whether some position may equal ``ignore_index`` (always True when value
    checks are off), so callers can take the unmasked fast path when none does.
    """
    if not _VALIDATE_ARGS:  # one cheap pass still buys the unmasked fast path
        return ignore_index is not None and bool((target == ignore_index).any())
    if target.numel() == 0:
        return False
    low, high = torch.aminmax(target)
    lo, hi = int(low), int(high)
    may_ignore = ignore_index is not None and lo <= ignore_index <= hi
    if lo >= 0 and hi < num_classes:
        return may_ignore
    bad = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if bool(bad.any()):
        value = int(target[bad][0])
        allowed = f"[0, {num_classes - 1}]" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"{fn}: `target` values must be class indices in {allowed}, got {value}")
    return may_ignore


def check_binary_target_values(fn: str, target: Tensor) -> None:
    if not _VALIDATE_ARGS or target.numel() == 0:
        return
    lo, hi = torch.aminmax(target.detach())
    if not (float(lo) >= 0.0 and float(hi) <= 1.0):
        value = float(lo) if not float(lo) >= 0.0 else float(hi)
        raise ValueError(f"{fn}: `target` values must be in [0, 1], got {value}")


def check_probability_target(fn: str, input: Tensor, target: Tensor) -> None:
    """Target rows are probability vectors over the last dimension."""
    check_float(fn, "input", input)
    check_float(fn, "target", target)
    if input.dim() < 1:
        raise ValueError(f"{fn}: `input` must have shape (..., C) with classes last, got a scalar")
    check_same_shape(fn, input, target)
    if not _VALIDATE_ARGS or target.numel() == 0:
        return
    t = target.detach()
    sums = t.sum(-1, dtype=torch.float32)
    tol = max(1e-4, 4 * torch.finfo(t.dtype).eps * t.shape[-1] ** 0.5)
    lo = float(torch.amin(t))
    if lo < 0.0:
        raise ValueError(f"{fn}: `target` must be probabilities (>= 0), got a value of {lo}")
    worst = float((sums - 1.0).abs().max())
    if not worst <= tol:
        raise ValueError(
            f"{fn}: `target` rows must sum to 1 over the last dimension (tolerance {tol:.1e}), "
            f"got a row off by {worst:.3g}"
        )

"""Is a validation curve still improving when the budget ends?

A verdict at a fixed budget says nothing about a loss whose curve was still rising: it may
overtake the others with a few more steps. The test: an ordinary least-squares line
(``scipy.stats.linregress``) through the last third of the evaluations (never the step-0
one); the curve is *still improving* when that line moves the metric in its good direction
by more than twice the residual noise around it over the tail, and its slope is one-sided
significant (p < 0.05).

>>> steps = list(range(0, 130, 10))
>>> rising = [0.1 + 0.005 * s for s in steps]
>>> still_improving(steps, rising, "max").flag
True
>>> flat = [0.1] + [0.9, 0.91, 0.9, 0.91, 0.9, 0.91, 0.9, 0.91, 0.9, 0.91, 0.9, 0.91]
>>> still_improving(steps, flat, "max").flag
False
>>> still_improving([0, 10], [0.1, 0.2], "max").flag is None  # too few evaluations to tell
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TAIL = 1 / 3  # share of the (trained) evaluations the test looks at
MIN_POINTS = 4  # fewer evaluations in the tail than this: no verdict (flag None)
NOISE_FACTOR = 2.0
ALPHA = 0.05


@dataclass(frozen=True)
class Improving:
    """The still-improving test of one curve: ``flag`` is None when there were too few evaluations."""

    flag: bool | None
    slope: float | None = None  # per step, in the metric's units (signed)
    gain: float | None = None  # the fitted line's improvement over the tail (positive = better)
    noise: float | None = None  # residual standard deviation around the line
    points: int = 0


def still_improving(
    steps: Sequence[int], values: Sequence[float | None], mode: str, *, tail: float = TAIL, min_points: int = MIN_POINTS
) -> Improving:
    """Fit a line to the last ``tail`` of the evaluations after step 0; see the module docstring."""
    from scipy.stats import linregress

    if mode not in ("max", "min"):
        raise ValueError(f"still_improving: `mode` must be 'max' or 'min', got {mode!r}")
    pairs = [(int(s), float(v)) for s, v in zip(steps, values) if s > 0 and v is not None and math.isfinite(float(v))]
    count = max(min_points, math.ceil(len(pairs) * tail))
    if len(pairs) < min_points:
        return Improving(None, points=len(pairs))
    pairs = pairs[-count:]
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    if xs[-1] == xs[0]:
        return Improving(None, points=len(pairs))
    sign = 1.0 if mode == "max" else -1.0
    if max(ys) == min(ys):
        return Improving(False, 0.0, 0.0, 0.0, len(pairs))
    fit = linregress(xs, ys)
    gain = sign * fit.slope * (xs[-1] - xs[0])
    residuals = [y - (fit.intercept + fit.slope * x) for x, y in zip(xs, ys)]
    noise = math.sqrt(sum(r * r for r in residuals) / max(len(ys) - 2, 1))
    p_two = fit.pvalue if math.isfinite(fit.pvalue) else 0.0  # a perfect line: no residual noise at all
    p_one = p_two / 2 if gain > 0 else 1 - p_two / 2
    flag = bool(gain > NOISE_FACTOR * noise and p_one < ALPHA)
    return Improving(flag, float(fit.slope), float(gain), float(noise), len(pairs))

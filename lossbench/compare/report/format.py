"""Number formatting shared by the report's tables and sentences."""

from __future__ import annotations

from typing import Any

from lossbench.compare.analysis.stats import Estimate, Paired, Reached


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def _signed(x: float | None) -> str:
    if x is None:
        return "—"
    return "0" if x == 0 else f"{x:+.4g}"


def _plain(v: Any) -> str:
    return "none" if v is None else str(v)


def _est(e: Estimate) -> str:
    if e.mean is None:
        return "—"
    if e.half_width is None:
        return f"{e.mean:.4g} (n=1)"
    return f"{e.mean:.4g} ± {e.half_width:.2g}"


def _ci(e: Estimate) -> str:
    return "—" if e.low is None else f"[{e.low:.4g}, {e.high:.4g}]"


def _p(p: Paired) -> str:
    """The raw p-value of a paired test."""
    return _pvalue(p.p)


def _padj(p: Paired) -> str:
    """The Holm-adjusted p-value of a paired test (the one that decides)."""
    return _pvalue(p.decisive_p)


def _pvalue(x: float | None) -> str:
    if x is None:
        return "—"
    return "<0.001" if x < 0.001 else f"{x:.3g}"


def _untested(p: Paired) -> str:
    """Why a paired comparison has no p-value."""
    if p.n < 2:
        return "fewer than 2 paired seeds"
    if p.diff.mean == 0:
        return "identical on every seed"
    return f"the same difference ({_signed(p.diff.mean)}) on every seed"


def _reached(r: Reached) -> str:
    if r.n == 0:
        return "—"
    if r.reached == 0:
        return f"not reached (0/{r.n})"
    return f"{r.mean:.4g} ({r.label})"

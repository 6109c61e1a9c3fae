"""Plots drawn only when what they show changed: rendering a finished comparison's report again redraws nothing.

``plots/drawn.json`` maps each plot's file name to the sha256 of what it was drawn from (its inputs, the report's and
the analysis' code, matplotlib's version) and to the sha256 of the file written. A plot whose inputs and file are
both as recorded is kept; any other is drawn (and the index updated). Drawing is deterministic (same inputs, same
bytes), so a kept plot is the plot that drawing would give.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> def draw(path):
    ...     path.write_text("a plot of [1, 2]")
    ...     return path
    >>> plots = PlotCache(folder)
    >>> _ = plots.draw("curve.png", [1, 2], draw); plots.save(); plots.summary()
    'plots: 1 drawn'
    >>> again = PlotCache(folder)
    >>> _ = again.draw("curve.png", [1, 2], draw); again.summary()
    'plots: none redrawn (1 unchanged)'
    >>> changed = PlotCache(folder)
    >>> _ = changed.draw("curve.png", [1, 3], draw); changed.summary()
    'plots: 1 redrawn (curve.png), 0 unchanged'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from lossbench.compare.store.records import atomic_write_text

DRAWN_FILE = "drawn.json"
DRAWING_CODE = ("compare/report", "compare/analysis")  # the package folders whose code decides what a plot shows


class PlotCache:
    """The plots of one rendering of ``plots_dir``: which were drawn and which kept."""

    def __init__(self, plots_dir: str | Path) -> None:
        self.dir = Path(plots_dir)
        self.before = _load(self.dir / DRAWN_FILE)
        self.index: dict[str, dict[str, str]] = {}
        self.drawn: list[str] = []
        self.kept: list[str] = []

    def draw(self, name: str, inputs: Any, draw: Callable[[Path], Path]) -> Path:
        """``plots_dir/name``: kept when drawn before from the same ``inputs`` (and unchanged since), else
        ``draw(path)``."""
        path, key = self.dir / name, fingerprint(inputs)
        entry = self.before.get(name) or {}
        if entry.get("inputs") == key and path.is_file() and _file_sha(path) == entry.get("file"):
            self.kept.append(name)
        else:
            draw(path)
            self.drawn.append(name)
        self.index[name] = {"inputs": key, "file": _file_sha(path)}
        return path

    def save(self) -> None:
        """Write the index of this rendering's plots (a plot no longer drawn leaves it)."""
        atomic_write_text(self.dir / DRAWN_FILE, json.dumps(self.index, indent=1, sort_keys=True) + "\n")

    def summary(self) -> str:
        """One line: how many plots were drawn, redrawn (naming them) or kept."""
        if not self.before:
            return f"plots: {len(self.drawn)} drawn"
        if not self.drawn:
            return f"plots: none redrawn ({len(self.kept)} unchanged)"
        return f"plots: {len(self.drawn)} redrawn ({', '.join(self.drawn)}), {len(self.kept)} unchanged"


def fingerprint(inputs: Any) -> str:
    """sha256 of ``inputs`` (JSON-like values, dataclasses, numpy arrays) and of the code that draws from them."""
    text = json.dumps(inputs, default=_plain, sort_keys=True, allow_nan=True)
    return hashlib.sha256((_code_version() + text).encode()).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return f"ndarray {value.dtype} {value.shape} {digest}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"a plot's inputs must be plain values, dataclasses or numpy arrays, got {type(value).__name__}")


@cache
def _code_version() -> str:
    import matplotlib

    package = Path(__file__).resolve().parents[2]  # lossbench/
    digest = hashlib.sha256(matplotlib.__version__.encode())
    for folder in DRAWING_CODE:
        for source in sorted((package / folder).glob("*.py")):
            digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(path: Path) -> dict[str, dict[str, str]]:
    """The index, or nothing when it is missing or unreadable (then every plot is drawn)."""
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) and all(isinstance(v, dict) for v in index.values()) else {}

"""A no-op rerun of a finished comparison: ``lossbench report DIR`` with its plots kept against the same command
redrawing every plot (``plots/drawn.json`` removed first), each in a fresh process (imports included).

The two are interleaved round by round, median over rounds. Run it alone: another torch process on the same cores
distorts every figure.

    python benchmarks/rerun.py DIR [--rounds 5]

DIR: a finished comparison's folder, e.g. ``runs/demo`` after ``make demo``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _seconds(folder: Path, redraw: bool) -> float:
    if redraw:
        (folder / "plots" / "drawn.json").unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lossbench.cli", "report", str(folder)], check=True, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    said = done.stdout.splitlines()[0]
    assert said.startswith("plots: none redrawn") != redraw and said.endswith(" drawn") == redraw, said
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    _seconds(args.folder, redraw=False)  # warm-up (and the plots drawn once for this code)
    times: dict[str, list[float]] = {"kept": [], "redrawn": []}
    for i in range(args.rounds):
        for name in ("kept", "redrawn") if i % 2 == 0 else ("redrawn", "kept"):
            times[name].append(_seconds(args.folder, redraw=name == "redrawn"))  # a redraw writes the index back
    kept, redrawn = statistics.median(times["kept"]), statistics.median(times["redrawn"])
    print(f"lossbench report {args.folder}: plots kept {kept:.2f} s, redrawn {redrawn:.2f} s (median of {args.rounds})")
    print(f"kept / redrawn: {kept / redrawn:.2f}x")


if __name__ == "__main__":
    main()

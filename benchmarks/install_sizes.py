"""What each install of lossbench adds beside torch, and how fast the light commands start.

For each of ``lossbench``, ``lossbench[compare]`` and ``lossbench[all]``: a fresh venv, ``torch==2.13.0`` first
(as the Makefile does), then the package from this checkout. Reported: the megabytes and the packages the install
adds beside torch, and whether the comparison packages are there. In the light venv, ``lossbench --version``,
``recipes`` and ``heads`` are timed against ``python -c "import torch"`` (interleaved, medians).

Needs the package registry (it downloads lightning, datasets, ...); takes minutes. Run it alone:

    python benchmarks/install_sizes.py [--keep DIR] [--repeats 7] [--startup-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
COMPARE_MODULES = ("datasets", "scipy", "sklearn", "statsmodels", "matplotlib", "tokenizers", "pandas", "pyarrow")
VARIANTS = {"light": "", "compare": "[compare]", "all": "[all]"}


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _size_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = Path(root, f)
            if not p.is_symlink():
                total += p.stat().st_size
    return total / 1e6


def _packages(venv: Path) -> set[str]:
    out = subprocess.run(
        [venv / "bin/python", "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True, text=True
    ).stdout
    return {line.split("==")[0].lower() for line in out.splitlines() if "==" in line}


def _install(venv: Path, extra: str) -> dict[str, object]:
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [venv / "bin/python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + [TORCH], check=True)
    before_mb, before = _size_mb(_site(venv)), _packages(venv)
    subprocess.run(pip + [f"{ROOT}{extra}"], check=True)
    after = _packages(venv)
    present = subprocess.run(
        [
            venv / "bin/python",
            "-c",
            f"import importlib.util as u; print([m for m in {COMPARE_MODULES} if u.find_spec(m)])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "added_mb": _size_mb(_site(venv)) - before_mb,
        "added": sorted(after - before),
        "comparison modules present": present,
    }


def _seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def _startup(venv: Path, repeats: int) -> None:
    """``lossbench --version/recipes/heads`` against ``import torch``, interleaved, medians (warm file cache)."""
    bin_ = venv / "bin"
    cmds = {
        "python -c 'import torch'": [bin_ / "python", "-c", "import torch"],
        "lossbench --version": [bin_ / "lossbench", "--version"],
        "lossbench recipes": [bin_ / "lossbench", "recipes"],
        "lossbench heads": [bin_ / "lossbench", "heads"],
    }
    for cmd in cmds.values():  # warm-up, and a check that each runs in the light install
        subprocess.run(cmd, check=True, capture_output=True)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(repeats):
        for name, cmd in cmds.items():
            times[name].append(_seconds(cmd))
    base = statistics.median(times["python -c 'import torch'"])
    for name, ts in times.items():
        print(f"  {name:<28} median {statistics.median(ts):.2f} s  ({statistics.median(ts) / base:.2f}x import torch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="make the venvs here and keep them (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--startup-only", action="store_true", help="only time the start-up, in --keep's light venv")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="lossbench-sizes-"))
    for name, extra in {} if args.startup_only else VARIANTS.items():
        result = _install(base / name, extra)
        print(
            f"pip install lossbench{extra or ''}: +{result['added_mb']:.0f} MB, +{len(result['added'])} packages "  # type: ignore[arg-type]
            f"beside torch; comparison modules present: {result['comparison modules present']}"
        )
        print(f"  added: {', '.join(result['added'])}")  # type: ignore[arg-type]
    print("start-up in the light install:")
    _startup(base / "light", args.repeats)


if __name__ == "__main__":
    main()

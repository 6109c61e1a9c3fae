"""The Ray launcher against the local one: whole ``lossbench compare`` commands, wall time.

``digits`` (its 6 losses, fused) over 4 seeds, each command in a fresh process with a fresh results folder:

- local: ``lossbench compare digits --seeds 4`` (one process, torch's default threads: 2 on a 2-core machine);
- ray: the same with ``--launcher ray`` (a local Ray started by the command, ``launcher.resources.cpu: 1``:
  2 workers of 1 thread each on a 2-core machine, one seed's arrays per unit).

The launchers are interleaved round by round (order rotated), median over rounds. Goal (issue 22): ray <= 0.65x
local. Run it alone: another torch process on the same cores distorts every figure.

    python benchmarks/launchers.py [--rounds 3] [--seeds 4] [--recipe digits] [--json out.json]

Also run on a GPU machine: ``--recipe digits_tuned --ray-gpu 0.25 --accelerator auto`` gives the Ray launcher with
four units on one GPU against one array at a time on that GPU (``--launcher local``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(launcher: str, recipe: str, seeds: int, output: Path, gpu: float, accelerator: str | None) -> list[str]:
    out = [sys.executable, "-m", "lossbench.cli", "compare", recipe, "--seeds", str(seeds), "--output", str(output)]
    out += ["--no-progress", "--launcher", launcher]
    if accelerator:
        out += ["--trainer.accelerator", accelerator]
    if launcher == "ray":
        out += ["--launcher.resources", f"{{cpu: 1, gpu: {gpu}}}"]
    return out


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--recipe", default="digits")
    parser.add_argument("--ray-gpu", type=float, default=0.0, help="launcher.resources.gpu of each Ray unit")
    parser.add_argument("--accelerator", help="trainer.accelerator (auto on a GPU machine)")
    parser.add_argument("--json", help="write the timings here")
    args = parser.parse_args()
    launchers = ["local", "ray"]
    times: dict[str, list[float]] = {name: [] for name in launchers}
    with tempfile.TemporaryDirectory(prefix="lossbench-launchers-") as tmp:
        for r in range(args.rounds):
            order = launchers[r % 2 :] + launchers[: r % 2]
            for name in order:
                folder = Path(tmp) / f"{name}-{r}"
                seconds = timed(command(name, args.recipe, args.seeds, folder, args.ray_gpu, args.accelerator))
                times[name].append(seconds)
                print(f"round {r + 1} {name}: {seconds:.1f} s", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["ray"] / median["local"]
    ratios = sorted(t_ray / t_local for t_ray, t_local in zip(times["ray"], times["local"]))
    print(f"\n{args.recipe}, {args.seeds} seeds, median of {args.rounds} (whole commands):")
    print("| launcher | median wall (s) | all rounds (s) |\n|---|---|---|")
    for name in launchers:
        print(f"| {name} | {median[name]:.1f} | {', '.join(f'{t:.1f}' for t in times[name])} |")
    print(f"\nray / local: {ratio:.2f}x (per round {', '.join(f'{x:.2f}' for x in ratios)}); goal <= 0.65x")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "median": median, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()

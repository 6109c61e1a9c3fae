"""The fused executor against the sequential one, and both against a hand-written PyTorch loop: whole processes.

What a user waits for: each measurement is one fresh process (imports, data set-up, the recipe's checks, training,
evaluations, test predictions, records and the report), ``lossbench compare RECIPE --executor fused|sequential``
or this script's ``--hand-loop RECIPE``, on 2 threads, interleaved round by round (order rotated), median over
rounds; each process's peak resident memory is read from its own ``wait4`` usage. The data cache is warmed once per
case first (a comparison's first run prepares its data once; later runs read it):

- (a) digits, its 6 losses, 1 seed, 6 epochs (the bundled recipe); also a hand-written loop over the
  same 6 runs (same data tensors, initial weights, AdamW + warmup/cosine, validation every 10 steps);
- (b) digits, 30 members (its 6 losses x 5 copies), 1 seed, 2 epochs;
- (c) text: a parquet of generated sentences, byte tokens, 2-layer d_model=64 backbone, 3 losses, 2 epochs.

Goals (issue 24): (a) fused <= 0.8x the hand loop and <= 0.5x sequential, (b) <= 0.25x sequential, (c) <= 1.0x.
``--forward vmapped|looped`` pins the array's training forward (default: its own ``auto`` choice).
``benchmarks/fused_gpu.py`` is the GPU counterpart (throughput and peak CUDA memory, in one process).

    python benchmarks/fused.py [--rounds 3] [--cases a,b,c] [--forward auto] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import yaml

warnings.filterwarnings("ignore")
THREADS = 2


def digits(seeds: int = 1, **changes) -> dict:
    from lossbench.compare.recipe.bounded_yaml import safe_yaml
    from lossbench.compare.recipe.recipe import resolve_recipe_path

    path = resolve_recipe_path("digits")
    raw = safe_yaml(path.read_text(encoding="utf-8"), str(path))
    raw.update(name="digits", seeds=list(range(seeds)), **changes)
    return raw


def thirty_members(copies: int = 5) -> dict:
    raw = digits()
    losses = []
    for copy in range(copies):
        for loss in raw["losses"]:
            spec = dict(loss) if isinstance(loss, dict) else {"name": loss}
            losses.append({**spec, "label": f"{spec['name']}_{copy}"})
    raw.update(losses=losses, baseline=losses[0]["label"], trainer={**raw["trainer"], "max_epochs": 2})
    return raw


def text_recipe(folder: Path, count: int = 900) -> dict:
    import datasets

    rng = random.Random(0)
    good, bad, filler = (
        ["great", "fine", "lovely", "superb"],
        ["awful", "poor", "dull", "broken"],
        ["the", "film", "was", "very", "a", "plot", "and", "it", "felt", "quite"],
    )
    rows = []
    for _ in range(count):
        label = rng.random() < 0.5
        words = [rng.choice(filler) for _ in range(rng.randint(4, 12))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(good if label else bad))
        rows.append({"text": " ".join(words), "label": int(label)})
    path = folder / "text.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return {
        "name": "text",
        "data": {
            "path": "parquet",
            "data_files": str(path),
            "text_column": "text",
            "label_column": "label",
            "tokenizer": "byte",
            "max_length": 64,
            "batch_size": 32,
        },
        "backbone": {"d_model": 64, "nhead": 4, "num_layers": 2, "pooling": "mean"},
        "losses": ["ce", {"name": "focal", "args": {"gamma": 2.0}}, "square"],
        "optimizer": {"name": "adamw", "lr": 0.001},
        "schedule": {"name": "cosine", "warmup_steps": 10},
        "trainer": {"max_epochs": 2, "eval_every_n_steps": 10},
        "seeds": [0],
        "target": {"metric": "val/accuracy", "mode": "max", "threshold": 0.9},
    }


def _environment(forward: str | None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS), "PYTHONWARNINGS": "ignore"}
    env.pop("LOSSBENCH_FUSED_FORWARD", None)
    if forward and forward != "auto":
        env["LOSSBENCH_FUSED_FORWARD"] = forward
    return env


def process(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``argv`` as a fresh process: its wall time (s) and peak resident memory (MB, its own ``ru_maxrss``)."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a full pipe would stall the child
        start = time.perf_counter()
        child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            said = errors.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(argv)} exited {child.returncode}:\n{said}")
    return seconds, usage.ru_maxrss / 1024


def command(mode: str, recipe: Path, root: Path) -> list[str]:
    """The process of one measurement: a comparison into a fresh folder, or the hand loop."""
    if mode == "loop":
        return [sys.executable, str(Path(__file__).resolve()), "--hand-loop", str(recipe)]
    out = tempfile.mkdtemp(dir=root)
    return [sys.executable, "-m", "lossbench.cli", "compare", str(recipe), "--output", out, "--no-progress"] + [
        "--executor",
        mode,
    ]


def hand_loop(recipe: dict, root: Path) -> float:
    """The same runs as plain PyTorch: each loss trained on the same batches from the same initial weights,
    AdamW + the recipe's schedule, validation loss and accuracy every ``eval_every_n_steps``."""
    from lossbench.compare import Comparison, load_recipe
    from lossbench.module import schedule_factor

    r = load_recipe({**recipe, "executor": "sequential"})
    cmp = Comparison(r, Path(tempfile.mkdtemp(dir=root)), progress=False)
    start = time.perf_counter()
    dm = cmp.datamodule(r.seeds[0])
    dm.setup("fit")
    init = cmp.initial_state(r.seeds[0], dm.spec)
    every, epochs = r.trainer["eval_every_n_steps"], r.trainer["max_epochs"]
    for loss in r.losses:
        model = cmp.build_model(loss, r.seeds[0], dm.spec, init)
        loader = dm.train_dataloader()
        total = r.trainer["max_steps"] or epochs * len(loader)
        epochs = math.ceil(total / len(loader))
        opt = torch.optim.AdamW(model.param_groups())
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda s, total=total: schedule_factor(
                s, warmup=r.schedule["warmup_steps"], kind=r.schedule["name"], total=total
            ),
        )
        step = 0
        for _ in range(epochs):
            for batch in loader:
                if step == total:
                    break
                model.train()
                outputs = model(batch["inputs"])
                value, _ = model.head.compute(outputs, model._loss_target(batch["target"]))
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                sched.step()
                step += 1
                if step % every == 0 or step == total:
                    model.eval()
                    with torch.no_grad():
                        hits = n = 0
                        for val in dm.val_dataloader():
                            out = model(val["inputs"])
                            model.head.compute(out, model._loss_target(val["target"]))
                            hits += int((model.head.predict(out) == val["target"]).sum())
                            n += len(val["target"])
    return time.perf_counter() - start


def measure(
    name: str, recipe: Path, modes: list[str], rounds: int, root: Path, env: dict[str, str], warm_up: bool = True
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each mode's wall times and peak memories over ``rounds`` interleaved rounds."""
    times: dict[str, list[float]] = {m: [] for m in modes}
    memory: dict[str, list[float]] = {m: [] for m in modes}
    if warm_up:
        process(command("fused", recipe, root), env)  # the data cache filled (a comparison's first run)
    for i in range(rounds):
        order = modes[i % len(modes) :] + modes[: i % len(modes)]
        for mode in order:
            seconds, peak = process(command(mode, recipe, root), env)
            times[mode].append(seconds)
            memory[mode].append(peak)
            print(f"  ({name}) round {i + 1} {mode}: {seconds:.2f} s, peak {peak:.0f} MB", flush=True)
    return times, memory


def _case_line(key: str, med: dict[str, float], mem: dict[str, float]) -> str:
    line = (
        f"({key}) median fused {med['fused']:.2f} s, sequential {med['sequential']:.2f} s: "
        f"fused/sequential {med['fused'] / med['sequential']:.3f}"
    )
    if "loop" in med:
        line += (
            f"; hand loop {med['loop']:.2f} s: sequential/loop {med['sequential'] / med['loop']:.3f}, "
            f"fused/loop {med['fused'] / med['loop']:.3f}"
        )
    return line + "; peak MB " + ", ".join(f"{m} {v:.0f}" for m, v in mem.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="a,b,c")
    parser.add_argument("--forward", default="auto", choices=["auto", "vmapped", "looped"])
    parser.add_argument("--json")
    parser.add_argument(
        "--quick", action="store_true", help="4 steps per run, 6 members in (b), one round, no warm-up (a smoke test)"
    )
    parser.add_argument("--hand-loop", type=Path, help=argparse.SUPPRESS)  # one hand-loop process (a measurement)
    args = parser.parse_args()
    if args.hand_loop is not None:
        torch.set_num_threads(THREADS)
        with tempfile.TemporaryDirectory() as tmp:
            hand_loop(yaml.safe_load(args.hand_loop.read_text()), Path(tmp))
        return 0
    if args.quick:
        args.rounds = 1
    env = _environment(args.forward)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = {
            "a": ("digits, 6 losses, 1 seed, 6 epochs", lambda: digits(), ["sequential", "fused", "loop"]),
            "b": (
                "digits, 30 members, 1 seed, 2 epochs",
                lambda: thirty_members(1 if args.quick else 5),
                ["sequential", "fused"],
            ),
            "c": (
                "text, 3 losses, d_model 64, 2 epochs",
                lambda: text_recipe(root, 200 if args.quick else 900),
                ["sequential", "fused"],
            ),
        }
        for key in args.cases.split(","):
            title, make, modes = cases[key]
            print(f"({key}) {title}", flush=True)
            recipe = make()
            if args.quick:
                recipe["trainer"] = {**recipe["trainer"], "max_epochs": None, "max_steps": 4, "eval_every_n_steps": 2}
            path = root / f"{key}.yaml"
            path.write_text(yaml.safe_dump(recipe, sort_keys=False))
            times, memory = measure(key, path, modes, args.rounds, root, env, warm_up=not args.quick)
            med = {m: statistics.median(v) for m, v in times.items()}
            mem = {m: statistics.median(v) for m, v in memory.items()}
            results[key] = {
                "title": title,
                "seconds": times,
                "median": med,
                "peak_mb": mem,
                "fused/sequential": med["fused"] / med["sequential"],
            }
            if "loop" in med:
                results[key].update(
                    {"sequential/loop": med["sequential"] / med["loop"], "fused/loop": med["fused"] / med["loop"]}
                )
            print(_case_line(key, med, mem), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

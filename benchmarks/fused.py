"""The fused executor against the sequential one, and both against a hand-written PyTorch loop.

Wall time of whole comparisons (``Comparison(...).run()``: validation, training, evaluations, test
predictions, records and report) in one process with 2 threads, the executors interleaved round by
round (order rotated), median over rounds:

- (a) digits, its 6 losses, 1 seed, 6 epochs (the bundled recipe); also a hand-written loop over the
  same 6 runs (same data tensors, initial weights, AdamW + warmup/cosine, validation every 10 steps);
- (b) digits, 30 members (its 6 losses x 5 copies), 1 seed, 2 epochs;
- (c) text: a parquet of generated sentences, byte tokens, 2-layer d_model=64 backbone, 3 losses, 2 epochs.

Goals (issue 10): fused/sequential (a) <= 0.5, (b) <= 0.25; sequential/loop <= 1.2, fused/loop <= 0.6.
``--memory`` runs (a) once per executor in a subprocess and prints each one's peak RSS.

    python benchmarks/fused.py [--rounds 3] [--cases a,b,c] [--memory] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")


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


def run_comparison(recipe: dict, executor: str, root: Path) -> float:
    from lossbench.compare import Comparison, load_recipe

    out = Path(tempfile.mkdtemp(dir=root))
    start = time.perf_counter()
    Comparison(load_recipe({**recipe, "executor": executor}), out, progress=False).run()
    return time.perf_counter() - start


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
    name: str, recipe: dict, modes: list[str], rounds: int, root: Path, warm_up: bool = True
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {m: [] for m in modes}
    if warm_up:
        run_comparison(recipe, "fused", root)  # data preparation cached, imports done
    for i in range(rounds):
        order = modes[i % len(modes) :] + modes[: i % len(modes)]
        for mode in order:
            seconds = hand_loop(recipe, root) if mode == "loop" else run_comparison(recipe, mode, root)
            times[mode].append(seconds)
            print(f"  ({name}) round {i + 1} {mode}: {seconds:.2f} s", flush=True)
    return times


def peak_rss(executor: str) -> float:
    """Peak resident memory (MB) of a process running case (a) with ``executor``."""
    code = (
        f"import sys, resource, tempfile; sys.path.insert(0, {str(Path(__file__).parent)!r}); import fused; "
        f"from pathlib import Path; fused.run_comparison(fused.digits(), {executor!r}, Path(tempfile.mkdtemp())); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="a,b,c")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--json")
    parser.add_argument(
        "--quick", action="store_true", help="4 steps per run, 6 members in (b), one round, no warm-up (a smoke test)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    torch.set_num_threads(2)
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
            times = measure(key, recipe, modes, args.rounds, root, warm_up=not args.quick)
            med = {m: statistics.median(v) for m, v in times.items()}
            results[key] = {
                "title": title,
                "seconds": times,
                "median": med,
                "fused/sequential": med["fused"] / med["sequential"],
            }
            line = (
                f"({key}) median fused {med['fused']:.2f} s, sequential {med['sequential']:.2f} s: "
                f"fused/sequential {med['fused'] / med['sequential']:.3f}"
            )
            if "loop" in med:
                results[key].update(
                    {"sequential/loop": med["sequential"] / med["loop"], "fused/loop": med["fused"] / med["loop"]}
                )
                line += (
                    f"; hand loop {med['loop']:.2f} s: sequential/loop {med['sequential'] / med['loop']:.3f}, "
                    f"fused/loop {med['fused'] / med['loop']:.3f}"
                )
            print(line, flush=True)
    if args.memory:
        results["peak_rss_mb"] = {e: peak_rss(e) for e in ("sequential", "fused")}
        print(
            f"(a) peak RSS: sequential {results['peak_rss_mb']['sequential']:.0f} MB, "
            f"fused {results['peak_rss_mb']['fused']:.0f} MB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

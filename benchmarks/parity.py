"""Framework overhead: LossbenchModule + Trainer against a hand-written PyTorch loop.

Same model, same initial weights, same batches in the same order, same optimizer,
alternating Lightning and hand-written rounds in one process with 2 threads. Prints
the median step-time ratio (goal <= 1.05 with progress bar and logger off) and
checks that the per-step losses agree to 5 decimals. The ratio with default
Trainer settings (progress bar, CSV logger, checkpointing) is printed for information.

    python benchmarks/parity.py [--steps 60] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def make_batches(steps: int, batch_size: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Digits batches in a fixed order (the same list feeds both loops)."""
    from lossbench.data import load_builtin

    train = load_builtin("digits", seed=seed)["train"].with_format("torch")[:]
    images, labels = train["image"].float(), train["label"].long()
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(labels), generator=g) for _ in range(steps * batch_size // len(labels) + 1)])
    return [
        {"inputs": images[idx], "target": labels[idx]} for idx in order[: steps * batch_size].view(steps, batch_size)
    ]


def make_model(metrics: bool, d_model: int = 32):
    from lossbench import LossbenchModule
    from lossbench.data import DataSpec

    spec = DataSpec("image", "class", num_classes=10, image_shape=(1, 8, 8))
    return LossbenchModule(
        "ce",
        data_spec=spec,
        backbone={"d_model": d_model, "nhead": 4, "num_layers": 2},
        lr=1e-3,
        seed=0,
        metrics=metrics,
    )


class StepTimer:
    """Wall time between consecutive batch starts: data fetch + step, as the hand loop measures."""

    def __init__(self) -> None:
        import lightning.pytorch as pl

        class _Timer(pl.Callback):
            def __init__(self, outer):
                self.outer = outer

            def on_train_batch_start(self, trainer, module, batch, idx):
                self.outer.marks.append(time.perf_counter())

            def on_train_batch_end(self, trainer, module, outputs, batch, idx):
                self.outer.losses.append(float(outputs["loss"]))

            def on_train_end(self, trainer, module):
                self.outer.marks.append(time.perf_counter())

        self.marks: list[float] = []
        self.losses: list[float] = []
        self.callback = _Timer(self)

    def step_times(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def run_lightning(model, batches, default_settings: bool, root: str) -> tuple[list[float], list[float]]:
    import lightning.pytorch as pl

    timer = StepTimer()
    quiet = dict(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=len(batches),
        callbacks=[timer.callback],
        default_root_dir=root,
        num_sanity_val_steps=0,
        **({} if default_settings else quiet),
    )
    trainer.fit(model, torch.utils.data.DataLoader(batches, batch_size=None))
    return timer.step_times(), timer.losses


def run_hand_loop(model, batches) -> tuple[list[float], list[float]]:
    optimizer = model.configure_optimizers()
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    model.train()
    times, losses = [], []
    start = time.perf_counter()
    for batch in loader:
        optimizer.zero_grad()
        loss = model.head.loss(model(batch["inputs"]), batch["target"])
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times, losses


def measure(
    steps: int, rounds: int, metrics: bool, default_settings: bool, warmup: int, d_model: int = 32, batch_size: int = 64
) -> dict:
    batches = make_batches(steps, batch_size)
    base = make_model(metrics, d_model)
    lightning_times, hand_times = [], []
    worst = 0.0
    with tempfile.TemporaryDirectory() as root:
        for r in range(rounds):
            order = ("lightning", "hand") if r % 2 == 0 else ("hand", "lightning")
            results = {}
            for which in order:
                model = copy.deepcopy(base)
                if which == "lightning":
                    results[which] = run_lightning(model, batches, default_settings, root)
                else:
                    results[which] = run_hand_loop(model, batches)
            (lt, ll), (ht, hl) = results["lightning"], results["hand"]
            lightning_times += lt[warmup:]
            hand_times += ht[warmup:]
            worst = max(worst, max(abs(a - b) for a, b in zip(ll, hl)))
    lm, hm = statistics.median(lightning_times), statistics.median(hand_times)
    return {"lightning_ms": 1e3 * lm, "hand_ms": 1e3 * hm, "ratio": lm / hm, "max_loss_diff": worst}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=5, help="steps dropped from each round")
    parser.add_argument("--sizes", default="both", help="'both', or DxB for one d_model x batch size, e.g. 32x64")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    settings = [
        ("progress bar and logger off", False, False),
        ("same, with train metrics on", True, False),
        ("default Trainer settings (info)", False, True),
    ]
    sizes = [(32, 64), (64, 256)] if args.sizes == "both" else [tuple(int(v) for v in args.sizes.split("x"))]
    rows = {}
    print(f"digits images, 2 encoder layers, {args.steps} steps x {args.rounds} rounds, 2 threads\n")
    print("| model | Trainer settings | Lightning ms/step | hand loop ms/step | ratio | max loss diff |")
    print("|---|---|---|---|---|---|")
    for d_model, batch_size in sizes:
        for label, metrics, default in settings:
            r = measure(args.steps, args.rounds, metrics, default, args.warmup, d_model, batch_size)
            rows[f"d_model={d_model} batch={batch_size}: {label}"] = r
            print(
                f"| d_model={d_model}, batch {batch_size} | {label} | {r['lightning_ms']:.2f} | {r['hand_ms']:.2f} "
                f"| {r['ratio']:.3f} | {r['max_loss_diff']:.1e} |",
                flush=True,
            )
    agree = all(r["max_loss_diff"] < 5e-6 for r in rows.values())
    for key, r in rows.items():
        if key.endswith("progress bar and logger off"):
            print(f"parity ratio {r['ratio']:.3f} at {key.split(':')[0]} (goal <= 1.05)")
    print(f"losses agree to 5 decimals: {agree}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

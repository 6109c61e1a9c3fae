"""The fused executor on a GPU: training throughput (steps x members per second) and peak CUDA memory, fused vs
sequential on the same device, in fp32 and bf16-mixed. One command on a lent GPU machine:

    python benchmarks/fused_gpu.py --json $OUT/fused_gpu.json

Each case trains K members (LossbenchModules of the bundled recipes' losses, on synthetic data of the recipes'
shapes, so no dataset or download is needed) under a Lightning Trainer:

- fused: one :class:`~lossbench.compare.execution.array.ModelArray` of the K members (one Trainer);
- sequential: each member alone, one Trainer after another (what ``--executor sequential`` does).

Throughput counts the steps after ``--warmup`` (CUDA synchronised at both ends): ``steps x K / seconds``. Peak memory
is ``torch.cuda.max_memory_allocated`` over the fit: the array's against one member's (the ratio to K x one member is
the issue's memory goal, <= 1.2). Cases:

- (a) digits' shapes (8x8 images, one token per row, d_model 32, 2 layers), its 6 losses, batch 64;
- (b) the same, 30 members (6 losses x 5);
- (d) 32 members, d_model 64, 4 heads, 2 layers, 64-token byte sequences with padding, batch 64.

Goal (issue 24): fused >= 8x the sequential throughput at 32 members. ``--device cpu --quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lossbench import LossbenchModule
from lossbench.compare.execution.array import ModelArray
from lossbench.data import DataSpec

warnings.filterwarnings("ignore")
for _name in ("lightning.pytorch", "lightning.fabric"):  # the Trainer's banners: not part of the table
    logging.getLogger(_name).setLevel(logging.ERROR)
LOSSES = ["ce", "label_smoothing", "focal", "poly1", "square", "mae_prob"]
CASES: dict[str, dict[str, Any]] = {
    "a": {"members": 6, "kind": "image", "backbone": {"d_model": 32, "nhead": 4, "num_layers": 2, "pooling": "cls"}},
    "b": {"members": 30, "kind": "image", "backbone": {"d_model": 32, "nhead": 4, "num_layers": 2, "pooling": "cls"}},
    "d": {"members": 32, "kind": "tokens", "backbone": {"d_model": 64, "nhead": 4, "num_layers": 2, "pooling": "mean"}},
}
BATCH, TOKENS, VOCAB, CLASSES = 64, 64, 260, 10


def data(kind: str, rows: int) -> tuple[DataSpec, TensorDataset]:
    """Synthetic rows of the case's shapes (random labels: throughput does not depend on what is learnt)."""
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, CLASSES, (rows,), generator=gen)
    if kind == "image":
        spec = DataSpec("image", "class", num_classes=CLASSES, image_shape=(1, 8, 8))
        return spec, TensorDataset(torch.rand(rows, 1, 8, 8, generator=gen), target)
    tokens = torch.randint(1, VOCAB, (rows, TOKENS), generator=gen)
    lengths = torch.randint(8, TOKENS + 1, (rows,), generator=gen)
    tokens[torch.arange(TOKENS) >= lengths[:, None]] = 0  # padding: the backbone masks it
    spec = DataSpec("tokens", "class", num_classes=CLASSES, vocab_size=VOCAB, max_length=TOKENS, pad_id=0)
    return spec, TensorDataset(tokens, target)


def members(case: dict[str, Any], spec: DataSpec) -> dict[str, LossbenchModule]:
    return {
        f"{loss}_{k}": LossbenchModule(loss, data_spec=spec, backbone=case["backbone"], seed=0, lr=1e-3)
        for k in range(case["members"])
        for loss in [LOSSES[k % len(LOSSES)]]
    }


class Clock(pl.Callback):
    """Seconds from the start of step ``warmup`` to the end of training, the device synchronised at both ends."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.start: float | None = None
        self.seconds = 0.0

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self._sync()
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        self._sync()
        assert self.start is not None, "fewer steps than the warm-up"
        self.seconds = time.perf_counter() - self.start


def fit(module: pl.LightningModule, loader: DataLoader, args: argparse.Namespace, precision: str) -> tuple[float, int]:
    """Train ``module`` for warm-up + steps: the timed seconds and the peak CUDA memory (bytes; 0 on a CPU)."""
    clock = Clock(args.warmup, args.device)
    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, train_dataloaders=loader)
    peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else 0
    return clock.seconds, peak


def run_case(key: str, args: argparse.Namespace, precision: str) -> dict[str, Any]:
    case = dict(CASES[key])
    if args.quick:
        case["members"] = min(case["members"], 3)
    spec, dataset = data(case["kind"], BATCH * (args.warmup + args.steps))
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=False, drop_last=True)
    k = case["members"]
    fused_seconds, fused_peak = fit(ModelArray(members(case, spec)), loader, args, precision)
    alone = [fit(m, loader, args, precision) for m in members(case, spec).values()]
    seq_seconds = sum(s for s, _ in alone)
    member_peak = statistics.median(p for _, p in alone)
    out = {
        "members": k,
        "precision": precision,
        "fused_throughput": args.steps * k / fused_seconds,
        "sequential_throughput": args.steps * k / seq_seconds,
        "fused_peak_mb": fused_peak / 2**20,
        "member_peak_mb": member_peak / 2**20,
    }
    out["speedup"] = out["fused_throughput"] / out["sequential_throughput"]
    out["memory_vs_k_members"] = fused_peak / (k * member_peak) if member_peak else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--precisions", default="32-true,bf16-mixed")
    parser.add_argument("--cases", default="a,b,d")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 members, 3 steps after 2 (a smoke test)")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup = 3, 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("fused_gpu: no CUDA device here (--device cpu runs the smoke test)", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device: {device}; torch {torch.__version__}", flush=True)
    print("| case | members | precision | fused steps*members/s | sequential | speedup | fused peak MB | K x member |")
    print("|---|---|---|---|---|---|---|---|")
    results: list[dict[str, Any]] = []
    for precision in args.precisions.split(","):
        for key in args.cases.split(","):
            row = {"case": key, **run_case(key, args, precision)}
            results.append(row)
            ratio = row["memory_vs_k_members"]
            print(
                f"| ({key}) | {row['members']} | {precision} | {row['fused_throughput']:.0f} | "
                f"{row['sequential_throughput']:.0f} | {row['speedup']:.2f}x | {row['fused_peak_mb']:.0f} | "
                f"{'-' if ratio is None else f'{ratio:.2f}'} |",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

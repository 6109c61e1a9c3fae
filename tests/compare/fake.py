"""Fake comparison folders with hand-checkable numbers (no training)."""

from __future__ import annotations

from pathlib import Path

from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import METRIC_COLUMNS, RunRecord, write_csv, write_json

SEEDS = [0, 1, 2]
LOSSES = ["ce", "focal", "mse"]
TARGET = {"metric": "val/accuracy", "mode": "max", "threshold": 0.85}

# per loss: final / best accuracy, steps-to-target (None: never reached), auc, final ece, per seed 0, 1, 2
FINAL = {"ce": [0.8, 0.85, 0.9], "focal": [0.9, 0.92, 0.94], "mse": [0.5, 0.52, 0.53]}
BEST = {"ce": [0.82, 0.86, 0.9], "focal": [0.91, 0.93, 0.94], "mse": [0.5, 0.52, 0.55]}
STEPS = {"ce": [None, 100, 80], "focal": [60, 40, 40], "mse": [None, None, None]}
AUC = {"ce": [0.6, 0.65, 0.7], "focal": [0.7, 0.75, 0.78], "mse": [0.4, 0.42, 0.43]}
ECE = {"ce": [0.1, 0.12, 0.14], "focal": [0.05, 0.06, 0.07], "mse": [0.2, 0.2, 0.2]}
EVAL_STEPS = [0, 20, 40, 60, 80, 100, 120]


def make_record(loss: str, seed: int, **changes) -> RunRecord:
    """A finished run of ``loss`` on ``seed`` with the numbers above; ``changes`` override fields."""
    i = SEEDS.index(seed) if seed in SEEDS else 0
    steps = STEPS[loss][i]
    record = RunRecord(
        loss=loss,
        head={"ce": "cross_entropy", "focal": "focal", "mse": "brier"}[loss],
        head_args={"gamma": 2.0} if loss == "focal" else {},
        seed=seed,
        status="finished",
        recipe_hash="r" * 64,
        setup_hash="s" * 64,
        versions={"torch": "2.3.0", "lossbench": "0.1.0"},
        fingerprints={
            "backbone_init": f"backbone-{seed}",
            "head_init": f"head-{seed}",
            "head_shape": "(5, 8)",
            "data_order": {"0": f"order-{seed}-0", "1": f"order-{seed}-1"},
        },
        target=dict(TARGET),
        steps=120,
        epochs=2,
        train_seconds=12.0,
        seconds_per_step=0.1,
        steps_to_target=steps,
        seconds_to_target=None if steps is None else steps / 10,
        final={"val/accuracy": FINAL[loss][i], "val/ece": ECE[loss][i]},
        best={"val/accuracy": BEST[loss][i], "val/ece": ECE[loss][i]},
        modes={"val/accuracy": "max", "val/ece": "min"},
        auc=AUC[loss][i],
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def make_rows(loss: str, seed: int, eval_steps=EVAL_STEPS) -> list[dict]:
    """metrics.csv rows: accuracy rising to the final value; no train loss at step 0 (None)."""
    i = SEEDS.index(seed) if seed in SEEDS else 0
    final = FINAL[loss][i]
    rows = []
    for j, step in enumerate(eval_steps):
        frac = j / max(len(eval_steps) - 1, 1)
        rows.append(
            {
                "step": step,
                "epoch": step // 60,
                "wall_time": step / 10,
                "train_loss": None if step == 0 else (3.0 if loss == "mse" else 1.0) * (1.2 - frac) + 0.01 * seed,
                "grad_norm": 2.0 - frac + 0.1 * seed,
                "lr": 1e-3,
                "val/accuracy": 0.2 + (final - 0.2) * frac,
                "val/ece": 0.3 - 0.1 * frac,
            }
        )
    return rows


def write_run(root: Path, record: RunRecord, rows: list[dict] | None = None) -> None:
    """Write record.json (+ metrics.csv unless ``rows`` is None and the run is pending)."""
    folder = run_dir(root, record.loss, record.seed)
    record.save(folder / "record.json")
    if rows is not None:
        write_csv(folder / "metrics.csv", rows, [*METRIC_COLUMNS, "val/accuracy", "val/ece"])


def write_comparison(root: Path, losses=LOSSES, seeds=SEEDS, baseline="ce", target=TARGET) -> None:
    write_json(
        root / "comparison.json",
        {
            "name": "toy",
            "recipe": {"name": "toy", "losses": list(losses)},
            "recipe_hash": "r" * 64,
            "setup_hash": "s" * 64,
            "baseline": baseline,
            "losses": list(losses),
            "seeds": list(seeds),
            "target": dict(target),
            "budget": {"max_epochs": 2, "max_steps": None, "eval_every_n_steps": 20},
            "versions": {"torch": "2.3.0", "lossbench": "0.1.0"},
            "created": "2024-01-01T00:00:00",
        },
    )


def make_folder(root: Path, losses=LOSSES, seeds=SEEDS, changes=None) -> Path:
    """A complete folder; ``changes[(loss, seed)]`` overrides record fields, or is None to leave the run out."""
    changes = changes or {}
    write_comparison(root, losses, seeds)
    for loss in losses:
        for seed in seeds:
            change = changes.get((loss, seed), {})
            if change is None:
                continue
            record = make_record(loss, seed, **change)
            # metrics.csv holds the evaluations up to the steps the record says were done
            write_run(root, record, [row for row in make_rows(loss, seed) if row["step"] <= record.steps])
    return root

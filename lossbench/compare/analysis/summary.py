"""From one run's evaluation rows to its record's numbers: final, best, steps to target, AUC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from lossbench.compare.store.records import RunRecord


def _reached(value: float, threshold: float, mode: str) -> bool:
    """Metrics are computed in float32: 14/20 is stored as 0.699999988, which reaches a threshold of 0.7."""
    limit = float(np.float32(threshold))
    return value >= limit if mode == "max" else value <= limit


def time_average(steps: Sequence[int], values: Sequence[float | None]) -> float | None:
    """Trapezoid area under ``values`` over ``steps`` divided by the step span (the curve's mean level)."""
    pairs = [(s, v) for s, v in zip(steps, values) if v is not None]
    if not pairs:
        return None
    if len(pairs) == 1 or pairs[-1][0] == pairs[0][0]:
        return float(pairs[-1][1])
    area = sum((s1 - s0) * (v0 + v1) / 2 for (s0, v0), (s1, v1) in zip(pairs, pairs[1:]))
    return area / (pairs[-1][0] - pairs[0][0])


def summarise_rows(rows: list[dict[str, Any]], modes: dict[str, str], target: dict[str, Any]) -> dict[str, Any]:
    """A run's numbers from its evaluation rows alone: final and best (after step 0) values, the first step
    reaching the target (and its wall time), the curve's time-average (AUC) and the still-improving test."""
    from lossbench.compare.analysis.curves import still_improving

    final, best = {}, {}
    for key, mode in modes.items():
        values = [r[key] for r in rows if r.get(key) is not None]
        trained = [r[key] for r in rows if r.get(key) is not None and r["step"] > 0]  # best-of: never the untrained
        if values:
            final[key] = float(values[-1])
        if trained:
            best[key] = float(max(trained) if mode == "max" else min(trained))
    metric, mode, threshold = target["metric"], target["mode"], target["threshold"]
    steps = seconds = None
    for row in rows if threshold is not None else []:  # no threshold: steps-to-target is not measured
        if row.get(metric) is not None and _reached(row[metric], threshold, mode):
            steps, seconds = int(row["step"]), float(row["wall_time"])
            break
    improving = still_improving([r["step"] for r in rows], [r.get(metric) for r in rows], mode)
    return {
        "final": final,
        "best": best,
        "steps_to_target": steps,
        "seconds_to_target": seconds,
        "auc": time_average([r["step"] for r in rows], [r.get(metric) for r in rows]),
        "improving": {"metric": metric, **asdict(improving)},
    }


def summarise_run(record: RunRecord, rows: list[dict[str, Any]], trainer: Any, model: Any) -> None:
    """Fill ``record``'s results from the evaluation ``rows`` (and the trainer's step count)."""
    from lossbench.metrics import metric_specs

    task = model.head.task
    modes = {
        f"val/{name}": mode
        for name, (_, _, mode) in metric_specs(task, getattr(model.head, "num_classes", None)).items()
    }
    modes["val/loss"] = "min"
    record.modes = modes
    record.steps = int(trainer.global_step)
    record.epochs = int(trainer.current_epoch)
    record.train_seconds = float(rows[-1]["wall_time"]) if rows else 0.0
    record.seconds_per_step = record.train_seconds / record.steps if record.steps else None
    numbers = summarise_rows(rows, modes, record.target)
    record.final, record.best = numbers["final"], numbers["best"]
    record.steps_to_target, record.seconds_to_target = numbers["steps_to_target"], numbers["seconds_to_target"]
    record.auc, record.improving = numbers["auc"], numbers["improving"]

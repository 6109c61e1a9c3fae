"""Re-check a results folder: every number of results.csv recomputed from the files each run keeps.

``lossbench report DIR --recompute`` runs :func:`recompute`. For every finished run it

1. recomputes the test metrics from ``test_predictions.pt`` (the same torchmetrics, one pass) and
   requires them to equal the record's **exactly**;
2. rebuilds the module from the recipe in comparison.json, loads ``weights.pt``, predicts the test
   split again (the data must still be there: its content fingerprint is checked first) and compares
   the predictions and the metrics from them with the saved ones, within ``atol``;
3. recomputes final, best (after step 0), steps to target and AUC from ``metrics.csv`` and requires
   them to equal the record's exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lossbench.compare.evaluate import PREDICTIONS_FILE, WEIGHTS_FILE, metrics_from_predictions, predict
from lossbench.compare.records import CorruptFileError, RunRecord, load_records, load_run_tensors, run_dir
from lossbench.data.identity import fingerprints_of


@dataclass
class RecomputeResult:
    """What :func:`recompute` checked; ``ok`` when nothing differed."""

    checked: list[str] = field(default_factory=list)  # "loss seed k" of every run checked
    problems: list[str] = field(default_factory=list)  # one sentence per difference
    max_prediction_diff: float = 0.0  # largest |saved - recomputed| over every prediction tensor

    @property
    def ok(self) -> bool:
        return not self.problems


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _check_summary(record: RunRecord, rows: list[dict[str, Any]], out: RecomputeResult, name: str) -> None:
    from lossbench.compare.summary import summarise_rows

    again = summarise_rows(rows, record.modes, record.target)
    for key in ("final", "best"):
        for metric, value in getattr(record, key).items():
            if not _same(again[key].get(metric), value):
                out.problems.append(f"{name}: {key} {metric} is {value} in record.json, "
                                    f"{again[key].get(metric)} from metrics.csv")
    for key in ("steps_to_target", "auc"):
        if not _same(again[key], getattr(record, key)):
            out.problems.append(f"{name}: {key} is {getattr(record, key)} in record.json, {again[key]} from metrics.csv")


def recompute(root: str | Path, *, atol: float = 1e-5, predictions_from_weights: bool = True) -> RecomputeResult:
    """Recompute every finished run's numbers under ``root`` from its weights, predictions and metrics.csv."""
    from lossbench.compare.engine import build_module
    from lossbench.compare.report import load_comparison
    from lossbench.data import HFDataModule

    root = Path(root)
    comparison = load_comparison(root)
    recipe = comparison["recipe"]
    out = RecomputeResult()
    modules: dict[int, Any] = {}
    for record, rows in load_records(root):
        if record.status != "finished":
            continue
        name = f"{record.loss} seed {record.seed}"
        folder = run_dir(root, record.loss, record.seed)
        out.checked.append(name)
        missing = [f for f in (WEIGHTS_FILE, PREDICTIONS_FILE) if not (folder / f).is_file()]
        if missing:
            out.problems.append(f"{name}: {', '.join(missing)} missing in {folder}: its numbers cannot be re-checked")
            continue
        _check_summary(record, rows, out, name)
        try:
            saved = load_run_tensors(folder / PREDICTIONS_FILE, "test predictions")
        except CorruptFileError as exc:  # a check: every run is still checked, the unreadable file is one problem
            out.problems.append(f"{name}: {exc}")
            continue
        if not predictions_from_weights:
            task, classes = _task_of(record, recipe, comparison)
        else:
            if record.seed not in modules:
                modules[record.seed] = HFDataModule(**recipe["data"], seed=record.seed)
            dm = modules[record.seed]
            now = fingerprints_of(dm.describe_splits())
            before = record.fingerprints.get("data") or {}
            changed = [split for split in now if before.get(split) not in (None, now[split])]
            if changed:
                out.problems.append(f"{name}: the contents of split {', '.join(map(repr, changed))} differ from "
                                    "those the run was trained and scored on; predictions not recomputed")
                continue
            counts = (dm.describe_splits().get("train") or {}).get("class_counts")
            model = build_module(recipe, record.head, record.head_args, dm.spec, record.seed, class_counts=counts)
            try:
                weights = load_run_tensors(folder / WEIGHTS_FILE, "the reported weights")
            except CorruptFileError as exc:
                out.problems.append(f"{name}: {exc}")
                continue
            dtype = next((v.dtype for v in weights.values() if v.is_floating_point()), torch.float32)
            model.to(dtype)
            model.load_state_dict(weights)
            task, classes = model.head.task, getattr(model.head, "num_classes", None)
            again = predict(model, dm.test_dataset, dm.spec, padding=dm.padding,
                            batch_size=dm.eval_batch_size or dm.batch_size,
                            precision=str(recipe["trainer"]["precision"]))
            for key, value in saved.items():
                other = again.get(key)
                if other is None or other.shape != value.shape:
                    out.problems.append(f"{name}: recomputed {key!r} predictions have another shape")
                    continue
                diff = float((value.double() - other.double()).abs().max()) if value.numel() else 0.0
                out.max_prediction_diff = max(out.max_prediction_diff, diff)
                if diff > atol:
                    out.problems.append(f"{name}: recomputed {key!r} predictions differ by up to {diff:.3g}")
        metrics = metrics_from_predictions(task, classes, saved)
        for metric, value in record.test.items():
            if not _same(metrics.get(metric), value):
                out.problems.append(f"{name}: {metric} is {value} in record.json, {metrics.get(metric)} from "
                                    f"{PREDICTIONS_FILE}")
    return out


def _task_of(record: RunRecord, recipe: dict[str, Any], comparison: dict[str, Any]) -> tuple[str, int | None]:
    from lossbench.module import resolve_head_class

    task = resolve_head_class(record.head).task
    counts = ((comparison.get("data") or {}).get("train") or {}).get("class_counts")
    classes = record.head_args.get("num_classes") or (len(counts) if counts else None)
    return task, classes

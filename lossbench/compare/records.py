"""Run records: what each (loss, seed) run leaves on disk, written atomically.

Layout of a comparison folder::

    DIR/recipe.yaml                      the resolved recipe, as run
    DIR/comparison.json                  recipe hash, setup hash, versions, plan
    DIR/runs/<loss>/seed_<k>/record.json one RunRecord
    DIR/runs/<loss>/seed_<k>/metrics.csv one row per evaluation (METRIC_COLUMNS + "val/..." columns)
    DIR/runs/<loss>/seed_<k>/weights.pt  the reported weights (a state dict, weights_only)
    DIR/runs/<loss>/seed_<k>/test_predictions.pt   test targets and predictions (compare.evaluate)
    DIR/runs/<loss>/seed_<k>/checkpoints/last.ckpt   while the run is unfinished
    DIR/results.csv, DIR/report.md, DIR/plots/*.png  rendered from the records alone

Every file is written to a temporary file in the same folder, flushed, fsynced and
renamed over the target: a reader never sees half a file.

In a distributed run (``--trainer.strategy ddp``) every process runs the comparison, and only
global rank 0 writes: on the other processes the writers here are no-ops (as Lightning's
loggers and checkpoints are).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lossbench.compare import killpoint

STATUS = ("pending", "running", "finished", "failed")
METRIC_COLUMNS = ("step", "epoch", "wall_time", "train_loss", "grad_norm", "lr")
"""Fixed leading columns of metrics.csv; validation metrics follow as "val/<name>" (e.g. "val/accuracy")."""


def test_metric(metric: str) -> str:
    """The test-split name of a validation metric: ``"val/accuracy"`` -> ``"test/accuracy"``."""
    return "test/" + metric.split("/", 1)[-1]


def is_global_zero() -> bool:
    """True unless this is a process other than global rank 0 of a distributed run (which must not write)."""
    dist = sys.modules.get("torch.distributed")  # no process group without torch imported
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return (os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0") == "0"  # launched, not yet joined


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + fsync + rename (never a truncated file).

    A no-op on processes other than global rank 0 (:func:`is_global_zero`).
    """
    if not is_global_zero():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if killpoint.armed():  # test hook: die with half of the temporary file written
                f.write(data[: len(data) // 2])
                f.flush()
                killpoint.kill_point(f"write:{path.name}")
                data = data[len(data) // 2 :]
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # disk full, quota, file size limit: the error names the file it was writing
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text through :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_temporary_files(root: str | Path) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left under ``root`` (``.<name>.*.tmp``).

    Only on global rank 0, the only writer (another process could delete a file rank 0 is writing).
    """
    removed: list[Path] = []
    if not is_global_zero():
        return removed
    for tmp in Path(root).rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Write dict rows as CSV atomically; ``columns`` fixes the order (default: first-seen order)."""
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write_text(path, buffer.getvalue())


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """CSV rows with numbers parsed (empty cells become None)."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: _number(v) for k, v in row.items()})
    return rows


def _number(value: str) -> Any:
    if value == "" or value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


@dataclass
class RunRecord:
    """Everything about one (loss, seed) run needed to reproduce and to report it."""

    loss: str  # the loss label in the recipe (folder name)
    head: str  # registered head name or class path
    head_args: dict[str, Any]
    seed: int
    status: str = "pending"  # one of STATUS
    recipe_hash: str = ""  # sha256 of the resolved recipe
    setup_hash: str = ""  # sha256 of what must be identical across losses (data, backbone, optimizer, trainer)
    versions: dict[str, str] = field(default_factory=dict)  # python, torch, lightning, torchmetrics, datasets, lossbench
    fingerprints: dict[str, Any] = field(default_factory=dict)
    # "backbone_init": sha256 of the backbone's initial state dict
    # "head_init": sha256 of the head's initial state dict; "head_shape": its projection's shape as a string
    # "data_order": {"<epoch>": sha256 of that epoch's batch index sequence, ...}
    # "data": {"<split>": sha256 of that processed split's contents (lossbench.data.identity), ...}
    target: dict[str, Any] = field(default_factory=dict)  # {"metric": "val/accuracy", "mode": "max", "threshold": 0.9}
    steps: int = 0  # optimizer steps done
    epochs: int = 0
    train_seconds: float = 0.0
    seconds_per_step: float | None = None
    steps_to_target: int | None = None  # first evaluation step at which the target was reached
    seconds_to_target: float | None = None
    final: dict[str, float] = field(default_factory=dict)  # "val/<metric>" -> value at the last evaluation
    best: dict[str, float] = field(default_factory=dict)  # "val/<metric>" -> best value after step 0 (by its mode)
    test: dict[str, float] = field(default_factory=dict)  # "test/<metric>" -> on the reported weights, once
    selected: dict[str, Any] = field(default_factory=dict)  # {"rule": "final" | "best", "step": k, "value": v}
    improving: dict[str, Any] = field(default_factory=dict)  # still-improving test of the target's val curve
    environment: dict[str, Any] = field(default_factory=dict)  # threads, device, precision, deterministic
    modes: dict[str, str] = field(default_factory=dict)  # "val/<metric>" -> "max" | "min"
    auc: float | None = None  # time-average of the target metric over training (trapezoid / steps)
    skipped_steps: int = 0  # optimizer steps skipped by the NaN policy
    resumed: int = 0  # how many times this run was resumed from a checkpoint
    restarts: list[str] = field(default_factory=list)  # why the run started over (an unreadable checkpoint moved aside)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunRecord:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        return cls.from_dict(read_json(path))


def run_dir(root: str | Path, loss: str, seed: int) -> Path:
    return Path(root) / "runs" / loss / f"seed_{seed}"


def load_records(root: str | Path) -> list[tuple[RunRecord, list[dict[str, Any]]]]:
    """Every run record under ``root`` with its metrics rows, sorted by (loss, seed)."""
    out = []
    for path in sorted(Path(root).glob("runs/*/seed_*/record.json")):
        record = RunRecord.load(path)
        metrics_path = path.parent / "metrics.csv"
        rows = read_csv(metrics_path) if metrics_path.exists() else []
        out.append((record, rows))
    out.sort(key=lambda item: (item[0].loss, item[0].seed))
    return out

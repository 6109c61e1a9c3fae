"""Run records: what each (loss, seed) run leaves on disk, written atomically.

Layout of a comparison folder::

    DIR/recipe.yaml                      the resolved recipe, as run
    DIR/comparison.json                  recipe hash, setup hash, versions, plan
    DIR/runs/<loss>/seed_<k>/record.json one RunRecord
    DIR/runs/<loss>/seed_<k>/metrics.csv one row per evaluation (METRIC_COLUMNS + "val/..." columns)
    DIR/runs/<loss>/seed_<k>/weights.pt  the reported weights (a state dict, weights_only)
    DIR/runs/<loss>/seed_<k>/test_predictions.pt   test targets and predictions (compare.evaluate)
    DIR/runs/<loss>/seed_<k>/checkpoints/last.ckpt   while the run is unfinished (sequential executor)
    DIR/arrays/seed_<k>/last.ckpt        while a fused array of seed k is unfinished (compare.fused)
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lossbench import _io
from lossbench._io import is_global_zero
from lossbench.compare.store.layout import METRICS_FILE, TUNING_DIR, record_paths
from lossbench.compare.store.storage import confined

STATUS = ("pending", "running", "finished", "failed")
METRIC_COLUMNS = ("step", "epoch", "wall_time", "train_loss", "grad_norm", "lr")
"""Fixed leading columns of metrics.csv; validation metrics follow as "val/<name>" (e.g. "val/accuracy")."""


def test_metric(metric: str) -> str:
    """The test-split name of a validation metric: ``"val/accuracy"`` -> ``"test/accuracy"``."""
    return "test/" + metric.split("/", 1)[-1]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`lossbench._io.atomic_write_bytes`), only inside the results
    folder (:func:`~lossbench.compare.store.storage.confined`); a no-op on processes other than global rank 0."""
    _io.atomic_write_bytes(path, data, guard=confined)


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
    for tmp in Path(root).rglob(_io.TEMPORARY_GLOB):  # rglob does not follow symlinked folders
        if tmp.is_file():
            confined(tmp, "delete").unlink(missing_ok=True)
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


RUN_FIX = (
    "rerun `lossbench compare` with the same --output to rebuild that run (move the file aside first), "
    "or delete the run folder"
)
"""How to repair a corrupt record.json: :class:`CorruptFileError`'s ``fix``."""
RUN_FILE_FIX = (
    "rerun `lossbench compare` with the same --output to rebuild that run (move the file and the run's "
    "record.json aside first: a run with a finished record is not trained again), or delete the run folder"
)
"""How to repair another corrupt file of one run (metrics.csv, test_predictions.pt)."""
COMPARISON_FIX = (
    "restore it (from a backup or a copy of the folder), or start a new results folder "
    "(`lossbench compare RECIPE --output NEW_DIR`)"
)
"""How to repair a corrupt comparison.json."""


class CorruptFileError(ValueError):
    """A file of a results folder exists but does not hold what lossbench writes there.

    The message is one line: ``"<path>: <problem>: expected <expected>, found <found>; <fix>"``.

    Attributes:
        path: the corrupt file.
        expected: what the file should hold (``"a JSON object (a run record)"``).
        found: what it holds (``"the JSON array []"``).
        fix: how to repair it (:data:`RUN_FIX` for record.json, :data:`RUN_FILE_FIX` for a run's other files,
            :data:`COMPARISON_FIX` for comparison.json).
        problem: ``"not valid JSON"`` / ``"not valid CSV"`` when the file cannot be parsed at all, else
            ``"corrupt"`` (it parses but holds something else).
    """

    def __init__(
        self, path: str | Path, expected: str, found: str, fix: str = RUN_FIX, problem: str = "corrupt"
    ) -> None:
        self.path, self.expected, self.found, self.fix, self.problem = Path(path), expected, found, fix, problem
        super().__init__(f"{self.path}: {problem}: expected {expected}, found {found}; {fix}")

    def __reduce__(self):  # picklable (multiprocessing, pytest-xdist) despite the 5-argument constructor
        return type(self), (self.path, self.expected, self.found, self.fix, self.problem)


def describe(value: Any) -> str:
    """A short description of a JSON value for error messages: ``'a JSON array'``, ``"the string 'abc'"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        shown = json.dumps(value, default=str)
        return f"the JSON array {shown if len(shown) <= 40 else shown[:37] + '...'}"
    return type(value).__name__


def read_json_file(path: str | Path, what: str, fix: str = RUN_FIX) -> Any:
    """The JSON value in ``path``; :class:`CorruptFileError` naming ``path`` when it is not UTF-8 JSON."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(
            path, f"UTF-8 JSON ({what})", f"bytes that are not UTF-8 (at byte {exc.start})", fix, "not valid JSON"
        ) from None
    try:
        return json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError
        found = "an empty file" if not text.strip() else f"a JSON syntax error ({exc})"
        raise CorruptFileError(path, f"JSON ({what})", found, fix, "not valid JSON") from None


def read_csv(path: str | Path, *, fix: str = RUN_FILE_FIX) -> list[dict[str, Any]]:
    """CSV rows with numbers parsed (empty cells become None).

    Raises:
        CorruptFileError: when the file is not UTF-8, is not parseable CSV, or a row has more or fewer
            fields than the header (``fix`` says how to repair it).
    """
    return _read_table(Path(path), fix)[1]


def _read_table(path: Path, fix: str) -> tuple[list[str] | None, list[dict[str, Any]]]:
    """The header (None for an empty file) and the rows of a CSV file (see :func:`read_csv`)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(
            path, "UTF-8 CSV text", f"bytes that are not UTF-8 (at byte {exc.start})", fix, "not valid CSV"
        ) from None
    if "\x00" in text:
        raise CorruptFileError(
            path, "CSV text", f"a NUL byte (at character {text.index(chr(0))})", fix, "not valid CSV"
        )
    rows: list[dict[str, Any]] = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            return None, rows
        for cells in reader:
            if not cells:
                continue  # a blank line, as csv.DictReader skips it
            if len(cells) != len(header):
                raise CorruptFileError(
                    path,
                    f"{len(header)} fields per row (as in the header)",
                    f"{len(cells)} on line {reader.line_num}",
                    fix,
                    "not valid CSV",
                )
            rows.append({k: _number(v) for k, v in zip(header, cells)})
    except csv.Error as exc:
        raise CorruptFileError(path, "CSV text", f"a CSV syntax error ({exc})", fix, "not valid CSV") from None
    return header, rows


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The evaluation rows of a run's metrics.csv: a header with a ``step`` column, integer steps, numbers.

    Raises:
        CorruptFileError: naming the file, for anything :func:`read_csv` refuses, an empty file, a header
            without ``step``, a step that is not a whole number, or a cell that is not a number.
    """
    path = Path(path)
    header, rows = _read_table(path, RUN_FILE_FIX)
    if header is None:
        raise CorruptFileError(
            path, f"a CSV header line ({', '.join(METRIC_COLUMNS)}, val/...)", "an empty file", RUN_FILE_FIX
        )
    if "step" not in header:
        shown = ", ".join(header[:6]) + (", ..." if len(header) > 6 else "")
        raise CorruptFileError(path, "a header with a 'step' column", f"the header {shown!r}", RUN_FILE_FIX)
    for number, row in enumerate(rows, start=1):
        step = row.get("step")
        if not isinstance(step, int) or step < 0:
            raise CorruptFileError(
                path,
                "a whole, non-negative step in every row",
                f"{_cell(step)} in the step column of data row {number}",
                RUN_FILE_FIX,
            )
        for key, value in row.items():
            if value is not None and not isinstance(value, (int, float)):
                raise CorruptFileError(
                    path,
                    f"numbers (or empty cells) in column {key!r}",
                    f"{_cell(value)} in data row {number}",
                    RUN_FILE_FIX,
                )
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


def _cell(value: Any) -> str:
    return "an empty cell" if value is None else f"{value!r}"


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
    versions: dict[str, str] = field(
        default_factory=dict
    )  # python, torch, lightning, torchmetrics, datasets, lossbench
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
    execution: dict[str, Any] = field(default_factory=dict)  # how it was trained (compare.fused): executor, members
    # the backbone: {"name", "class_path" and "init_args" (a class of your own), "parameters", "width", "width_from"}
    backbone: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)  # a tuned run's {role, loss, trial, point} (compare.tuning)
    # who trained it, where and when: {"launcher", "node", "pid", "device", "started_at", "finished_at"} (UTC ISO
    # times of the last attempt: a resumed run's started_at is when it resumed)
    worker: dict[str, Any] = field(default_factory=dict)
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
        """Read and check a record.json.

        Raises:
            CorruptFileError: naming ``path``, when it is not UTF-8 JSON, not an object, lacks one of
                :data:`REQUIRED_RECORD_KEYS`, has a status outside :data:`STATUS`, or a field of another type
                than the dataclass's (numbers where numbers go, ``None`` only where the field allows it,
                ``final``/``best``/``test`` objects of numbers or nulls, ``restarts`` a list of strings).
        """
        values = read_json_file(path, "a run record")
        check_record(values, path)
        values = dict(values)
        values.setdefault("head_args", {})  # optional: older records, and hand-written ones
        return cls.from_dict(values)


REQUIRED_RECORD_KEYS = ("loss", "head", "seed", "status")
_INT, _NUMBER, _STR, _DICT = "a whole number", "a number", "a string", "a JSON object"
_RECORD_TYPES: dict[str, tuple[str, bool]] = {  # field -> (kind, None allowed)
    "loss": (_STR, False), "head": (_STR, False), "head_args": (_DICT, False), "seed": (_INT, False),
    "status": (_STR, False), "recipe_hash": (_STR, False), "setup_hash": (_STR, False),
    "versions": (_DICT, False), "fingerprints": (_DICT, False), "target": (_DICT, False),
    "steps": (_INT, False), "epochs": (_INT, False), "train_seconds": (_NUMBER, False),
    "seconds_per_step": (_NUMBER, True), "steps_to_target": (_INT, True), "seconds_to_target": (_NUMBER, True),
    "final": (_DICT, False), "best": (_DICT, False), "test": (_DICT, False), "selected": (_DICT, False),
    "improving": (_DICT, False), "environment": (_DICT, False), "modes": (_DICT, False),
    "auc": (_NUMBER, True), "skipped_steps": (_INT, False), "resumed": (_INT, False),
    "restarts": ("a list of strings", False), "execution": (_DICT, False), "tuning": (_DICT, False),
    "backbone": (_DICT, False), "worker": (_DICT, False), "error": (_STR, True),
}  # fmt: skip
_METRIC_MAPS = ("final", "best", "test")  # "<split>/<metric>" -> a number or null


def _is(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _DICT:
        return isinstance(value, dict)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)  # a list of strings


def check_record(values: Any, path: str | Path) -> None:
    """Raise :class:`CorruptFileError` naming ``path`` unless ``values`` is a well-typed run record."""
    what = "a JSON object (a run record)"
    if not isinstance(values, dict):
        raise CorruptFileError(path, what, describe(values))
    missing = [key for key in REQUIRED_RECORD_KEYS if key not in values]
    if missing:
        raise CorruptFileError(
            path,
            f"{what} with the keys {list(REQUIRED_RECORD_KEYS)}",
            f"no {', '.join(map(repr, missing))}" + (" (an empty object)" if not values else ""),
        )
    for key, (kind, nullable) in _RECORD_TYPES.items():
        if key not in values or (nullable and values[key] is None) or _is(values[key], kind):
            continue
        allowed = f"{kind} or null" if nullable else kind
        raise CorruptFileError(path, f"{allowed} for {key!r}", describe(values[key]))
    if values["status"] not in STATUS:
        raise CorruptFileError(path, f"'status' one of {list(STATUS)}", describe(values["status"]))
    for key in _METRIC_MAPS:
        for metric, value in (values.get(key) or {}).items():
            if value is not None and not _is(value, _NUMBER):
                raise CorruptFileError(path, f"a number or null for {key}[{metric!r}]", describe(value))
    for key in ("data_order", "data"):  # fairness reads both as {name: hash}
        value = (values.get("fingerprints") or {}).get(key)
        if value is not None and not isinstance(value, dict):
            raise CorruptFileError(path, f"a JSON object for fingerprints[{key!r}]", describe(value))


def load_records(root: str | Path) -> list[tuple[RunRecord, list[dict[str, Any]]]]:
    """Every run record under ``root`` with its metrics rows, sorted by (loss, seed).

    Raises:
        CorruptFileError: naming the first record.json or metrics.csv that is corrupt
            (:meth:`RunRecord.load`, :func:`read_metrics`).
    """
    out = []
    for path in record_paths(root):
        record = RunRecord.load(path)
        metrics_path = path.parent / METRICS_FILE
        rows = read_metrics(metrics_path) if metrics_path.exists() else []
        out.append((record, rows))
    out.sort(key=lambda item: (item[0].loss, item[0].seed))
    return out


def tuning_records(root: Path) -> list[RunRecord]:
    folder = Path(root) / TUNING_DIR
    return [r for r, _ in load_records(folder)] if folder.is_dir() else []

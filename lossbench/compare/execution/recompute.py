"""Re-check a results folder: every number of results.csv recomputed from the files each run keeps.

``lossbench report DIR --recompute`` runs :func:`recompute`. For every finished run it

1. recomputes the test metrics from ``test_predictions.pt`` (the same torchmetrics, one pass) and
   requires them to equal the record's **exactly**;
2. rebuilds the module from the recipe in comparison.json, loads ``weights.pt``, predicts the test
   split again (the data must still be there: its content fingerprint is checked first) and compares
   the predictions and the metrics from them with the saved ones, within ``atol``; predicts the validation
   split too and compares its metrics with metrics.csv's row of the step the weights were selected at
   (within :data:`VALIDATION_TOLERANCE`: a selection value cannot be rewritten without the weights);
3. recomputes final, best (after step 0), steps to target and AUC from ``metrics.csv`` and requires
   them to equal the record's exactly.

The runs of ``DIR/teacher`` (teachers trained first) and ``DIR/tuning`` (tuning trials) are checked the same
way, each student's teacher fingerprint is recomputed from its seed's teacher's weights (the logits on the
training rows), and each loss's tuning choice is selected again from the trial records (``check_tuning``) and
compared with its final runs and ``DIR/tuning.json``.

A results folder may come from anyone, so it is read as a checkpoint is (:mod:`lossbench.module`): a head named
by a dotted class path is never imported on a record's word (only registered names, modules already imported,
or class paths passed in ``trusted_heads``); a model much larger than the weights it would load is refused
before it is allocated (:func:`~lossbench.module.check_fits_weights`); a ``data.cache_dir`` outside the folder
is replaced by a temporary folder. A run that cannot be checked is one difference, and the next run is checked.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lossbench.compare.execution.evaluate import metrics_from_predictions, predict
from lossbench.compare.execution.teacher import fingerprint, training_logits
from lossbench.compare.store.layout import (
    COMPARISON_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    RECORD_FILE,
    SUMMARY_FILE,
    TEACHER_DIR,
    TEACHER_LABEL,
    TUNING_DIR,
    WEIGHTS_FILE,
    record_paths,
    run_dir,
)
from lossbench.compare.store.meta import comparison_path, load_comparison
from lossbench.compare.store.records import CorruptFileError, RunRecord, read_json, read_metrics
from lossbench.compare.store.storage import is_under
from lossbench.compare.store.tensors import load_run_tensors
from lossbench.data.identity import fingerprints_of

VALIDATION_TOLERANCE = 1e-4
"""Validation metrics logged in training (batch by batch) against the same metrics in one pass over predictions."""
PARTS = (TEACHER_DIR, TUNING_DIR)
"""Sub-comparisons of a results folder, checked with it (their runs' names start with ``<part>/``)."""


@dataclass
class RecomputeResult:
    """What :func:`recompute` checked; ``ok`` when nothing differed."""

    checked: list[str] = field(default_factory=list)  # "loss seed k" of every run checked ("tuning/..." in parts)
    problems: list[str] = field(default_factory=list)  # one sentence per difference
    max_prediction_diff: float = 0.0  # largest |saved - recomputed| over every prediction tensor

    @property
    def ok(self) -> bool:
        return not self.problems


class NotRecomputed(ValueError):
    """A run whose numbers cannot be recomputed; the message says why (one difference)."""


@dataclass
class _Check:
    """How a folder is checked (shared by its parts)."""

    top: Path  # the results folder given
    cache: Path  # a temporary folder: the data cache when the recipe's is outside ``top``
    atol: float
    from_weights: bool
    trusted: frozenset[str]
    modules: dict[tuple[str, int], Any] = field(default_factory=dict)  # (data arguments, seed) -> data module


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _line(exc: BaseException) -> str:
    """An exception as one line: its type and its message's words (torch's load errors span several lines)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}" if text else type(exc).__name__


def _check_summary(record: RunRecord, rows: list[dict[str, Any]], out: RecomputeResult, name: str) -> None:
    from lossbench.compare.analysis.summary import summarise_rows

    again = summarise_rows(rows, record.modes, record.target)
    for key in ("final", "best"):
        for metric, value in getattr(record, key).items():
            if not _same(again[key].get(metric), value):
                out.problems.append(
                    f"{name}: {key} {metric} is {value} in {RECORD_FILE}, {again[key].get(metric)} from {METRICS_FILE}"
                )
    for key in ("steps_to_target", "auc"):
        if not _same(again[key], getattr(record, key)):
            out.problems.append(
                f"{name}: {key} is {getattr(record, key)} in {RECORD_FILE}, {again[key]} from {METRICS_FILE}"
            )


def recompute(
    root: str | Path, *, atol: float = 1e-5, predictions_from_weights: bool = True, trusted_heads: Iterable[str] = ()
) -> RecomputeResult:
    """Recompute every finished run's numbers under ``root`` (and its teacher/ and tuning/ parts) from its weights,
    predictions and metrics.csv.

    Args:
        root: the results folder.
        atol: the largest difference allowed between a saved and a recomputed prediction.
        predictions_from_weights: also predict the test split again from each run's weights (needs the data).
        trusted_heads: dotted head class paths the records may name whose modules may be imported; any other
            dotted path is imported only when its module already is.

    Raises:
        FileNotFoundError, CorruptFileError: ``root/comparison.json`` is missing or unreadable.
    """
    root = Path(root)
    comparison = load_comparison(root)
    out = RecomputeResult()
    with tempfile.TemporaryDirectory(prefix="lossbench-recompute-") as cache:
        check = _Check(root, Path(cache), atol, predictions_from_weights, frozenset(trusted_heads))
        _check_folder(root, comparison, check, out, "")
    return out


def _check_folder(
    folder: Path, comparison: dict[str, Any], check: _Check, out: RecomputeResult, prefix: str
) -> list[RunRecord]:
    """Check every finished run of ``folder``, then its parts and its tuning choice; returns its records."""
    records = []
    for path in record_paths(folder):
        name = f"{prefix}{path.parent.parent.name} {path.parent.name.replace('_', ' ')}"
        try:
            record = RunRecord.load(path)
            metrics = path.parent / METRICS_FILE
            rows = read_metrics(metrics) if metrics.exists() else []
        except (CorruptFileError, OSError) as exc:  # a check: the unreadable file is one difference
            out.problems.append(f"{name}: {exc}")
            continue
        records.append(record)
        if record.status != "finished":
            continue
        name = f"{prefix}{record.loss} seed {record.seed}"
        out.checked.append(name)
        try:
            _check_run(record, rows, path.parent, comparison, check, out, name)
        except (NotRecomputed, CorruptFileError) as exc:  # says what and why itself
            out.problems.append(f"{name}: {exc}")
        except Exception as exc:  # whatever a folder holds, one run that cannot be checked is one difference
            out.problems.append(f"{name}: cannot be recomputed: {_line(exc)}")
    parts: dict[str, list[RunRecord]] = {}
    for part in PARTS:
        if comparison_path(folder / part).is_file():
            try:
                parts[part] = _check_folder(
                    folder / part, load_comparison(folder / part), check, out, f"{prefix}{part}/"
                )
            except (CorruptFileError, OSError) as exc:
                out.problems.append(f"{prefix}{part}/: {exc}")
    teacher = comparison["recipe"].get("teacher")
    if isinstance(teacher, dict) and "checkpoint" not in teacher:
        _check_teacher_logits(folder, comparison, records, parts.get(TEACHER_DIR, []), check, out, prefix)
    if isinstance(comparison["recipe"].get("tune"), dict):
        try:
            _check_tuning(folder, comparison, records, parts.get(TUNING_DIR, []), out, prefix)
        except Exception as exc:  # a tampered tuning section: one difference
            out.problems.append(f"{prefix}tuning: the selection cannot be recomputed: {_line(exc)}")
    return records


def _check_run(
    record: RunRecord,
    rows: list[dict[str, Any]],
    folder: Path,
    comparison: dict[str, Any],
    check: _Check,
    out: RecomputeResult,
    name: str,
) -> None:
    missing = [f for f in (WEIGHTS_FILE, PREDICTIONS_FILE) if not (folder / f).is_file()]
    if missing:
        raise NotRecomputed(f"{', '.join(missing)} missing in {folder}: its numbers cannot be re-checked")
    _check_summary(record, rows, out, name)
    saved = load_run_tensors(folder / PREDICTIONS_FILE, "test predictions")
    _check_head(record.head, check.trusted)
    if check.from_weights:
        _check_backbone(comparison["recipe"].get("backbone"), check.trusted)
        task, classes = _check_predictions(record, rows, folder, comparison["recipe"], saved, check, out, name)
    else:
        task, classes = _task_of(record, comparison)
    metrics = metrics_from_predictions(task, classes, saved)
    for metric, value in record.test.items():
        if not _same(metrics.get(metric), value):
            out.problems.append(
                f"{name}: {metric} is {value} in {RECORD_FILE}, {metrics.get(metric)} from {PREDICTIONS_FILE}"
            )


def _check_head(head: Any, trusted: frozenset[str]) -> None:
    """The checkpoint rule (:func:`~lossbench.module.imports_a_module`): a record never makes lossbench import."""
    from lossbench.module import imports_a_module

    if not isinstance(head, str):
        raise NotRecomputed(f"its record's head is {head!r}, not a head name")
    if head not in trusted and imports_a_module(head):
        raise NotRecomputed(
            f"its record names the head {head!r}, a dotted class path whose module is not imported; a recompute "
            f"never imports a module on a record's word: if you trust it, pass it (`lossbench report DIR "
            f"--recompute --trust-head {head}`)"
        )


def _check_backbone(backbone: Any, trusted: frozenset[str]) -> None:
    """The same rule for a backbone given by class path (:mod:`lossbench.models.custom`)."""
    from lossbench.models.custom import is_class_path
    from lossbench.module import imports_a_module

    if not is_class_path(backbone):
        return
    path = str(backbone["class_path"])
    if path not in trusted and imports_a_module(path):
        raise NotRecomputed(
            f"its recipe names the backbone class {path!r}, whose module is not imported; a recompute never imports "
            f"a module on a folder's word: if you trust it, pass it (`lossbench report DIR --recompute "
            f"--trust-head {path}`)"
        )


def _data_args(data: dict[str, Any], check: _Check) -> dict[str, Any]:
    """The recipe's data arguments, with a ``cache_dir`` outside the results folder replaced by a temporary one."""
    args = dict(data)
    given = args.get("cache_dir")
    if given is not None and not is_under(str(given), check.top):
        args["cache_dir"] = str(check.cache / "data")
    return args


def _datamodule(recipe: dict[str, Any], seed: int, check: _Check) -> Any:
    from lossbench.data import HFDataModule

    args = _data_args(recipe["data"], check)
    key = (json.dumps(args, sort_keys=True, default=str), seed)
    if key not in check.modules:
        check.modules[key] = HFDataModule(**args, seed=seed)
    return check.modules[key]


def _check_predictions(
    record: RunRecord,
    rows: list[dict[str, Any]],
    folder: Path,
    recipe: dict[str, Any],
    saved: dict[str, Any],
    check: _Check,
    out: RecomputeResult,
    name: str,
) -> tuple[str, int | None]:
    """Predict the test split again from the run's weights and compare with the saved predictions; then the
    validation split (:func:`_check_validation`)."""
    dm = _datamodule(recipe, record.seed, check)
    now = fingerprints_of(dm.describe_splits())
    before = record.fingerprints.get("data") or {}
    changed = [split for split in now if before.get(split) not in (None, now[split])]
    if changed:
        raise NotRecomputed(
            f"the contents of split {', '.join(map(repr, changed))} differ from those the run was "
            "trained and scored on; predictions not recomputed"
        )
    model = load_run_model(record, folder, recipe, dm)
    again = _predict(model, dm, dm.test_dataset, recipe)
    for key, value in saved.items():
        other = again.get(key)
        if other is None or other.shape != value.shape:
            out.problems.append(f"{name}: recomputed {key!r} predictions have another shape")
            continue
        diff = float((value.double() - other.double()).abs().max()) if value.numel() else 0.0
        out.max_prediction_diff = max(out.max_prediction_diff, diff)
        if diff > check.atol:
            out.problems.append(f"{name}: recomputed {key!r} predictions differ by up to {diff:.3g}")
    task, classes = model.head.task, getattr(model.head, "num_classes", None)
    _check_validation(
        record,
        rows,
        metrics_from_predictions(task, classes, _predict(model, dm, dm.val_dataset, recipe), prefix="val/"),
        out,
        name,
    )
    return task, classes


def load_run_model(record: RunRecord, folder: Path, recipe: dict[str, Any], dm: Any) -> Any:
    """The run's module, built from ``recipe`` and the record (never larger than its weights allow) with its kept
    weights loaded."""
    from lossbench.compare.execution.runner import build_module
    from lossbench.module import check_fits_weights, model_values

    weights = load_run_tensors(folder / WEIGHTS_FILE, "the reported weights")
    try:
        check_fits_weights(
            model_values(record.head, record.head_args, dm.spec, recipe["backbone"]),
            weights,
            f"{COMPARISON_FILE}'s recipe and the record",
            f"backbone {recipe['backbone']}, head {record.head!r} {record.head_args}",
            "the folder's recipe or record does not describe these weights",
        )
    except ValueError as exc:
        raise NotRecomputed(str(exc)) from None
    counts = (dm.describe_splits().get("train") or {}).get("class_counts")
    model = build_module(recipe, record.head, record.head_args, dm.spec, record.seed, class_counts=counts)
    dtype = next((v.dtype for v in weights.values() if v.is_floating_point()), torch.float32)
    model.to(dtype)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # an extra or missing key, another shape
        raise NotRecomputed(f"{WEIGHTS_FILE} does not fit the model its recipe builds: {_line(exc)}") from None
    return model


def _predict(model: Any, dm: Any, dataset: Any, recipe: dict[str, Any]) -> dict[str, Any]:
    return predict(
        model,
        dataset,
        dm.spec,
        padding=dm.padding,
        batch_size=dm.eval_batch_size or dm.batch_size,
        precision=str(recipe["trainer"]["precision"]),
    )


def _check_validation(
    record: RunRecord, rows: list[dict[str, Any]], again: dict[str, float], out: RecomputeResult, name: str
) -> None:
    """The validation metrics of the reported weights, predicted again, against metrics.csv's row of the step they
    were selected at: a trial's selection value (tuning), a best run's choice and each curve's last point cannot
    be rewritten, consistently in the record and metrics.csv, without the weights."""
    step = (record.selected or {}).get("step")
    row = next((r for r in rows if r.get("step") == step), None)
    if row is None:
        out.problems.append(
            f"{name}: {METRICS_FILE} has no evaluation at step {step}, where its reported weights were selected"
        )
        return
    for metric, value in again.items():
        logged = row.get(metric)
        if isinstance(logged, (int, float)) and not (
            math.isclose(value, logged, rel_tol=VALIDATION_TOLERANCE, abs_tol=VALIDATION_TOLERANCE)
            or (math.isnan(value) and math.isnan(logged))
        ):
            out.problems.append(
                f"{name}: {metric} is {logged} in {METRICS_FILE} at step {step}, {value} from "
                f"{WEIGHTS_FILE} on the validation split"
            )


def _task_of(record: RunRecord, comparison: dict[str, Any]) -> tuple[str, int | None]:
    from lossbench.module import resolve_head_class

    task = resolve_head_class(record.head).task
    counts = ((comparison.get("data") or {}).get("train") or {}).get("class_counts")
    classes = record.head_args.get("num_classes") or (len(counts) if counts else None)
    return task, classes


def _check_teacher_logits(
    folder: Path,
    comparison: dict[str, Any],
    students: list[RunRecord],
    teachers: list[RunRecord],
    check: _Check,
    out: RecomputeResult,
    prefix: str,
) -> None:
    """Each student's recorded teacher fingerprint against its seed's teacher's logits on the training rows,
    recomputed from the teacher's kept weights (``DIR/teacher``). A finished run without a fingerprint, or a seed
    without a finished teacher run to recompute it from, is a difference: neither check can be skipped by removing
    what it reads."""
    taught: dict[int, list[RunRecord]] = {}
    for r in students:
        if r.status != "finished":
            continue
        if "teacher" not in r.fingerprints:
            out.problems.append(
                f"{prefix}{r.loss} seed {r.seed}: its record has no teacher fingerprint, though its "
                f"comparison distils from a teacher trained in {TEACHER_DIR}/ (every run of a seed "
                "records it)"
            )
            continue
        taught.setdefault(r.seed, []).append(r)
    if not check.from_weights:
        return
    found = {t.seed: t for t in teachers if t.loss == TEACHER_LABEL and t.status == "finished"}
    for seed, runs in sorted(taught.items()):
        name = f"{prefix}{TEACHER_DIR}/{TEACHER_LABEL} seed {seed}"
        teacher = found.get(seed)
        if teacher is None:
            out.problems.append(
                f"{name}: no finished run: the teacher fingerprint of "
                f"{', '.join(sorted(r.loss for r in runs))} seed {seed} cannot be recomputed"
            )
            continue
        try:
            _check_head(teacher.head, check.trusted)
            dm = _datamodule(comparison["recipe"], seed, check)
            model = load_run_model(
                teacher,
                run_dir(folder / TEACHER_DIR, TEACHER_LABEL, seed),
                load_comparison(folder / TEACHER_DIR)["recipe"],
                dm,
            )
            want = fingerprint(training_logits(model, dm))
        except Exception as exc:  # already one difference of the teacher's own run, where it is its weights
            out.problems.append(f"{name}: its logits on the training rows cannot be recomputed: {_line(exc)}")
            continue
        for r in runs:
            if r.fingerprints["teacher"] != want:
                out.problems.append(
                    f"{prefix}{r.loss} seed {r.seed}: its record's teacher fingerprint "
                    f"{str(r.fingerprints['teacher'])[:12]} is not that of {name}'s logits on the "
                    f"training rows, recomputed from its weights ({want[:12]})"
                )


def _check_tuning(
    folder: Path,
    comparison: dict[str, Any],
    records: list[RunRecord],
    trials: list[RunRecord],
    out: RecomputeResult,
    prefix: str,
) -> None:
    """Each loss's choice selected again from the trial records: the final runs' points and ``tuning.json``."""
    from lossbench.compare.analysis.tuning import check_tuning, select_trials
    from lossbench.compare.recipe.tune import TuneSpec

    tune = TuneSpec.from_dict(comparison["recipe"]["tune"])
    chosen = select_trials(tune, list(comparison["losses"]), trials, comparison.get("select") or "final")
    final = [r for r in records if r.status == "finished"]
    problems, _ = check_tuning(comparison, trials, final, chosen)
    out.problems += [f"{prefix}{p}" for p in problems]
    path = folder / SUMMARY_FILE
    if not path.is_file():
        out.problems.append(f"{prefix}{SUMMARY_FILE} is missing: the tuning choice it summarises cannot be compared")
        return
    written = (read_json(path) or {}).get("losses") or {}
    for label, choice in chosen.items():
        again = json.loads(json.dumps(choice.to_dict()))
        mine = written.get(label) if isinstance(written, dict) else None
        if not isinstance(mine, dict) or any(mine.get(k) != again[k] for k in ("chosen", "scores", "point")):
            shown = {k: mine.get(k) for k in ("chosen", "scores")} if isinstance(mine, dict) else mine
            out.problems.append(
                f"{prefix}{SUMMARY_FILE}: loss {label!r} records {shown}, its trial records select "
                f"trial {choice.chosen} (scores {choice.scores})"
            )

"""Preprocessing inside ``Dataset.map``: raw rows -> checked ``inputs`` and ``target`` columns.

What a run computes is a :class:`_Plan`; its ``key()`` and the source dataset's fingerprint key
``datasets``' cache (:func:`_preprocess`), so a second run with the same data reads the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossbench.data.errors import _err
from lossbench.data.spec import InputKind, TargetKind

PREPROCESS_VERSION = "2"  # bump when preprocessing changes: it keys datasets' cache
# (2: finiteness checked in float32, so data cached by 1 with values beyond float32's range is checked again)


def _as_float32(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` (float64) cast to float32, and per element: not finite in float32, of which finite in float64.

    The data is used in float32, so that is where finiteness is checked: 1e39 is finite in float64 and inf
    once cast. The second mask tells "beyond float32's range" apart from NaN/inf in the source.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32)
    bad = ~np.isfinite(x32)
    return x32, bad, bad & np.isfinite(x)


def _what_is_wrong(overflow: bool, what: str) -> str:
    return (
        f"{what} beyond float32's range (±3.4e38), which become inf in the float32 data training uses,"
        if overflow
        else f"NaN or infinite {what}"
    )


# Number of batches preprocessed by ``Dataset.map`` in this process: a second run over the same
# data and arguments must leave it unchanged (datasets' cache answers). Tests read it.
PREPROCESS_CALLS = 0


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class _Plan:
    """Everything preprocessing needs; ``key()`` is what changes the output (it keys the cache)."""

    input_kind: InputKind
    target_kind: TargetKind | None  # None: language modelling (targets derived in collate)
    input_columns: list[str]
    label_column: str | None  # set with target_kind (None: language modelling)
    max_length: int | None = None
    tokenizer: Any = None
    add_eos: bool = False
    image_shape: tuple[int, int, int] | None = None
    image_layout: str | None = None  # "hw", "hwc" or "chw"
    image_mode: str | None = None  # PIL mode images are converted to
    image_scale: float = 1.0
    label_map: dict[str, int] | None = None  # string labels -> ids
    num_features: int | None = None
    num_classes: int | None = None
    split: str = ""
    argument: dict[str, str] = field(default_factory=dict)  # column -> the argument that named it
    label_names: list[str] | None = None  # class names in id order (follows from label_map/num_classes)

    def key(self) -> dict[str, Any]:
        return {
            "input_kind": self.input_kind,
            "target_kind": self.target_kind,
            "input_columns": self.input_columns,
            "label_column": self.label_column,
            "max_length": self.max_length,
            "tokenizer": getattr(self.tokenizer, "fingerprint", None),
            "add_eos": self.add_eos,
            "image_shape": self.image_shape,
            "image_layout": self.image_layout,
            "image_mode": self.image_mode,
            "image_scale": self.image_scale,
            "label_map": self.label_map,
            "num_features": self.num_features,
            "num_classes": self.num_classes,
        }


def _where(plan: _Plan, column: str) -> str:
    return f"`{plan.argument.get(column, 'column')}`={column!r}"


def _to_image(value: Any, plan: _Plan) -> np.ndarray:
    arr = np.asarray(value.convert(plan.image_mode) if hasattr(value, "convert") and plan.image_mode else value)
    arr = arr.astype(np.float32)
    if plan.image_layout == "hw":
        arr = arr[None]
    elif plan.image_layout == "hwc":
        arr = np.moveaxis(arr, -1, 0)
    if plan.image_scale != 1.0:
        arr = arr * np.float32(plan.image_scale)
    return arr


def _preprocess_batch(batch: dict[str, list], indices: list[int], plan: _Plan) -> dict[str, Any]:
    """Raw rows -> ``inputs`` (and ``target``), validated. Runs inside ``Dataset.map``."""
    global PREPROCESS_CALLS
    PREPROCESS_CALLS += 1
    out: dict[str, Any] = {}
    where = f"the {plan.split!r} split"
    if plan.input_kind == "tokens":
        column = plan.input_columns[0]
        texts = batch[column]
        for i, t in zip(indices, texts):
            if not isinstance(t, str):
                raise _err(f"{_where(plan, column)} must hold strings, got {t!r} in row {i} of {where}")
        out["inputs"] = plan.tokenizer.encode_batch(
            texts, max_length=plan.max_length, add_bos=True, add_eos=plan.add_eos
        )
    elif plan.input_kind == "features":
        parts = []
        for column in plan.input_columns:
            try:
                x = np.asarray(batch[column], dtype=np.float64)
            except (ValueError, TypeError) as exc:
                raise _err(
                    f"{_where(plan, column)} must hold numbers or equal-length lists of numbers in {where}; "
                    f"got values that do not form a numeric array ({exc})"
                ) from None
            x32, bad_values, overflow = _as_float32(x.reshape(len(indices), -1))
            bad = bad_values.any(axis=1)
            if bad.any():
                rows = [indices[j] for j in np.flatnonzero(bad)[:5]]
                nan_or_inf = (bad_values & ~overflow).any()  # NaN/inf in the source is named first
                fix = "fill or drop them" if nan_or_inf else "rescale the column or drop those rows"
                raise _err(
                    f"{_where(plan, column)} holds {_what_is_wrong(not nan_or_inf, 'values')} in {int(bad.sum())} "
                    f"row(s) of {where} (rows {rows}...); {fix} before training"
                )
            parts.append(x32)
        x = np.concatenate(parts, axis=1)
        if x.shape[1] != plan.num_features:
            raise _err(
                f"`feature_columns`={plan.input_columns!r} give {x.shape[1]} features per row in {where}, "
                f"but the training split gives {plan.num_features}"
            )
        out["inputs"] = x
    else:  # image (cast to float32 before its check)
        column, shape = plan.input_columns[0], plan.image_shape
        assert shape is not None  # _plan_image set it from the first training image
        images = []
        for i, value in zip(indices, batch[column]):
            arr = _to_image(value, plan)
            if tuple(arr.shape) != shape:
                raise _err(
                    f"{_where(plan, column)}: every image must have the shape (C, H, W)={shape} "
                    f"of the first training image, got {tuple(arr.shape)} in row {i} of {where}"
                )
            if not np.isfinite(arr).all():
                raise _err(f"{_where(plan, column)} holds NaN or infinite pixel values in row {i} of {where}")
            images.append(arr)
        out["inputs"] = np.stack(images) if images else np.zeros((0, *shape), np.float32)
    if plan.label_column is not None:  # None: language modelling, whose targets collate derives
        out["target"] = _targets(batch[plan.label_column], indices, plan, where)
    return out


def _targets(values: list, indices: list[int], plan: _Plan, where: str) -> Any:
    column = plan.label_column
    if any(v is None for v in values):
        i = indices[[v is None for v in values].index(True)]
        raise _err(
            f"`label_column`={column!r} holds a missing (None) label in row {i} of {where}; drop such rows first"
        )
    if plan.target_kind == "class":
        if plan.label_map is not None:
            return [plan.label_map[str(v)] for v in values]
        classes = plan.num_classes
        assert classes is not None  # _plan_target sets it for class targets
        y = np.asarray(values, dtype=np.float64)
        off = ~np.isfinite(y) | (y != np.round(y)) | (y < 0) | (y >= classes)
        if off.any():
            j = int(np.flatnonzero(off)[0])
            raise _err(
                f"`label_column`={column!r} must hold class ids in [0, {classes - 1}] for task 'class', "
                f"got {values[j]!r} in row {indices[j]} of {where}"
            )
        return y.astype(np.int64)
    if plan.target_kind == "real":
        y32, bad, overflow = _as_float32(np.asarray(values, dtype=np.float64))
        if bad.any():
            rows = [indices[j] for j in np.flatnonzero(bad)[:5]]
            nan_or_inf = (bad & ~overflow).any()
            raise _err(
                f"`label_column`={column!r} holds {_what_is_wrong(not nan_or_inf, 'targets')} in rows {rows} of {where}"
            )
        return y32
    # probability
    lengths = {len(v) for v in values}
    if lengths != {plan.num_classes}:
        raise _err(
            f"`label_column`={column!r} must hold probability rows of length {plan.num_classes} (from the training "
            f"split), got lengths {sorted(lengths)} in {where}"
        )
    y = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(y).all(axis=1) | (y < 0).any(axis=1) | (np.abs(y.sum(axis=1) - 1.0) > 1e-4)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise _err(
            f"`label_column`={column!r} rows must be probabilities (>= 0, summing to 1) for task 'probability', "
            f"got a row summing to {float(y[j].sum()):.6g} in row {indices[j]} of {where}"
        )
    return y.astype(np.float32)


def _standardize_batch(
    batch: dict[str, Any], indices: list[int], mean: np.ndarray, std: np.ndarray, split: str
) -> dict[str, Any]:
    global PREPROCESS_CALLS
    PREPROCESS_CALLS += 1
    x = np.asarray(batch["inputs"], dtype=np.float64)
    x32, bad, _ = _as_float32((x - mean) / std)
    rows = bad.any(axis=1)
    if rows.any():  # a value far outside a feature of tiny training std
        first = [indices[j] for j in np.flatnonzero(rows)[:5]]
        feature = int(np.flatnonzero(bad.any(axis=0))[0])
        raise _err(
            f"`standardize`=True takes feature {feature} (counting the `feature_columns` values from 0) beyond "
            f"float32's range (±3.4e38) in {int(rows.sum())} row(s) of the {split!r} split (rows {first}...): its "
            f"training std is {float(std[feature]):.3g}; rescale or drop that feature, or pass standardize=False"
        )
    return {"inputs": x32}


def _output_features(plan: _Plan):
    import datasets

    if plan.input_kind == "tokens":
        inputs: Any = datasets.List(datasets.Value("int32"))
    elif plan.input_kind == "features":
        inputs = datasets.List(datasets.Value("float32"), length=plan.num_features)
    else:
        inputs = datasets.Array3D(plan.image_shape, "float32")
    features = {"inputs": inputs}
    if plan.target_kind == "class":
        features["target"] = datasets.ClassLabel(names=plan.label_names)
    elif plan.target_kind == "real":
        features["target"] = datasets.Value("float32")
    elif plan.target_kind == "probability":
        features["target"] = datasets.List(datasets.Value("float32"), length=plan.num_classes)
    return datasets.Features(features)


def _preprocess(splits: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    """Every split through :func:`_preprocess_batch`, cached under a fingerprint of its source and ``plan``."""
    processed = {}
    for split, ds in splits.items():
        plan.split = split
        fp = _fingerprint("lossbench-preprocess", PREPROCESS_VERSION, ds._fingerprint, plan.key())
        processed[split] = ds.map(
            _preprocess_batch,
            batched=True,
            with_indices=True,
            fn_kwargs={"plan": plan},
            remove_columns=ds.column_names,
            features=_output_features(plan),
            new_fingerprint=fp,
            desc=f"lossbench: preprocess {split}",
        )
    return processed


def _standardize(processed: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Standardise ``inputs`` with the training split's mean and std (ddof=0; constant features keep std 1).

    Returns the standardised splits and the statistics ``{"mean": [...], "std": [...]}``. A standardised
    value beyond float32's range is refused.
    """
    train = processed["train"].with_format("numpy", columns=["inputs"])
    total, total_sq, n = 0.0, 0.0, 0
    for batch in train.iter(batch_size=10_000):
        x = np.asarray(batch["inputs"], dtype=np.float64)
        total = total + x.sum(axis=0)
        n += x.shape[0]
    mean = np.asarray(total, dtype=np.float64) / n  # one per feature (total is an array once a batch is added)
    for batch in train.iter(batch_size=10_000):
        x = np.asarray(batch["inputs"], dtype=np.float64)
        total_sq = total_sq + ((x - mean) ** 2).sum(axis=0)
    std = np.sqrt(total_sq / n)
    std = np.where(std > 0, std, 1.0)
    out = {}
    for split, ds in processed.items():
        fp = _fingerprint(
            "lossbench-standardize", PREPROCESS_VERSION, ds._fingerprint, mean.tobytes().hex(), std.tobytes().hex()
        )
        out[split] = ds.map(
            _standardize_batch,
            batched=True,
            with_indices=True,
            features=ds.features,
            fn_kwargs={"mean": mean, "std": std, "split": split},
            new_fingerprint=fp,
            desc=f"lossbench: standardise {split}",
        )
    return out, {"mean": mean.tolist(), "std": std.tolist()}

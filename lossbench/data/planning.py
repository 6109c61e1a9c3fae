"""Planning: what preprocessing computes, read from the training split's column types and values.

The functions here fill a :class:`~lossbench.data.preprocess._Plan` and check, on every split,
that the labels fit it; :func:`_make_spec` turns a finished plan into the data's
:class:`~lossbench.data.spec.DataSpec`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np

from lossbench.data.errors import _err
from lossbench.data.features import _feature_kind, _is_numeric_value, _list_depth_and_leaf, _list_length
from lossbench.data.preprocess import _Plan
from lossbench.data.spec import DataSpec, TargetKind
from lossbench.data.splits import _SPLIT_ARGS


def _plan_image(plan: _Plan, train, column: str) -> None:
    """Image mode, layout (hw, hwc or chw), scale and (C, H, W) shape, from the first training image."""
    feature = train.features[column]
    kind, _ = _feature_kind(feature)
    first = train[0][column]
    if kind == "image":
        plan.image_mode = first.mode if first.mode in ("L", "RGB", "RGBA") else "RGB"
        first = np.asarray(first.convert(plan.image_mode))
        plan.image_scale = 1.0 / 255.0
    else:
        depth, leaf = _list_depth_and_leaf(feature) if kind == "list" else (0, None)
        bad_list = kind == "list" and (depth not in (2, 3) or not _is_numeric_value(leaf))
        if kind not in ("array", "list") or bad_list:
            raise _err(
                f"`image_column`={column!r} must hold images (datasets.Image) or 2-D/3-D numeric arrays, "
                f"has type {feature}"
            )
        first = np.asarray(first)
        if first.dtype == np.uint8:
            plan.image_scale = 1.0 / 255.0
    if first.ndim == 2:
        plan.image_layout = "hw"
        shape = (1, *first.shape)
    elif first.ndim == 3:
        channels_last = first.shape[-1] in (1, 3, 4) and first.shape[0] not in (1, 3, 4)
        if kind == "image" or channels_last:
            plan.image_layout, shape = "hwc", (first.shape[2], first.shape[0], first.shape[1])
        else:
            plan.image_layout, shape = "chw", tuple(first.shape)
    else:
        raise _err(f"`image_column`={column!r} must hold 2-D or 3-D images, got {first.ndim}-D values")
    channels, height, width = (int(s) for s in shape)
    plan.image_shape = (channels, height, width)


def _count_features(train, columns: list[str]) -> int:
    """Features per row: one per numeric column, the list length for a column of numeric lists."""
    total = 0
    for column in columns:
        feature = train.features[column]
        kind, _ = _feature_kind(feature)
        if kind in ("int", "float", "bool"):
            total += 1
            continue
        depth, leaf = _list_depth_and_leaf(feature) if kind == "list" else (0, None)
        if kind == "list" and depth == 1 and _is_numeric_value(leaf):
            total += _list_length(train, column)
            continue
        raise _err(
            f"`feature_columns` must name numeric columns or columns of numeric lists; {column!r} has type {feature}"
        )
    if total == 0:
        raise _err(f"`feature_columns`={columns!r} give no features (empty lists)")
    return total


# the target kind "auto" resolves to, per label kind (_label_kind); and the label kinds each target kind accepts
_AUTO_TASK: dict[str, TargetKind] = {
    "classlabel": "class",
    "int": "class",
    "bool": "class",
    "str": "class",
    "float": "real",
    "prob_list": "probability",
}
_TASK_KINDS: dict[str, tuple[str, ...]] = {
    "class": ("classlabel", "int", "bool", "str", "float"),
    "real": ("classlabel", "int", "bool", "float"),
    "probability": ("prob_list",),
}


def _plan_target(
    plan: _Plan, splits: dict[str, Any], task: Literal["auto", "class", "real", "probability"], column: str
) -> None:
    """The target kind of ``task`` (resolving "auto") for ``column``, classes and label names; labels checked
    on every split.

    For classes, refused: missing labels, -1 and other negative ids, string labels mixing numbers and other
    values, a training split of one class, and sparse integer ids (:func:`_check_dense`), the latter from the
    distinct labels alone, before any per-class list is built.
    """
    plan.label_column = column
    feature = splits["train"].features[column]
    kind = _label_kind(column, feature)
    target = _AUTO_TASK.get(kind) if task == "auto" else task  # None: images or arrays, refused next
    if target is None or kind not in _TASK_KINDS[target]:
        raise _err(f"`task`={target or task!r} cannot use `label_column`={column!r} of type {feature}")
    plan.target_kind = target
    if target == "probability":
        plan.num_classes = _list_length(splits["train"], column)
    if target != "class":
        return
    uniques = {split: ds.unique(column) for split, ds in splits.items()}
    _check_no_missing(column, uniques)
    if kind == "str":
        names = _string_classes(column, uniques)
        plan.label_map = {n: i for i, n in enumerate(names)}
    else:
        _check_no_negative(column, uniques, splits)
        names = _id_classes(column, kind, feature, uniques)
    plan.num_classes = len(names)
    plan.label_names = names


def _label_kind(column: str, feature: Any) -> str:
    """The label column's kind (:func:`_feature_kind`; ``"prob_list"`` for a list of numbers), or an error."""
    kind, _ = _feature_kind(feature)
    if kind == "list":
        depth, leaf = _list_depth_and_leaf(feature)
        kind = "prob_list" if depth == 1 and _feature_kind(leaf)[0] in ("float", "int") else "other"
    if kind == "other":
        raise _err(
            f"`label_column`={column!r} has type {feature}; expected ClassLabel, int, str, float or a list of "
            "floats (probabilities)"
        )
    return kind


def _check_no_missing(column: str, uniques: dict[str, list]) -> None:
    for split, values in uniques.items():
        if None in values:
            raise _err(
                f"`label_column`={column!r} holds missing (None) labels in the {split!r} split; drop such rows first"
            )


def _string_classes(column: str, uniques: dict[str, list]) -> list[str]:
    """String labels: the training labels, sorted (their ids); every split's labels must be among them."""
    _check_not_mixed(column, uniques)
    names = sorted(uniques["train"])
    for split, values in uniques.items():
        unseen = sorted(set(values) - set(names))
        if unseen:
            raise _err(
                f"`label_column`={column!r} of the {split!r} split holds labels that the training split does "
                f"not have: {unseen[:10]}{' ...' if len(unseen) > 10 else ''}; the training labels are "
                f"{names[:20]}{' ...' if len(names) > 20 else ''}"
            )
    _check_two_classes(column, names)
    return names


def _check_no_negative(column: str, uniques: dict[str, list], splits: dict[str, Any]) -> None:
    """Class ids are >= 0; -1 (unlabeled rows, as in GLUE's test splits) is named as such."""
    for split, values in uniques.items():
        if -1 in values:
            count = sum(1 for v in splits[split][column] if v == -1)
            raise _err(
                f"`label_column`={column!r} is -1 in {count} row(s) of the {split!r} split; -1 usually marks "
                "unlabeled rows (as in GLUE's test splits): filter them out first, e.g. "
                f"dataset.filter(lambda r: r[{column!r}] != -1), "
                f"or point `{_SPLIT_ARGS[split]}` at labelled data"
            )
        negative = sorted(v for v in values if v < 0)
        if negative:
            raise _err(
                f"`label_column`={column!r} must hold class ids >= 0, got {negative[:10]} in the {split!r} split"
            )


def _id_classes(column: str, kind: str, feature: Any, uniques: dict[str, list]) -> list[str]:
    """Class names in id order for labels that are ids: a ClassLabel's names, False/True, or "0".."top"."""
    if kind == "classlabel":
        names = list(feature.names)
        for split, values in uniques.items():
            over = sorted(v for v in values if v >= len(names))
            if over:
                raise _err(
                    f"`label_column`={column!r} holds ids {over[:10]} beyond its {len(names)} ClassLabel "
                    f"names in the {split!r} split"
                )
        _check_two_classes(column, [names[v] for v in uniques["train"]])
        return names
    if kind == "bool":
        _check_two_classes(column, [str(bool(v)) for v in uniques["train"]])
        return ["False", "True"]
    # int or integral floats
    if kind == "float" and not all(float(v).is_integer() for values in uniques.values() for v in values):
        bad = sorted(v for values in uniques.values() for v in values if not float(v).is_integer())
        raise _err(f"`task`='class' needs whole-number labels in `label_column`={column!r}, got {bad[:10]}")
    _check_two_classes(column, [str(int(v)) for v in uniques["train"]])
    ids = sorted({int(v) for values in uniques.values() for v in values})
    _check_dense(column, ids)  # before the names: a sparse top id would make billions of them
    return [str(i) for i in range(ids[-1] + 1)]


# Sparse integer class ids: ids are classes 0..top (one output each), so ids such as {10001, 90210}
# would make 90211 classes for 2 labels. Refused when more than half the classes would never occur
# AND more than this many would (a few unused ids, e.g. {0, 5}, stay allowed).
_SPARSE_SLACK = 16
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _check_dense(column: str, ids: list[int]) -> None:
    """Refuse integer class ids where ``top + 1 > 2 * n_distinct and top + 1 - n_distinct > 16``."""
    top, n = ids[-1], len(ids)
    if top + 1 > 2 * n and top + 1 - n > _SPARSE_SLACK:
        shown = ids[:5]
        mapping = "{" + ", ".join(f"{v}: {i}" for i, v in enumerate(shown)) + (", ..." if n > len(shown) else "") + "}"
        raise _err(
            f"`label_column`={column!r} holds sparse class ids: the largest id is {top} but there are only {n} "
            f"distinct labels, so task 'class' would make {top + 1} classes (one per id from 0 to {top}), "
            f"{top + 1 - n} of them never seen. Map the ids to 0..{n - 1} first, e.g. mapping = {mapping} "
            f"(all of them: mapping = {{v: i for i, v in enumerate(sorted(set(dataset[{column!r}])))}}) and "
            f"dataset.map(lambda r: {{{column!r}: mapping[r[{column!r}]]}}) (save_to_disk it and pass that folder "
            f"as `path`), or cast the column to strings, dataset.cast_column({column!r}, datasets.Value('string')): "
            "string labels are mapped to dense ids 0..n-1 automatically. If these are quantities to predict rather "
            "than classes, use task='real'"
        )


def _check_not_mixed(column: str, uniques: dict[str, list]) -> None:
    """Refuse string labels of which some, but not all, are numbers (a stray value in a numeric CSV column)."""
    values = {v for vs in uniques.values() for v in vs}
    numeric = sorted((v for v in values if _NUMBER.fullmatch(v.strip())), key=lambda v: float(v))
    if not numeric or len(numeric) == len(values):
        return
    other = sorted(values - set(numeric))
    where = [split for split, vs in uniques.items() if set(vs) & set(other)]
    raise _err(
        f"`label_column`={column!r} mixes numbers and other values: {other[:5]}{' ...' if len(other) > 5 else ''} "
        f"(in the {', '.join(map(repr, where))} split{'s' if len(where) > 1 else ''}) among the numeric labels "
        f"{numeric[:10]}{' ...' if len(numeric) > 10 else ''}. One stray value in a numeric CSV column makes the "
        "whole column strings, and it would silently become a class of its own: fix or drop the rows holding "
        f"them, e.g. dataset.filter(lambda r: r[{column!r}] not in {other[:5]!r})"
    )


def _check_two_classes(column: str, train_classes: list[str]) -> None:
    """Refuse a training split whose labels are all one class (given by name)."""
    if len(set(train_classes)) == 1:
        raise _err(
            f"the 'train' split of `label_column`={column!r} holds one class only ({train_classes[0]!r}); "
            "a classifier needs at least two classes in training: give training rows of the other classes"
        )


def _make_spec(plan: _Plan, task: str, max_length: int) -> DataSpec:
    """The :class:`DataSpec` of the data ``plan`` preprocesses (``max_length``: the module's argument)."""
    if plan.input_kind == "tokens":
        tok = plan.tokenizer
        common: dict[str, Any] = {"vocab_size": tok.vocab_size, "max_length": max_length, "pad_id": tok.pad_id}
    elif plan.input_kind == "features":
        common = {"num_features": plan.num_features}
    else:
        common = {"image_shape": plan.image_shape}
    if task == "lm":
        return DataSpec("tokens", "token", num_classes=plan.tokenizer.vocab_size, **common)
    target = plan.target_kind
    assert target is not None  # _plan_target set it (task is not "lm")
    names = tuple(plan.label_names) if target == "class" and plan.label_names else None
    return DataSpec(
        plan.input_kind,
        target,
        num_classes=plan.num_classes if target in ("class", "probability") else None,
        class_names=names,
        **common,
    )

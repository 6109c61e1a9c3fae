"""The train/validation/test splits of a raw dataset: picked by name, or carved out of the training split."""

from __future__ import annotations

from typing import Any

import numpy as np

from lossbench.data.errors import _err
from lossbench.data.features import _feature_kind
from lossbench.data.memory import is_memory_name

SPLITS = ("train", "validation", "test")
_SPLIT_ARGS = {"train": "train_split", "validation": "val_split", "test": "test_split"}  # split -> its argument


def _stratify_labels(train, column: str | None) -> np.ndarray | None:
    """The class labels of ``column`` to stratify carved splits by; None when it holds no classes."""
    if column is None or column not in train.column_names:
        return None
    kind, _ = _feature_kind(train.features[column])
    if kind not in ("classlabel", "int", "bool", "str"):
        return None
    values = train[column]
    return np.asarray([str(v) for v in values])


def _make_splits(
    raw,
    *,
    path: str,
    train_split: str,
    val_split: str | None,
    test_split: str | None,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    stratify_column: str | None,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``{split: Dataset}`` in :data:`SPLITS` order; missing validation/test splits carved out of training.

    ``sources``, when given, is filled with where each split came from, in words (for reports).
    """
    available = list(raw.keys())
    shown = "the in-memory dataset" if is_memory_name(path) else repr(path)
    if train_split not in raw:
        raise _err(f"`train_split`={train_split!r} is not a split of `path`={path!r}; its splits are {available}")
    train = raw[train_split]
    out: dict[str, Any] = {}
    carve: dict[str, float] = {}
    wanted = (("validation", val_split, val_fraction), ("test", test_split, test_fraction))
    for split, arg, fraction in wanted:
        if arg is not None and arg in raw and arg != train_split:
            out[split] = raw[arg]
            if sources is not None:
                sources[split] = f"given: split {arg!r} of {shown}"
        elif fraction > 0:
            carve[split] = fraction
    if sources is not None:
        sources["train"] = f"given: split {train_split!r} of {shown}" + (" (less the carved rows)" if carve else "")
        labels_given = _stratify_labels(train, stratify_column) is not None
        for split, fraction in carve.items():
            sources[split] = f"carved: {fraction:g} of {train_split!r}, split_seed {split_seed}" + (
                ", stratified by class" if labels_given else ""
            )
    if carve:
        n = train.num_rows
        sizes = {split: int(round(fraction * n)) for split, fraction in carve.items()}
        for split, size in sizes.items():
            if size == 0:
                arg = "val_fraction" if split == "validation" else "test_fraction"
                raise _err(
                    f"`{arg}`={carve[split]} of the {n} rows of `train_split`={train_split!r} gives an empty "
                    f"{split} split; raise `{arg}`, give a {split} split, or set `{arg}`=0 for none"
                )
        if sum(sizes.values()) >= n:
            raise _err(
                f"carving validation/test rows out of the {n} rows of `train_split`={train_split!r} "
                "leaves no training rows; lower `val_fraction`/`test_fraction`"
            )
        parts = _carve(n, sizes, _stratify_labels(train, stratify_column), split_seed)
        for split, rows in parts.items():
            if split == "train":
                continue
            out[split] = train.select(rows)
        train = train.select(parts["train"])
    out["train"] = train
    return {s: out[s] for s in SPLITS if s in out}


def _carve(n: int, sizes: dict[str, int], labels: np.ndarray | None, seed: int) -> dict[str, list[int]]:
    """Seeded (stratified when possible) disjoint split of ``range(n)``; each part sorted."""
    from sklearn.model_selection import train_test_split

    def split(index: np.ndarray, size: int, strat: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if strat is not None:
            try:
                return train_test_split(index, test_size=size, random_state=seed, stratify=strat)
            except ValueError:  # a class too small to stratify
                pass
        return train_test_split(index, test_size=size, random_state=seed)

    index = np.arange(n)
    held_size = sum(sizes.values())
    keep, held = split(index, held_size, labels)
    parts = {"train": keep}
    names = list(sizes)
    if len(names) == 2:
        strat = None if labels is None else labels[held]
        a, b = split(held, sizes[names[1]], strat)
        parts[names[0]], parts[names[1]] = a, b
    else:
        parts[names[0]] = held
    return {k: sorted(int(i) for i in v) for k, v in parts.items()}


def _check_columns(
    splits: dict[str, Any],
    path: str,
    *,
    text_column: str | None,
    image_column: str | None,
    feature_columns: list[str] | None,
    label_column: str | None,
) -> None:
    """Every named column (those not None) is in every split."""
    needed: list[tuple[str, str]] = []
    if text_column is not None:
        needed.append(("text_column", text_column))
    if image_column is not None:
        needed.append(("image_column", image_column))
    for c in feature_columns or []:
        needed.append(("feature_columns", c))
    if label_column is not None:
        needed.append(("label_column", label_column))
    for split, ds in splits.items():
        for arg, column in needed:
            if column not in ds.column_names:
                raise _err(
                    f"`{arg}`={column!r} is not a column of the {split!r} split of `path`={path!r}; "
                    f"its columns are {ds.column_names}"
                )

"""Bundled real datasets, offline: built from scikit-learn's bundled files.

Each dataset comes as a :class:`datasets.DatasetDict` with the splits ``"train"``,
``"validation"`` and ``"test"`` (70/15/15, stratified by class for classification),
drawn from ``seed``. Numeric features (and the regression target) are standardised
with the mean and standard deviation of the training split only; the statistics are
kept in ``info.description`` and returned by :func:`standardization_stats`.

========================  ==========================================================
name                      columns
========================  ==========================================================
``digits``                ``image`` float32 (8, 8) in [0, 1]; ``label`` ClassLabel 10
``breast_cancer``         ``features`` 30 float32; ``label`` ClassLabel(malignant, benign)
``diabetes``              ``features`` 10 float32; ``target`` float32 (standardised)
``wine``                  ``features`` 13 float32; ``label`` ClassLabel 3
========================  ==========================================================

Example:
    >>> from lossbench.data import load_builtin
    >>> wine = load_builtin("wine")
    >>> {split: wine[split].num_rows for split in wine}
    {'train': 124, 'validation': 27, 'test': 27}
    >>> wine["train"].features["label"].names
    ['class_0', 'class_1', 'class_2']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from lossbench._hints import did_you_mean

BUILTIN_PREFIX = "lossbench:"
BUILTIN_VERSION = "2"  # bump when the way the datasets are built changes (it keys the on-disk cache)

BUILTIN_DATASETS: dict[str, str] = {
    "digits": "8x8 grey images of handwritten digits; 10 classes; 1,797 rows (UCI, via scikit-learn)",
    "breast_cancer": "Wisconsin diagnostic breast cancer; binary (malignant/benign); 30 numeric features; 569 rows",
    "diabetes": "diabetes progression after one year; regression; 10 numeric features; 442 rows",
    "wine": "wine cultivars from chemical analysis; 3 classes; 13 numeric features; 178 rows",
}

# (input column, target column) of each bundled dataset
BUILTIN_COLUMNS: dict[str, tuple[str, str]] = {
    "digits": ("image", "label"),
    "breast_cancer": ("features", "label"),
    "diabetes": ("features", "target"),
    "wine": ("features", "label"),
}

SPLIT_FRACTIONS = {"train": 0.70, "validation": 0.15, "test": 0.15}
_STATS_MARKER = "\nstandardization: "


class UnknownDatasetError(KeyError, ValueError):
    """A builtin dataset name that does not exist (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def check_builtin_name(name: str, argument: str = "name") -> str:
    """Return ``name`` (without a ``lossbench:`` prefix) if it is a builtin dataset, or raise with the names."""
    if not isinstance(name, str):
        raise TypeError(f"load_builtin: `{argument}` must be a str, got {type(name).__name__}")
    key = name[len(BUILTIN_PREFIX) :] if name.startswith(BUILTIN_PREFIX) else name
    if key not in BUILTIN_DATASETS:
        raise UnknownDatasetError(
            f"load_builtin: `{argument}` must be one of {sorted(BUILTIN_DATASETS)}, got {name!r}"
            f"{did_you_mean(key, BUILTIN_DATASETS, n=1)}"
        )
    return key


def _split_indices(n: int, seed: int, stratify: np.ndarray | None) -> dict[str, np.ndarray]:
    """Seeded 70/15/15 split of ``range(n)``; each split's indices sorted (the file order is kept)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(n)
    held = SPLIT_FRACTIONS["validation"] + SPLIT_FRACTIONS["test"]
    train, rest = train_test_split(index, test_size=held, random_state=seed, stratify=stratify)
    rest_strat = None if stratify is None else stratify[rest]
    val, test = train_test_split(rest, test_size=SPLIT_FRACTIONS["test"] / held, random_state=seed, stratify=rest_strat)
    return {"train": np.sort(train), "validation": np.sort(val), "test": np.sort(test)}


def _standardize(x: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise ``x`` with the mean/std (float64, ddof=0) of the rows ``train``; constant columns keep std 1."""
    ref = x[train].astype(np.float64)
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((x - mean) / std).astype(np.float32), mean, std


def _digits() -> tuple[dict[str, np.ndarray], Any, dict[str, Any], str]:
    from datasets import Array2D, ClassLabel, Features
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    features = Features({"image": Array2D((8, 8), "float32"), "label": ClassLabel(names=[str(i) for i in range(10)])})
    return {"image": images, "label": labels}, features, {}, "label"


def _tabular(loader: Callable[..., Any], names: list[str] | None):
    """A bundled table from a scikit-learn loader: class ``names`` in id order, or None for a real target."""
    from datasets import ClassLabel, Features, List, Value

    def build(seed: int):
        bunch = loader()
        x = np.asarray(bunch.data, dtype=np.float64)
        y = np.asarray(bunch.target)
        regression = names is None
        target = "target" if regression else "label"
        idx = _split_indices(len(x), seed, None if regression else y)
        x, mean, std = _standardize(x, idx["train"])
        stats: dict[str, Any] = {"feature_mean": mean.tolist(), "feature_std": std.tolist()}
        if names is None:  # the target stays raw: the data module puts its training mean and std in the spec
            y = y.astype(np.float32)
            label_feature: Any = Value("float32")
        else:
            y = y.astype(np.int64)
            label_feature = ClassLabel(names=list(names))
        features = Features({"features": List(Value("float32"), length=x.shape[1]), target: label_feature})
        return {"features": x, target: y}, features, stats, idx

    return build


def _breast_cancer_names() -> list[str]:
    return ["malignant", "benign"]  # sklearn's target_names: 0 = malignant, 1 = benign


def _build(name: str, seed: int) -> tuple[dict[str, np.ndarray], Any, dict[str, Any], dict[str, np.ndarray]]:
    from sklearn import datasets as skd

    if name == "digits":
        columns, features, stats, label = _digits()
        idx = _split_indices(len(columns[label]), seed, columns[label])
        return columns, features, stats, idx
    if name == "breast_cancer":
        return _tabular(skd.load_breast_cancer, _breast_cancer_names())(seed)
    if name == "wine":
        return _tabular(skd.load_wine, ["class_0", "class_1", "class_2"])(seed)
    if name == "diabetes":
        return _tabular(lambda: skd.load_diabetes(scaled=False), None)(seed)
    raise AssertionError(name)  # pragma: no cover - names are checked first


def builtin_fingerprint(name: str, seed: int, split: str) -> str:
    """Deterministic fingerprint of one split of a builtin dataset (keys ``datasets``' cache)."""
    key = json.dumps(["lossbench-builtin", BUILTIN_VERSION, name, int(seed), split])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def load_builtin(name: str, seed: int = 0):
    """Load a bundled real dataset as a ``datasets.DatasetDict`` with train/validation/test splits.

    Args:
        name: one of :data:`BUILTIN_DATASETS` (``"digits"``, ``"breast_cancer"``, ``"diabetes"``,
            ``"wine"``); a ``"lossbench:"`` prefix is accepted.
        seed: seed of the 70/15/15 split (stratified for classification). Same seed, same
            splits, same bytes.

    Returns:
        ``DatasetDict`` with ``"train"``, ``"validation"`` and ``"test"``. Features are
        standardised with training statistics (see :func:`standardization_stats`).

    Raises:
        UnknownDatasetError: ``name`` is not a builtin dataset (the message lists them).

    Example:
        >>> ds = load_builtin("diabetes", seed=0)
        >>> ds["train"].column_names, ds["train"].num_rows
        (['features', 'target'], 309)
        >>> round(float(np.mean(ds["train"]["target"])), 1)  # the raw target (disease progression)
        152.1
    """
    import datasets

    key = check_builtin_name(name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"load_builtin: `seed` must be an int, got {type(seed).__name__}")
    columns, features, stats, idx = _build(key, int(seed))
    description = f"lossbench builtin dataset {key!r} (split seed {int(seed)}): {BUILTIN_DATASETS[key]}."
    if stats:
        description += _STATS_MARKER + json.dumps(stats)
    splits = {}
    for split, rows in idx.items():
        info = datasets.DatasetInfo(description=description, features=features, dataset_name=key)
        tmp = datasets.Dataset.from_dict({c: v[rows] for c, v in columns.items()}, features=features, info=info)
        splits[split] = datasets.Dataset(
            tmp.data,
            info=tmp.info,
            split=datasets.NamedSplit(split),
            fingerprint=builtin_fingerprint(key, int(seed), split),
        )
    return datasets.DatasetDict(splits)


def standardization_stats(dataset: Any) -> dict[str, Any]:
    """The training statistics a builtin dataset was standardised with (empty for ``digits``).

    Keys: ``feature_mean`` and ``feature_std`` (lists). Targets are not standardised here: for real
    targets :class:`~lossbench.data.HFDataModule` puts the training split's mean and std in its spec.
    """
    description = dataset.info.description or ""
    if _STATS_MARKER not in description:
        return {}
    return json.loads(description.split(_STATS_MARKER, 1)[1])

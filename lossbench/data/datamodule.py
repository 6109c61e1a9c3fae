"""``HFDataModule``: a Hugging Face ``datasets`` dataset as a LightningDataModule with a :class:`DataSpec`."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from lossbench.data.builtin import BUILTIN_COLUMNS, BUILTIN_PREFIX, BUILTIN_VERSION, check_builtin_name, load_builtin
from lossbench.data.spec import DataSpec
from lossbench.data.tokenize import BPETokenizer, ByteTokenizer, _import_tokenizers, get_tokenizer, train_bpe_tokenizer

TASKS = ("auto", "class", "real", "probability", "lm")
SPLITS = ("train", "validation", "test")
PREPROCESS_VERSION = "1"  # bump when preprocessing changes: it keys datasets' cache
IGNORE_INDEX = -100  # language-modelling targets at padding

_OWNER = "HFDataModule"
_INT_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_FLOAT_DTYPES = {"float16", "float32", "float64", "bfloat16"}
_STR_DTYPES = {"string", "large_string"}

# Number of batches preprocessed by ``Dataset.map`` in this process: a second run over the same
# data and arguments must leave it unchanged (datasets' cache answers). Tests read it.
PREPROCESS_CALLS = 0


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub could not be reached to load a dataset by name."""


def _err(message: str) -> ValueError:
    return ValueError(f"{_OWNER}: {message}")


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _looks_offline(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a network failure rather than a bad argument."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = type(e).__name__
        if isinstance(e, (ConnectionError, TimeoutError)) or any(k in name for k in ("Offline", "Connect", "Timeout")):
            return True
        e = e.__cause__ or e.__context__
    return False


def _feature_kind(feature: Any) -> tuple[str, Any]:
    """Classify a ``datasets`` feature.

    Returns ``(kind, inner)``, kind one of classlabel, int, float, bool, str, list, array, image, other.
    """
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return "classlabel", feature
    if isinstance(feature, datasets.Value):
        dtype = feature.dtype
        if dtype in _INT_DTYPES:
            return "int", dtype
        if dtype in _FLOAT_DTYPES:
            return "float", dtype
        if dtype == "bool":
            return "bool", dtype
        if dtype in _STR_DTYPES:
            return "str", dtype
        return "other", dtype
    if isinstance(feature, datasets.Image):
        return "image", feature
    if isinstance(feature, (datasets.Array2D, datasets.Array3D)):
        return "array", feature
    inner = getattr(feature, "feature", None)
    if inner is not None and type(feature).__name__ in ("List", "LargeList", "Sequence"):
        return "list", feature
    if isinstance(feature, list) and len(feature) == 1:  # old-style [Value(...)]
        return "list", datasets.List(feature[0])
    return "other", feature


def _list_depth_and_leaf(feature: Any) -> tuple[int, Any]:
    depth = 0
    while _feature_kind(feature)[0] == "list":
        feature = feature.feature if not isinstance(feature, list) else feature[0]
        depth += 1
    return depth, feature


def _is_numeric_value(feature: Any) -> bool:
    return _feature_kind(feature)[0] in ("int", "float", "bool")


@dataclass
class _Plan:
    """Everything preprocessing needs; ``key()`` is what changes the output (it keys the cache)."""

    input_kind: str
    target_kind: str | None  # None: language modelling (targets derived in collate)
    input_columns: list[str]
    label_column: str | None
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

    def key(self) -> dict[str, Any]:
        return {
            "input_kind": self.input_kind, "target_kind": self.target_kind, "input_columns": self.input_columns,
            "label_column": self.label_column, "max_length": self.max_length,
            "tokenizer": getattr(self.tokenizer, "fingerprint", None), "add_eos": self.add_eos,
            "image_shape": self.image_shape, "image_layout": self.image_layout, "image_mode": self.image_mode,
            "image_scale": self.image_scale,
            "label_map": self.label_map, "num_features": self.num_features, "num_classes": self.num_classes,
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
            x = x.reshape(len(indices), -1)
            bad = ~np.isfinite(x).all(axis=1)
            if bad.any():
                rows = [indices[j] for j in np.flatnonzero(bad)[:5]]
                raise _err(
                    f"{_where(plan, column)} holds NaN or infinite values in {int(bad.sum())} row(s) of {where} "
                    f"(rows {rows}...); fill or drop them before training"
                )
            parts.append(x)
        x = np.concatenate(parts, axis=1)
        if x.shape[1] != plan.num_features:
            raise _err(
                f"`feature_columns`={plan.input_columns!r} give {x.shape[1]} features per row in {where}, "
                f"but the training split gives {plan.num_features}"
            )
        out["inputs"] = x.astype(np.float32)
    else:  # image
        column = plan.input_columns[0]
        images = []
        for i, value in zip(indices, batch[column]):
            arr = _to_image(value, plan)
            if tuple(arr.shape) != plan.image_shape:
                raise _err(
                    f"{_where(plan, column)}: every image must have the shape (C, H, W)={plan.image_shape} "
                    f"of the first training image, got {tuple(arr.shape)} in row {i} of {where}"
                )
            if not np.isfinite(arr).all():
                raise _err(f"{_where(plan, column)} holds NaN or infinite pixel values in row {i} of {where}")
            images.append(arr)
        out["inputs"] = np.stack(images) if images else np.zeros((0, *plan.image_shape), np.float32)
    if plan.target_kind is not None:
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
        y = np.asarray(values, dtype=np.float64)
        off = ~np.isfinite(y) | (y != np.round(y)) | (y < 0) | (y >= plan.num_classes)
        if off.any():
            j = int(np.flatnonzero(off)[0])
            raise _err(
                f"`label_column`={column!r} must hold class ids in [0, {plan.num_classes - 1}] for task 'class', "
                f"got {values[j]!r} in row {indices[j]} of {where}"
            )
        return y.astype(np.int64)
    if plan.target_kind == "real":
        y = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(y)
        if bad.any():
            rows = [indices[j] for j in np.flatnonzero(bad)[:5]]
            raise _err(f"`label_column`={column!r} holds NaN or infinite targets in rows {rows} of {where}")
        return y.astype(np.float32)
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


def _standardize_batch(batch: dict[str, Any], mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    global PREPROCESS_CALLS
    PREPROCESS_CALLS += 1
    x = np.asarray(batch["inputs"], dtype=np.float64)
    return {"inputs": ((x - mean) / std).astype(np.float32)}


class SeededShuffleSampler(Sampler[int]):
    """A random order of ``range(num_rows)`` that is a function of ``(seed, epoch)`` only.

    Lightning calls :meth:`set_epoch` before each training epoch, so epoch ``e`` of any run
    with the same seed sees the same order, however many times the loader was iterated.

    Example:
        >>> list(SeededShuffleSampler(5, seed=0)) == list(SeededShuffleSampler(5, seed=0))
        True
    """

    def __init__(self, num_rows: int, seed: int = 0) -> None:
        self.num_rows = int(num_rows)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> list[int]:
        """The row order of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        state = np.random.SeedSequence([self.seed, epoch]).generate_state(2, dtype=np.uint32)
        gen = torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))
        return torch.randperm(self.num_rows, generator=gen).tolist()

    def __iter__(self):
        return iter(self.order())

    def __len__(self) -> int:
        return self.num_rows


class Collate:
    """Rows of the processed dataset -> ``{"inputs": Tensor, "target": Tensor}`` with the spec's dtypes."""

    def __init__(self, spec: DataSpec, padding: str = "longest") -> None:
        self.input_kind = spec.input_kind
        self.target_kind = spec.target_kind
        self.pad_id = spec.pad_id if spec.pad_id is not None else 0
        self.width = None
        if padding == "max_length" and spec.max_length is not None:
            self.width = spec.max_length + (1 if spec.target_kind == "token" else 0)

    def _pad(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        width = self.width or max(len(r) for r in rows)
        out = torch.full((len(rows), width), self.pad_id, dtype=torch.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.input_kind == "tokens":
            tokens = self._pad([torch.as_tensor(r["inputs"]) for r in rows])
            if self.target_kind == "token":
                target = tokens[:, 1:].clone()
                target[target == self.pad_id] = IGNORE_INDEX
                return {"inputs": tokens[:, :-1].contiguous(), "target": target}
            inputs = tokens
        else:
            inputs = torch.stack([torch.as_tensor(r["inputs"]) for r in rows]).to(torch.float32)
        target = torch.stack([torch.as_tensor(r["target"]) for r in rows])
        target = target.to(torch.int64) if self.target_kind == "class" else target.to(torch.float32)
        return {"inputs": inputs, "target": target}


def _check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _err(f"`{name}` must be an int >= {low}{' or None' if allow_none else ''}, got {value!r}")


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise _err(f"`{name}` must be a number in [0, 1), got {value!r}")


class HFDataModule(L.LightningDataModule):
    """A Hugging Face ``datasets`` dataset (hub, local files or bundled) as a LightningDataModule.

    Batches are ``{"inputs": Tensor, "target": Tensor}`` as :class:`~lossbench.data.spec.DataSpec`
    describes: int64 token ids (N, T) padded with ``pad_id=0``, float32 features (N, F) or images
    (N, C, H, W); int64 class ids (N,), float32 real targets (N,) or probability rows (N, C), or
    int64 next-token ids (N, T) with ``-100`` at padding for language modelling.

    Loading is lazy: :attr:`spec`, :attr:`num_classes` and :attr:`label_names` load and check the
    data on first access (so LightningCLI can link ``data.spec`` to the model at instantiation),
    and :meth:`setup` does the same. Every check runs on every split before any training.

    Splits: ``train_split`` must exist; a missing ``val_split``/``test_split`` is carved out of the
    training split (``val_fraction``/``test_fraction`` of it, seeded by ``split_seed``, stratified by
    class when every class has enough rows). Bundled datasets come already split.

    Labels (``task="auto"``): ``ClassLabel``, int, bool and str columns are classes (strings map to
    ids in sorted order of the training labels, kept in :attr:`label_names` and the spec); float
    columns are real targets (kept raw, not standardised); lists of floats are probability rows.
    ``task="class"`` also accepts integral floats, ``task="real"`` also ints. Labels of ``-1`` are
    rejected: ``datasets`` uses -1 for unlabeled rows (e.g. GLUE test splits), so filter them out
    (``dataset.filter(lambda r: r["label"] != -1)``) or point the split at labelled data.

    Text: byte-level ids by default (no download); ``tokenizer="bpe"`` trains a byte-level BPE on
    the training split and saves it under the cache (reused by later runs); a path to a saved
    tokenizer JSON also works. Classification sequences start with ``bos``; language-modelling
    sequences are ``bos + text + eos`` truncated to ``max_length + 1`` ids, then shifted.

    Preprocessing runs through ``Dataset.map`` with fingerprints computed from the source
    dataset's fingerprint and the preprocessing arguments, so a second run with the same data and
    arguments reads datasets' cache instead of recomputing.

    ``predict_dataloader`` serves the test split.

    Shuffling: the training order is a function of ``(seed, epoch)`` only
    (:class:`SeededShuffleSampler`; Lightning sets the epoch); :meth:`train_order` gives it.

    Args:
        path: a hub dataset name (``"ag_news"``), a builder for local files (``"csv"``,
            ``"parquet"``, ``"json"``) with ``data_files``, a local dataset folder, or a bundled
            dataset ``"lossbench:<name>"`` (see :data:`lossbench.data.BUILTIN_DATASETS`).
        name: the dataset configuration, if it has several.
        data_files: local files for a builder: a path, a list of paths, or ``{split: path(s)}``.
        train_split: the split to train on.
        val_split: the validation split; carved out of ``train_split`` when absent or None.
        test_split: the test split; carved out of ``train_split`` when absent or None.
        val_fraction: share of the training rows carved out for validation when needed (0 = none).
        test_fraction: share of the training rows carved out for testing when needed (0 = none).
        split_seed: seed of carved and bundled splits; apart from ``seed`` so that training seeds
            vary initialisation and batch order on one fixed split.
        text_column: the column of texts (token inputs).
        feature_columns: numeric columns (each a number or a fixed-length list), concatenated,
            or a single column holding a list.
        image_column: the column of images (``datasets.Image``, 2-D or 3-D arrays); ``Image`` and
            uint8 pixels are scaled to [0, 1], other arrays are used as given.
        label_column: the target column; None: ``"label"``, or a bundled dataset's own.
        task: ``"auto"``, ``"class"``, ``"real"``, ``"probability"``, or ``"lm"`` (next-token
            prediction on ``text_column``; ``label_column`` is not used).
        tokenizer: ``"byte"``, ``"bpe"``, or a path to a saved BPE tokenizer JSON.
        tokenizer_vocab_size: vocabulary size of a ``"bpe"`` tokenizer (>= 259).
        max_length: the most tokens per input sequence (>= 1); longer texts are truncated.
        padding: ``"longest"`` pads each batch to its longest sequence, ``"max_length"`` to
            ``max_length``.
        batch_size: training batch size.
        eval_batch_size: validation/test/predict batch size; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: seed of the training order.
        standardize: standardise numeric features with the training split's mean and std.
        cache_dir: datasets' cache folder; None: datasets' default (``HF_DATASETS_CACHE``).

    Example:
        >>> import tempfile
        >>> dm = HFDataModule("lossbench:wine", batch_size=4, cache_dir=tempfile.mkdtemp())
        >>> dm.spec.input_kind, dm.spec.num_features, dm.num_classes
        ('features', 13, 3)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> batch["inputs"].shape, batch["target"].dtype
        (torch.Size([4, 13]), torch.int64)
    """

    def __init__(
        self,
        path: str,
        name: str | None = None,
        data_files: str | list[str] | dict[str, str | list[str]] | None = None,
        train_split: str = "train",
        val_split: str | None = "validation",
        test_split: str | None = "test",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        text_column: str | None = None,
        feature_columns: list[str] | str | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
        task: Literal["auto", "class", "real", "probability", "lm"] = "auto",
        tokenizer: str = "byte",
        tokenizer_vocab_size: int = 4096,
        max_length: int = 128,
        padding: Literal["longest", "max_length"] = "longest",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        standardize: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(path, str) or not path:
            raise _err(
                f"`path` must be a non-empty str (a hub name, a builder such as 'csv', or 'lossbench:<name>'), "
                f"got {path!r}"
            )
        self.builtin = check_builtin_name(path, "path") if path.startswith(BUILTIN_PREFIX) else None
        if self.builtin is not None and (data_files is not None or name is not None):
            used = "`data_files`" if data_files is not None else "`name`"
            raise _err(f"{used} is not used with the bundled dataset `path`={path!r}; drop it, or load your files "
                       "with a builder such as path='csv'")
        for arg, value in (("train_split", train_split), ("val_split", val_split), ("test_split", test_split)):
            if not (isinstance(value, str) and value) and not (value is None and arg != "train_split"):
                raise _err(f"`{arg}` must be a split name{' or None' if arg != 'train_split' else ''}, got {value!r}")
        _check_fraction("val_fraction", val_fraction)
        _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise _err(
                f"`val_fraction` + `test_fraction` must leave training rows (sum < 1), "
                f"got {val_fraction} + {test_fraction}"
            )
        if task not in TASKS:
            raise _err(f"`task` must be one of {TASKS}, got {task!r}")
        _check_int("max_length", max_length, 1)
        _check_int("batch_size", batch_size, 1)
        _check_int("eval_batch_size", eval_batch_size, 1, allow_none=True)
        _check_int("num_workers", num_workers, 0)
        _check_int("seed", seed, 0)
        _check_int("split_seed", split_seed, 0)
        if padding not in ("longest", "max_length"):
            raise _err(f"`padding` must be 'longest' or 'max_length', got {padding!r}")
        if isinstance(feature_columns, str):
            feature_columns = [feature_columns]
        if feature_columns is not None:
            feature_columns = list(feature_columns)
            if not feature_columns or not all(isinstance(c, str) and c for c in feature_columns):
                raise _err(f"`feature_columns` must be a non-empty list of column names, got {feature_columns!r}")
        given = {k: v for k, v in (("text_column", text_column), ("feature_columns", feature_columns),
                                   ("image_column", image_column)) if v is not None}
        if len(given) > 1:
            raise _err(f"give exactly one of `text_column`, `feature_columns`, `image_column`; got {given}")
        if not given:
            if self.builtin is None:
                raise _err(
                    f"give exactly one of `text_column`, `feature_columns`, `image_column` to say what the inputs of "
                    f"{path!r} are; got none"
                )
            column = BUILTIN_COLUMNS[self.builtin][0]
            if column == "image":
                image_column = column
            else:
                feature_columns = [column]
        if label_column is None:
            label_column = BUILTIN_COLUMNS[self.builtin][1] if self.builtin else "label"
        if task == "lm" and text_column is None:
            raise _err("`task`='lm' (language modelling) needs `text_column`, got None")
        if not isinstance(tokenizer, str) or not tokenizer:
            raise _err(f"`tokenizer` must be 'byte', 'bpe' or a path to a saved tokenizer JSON, got {tokenizer!r}")
        if tokenizer != "byte" and text_column is not None:
            if tokenizer == "bpe":
                _import_tokenizers()
                _check_int("tokenizer_vocab_size", tokenizer_vocab_size, ByteTokenizer.vocab_size)
            elif not Path(tokenizer).is_file():
                raise _err(f"`tokenizer` must be 'byte', 'bpe' or a path to a saved tokenizer JSON, got {tokenizer!r} "
                           "(no such file)")
        self.save_hyperparameters()
        self.path, self.name, self.data_files = path, name, data_files
        self.train_split, self.val_split, self.test_split = train_split, val_split, test_split
        self.val_fraction, self.test_fraction, self.split_seed = float(val_fraction), float(test_fraction), split_seed
        self.text_column, self.feature_columns, self.image_column = text_column, feature_columns, image_column
        self.label_column, self.task = label_column, task
        self.tokenizer_name, self.tokenizer_vocab_size = tokenizer, tokenizer_vocab_size
        self.max_length, self.padding = max_length, padding
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.seed, self.standardize, self.cache_dir = seed, bool(standardize), cache_dir
        self._spec: DataSpec | None = None
        self._processed: dict[str, Any] = {}
        self._tokenizer: Any = None
        self._label_names: list[str] | None = None
        self.feature_stats: dict[str, list[float]] | None = None

    # ------------------------------------------------------------------ public properties

    @property
    def spec(self) -> DataSpec:
        """The inputs and targets of this data (loads and checks the data on first access)."""
        self._ensure_loaded()
        assert self._spec is not None
        return self._spec

    @property
    def num_classes(self) -> int | None:
        """Classes (or the vocabulary size for ``task="lm"``); None for real targets."""
        return self.spec.num_classes

    @property
    def label_names(self) -> list[str] | None:
        """Class names in id order (sorted training labels for string labels); None when not classes."""
        self._ensure_loaded()
        return None if self._label_names is None else list(self._label_names)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer of text inputs (None for other inputs)."""
        self._ensure_loaded()
        return self._tokenizer

    @property
    def train_dataset(self):
        """The processed training split (``inputs``/``target`` columns, torch format)."""
        return self._split("train")

    @property
    def val_dataset(self):
        """The processed validation split, or None when there is none."""
        return self._split("validation")

    @property
    def test_dataset(self):
        """The processed test split, or None when there is none."""
        return self._split("test")

    def _split(self, split: str):
        self._ensure_loaded()
        return self._processed.get(split)

    # ------------------------------------------------------------------ Lightning hooks

    def prepare_data(self) -> None:
        """Download (hub) or materialise (bundled) the raw data once, on one process."""
        self._load_raw()

    def setup(self, stage: str | None = None) -> None:
        self._ensure_loaded()

    def train_order(self, epoch: int = 0) -> list[int]:
        """The training rows in the order of ``epoch``: a function of ``(seed, epoch)``."""
        return SeededShuffleSampler(len(self.train_dataset), self.seed).order(epoch)

    def _loader(self, split: str, shuffle: bool) -> DataLoader | list:
        data = self._split(split)
        if data is None:
            return []
        return DataLoader(
            data,
            batch_size=self.batch_size if shuffle else (self.eval_batch_size or self.batch_size),
            sampler=SeededShuffleSampler(len(data), self.seed) if shuffle else None,
            shuffle=False,
            collate_fn=Collate(self.spec, self.padding),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)  # type: ignore[return-value]

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        return {"data_spec": self._spec.to_dict()} if self._spec is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("data_spec")
        if saved is None:
            return
        saved_spec = DataSpec.from_dict(saved)
        if saved_spec != self.spec:
            raise _err(
                f"the checkpoint was trained on data with spec {saved_spec}, but this data module gives {self.spec}; "
                "the data or its preprocessing arguments changed"
            )

    # ------------------------------------------------------------------ loading

    @property
    def _cache_root(self) -> Path:
        import datasets

        return Path(self.cache_dir or datasets.config.HF_DATASETS_CACHE)

    def _load_raw(self):
        import datasets

        if self.builtin is not None:
            if not datasets.is_caching_enabled():
                return load_builtin(self.builtin, self.split_seed)
            folder = self._cache_root / "lossbench_builtin" / f"{self.builtin}-seed{self.split_seed}-v{BUILTIN_VERSION}"
            if not (folder / "dataset_dict.json").is_file():
                tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
                load_builtin(self.builtin, self.split_seed).save_to_disk(str(tmp))
                try:
                    os.replace(tmp, folder)
                except OSError:  # another process got there first
                    import shutil

                    shutil.rmtree(tmp, ignore_errors=True)
            return datasets.load_from_disk(str(folder))
        local = Path(self.path)
        if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
            out = datasets.load_from_disk(str(local))
            return out if isinstance(out, datasets.DatasetDict) else datasets.DatasetDict({self.train_split: out})
        try:
            out = datasets.load_dataset(self.path, self.name, data_files=self.data_files, cache_dir=self.cache_dir)
        except FileNotFoundError as exc:
            if self.data_files is not None:
                raise FileNotFoundError(f"{_OWNER}: `data_files`={self.data_files!r} could not be read: {exc}") from exc
            if _looks_offline(exc):
                raise self._hub_error(exc) from exc
            raise FileNotFoundError(
                f"{_OWNER}: `path`={self.path!r} is not a hub dataset, a local dataset or a builder with "
                f"`data_files`: {exc}"
            ) from exc
        except Exception as exc:
            if _looks_offline(exc):
                raise self._hub_error(exc) from exc
            raise
        if isinstance(out, datasets.Dataset):
            out = datasets.DatasetDict({self.train_split: out})
        return out

    def _hub_error(self, exc: BaseException) -> HubUnreachableError:
        return HubUnreachableError(
            f"{_OWNER}: could not reach the Hugging Face Hub to load `path`={self.path!r} "
            f"({type(exc).__name__}: {exc}). Check the network (or set HF_HUB_OFFLINE=1 if it is already cached), "
            "or load local files instead: a builder with `data_files`, e.g. path='parquet', "
            "data_files={'train': 'train.parquet'}, or a bundled dataset such as path='lossbench:digits'"
        )

    def _ensure_loaded(self) -> None:
        if self._spec is not None:
            return
        raw = self._load_raw()
        splits = self._make_splits(raw)
        self._check_columns(splits)
        for split, ds in splits.items():
            if ds.num_rows == 0:
                raise _err(f"the {split!r} split {self._split_origin(split)} is empty (0 rows); give data with rows")
        plan = self._plan(splits)
        processed = {}
        for split, ds in splits.items():
            plan.split = split
            fp = _fingerprint("lossbench-preprocess", PREPROCESS_VERSION, ds._fingerprint, plan.key())
            processed[split] = ds.map(
                _preprocess_batch, batched=True, with_indices=True, fn_kwargs={"plan": plan},
                remove_columns=ds.column_names, features=self._output_features(plan), new_fingerprint=fp,
                desc=f"lossbench: preprocess {split}",
            )
        if plan.input_kind == "features" and self.standardize:
            processed = self._standardize(processed)
        self._processed = {k: v.with_format("torch") for k, v in processed.items()}
        self._tokenizer = plan.tokenizer
        self._spec = self._make_spec(plan)

    def _split_origin(self, split: str) -> str:
        arg = {"train": "train_split", "validation": "val_split", "test": "test_split"}[split]
        name = getattr(self, arg)
        return f"(`{arg}`={name!r} of `path`={self.path!r})"

    def _stratify_labels(self, train) -> np.ndarray | None:
        if self.task in ("lm", "real", "probability") or self.label_column not in train.column_names:
            return None
        kind, _ = _feature_kind(train.features[self.label_column])
        if kind not in ("classlabel", "int", "bool", "str"):
            return None
        values = train[self.label_column]
        return np.asarray([str(v) for v in values])

    def _make_splits(self, raw) -> dict[str, Any]:
        available = list(raw.keys())
        if self.train_split not in raw:
            raise _err(
                f"`train_split`={self.train_split!r} is not a split of `path`={self.path!r}; its splits are {available}"
            )
        train = raw[self.train_split]
        out: dict[str, Any] = {}
        carve: dict[str, float] = {}
        wanted = (("validation", self.val_split, self.val_fraction), ("test", self.test_split, self.test_fraction))
        for split, arg, fraction in wanted:
            if arg is not None and arg in raw and arg != self.train_split:
                out[split] = raw[arg]
            elif fraction > 0:
                carve[split] = fraction
        if carve:
            n = train.num_rows
            sizes = {split: int(round(fraction * n)) for split, fraction in carve.items()}
            for split, size in sizes.items():
                if size == 0:
                    arg = "val_fraction" if split == "validation" else "test_fraction"
                    raise _err(
                        f"`{arg}`={carve[split]} of the {n} rows of `train_split`={self.train_split!r} gives an empty "
                        f"{split} split; raise `{arg}`, give a {split} split, or set `{arg}`=0 for none"
                    )
            if sum(sizes.values()) >= n:
                raise _err(f"carving validation/test rows out of the {n} rows of `train_split`={self.train_split!r} "
                           "leaves no training rows; lower `val_fraction`/`test_fraction`")
            parts = self._carve(n, sizes, self._stratify_labels(train))
            for split, rows in parts.items():
                if split == "train":
                    continue
                out[split] = train.select(rows)
            train = train.select(parts["train"])
        out["train"] = train
        return {s: out[s] for s in SPLITS if s in out}

    def _carve(self, n: int, sizes: dict[str, int], labels: np.ndarray | None) -> dict[str, list[int]]:
        """Seeded (stratified when possible) disjoint split of ``range(n)``; each part sorted."""
        from sklearn.model_selection import train_test_split

        def split(index: np.ndarray, size: int, strat: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            if strat is not None:
                try:
                    return train_test_split(index, test_size=size, random_state=self.split_seed, stratify=strat)
                except ValueError:  # a class too small to stratify
                    pass
            return train_test_split(index, test_size=size, random_state=self.split_seed)

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

    def _check_columns(self, splits: dict[str, Any]) -> None:
        needed: list[tuple[str, str]] = []
        if self.text_column is not None:
            needed.append(("text_column", self.text_column))
        if self.image_column is not None:
            needed.append(("image_column", self.image_column))
        for c in self.feature_columns or []:
            needed.append(("feature_columns", c))
        if self.task != "lm":
            needed.append(("label_column", self.label_column))
        for split, ds in splits.items():
            for arg, column in needed:
                if column not in ds.column_names:
                    raise _err(
                        f"`{arg}`={column!r} is not a column of the {split!r} split of `path`={self.path!r}; "
                        f"its columns are {ds.column_names}"
                    )

    # ------------------------------------------------------------------ what to compute

    def _plan(self, splits: dict[str, Any]) -> _Plan:
        train = splits["train"]
        if self.text_column is not None:
            plan = _Plan("tokens", None, [self.text_column], None, argument={self.text_column: "text_column"})
            kind, _ = _feature_kind(train.features[self.text_column])
            if kind != "str":
                raise _err(
                    f"`text_column`={self.text_column!r} must hold strings, has type {train.features[self.text_column]}"
                )
            plan.tokenizer = self._make_tokenizer(train)
            if self.task == "lm":
                plan.max_length, plan.add_eos = self.max_length + 1, True
            else:
                plan.max_length = self.max_length
        elif self.image_column is not None:
            plan = _Plan("image", None, [self.image_column], None, argument={self.image_column: "image_column"})
            self._plan_image(plan, train)
        else:
            columns = list(self.feature_columns or [])
            plan = _Plan("features", None, columns, None, argument={c: "feature_columns" for c in columns})
            plan.num_features = self._count_features(train, columns)
        if self.task != "lm":
            plan.label_column = self.label_column
            self._plan_target(plan, splits)
        return plan

    def _make_tokenizer(self, train):
        if self.tokenizer_name == "byte":
            return ByteTokenizer()
        if self.tokenizer_name != "bpe":
            return get_tokenizer(self.tokenizer_name)
        key = _fingerprint(
            "lossbench-bpe", PREPROCESS_VERSION, train._fingerprint, self.text_column, self.tokenizer_vocab_size
        )
        file = self._cache_root / "lossbench_tokenizers" / f"bpe-{key}.json"
        if file.is_file():
            return BPETokenizer.load(file)
        texts = (t for batch in train.select_columns([self.text_column]).iter(batch_size=1000)
                 for t in batch[self.text_column] if isinstance(t, str))
        return train_bpe_tokenizer(texts, self.tokenizer_vocab_size, file)

    def _plan_image(self, plan: _Plan, train) -> None:
        column = self.image_column
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
        plan.image_shape = tuple(int(s) for s in shape)  # type: ignore[assignment]

    def _count_features(self, train, columns: list[str]) -> int:
        total = 0
        for column in columns:
            feature = train.features[column]
            kind, _ = _feature_kind(feature)
            if kind in ("int", "float", "bool"):
                total += 1
                continue
            depth, leaf = _list_depth_and_leaf(feature) if kind == "list" else (0, None)
            if kind == "list" and depth == 1 and _is_numeric_value(leaf):
                length = getattr(feature, "length", -1)
                total += length if length and length > 0 else len(train[0][column])
                continue
            raise _err(
                f"`feature_columns` must name numeric columns or columns of numeric lists; "
                f"{column!r} has type {feature}"
            )
        if total == 0:
            raise _err(f"`feature_columns`={columns!r} give no features (empty lists)")
        return total

    def _plan_target(self, plan: _Plan, splits: dict[str, Any]) -> None:
        column = plan.label_column
        feature = splits["train"].features[column]
        kind, _ = _feature_kind(feature)
        task = self.task
        if kind == "list":
            depth, leaf = _list_depth_and_leaf(feature)
            kind = "prob_list" if depth == 1 and _feature_kind(leaf)[0] in ("float", "int") else "other"
        if kind == "other":
            raise _err(
                f"`label_column`={column!r} has type {feature}; expected ClassLabel, int, str, float or a list of "
                "floats (probabilities)"
            )
        if task == "auto":
            task = {"classlabel": "class", "int": "class", "bool": "class", "str": "class", "float": "real",
                    "prob_list": "probability"}[kind]
        allowed = {
            "class": ("classlabel", "int", "bool", "str", "float"),
            "real": ("classlabel", "int", "bool", "float"),
            "probability": ("prob_list",),
        }[task]
        if kind not in allowed:
            raise _err(f"`task`={task!r} cannot use `label_column`={column!r} of type {feature}")
        plan.target_kind = task
        if task == "probability":
            length = getattr(feature, "length", -1)
            plan.num_classes = length if length and length > 0 else len(splits["train"][0][column])
            return
        if task != "class":
            return
        uniques = {split: ds.unique(column) for split, ds in splits.items()}
        for split, values in uniques.items():
            if None in values:
                raise _err(
                    f"`label_column`={column!r} holds missing (None) labels in the {split!r} split; "
                    "drop such rows first"
                )
        if kind == "str":
            names = sorted(uniques["train"])
            for split, values in uniques.items():
                unseen = sorted(set(values) - set(names))
                if unseen:
                    raise _err(
                        f"`label_column`={column!r} of the {split!r} split holds labels that the training split does "
                        f"not have: {unseen[:10]}{' ...' if len(unseen) > 10 else ''}; the training labels are "
                        f"{names[:20]}{' ...' if len(names) > 20 else ''}"
                    )
            plan.label_map = {n: i for i, n in enumerate(names)}
            plan.num_classes = len(names)
            self._label_names = names
            return
        for split, values in uniques.items():
            ds = splits[split]
            if -1 in values:
                count = sum(1 for v in ds[column] if v == -1)
                raise _err(
                    f"`label_column`={column!r} is -1 in {count} row(s) of the {split!r} split; -1 usually marks "
                    "unlabeled rows (as in GLUE's test splits): filter them out first, e.g. "
                    f"dataset.filter(lambda r: r[{column!r}] != -1), "
                    f"or point `{self._split_arg(split)}` at labelled data"
                )
            negative = sorted(v for v in values if v < 0)
            if negative:
                raise _err(
                    f"`label_column`={column!r} must hold class ids >= 0, got {negative[:10]} in the {split!r} split"
                )
        if kind == "classlabel":
            names = list(feature.names)
            for split, values in uniques.items():
                over = sorted(v for v in values if v >= len(names))
                if over:
                    raise _err(f"`label_column`={column!r} holds ids {over[:10]} beyond its {len(names)} ClassLabel "
                               f"names in the {split!r} split")
        else:  # int, bool or integral floats
            top = max(max(values) for values in uniques.values())
            if kind == "float" and not all(float(v).is_integer() for values in uniques.values() for v in values):
                bad = sorted(v for values in uniques.values() for v in values if not float(v).is_integer())
                raise _err(f"`task`='class' needs whole-number labels in `label_column`={column!r}, got {bad[:10]}")
            names = ["False", "True"] if kind == "bool" else [str(i) for i in range(int(top) + 1)]
        plan.num_classes = len(names)
        self._label_names = names

    def _split_arg(self, split: str) -> str:
        return {"train": "train_split", "validation": "val_split", "test": "test_split"}[split]

    def _output_features(self, plan: _Plan):
        import datasets

        if plan.input_kind == "tokens":
            inputs: Any = datasets.List(datasets.Value("int32"))
        elif plan.input_kind == "features":
            inputs = datasets.List(datasets.Value("float32"), length=plan.num_features)
        else:
            inputs = datasets.Array3D(plan.image_shape, "float32")
        features = {"inputs": inputs}
        if plan.target_kind == "class":
            features["target"] = datasets.ClassLabel(names=self._label_names)
        elif plan.target_kind == "real":
            features["target"] = datasets.Value("float32")
        elif plan.target_kind == "probability":
            features["target"] = datasets.List(datasets.Value("float32"), length=plan.num_classes)
        return datasets.Features(features)

    def _standardize(self, processed: dict[str, Any]) -> dict[str, Any]:
        """Standardise ``inputs`` with the training split's mean and std (ddof=0; constant features keep std 1)."""
        train = processed["train"].with_format("numpy", columns=["inputs"])
        total, total_sq, n = 0.0, 0.0, 0
        for batch in train.iter(batch_size=10_000):
            x = np.asarray(batch["inputs"], dtype=np.float64)
            total = total + x.sum(axis=0)
            n += x.shape[0]
        mean = total / n
        for batch in train.iter(batch_size=10_000):
            x = np.asarray(batch["inputs"], dtype=np.float64)
            total_sq = total_sq + ((x - mean) ** 2).sum(axis=0)
        std = np.sqrt(total_sq / n)
        std = np.where(std > 0, std, 1.0)
        self.feature_stats = {"mean": mean.tolist(), "std": std.tolist()}
        out = {}
        for split, ds in processed.items():
            fp = _fingerprint(
                "lossbench-standardize", PREPROCESS_VERSION, ds._fingerprint, mean.tobytes().hex(), std.tobytes().hex()
            )
            out[split] = ds.map(
                _standardize_batch, batched=True, fn_kwargs={"mean": mean, "std": std}, features=ds.features,
                new_fingerprint=fp, desc=f"lossbench: standardise {split}",
            )
        return out

    def _make_spec(self, plan: _Plan) -> DataSpec:
        if plan.input_kind == "tokens":
            tok = plan.tokenizer
            common: dict[str, Any] = {"vocab_size": tok.vocab_size, "max_length": self.max_length, "pad_id": tok.pad_id}
        elif plan.input_kind == "features":
            common = {"num_features": plan.num_features}
        else:
            common = {"image_shape": plan.image_shape}
        if self.task == "lm":
            return DataSpec("tokens", "token", num_classes=plan.tokenizer.vocab_size, **common)
        names = tuple(self._label_names) if plan.target_kind == "class" and self._label_names else None
        return DataSpec(
            plan.input_kind, plan.target_kind,  # type: ignore[arg-type]
            num_classes=plan.num_classes if plan.target_kind in ("class", "probability") else None,
            class_names=names, **common,
        )

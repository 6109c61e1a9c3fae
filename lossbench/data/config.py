"""The settings of an :class:`~lossbench.data.HFDataModule`, each defined once with its default and its check.

``HFDataModule``'s keyword arguments are this dataclass's fields, in the same order, and take their
defaults from it (nanoGPT style: one commented line per setting). :meth:`DataConfig.check` raises
``ValueError`` naming the argument, what was expected and what was given, and returns the settings as
the data module uses them (paths as str, ``feature_columns`` as a list, a bundled dataset's own columns
filled in). It reads no data: the checks that need rows run when the data loads.

Example:
    >>> DataConfig("lossbench:wine", batch_size=0).check()
    Traceback (most recent call last):
    ...
    ValueError: HFDataModule: `batch_size` must be an int >= 1, got 0
    >>> config = DataConfig("lossbench:digits").check()
    >>> config.image_column, config.label_column
    ('image', 'label')
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from lossbench.data.builtin import BUILTIN_COLUMNS, BUILTIN_PREFIX, check_builtin_name
from lossbench.data.corrupt import Imbalance, LabelNoise
from lossbench.data.errors import _check_fraction, _check_int, _err
from lossbench.data.memory import is_dataset_object, is_memory_name, memory_dataset, memory_name
from lossbench.data.tokenize import HF_PREFIX, ByteTokenizer, _import_tokenizers, import_transformers

__all__ = ["PADDINGS", "TASKS", "DataConfig"]

TASKS: tuple[str, ...] = ("auto", "class", "real", "probability", "lm")
PADDINGS: tuple[str, ...] = ("longest", "max_length")


@dataclass
class DataConfig:
    """Where the data comes from, which columns are inputs and target, and how rows become batches."""

    path: (
        Any  # a hub dataset, a builder ("csv", "parquet", "json") with data_files, a saved folder, "lossbench:<name>",
    )
    # or a datasets.Dataset / DatasetDict in memory (held under its content's name, "memory:<sha256>")
    name: str | None = None  # the dataset configuration, if it has several
    data_files: str | list[str] | dict[str, str | list[str]] | None = None  # local files: path(s), {split: path(s)}
    train_split: str = "train"  # the split to train on (must exist)
    val_split: str | None = "validation"  # carved out of train_split when absent or None
    test_split: str | None = "test"  # carved out of train_split when absent or None
    val_fraction: float = 0.15  # share of the training rows carved out for validation when needed (0 = none)
    test_fraction: float = 0.15  # share of the training rows carved out for testing when needed (0 = none)
    split_seed: int = 0  # seed of carved and bundled splits (fixed while `seed` varies)
    text_column: str | None = None  # texts: token inputs
    feature_columns: list[str] | str | None = None  # numeric columns (or one column of lists), concatenated
    image_column: str | None = None  # images (datasets.Image, 2-D or 3-D arrays)
    label_column: str | None = None  # the target; None: "label", or a bundled dataset's own
    task: Literal["auto", "class", "real", "probability", "lm"] = "auto"  # auto: by the label's type; lm: next tokens
    tokenizer: str = "bpe"  # "bpe" (trained on the training split), "byte", "hf:<model>" (its own), a JSON's path
    tokenizer_vocab_size: int = 4096  # the largest vocabulary of a "bpe" tokenizer (>= 259)
    max_length: int = 128  # the most tokens per input sequence; longer texts are truncated
    padding: Literal["longest", "max_length"] = "longest"  # pad each batch to its longest sequence, or to max_length
    batch_size: int = 32  # training batch size
    eval_batch_size: int | None = None  # validation/test/predict batch size; None: batch_size
    num_workers: int = 0  # DataLoader worker processes
    seed: int = 0  # seed of the training order (the comparison sets it per seed)
    standardize: bool = True  # standardise numeric features with the training split's mean and std
    standardize_target: bool = True  # real targets: train on the standardised target (metrics stay on its scale)
    cache_dir: str | None = None  # datasets' cache folder; None: HF_DATASETS_CACHE
    label_noise: dict[str, Any] | None = None  # seeded label noise (lossbench.data.corrupt.LabelNoise)
    imbalance: dict[str, Any] | None = None  # seeded class imbalance (lossbench.data.corrupt.Imbalance)

    @property
    def builtin(self) -> str | None:
        """The bundled dataset's name (``"wine"`` for ``path="lossbench:wine"``), or None."""
        path = self.path
        return path[len(BUILTIN_PREFIX) :] if isinstance(path, str) and path.startswith(BUILTIN_PREFIX) else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> DataConfig:
        """Check every setting, in the order a reader meets them; return the settings as the data module uses them.

        Raises:
            ValueError: the first bad setting, naming the argument, what was expected and what was given
                (``UnknownDatasetError`` for an unknown bundled dataset).
            ImportError: ``tokenizer="bpe"`` on text without the ``tokenizers`` library.
        """
        path = memory_name(self.path, "path", self.train_split) if is_dataset_object(self.path) else self.path
        config = replace(
            self,
            path=_plain_paths(path),
            data_files=_plain_paths(self.data_files),
            cache_dir=_plain_paths(self.cache_dir),
        )
        _check_source(config)
        _check_splits(config)
        _check_task(config)
        _check_batching(config)
        config = _resolve_columns(config)
        _check_target(config)
        _check_tokenizer(config)
        _check_corruption(config)
        return config


def _plain_paths(value: Any) -> Any:
    """os.PathLike -> str, also inside lists and dicts (checkpoints then hold only safe types)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain_paths(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_paths(v) for k, v in value.items()}
    return value


def _check_source(config: DataConfig) -> None:
    """``path``; a bundled dataset's name, which takes no ``data_files`` or ``name``."""
    path = config.path
    if not isinstance(path, str) or not path:
        raise _err(
            "`path` must be a non-empty str (a hub name, a builder such as 'csv', or 'lossbench:<name>') or a "
            f"datasets.Dataset / DatasetDict, got {path!r}"
        )
    own = "the bundled dataset" if config.builtin is not None else "the in-memory dataset"
    if is_memory_name(path):
        memory_dataset(path, "path")  # held by this process, or a clear refusal
    elif config.builtin is not None:
        check_builtin_name(path, "path")
    else:
        return
    if config.data_files is not None or config.name is not None:
        used = "`data_files`" if config.data_files is not None else "`name`"
        raise _err(
            f"{used} is not used with {own} `path`={path!r}; drop it, or load your files "
            "with a builder such as path='csv'"
        )


def _check_splits(config: DataConfig) -> None:
    """Split names, the fractions carved out of the training split, and the seed that carves them."""
    for arg in ("train_split", "val_split", "test_split"):
        value = getattr(config, arg)
        if not (isinstance(value, str) and value) and not (value is None and arg != "train_split"):
            raise _err(f"`{arg}` must be a split name{' or None' if arg != 'train_split' else ''}, got {value!r}")
    _check_fraction("val_fraction", config.val_fraction)
    _check_fraction("test_fraction", config.test_fraction)
    if config.val_fraction + config.test_fraction >= 1.0:
        raise _err(
            f"`val_fraction` + `test_fraction` must leave training rows (sum < 1), "
            f"got {config.val_fraction} + {config.test_fraction}"
        )
    _check_int("split_seed", config.split_seed, 0)


def _check_task(config: DataConfig) -> None:
    if config.task not in TASKS:
        raise _err(f"`task` must be one of {TASKS}, got {config.task!r}")


def _check_batching(config: DataConfig) -> None:
    """Sequence length and padding, batch sizes, workers and the training order's seed."""
    _check_int("max_length", config.max_length, 1)
    _check_int("batch_size", config.batch_size, 1)
    _check_int("eval_batch_size", config.eval_batch_size, 1, allow_none=True)
    _check_int("num_workers", config.num_workers, 0)
    _check_int("seed", config.seed, 0)
    if config.padding not in PADDINGS:
        raise _err(f"`padding` must be 'longest' or 'max_length', got {config.padding!r}")


def _feature_list(columns: Any) -> list[str] | None:
    """``feature_columns`` as a list of distinct column names (one name -> a list of it), or None."""
    if columns is None:
        return None
    columns = [columns] if isinstance(columns, str) else list(columns)
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise _err(f"`feature_columns` must be a non-empty list of column names, got {columns!r}")
    counts = {c: columns.count(c) for c in dict.fromkeys(columns)}
    twice = {c: k for c, k in counts.items() if k > 1}
    if twice:
        raise _err(
            f"`feature_columns` must name each column once; "
            f"{', '.join(f'{c!r} is given {k} times' for c, k in twice.items())} in {columns!r}"
        )
    return columns


def _resolve_columns(config: DataConfig) -> DataConfig:
    """Exactly one input column argument (a bundled dataset's own when none is given), and the label column."""
    features = _feature_list(config.feature_columns)
    config = replace(config, feature_columns=features)
    inputs = ("text_column", "feature_columns", "image_column")
    given = {k: getattr(config, k) for k in inputs if getattr(config, k) is not None}
    if len(given) > 1:
        raise _err(f"give exactly one of `text_column`, `feature_columns`, `image_column`; got {given}")
    builtin = config.builtin
    if not given:
        if builtin is None:
            raise _err(
                f"give exactly one of `text_column`, `feature_columns`, `image_column` to say what the inputs of "
                f"{config.path!r} are; got none"
            )
        column = BUILTIN_COLUMNS[builtin][0]
        config = replace(config, **({"image_column": column} if column == "image" else {"feature_columns": [column]}))
    if config.label_column is None:
        config = replace(config, label_column=BUILTIN_COLUMNS[builtin][1] if builtin else "label")
    return config


def _check_target(config: DataConfig) -> None:
    """The target is never an input (the model would read the answer); language modelling needs texts."""
    label = config.label_column
    if config.task == "lm":
        if config.text_column is None:
            raise _err("`task`='lm' (language modelling) needs `text_column`, got None")
        return
    features = config.feature_columns
    if features is not None and label in features:
        raise _err(
            f"`label_column`={label!r} is also in `feature_columns`={features!r}; the target "
            "must not be an input: drop it from `feature_columns` or name another `label_column`"
        )
    for arg in ("text_column", "image_column"):
        column = getattr(config, arg)
        if column is not None and column == label:
            hint = " (or task='lm' to model the texts themselves)" if arg == "text_column" else ""
            raise _err(
                f"`label_column`={label!r} is also the `{arg}`; the target must not be the input: "
                f"name another `label_column`{hint}"
            )


def _check_tokenizer(config: DataConfig) -> None:
    """``tokenizer`` (and a BPE's vocabulary size) when the inputs are texts."""
    tokenizer = config.tokenizer
    expected = (
        "'byte', 'bpe' or a path to a saved tokenizer JSON (or 'hf:<model name or folder>': a pretrained model's own)"
    )
    if not isinstance(tokenizer, str) or not tokenizer or tokenizer == HF_PREFIX:
        raise _err(f"`tokenizer` must be {expected}, got {tokenizer!r}")
    if tokenizer == "byte" or config.text_column is None:
        return
    if tokenizer == "bpe":
        _import_tokenizers()
        _check_int("tokenizer_vocab_size", config.tokenizer_vocab_size, ByteTokenizer.vocab_size)
    elif tokenizer.startswith(HF_PREFIX):
        import_transformers()  # the tokenizer itself loads with the data (a hub name may need the network)
    elif not Path(tokenizer).is_file():
        raise _err(f"`tokenizer` must be {expected}, got {tokenizer!r} (no such file)")


def _check_corruption(config: DataConfig) -> None:
    """``label_noise`` and ``imbalance`` (their settings are checked by parsing them)."""
    if config.label_noise is not None:
        LabelNoise.parse(config.label_noise)
    if config.imbalance is not None:
        Imbalance.parse(config.imbalance)

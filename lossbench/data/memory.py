"""Datasets held in memory (a ``datasets.Dataset`` or ``DatasetDict``), named by their contents.

Recipes, checkpoints' hyper-parameters and results folders hold plain values only, so a dataset object given
where a path goes is registered under a name made of its content fingerprint, ``"memory:<sha256>"``, and the data
module looks it up by that name. The fingerprint covers the split names, each split's features and every row of
every column in order (:func:`~lossbench.data.identity.content_fingerprint`), never where the rows came from:
the same rows give the same name in any process, other rows another name. So a comparison's setup hash covers an
in-memory dataset as it covers a file's contents, and rerunning a comparison with changed rows is refused.

The registry is this process's own. A name whose dataset was not given in this process (a recipe file written by
a comparison on in-memory data, run again from the command line) is refused, saying how to pass the dataset.

Example:
    >>> import datasets
    >>> rows = datasets.Dataset.from_dict({"x": [[0.0, 1.0], [1.0, 0.0]], "label": [0, 1]})
    >>> name = memory_name(rows)
    >>> name.startswith(MEMORY_PREFIX), memory_name(rows.select([0, 1])) == name
    (True, True)
    >>> memory_dataset(name)["train"].num_rows  # a Dataset is its DatasetDict's training split
    2
    >>> memory_name(rows.select([1, 0])) == name  # the same rows in another order: other data
    False
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

__all__ = ["MEMORY_PREFIX", "describe_memory", "is_dataset_object", "is_memory_name", "memory_dataset", "memory_name"]

MEMORY_PREFIX = "memory:"
"""The start of an in-memory dataset's name: ``"memory:"`` + the sha256 of its contents."""

_HELD: dict[str, tuple[Any, str]] = {}  # name -> (the object given, the split a lone Dataset is)


def is_dataset_object(value: Any) -> bool:
    """Whether ``value`` is a ``datasets`` object (``Dataset``, ``DatasetDict`` or their iterable kinds). Imports
    nothing: without ``datasets`` imported, nothing can be one."""
    module = sys.modules.get("datasets")
    if module is None:
        return False
    kinds = (module.Dataset, module.DatasetDict, module.IterableDataset, module.IterableDatasetDict)
    return isinstance(value, kinds)


def is_memory_name(value: Any) -> bool:
    """Whether ``value`` is an in-memory dataset's name (``"memory:<sha256>"``)."""
    return isinstance(value, str) and value.startswith(MEMORY_PREFIX)


def memory_name(dataset: Any, arg: str = "path", train_split: str = "train") -> str:
    """Register ``dataset`` in this process and return its name, ``"memory:<sha256 of its contents>"``.

    Args:
        dataset: a ``datasets.Dataset`` (the training split, named ``train_split``, from which validation and test
            are carved as for a single-split file) or a ``datasets.DatasetDict`` (its splits as they are).
        arg: the argument that gave it, for errors.
        train_split: the split name a lone ``Dataset`` takes.

    Raises:
        ValueError: an iterable (streaming) dataset, or not a dataset; the message names ``arg``.
    """
    import datasets

    if isinstance(dataset, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise ValueError(
            f"HFDataModule: `{arg}` must be a datasets.Dataset or DatasetDict held in memory, got a streaming "
            f"{type(dataset).__name__}: its rows cannot be fingerprinted or read twice in the same order; "
            "materialise it first, e.g. datasets.Dataset.from_generator(lambda: iter(it), features=it.features)"
        )
    if isinstance(dataset, datasets.Dataset):
        splits = {train_split: dataset}
    elif isinstance(dataset, datasets.DatasetDict) and len(dataset):
        splits = dict(dataset)
    else:
        raise ValueError(
            f"HFDataModule: `{arg}` must be a path, a datasets.Dataset or a DatasetDict with splits, "
            f"got {type(dataset).__name__} {dataset!r}"[:400]
        )
    name = MEMORY_PREFIX + _fingerprint(splits)
    _HELD.setdefault(name, (dataset, train_split))
    return name


def _fingerprint(splits: dict[str, Any]) -> str:
    """sha256 over the splits (by name), each split's features and its rows' contents, every column."""
    from lossbench.data.identity import content_fingerprint

    h = hashlib.sha256(b"lossbench-memory-dataset|v1|")
    for split in sorted(splits):
        data = splits[split]
        h.update(f"|split={split}|features={data.features}|".encode())
        h.update(content_fingerprint(data, tuple(data.column_names)).encode())
    return h.hexdigest()


def memory_dataset(name: str, arg: str = "path") -> Any:
    """The ``datasets.DatasetDict`` registered as ``name`` in this process.

    Raises:
        ValueError: no dataset of that name was given in this process; the message says how to give it.
    """
    import datasets

    held = _HELD.get(name)
    if held is None:
        raise ValueError(
            f"HFDataModule: `{arg}`={name!r} names an in-memory dataset that this Python process does not hold: "
            "an in-memory dataset lives only in the process that was given it; pass the same dataset again "
            "(lossbench.compare(recipe, data__path=dataset) or HFDataModule(path=dataset)); its rows must be the "
            "same, or the name differs"
        )
    dataset, train_split = held
    return datasets.DatasetDict({train_split: dataset}) if isinstance(dataset, datasets.Dataset) else dataset


def describe_memory(name: str) -> dict[str, Any]:
    """What a report says of an in-memory dataset: its fingerprint and rows per split as given."""
    splits = memory_dataset(name)
    return {
        "kind": "in-memory dataset",
        "fingerprint": name[len(MEMORY_PREFIX) :],
        "splits": {split: int(data.num_rows) for split, data in splits.items()},
    }

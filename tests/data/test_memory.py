"""In-memory datasets (lossbench.data.memory): named by their contents, loaded like the same rows from a file."""

import subprocess
import sys

import datasets
import numpy as np
import pytest

from lossbench.data import HFDataModule
from lossbench.data import memory as memory_module
from lossbench.data.memory import MEMORY_PREFIX, describe_memory, memory_dataset, memory_name

from .conftest import numeric_frame, text_frame, write_parquet

ROWS = {"x": [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]], "label": [0, 1, 1]}
NAME_SNIPPET = (
    "import datasets\nfrom lossbench.data.memory import memory_name\n"
    f"print(memory_name(datasets.Dataset.from_dict({ROWS!r})))"
)


def test_the_name_is_the_rows_contents():
    rows = datasets.Dataset.from_dict(ROWS)
    name = memory_name(rows)
    assert name.startswith(MEMORY_PREFIX) and len(name) == len(MEMORY_PREFIX) + 64
    assert memory_name(datasets.Dataset.from_dict(ROWS)) == name  # another object, the same rows
    assert memory_name(rows.select([0, 1, 2])) == name  # an indices mapping over the same rows
    assert memory_name(datasets.DatasetDict({"train": rows})) == name  # a lone Dataset is the training split
    others = [
        rows.select([1, 0, 2]),  # the same rows in another order
        datasets.Dataset.from_dict({**ROWS, "label": [0, 1, 0]}),  # one label changed
        datasets.Dataset.from_dict({**ROWS, "x": [[0.0, 1.0], [1.0, 0.0], [2.0, 2.5]]}),  # one value changed
        rows.cast_column("label", datasets.Value("int32")),  # the same numbers with another type
        rows.rename_column("x", "features"),
        datasets.DatasetDict({"training": rows}),  # another split name
        datasets.DatasetDict({"train": rows, "test": rows.select([0])}),  # one split more
    ]
    names = [memory_name(other) for other in others]
    assert name not in names and len(set(names)) == len(names)


def test_the_name_is_the_same_in_another_process():
    found = subprocess.run([sys.executable, "-c", NAME_SNIPPET], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == memory_name(datasets.Dataset.from_dict(ROWS))


def test_a_dataset_loads_as_the_same_rows_from_a_file_do(tmp_path):
    """The reference: the same rows written to parquet. Same splits, same processed rows (their content
    fingerprints), same standardisation; only the source differs."""
    frame = numeric_frame(60)
    from_file = HFDataModule(
        "parquet",
        data_files=write_parquet(frame, tmp_path / "n.parquet"),
        feature_columns=["x1", "x2"],
        label_column="y",
        cache_dir=str(tmp_path / "c"),
    )
    in_memory = HFDataModule(
        datasets.Dataset.from_pandas(frame),
        feature_columns=["x1", "x2"],
        label_column="y",
        cache_dir=str(tmp_path / "c"),
    )
    assert in_memory.hparams["path"] == in_memory.config.path and in_memory.config.path.startswith(MEMORY_PREFIX)
    assert in_memory.spec == from_file.spec
    mine, theirs = in_memory.describe_splits(), from_file.describe_splits()
    assert {s: i["fingerprint"] for s, i in mine.items()} == {s: i["fingerprint"] for s, i in theirs.items()}
    assert mine["train"]["source"] == "given: split 'train' of the in-memory dataset (less the carved rows)"
    assert in_memory.feature_stats == from_file.feature_stats


def test_a_dataset_dict_keeps_its_splits(tmp_path):
    frame = text_frame(60)
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_pandas(frame[:40]),
            "validation": datasets.Dataset.from_pandas(frame[40:50]),
            "test": datasets.Dataset.from_pandas(frame[50:]),
        }
    )
    dm = HFDataModule(dd, text_column="text", tokenizer="byte", cache_dir=str(tmp_path / "c"))
    described = dm.describe_splits()
    assert {s: i["rows"] for s, i in described.items()} == {"train": 40, "validation": 10, "test": 10}
    assert described["test"]["source"] == "given: split 'test' of the in-memory dataset"
    assert dm.label_names == sorted(set(frame["label"]))
    info = describe_memory(dm.config.path)
    assert info == {
        "kind": "in-memory dataset",
        "fingerprint": dm.config.path[len(MEMORY_PREFIX) :],
        "splits": {"train": 40, "validation": 10, "test": 10},
    }


def test_a_name_this_process_does_not_hold_is_refused(monkeypatch):
    name = memory_name(datasets.Dataset.from_dict(ROWS))
    monkeypatch.setattr(memory_module, "_HELD", {})
    with pytest.raises(
        ValueError,
        match=r"`path`='memory:[0-9a-f]{64}' names an in-memory dataset that this "
        r"Python process does not hold.*pass the same dataset again",
    ):
        HFDataModule(name, feature_columns="x")
    with pytest.raises(ValueError, match="does not hold"):
        memory_dataset(name)


def test_bad_in_memory_data_is_refused():
    rows = datasets.Dataset.from_dict(ROWS)
    with pytest.raises(ValueError, match="`data_files` is not used with the in-memory dataset `path`='memory:"):
        HFDataModule(rows, data_files="x.csv", feature_columns="x")
    with pytest.raises(ValueError, match="`name` is not used with the in-memory dataset"):
        HFDataModule(rows, name="default", feature_columns="x")
    with pytest.raises(
        ValueError,
        match=r"`path` must be a datasets.Dataset or DatasetDict held in memory, got a "
        r"streaming IterableDataset.*from_generator",
    ):
        HFDataModule(rows.to_iterable_dataset(), feature_columns="x")
    with pytest.raises(
        ValueError, match="`path` must be a path, a datasets.Dataset or a DatasetDict with splits, got DatasetDict"
    ):
        HFDataModule(datasets.DatasetDict(), feature_columns="x")
    with pytest.raises(
        ValueError,
        match=r"`path` must be a non-empty str .* or a datasets.Dataset / DatasetDict, "
        r"got array",
    ):
        HFDataModule(np.zeros(3), feature_columns="x")

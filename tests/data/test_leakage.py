"""Issue 19, item 11: rows of the test (or validation) split that are also training rows were neither refused nor
reported; a held-out score on them measures memory. Their count and fingerprint are now in the split's description
(and so in comparison.json and the report's Data section), with a warning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lossbench.compare.report.data import data_section
from lossbench.data import HFDataModule


def _files(tmp_path, copied: int):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40), "y": np.arange(40) % 2})
    fresh = pd.DataFrame({"a": rng.normal(size=10), "b": rng.normal(size=10), "y": np.arange(10) % 2})
    validation = pd.DataFrame({"a": rng.normal(size=8), "b": rng.normal(size=8), "y": np.arange(8) % 2})
    test = pd.concat([train.iloc[:copied], fresh], ignore_index=True)
    for name, frame in (("train", train), ("validation", validation), ("test", test)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    return {name: str(tmp_path / f"{name}.csv") for name in ("train", "validation", "test")}, test


def _module(tmp_path, files):
    return HFDataModule(
        "csv", data_files=files, feature_columns=["a", "b"], label_column="y", cache_dir=str(tmp_path / "cache")
    )


def test_test_rows_copied_from_train_are_counted_fingerprinted_reported_and_warned(tmp_path):
    files, _ = _files(tmp_path, copied=7)
    dm = _module(tmp_path, files)
    with pytest.warns(UserWarning, match=r"7 of the 17 test rows have the same inputs as rows of the train split"):
        described = dm.describe_splits()
    # the reference: the test rows whose processed inputs are rows of the processed training split
    train_rows = {tuple(np.asarray(x).tolist()) for x in dm.train_dataset["inputs"]}
    expected = sum(tuple(np.asarray(x).tolist()) in train_rows for x in dm.test_dataset["inputs"])
    shared = described["test"]["shared_rows"]
    assert list(shared) == ["train"] and shared["train"]["rows"] == expected == 7
    assert all("shared_rows" not in described[split] for split in ("train", "validation"))
    assert len(shared["train"]["fingerprint"]) == 64
    text = "\n".join(data_section({"data": described}))
    assert (
        f"**Warning: {expected} of the 17 test rows have the same inputs as rows of the train split** "
        f"(fingerprint of those inputs `{shared['train']['fingerprint'][:12]}`)"
    ) in text


def test_disjoint_splits_report_nothing(tmp_path, recwarn):
    files, _ = _files(tmp_path, copied=0)
    described = _module(tmp_path, files).describe_splits()
    assert all("shared_rows" not in info for info in described.values())
    assert not [w for w in recwarn if "same inputs" in str(w.message)]
    assert "Warning" not in "\n".join(data_section({"data": described}))

"""Labels and features that would train silently on the wrong thing are refused, with a message saying why.

Issue 9, findings 6 and 7a: sparse integer class ids, a label column used as a feature (or twice),
a stray string among numeric labels in a CSV, a training split of one class, and values that pass a
float64 finiteness check but overflow float32.
"""

import numpy as np
import pandas as pd
import pytest

from lossbench.data import HFDataModule

from .conftest import write_parquet


def parquet_module(tmp_path, cache_dir, frame, *, feature_columns=("x",), **kwargs):
    """A data module on one local parquet file (its validation and test splits carved out of it)."""
    path = write_parquet(frame, tmp_path / "data.parquet")
    return HFDataModule(
        path="parquet", data_files={"train": path}, feature_columns=list(feature_columns), cache_dir=cache_dir, **kwargs
    )


def frame_with_labels(labels, n=24):
    labels = [labels[i % len(labels)] for i in range(n)]
    return pd.DataFrame({"x": np.arange(n, dtype=float), "label": labels})


# ------------------------------------------------------------------ 1. sparse integer class ids


def test_sparse_class_ids_are_refused_with_a_mapping(tmp_path, cache_dir):
    dm = parquet_module(tmp_path, cache_dir, frame_with_labels([10001, 90210]))
    with pytest.raises(ValueError) as info:
        dm.spec
    message = str(info.value)
    for part in (
        "HFDataModule: `label_column`='label'",
        "largest id is 90210",
        "2 distinct labels",
        "90211 classes",
        "{10001: 0, 90210: 1}",
        "dataset.map(",
        "datasets.Value('string')",
        "task='real'",
    ):
        assert part in message, (part, message)


def test_huge_class_id_is_refused_before_allocating(tmp_path, cache_dir):
    """{0, 2e9} once built 2e9 class names (MemoryError); now it is refused from the distinct labels alone."""
    dm = parquet_module(tmp_path, cache_dir, frame_with_labels([0, 2_000_000_000]))
    with pytest.raises(ValueError, match=r"largest id is 2000000000 .*2 distinct labels.*2000000001 classes"):
        dm.spec


def test_sparse_integral_float_class_ids_are_refused(tmp_path, cache_dir):
    dm = parquet_module(tmp_path, cache_dir, frame_with_labels([3.0, 500.0]), task="class")
    with pytest.raises(ValueError, match=r"largest id is 500 .*2 distinct labels.*501 classes"):
        dm.spec


def test_dense_ids_with_a_few_gaps_are_kept(tmp_path, cache_dir):
    """Ids with few unused values below the largest (here 0, 5: classes 1-4 unseen) are classes 0..5, as before."""
    dm = parquet_module(tmp_path, cache_dir, frame_with_labels([0, 5]))
    assert dm.num_classes == 6


# ------------------------------------------------------------------ 2. the label is not an input, a column counts once


def test_duplicate_feature_column_is_refused():
    with pytest.raises(ValueError, match=r"`feature_columns` must name each column once; 'f0' is given 2 times"):
        HFDataModule("csv", data_files="x.csv", feature_columns=["f0", "f0", "label"])


def test_label_column_among_feature_columns_is_refused():
    with pytest.raises(ValueError, match=r"`label_column`='label' is also in `feature_columns`=\['f0', 'label'\]"):
        HFDataModule("csv", data_files="x.csv", feature_columns=["f0", "label"])  # 'label' is the default
    with pytest.raises(ValueError, match=r"`label_column`='y' is also in `feature_columns`"):
        HFDataModule("csv", data_files="x.csv", feature_columns=["y", "x"], label_column="y")
    with pytest.raises(ValueError, match=r"`label_column`='target' is also in `feature_columns`"):
        HFDataModule("lossbench:diabetes", feature_columns=["features", "target"])  # the bundled default label


@pytest.mark.parametrize("arg", ["text_column", "image_column"])
def test_label_column_as_text_or_image_column_is_refused(arg):
    with pytest.raises(ValueError, match=rf"`label_column`='label' is also the `{arg}`"):
        HFDataModule("csv", data_files="x.csv", **{arg: "label"})


def test_language_modelling_has_no_label_to_clash_with():
    dm = HFDataModule("csv", data_files="x.csv", text_column="label", task="lm", tokenizer="byte")
    assert dm.text_column == "label"


# ------------------------------------------------------------------ 3. a stray string among numeric labels


def test_stray_string_among_numeric_csv_labels_is_refused(tmp_path, cache_dir):
    path = tmp_path / "labels.csv"
    rows = [f"{i}.5,{i % 2}" for i in range(23)] + ["23.5,oops"]
    path.write_text("x,label\n" + "\n".join(rows) + "\n")
    dm = HFDataModule(
        path="csv",
        data_files={"train": str(path)},
        feature_columns=["x"],
        val_fraction=0.0,
        test_fraction=0.0,
        cache_dir=cache_dir,
    )  # the stray row stays in training: a third class
    with pytest.raises(
        ValueError,
        match=r"`label_column`='label' mixes numbers and other values: \['oops'\] "
        r"(.|\n)*numeric labels \['0', '1'\](.|\n)*fix or drop",
    ):
        dm.spec


def test_string_labels_that_are_all_numbers_or_all_words_are_kept(tmp_path, cache_dir):
    words = parquet_module(tmp_path, cache_dir, frame_with_labels(["cat", "dog", "7up"]))
    assert words.label_names == ["7up", "cat", "dog"]
    (tmp_path / "n").mkdir()
    numbers = parquet_module(tmp_path / "n", cache_dir, frame_with_labels(["0", "1"]))
    assert numbers.label_names == ["0", "1"]


# ------------------------------------------------------------------ 4. one class in training


@pytest.mark.parametrize("label, name", [(1, "1"), ("spam", "spam")])
def test_single_class_training_split_is_refused(tmp_path, cache_dir, label, name):
    dm = parquet_module(tmp_path, cache_dir, frame_with_labels([label]))
    with pytest.raises(
        ValueError,
        match=rf"the 'train' split of `label_column`='label' holds one class only "
        rf"\({name!r}\); a classifier needs at least two classes in training",
    ):
        dm.spec


def test_single_class_is_fine_for_real_targets(tmp_path, cache_dir):
    dm = parquet_module(tmp_path, cache_dir, frame_with_labels([1.0]))
    assert dm.spec.target_kind == "real"


# ------------------------------------------------------------------ 5. finite in float32, where the data is used


def test_feature_beyond_float32_range_is_refused(tmp_path, cache_dir):
    frame = frame_with_labels([0, 1])
    frame.loc[5, "x"] = 1e39  # finite in float64, inf in float32
    dm = parquet_module(tmp_path, cache_dir, frame, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(
        ValueError,
        match=r"`feature_columns`='x' holds values beyond float32's range \(±3.4e38\), "
        r".* in 1 row\(s\) of the 'train' split \(rows \[5\]",
    ):
        dm.spec


def test_real_target_beyond_float32_range_is_refused(tmp_path, cache_dir):
    frame = frame_with_labels([0.5, 1.5])
    frame.loc[3, "label"] = -1e39
    dm = parquet_module(tmp_path, cache_dir, frame, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(
        ValueError,
        match=r"`label_column`='label' holds targets beyond float32's range \(±3.4e38\), "
        r".* in rows \[3\] of the 'train' split",
    ):
        dm.spec


def test_nan_feature_is_still_called_nan(tmp_path, cache_dir):
    frame = frame_with_labels([0, 1])
    frame.loc[2, "x"] = np.nan
    dm = parquet_module(tmp_path, cache_dir, frame, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(ValueError, match=r"`feature_columns`='x' holds NaN or infinite values in 1 row\(s\)"):
        dm.spec


def test_standardised_feature_beyond_float32_range_is_refused(tmp_path, cache_dir):
    """A training std of ~1e-45 makes a test value of 1 about 1e45 once standardised: refused, not inf."""
    train = pd.DataFrame({"x": [0.0, 1.4e-45] * 6, "label": [0, 1] * 6})
    test = pd.DataFrame({"x": [1.0, 0.0], "label": [0, 1]})
    files = {
        "train": write_parquet(train, tmp_path / "train.parquet"),
        "test": write_parquet(test, tmp_path / "test.parquet"),
    }
    dm = HFDataModule(path="parquet", data_files=files, feature_columns=["x"], val_fraction=0.0, cache_dir=cache_dir)
    with pytest.raises(
        ValueError,
        match=r"`standardize`=True takes feature 0 .*beyond float32's range "
        r"\(±3.4e38\) in 1 row\(s\) of the 'test' split.*standardize=False",
    ):
        dm.spec

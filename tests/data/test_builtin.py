"""Bundled real datasets: sizes, columns, dtypes, determinism, train-only standardisation."""

import numpy as np
import pytest

from lossbench.data import BUILTIN_DATASETS, UnknownDatasetError, load_builtin, standardization_stats

EXPECTED = {  # name: (rows, input column, input shape per row, target column, classes or None)
    "digits": (1797, "image", (8, 8), "label", 10),
    "breast_cancer": (569, "features", (30,), "label", 2),
    "diabetes": (442, "features", (10,), "target", None),
    "wine": (178, "features", (13,), "label", 3),
}


def test_every_builtin_is_described():
    assert set(BUILTIN_DATASETS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_sizes_columns_dtypes(name):
    rows, column, shape, target, classes = EXPECTED[name]
    ds = load_builtin(name)
    assert list(ds) == ["train", "validation", "test"]
    sizes = {split: ds[split].num_rows for split in ds}
    assert sum(sizes.values()) == rows
    assert sizes["train"] == pytest.approx(0.70 * rows, abs=2)
    assert sizes["validation"] == pytest.approx(0.15 * rows, abs=2)
    assert sizes["test"] == pytest.approx(0.15 * rows, abs=2)
    for split in ds:
        assert ds[split].column_names == [column, target]
        data = ds[split].with_format("numpy")[:]
        assert data[column].dtype == np.float32 and data[column].shape[1:] == shape
        assert np.isfinite(data[column]).all()
        if classes is None:
            assert data[target].dtype == np.float32
        else:
            assert data[target].dtype == np.int64
            assert set(np.unique(data[target])) <= set(range(classes))
            assert ds[split].features[target].num_classes == classes


def test_builtin_class_names_and_image_scale():
    cancer = load_builtin("breast_cancer")
    assert cancer["train"].features["label"].names == ["malignant", "benign"]
    digits = load_builtin("digits")
    assert digits["train"].features["label"].names == [str(i) for i in range(10)]
    images = digits["train"].with_format("numpy")["image"][:]
    assert images.min() == 0.0 and images.max() == 1.0


def test_builtin_stratified():
    ds = load_builtin("digits")
    for split in ds:
        counts = np.bincount(ds[split]["label"][:], minlength=10)
        assert counts.min() > 0.8 * counts.mean()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_deterministic(name):
    a, b = load_builtin(name, seed=3), load_builtin(name, seed=3)
    for split in a:
        assert a[split].data.table.equals(b[split].data.table)
        assert a[split]._fingerprint == b[split]._fingerprint
    c = load_builtin(name, seed=4)
    assert not a["test"].data.table.equals(c["test"].data.table)


def test_builtin_splits_are_disjoint():
    ds = load_builtin("wine")
    rows = {split: {tuple(r) for r in ds[split].with_format("numpy")["features"][:].round(5)} for split in ds}
    assert not rows["train"] & rows["validation"]
    assert not rows["train"] & rows["test"]
    assert not rows["validation"] & rows["test"]


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "diabetes"])
def test_standardisation_uses_train_stats_only(name):
    ds = load_builtin(name)
    train = ds["train"].with_format("numpy")["features"][:].astype(np.float64)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-4)
    val = ds["validation"].with_format("numpy")["features"][:].astype(np.float64)
    assert np.abs(val.mean(0)).max() > 1e-3  # standardised with train stats, not its own
    stats = standardization_stats(ds["train"])
    assert len(stats["feature_mean"]) == train.shape[1]


def test_diabetes_target_is_raw():
    """The bundled target stays on its own scale (the data module standardises it for training only)."""
    from sklearn.datasets import load_diabetes

    ds = load_builtin("diabetes")
    target = np.concatenate([ds[s].with_format("numpy")["target"][:] for s in ("train", "validation", "test")])
    np.testing.assert_array_equal(np.sort(target), np.sort(load_diabetes().target.astype(np.float32)))
    assert "target_mean" not in standardization_stats(ds["train"])


def test_digits_has_no_stats():
    assert standardization_stats(load_builtin("digits")["train"]) == {}


def test_prefix_accepted():
    assert load_builtin("lossbench:wine")["train"].num_rows == load_builtin("wine")["train"].num_rows


def test_unknown_name_lists_names_and_suggests():
    with pytest.raises(UnknownDatasetError, match=r"`name` must be one of .*got 'digit'; did you mean 'digits'"):
        load_builtin("digit")
    with pytest.raises(ValueError, match="breast_cancer"):
        load_builtin("mnist")
    with pytest.raises(KeyError):
        load_builtin("mnist")

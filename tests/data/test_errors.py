"""Errors, not surprises: every bad input fails before training with a message naming the argument."""

import datasets
import numpy as np
import pandas as pd
import pytest

from lossbench.data import HFDataModule, HubUnreachableError


def load(**kwargs):
    """Build and load (the checks on data run when the spec is first needed)."""
    return HFDataModule(**kwargs).spec


# ------------------------------------------------------------------ arguments, checked at construction


@pytest.mark.parametrize("arg", ["val_fraction", "test_fraction"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_fractions_outside_unit_interval(arg, value):
    with pytest.raises(ValueError, match=rf"`{arg}` must be a number in \[0, 1\), got {value}"):
        HFDataModule("lossbench:wine", **{arg: value})


def test_fractions_that_leave_no_training_rows():
    with pytest.raises(ValueError, match=r"`val_fraction` \+ `test_fraction` must leave training rows"):
        HFDataModule("lossbench:wine", val_fraction=0.5, test_fraction=0.5)


@pytest.mark.parametrize("value", [0, -3])
def test_max_length_below_one(value):
    with pytest.raises(ValueError, match=rf"HFDataModule: `max_length` must be an int >= 1, got {value}"):
        HFDataModule("csv", data_files="x.csv", text_column="text", max_length=value)


def test_unknown_builtin_name_lists_names():
    with pytest.raises(
        ValueError,
        match=r"`path` must be one of \['breast_cancer', 'diabetes', 'digits', 'wine'\], "
        r"got 'lossbench:digit'; did you mean 'digits'",
    ):
        HFDataModule("lossbench:digit")


def test_bundled_dataset_with_files():
    with pytest.raises(ValueError, match=r"`data_files` is not used with the bundled dataset `path`='lossbench:wine'"):
        HFDataModule("lossbench:wine", data_files="x.csv")


def test_no_input_column():
    with pytest.raises(ValueError, match=r"give exactly one of `text_column`, `feature_columns`, `image_column`.*none"):
        HFDataModule("csv", data_files="x.csv")


def test_several_input_columns():
    with pytest.raises(ValueError, match=r"exactly one of .*got \{'text_column': 'a', 'feature_columns': \['b'\]\}"):
        HFDataModule("csv", data_files="x.csv", text_column="a", feature_columns=["b"])
    with pytest.raises(ValueError, match=r"'text_column': 'a'.*'image_column': 'c'"):
        HFDataModule("lossbench:digits", text_column="a", image_column="c")


def test_bad_task_and_lm_without_text():
    with pytest.raises(ValueError, match=r"`task` must be one of .*got 'regression'"):
        HFDataModule("lossbench:wine", task="regression")
    with pytest.raises(ValueError, match=r"`task`='lm' .* needs `text_column`"):
        HFDataModule("lossbench:wine", task="lm")


def test_bad_tokenizer_and_sizes():
    with pytest.raises(ValueError, match=r"`tokenizer` must be 'byte', 'bpe' or a path.*'nope.json' \(no such file\)"):
        HFDataModule("csv", data_files="x.csv", text_column="t", tokenizer="nope.json")
    with pytest.raises(ValueError, match=r"`batch_size` must be an int >= 1, got 0"):
        HFDataModule("lossbench:wine", batch_size=0)
    with pytest.raises(ValueError, match=r"`feature_columns` must be a non-empty list"):
        HFDataModule("csv", data_files="x.csv", feature_columns=[])


# ------------------------------------------------------------------ data, checked when first loaded


def test_missing_column_lists_existing(text_parquet, cache_dir):
    with pytest.raises(
        ValueError,
        match=r"`text_column`='txt' is not a column of the 'train' split .*"
        r"its columns are \['text', 'label'\]",
    ):
        load(path="parquet", data_files=text_parquet, text_column="txt", cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"`label_column`='category' is not a column .*\['text', 'label'\]"):
        load(path="parquet", data_files=text_parquet, text_column="text", label_column="category", cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"`feature_columns`='x9' is not a column"):
        load(path="lossbench:wine", feature_columns=["features", "x9"], cache_dir=cache_dir)


def test_missing_train_split(text_parquet, cache_dir):
    with pytest.raises(ValueError, match=r"`train_split`='training' is not a split .*its splits are \['train'\]"):
        load(path="parquet", data_files=text_parquet, text_column="text", train_split="training", cache_dir=cache_dir)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_features(tmp_path, cache_dir, bad):
    df = pd.DataFrame({"x1": np.arange(20.0), "x2": np.ones(20), "y": np.zeros(20)})
    df.loc[17, "x2"] = bad
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(
        ValueError,
        match=r"`feature_columns`='x2' holds NaN or infinite values in 1 row\(s\) of the "
        r"'\w+' split \(rows \[17\]",
    ):
        load(
            path="csv",
            data_files=str(tmp_path / "bad.csv"),
            feature_columns=["x1", "x2"],
            label_column="y",
            val_fraction=0,
            test_fraction=0,
            cache_dir=cache_dir,
        )


def test_missing_or_infinite_real_target(tmp_path, cache_dir):
    df = pd.DataFrame({"x": np.arange(20.0), "y": np.zeros(20)})
    df.loc[3, "y"] = np.inf
    df.to_csv(tmp_path / "inf.csv", index=False)
    kwargs = dict(
        path="csv", feature_columns="x", label_column="y", val_fraction=0, test_fraction=0, cache_dir=cache_dir
    )
    with pytest.raises(ValueError, match=r"`label_column`='y' holds NaN or infinite targets in rows \[3\]"):
        load(data_files=str(tmp_path / "inf.csv"), **kwargs)
    df.loc[3, "y"] = np.nan  # an empty CSV field: datasets reads it as a missing value
    df.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(ValueError, match=r"`label_column`='y' holds a missing \(None\) label in row 3"):
        load(data_files=str(tmp_path / "nan.csv"), **kwargs)


def test_empty_split(monkeypatch, cache_dir):
    # datasets' own builders refuse to write empty splits, so hand one over as a loader would
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])})
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["x", "y"] * 5, "label": [0, 1] * 5}, features=features),
            "test": datasets.Dataset.from_dict({"text": [], "label": []}, features=features),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: dd)
    with pytest.raises(
        ValueError,
        match=r"the 'test' split \(`test_split`='test' of `path`='some/dataset'\) is empty "
        r"\(0 rows\)",
    ):
        load(path="some/dataset", text_column="text", cache_dir=cache_dir)


def test_fraction_too_small_gives_empty_split(numeric_csv, cache_dir):
    with pytest.raises(ValueError, match=r"`val_fraction`=0.01 of the 40 rows .* gives an empty validation split"):
        load(
            path="csv",
            data_files=numeric_csv,
            feature_columns=["x1"],
            label_column="y",
            val_fraction=0.01,
            cache_dir=cache_dir,
        )


def test_minus_one_labels_are_rejected(tmp_path, cache_dir):
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])})
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["x", "y"] * 5, "label": [0, 1] * 5}, features=features),
            "test": datasets.Dataset.from_dict({"text": ["x", "y", "z"], "label": [-1, -1, 0]}, features=features),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(
        ValueError,
        match=r"`label_column`='label' is -1 in 2 row\(s\) of the 'test' split; -1 usually "
        r"marks unlabeled rows .*filter them out.*`test_split`",
    ):
        load(path=str(tmp_path / "dd"), text_column="text", cache_dir=cache_dir)


def test_unseen_string_labels_named(tmp_path, text_parquet, cache_dir):
    test = tmp_path / "test.parquet"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["positive", "sarcastic", "angry"]}).to_parquet(test)
    with pytest.raises(
        ValueError,
        match=r"`label_column`='label' of the 'test' split holds labels that the training "
        r"split does not have: \['angry', 'sarcastic'\]",
    ):
        load(
            path="parquet",
            data_files={"train": text_parquet, "test": str(test)},
            text_column="text",
            cache_dir=cache_dir,
        )


def test_wrong_column_types(tmp_path, text_parquet, cache_dir):
    with pytest.raises(ValueError, match=r"`feature_columns` must name numeric columns .*'text' has type"):
        load(path="parquet", data_files=text_parquet, feature_columns=["text"], cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"`text_column`='n' must hold strings, has type"):
        df = pd.DataFrame({"n": np.arange(10), "label": np.arange(10) % 2})
        df.to_parquet(tmp_path / "n.parquet")
        load(path="parquet", data_files=str(tmp_path / "n.parquet"), text_column="n", cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"`task`='class' needs whole-number labels in `label_column`='y', got \[0.5"):
        pd.DataFrame({"x": np.arange(10.0), "y": [0.5, 1.0] * 5}).to_csv(tmp_path / "f.csv", index=False)
        load(
            path="csv",
            data_files=str(tmp_path / "f.csv"),
            feature_columns="x",
            label_column="y",
            task="class",
            val_fraction=0,
            test_fraction=0,
            cache_dir=cache_dir,
        )


def test_an_array_label_column_is_refused_naming_the_task(tmp_path, cache_dir):
    """An Array2D (or Image) target has no task: "auto" says so by name (it used to be a KeyError)."""
    features = datasets.Features({"x": datasets.Value("float32"), "y": datasets.Array2D((2, 2), "float32")})
    rows = {"x": [float(i) for i in range(6)], "y": [np.full((2, 2), i, np.float32) for i in range(6)]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "arr"))
    kwargs = dict(path=str(tmp_path / "arr"), feature_columns="x", label_column="y", cache_dir=cache_dir)
    for task in ("auto", "class", "real", "probability"):
        with pytest.raises(ValueError, match=rf"`task`='{task}' cannot use `label_column`='y' of type Array2D"):
            load(**kwargs, task=task, val_fraction=0.3, test_fraction=0.3)


def test_probability_rows_must_sum_to_one(tmp_path, cache_dir):
    df = pd.DataFrame({"x": np.arange(4.0), "p": [[0.5, 0.5], [0.2, 0.2], [1.0, 0.0], [0.0, 1.0]]})
    df.to_parquet(tmp_path / "p.parquet")
    with pytest.raises(ValueError, match=r"`label_column`='p' rows must be probabilities .*summing to 0.4 in row 1"):
        load(
            path="parquet",
            data_files=str(tmp_path / "p.parquet"),
            feature_columns="x",
            label_column="p",
            val_fraction=0,
            test_fraction=0,
            cache_dir=cache_dir,
        )


def test_missing_local_files(tmp_path, cache_dir):
    with pytest.raises(FileNotFoundError, match=r"`data_files`=.*nope.parquet.* could not be read"):
        load(path="parquet", data_files=str(tmp_path / "nope.parquet"), text_column="text", cache_dir=cache_dir)


def test_hub_unreachable_is_explained(monkeypatch, cache_dir):
    """The real hub code path (datasets.load_dataset) runs, in offline mode, and its failure is explained."""
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        HubUnreachableError,
        match=r"could not reach the Hugging Face Hub to load `path`='ag_news'.*"
        r"`data_files`",
    ) as info:
        load(path="ag_news", text_column="text", cache_dir=cache_dir)
    assert isinstance(info.value, ConnectionError)


def test_hub_connection_error_is_wrapped(monkeypatch, cache_dir):
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        raise ConnectionError("Couldn't reach 'ag_news' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(HubUnreachableError, match=r"`path`='ag_news'.*LocalEntryNotFoundError.*data_files"):
        load(path="ag_news", name="default", text_column="text", cache_dir=cache_dir)
    assert calls[0][:2] == ("ag_news", "default") and calls[0][2]["cache_dir"] == cache_dir


def test_an_empty_split_is_said_to_be_empty(tmp_path, cache_dir):
    """Issue 19, item 11: a test file with a header and no rows failed with datasets' 'Instruction "test"
    corresponds to no data!', which does not say the split is empty."""
    pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20) % 2}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"x": [], "y": []}).to_csv(tmp_path / "test.csv", index=False)
    files = {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}
    with pytest.raises(ValueError) as info:
        load(path="csv", data_files=files, feature_columns="x", label_column="y", cache_dir=cache_dir)
    message = str(info.value)
    assert message.startswith("HFDataModule: the 'test' split of `path`='csv'") and "\n" not in message
    assert "is empty (0 rows)" in message

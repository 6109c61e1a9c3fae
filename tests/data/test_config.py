"""DataConfig: HFDataModule's settings defined once (fields, defaults, checks)."""

import dataclasses
import inspect
from pathlib import Path

import pytest

from lossbench.data import DataConfig, HFDataModule

FIELDS = dataclasses.fields(DataConfig)


def _parameters():
    return [p for name, p in inspect.signature(HFDataModule.__init__).parameters.items() if name != "self"]


def test_the_module_arguments_are_the_config_fields_in_order():
    assert [p.name for p in _parameters()] == [f.name for f in FIELDS]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in _parameters())


def test_the_module_defaults_are_the_config_defaults():
    for param, field in zip(_parameters(), FIELDS):
        if field.default is dataclasses.MISSING:  # `path`: required in both
            assert field.name == "path" and param.default is inspect.Parameter.empty
            continue
        assert field.default_factory is dataclasses.MISSING, field.name
        assert param.default == field.default and type(param.default) is type(field.default), field.name


def test_the_module_annotations_are_the_config_types():
    # both modules postpone annotations, so both are the source text of the type
    for param, field in zip(_parameters(), FIELDS):
        assert param.annotation == field.type, field.name


def _non_default_settings(tmp_path):
    """A valid value, other than the default, for every setting that can take one without reading data."""
    return dict(
        path="csv",
        name="config",
        data_files={"train": "a.csv"},
        train_split="fit",
        val_split=None,
        test_split="holdout",
        val_fraction=0.1,
        test_fraction=0.2,
        split_seed=3,
        text_column="text",
        label_column="y",
        task="class",
        tokenizer="byte",
        tokenizer_vocab_size=300,
        max_length=64,
        padding="max_length",
        batch_size=8,
        eval_batch_size=16,
        num_workers=1,
        seed=5,
        standardize=False,
        standardize_target=False,
        cache_dir=str(tmp_path / "cache"),
        label_noise={"rate": 0.1, "seed": 2},
        imbalance={"ratio": 10.0},
    )


def test_every_argument_reaches_the_config_and_the_hyperparameters(tmp_path):
    settings = _non_default_settings(tmp_path)
    # every setting but the two other input columns (exactly one input column is given) differs from its default
    defaults = DataConfig(path="x")
    assert {f.name for f in FIELDS if f.name not in settings} == {"feature_columns", "image_column"}
    assert all(value != getattr(defaults, key) for key, value in settings.items())
    dm = HFDataModule(**settings)
    assert dm.config == DataConfig(**settings).check() == DataConfig(**settings)
    assert dict(dm.hparams) == dm.config.to_dict()
    assert (dm.batch_size, dm.eval_batch_size, dm.seed, dm.split_seed) == (8, 16, 5, 3)
    assert (dm.tokenizer_name, dm.label_column, dm.padding, dm.standardize_target) == ("byte", "y", "max_length", False)
    assert dm.label_noise is not None and dm.label_noise.rate == 0.1 and dm.label_noise.seed == 2
    assert dm.imbalance is not None and dm.imbalance.ratio == 10.0


def test_check_returns_the_settings_as_used_and_leaves_the_config_alone(tmp_path):
    given = DataConfig(Path(tmp_path), feature_columns="x", data_files=[Path("a.csv")], cache_dir=Path("c"))
    checked = given.check()
    assert (checked.path, checked.data_files, checked.cache_dir) == (str(tmp_path), ["a.csv"], "c")
    assert (checked.feature_columns, checked.label_column) == (["x"], "label")
    assert given.feature_columns == "x" and given.label_column is None and isinstance(given.path, Path)
    digits = DataConfig("lossbench:digits").check()
    assert (digits.builtin, digits.image_column, digits.feature_columns, digits.label_column) == (
        "digits",
        "image",
        None,
        "label",
    )
    wine = DataConfig("lossbench:wine", label_column="cultivar").check()
    assert (wine.builtin, wine.feature_columns, wine.label_column) == ("wine", ["features"], "cultivar")
    assert DataConfig("csv", text_column="t").builtin is None


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"path": ""}, r"`path` must be a non-empty str .*got ''"),
        ({"val_split": ""}, r"`val_split` must be a split name or None, got ''"),
        ({"train_split": None}, r"`train_split` must be a split name, got None"),
        ({"test_fraction": 1.0}, r"`test_fraction` must be a number in \[0, 1\), got 1.0"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, r"`val_fraction` \+ `test_fraction` must leave training rows"),
        ({"split_seed": -1}, r"`split_seed` must be an int >= 0, got -1"),
        ({"task": "regression"}, r"`task` must be one of \('auto', 'class', 'real', 'probability', 'lm'\)"),
        ({"batch_size": 0}, r"`batch_size` must be an int >= 1, got 0"),
        ({"eval_batch_size": 2.5}, r"`eval_batch_size` must be an int >= 1 or None, got 2.5"),
        ({"num_workers": True}, r"`num_workers` must be an int >= 0, got True"),
        ({"padding": "left"}, r"`padding` must be 'longest' or 'max_length', got 'left'"),
        ({"feature_columns": []}, r"`feature_columns` must be a non-empty list of column names, got \[\]"),
        ({"feature_columns": ["a", "b", "a"]}, r"`feature_columns` must name each column once; 'a' is given 2 times"),
        ({"feature_columns": ["a", "label"]}, r"`label_column`='label' is also in `feature_columns`"),
        ({"task": "lm"}, r"`task`='lm' \(language modelling\) needs `text_column`, got None"),
        ({"label_noise": {"rate": 0.1, "sed": 1}}, r"`label_noise.sed` is not a setting; did you mean 'seed'"),
        ({"imbalance": [10]}, r"`imbalance` must be a mapping"),
    ],
)
def test_check_names_the_bad_setting(settings, message):
    base = {"path": "csv", "feature_columns": ["a"]}
    with pytest.raises(ValueError, match=r"^HFDataModule: " + message):
        DataConfig(**{**base, **settings}).check()
    with pytest.raises(ValueError, match=r"^HFDataModule: " + message):  # the module says the same
        HFDataModule(**{**base, **settings})


def test_check_of_the_source_and_the_tokenizer(tmp_path):
    with pytest.raises(ValueError, match=r"`name` is not used with the bundled dataset `path`='lossbench:wine'"):
        DataConfig("lossbench:wine", name="red").check()
    with pytest.raises(ValueError, match=r"`path` must be one of .*did you mean 'wine'"):
        DataConfig("lossbench:wne").check()
    missing = tmp_path / "tok.json"
    with pytest.raises(ValueError, match=r"`tokenizer` must be 'byte', 'bpe' or a path .*\(no such file\)"):
        DataConfig("csv", text_column="t", tokenizer=str(missing)).check()
    with pytest.raises(ValueError, match=r"`tokenizer_vocab_size` must be an int >= 259, got 100"):
        DataConfig("csv", text_column="t", tokenizer_vocab_size=100).check()
    # a vocabulary size is only read for text: feature inputs leave it alone
    assert DataConfig("csv", feature_columns=["a"], tokenizer_vocab_size=100).check().tokenizer_vocab_size == 100

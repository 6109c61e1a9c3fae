"""Issue 12: label noise and class imbalance as data options (lossbench.data.corrupt, HFDataModule)."""

from __future__ import annotations

import numpy as np
import pytest

from lossbench.data import HFDataModule
from lossbench.data.corrupt import Imbalance, LabelNoise

TARGET = np.repeat(np.arange(10), 100)  # 1000 rows, 100 per class


def test_symmetric_noise_flips_exactly_the_rate_to_other_classes_uniformly():
    noisy, info = LabelNoise.parse({"kind": "symmetric", "rate": 0.4, "seed": 7}).apply(TARGET, 10)
    changed = noisy != TARGET
    assert changed.sum() == info["flipped"] == 400 and info["realised_rate"] == 0.4  # never the same class
    assert sum(info["transitions"].values()) == 400
    for (a, b), n in ((tuple(map(int, k.split("->"))), v) for k, v in info["transitions"].items()):
        assert a != b and n == int(((TARGET == a) & (noisy == b)).sum())
    # uniform over the 9 other classes: 400 flips give ~44 per target class; chi-square on the new labels
    counts = np.bincount(noisy[changed], minlength=10)
    expected = np.array(
        [sum(v for k, v in info["transitions"].items() if int(k.split("->")[0]) != c) / 9 for c in range(10)]
    )
    assert ((counts - expected) ** 2 / expected).sum() < 30  # chi2(9) 0.9995 quantile is ~29.7


def test_pairflip_moves_each_flipped_label_to_the_next_class():
    noisy, info = LabelNoise.parse({"kind": "pairflip", "rate": 0.2, "seed": 1}).apply(TARGET, 10)
    changed = np.flatnonzero(noisy != TARGET)
    assert len(changed) == 200 and np.all(noisy[changed] == (TARGET[changed] + 1) % 10)
    assert set(info["transitions"]) <= {f"{c}->{(c + 1) % 10}" for c in range(10)}


def test_noise_is_seeded_by_its_own_seed_and_zero_rate_changes_nothing():
    a, _ = LabelNoise(rate=0.3, seed=3).apply(TARGET, 10)
    b, _ = LabelNoise(rate=0.3, seed=3).apply(TARGET, 10)
    c, _ = LabelNoise(rate=0.3, seed=4).apply(TARGET, 10)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(LabelNoise(rate=0.0).apply(TARGET, 10)[0], TARGET)


def test_longtail_and_step_profiles_have_the_asked_ratio():
    target = np.repeat(np.arange(5), [80, 90, 100, 110, 120])
    keep, info = Imbalance.parse({"kind": "longtail", "ratio": 16, "seed": 0}).rows(target, 5)
    counts = np.bincount(target[keep], minlength=5).tolist()
    assert counts == info["after"] == [80, 40, 20, 10, 5] and info["before"] == [80, 90, 100, 110, 120]
    keep, info = Imbalance(kind="step", ratio=4).rows(target, 5)
    assert np.bincount(target[keep], minlength=5).tolist() == [80, 80, 80, 20, 20]
    assert len(set(keep.tolist())) == len(keep)  # rows drawn without replacement


@pytest.mark.parametrize(
    ("arg", "value", "message"),
    [
        ("label_noise", {"rate": 1.0}, "`label_noise.rate` must be a fraction in [0, 1), got 1.0"),
        ("label_noise", {"rate": -0.1}, "`label_noise.rate` must be a fraction in [0, 1), got -0.1"),
        (
            "label_noise",
            {"kind": "asymmetric", "rate": 0.2},
            "`label_noise.kind` must be one of 'symmetric', 'pairflip'",
        ),
        ("label_noise", {"rat": 0.2}, "`label_noise.rat` is not a setting; did you mean 'rate'?"),
        ("label_noise", 0.4, "`label_noise` must be a mapping {kind, rate, seed, validation}, got 0.4"),
        ("imbalance", {"ratio": 0.5}, "`imbalance.ratio` must be a number >= 1 (largest class / smallest), got 0.5"),
        ("imbalance", {"kind": "zipf", "ratio": 10}, "`imbalance.kind` must be one of 'longtail', 'step', got 'zipf'"),
        ("imbalance", {"ratio": 10, "seed": -1}, "`imbalance.seed` must be an int in [0, 2**32), got -1"),
    ],
)
def test_bad_options_are_refused_naming_the_argument(arg, value, message):
    with pytest.raises(ValueError) as info:
        HFDataModule("lossbench:digits", **{arg: value})
    assert message in str(info.value) and str(info.value).startswith("HFDataModule: ")


def test_the_datamodule_corrupts_the_training_split_only_and_says_what_it_did():
    clean = HFDataModule("lossbench:digits")
    dm = HFDataModule(
        "lossbench:digits",
        label_noise={"kind": "symmetric", "rate": 0.4, "seed": 7},
        imbalance={"kind": "longtail", "ratio": 10, "seed": 7},
    )
    splits, before = dm.describe_splits(), clean.describe_splits()
    for split in ("validation", "test"):  # untouched
        assert splits[split]["fingerprint"] == before[split]["fingerprint"] and "label_noise" not in splits[split]
    train = splits["train"]
    assert train["imbalance"]["after"][0] / train["imbalance"]["after"][-1] == pytest.approx(10, rel=0.1)
    assert train["rows"] == sum(train["imbalance"]["after"]) and train["label_noise"]["flipped"] == round(
        0.4 * train["rows"]
    )
    assert train["fingerprint"] != before["train"]["fingerprint"]
    noisy = HFDataModule(
        "lossbench:digits", label_noise={"kind": "symmetric", "rate": 0.4, "seed": 7, "validation": True}
    )
    assert noisy.describe_splits()["validation"]["label_noise"]["flipped"] == round(0.4 * before["validation"]["rows"])
    assert noisy.describe_splits()["test"]["fingerprint"] == before["test"]["fingerprint"]


def test_noise_needs_class_labels():
    with pytest.raises(ValueError, match=r"`label_noise` needs class labels, this data's target is 'real'"):
        HFDataModule("lossbench:diabetes", label_noise={"rate": 0.2}).spec


def test_a_rate_that_flips_every_row_is_refused_stating_the_realised_rate():
    """Issue 19, item 11: `rate: 0.999` rounded to every row (realised 1.0) was accepted: nothing clean was left."""
    target = np.arange(12) % 3
    with pytest.raises(ValueError) as info:
        LabelNoise.parse({"rate": 0.999}).apply(target, num_classes=3)
    message = str(info.value)
    assert message.startswith("HFDataModule: `label_noise.rate` 0.999 replaces all 12 labels of the train split")
    assert "realised rate 1.0" in message and "\n" not in message
    limit = float(message.rsplit("below ", 1)[1])  # the largest rate that still leaves a clean row
    _, info = LabelNoise.parse({"rate": limit - 1e-6}).apply(target, num_classes=3)
    assert info["flipped"] == 11 and info["realised_rate"] == 11 / 12
    with pytest.raises(ValueError, match=r"`label_noise.rate` 0.999 replaces all \d+ labels of the train split"):
        HFDataModule("lossbench:wine", label_noise={"rate": 0.999}).spec  # refused when the data loads


def test_a_400_digit_imbalance_ratio_is_refused_naming_it_not_an_overflow():
    with pytest.raises(ValueError, match=r"^HFDataModule: `imbalance.ratio` must be a number >= 1"):
        HFDataModule("lossbench:digits", imbalance={"ratio": 10**400})

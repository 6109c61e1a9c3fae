"""Issue 12: balanced accuracy and Brier score for class tasks, against scikit-learn; the example-level scores the
significance tests resample agree with the logged metrics."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, brier_score_loss

from lossbench.compare.analysis.significance import SCORES, example_level_test
from lossbench.metrics import metric_specs


def multiclass(n=300, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    proba = torch.softmax(torch.randn(n, c, generator=g) * 2, -1)
    target = torch.randint(0, c, (n,), generator=g)
    target[: n // 3] = 0  # imbalanced
    return proba, target


def value(task, name, pred, target, classes=None):
    metric, _, _ = metric_specs(task, classes, sync=False)[name]
    metric.update(pred, target)
    return float(metric.compute())


def test_multiclass_balanced_accuracy_and_brier_match_references():
    proba, target = multiclass()
    label = proba.argmax(-1)
    assert value("multiclass", "balanced_accuracy", label, target, 5) == pytest.approx(
        balanced_accuracy_score(target, label), abs=1e-7
    )
    onehot = np.eye(5)[target.numpy()]
    assert value("multiclass", "brier", proba, target, 5) == pytest.approx(
        ((proba.numpy() - onehot) ** 2).sum(-1).mean(), rel=1e-6
    )
    perfect = torch.nn.functional.one_hot(target, 5).float()
    assert value("multiclass", "brier", perfect, target, 5) == 0.0


def test_binary_balanced_accuracy_brier_and_nll_match_references():
    g = torch.Generator().manual_seed(1)
    proba, target = torch.rand(200, generator=g), (torch.rand(200, generator=g) < 0.2).long()
    assert value("binary", "balanced_accuracy", proba, target) == pytest.approx(
        balanced_accuracy_score(target, (proba > 0.5).long()), abs=1e-12
    )
    assert value("binary", "brier", proba, target) == pytest.approx(brier_score_loss(target, proba), abs=1e-7)
    from sklearn.metrics import log_loss

    assert value("binary", "nll", proba, target) == pytest.approx(log_loss(target, proba), rel=1e-6)
    pred = {"target": target.numpy(), "proba": proba.numpy()}
    assert SCORES["nll"](pred, np.arange(200)[None])[0] == pytest.approx(log_loss(target, proba), rel=1e-6)


def test_the_resampled_scores_equal_the_logged_metrics_on_the_full_split():
    proba, target = multiclass(seed=2)
    pred = {"target": target.numpy(), "label": proba.argmax(-1).numpy(), "proba": proba.numpy()}
    full = np.arange(len(target))[None]
    assert SCORES["balanced_accuracy"](pred, full)[0] == pytest.approx(
        value("multiclass", "balanced_accuracy", proba.argmax(-1), target, 5), abs=1e-7
    )
    assert SCORES["brier"](pred, full)[0] == pytest.approx(value("multiclass", "brier", proba, target, 5), rel=1e-6)
    good = {**pred, "label": np.where(np.arange(len(target)) % 5 == 0, pred["label"], pred["target"])}  # ~80% right
    worse = {**pred, "label": np.zeros_like(pred["label"])}  # always the majority class: balanced accuracy 1/5
    test = example_level_test("balanced_accuracy", [good], [worse])
    assert test.method.startswith("paired bootstrap") and test.diff > 0.5 and test.p < 0.01


def test_a_binary_probability_of_exactly_one_half_is_class_0_for_every_metric_and_test():
    """Issue 19: one threshold rule (p > 0.5) for head.predict, torchmetrics, balanced accuracy and the example-level
    scores of the significance tests; at p = 0.5 they used to disagree (accuracy 0.0, significance scores 0.75)."""
    from sklearn.metrics import accuracy_score, f1_score

    from lossbench import get_head

    proba, target = torch.tensor([0.5, 0.5, 0.5, 0.9]), torch.tensor([1, 1, 1, 0])
    label = get_head("bce", in_features=4).predict(torch.logit(proba))  # sigmoid(0) is exactly 0.5
    assert label.tolist() == [0, 0, 0, 1]
    pred, full = {"target": target.numpy(), "proba": proba.numpy()}, np.arange(4)[None]
    for name, reference in (
        ("accuracy", accuracy_score),
        ("balanced_accuracy", balanced_accuracy_score),
        ("f1", f1_score),
    ):
        expected = reference(target.numpy(), label.numpy())
        assert value("binary", name, proba, target) == pytest.approx(expected, abs=1e-12), name
        assert SCORES[name](pred, full)[0] == pytest.approx(expected, abs=1e-12), name
    other = {"target": target.numpy(), "proba": np.array([0.9, 0.9, 0.9, 0.1])}  # right on every row
    assert example_level_test("accuracy", [other], [pred]).detail == {"a_only": 4, "b_only": 0}


@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_multiclass_task_metrics_take_classes_last_positions_as_the_flattened_rows(ignore_index):
    """Issue 19: (N, T, C) outputs (the token-level layout of docs/heads.md) raised IndexError in the calibration
    error; every metric must equal that of the (N * T, C) rows, and of the non-ignored rows alone."""
    import lossbench
    from lossbench.metrics import TaskMetrics

    g = torch.Generator().manual_seed(3)
    head = lossbench.get_head("ce", in_features=8, num_classes=4, ignore_index=ignore_index)
    outputs = torch.randn(3, 7, 4, generator=g) * 2
    target = torch.randint(0, 4, (3, 7), generator=g)
    target[0, :3] = target[2, 5] = ignore_index

    def computed(out, tgt):
        metrics = TaskMetrics("multiclass", 4, ignore_index)
        metrics.update(head, out, tgt)
        return {name: float(metric.compute()) for name, metric in metrics.metrics.items()}

    tokens = computed(outputs, target)
    rows = computed(outputs.reshape(-1, 4), target.reshape(-1))
    keep = target.reshape(-1) != ignore_index
    kept = computed(outputs.reshape(-1, 4)[keep], target.reshape(-1)[keep])
    assert set(tokens) == {"accuracy", "f1_macro", "balanced_accuracy", "nll", "ece", "brier"}
    assert tokens == rows and tokens == pytest.approx(kept, rel=1e-6)


def test_nll_floors_probabilities_at_1e_12_as_stated_and_as_the_significance_score_does():
    """Issue 19: the NLL floor is a stated convention; a probability of 0 adds -log(1e-12), not inf."""
    from lossbench.metrics import NLL_FLOOR, BinaryNLL, MeanTargetNLL

    floor = -math.log(1e-12)
    proba, target = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.25, 0.25]], dtype=torch.float64), torch.tensor([0, 0])
    assert value("multiclass", "nll", proba, target, 3) == pytest.approx((floor + math.log(2)) / 2, rel=1e-9)
    assert SCORES["nll"]({"target": target.numpy(), "proba": proba.numpy()}, np.arange(2)[None])[0] == pytest.approx(
        (floor + math.log(2)) / 2, rel=1e-9
    )
    sure_and_wrong, target = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0, 1])
    assert value("binary", "nll", sure_and_wrong, target) == pytest.approx(floor, rel=1e-4)
    assert NLL_FLOOR == 1e-12 and all("1e-12" in m.__doc__ for m in (MeanTargetNLL, BinaryNLL, metric_specs))


def test_balanced_accuracy_counts_a_class_predicted_but_never_a_target_with_recall_zero():
    """Issue 19: torchmetrics' rule, stated in the docstrings; scikit-learn leaves that class out."""
    import warnings

    from lossbench.metrics import BinaryBalancedAccuracy

    target, label = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 1, 1])  # class 2: predicted, never a target
    assert value("multiclass", "balanced_accuracy", label, target, 3) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    proba, negatives = torch.tensor([0.9, 0.1, 0.2, 0.3]), torch.zeros(4, dtype=torch.long)
    assert value("binary", "balanced_accuracy", proba, negatives) == pytest.approx((0.75 + 0.0) / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        assert balanced_accuracy_score(target, label) == pytest.approx(0.75)
        assert balanced_accuracy_score(negatives, (proba > 0.5).long()) == pytest.approx(0.75)
    assert all(
        "recall 0" in doc and "scikit-learn" in doc for doc in (BinaryBalancedAccuracy.__doc__, metric_specs.__doc__)
    )


@pytest.mark.parametrize("task", ["multiclass", "ordinal", "lm"])
def test_class_tasks_without_num_classes_name_the_argument(task):
    # a head of a class task that never set num_classes: a clear error, not int(None)'s TypeError
    with pytest.raises(ValueError, match=f"task '{task}' needs `num_classes`"):
        metric_specs(task, None)

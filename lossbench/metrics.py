"""Task metrics: torchmetrics chosen by a head's task, on a scale common to every loss.

Each metric says which prediction it reads: ``"proba"`` (``head.predict_proba``),
``"label"`` (``head.predict``: classes or values) or ``"value"`` (regression values).
Losses are compared through these metrics, never through their raw values.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryCalibrationError,
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassRecall,
)
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from lossbench._metric_rules import ECE_BINS as ECE_BINS  # the rules the report applies again (torch alone)
from lossbench._metric_rules import NLL_FLOOR as NLL_FLOOR
from lossbench._metric_rules import calibration_bins as calibration_bins
from lossbench.heads.base import BINARY_THRESHOLD, binary_labels


class _MeanOf(Metric):
    """A mean over examples of a per-example value (float64 sums, summed over processes); subclasses give
    ``update`` and add their values with :meth:`_add`."""

    full_state_update = False
    total: Tensor  # states, added in __init__
    count: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _add(self, values: Tensor, keep: Tensor | None = None) -> None:
        """Add per-example ``values``; ``keep`` (bool, same shape) leaves out the examples where it is False."""
        if keep is None:  # summed in the values' own dtype, then accumulated in float64
            self.total += values.sum().double()
            self.count += values.numel()
        else:
            self.total += (values * keep).sum().double()
            self.count += keep.sum().double()

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1.0)


def _kept(target: Tensor, ignore_index: int | None) -> Tensor:
    return target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)


class MeanTargetNLL(_MeanOf):
    """Mean negative log-likelihood of the target class from probabilities (perplexity with ``exp=True``).

    The target's probability is floored at ``eps`` (:data:`NLL_FLOOR`, 1e-12) before the log, so one example adds
    at most -log(1e-12) ≈ 27.63: a probability that underflowed to 0 gives a large, finite mean
    (the significance tests' per-example NLL uses the same floor).

    Example:
        >>> import torch
        >>> nll = MeanTargetNLL()
        >>> nll.update(torch.tensor([[0.5, 0.5], [0.0, 1.0]]), torch.tensor([0, 0]))
        >>> round(float(nll.compute()), 4)  # (log 2 - log 1e-12) / 2
        14.1621
    """

    def __init__(self, ignore_index: int | None = -100, exp: bool = False, eps: float = NLL_FLOOR, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ignore_index, self.exp, self.eps = ignore_index, exp, eps

    def update(self, proba: Tensor, target: Tensor) -> None:
        keep = _kept(target, self.ignore_index)
        index = torch.where(keep, target, 0).unsqueeze(-1)
        self._add(-proba.gather(-1, index).squeeze(-1).clamp_min(self.eps).log(), keep)

    def compute(self) -> Tensor:
        mean = super().compute()
        return mean.exp() if self.exp else mean


class Brier(_MeanOf):
    """Brier score: mean over examples of the squared error of the probabilities against the one-hot target
    (multiclass, summed over classes; Brier 1950) or of ``p(y=1)`` against the 0/1 target (binary)."""

    def __init__(self, ignore_index: int | None = -100, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ignore_index = ignore_index

    def update(self, proba: Tensor, target: Tensor) -> None:
        proba = proba.double()
        if proba.dim() == target.dim():  # binary: p(y=1) per example
            self._add((proba - target.double()) ** 2)
            return
        keep = _kept(target, self.ignore_index)
        onehot = torch.nn.functional.one_hot(torch.where(keep, target, 0), proba.shape[-1]).double()
        self._add(((proba - onehot) ** 2).sum(-1), keep)


class BinaryNLL(_MeanOf):
    """Mean negative log-likelihood of the 0/1 target under ``p(y=1)``: binary cross-entropy on probabilities.

    ``p(y=1)`` is clamped to ``[eps, 1 - eps]`` (:data:`NLL_FLOOR`, 1e-12) before the logs, as in
    :class:`MeanTargetNLL`: one example adds at most about 27.63.
    """

    def __init__(self, eps: float = NLL_FLOOR, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eps = eps

    def update(self, proba: Tensor, target: Tensor) -> None:
        p, y = proba.double().clamp(self.eps, 1 - self.eps), target.double()
        self._add(-(y * p.log() + (1 - y) * (1 - p).log()))


class BinaryBalancedAccuracy(Metric):
    """Mean of the true-positive and true-negative rates, class 1 where p > 0.5 (:func:`binary_labels`).

    The mean runs over the classes that occur as a target *or* as a prediction (torchmetrics' rule for its macro
    averages, which the multiclass ``balanced_accuracy`` follows too): a class absent from both is left out, and a
    class predicted but never a target counts with recall 0. scikit-learn's ``balanced_accuracy_score`` leaves such
    a class out (with a warning), so on such data it is higher.

    Example:
        >>> import torch
        >>> metric = BinaryBalancedAccuracy()
        >>> metric.update(torch.tensor([0.9, 0.1, 0.2, 0.3]), torch.tensor([0, 0, 0, 0]))
        >>> float(metric.compute())  # (3/4 + 0) / 2: class 1 is predicted, never a target (scikit-learn: 0.75)
        0.375
    """

    full_state_update = False
    counts: Tensor  # a state, added in __init__

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("counts", torch.zeros(2, 2, dtype=torch.float64), dist_reduce_fx="sum")  # [target, predicted]

    def update(self, proba: Tensor, target: Tensor) -> None:
        predicted, target = binary_labels(proba).long().reshape(-1), target.long().reshape(-1)
        self.counts += torch.bincount(target * 2 + predicted, minlength=4).reshape(2, 2).double()

    def compute(self) -> Tensor:
        tp = self.counts.diagonal()
        support, predicted = self.counts.sum(1), self.counts.sum(0)
        present = (support + predicted) > 0
        recall = tp / support.clamp_min(1.0)
        return (recall * present).sum() / present.sum().clamp_min(1.0)


class TargetKL(_MeanOf):
    """KL(target || predicted) per example, summed over classes and averaged over examples."""

    def __init__(self, eps: float = NLL_FLOOR, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eps = eps

    def update(self, proba: Tensor, target: Tensor) -> None:
        p = target.float()
        self._add((torch.xlogy(p, p) - p * proba.float().clamp_min(self.eps).log()).sum(-1))


class TopOneAgreement(_MeanOf):
    """Share of examples whose most probable predicted class is the target distribution's most probable class."""

    def update(self, proba: Tensor, target: Tensor) -> None:
        self._add((proba.argmax(-1) == target.argmax(-1)).double())


class RankMAE(_MeanOf):
    """Mean absolute error in ranks between predicted and true ordinal classes."""

    def update(self, label: Tensor, target: Tensor) -> None:
        self._add((label.double() - target.double()).abs())


TASK_TARGETS = {
    "multiclass": "accuracy",
    "binary": "accuracy",
    "regression": "mse",
    "distribution": "kl",
    "ordinal": "accuracy",
    "lm": "perplexity",
}
"""A head task's default target metric: what a comparison whose recipe names no ``target.metric`` is judged on."""


def metric_mode(name: str) -> str | None:
    """``"max"`` or ``"min"``: which way is better for a metric lossbench logs (``"val/accuracy"``, ``"mse"``,
    ``"val/loss"``), or None for a name it does not log.

    Example:
        >>> metric_mode("val/accuracy"), metric_mode("val/perplexity"), metric_mode("val/loss"), metric_mode("val/x")
        ('max', 'min', 'min', None)
    """
    name = name.split("/", 1)[-1]
    if name == "loss":
        return "min"
    for task in TASK_TARGETS:
        spec = metric_specs(task, 2).get(name)
        if spec is not None:
            return spec[2]
    return None


# metric name -> (reads, mode: "max" if higher is better else "min")
def metric_specs(
    task: str, num_classes: int | None, ignore_index: int = -100, sync: bool = True
) -> dict[str, tuple[Metric, str, str]]:
    """The metrics of ``task``: name -> (metric, which prediction it reads, "max" or "min").

    ``sync=False``: ``compute`` never gathers from other processes (one process holds all the data).

    Conventions: ``nll`` (and ``perplexity``) floor probabilities at :data:`NLL_FLOOR` (1e-12) before the log;
    ``balanced_accuracy`` is the mean recall over the classes that are a target or a prediction, so a class
    predicted but never a target counts with recall 0 (torchmetrics' rule; scikit-learn leaves it out).
    """
    # predictions come from the head and targets were checked by its loss: skip torchmetrics' checks
    every: dict[str, Any] = {"sync_on_compute": sync}  # keyword arguments of every torchmetrics Metric
    quick: dict[str, Any] = {"validate_args": False, **every}
    if task == "multiclass":
        c = _classes(task, num_classes)
        return {
            "accuracy": (MulticlassAccuracy(c, average="micro", ignore_index=ignore_index, **quick), "label", "max"),
            "f1_macro": (MulticlassF1Score(c, average="macro", ignore_index=ignore_index, **quick), "label", "max"),
            # the mean of per-class recalls: what accuracy means when the classes are imbalanced; over the classes
            # that are a target or a prediction (one predicted, never a target, has recall 0; scikit-learn omits it)
            "balanced_accuracy": (
                MulticlassRecall(c, average="macro", ignore_index=ignore_index, **quick),
                "label",
                "max",
            ),
            "nll": (MeanTargetNLL(ignore_index=ignore_index, **every), "proba", "min"),
            "ece": (MulticlassCalibrationError(c, n_bins=ECE_BINS, ignore_index=ignore_index, **quick), "proba", "min"),
            "brier": (Brier(ignore_index=ignore_index, **every), "proba", "min"),
        }
    if task == "binary":
        return {
            "accuracy": (BinaryAccuracy(BINARY_THRESHOLD, **quick), "proba", "max"),
            "auroc": (BinaryAUROC(**quick), "proba", "max"),
            "f1": (BinaryF1Score(BINARY_THRESHOLD, **quick), "proba", "max"),
            "balanced_accuracy": (BinaryBalancedAccuracy(**every), "proba", "max"),
            "nll": (BinaryNLL(**every), "proba", "min"),
            "ece": (BinaryCalibrationError(n_bins=ECE_BINS, **quick), "proba", "min"),
            "brier": (Brier(**every), "proba", "min"),
        }
    if task == "regression":
        return {
            "mse": (MeanSquaredError(**every), "label", "min"),
            "mae": (MeanAbsoluteError(**every), "label", "min"),
            "r2": (R2Score(**every), "label", "max"),
        }
    if task == "distribution":
        return {
            "kl": (TargetKL(**every), "proba", "min"),
            "top1_agreement": (TopOneAgreement(**every), "proba", "max"),
        }
    if task == "ordinal":
        return {
            "accuracy": (MulticlassAccuracy(_classes(task, num_classes), average="micro", **quick), "label", "max"),
            "rank_mae": (RankMAE(**every), "label", "min"),
        }
    if task == "lm":
        return {
            "perplexity": (MeanTargetNLL(ignore_index=ignore_index, exp=True, **every), "proba", "min"),
            "token_accuracy": (
                MulticlassAccuracy(_classes(task, num_classes), average="micro", ignore_index=ignore_index, **quick),
                "label",
                "max",
            ),
        }
    raise ValueError(f"metric_specs: `task` must be a head task, got {task!r}")


def _classes(task: str, num_classes: int | None) -> int:
    if num_classes is None:
        raise ValueError(f"metric_specs: task {task!r} needs `num_classes` (an int), got None")
    return int(num_classes)


class RunningSums:
    """Batch-size-weighted running sums of a loss and its named terms, without a device sync per step.

    ``means(reduce)`` sums over processes with ``reduce(tensor, reduce_op="sum")`` (a Lightning
    strategy's ``reduce``) before dividing, so ranks with unequal batch counts weigh correctly.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count: Tensor | None = None

    def add(self, loss: Tensor, terms: dict[str, Tensor], n: int) -> None:
        for name, value in (("loss", loss), *terms.items()):
            v = value.detach().double() * n
            self.sums[name] = v if name not in self.sums else self.sums[name] + v
        self.count = torch.tensor(float(n), dtype=torch.float64, device=loss.device) + (
            0 if self.count is None else self.count
        )

    def means(self, reduce=None) -> dict[str, Tensor]:
        if self.count is None:
            return {}
        names = list(self.sums)
        packed = torch.stack([self.sums[n] for n in names] + [self.count])
        if reduce is not None:
            packed = reduce(packed, reduce_op="sum")
        self.sums, self.count = {}, None
        return {name: (packed[i] / packed[-1]).float() for i, name in enumerate(names)}


def positions_as_rows(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Class predictions at several positions per example as one row per position.

    Classes-last probabilities ``(N, T, ..., C)`` become ``(M, C)`` and labels ``(N, T, ...)`` become ``(M,)``,
    with targets ``(N, T, ...)`` -> ``(M,)``: the layout torchmetrics' calibration error reads (it wants classes
    in dim 1). Ignored positions stay, marked by the target's ``ignore_index``, and every metric leaves them out
    as it does for ``(N, C)`` input. ``(N, C)`` / ``(N,)`` input is returned as it is.

    Example:
        >>> import torch
        >>> proba, target = torch.full((2, 4, 3), 1 / 3), torch.zeros(2, 4, dtype=torch.long)
        >>> [tuple(t.shape) for t in positions_as_rows(proba, target)]
        [(8, 3), (8,)]
    """
    if target.dim() <= 1:
        return pred, target
    classes = pred.shape[-1:] if pred.dim() > target.dim() else ()
    return pred.reshape(-1, *classes), target.reshape(-1)


class TaskMetrics(nn.Module):
    """One stage's metrics for a head; ``update(head, outputs, target)`` feeds each the prediction it reads.

    Multiclass outputs may hold several positions per example, classes last (``(N, T, C)`` for ``(N, T)``
    targets, as the heads take them): every metric then counts each non-ignored position as one example
    (:func:`positions_as_rows`), exactly as for the flattened ``(N * T, C)`` input.
    """

    def __init__(self, task: str, num_classes: int | None, ignore_index: int = -100) -> None:
        super().__init__()
        specs = metric_specs(task, num_classes, ignore_index)
        self.metrics = nn.ModuleDict({name: metric for name, (metric, _, _) in specs.items()})
        self.reads = {name: reads for name, (_, reads, _) in specs.items()}
        self.modes = {name: mode for name, (_, _, mode) in specs.items()}
        self.task = task

    @torch.no_grad()
    def update(self, head, outputs: Tensor, target: Tensor, scale: tuple[float, float] | None = None) -> None:
        """``scale``: (mean, std) of a standardised regression target; predictions are mapped back by it."""
        cache: dict[str, Tensor] = {}
        for name, module in self.metrics.items():
            metric = cast(Metric, module)  # self.metrics holds the Metrics of metric_specs
            reads = self.reads[name]
            if reads not in cache:
                cache[reads] = head.predict_proba(outputs) if reads == "proba" else head.predict(outputs)
            pred, tgt = cache[reads], target
            if self.task == "binary":
                tgt = target.round().long()
            elif self.task == "regression":
                pred, tgt = pred.float(), target.float()
                if scale is not None:
                    pred = pred * scale[1] + scale[0]
            elif self.task == "multiclass":
                pred, tgt = positions_as_rows(pred, target)
            metric.update(pred, tgt)

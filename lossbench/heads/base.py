"""The head contract: an output projection, a loss, a prediction rule and a task kind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from lossbench.functional._checks import check_reduction, shape_str

BINARY_THRESHOLD = 0.5
"""A binary prediction is class 1 where ``p(y=1) > BINARY_THRESHOLD``, strictly (``p = 0.5`` is class 0), as
torchmetrics' binary metrics threshold it: every binary label in lossbench comes from :func:`binary_labels`."""

TASKS = ("regression", "binary", "multiclass", "distribution", "ordinal", "lm")
CLASS_TASKS = ("multiclass", "distribution", "ordinal", "lm")
"""Tasks whose heads take ``num_classes`` (the vocabulary size for ``lm``)."""


def binary_labels(proba: Any) -> Any:
    """Whether each ``p(y=1)`` predicts class 1 (a bool Tensor or numpy array, like ``proba``): ``proba > 0.5``.

    Example:
        >>> binary_labels(torch.tensor([0.2, 0.5, 0.5001, 1.0])).tolist()
        [False, False, True, True]
    """
    return proba > BINARY_THRESHOLD


class LossHead(nn.Module, ABC):
    """Base class of every head. Subclass it once: one level of inheritance, no deeper.

    A head maps backbone features ``(..., in_features)`` to the outputs its loss needs
    (``forward``), computes the loss from those outputs and the target (``loss``,
    ``compute``), and turns outputs into predictions for metrics (``predict_proba``,
    ``predict``). Its ``task`` picks the metrics a training module uses.

    Subclasses set ``task``, call ``super().__init__(in_features, out_features, ...)``
    and implement ``_loss(outputs, target, reduction)``, returning the loss or a dict
    of named terms whose sum is the loss. Heads of class tasks set ``num_classes``.

    Example:
        >>> import torch
        >>> from lossbench import get_head
        >>> head = get_head("ce", in_features=8, num_classes=3)
        >>> outputs = head(torch.randn(4, 8))
        >>> outputs.shape, head.loss(outputs, torch.tensor([0, 2, 1, 1])).shape
        (torch.Size([4, 3]), torch.Size([]))
    """

    task: ClassVar[str]
    name: ClassVar[str] = ""
    """Registered short name, set by :func:`lossbench.register_head`."""
    reductions: ClassVar[tuple[str, ...]] = ("mean", "sum", "none")
    """Reductions ``loss`` accepts."""
    fusable: ClassVar[bool] = True
    """Whether ``lossbench compare``'s fused executor may train this head in a model array beside other heads
    (each head still runs alone on its own features). Set False for a head that must own its process (it keeps
    global state, or synchronises itself): it then trains in a sequential run."""
    distils: ClassVar[bool] = False
    """Whether the head learns from a teacher too: training batches that carry the teacher's logits
    (``batch["teacher"]``, set by ``lossbench compare``'s ``teacher:``) reach ``_distil`` instead of ``_loss``."""
    standardized_target: ClassVar[bool] = True
    """Regression heads: whether a training module may train this head on the standardised target
    ``(target - mean) / std`` and map its predictions back (True for location-scale losses; False where the
    target's origin and scale mean something, e.g. counts for ``poisson_nll``)."""
    num_classes: int
    """Heads of class tasks (:data:`CLASS_TASKS`) set it in ``__init__``; other heads have no such attribute."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        reduction: str = "mean",
        bias: bool = True,
        squeeze: bool = False,
    ) -> None:
        super().__init__()
        label = type(self).__name__
        if getattr(type(self), "task", None) not in TASKS:
            raise TypeError(
                f"{label}: class attribute `task` must be one of {TASKS}, got {getattr(type(self), 'task', None)!r}"
            )
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"{label}: `in_features` must be a positive int, got {in_features!r}")
        check_reduction(label, reduction, self.reductions)
        self.in_features = in_features
        self.reduction = reduction
        self.squeeze = squeeze
        self.proj = nn.Linear(in_features, out_features, bias=bias)

    # -- outputs ---------------------------------------------------------------------------
    def forward(self, features: Tensor) -> Tensor:
        """Project features ``(..., in_features)`` to this head's outputs."""
        self.check_features(features)
        out = self.proj(features)
        return out.squeeze(-1) if self.squeeze else out

    def check_features(self, features: Tensor) -> None:
        if not isinstance(features, Tensor) or features.dim() < 1 or features.shape[-1] != self.in_features:
            got = shape_str(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise ValueError(
                f"{type(self).__name__}: `features` must have shape (..., {self.in_features}) "
                f"(in_features={self.in_features}), got {got}"
            )

    # -- loss --------------------------------------------------------------------------------
    @abstractmethod
    def _loss(self, outputs: Tensor, target: Tensor, reduction: str) -> Tensor | dict[str, Tensor]:
        """The loss (calling ``lossbench.functional``), or its named terms whose sum is the loss."""

    def _distil(self, outputs: Tensor, target: Tensor, teacher: Tensor, reduction: str) -> Tensor | dict[str, Tensor]:
        """The loss given the teacher's logits too (heads with ``distils = True``); others never see a teacher."""
        raise TypeError(f"{type(self).__name__} does not distil from a teacher (distils = False)")

    def compute(
        self, outputs: Tensor, target: Tensor, reduction: str | None = None, teacher: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss and its named terms (empty for a single-term loss), computed once; ``teacher``: the teacher's
        logits for the same rows (heads with ``distils = True`` only)."""
        reduction = self.reduction if reduction is None else reduction
        result = (
            self._loss(outputs, target, reduction)
            if teacher is None
            else self._distil(outputs, target, teacher, reduction)
        )
        if isinstance(result, dict):
            terms = dict(result)
            total = terms.pop("loss", None)
            if total is None:
                total = cast(Tensor, sum(terms.values()))  # a composite loss has at least one term
            return total, terms
        return result, {}

    def loss(self, outputs: Tensor, target: Tensor, reduction: str | None = None) -> Tensor:
        """The loss: a scalar for ``mean``/``sum``; per position for ``none``."""
        return self.compute(outputs, target, reduction)[0]

    def loss_terms(self, outputs: Tensor, target: Tensor, reduction: str | None = None) -> dict[str, Tensor]:
        """Named terms of a composite loss, for logging (``{}`` for a single-term loss)."""
        return self.compute(outputs, target, reduction)[1]

    # -- predictions -------------------------------------------------------------------------
    def predict_proba(self, outputs: Tensor) -> Tensor:
        """Probabilities for metrics: P(y=1) (...,) for binary heads, (..., C) for class heads."""
        if self.task == "binary":
            return torch.sigmoid(outputs.float())
        if self.task == "regression":
            raise TypeError(f"{type(self).__name__} is a regression head: it predicts values, not probabilities")
        return torch.softmax(outputs.float(), dim=-1)

    def predict(self, outputs: Tensor) -> Tensor:
        """Point predictions: values for regression heads, class indices (int64) otherwise."""
        if self.task == "regression":
            return outputs
        proba = self.predict_proba(outputs)
        if self.task == "binary":
            return binary_labels(proba).long()
        return proba.argmax(-1)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, task={self.task!r}, reduction={self.reduction!r}"


def class_weight_buffer(head: nn.Module, name: str, value: Sequence[float] | Tensor | None, size: int) -> None:
    """Register an optional per-class weight as a buffer (moves with the head, saved in its state dict)."""
    tensor = None
    if value is not None:
        tensor = torch.as_tensor(value, dtype=torch.float32).detach().clone()
        if tensor.shape != (size,):
            raise ValueError(
                f"{type(head).__name__}: `{name}` must have one value per class, shape ({size},), "
                f"got {shape_str(tensor.shape)}"
            )
    head.register_buffer(name, tensor)


def check_num_classes(head: nn.Module, num_classes: int, minimum: int = 2) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < minimum:
        raise ValueError(f"{type(head).__name__}: `num_classes` must be an int >= {minimum}, got {num_classes!r}")
    return num_classes

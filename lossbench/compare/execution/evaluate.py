"""The test split, evaluated once per run on the reported weights, and recomputable from the files kept.

A finished run keeps two small files next to its record:

- ``weights.pt``: the module's state dict (the reported weights: final, or best on validation),
  a plain ``{name: tensor}`` mapping that ``torch.load(..., weights_only=True)`` reads;
- ``test_predictions.pt``: what the task metrics read, for every test row: ``target`` and
  ``proba`` (class probabilities) and/or ``label`` (predicted classes, or predicted values on
  the target's original scale for regression). Language models keep ``target_proba``, the
  probability of each target token, instead of the full (N, T, V) probabilities. A head with an
  ``ignore_index`` (class and language-model heads) adds it as ``ignore_index`` (a 0-d tensor):
  every metric computed from the file leaves out the rows (or tokens) whose target equals it, as
  the module's own metrics do.

The test metrics of a record are :func:`metrics_from_predictions` of that file, so anyone can
recompute them exactly; :func:`predict` recomputes the file from the weights.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import torch
from torch import Tensor

from lossbench.compare.store.tensors import IGNORE_INDEX_KEY
from lossbench.metrics import metric_specs, positions_as_rows


def _autocast(precision: str, device: torch.device):
    """The autocast context of a Lightning precision setting (none for full precisions)."""
    text = str(precision)
    if text.startswith("bf16") and "mixed" in text:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if text.startswith("16") and "mixed" in text:
        return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
    return contextlib.nullcontext()


def _reads(task: str, num_classes: int | None) -> set[str]:
    return {reads for _, reads, _ in metric_specs(task, num_classes).values()}


def predict(
    model: Any, dataset: Any, spec: Any, *, padding: str = "longest", batch_size: int = 256, precision: str = "32"
) -> dict[str, Tensor]:
    """Test predictions of ``model`` (a :class:`~lossbench.LossbenchModule`) on a processed split.

    One process, in row order, in eval mode, with the autocast of ``precision``; nothing else
    is changed on the model.
    """
    out = predict_many([model], dataset, spec, padding=padding, batch_size=batch_size, precision=precision)[0]
    if isinstance(out, BaseException):
        raise out
    return out


@torch.no_grad()
def predict_many(
    models: list[Any],
    dataset: Any,
    spec: Any,
    *,
    padding: str = "longest",
    batch_size: int = 256,
    precision: str = "32",
) -> list[dict[str, Tensor] | BaseException]:
    """:func:`predict` of each of ``models`` in one pass over the split (each batch is loaded and collated once, for
    all of them: an array's members are evaluated together); a model whose forward or head raises gets its error in
    its place, and the others go on."""
    from torch.utils.data import DataLoader

    from lossbench.data.loading import Collate

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=Collate(spec, padding))
    parts: list[dict[str, list[Tensor]] | BaseException] = [{} for _ in models]
    reads = [_reads(m.head.task, getattr(m.head, "num_classes", None)) for m in models]  # builds the metrics: once
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        for batch in loader:
            for i, model in enumerate(models):
                got = parts[i]
                if isinstance(got, BaseException):
                    continue
                try:
                    for key, value in _batch_predictions(model, batch, precision, reads[i]).items():
                        got.setdefault(key, []).append(value)
                except Exception as exc:  # this model's error: the others go on
                    parts[i] = exc
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
    return [got if isinstance(got, BaseException) else _assemble(model, got) for model, got in zip(models, parts)]


def _batch_predictions(model: Any, batch: dict[str, Tensor], precision: str, reads: set[str]) -> dict[str, Tensor]:
    """What the task metrics read (``reads``) of ``model``'s outputs on one collated batch, on the CPU."""
    head = model.head
    task = head.task
    param = next(model.parameters())
    inputs, target = batch["inputs"].to(param.device), batch["target"]
    if inputs.is_floating_point():
        inputs = inputs.to(param.dtype)
    with _autocast(precision, param.device):
        outputs = model(inputs)
    got: dict[str, Tensor] = {"target": target}
    if "proba" in reads:
        proba = head.predict_proba(outputs).float()
        if task == "lm":  # the target token's probability only: (N, T) instead of (N, T, V)
            keep = target != getattr(head, "ignore_index", -100)
            index = torch.where(keep, target, 0).to(proba.device).unsqueeze(-1)
            got["target_proba"] = proba.gather(-1, index).squeeze(-1)
        else:
            got["proba"] = proba
    if "label" in reads:
        got["label"] = _values(model, outputs) if task == "regression" else head.predict(outputs)
    return {key: value.detach().cpu() for key, value in got.items()}


def _assemble(model: Any, parts: dict[str, list[Tensor]]) -> dict[str, Tensor]:
    predictions = {key: _concat(values) for key, values in parts.items()}
    if hasattr(model.head, "ignore_index"):
        predictions[IGNORE_INDEX_KEY] = torch.tensor(int(model.head.ignore_index))
    return predictions


def _values(model: Any, outputs: Tensor) -> Tensor:
    """Regression predictions on the target's original scale (the module undoes its standardisation)."""
    to_data_scale = getattr(model, "predict_values", None)
    values = to_data_scale(outputs) if callable(to_data_scale) else model.head.predict(outputs)
    return values.float()


def _concat(values: list[Tensor]) -> Tensor:
    if values[0].dim() >= 2 and len({v.shape[1:] for v in values}) > 1:  # token batches padded to their longest
        width = max(v.shape[1] for v in values)
        fill = -100 if not values[0].is_floating_point() else 1.0
        values = [
            torch.nn.functional.pad(v, (0, width - v.shape[1]), value=fill) if v.dim() == 2 else v for v in values
        ]
    return torch.cat(values)


def metrics_from_predictions(
    task: str, num_classes: int | None, predictions: dict[str, Tensor], prefix: str = "test/"
) -> dict[str, float]:
    """Every task metric of ``task`` computed from saved predictions, in one pass (deterministic).

    Uses the very torchmetrics objects that training logs (:func:`lossbench.metrics.metric_specs`), with the
    head's ``ignore_index`` when ``predictions`` hold one (:data:`IGNORE_INDEX_KEY`).

    Example:
        >>> import torch
        >>> preds = {"target": torch.tensor([0, 1, 1]), "label": torch.tensor([0, 1, 0]),
        ...          "proba": torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])}
        >>> m = metrics_from_predictions("multiclass", 2, preds)
        >>> round(m["test/accuracy"], 4), round(m["test/nll"], 4)
        (0.6667, 0.4149)
    """
    out: dict[str, float] = {}
    target = predictions["target"]
    ignore = {"ignore_index": int(predictions[IGNORE_INDEX_KEY])} if IGNORE_INDEX_KEY in predictions else {}
    # one process holds the whole split: compute never waits for the other processes of a DDP run
    for name, (metric, reads, _) in metric_specs(task, num_classes, sync=False, **ignore).items():
        tgt = target
        if task == "lm" and reads == "proba":  # stored as the target token's probability
            keep = target.ne(cast(int, metric.ignore_index))  # an int attribute of the LM metrics
            pred = predictions["target_proba"].unsqueeze(-1)
            tgt = torch.where(keep, torch.zeros_like(target), target)
        else:
            pred = predictions[reads]
        if task == "binary":
            tgt = target.round().long()
        elif task == "multiclass":  # classes-last (N, T, C) predictions: one row per position, as in training
            pred, tgt = positions_as_rows(pred, tgt)
        elif task == "regression":
            pred, tgt = pred.float(), target.float()
        metric.update(pred, tgt)
        out[f"{prefix}{name}"] = float(metric.compute())
    return out

"""Per-class recall on the test split, per loss (mean over seeds), from the saved test predictions.

Shown when the training split was made imbalanced (``data.imbalance``): a loss chosen for imbalance
should raise the recall of the rare classes, which accuracy hides.

Example:
    >>> import numpy as np
    >>> pred = {"target": np.array([0, 0, 1, 1]), "label": np.array([0, 0, 0, 1])}
    >>> class_recalls([pred], 2).tolist()
    [1.0, 0.5]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lossbench.compare.report.data import _table
from lossbench.compare.report.format import _num


def class_recalls(predictions: list[dict[str, Any]], num_classes: int) -> np.ndarray:
    """Recall of each class id, averaged over the seeds' predictions (NaN for a class absent from the targets)."""
    out = []
    for p in predictions:
        target = np.asarray(p["target"])
        label = np.asarray(p["label"]) if "label" in p else np.asarray(p["proba"]).argmax(-1)
        support = np.bincount(target, minlength=num_classes).astype(np.float64)
        hits = np.bincount(target[label == target], minlength=num_classes).astype(np.float64)
        out.append(np.where(support > 0, hits / np.maximum(support, 1), np.nan))
    return np.nanmean(np.stack(out), 0) if out else np.full(num_classes, np.nan)


def per_class_section(
    predictions: dict[tuple[str, int], dict[str, Any]], losses: list[str], class_names: list[str]
) -> list[str]:
    """Markdown: a row per loss, a column per class (its training count in the header when known)."""
    rows = []
    for loss in losses:
        preds = [p for (label, _), p in sorted(predictions.items()) if label == loss]
        if preds and np.asarray(preds[0]["target"]).ndim == 1:
            rows.append(
                [
                    loss,
                    str(len(preds)),
                    *(_num(float(r)) if r == r else "—" for r in class_recalls(preds, len(class_names))),
                ]
            )
    if not rows:
        return []
    return [
        "### Per-class recall (test)",
        "",
        "Recall of each class on the test split, mean over seeds; the header gives each class's training rows.",
        "",
        *_table(["loss", "seeds", *class_names], rows),
        "",
    ]

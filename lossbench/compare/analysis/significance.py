"""Tests that also account for test-set sampling, and the multiple-comparison correction.

A seed-level paired t-test (``stats.py``) says whether a difference holds across training seeds;
it knows nothing about how many test examples the metric was computed on. A gap of 2 rows out
of 540 can be "significant" across 3 seeds while being well inside what resampling the test
set produces. The tests here work on the saved per-example test predictions of both losses
(the same test rows, in the same order, for every seed):

* accuracy: a pooled exact McNemar test (``statsmodels``) on the discordant pairs summed over
  seeds: examples one loss gets right and the other wrong;
* every other task metric (:func:`lossbench.metrics.metric_specs`: F1, balanced accuracy, NLL, Brier,
  ECE, AUROC, regression errors, KL, perplexity, ...): a paired bootstrap that resamples test
  examples (the same rows for both losses) and seeds, 2000 resamples with a fixed generator so that
  a report recomputes. Each resample recomputes the metric on the resampled rows, as torchmetrics
  would on them (set-level metrics such as ECE and AUROC included).

Prediction dicts hold numpy arrays: ``{"target", "proba", "label"}`` for class tasks (``label``
may be missing where only probabilities were kept), ``{"target", "value"}`` for regression, and
``{"target", "target_proba", "label"}`` for language models (positions whose target is
the head's ``ignore_index``, kept with them, left out; :data:`IGNORE_INDEX` for files without one). Rows
of one position whose target is ignored are left out of every test, as the logged metrics leave them out.

>>> holm([0.01, 0.04, None, 0.03])
[0.03, 0.06, None, 0.06]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import xlogy

from lossbench._metric_rules import ECE_BINS, NLL_FLOOR, calibration_bins
from lossbench.heads.base import binary_labels

RESAMPLES = 2000
SEED = 0  # the bootstrap's generator: fixed, so that the same predictions give the same p-value
EPS = NLL_FLOOR  # probabilities are clamped here before the log (the logged NLL metrics' floor)
IGNORE_INDEX = -100  # target value of the positions left out, where the predictions hold no ``ignore_index``


def _ignore_index(pred: dict) -> int:
    """The head's ``ignore_index`` kept with its predictions (:data:`IGNORE_INDEX` for older files)."""
    return int(np.asarray(pred.get("ignore_index", IGNORE_INDEX)))


def _without_ignored(pred: dict) -> dict:
    """One-position-per-row class predictions less the rows whose target is ignored, as the logged metrics
    leave them out (token predictions keep their rows: their metrics mask the positions).

    >>> pred = {"target": np.array([0, 3, 1]), "label": np.array([0, 0, 1]), "ignore_index": np.array(3)}
    >>> _without_ignored(pred)["label"].tolist()
    [0, 1]
    """
    target = np.asarray(pred["target"])
    if target.ndim != 1 or target.dtype.kind not in "iu":
        return pred
    keep = target != _ignore_index(pred)
    if keep.all():
        return pred
    return {k: v[keep] if np.ndim(v) and np.shape(v)[0] == target.shape[0] else v for k, v in pred.items()}


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (Holm 1979; what ``statsmodels.stats.multitest.multipletests(method="holm")``
    gives, without its ``gc.collect()`` per call); a ``None`` stays ``None`` and is not counted in the family.

    The k-th smallest of m p-values becomes max over j <= k of (m - j + 1) p_(j), capped at 1.
    """
    present = [(i, float(p)) for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    ordered = sorted(present, key=lambda item: item[1])
    running, m = 0.0, len(ordered)
    for rank, (i, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


@dataclass(frozen=True)
class ExampleTest:
    """An example-level paired test of ``metric``: loss a minus loss b, pooled over seeds."""

    method: str  # "McNemar (exact, pooled over seeds)" or "paired bootstrap over examples and seeds"
    metric: str
    n_examples: int
    n_seeds: int
    diff: float  # mean over seeds of metric(a) - metric(b) on the full test split
    p: float | None  # two-sided; None when the test cannot be computed
    detail: dict[str, Any] = field(default_factory=dict)  # "ci" (95%, bootstrap) or the discordant counts


def _correct(pred: dict[str, np.ndarray]) -> np.ndarray:
    target = np.asarray(pred["target"])
    return _labels(pred).reshape(target.shape) == target


def mcnemar_pooled(preds_a: Sequence[dict], preds_b: Sequence[dict]) -> ExampleTest:
    """Exact McNemar test on the discordant pairs pooled over seeds (a right and b wrong vs the reverse).

    >>> t = np.array([0, 1, 1, 0])
    >>> a = {"target": t, "label": np.array([0, 1, 1, 1])}
    >>> b = {"target": t, "label": np.array([1, 0, 1, 1])}
    >>> test = mcnemar_pooled([a], [b])
    >>> test.detail["a_only"], test.detail["b_only"], test.diff, test.p
    (2, 0, 0.5, 0.5)
    """
    from statsmodels.stats.contingency_tables import mcnemar

    _check_pairs(preds_a, preds_b)
    preds_a, preds_b = [_without_ignored(p) for p in preds_a], [_without_ignored(p) for p in preds_b]
    a_only = b_only = 0
    diffs = []
    for a, b in zip(preds_a, preds_b):
        ca, cb = _correct(a), _correct(b)
        a_only += int(np.sum(ca & ~cb))
        b_only += int(np.sum(~ca & cb))
        diffs.append(float(ca.mean() - cb.mean()))
    n = int(np.asarray(preds_a[0]["target"]).size)
    if a_only + b_only == 0:
        p = 1.0  # no discordant example: no evidence of any difference
    else:
        p = float(mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue)
    return ExampleTest(
        "McNemar (exact, pooled over seeds)",
        "accuracy",
        n,
        len(preds_a),
        float(np.mean(diffs)),
        min(p, 1.0),
        {"a_only": a_only, "b_only": b_only},
    )


# metric -> score(prediction dict, index rows (R, N)) -> (R,) scores of each resampled test set
def _take(pred: dict, key: str, idx: np.ndarray) -> np.ndarray:
    return np.asarray(pred[key])[idx]


def _labels(pred: dict) -> np.ndarray:
    if "label" in pred:
        return np.asarray(pred["label"])
    proba = np.asarray(pred["proba"])
    return binary_labels(proba).astype(np.int64) if proba.ndim == 1 else proba.argmax(-1)


def _f1(pred: dict, idx: np.ndarray, classes: list[int]) -> np.ndarray:
    """F1 averaged over ``classes``, skipping a class absent from both prediction and target (as torchmetrics)."""
    label, target = _labels(pred)[idx], np.asarray(pred["target"])[idx]
    total, count = np.zeros(idx.shape[0]), np.zeros(idx.shape[0])
    for c in classes:
        tp = np.sum((label == c) & (target == c), -1)
        denom = np.sum(label == c, -1) + np.sum(target == c, -1)  # 2tp + fp + fn
        present = denom > 0
        total += np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
        count += present
    return total / np.maximum(count, 1)


def _classes(pred: dict) -> list[int]:
    proba = pred.get("proba")
    n_classes = (
        int(np.asarray(proba).shape[-1])
        if proba is not None and np.asarray(proba).ndim == 2
        else int(max(np.max(pred["target"]), np.max(_labels(pred))) + 1)
    )
    return list(range(max(n_classes, 2)))


def _f1_macro(pred: dict, idx: np.ndarray) -> np.ndarray:
    return _f1(pred, idx, _classes(pred))


def _balanced_accuracy(pred: dict, idx: np.ndarray) -> np.ndarray:
    """Mean recall over the classes, skipping a class absent from both prediction and target (as torchmetrics)."""
    label, target = _labels(pred)[idx], np.asarray(pred["target"])[idx]
    total, count = np.zeros(idx.shape[0]), np.zeros(idx.shape[0])
    for c in _classes(pred):
        tp, support = np.sum((label == c) & (target == c), -1), np.sum(target == c, -1)
        present = (support + np.sum(label == c, -1)) > 0
        total += np.where(present, tp / np.maximum(support, 1), 0.0)
        count += present
    return total / np.maximum(count, 1)


def _brier(pred: dict) -> np.ndarray:
    proba, target = np.asarray(pred["proba"], dtype=np.float64), np.asarray(pred["target"])
    if proba.ndim == 1:
        return (proba - target) ** 2
    onehot = np.eye(proba.shape[-1])[target]
    return ((proba - onehot) ** 2).sum(-1)


def _nll(pred: dict, idx: np.ndarray) -> np.ndarray:
    proba, target = np.asarray(pred["proba"], dtype=np.float64), np.asarray(pred["target"])
    if proba.ndim == 1:  # binary: p(y=1)
        p = np.clip(proba, EPS, 1 - EPS)
        per_example = -(target * np.log(p) + (1 - target) * np.log(1 - p))
        return per_example[idx].mean(-1)
    per_example = -np.log(np.clip(proba[np.arange(len(target)), target], EPS, None))
    return per_example[idx].mean(-1)


def _r2(pred: dict, idx: np.ndarray) -> np.ndarray:
    value, target = _take(pred, "value", idx).astype(np.float64), _take(pred, "target", idx).astype(np.float64)
    value, target = value.reshape(idx.shape[0], -1), target.reshape(idx.shape[0], -1)
    residual = np.sum((target - value) ** 2, -1)
    spread = np.sum((target - target.mean(-1, keepdims=True)) ** 2, -1)
    return 1.0 - residual / np.where(spread > 0, spread, np.nan)


def _per_example(fn: Callable[[dict], np.ndarray]) -> Callable[[dict, np.ndarray], np.ndarray]:
    def score(pred: dict, idx: np.ndarray) -> np.ndarray:
        return fn(pred)[idx].reshape(idx.shape[0], -1).mean(-1)

    return score


def _err(pred: dict) -> np.ndarray:
    value = np.asarray(pred["value"], dtype=np.float64)
    return value.reshape(value.shape[0], -1) - np.asarray(pred["target"], dtype=np.float64).reshape(value.shape[0], -1)


def _multiplicity(idx: np.ndarray, n: int) -> np.ndarray:
    """(R, n): how many times each of the ``n`` rows is drawn in each of the R resamples ``idx`` (R, n)."""
    rows = idx.shape[0]
    flat = (np.arange(rows)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def _resampled_sums(per_row: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(R, K): the sums over each resample's rows of ``per_row`` (n, K) (a set-level metric's counts)."""
    return _multiplicity(idx, per_row.shape[0]) @ per_row


def _rows(values: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(values).reshape(n, -1)


def _ece(pred: dict, idx: np.ndarray) -> np.ndarray:
    """Expected calibration error as torchmetrics computes it (``Binary``/``MulticlassCalibrationError``, l1):
    float32 confidences bucketed into [lo, hi) bins (a confidence of exactly 1.0 in a bin of its own), the
    count-weighted gap between each bin's accuracy and mean confidence. Multiclass: the top probability and
    whether its class is the target (targets equal to the head's ``ignore_index`` left out); binary: ``p(y=1)`` and
    the 0/1 target."""
    proba, target = np.asarray(pred["proba"], dtype=np.float32), np.asarray(pred["target"])
    n = target.shape[0]
    if proba.ndim == target.ndim:  # binary: p(y=1) against the target
        confidence, hit, keep = proba, np.round(target).astype(np.float64), np.ones(target.shape)
    else:
        keep = (target != _ignore_index(pred)).astype(np.float64)
        confidence, hit = proba.max(-1), (proba.argmax(-1) == target).astype(np.float64)
    bins = ECE_BINS  # and one more bin, for a confidence of exactly 1.0
    index = _rows(calibration_bins(torch.from_numpy(np.ascontiguousarray(confidence))).numpy(), n)
    per_row = np.zeros((n, 3, bins + 1))
    rows = np.broadcast_to(np.arange(n)[:, None], index.shape)
    keep, confidence, hit = _rows(keep, n), _rows(confidence, n).astype(np.float64), _rows(hit, n)
    for k, values in enumerate((keep, keep * confidence, keep * hit)):
        np.add.at(per_row[:, k], (rows, index), values)
    sums = _resampled_sums(per_row.reshape(n, -1), idx).reshape(idx.shape[0], 3, bins + 1)
    count, conf, hits = sums[:, 0], sums[:, 1], sums[:, 2]
    return np.abs(hits - conf).sum(-1) / np.maximum(count.sum(-1), 1)  # sum over bins of count/N * |acc - conf|


def _auroc(pred: dict, idx: np.ndarray) -> np.ndarray:
    """Binary AUROC (``BinaryAUROC``: the area under the ROC curve, ties counted half) of each resample: the
    share of (positive, negative) pairs, drawn rows counted as often as drawn, where the positive scores higher.
    NaN where a resample holds one class only (the bootstrap leaves it out)."""
    score, target = np.asarray(pred["proba"]).ravel(), np.round(np.asarray(pred["target"], dtype=np.float64)).ravel()
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # first row of each distinct score
    drawn = _multiplicity(idx, score.size)[:, order]
    pos = np.add.reduceat(drawn * target[order], starts, axis=1)
    neg = np.add.reduceat(drawn * (1 - target[order]), starts, axis=1)
    below = np.cumsum(neg, 1) - neg  # negatives scoring strictly lower
    pairs = pos.sum(1) * neg.sum(1)
    return (pos * (below + 0.5 * neg)).sum(1) / np.where(pairs > 0, pairs, np.nan)


def _token_mean(values: Callable[[dict], np.ndarray]) -> Callable[[dict, np.ndarray], np.ndarray]:
    """A mean over the positions whose target is not the head's ``ignore_index``, pooled over the resampled rows (a
    row of a language model holds many positions)."""

    def score(pred: dict, idx: np.ndarray) -> np.ndarray:
        target = np.asarray(pred["target"])
        n, keep = target.shape[0], (target != _ignore_index(pred))
        per_row = np.stack([_rows(np.where(keep, values(pred), 0.0), n).sum(1), _rows(keep, n).sum(1)], 1)
        sums = _resampled_sums(per_row.astype(np.float64), idx)
        return sums[:, 0] / np.maximum(sums[:, 1], 1)

    return score


def _token_nll(pred: dict) -> np.ndarray:
    return -np.log(np.clip(np.asarray(pred["target_proba"], dtype=np.float64), EPS, None))


def _perplexity(pred: dict, idx: np.ndarray) -> np.ndarray:
    return np.exp(_token_mean(_token_nll)(pred, idx))


def _kl(pred: dict) -> np.ndarray:
    """KL(target || predicted) per row (``TargetKL``)."""
    p = np.asarray(pred["target"], dtype=np.float64)
    q = np.clip(np.asarray(pred["proba"], dtype=np.float64), EPS, None)
    return (xlogy(p, p) - p * np.log(q)).sum(-1)


def _top1_agreement(pred: dict) -> np.ndarray:
    return (np.asarray(pred["proba"]).argmax(-1) == np.asarray(pred["target"]).argmax(-1)).astype(np.float64)


SCORES: dict[str, Callable[[dict, np.ndarray], np.ndarray]] = {
    "accuracy": _per_example(lambda p: _correct(p).astype(np.float64)),
    "f1_macro": _f1_macro,
    "f1": lambda p, idx: _f1(p, idx, [1]),
    "nll": _nll,
    "balanced_accuracy": _balanced_accuracy,
    "brier": _per_example(_brier),
    "mse": _per_example(lambda p: (_err(p) ** 2).mean(-1)),
    "mae": _per_example(lambda p: np.abs(_err(p)).mean(-1)),
    "r2": _r2,
    "rank_mae": _per_example(lambda p: np.abs(np.asarray(p["label"], dtype=np.float64) - p["target"])),
    "ece": _ece,
    "auroc": _auroc,
    "kl": _per_example(_kl),
    "top1_agreement": _per_example(_top1_agreement),
    "perplexity": _perplexity,
    "token_accuracy": _token_mean(lambda p: (np.asarray(p["label"]) == np.asarray(p["target"])).astype(np.float64)),
}
NEEDS = {
    "nll": "proba",
    "brier": "proba",
    "ece": "proba",
    "auroc": "proba",
    "kl": "proba",
    "top1_agreement": "proba",
    "mse": "value",
    "mae": "value",
    "r2": "value",
    "rank_mae": "label",
    "perplexity": "target_proba",
    "token_accuracy": "label",
}
"""The prediction each metric's test reads (the others read ``label``, or ``proba`` where no label was kept)."""


def paired_bootstrap(
    metric: str, preds_a: Sequence[dict], preds_b: Sequence[dict], *, resamples: int = RESAMPLES, seed: int = SEED
) -> ExampleTest:
    """Paired bootstrap of ``metric(a) - metric(b)``: each resample draws test rows (the same rows for both
    losses and every seed) and seeds, both with replacement. Two-sided p from the share of resampled
    differences on the other side of 0; ``detail["ci"]`` is the 95% percentile interval.

    >>> t = np.arange(200) % 2
    >>> a = {"target": t, "label": t}                   # always right
    >>> b = {"target": t, "label": np.zeros(200, int)}  # right on half the rows
    >>> test = paired_bootstrap("accuracy", [a], [b], resamples=500)
    >>> test.diff, test.p < 0.01, test.detail["ci"][0] > 0.4
    (0.5, True, True)
    """
    if metric not in SCORES:
        raise ValueError(f"paired_bootstrap: `metric` must be one of {sorted(SCORES)}, got {metric!r}")
    _check_pairs(preds_a, preds_b)
    preds_a, preds_b = [_without_ignored(p) for p in preds_a], [_without_ignored(p) for p in preds_b]
    score = SCORES[metric]
    n, k = int(np.asarray(preds_a[0]["target"]).shape[0]), len(preds_a)
    full = np.arange(n)[None, :]
    diff = float(np.mean([score(a, full)[0] - score(b, full)[0] for a, b in zip(preds_a, preds_b)]))
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    chunk = max(1, min(resamples, 4_000_000 // max(n, 1)))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(rows, n))
        draws = rng.integers(0, k, size=(rows, k))
        per_seed = np.stack([score(a, idx) - score(b, idx) for a, b in zip(preds_a, preds_b)], 1)  # (rows, k)
        stats[start : start + rows] = np.take_along_axis(per_seed, draws, 1).mean(1)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return ExampleTest("paired bootstrap over examples and seeds", metric, n, k, diff, None, {"ci": (None, None)})
    below, above = (np.sum(stats <= 0) + 1) / (stats.size + 1), (np.sum(stats >= 0) + 1) / (stats.size + 1)
    p = float(min(1.0, 2 * min(below, above)))
    low, high = (float(x) for x in np.percentile(stats, [2.5, 97.5]))
    return ExampleTest(
        "paired bootstrap over examples and seeds",
        metric,
        n,
        k,
        diff,
        p,
        {"ci": (low, high), "resamples": int(stats.size), "seed": seed},
    )


def example_level_test(
    metric: str, preds_a: Sequence[dict], preds_b: Sequence[dict], *, mode: str = "max"
) -> ExampleTest | None:
    """The example-level test of ``metric`` (a name without the ``test/`` prefix), or None when no
    per-example test is defined for it (the seed-level test then decides alone). ``mode`` is the
    metric's direction; the test is two-sided either way."""
    if mode not in ("max", "min"):
        raise ValueError(f"example_level_test: `mode` must be 'max' or 'min', got {mode!r}")
    if not preds_a:
        return None
    needs = NEEDS.get(metric)
    if metric not in SCORES or (needs and any(needs not in p for p in (*preds_a, *preds_b))):
        return None
    if metric == "accuracy":
        return mcnemar_pooled(preds_a, preds_b)
    return paired_bootstrap(metric, preds_a, preds_b)


def _check_pairs(preds_a: Sequence[dict], preds_b: Sequence[dict]) -> None:
    if len(preds_a) != len(preds_b) or not preds_a:
        raise ValueError(
            f"example-level test: `preds_a` and `preds_b` must hold one prediction dict per common seed, "
            f"got {len(preds_a)} and {len(preds_b)}"
        )
    reference = np.asarray(preds_a[0]["target"])
    for i, p in enumerate((*preds_a, *preds_b)):
        if not np.array_equal(np.asarray(p["target"]), reference):
            raise ValueError(
                f"example-level test: every prediction must be on the same test rows; "
                f"prediction {i} has other targets (shape {np.asarray(p['target']).shape}, "
                f"expected {reference.shape})"
            )

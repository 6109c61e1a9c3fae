"""Evidence for speed-ups of heads that miss the <= 1.10 goal of ``benchmarks/heads.py``.

Each variant below is a scratch copy of a lossbench loss with one change (same
value, same errors for valid and invalid inputs unless noted). They are timed the
way ``heads.py`` times heads: forward + backward on the same leaf outputs,
interleaved with the baseline, medians over 3 rounds; printed as time and ratio
to the baseline, with the range over rounds in brackets. Also timed: the head as
shipped (``ours``) and with lossbench's value checks off (``ours_checks_off``).

This is not part of the benchmark and will go stale as lossbench changes: it
reuses private helpers of ``lossbench.functional``.

Usage::

    python benchmarks/head_variants.py                       # every head with variants, 2 threads
    python benchmarks/head_variants.py --heads ce,focal --threads 1 --small
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heads as B  # noqa: E402  (benchmarks/heads.py)

import lossbench.functional as LF  # noqa: E402
from lossbench.functional._checks import (  # noqa: E402
    check_binary_target_values,
    check_class_input,
    check_float,
    check_reduction,
    check_same_shape,
    validate_args_enabled,
)
from lossbench.functional._reduce import class_weights, normalise, reduce, weighted_reduce  # noqa: E402


# ---- class targets: know when no position is ignored -----------------------------------------
def class_values(fn, target, num_classes, ignore_index):
    """check_class_target_values that also says whether ignored positions may be present.

    The aminmax it already runs proves, when ignore_index lies outside [lo, hi], that no
    target equals it: then the weights of ``class_weights`` are all 1 and the mask, the
    where, the float copy and the weighted mean can be skipped.
    """
    if target.numel() == 0:
        return False
    if not validate_args_enabled():
        return True  # unknown: keep the masked path
    lo, hi = torch.aminmax(target)
    lo, hi = int(lo), int(hi)
    if lo >= 0 and hi < num_classes:
        return ignore_index is not None and lo <= ignore_index <= hi  # e.g. ignore_index=0 (a padding id)
    bad = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if bool(bad.any()):
        raise ValueError(f"{fn}: `target` values must be class indices")
    return True


def ce_fast(input, target, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """torch's own reduction when nothing is weighted; sum / count when positions may be ignored.

    sum / count.clamp_min(1) keeps lossbench's rule (an all-ignored batch gives 0, zero gradient).
    """
    fn = "cross_entropy"
    check_reduction(fn, reduction)
    num_classes = check_class_input(fn, input, target)
    maybe_ignored = class_values(fn, target, num_classes, ignore_index)
    if weight is None and reduction != "none":
        x = input.reshape(-1, num_classes) if input.dim() != 2 else input
        t = target.reshape(-1) if target.dim() != 1 else target
        if not maybe_ignored:
            return F.cross_entropy(x, t, label_smoothing=label_smoothing, reduction=reduction)
        total = F.cross_entropy(x, t, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction="sum")
        return total if reduction == "sum" else total / (t != ignore_index).sum().clamp_min(1)
    return LF.cross_entropy(input, target, weight, ignore_index, label_smoothing, reduction)


def _log_p_target_fast(input, target, ignore_index, maybe_ignored):
    logp = F.log_softmax(input, dim=-1)
    index, w = class_weights(target, None, ignore_index, logp.dtype) if maybe_ignored else (target, None)
    return logp, logp.gather(-1, index.unsqueeze(-1)).squeeze(-1), w


def focal_fast(input, target, gamma=2.0, ignore_index=-100, reduction="mean"):
    """lossbench's formula, without the mask when no position is ignored."""
    mi = class_values("focal_loss", target, check_class_input("focal_loss", input, target), ignore_index)
    _, logp_y, w = _log_p_target_fast(input, target, ignore_index, mi)
    loss = -logp_y * (-torch.expm1(logp_y)).clamp_min(0.0).pow(gamma) if gamma else -logp_y
    return weighted_reduce(loss, w, reduction)


def focal_fast_ce(input, target, gamma=2.0, ignore_index=-100, reduction="mean"):
    """-log p_y from F.cross_entropy(reduction='none') (fused; ignored positions already 0), no mask."""
    num_classes = check_class_input("focal_loss", input, target)
    mi = class_values("focal_loss", target, num_classes, ignore_index)
    rows, flat = input.reshape(-1, num_classes), target.reshape(-1)
    ce = F.cross_entropy(rows, flat, ignore_index=ignore_index, reduction="none").reshape(target.shape)
    loss = ce * (-torch.expm1(-ce)).clamp_min(0.0).pow(gamma) if gamma else ce
    return normalise(loss, (target != ignore_index).to(ce.dtype) if mi else None, reduction)


def gce_fast(input, target, q=0.7, ignore_index=-100, reduction="mean"):
    mi = class_values("gce", target, check_class_input("gce", input, target), ignore_index)
    _, logp_y, w = _log_p_target_fast(input, target, ignore_index, mi)
    return weighted_reduce(-torch.expm1(q * logp_y) / q, w, reduction)


def mae_prob_fast(input, target, ignore_index=-100, reduction="mean"):
    mi = class_values("mae_prob", target, check_class_input("mae_prob", input, target), ignore_index)
    _, logp_y, w = _log_p_target_fast(input, target, ignore_index, mi)
    return weighted_reduce(-torch.expm1(logp_y), w, reduction)


def mae_prob_softmax(input, target, ignore_index=-100, reduction="mean"):
    """1 - softmax(x)_y: softmax's backward needs no exp over (N, C), log_softmax's does."""
    mi = class_values("mae_prob", target, check_class_input("mae_prob", input, target), ignore_index)
    index, w = class_weights(target, None, ignore_index, input.dtype) if mi else (target, None)
    p_y = F.softmax(input, dim=-1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    return weighted_reduce(1.0 - p_y, w, reduction)


def nce_rce_fast(input, target, alpha=1.0, beta=1.0, log_zero=-4.0, ignore_index=-100, reduction="mean"):
    mi = class_values("nce_rce", target, check_class_input("nce_rce", input, target), ignore_index)
    logp, logp_y, w = _log_p_target_fast(input, target, ignore_index, mi)
    terms = {"nce": alpha * logp_y / logp.sum(-1), "rce": beta * (-log_zero) * (-torch.expm1(logp_y))}
    return sum(weighted_reduce(v, w, reduction) for v in terms.values())


def square_fast(input, target, k=1.0, M=1.0, ignore_index=-100, reduction="mean"):
    num_classes = check_class_input("square_loss", input, target)
    mi = class_values("square_loss", target, num_classes, ignore_index)
    index, w = class_weights(target, None, ignore_index, input.dtype) if mi else (target, None)
    x_y = input.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    loss = (input.square().sum(-1) - x_y.square() + k * (x_y - M).square()) / num_classes
    return weighted_reduce(loss, w, reduction)


# ---- binary / regression -----------------------------------------------------------------------
def squared_hinge_relu(input, target, margin=1.0):
    """lossbench's checks, F.relu instead of torch.clamp_min (clamp_min's backward is slower)."""
    check_float("squared_hinge_loss", "input", input)
    check_same_shape("squared_hinge_loss", input, target)
    check_binary_target_values("squared_hinge_loss", target)
    return reduce(F.relu(margin - (2.0 * target - 1.0) * input).square(), "mean")


def squared_hinge_clamp_nocheck(input, target, margin=1.0):
    return torch.clamp_min(margin - (2.0 * target - 1.0) * input, 0.0).square().mean()


def log_cosh_no_abs(input, target):
    """lossbench's checks; d + softplus(-2d) - log 2 is log cosh d and stable for either sign (no abs)."""
    check_float("log_cosh_loss", "input", input)
    check_float("log_cosh_loss", "target", target)
    check_same_shape("log_cosh_loss", input, target)
    d = input - target
    return reduce(d + F.softplus(-2.0 * d) - math.log(2.0), "mean")


def quantile_flat_mean(input, target, qs=(0.1, 0.5, 0.9)):
    """The mean over all (N, Q) elements equals the mean over N of the mean over Q: skip .mean(-1)."""
    q = torch.tensor(qs, dtype=input.dtype)
    d = target.unsqueeze(-1) - input
    return torch.maximum(q * d, (q - 1.0) * d).mean()


def quantile_relu(input, target, qs=(0.1, 0.5, 0.9)):
    """max(q d, (q - 1) d) = q d + relu(-d): torch.maximum's backward is the slow part."""
    q = torch.tensor(qs, dtype=input.dtype)
    d = target.unsqueeze(-1) - input
    return (q * d + F.relu(-d)).mean()


# ---- distribution -----------------------------------------------------------------------------
def check_prob_amin(fn, input, target):
    """check_probability_target with torch.amin(t) instead of t.min() (same semantics, faster kernel)."""
    check_float(fn, "input", input)
    check_float(fn, "target", target)
    check_same_shape(fn, input, target)
    if not validate_args_enabled() or target.numel() == 0:
        return
    t = target.detach()
    sums = t.sum(-1, dtype=torch.float32)
    tol = max(1e-4, 4 * torch.finfo(t.dtype).eps * t.shape[-1] ** 0.5)
    if float(torch.amin(t)) < 0.0:
        raise ValueError(f"{fn}: `target` must be probabilities (>= 0)")
    if not float((sums - 1.0).abs().max()) <= tol:
        raise ValueError(f"{fn}: `target` rows must sum to 1")


def soft_ce_amin(input, target):
    check_prob_amin("soft_cross_entropy", input, target)
    return F.cross_entropy(input.reshape(-1, input.shape[-1]), target.reshape(-1, input.shape[-1]))


def kl_amin(input, target):
    check_prob_amin("kl_divergence", input, target)
    rows = F.log_softmax(input, dim=-1).reshape(-1, input.shape[-1])
    return F.kl_div(rows, target.reshape(rows.shape), reduction="batchmean")


def reverse_kl_amin(input, target, eps=1e-8):
    check_prob_amin("reverse_kl_divergence", input, target)
    logq = F.log_softmax(input, dim=-1)
    return reduce((logq.exp() * (logq - target.clamp_min(eps).log())).sum(-1), "mean")


def _no_value_check(name):
    """The torch call lossbench ends with, without any lossbench code around it."""
    calls = {
        "bce": lambda h, x, y: F.binary_cross_entropy_with_logits(x, y),
        "poisson_nll": lambda h, x, y: F.poisson_nll_loss(x, y, log_input=True),
        "gaussian_nll": lambda h, x, y: F.gaussian_nll_loss(x[..., 0], y, x[..., 1]),
    }
    return calls[name]


VARIANTS = {
    "ce": {"ce_fast": lambda h, x, y: ce_fast(x, y)},
    "label_smoothing": {"ce_fast": lambda h, x, y: ce_fast(x, y, label_smoothing=h.label_smoothing)},
    "lm_ce": {"ce_fast": lambda h, x, y: ce_fast(x, y)},
    "focal": {
        "focal_fast": lambda h, x, y: focal_fast(x, y, h.gamma),
        "focal_fast_ce": lambda h, x, y: focal_fast_ce(x, y, h.gamma),
    },
    "gce": {"gce_fast": lambda h, x, y: gce_fast(x, y, h.q)},
    "mae_prob": {
        "mae_prob_fast": lambda h, x, y: mae_prob_fast(x, y),
        "mae_prob_softmax": lambda h, x, y: mae_prob_softmax(x, y),
    },
    "nce_rce": {"nce_rce_fast": lambda h, x, y: nce_rce_fast(x, y)},
    "square": {"square_fast": lambda h, x, y: square_fast(x, y, h.k, h.M)},
    "bce": {"torch_only": _no_value_check("bce")},
    "poisson_nll": {"torch_only": _no_value_check("poisson_nll")},
    "gaussian_nll": {"torch_only": _no_value_check("gaussian_nll")},
    "squared_hinge": {
        "clamp_min_no_checks": lambda h, x, y: squared_hinge_clamp_nocheck(x, y),
        "relu": lambda h, x, y: squared_hinge_relu(x, y),
    },
    "log_cosh": {"no_abs": lambda h, x, y: log_cosh_no_abs(x, y)},
    "quantile": {
        "flat_mean": lambda h, x, y: quantile_flat_mean(x, y, h.quantiles),
        "relu_form": lambda h, x, y: quantile_relu(x, y, h.quantiles),
    },
    "soft_ce": {"amin_check": lambda h, x, p: soft_ce_amin(x, p)},
    "kl": {"amin_check": lambda h, x, p: kl_amin(x, p)},
    "reverse_kl": {"amin_check": lambda h, x, p: reverse_kl_amin(x, p)},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", help="comma-separated (default: every head with variants)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="the info sizes of heads.py instead of training sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--min-time", type=float, default=1.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    B.steady_malloc()
    sizes = B.SMALL_SIZES if args.small else B.TRAIN_SIZES
    tasks = {h.name: h.task for h in B.lossbench.list_heads()}
    names = args.heads.split(",") if args.heads else [n for n in VARIANTS if n in tasks]
    monitor = B.CpuMonitor()
    for name in names:
        case = B._build(name, tasks[name], sizes, torch.Generator().manual_seed(0))
        head, x, y = case.head, case.outputs, case.target

        def checks_off(fn=case.ours):
            with LF.validate_args(False):
                return fn()

        fns = {"baseline": case.base, "ours": case.ours, "ours_checks_off": checks_off}
        ref = case.base().detach()
        for label, variant in VARIANTS.get(name, {}).items():
            fns[label] = partial(variant, head, x, y)
            got = fns[label]().detach()
            if not torch.allclose(got, ref, rtol=1e-4, atol=1e-6):
                print(f"{name}/{label}: value {got.item()} differs from the baseline's {ref.item()}", file=sys.stderr)
                return 1
        per: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.rounds):
            samples = B._time(list(fns.values()), case.wrt, 20, args.repeats, args.min_time)
            for k, s in zip(fns, samples):
                per[k].append(statistics.median(s))
        base = statistics.median(per["baseline"])
        cells = [f"{name:15s}"]
        for k, v in per.items():
            ratios = [a / b for a, b in zip(v, per["baseline"])]
            m = statistics.median(v)
            cells.append(f"{k}={m:,.0f}us x{m / base:.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
        print("  ".join(cells), flush=True)
    others = monitor.other_cores()
    if others is not None:
        print(f"(other processes kept {others:.2f} CPU cores busy on average during this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

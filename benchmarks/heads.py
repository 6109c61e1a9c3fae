"""Speed of every registered head's loss against its torch.nn.functional equivalent.

For each head in ``lossbench.list_heads()`` this times forward + backward of
``head.loss(outputs, target)`` and of a baseline on the same inputs, in the same
loop: a torch loss where one exists ("torch loss"), otherwise a straightforward
reference written with ``torch.nn.functional`` ops in this file ("F reference").
``outputs`` is a leaf tensor, ``head(features).detach().requires_grad_()``, so the
head's projection is not timed; the exception is ``lm_ce_fused``, whose loss *is*
the projection: it is timed against the materialised ``F.cross_entropy(hidden @ W.T)``,
matmul included on both sides, gradients for the hidden states and the weight.

Method: ``torch.set_num_threads(2)``; warm-up, then ours and the baseline alternate
in one loop (the order flips every iteration) so machine noise hits both; the
median of each is reported and ``ratio = median_ours / median_baseline``, next to
the median and quartiles of the per-iteration ratio (a wide range flags a disturbed
run; such heads are re-timed, ``--retries``). glibc's malloc is told to keep freed
memory (``--malloc steady``), else page faults of large tensors land on whichever
side allocates first. At the end the script reports how many cores other processes
used meanwhile: with two threads on a shared machine, timings can be off by 10x.
Goal: every ratio <= 1.10 at training sizes. A second table ("info") repeats the runs at
N=256 to show the fixed per-call overhead in microseconds. Loss values (and
gradients) are checked against the baseline; disagreements show in ``check``.

Usage::

    python benchmarks/heads.py                    # all heads, full run
    python benchmarks/heads.py --quick            # few repeats (smoke test)
    python benchmarks/heads.py --heads mse,ce --json results.json
    python benchmarks/heads.py --unvalidated      # add a column: ours with value checks off
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working tree's lossbench, installed or not

import lossbench  # noqa: E402
from lossbench.heads import CLASS_TASKS  # noqa: E402

GOAL = 1.10
VALUE_RTOL = 1e-4
GRAD_RTOL = 1e-3
NOISY_SPREAD = 0.15  # paired IQR wider than this fraction of its median: the run was disturbed, retry
IN_FEATURES = 16  # the projection is not timed, so its width does not matter
FUSED_HIDDEN = 64

# Sizes per task: (rows, classes). ``lm`` rows are (N, T) token grids.
TRAIN_SIZES = {
    "regression": {"n": 65536},
    "binary": {"n": 65536},
    "multiclass": {"n": 4096, "c": 100},
    "distribution": {"n": 4096, "c": 100},
    "ordinal": {"n": 4096, "c": 100},
    "lm": {"n": 8, "t": 256, "c": 1000},
}
SMALL_SIZES = {
    "regression": {"n": 256},
    "binary": {"n": 256},
    "multiclass": {"n": 256, "c": 100},
    "distribution": {"n": 256, "c": 100},
    "ordinal": {"n": 256, "c": 100},
    "lm": {"n": 1, "t": 256, "c": 1000},
}
LM_PAD = 1 / 16  # fraction of each sequence padded with ignore_index (-100), as in real batches


# --------------------------------------------------------------------------------------------
# Baselines: (kind, fn(head, outputs, target) -> loss). Hyper-parameters are the heads' defaults.
# --------------------------------------------------------------------------------------------
TORCH = "torch loss"
REF = "F reference"
A = -4.0  # log(0) of the reverse cross-entropy, the heads' default `log_zero`


def _p_y(x: Tensor, y: Tensor) -> Tensor:
    return F.softmax(x, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def _focal(head, x, y):
    ce = F.cross_entropy(x, y, reduction="none")
    p = torch.exp(-ce)
    return ((1 - p) ** head.gamma * ce).mean()


def _binary_focal(head, x, y):  # torchvision.ops.sigmoid_focal_loss
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** head.gamma)
    alpha_t = head.alpha * y + (1 - head.alpha) * (1 - y)
    return (alpha_t * loss).mean()


def _poly1(head, x, y):
    return F.cross_entropy(x, y) + head.epsilon * (1 - _p_y(x, y)).mean()


def _square(head, x, y):
    return F.mse_loss(x, F.one_hot(y, x.shape[-1]).to(x.dtype))


def _gce(head, x, y):
    return ((1 - _p_y(x, y) ** head.q) / head.q).mean()


def _sce(head, x, y):
    return head.alpha * F.cross_entropy(x, y) + head.beta * (-head.log_zero) * (1 - _p_y(x, y)).mean()


def _nce_rce(head, x, y):
    logp = F.log_softmax(x, dim=-1)
    logp_y = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    nce = logp_y / logp.sum(-1)
    rce = -head.log_zero * (1 - logp_y.exp())
    return (head.alpha * nce + head.beta * rce).mean()


def _mae_prob(head, x, y):
    return (1 - _p_y(x, y)).mean()


def _reverse_kl(head, x, p):
    logq = F.log_softmax(x, dim=-1)
    return F.kl_div(p.clamp_min(head.eps).log(), logq, reduction="batchmean", log_target=True)


def _js(head, x, p):
    logq = F.log_softmax(x, dim=-1)
    log_m = ((p + logq.exp()) * 0.5).log()
    return 0.5 * (
        F.kl_div(log_m, p, reduction="batchmean") + F.kl_div(log_m, logq, reduction="batchmean", log_target=True)
    )


def _log_cosh(head, x, y):  # the stable form of Keras/TF: d + softplus(-2d) - log 2
    d = x - y
    return (d + F.softplus(-2.0 * d) - math.log(2.0)).mean()


def _quantile(head, x, y):
    q = torch.tensor(head.quantiles, dtype=x.dtype)
    d = y.unsqueeze(-1) - x
    return torch.maximum(q * d, (q - 1) * d).mean()


def _squared_hinge(head, x, y):
    return F.relu(head.margin - (2 * y - 1) * x).square().mean()


def _coral(head, x, y):
    levels = (y.unsqueeze(-1) > torch.arange(x.shape[-1])).to(x.dtype)
    return F.binary_cross_entropy_with_logits(x, levels, reduction="none").sum(-1).mean()


def _lm_ce(head, x, y):
    return F.cross_entropy(x.reshape(-1, x.shape[-1]), y.reshape(-1))


def _lm_ce_fused(head, h, y):
    logits = h @ head.proj.weight.T
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


BASELINES: dict[str, tuple[str, Callable[..., Tensor]]] = {
    "mse": (TORCH, lambda h, x, y: F.mse_loss(x, y)),
    "mae": (TORCH, lambda h, x, y: F.l1_loss(x, y)),
    "huber": (TORCH, lambda h, x, y: F.huber_loss(x, y, delta=h.delta)),
    "smooth_l1": (TORCH, lambda h, x, y: F.smooth_l1_loss(x, y, beta=h.beta)),
    "poisson_nll": (TORCH, lambda h, x, y: F.poisson_nll_loss(x, y, log_input=True, full=h.full)),
    "gaussian_nll": (
        TORCH,
        lambda h, x, y: F.gaussian_nll_loss(x[..., 0], y, x[..., 1], full=h.full, eps=h.eps),
    ),
    "bce": (TORCH, lambda h, x, y: F.binary_cross_entropy_with_logits(x, y)),
    "ce": (TORCH, lambda h, x, y: F.cross_entropy(x, y)),
    "label_smoothing": (TORCH, lambda h, x, y: F.cross_entropy(x, y, label_smoothing=h.label_smoothing)),
    "kl": (TORCH, lambda h, x, p: F.kl_div(F.log_softmax(x, -1), p, reduction="batchmean")),
    "soft_ce": (TORCH, lambda h, x, p: F.cross_entropy(x, p)),
    "lm_ce": (TORCH, _lm_ce),
    "lm_ce_fused": (TORCH, _lm_ce_fused),
    "focal": (REF, _focal),
    "binary_focal": (REF, _binary_focal),
    "poly1": (REF, _poly1),
    "square": (REF, _square),
    "gce": (REF, _gce),
    "sce": (REF, _sce),
    "nce_rce": (REF, _nce_rce),
    "mae_prob": (REF, _mae_prob),
    "reverse_kl": (REF, _reverse_kl),
    "js": (REF, _js),
    "log_cosh": (REF, _log_cosh),
    "quantile": (REF, _quantile),
    "squared_hinge": (REF, _squared_hinge),
    "coral": (REF, _coral),
}


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    task: str
    shape: str
    kind: str
    ours: Callable[[], Tensor]
    base: Callable[[], Tensor]
    wrt: list[Tensor]  # what the backward differentiates against
    head: torch.nn.Module | None = None
    outputs: Tensor | None = None
    target: Tensor | None = None


def _build(name: str, task: str, sizes: dict, gen: torch.Generator) -> Case:
    size = sizes[task]
    n, c = size["n"], size.get("c")
    fused = name == "lm_ce_fused"
    kwargs = {"in_features": FUSED_HIDDEN if fused else IN_FEATURES}
    if task in CLASS_TASKS:
        kwargs["num_classes"] = c
    head = lossbench.get_head(name, **kwargs)
    lead = (n, size["t"]) if task == "lm" else (n,)
    features = torch.randn(*lead, kwargs["in_features"], generator=gen)
    with torch.no_grad():
        outputs = head(features)
    outputs = outputs.detach().clone().requires_grad_()

    if task == "regression":
        target = torch.randn(n, generator=gen)
        if name == "poisson_nll":
            target = torch.poisson(torch.rand(n, generator=gen) * 4, generator=gen)
    elif task == "binary":
        target = torch.randint(0, 2, (n,), generator=gen).float()
    elif task == "multiclass" or task == "ordinal":
        k = c if task == "multiclass" else outputs.shape[-1] + 1
        target = torch.randint(0, k, (n,), generator=gen)
    elif task == "distribution":
        target = torch.softmax(2 * torch.randn(n, c, generator=gen), dim=-1)
    elif task == "lm":
        target = torch.randint(0, c, lead, generator=gen)
        pad = max(1, round(lead[1] * LM_PAD))
        target[:, -pad:] = -100
    else:
        raise ValueError(f"no inputs for task {task!r}")

    kind, fn = BASELINES[name]
    wrt = [outputs, head.proj.weight] if fused else [outputs]
    shape = "x".join(str(s) for s in outputs.shape)
    if fused:
        shape = f"{shape} @ {head.proj.weight.shape[0]}x{head.proj.weight.shape[1]}"
    return Case(
        name=name,
        task=task,
        shape=shape,
        kind=kind,
        ours=lambda: head.loss(outputs, target),
        base=lambda: fn(head, outputs, target),
        wrt=wrt,
        head=head,
        outputs=outputs,
        target=target,
    )


# --------------------------------------------------------------------------------------------
# Checks and timing
# --------------------------------------------------------------------------------------------
def steady_malloc() -> str:
    """Keep freed memory in glibc's heap instead of returning it to the OS.

    With glibc's defaults, blocks above a (moving) threshold are mmap'ed and unmapped
    on free, so a (4096, 100) tensor may or may not pay ~400 page faults depending on
    what ran just before: in an interleaved loop that noise lands on whichever side
    allocates at the wrong moment (F.cross_entropy's backward on (4096, 100) took
    425 us with glibc's defaults and 235 us with fixed thresholds, interleaved the
    same way). Fixing the thresholds, as a caching allocator would, removes it.
    Returns a description for the report.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "default allocator"
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):
        ok = False
    return "glibc malloc with mmap_threshold=32MiB, trim_threshold=1GiB" if ok else "default allocator"


def _rel(a: Tensor, b: Tensor) -> float:
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def _check(case: Case) -> str:
    """'ok', or what disagrees with the baseline."""
    problems = []
    with torch.no_grad():
        ours, base = case.ours().detach(), case.base().detach()
    if ours.shape != base.shape:
        return f"shape {tuple(ours.shape)} vs {tuple(base.shape)}"
    if not torch.isfinite(ours).all() or not torch.isfinite(base).all():
        problems.append(f"non-finite ({ours.item():.4g} vs {base.item():.4g})")
    else:
        rel = _rel(ours, base)
        if rel > VALUE_RTOL:
            problems.append(f"value rel diff {rel:.1e} ({ours.item():.6g} vs {base.item():.6g})")
    g_ours = torch.autograd.grad(case.ours(), case.wrt)
    g_base = torch.autograd.grad(case.base(), case.wrt)
    worst = max(_rel(a, b) for a, b in zip(g_ours, g_base))
    if worst > GRAD_RTOL:
        problems.append(f"grad rel diff {worst:.1e}")
    return "; ".join(problems) if problems else "ok"


def _step(fn: Callable[[], Tensor], wrt: list[Tensor]) -> int:
    start = time.perf_counter_ns()
    torch.autograd.grad(fn(), wrt)
    return time.perf_counter_ns() - start


def _time(
    fns: list[Callable[[], Tensor]], wrt: list[Tensor], warmup: int, repeats: int, min_time: float
) -> list[list[float]]:
    """Per-iteration microseconds of each fn (forward + backward), interleaved in one loop."""
    for _ in range(warmup):
        for fn in fns:
            _step(fn, wrt)
    samples: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start, i = time.perf_counter(), 0
        while i < repeats or (time.perf_counter() - start < min_time and i < 50 * max(repeats, 1)):
            for k in order if i % 2 == 0 else reversed(order):
                samples[k].append(_step(fns[k], wrt) / 1000.0)
            i += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


class CpuMonitor:
    """CPU time used by *other* processes while the benchmark runs (Linux /proc/stat), to flag a noisy run."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system

    def other_cores(self) -> float | None:
        """Average number of cores other processes kept busy since the start (None if unknown)."""
        end = self._sample()
        if self.start is None or end is None or end[0] - self.start[0] < 1.0:
            return None
        wall = end[0] - self.start[0]
        return max(0.0, ((end[1] - self.start[1]) - (end[2] - self.start[2])) / wall)


def _quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


@dataclass
class Row:
    head: str
    task: str
    shape: str = ""
    kind: str = ""
    ours_us: float = float("nan")
    base_us: float = float("nan")
    ratio: float = float("nan")
    paired_p50: float = float("nan")  # quartiles of ours_i / baseline_i over the interleaved iterations
    paired_p25: float = float("nan")
    paired_p75: float = float("nan")
    attempts: int = 0
    unvalidated_us: float | None = None
    unvalidated_ratio: float | None = None
    check: str = ""
    error: str = ""
    repeats: int = 0


def run_case(name: str, task: str, sizes: dict, args: argparse.Namespace, seed: int) -> Row:
    row = Row(head=name, task=task)
    if name not in BASELINES:
        row.error = "no baseline defined in benchmarks/heads.py"
        return row
    try:
        gen = torch.Generator().manual_seed(seed)
        case = _build(name, task, sizes, gen)
        row.shape, row.kind = case.shape, case.kind
        row.check = _check(case)
        fns = [case.ours, case.base]
        if args.unvalidated:

            def unvalidated(fn=case.ours):
                with lossbench.functional.validate_args(False):
                    return fn()

            fns.append(unvalidated)
        best = None
        for attempt in range(1 + args.retries):
            row.attempts = attempt + 1
            samples = _time(fns, case.wrt, args.warmup, args.repeats, args.min_time)
            paired = [a / b for a, b in zip(samples[0], samples[1])]
            p25, p75 = _quantiles(paired)
            spread = (p75 - p25) / statistics.median(paired)
            if best is None or spread < best[0]:
                best = (spread, samples, paired, p25, p75)
            if spread <= NOISY_SPREAD:
                break
        _, samples, paired, row.paired_p25, row.paired_p75 = best
        row.paired_p50 = statistics.median(paired)
        times = [statistics.median(s) for s in samples]
        row.repeats = len(samples[0])
        row.ours_us, row.base_us = times[0], times[1]
        row.ratio = times[0] / times[1]
        if args.unvalidated:
            row.unvalidated_us, row.unvalidated_ratio = times[2], times[2] / times[1]
    except Exception as exc:  # one broken head must not hide the others
        row.error = f"{type(exc).__name__}: {exc}"
        if args.verbose:
            traceback.print_exc()
    return row


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def _fmt_us(us: float) -> str:
    return "-" if us != us else (f"{us:,.0f}" if us >= 100 else f"{us:.1f}")


def _table(header: list[str], rows: list[list[str]]) -> str:
    right = {i for i, h in enumerate(header) if " us" in h or h.startswith("ratio") or h.endswith("us")}
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            + " |"
        )

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def training_table(rows: list[Row], unvalidated: bool) -> str:
    header = ["head", "task", "shape", "baseline kind", "ours us", "baseline us", "ratio", "paired p50 [p25-p75]"]
    if unvalidated:
        header += ["ours us (checks off)", "ratio (checks off)"]
    header += ["goal", "check"]
    out = []
    for r in rows:
        if r.error:
            cells = [r.head, r.task, r.shape or "-", r.kind or "-", "-", "-", "-", "-"]
            cells += ["-", "-"] if unvalidated else []
            cells += ["-", f"ERROR {r.error}" if not r.error.startswith("no baseline") else r.error]
        else:
            cells = [
                r.head,
                r.task,
                r.shape,
                r.kind,
                _fmt_us(r.ours_us),
                _fmt_us(r.base_us),
                f"{r.ratio:.2f}",
                f"{r.paired_p50:.2f} [{r.paired_p25:.2f}-{r.paired_p75:.2f}]",
            ]
            if unvalidated:
                cells += [_fmt_us(r.unvalidated_us), f"{r.unvalidated_ratio:.2f}"]
            cells += ["ok" if r.ratio <= GOAL else "OVER", r.check if r.check == "ok" else f"WARNING {r.check}"]
        out.append(cells)
    return _table(header, out)


def small_table(rows: list[Row]) -> str:
    header = ["head", "task", "shape", "baseline kind", "ours us", "baseline us", "overhead us", "ratio"]
    out = []
    for r in rows:
        if r.error:
            out.append([r.head, r.task, r.shape or "-", r.kind or "-", "-", "-", "-", "-"])
        else:
            out.append(
                [
                    r.head,
                    r.task,
                    r.shape,
                    r.kind,
                    _fmt_us(r.ours_us),
                    _fmt_us(r.base_us),
                    f"{r.ours_us - r.base_us:+.1f}",
                    f"{r.ratio:.2f}",
                ]
            )
    return _table(header, out)


def _sizes_line(sizes: dict) -> str:
    parts = []
    for task, s in sizes.items():
        if task == "lm":
            parts.append(f"lm N={s['n']} T={s['t']} V={s['c']} (fused: D={FUSED_HIDDEN})")
        elif "c" in s:
            parts.append(f"{task} N={s['n']} C={s['c']}")
        else:
            parts.append(f"{task} N={s['n']}")
    return "; ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, no time budget (smoke test)")
    parser.add_argument("--heads", help="comma-separated head names (default: every registered head)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, help="timed iterations per head (default 200; 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed iterations first (default 20; 1 with --quick)")
    parser.add_argument(
        "--min-time", type=float, help="keep iterating until this many seconds per head (default 1.0; 0 with --quick)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument(
        "--retries",
        type=int,
        help=f"re-time a head whose paired ratios spread over {NOISY_SPREAD:.0%} (default 2; 0 with --quick)",
    )
    parser.add_argument(
        "--malloc",
        choices=("steady", "default"),
        default="steady",
        help="steady (default): fix glibc's mmap/trim thresholds so page faults do not add noise; default: leave them",
    )
    parser.add_argument("--no-small", action="store_true", help="skip the small-size (info) table")
    parser.add_argument(
        "--unvalidated", action="store_true", help="also time ours with lossbench's value checks off (a column)"
    )
    parser.add_argument("--strict", action="store_true", help=f"exit 1 if a ratio is over {GOAL} or a check fails")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of heads that fail")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 200
    if args.warmup is None:
        args.warmup = 1 if args.quick else 20
    if args.min_time is None:
        args.min_time = 0.0 if args.quick else 1.0
    if args.retries is None:
        args.retries = 0 if args.quick else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    allocator = steady_malloc() if args.malloc == "steady" else "default allocator"
    monitor = CpuMonitor()
    heads = {h.name: h.task for h in lossbench.list_heads()}
    if args.heads:
        wanted = [n.strip() for n in args.heads.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in heads]
        if unknown:
            print(f"unknown head(s): {', '.join(unknown)}; known: {', '.join(heads)}", file=sys.stderr)
            return 2
        heads = {n: heads[n] for n in wanted}

    print(
        f"# lossbench heads: loss forward+backward vs torch.nn.functional\n\n"
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"{allocator}; "
        f"warm-up {args.warmup}, >= {args.repeats} interleaved repeats"
        + (f" and >= {args.min_time:g} s" if args.min_time else "")
        + " per head; medians.\n"
    )
    print(f"## Training sizes — goal: every ratio (median ours / median baseline) <= {GOAL:.2f}\n")
    print(
        f"Sizes: {_sizes_line(TRAIN_SIZES)}. Times are medians of forward+backward; ratio = median ours / median "
        "baseline; paired = median and quartiles of the per-iteration ratio ours_i / baseline_i (a wide range "
        f"means a disturbed run: a head whose range exceeds {NOISY_SPREAD:.0%} of its median is re-timed up to "
        f"{args.retries} more times and the steadiest run kept).\n",
        flush=True,
    )
    rows = [run_case(n, t, TRAIN_SIZES, args, seed=i) for i, (n, t) in enumerate(heads.items())]
    print(training_table(rows, args.unvalidated))
    timed = [r for r in rows if not r.error]
    over = [r.head for r in timed if r.ratio > GOAL]
    bad = [r.head for r in timed if r.check != "ok"]
    print(
        f"\n{len(timed)} heads timed, {len(over)} over {GOAL:.2f}"
        + (f" ({', '.join(over)})" if over else "")
        + (f"; values disagree: {', '.join(bad)}" if bad else ""),
        flush=True,
    )

    small: list[Row] = []
    if not args.no_small:
        print("\n## Small sizes (info only, no goal): fixed per-call overhead\n")
        print(f"Sizes: {_sizes_line(SMALL_SIZES)}. overhead us = ours us - baseline us.\n", flush=True)
        small = [run_case(n, t, SMALL_SIZES, args, seed=i) for i, (n, t) in enumerate(heads.items())]
        print(small_table(small))

    others = monitor.other_cores()
    if others is not None:
        note = f"\nOther processes kept {others:.2f} of {os.cpu_count()} CPU cores busy on average during this run"
        if others > 0.25:
            note += ": the machine was shared, timings are noisy (check the paired ranges; rerun on a quiet machine)"
        print(note + ".")

    if args.json:
        payload = {
            "other_processes_cores": others,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "allocator": allocator,
            "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(),
            "goal_ratio": GOAL,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "min_time_s": args.min_time,
            "training_sizes": TRAIN_SIZES,
            "small_sizes": SMALL_SIZES,
            "training": [asdict(r) for r in rows],
            "small": [asdict(r) for r in small],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")

    errors = [r for r in rows + small if r.error and not r.error.startswith("no baseline")]
    if errors:
        print(f"\n{len(errors)} run(s) failed: " + ", ".join(sorted({r.head for r in errors})), file=sys.stderr)
        return 1
    if args.strict and (over or bad):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``LossHeadTester``: the contract every head must meet, as checks a head author can run."""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import cast

import torch
from torch import Tensor

from lossbench.heads.base import CLASS_TASKS, TASKS, LossHead

CHECKS = (
    "contract",
    "gradcheck",
    "reductions",
    "bf16",
    "bad_shapes",
    "bad_targets",
    "state_dict",
    "determinism",
    "reference",
)
"""Names of the checks, in the order :func:`check_head` runs them."""

TargetFn = Callable[[LossHead, Tensor, torch.Generator], Tensor]
ReferenceFn = Callable[[Tensor, Tensor], Tensor]


def default_target(head: LossHead, outputs: Tensor, generator: torch.Generator) -> Tensor:
    """A valid random target for ``outputs`` of ``head``, chosen by the head's task.

    The target's shape is the shape of ``head.predict(outputs)`` (one value or class
    per position), except for distribution heads, whose targets are probability
    vectors of the outputs' shape. Regression targets are in [0, 3) (valid counts too).
    """
    with torch.no_grad():
        shape = head.predict(outputs).shape
        if head.task == "regression":
            return 3.0 * torch.rand(shape, generator=generator, dtype=torch.float64).to(outputs.dtype)
        if head.task == "binary":
            return torch.randint(0, 2, shape, generator=generator).to(outputs.dtype)
        if head.task == "distribution":
            logits = torch.randn(outputs.shape, generator=generator, dtype=torch.float64)
            return torch.softmax(logits, dim=-1).to(outputs.dtype)
        return torch.randint(0, head.num_classes, shape, generator=generator)


class LossHeadTester:
    """Runs the lossbench head contract on one head.

    Args:
        head: the head to check (it is copied, never modified).
        reference: optional ``reference(outputs, target) -> loss`` to agree with, in float64.
        make_target: optional ``make_target(head, outputs, generator) -> target``; defaults to :func:`default_target`.
        batch_shape: leading shape of the features; defaults to (6,), or (2, 3) for ``lm`` heads.
        seed: seed of every random input, so a failure reproduces.

    Example:
        >>> from lossbench import get_head
        >>> from lossbench.testing import LossHeadTester
        >>> LossHeadTester(get_head("focal", in_features=8, num_classes=4)).run("gradcheck")
    """

    def __init__(
        self,
        head: LossHead,
        *,
        reference: ReferenceFn | None = None,
        make_target: TargetFn | None = None,
        batch_shape: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(head, LossHead):
            raise TypeError(f"LossHeadTester: `head` must be a lossbench.LossHead instance, got {type(head).__name__}")
        self.head = copy.deepcopy(head).eval()
        self.label = f"{type(head).__name__}({head.name!r})" if head.name else type(head).__name__
        self.reference = reference
        self.make_target = make_target or default_target
        self.batch_shape = tuple(batch_shape) if batch_shape is not None else ((2, 3) if head.task == "lm" else (6,))
        self.seed = seed

    # -- helpers -------------------------------------------------------------------------------
    def _generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def inputs(self, dtype: torch.dtype = torch.float64) -> tuple[LossHead, Tensor, Tensor]:
        """A copy of the head in ``dtype``, features and a valid target (same every call)."""
        head = copy.deepcopy(self.head).to(dtype)
        gen = self._generator()
        features = torch.randn(*self.batch_shape, head.in_features, generator=gen, dtype=torch.float64).to(dtype)
        with torch.no_grad():
            outputs = head(features)
        target = self.make_target(head, outputs, gen)
        return head, features, target

    def _fail(self, check: str, message: str) -> AssertionError:
        return AssertionError(f"{self.label} fails the {check!r} check: {message}")

    def _supports(self, reduction: str) -> bool:
        return reduction in getattr(self.head, "reductions", ("mean", "sum", "none"))

    # -- checks --------------------------------------------------------------------------------
    def check_contract(self) -> None:
        """Task kind, scalar loss, named terms that add up, predictions of the right shape and range."""
        head, features, target = self.inputs()
        if head.task not in TASKS:
            raise self._fail("contract", f"task {head.task!r} is not one of {TASKS}")
        if head.task in CLASS_TASKS and not isinstance(getattr(head, "num_classes", None), int):
            raise self._fail("contract", f"a {head.task} head must set an int `num_classes`")
        outputs = head(features)
        loss, terms = head.compute(outputs, target)
        if not isinstance(loss, Tensor) or loss.dim() != 0 or not torch.isfinite(loss):
            raise self._fail("contract", f"head.loss must return a finite scalar tensor, got {loss!r}")
        if not torch.equal(head.loss(outputs, target), loss):
            raise self._fail("contract", "head.loss and head.compute disagree")
        if terms:
            if any(not isinstance(v, Tensor) or v.dim() != 0 for v in terms.values()):
                raise self._fail("contract", f"named terms must be scalar tensors, got {terms}")
            total = cast(Tensor, sum(t.detach() for t in terms.values()))  # terms is not empty
            if not torch.allclose(total, loss.detach(), rtol=1e-9, atol=1e-12):
                raise self._fail(
                    "contract",
                    f"named terms {sorted(terms)} sum to {float(total)}, not the loss {float(loss.detach())}",
                )
        pred = head.predict(outputs)
        if head.task != "distribution" and pred.shape != target.shape:
            raise self._fail("contract", f"predict gives shape {tuple(pred.shape)}, targets have {tuple(target.shape)}")
        if head.task != "regression":
            proba = head.predict_proba(outputs)
            if not bool(((proba >= 0) & (proba <= 1)).all()):
                raise self._fail("contract", "predict_proba must return probabilities in [0, 1]")
            if head.task != "binary" and not torch.allclose(proba.sum(-1), torch.ones_like(proba.sum(-1)), atol=1e-5):
                raise self._fail("contract", "predict_proba rows must sum to 1")
        loss.backward()
        missing = [n for n, p in head.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        if missing:
            raise self._fail("contract", f"parameters without a finite gradient after backward: {missing}")

    def check_gradcheck(self) -> None:
        """Float64 ``torch.autograd.gradcheck`` of the loss through the head, w.r.t. the features."""
        head, features, target = self.inputs(torch.float64)
        features.requires_grad_(True)
        try:
            ok = torch.autograd.gradcheck(
                lambda f: head.loss(head(f), target), (features,), eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=True
            )
        except RuntimeError as exc:
            raise self._fail("gradcheck", str(exc).splitlines()[0]) from exc
        if not ok:
            raise self._fail("gradcheck", "analytical and numerical gradients differ")

    def check_reductions(self) -> None:
        """``none`` gives one loss per position; ``sum`` and ``mean`` agree with it."""
        head, features, target = self.inputs(torch.float64)
        with torch.no_grad():
            self._check_reductions(head, head(features), target)

    def _check_reductions(self, head: LossHead, outputs: Tensor, target: Tensor) -> None:
        mean, total = head.loss(outputs, target, "mean"), head.loss(outputs, target, "sum")
        positions = head.predict(outputs).shape if head.task != "distribution" else outputs.shape[:-1]
        if self._supports("none"):
            each = head.loss(outputs, target, "none")
            if each.shape != positions:
                raise self._fail(
                    "reductions", f"reduction='none' gives shape {tuple(each.shape)}, expected {tuple(positions)}"
                )
            if not torch.allclose(each.sum(), total, rtol=1e-9, atol=1e-12):
                raise self._fail("reductions", f"sum {float(total)} != sum of 'none' {float(each.sum())}")
            if not torch.allclose(each.mean(), mean, rtol=1e-9, atol=1e-12):
                raise self._fail("reductions", f"mean {float(mean)} != mean of 'none' {float(each.mean())}")
        elif not torch.allclose(mean * math.prod(positions), total, rtol=1e-9, atol=1e-12):
            raise self._fail(
                "reductions", f"mean {float(mean)} x {math.prod(positions)} positions != sum {float(total)}"
            )
        try:
            head.loss(outputs, target, "average")
        except ValueError as exc:
            if "reduction" not in str(exc):
                raise self._fail("reductions", f"unknown reduction error does not name `reduction`: {exc}") from exc
        else:
            raise self._fail("reductions", "an unknown reduction 'average' was accepted")

    def check_bf16(self, tolerance: float = 1e-2) -> None:
        """Under CPU bf16 autocast (Lightning's "bf16-mixed") the loss is finite and within ``tolerance`` of fp32."""
        head, features, target = self.inputs(torch.float32)
        reference = head.loss(head(features), target).detach()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = head(features)
            loss = head.loss(outputs, target)
        loss.backward()
        loss = loss.detach()
        if not torch.isfinite(loss):
            raise self._fail("bf16", f"loss is not finite under bf16 autocast: {float(loss)}")
        gap = abs(float(loss) - float(reference))
        if gap > tolerance * max(1.0, abs(float(reference))):
            raise self._fail("bf16", f"bf16 loss {float(loss):.6f} is {gap:.2e} from fp32 {float(reference):.6f}")
        bad = [n for n, p in head.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        if bad:
            raise self._fail("bf16", f"non-finite gradients under bf16 autocast: {bad}")

    def _expect_error(self, check: str, what: str, fn: Callable[[], object], words: Sequence[str]) -> None:
        try:
            fn()
        except (ValueError, TypeError) as exc:
            text = str(exc).lower()
            missing = [w for w in words if w not in text]
            if missing:
                raise self._fail(check, f"{what}: the error does not mention {missing}: {exc}") from exc
        else:
            raise self._fail(check, f"{what} was accepted silently")

    def check_bad_shapes(self) -> None:
        """Targets or features of the wrong shape raise an error naming them; nothing broadcasts."""
        head, features, target = self.inputs()
        outputs = head(features)
        self._expect_error(
            "bad_shapes",
            "a target with an extra trailing dimension",
            lambda: head.loss(outputs, target.unsqueeze(-1)),
            ["target", "shape"],
        )
        self._expect_error(
            "bad_shapes",
            "a target with one more row",
            lambda: head.loss(outputs, torch.cat([target, target[:1]])),
            ["target", "shape"],
        )
        wrong = torch.randn(*self.batch_shape, head.in_features + 1, dtype=torch.float64)
        self._expect_error(
            "bad_shapes", "features of the wrong width", lambda: head(wrong), ["features", str(head.in_features)]
        )

    def check_bad_targets(self) -> None:
        """Targets out of range or of the wrong kind raise an error naming ``target``."""
        head, features, target = self.inputs()
        outputs = head(features)
        bad: list[tuple[str, Tensor]] = []
        if head.task in CLASS_TASKS and head.task != "distribution":
            bad.append(("a class index equal to num_classes", target.clone().fill_(head.num_classes)))
            bad.append(("float class targets", target.to(torch.float64)))
        elif head.task == "binary":
            bad.append(("a binary target of 2", target.clone().fill_(2.0)))
        elif head.task == "distribution":
            bad.append(("probability targets summing to 2", target * 2.0))
            bad.append(("integer targets for a distribution head", target.argmax(-1)))
        elif head.task == "regression":
            bad.append(("complex targets", target.to(torch.complex128)))
        for what, value in bad:
            self._expect_error("bad_targets", what, partial(head.loss, outputs, value), ["target"])

    def check_state_dict(self) -> None:
        """A copy with scrambled weights that loads the state dict (through torch.save, weights_only) matches."""
        head, features, target = self.inputs()
        buffer = io.BytesIO()
        torch.save(head.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        clone = copy.deepcopy(head)
        with torch.no_grad():
            for p in clone.parameters():
                p.add_(1.0)
        clone.load_state_dict(state)
        a, b = head(features), clone(features)
        if not torch.equal(a, b) or not torch.equal(head.loss(a, target), clone.loss(b, target)):
            raise self._fail("state_dict", "outputs or loss differ after a state_dict round trip")

    def check_determinism(self) -> None:
        """The same inputs give bitwise the same loss and gradients."""
        runs: list[tuple[Tensor, Tensor | None, list[Tensor | None]]] = []
        for _ in range(2):
            head, features, target = self.inputs()
            features.requires_grad_(True)
            loss = head.loss(head(features), target)
            loss.backward()
            runs.append((loss.detach(), features.grad, [p.grad for p in head.parameters()]))
        (l1, g1, p1), (l2, g2, p2) = runs
        if not (torch.equal(l1, l2) and _same_grad(g1, g2) and all(_same_grad(a, b) for a, b in zip(p1, p2))):
            raise self._fail("determinism", "two identical calls gave different losses or gradients")

    def check_reference(self, atol: float = 1e-6) -> None:
        """Agreement in float64 with the ``reference`` given to the tester (skipped without one)."""
        if self.reference is None:
            return
        head, features, target = self.inputs(torch.float64)
        outputs = head(features)
        ours, ref = head.loss(outputs, target), self.reference(outputs, target)
        if not torch.allclose(ours, torch.as_tensor(ref, dtype=ours.dtype), rtol=atol, atol=atol):
            raise self._fail("reference", f"loss {float(ours):.10f} != reference {float(ref):.10f}")

    # -- running ---------------------------------------------------------------------------------
    def run(self, check: str) -> None:
        """Run one check by name (see :data:`CHECKS`); raises AssertionError on failure."""
        if check not in CHECKS:
            raise ValueError(f"LossHeadTester.run: `check` must be one of {CHECKS}, got {check!r}")
        getattr(self, f"check_{check}")()

    def run_all(self) -> None:
        for check in CHECKS:
            self.run(check)


def _same_grad(a: Tensor | None, b: Tensor | None) -> bool:
    """Bitwise equal gradients; ``None`` (a frozen or unused parameter) equals only ``None``."""
    return a is None and b is None or (a is not None and b is not None and torch.equal(a, b))


def check_head(
    head: LossHead,
    *,
    reference: ReferenceFn | None = None,
    make_target: TargetFn | None = None,
    batch_shape: Sequence[int] | None = None,
    seed: int = 0,
) -> None:
    """Check ``head`` against the whole lossbench contract; raise AssertionError naming the failed check.

    Runs float64 gradcheck, reductions, bf16 autocast agreement, errors on bad shapes and
    targets, a state_dict round trip, determinism and, if given, agreement with ``reference``.

    Example:
        >>> import torch.nn.functional as F
        >>> from lossbench import get_head
        >>> from lossbench.testing import check_head
        >>> check_head(get_head("mse", in_features=8), reference=lambda out, y: F.mse_loss(out, y))
    """
    LossHeadTester(head, reference=reference, make_target=make_target, batch_shape=batch_shape, seed=seed).run_all()

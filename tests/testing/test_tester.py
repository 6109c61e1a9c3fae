"""The conformance kit catches broken heads: each check fails on a head built to break it."""

import pytest
import torch
import torch.nn.functional as F

from lossbench import LossHead
from lossbench.functional import mse_loss
from lossbench.testing import CHECKS, LossHeadTester, check_head


class GoodMSE(LossHead):
    """A correct head, the base of the broken ones below."""

    task = "regression"

    def __init__(self, in_features: int = 4) -> None:
        super().__init__(in_features, 1, squeeze=True)

    def _loss(self, outputs, target, reduction):
        return mse_loss(outputs, target, reduction=reduction)


class _WrongGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.square()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x  # should be 2x


class WrongGradient(GoodMSE):
    def _loss(self, outputs, target, reduction):
        return mse_loss(_WrongGrad.apply(outputs), target, reduction=reduction)


class Broadcasting(GoodMSE):
    def _loss(self, outputs, target, reduction):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return F.mse_loss(outputs, target, reduction=reduction)


class Noisy(GoodMSE):
    def _loss(self, outputs, target, reduction):
        return mse_loss(outputs + 1e-3 * torch.rand_like(outputs), target, reduction=reduction)


class IgnoresReduction(GoodMSE):
    def _loss(self, outputs, target, reduction):
        return mse_loss(outputs, target, reduction="mean" if reduction != "none" else "none")


class Bf16Fragile(GoodMSE):
    def _loss(self, outputs, target, reduction):
        # 1000.5 - 1000 in fp32 is 0.5; a bf16 matmul rounds 1000.5 to 1000 and returns 0
        big = torch.mm(torch.full((1, 1), 1000.5), torch.ones(1, 1)).squeeze().float()
        return mse_loss(outputs, target, reduction=reduction) + big - 1000.0


class BadTerms(GoodMSE):
    def _loss(self, outputs, target, reduction):
        loss = mse_loss(outputs, target, reduction=reduction)
        return {"a": loss, "b": loss}  # fine: they sum to the loss...


class TermsDisagree(GoodMSE):
    def compute(self, outputs, target, reduction=None):
        loss, _ = super().compute(outputs, target, reduction)
        return loss, {"half": 0.5 * loss.detach()}


class SilentClassHead(LossHead):
    """Accepts float class targets by casting them: the kit must refuse that."""

    task = "multiclass"

    def __init__(self, in_features: int = 4) -> None:
        super().__init__(in_features, 3)
        self.num_classes = 3

    def _loss(self, outputs, target, reduction):
        return F.cross_entropy(outputs, target.long().clamp(0, 2), reduction=reduction)


class FrozenScale(GoodMSE):
    """A correct head with a frozen parameter: it gets no gradient (``grad`` stays None)."""

    def __init__(self, in_features: int = 4) -> None:
        super().__init__(in_features)
        self.scale = torch.nn.Parameter(torch.ones(()), requires_grad=False)

    def _loss(self, outputs, target, reduction):
        return self.scale * mse_loss(outputs, target, reduction=reduction)


def test_good_head_passes_everything():
    check_head(GoodMSE(), reference=lambda out, y: F.mse_loss(out, y))


@pytest.mark.parametrize(
    "head, check, words",
    [
        (WrongGradient(), "gradcheck", "gradcheck"),
        (Broadcasting(), "bad_shapes", "accepted silently"),
        (Noisy(), "determinism", "different"),
        (IgnoresReduction(), "reductions", "sum"),
        (Bf16Fragile(), "bf16", "bf16 loss"),
        (TermsDisagree(), "contract", "sum to"),
        (SilentClassHead(), "bad_targets", "accepted silently"),
    ],
)
def test_each_check_catches_its_defect(head, check, words):
    with pytest.raises(AssertionError, match=words) as info:
        LossHeadTester(head).run(check)
    assert check in str(info.value)


def test_terms_that_sum_to_the_loss_pass_contract():
    LossHeadTester(BadTerms()).run("contract")


def test_determinism_compares_missing_gradients():
    # a frozen parameter's grad is None on both runs: equal, not a TypeError from torch.equal(None, None)
    LossHeadTester(FrozenScale()).run("determinism")


def test_reference_disagreement_is_reported():
    tester = LossHeadTester(GoodMSE(), reference=lambda out, y: F.l1_loss(out, y))
    with pytest.raises(AssertionError, match="reference"):
        tester.run("reference")


def test_unknown_check_and_non_head_are_refused():
    with pytest.raises(ValueError, match="`check` must be one of"):
        LossHeadTester(GoodMSE()).run("speed")
    with pytest.raises(TypeError, match="`head` must be a lossbench.LossHead"):
        LossHeadTester(torch.nn.Linear(2, 2))


def test_checks_do_not_modify_the_head():
    head = GoodMSE()
    before = {k: v.clone() for k, v in head.state_dict().items()}
    LossHeadTester(head).run_all()
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())
    assert all(p.grad is None for p in head.parameters())


def test_checks_are_listed_in_order():
    assert CHECKS[0] == "contract" and "gradcheck" in CHECKS and CHECKS[-1] == "reference"

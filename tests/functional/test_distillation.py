"""Distillation losses (issue 12) against torch references, float64 gradcheck and hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from lossbench import get_head
from lossbench.functional import cross_entropy, distillation_loss, soft_target_loss

g = torch.Generator().manual_seed(0)
X = torch.randn(6, 5, generator=g, dtype=torch.float64)
T_LOGITS = torch.randn(6, 5, generator=g, dtype=torch.float64) * 2
Y = torch.randint(0, 5, (6,), generator=g)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kl_is_hintons_t_squared_kl_of_the_softened_distributions(temperature):
    p = F.softmax(T_LOGITS / temperature, -1)
    ref = F.kl_div(F.log_softmax(X / temperature, -1), p, reduction="batchmean") * temperature**2
    assert torch.allclose(soft_target_loss(X, T_LOGITS, temperature), ref, atol=1e-12)


def test_the_other_divergences_match_their_definitions():
    t = 3.0
    p, logq = F.softmax(T_LOGITS / t, -1), F.log_softmax(X / t, -1)
    q = logq.exp()
    soft_ce = -(p * logq).sum(-1).mean() * t * t
    reverse = (q * (logq - p.log())).sum(-1).mean() * t * t
    m = (p + q) / 2
    js = (0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)).mean() * t * t
    assert torch.allclose(soft_target_loss(X, T_LOGITS, t, "soft_ce"), soft_ce, atol=1e-12)
    assert torch.allclose(soft_target_loss(X, T_LOGITS, t, "reverse_kl"), reverse, atol=1e-10)
    assert torch.allclose(soft_target_loss(X, T_LOGITS, t, "js"), js, atol=1e-12)
    # soft_ce is KL plus the teacher's entropy: the same gradients
    a, b = X.clone().requires_grad_(), X.clone().requires_grad_()
    soft_target_loss(a, T_LOGITS, t, "soft_ce").backward()
    soft_target_loss(b, T_LOGITS, t, "kl").backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_the_mixture_is_alpha_ce_plus_one_minus_alpha_soft_and_the_teacher_gets_no_gradient():
    teacher, x = T_LOGITS.clone().requires_grad_(), X.clone().requires_grad_()
    got = distillation_loss(x, Y, teacher, temperature=2.0, alpha=0.3)
    want = 0.3 * F.cross_entropy(X, Y) + 0.7 * soft_target_loss(X, T_LOGITS, 2.0)
    assert torch.allclose(got, want, atol=1e-12)
    got.backward()
    assert teacher.grad is None and x.grad is not None
    assert torch.allclose(distillation_loss(X, Y, T_LOGITS, alpha=1.0), cross_entropy(X, Y))
    none = soft_target_loss(X, T_LOGITS, 2.0, reduction="none")
    assert none.shape == (6,) and torch.allclose(none.mean(), soft_target_loss(X, T_LOGITS, 2.0))


def test_gradcheck_in_float64():
    x = X.clone().requires_grad_()
    for divergence in ("kl", "soft_ce", "js", "reverse_kl"):
        assert torch.autograd.gradcheck(lambda z, d=divergence: distillation_loss(z, Y, T_LOGITS, 2.0, 0.5, d), (x,))


def test_a_student_equal_to_its_teacher_has_zero_soft_loss_and_its_gradient_points_to_the_teacher():
    assert soft_target_loss(T_LOGITS, T_LOGITS, 2.0).item() == pytest.approx(0.0, abs=1e-12)
    uniform = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    soft_target_loss(uniform, torch.tensor([[2.0, 0.0]], dtype=torch.float64), 1.0).backward()
    assert uniform.grad[0, 0] < 0 < uniform.grad[0, 1]  # descent moves toward the teacher's class 0
    # hand value: KL([e^2, 1]/(e^2 + 1) || [1/2, 1/2]) at T=1
    p = math.exp(2) / (math.exp(2) + 1)
    hand = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
    assert soft_target_loss(torch.zeros(1, 2), torch.tensor([[2.0, 0.0]]), 1.0).item() == pytest.approx(hand, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "`temperature` must be > 0, got 0.0"),
        ({"divergence": "hellinger"}, "`divergence` must be one of"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        soft_target_loss(X, T_LOGITS, **kwargs)
    with pytest.raises(ValueError, match=r"`teacher`|shape"):
        soft_target_loss(X, T_LOGITS[:, :3])
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0.0, 1.0\], got 1.5"):
        distillation_loss(X, Y, T_LOGITS, alpha=1.5)


def test_the_head_distils_in_training_and_is_cross_entropy_without_a_teacher():
    head = get_head("kd", in_features=5, num_classes=5, temperature=2.0, alpha=0.25, divergence="js").double()
    out = head(X)
    loss, terms = head.compute(out, Y, teacher=T_LOGITS)
    assert torch.allclose(loss, distillation_loss(out, Y, T_LOGITS, 2.0, 0.25, "js"), atol=1e-12)
    assert torch.allclose(terms["ce"], 0.25 * F.cross_entropy(out, Y), atol=1e-12)
    assert torch.allclose(head.loss(out, Y), F.cross_entropy(out, Y))
    with pytest.raises(ValueError, match=r"DistillationHead: `alpha` must be a number in \[0, 1\], got -0.1"):
        get_head("kd", in_features=5, num_classes=5, alpha=-0.1)
    with pytest.raises(TypeError, match="does not distil from a teacher"):
        ce = get_head("ce", in_features=5, num_classes=5)
        ce.compute(ce(X.float()), Y, teacher=T_LOGITS.float())

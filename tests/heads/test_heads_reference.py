"""Heads against torch's losses (float64), and the heads' shape and prediction contract."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossbench
from lossbench import get_head

N, T, FEAT, C = 6, 4, 5, 4
TOL = {"atol": 1e-6, "rtol": 1e-6}
REDUCTIONS = ("mean", "sum", "none")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _build(name: str, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    cls = lossbench.get_head_class(name)
    if cls.task in lossbench.heads.CLASS_TASKS:
        kwargs.setdefault("num_classes", C)
    return get_head(name, in_features=FEAT, **kwargs).double()


def _features(seed: int, *lead: int) -> torch.Tensor:
    return torch.randn(*(lead or (N,)), FEAT, generator=_gen(seed), dtype=torch.float64)


def _class_target(seed: int, *shape: int, ignored: int = 0) -> torch.Tensor:
    g = _gen(seed + 500)
    t = torch.randint(0, C, shape or (N,), generator=g)
    if ignored:
        flat = t.view(-1)
        flat[torch.randperm(flat.numel(), generator=g)[:ignored]] = -100
    return t


def _probs(seed: int, *shape: int) -> torch.Tensor:
    return torch.softmax(torch.randn(*(shape or (N, C)), generator=_gen(seed + 900), dtype=torch.float64) * 2, -1)


def _reduce(per: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]


# Each case: head name, constructor kwargs, features maker, target maker, torch reference
# reference(outputs, target, reduction) -> the loss torch computes from the same outputs.
def _ref_kl(temperature):
    def ref(out, p, reduction):
        logq = F.log_softmax(out / temperature, -1)
        scale = temperature**2
        if reduction == "mean":
            return F.kl_div(logq, p, reduction="batchmean") * scale
        if reduction == "sum":
            return F.kl_div(logq, p, reduction="sum") * scale
        return F.kl_div(logq, p, reduction="none").sum(-1) * scale

    return ref


def _ref_lm(z_loss, label_smoothing=0.0):
    def ref(out, t, reduction):
        ce = F.cross_entropy(out.reshape(-1, C), t.reshape(-1), label_smoothing=label_smoothing, reduction=reduction)
        if reduction == "none":
            ce = ce.reshape(t.shape)
        if not z_loss:
            return ce
        valid = t != -100
        lse2 = torch.logsumexp(out, -1) ** 2
        if reduction == "mean":
            return ce + z_loss * lse2[valid].mean()
        if reduction == "sum":
            return ce + z_loss * lse2[valid].sum()
        return ce + z_loss * torch.where(valid, lse2, 0.0)

    return ref


_W = [0.5, 1.0, 2.0, 1.5]

CASES = {
    "mse": (
        {},
        lambda s: _features(s),
        lambda s: torch.randn(N, generator=_gen(s), dtype=torch.float64),
        lambda o, y, r: F.mse_loss(o, y, reduction=r),
    ),
    "mae": (
        {},
        lambda s: _features(s),
        lambda s: torch.randn(N, generator=_gen(s), dtype=torch.float64),
        lambda o, y, r: F.l1_loss(o, y, reduction=r),
    ),
    "huber": (
        {"delta": 0.3},
        lambda s: _features(s),
        lambda s: torch.randn(N, generator=_gen(s), dtype=torch.float64) * 2,
        lambda o, y, r: F.huber_loss(o, y, delta=0.3, reduction=r),
    ),
    "smooth_l1": (
        {"beta": 0.4},
        lambda s: _features(s),
        lambda s: torch.randn(N, generator=_gen(s), dtype=torch.float64) * 2,
        lambda o, y, r: F.smooth_l1_loss(o, y, beta=0.4, reduction=r),
    ),
    "bce": (
        {"pos_weight": 2.5, "label_smoothing": 0.1},
        lambda s: _features(s),
        lambda s: torch.randint(0, 2, (N,), generator=_gen(s)).double(),
        lambda o, y, r: F.binary_cross_entropy_with_logits(
            o, y * 0.9 + 0.05, pos_weight=torch.tensor(2.5, dtype=torch.float64), reduction=r
        ),
    ),
    "ce": (
        {"weight": _W, "label_smoothing": 0.05},
        lambda s: _features(s),
        lambda s: _class_target(s, ignored=2),
        lambda o, t, r: F.cross_entropy(
            o, t, weight=torch.tensor(_W, dtype=torch.float64), label_smoothing=0.05, reduction=r
        ),
    ),
    "ce_tokens": (
        {},
        lambda s: _features(s, 2, T),
        lambda s: _class_target(s, 2, T, ignored=3),
        lambda o, t, r: F.cross_entropy(o.permute(0, 2, 1), t, reduction=r),
    ),
    "label_smoothing": (
        {},
        lambda s: _features(s),
        lambda s: _class_target(s),
        lambda o, t, r: F.cross_entropy(o, t, label_smoothing=0.1, reduction=r),
    ),
    "kl": (
        {"temperature": 2.0},
        lambda s: _features(s),
        lambda s: _probs(s),
        _ref_kl(2.0),
    ),
    "soft_ce": (
        {},
        lambda s: _features(s),
        lambda s: _probs(s),
        lambda o, p, r: F.cross_entropy(o, p, reduction=r),
    ),
    "gaussian_nll": (
        {"full": True},
        lambda s: _features(s),
        lambda s: torch.randn(N, generator=_gen(s), dtype=torch.float64),
        lambda o, y, r: F.gaussian_nll_loss(o[:, 0], y, o[:, 1], full=True, reduction=r),
    ),
    "poisson_nll": (
        {"full": True},
        lambda s: _features(s),
        lambda s: torch.randint(0, 6, (N,), generator=_gen(s)).double(),
        lambda o, y, r: F.poisson_nll_loss(o, y, log_input=True, full=True, reduction=r),
    ),
    "lm_ce": (
        {},
        lambda s: _features(s, 2, T),
        lambda s: _class_target(s, 2, T, ignored=3),
        _ref_lm(0.0),
    ),
    "lm_ce_zloss": (
        {"z_loss": 0.01, "label_smoothing": 0.1},
        lambda s: _features(s, 2, T),
        lambda s: _class_target(s, 2, T, ignored=3),
        _ref_lm(0.01, 0.1),
    ),
}


def _head_name(case: str) -> str:
    return {"ce_tokens": "ce", "lm_ce_zloss": "lm_ce"}.get(case, case)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_head_loss_matches_torch(case, reduction):
    kwargs, make_features, make_target, reference = CASES[case]
    head = _build(_head_name(case), seed=1, **kwargs)
    features, target = make_features(2), make_target(3)
    outputs = head(features)
    ours = head.loss(outputs, target, reduction=reduction)
    ref = reference(outputs, target, reduction)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, **TOL)
    # gradients with respect to the head's parameters agree
    params = [p for p in head.parameters() if p.requires_grad]
    up = torch.randn(ours.shape, generator=_gen(4), dtype=torch.float64)
    g_ours = torch.autograd.grad((ours * up).sum(), params, retain_graph=True)
    g_ref = torch.autograd.grad((ref * up).sum(), params)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("case", sorted(CASES))
def test_head_default_reduction_is_its_constructor_reduction(case):
    kwargs, make_features, make_target, reference = CASES[case]
    name = _head_name(case)
    for reduction in ("sum", "mean"):
        head = _build(name, seed=5, reduction=reduction, **kwargs)
        outputs = head(make_features(6))
        target = make_target(7)
        torch.testing.assert_close(head.loss(outputs, target), reference(outputs, target, reduction), **TOL)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("z_loss", [0.0, 0.02])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_fused_lm_head_matches_torch_on_its_logits(reduction, z_loss, chunk_size):
    head = _build("lm_ce_fused", seed=8, z_loss=z_loss, chunk_size=chunk_size, reduction=reduction)
    features = _features(9, 2, T).requires_grad_(True)
    target = _class_target(10, 2, T, ignored=3)
    outputs = head(features)
    assert outputs.shape == (2, T, FEAT)
    ours = head.loss(outputs, target)
    logits = head.logits(features)
    assert logits.shape == (2, T, C)
    ref = _ref_lm(z_loss)(logits, target, reduction)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-10)
    leaves = [features, head.proj.weight]
    for a, b in zip(torch.autograd.grad(ours, leaves), torch.autograd.grad(ref, leaves)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    terms = head.loss_terms(outputs, target)
    assert set(terms) == ({"ce", "z_loss"} if z_loss else set())
    proba = head.predict_proba(outputs)
    assert proba.shape == (2, T, C)
    torch.testing.assert_close(proba.sum(-1), torch.ones(2, T))


# ----------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------

REGRESSION_SQUEEZED = ["mse", "mae", "huber", "smooth_l1", "log_cosh", "poisson_nll"]
BINARY = ["bce", "binary_focal", "squared_hinge"]
MULTICLASS = ["ce", "label_smoothing", "focal", "poly1", "square", "gce", "sce", "nce_rce", "mae_prob", "kd"]
DISTRIBUTION = ["kl", "reverse_kl", "js", "soft_ce"]


def test_every_registered_builtin_head_is_covered_here():
    covered = set(REGRESSION_SQUEEZED + BINARY + MULTICLASS + DISTRIBUTION) | {
        "gaussian_nll",
        "quantile",
        "coral",
        "lm_ce",
        "lm_ce_fused",
    }
    builtin = {h.name for h in lossbench.list_heads() if h.source == "built-in"}
    assert builtin <= covered, f"heads without a shape test: {sorted(builtin - covered)}"


@pytest.mark.parametrize("name", REGRESSION_SQUEEZED + BINARY)
def test_scalar_heads_output_one_value_per_example(name):
    head = _build(name)
    assert head(_features(0)).shape == (N,)
    assert head(_features(0, 2, T)).shape == (2, T)
    assert "num_classes" not in head.__dict__


@pytest.mark.parametrize("name", MULTICLASS + DISTRIBUTION + ["lm_ce"])
def test_class_heads_output_classes_last(name):
    head = _build(name)
    assert head(_features(0)).shape == (N, C)
    assert head(_features(0, 2, T)).shape == (2, T, C)


@pytest.mark.parametrize("name", MULTICLASS + ["lm_ce"])
def test_token_level_class_losses(name):
    head = _build(name)
    outputs = head(_features(1, 2, T))
    target = _class_target(1, 2, T, ignored=2)
    loss = head.loss(outputs, target)
    assert loss.shape == () and torch.isfinite(loss)
    assert head.loss(outputs, target, reduction="none").shape == (2, T)


def test_gaussian_nll_head_outputs_mean_and_positive_variance():
    head = _build("gaussian_nll")
    features = _features(2) * 50  # large features: softplus keeps the variance positive
    out = head(features)
    assert out.shape == (N, 2)
    assert (out[:, 1] > 0).all()
    torch.testing.assert_close(head.predict(out), out[:, 0])
    with pytest.raises(ValueError, match=r"`outputs` must have shape \(\.\.\., 2\)"):
        head.loss(out[:, :1], torch.zeros(N, dtype=torch.float64))


def test_quantile_head_outputs_one_column_per_quantile():
    head = _build("quantile", quantiles=(0.1, 0.5, 0.9))
    out = head(_features(3))
    assert out.shape == (N, 3)
    torch.testing.assert_close(head.predict(out), out[:, 1])
    y = torch.randn(N, generator=_gen(3), dtype=torch.float64)
    d = y[:, None] - out
    q = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    expected = torch.maximum(q * d, (q - 1) * d).mean(-1).mean()
    torch.testing.assert_close(head.loss(out, y), expected, **TOL)
    single = _build("quantile", quantiles=0.5)
    assert single(_features(3)).shape == (N,)


def test_coral_head_outputs_k_minus_1_logits():
    head = _build("coral")
    out = head(_features(4))
    assert out.shape == (N, C - 1)
    # one shared weight vector: logit differences between tasks are the bias differences
    diffs = out[:, 1:] - out[:, :-1]
    torch.testing.assert_close(diffs, (head.bias[1:] - head.bias[:-1]).expand_as(diffs))


# ----------------------------------------------------------------------------------------------
# composite heads: named terms
# ----------------------------------------------------------------------------------------------

COMPOSITE = {
    "poly1": ({"epsilon": 2.0, "label_smoothing": 0.1}, {"ce", "poly"}),
    "sce": ({"alpha": 0.5, "beta": 1.0}, {"ce", "rce"}),
    "nce_rce": ({}, {"nce", "rce"}),
    "lm_ce": ({"z_loss": 0.05}, {"ce", "z_loss"}),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(COMPOSITE))
def test_composite_heads_expose_terms_that_sum_to_the_loss(name, reduction):
    kwargs, keys = COMPOSITE[name]
    head = _build(name, **kwargs)
    lead = (2, T) if name == "lm_ce" else (N,)
    outputs = head(_features(5, *lead))
    target = _class_target(5, *lead, ignored=2)
    terms = head.loss_terms(outputs, target, reduction=reduction)
    assert set(terms) == keys
    loss = head.loss(outputs, target, reduction=reduction)
    torch.testing.assert_close(sum(terms.values()), loss, atol=1e-12, rtol=1e-12)
    total, terms2 = head.compute(outputs, target, reduction=reduction)
    torch.testing.assert_close(total, loss, atol=0, rtol=0)
    assert set(terms2) == keys


@pytest.mark.parametrize("name", ["ce", "focal", "mse", "kl", "coral"])
def test_single_term_heads_have_no_terms(name):
    head = _build(name)
    outputs = head(_features(6))
    target = {
        "ce": _class_target(6),
        "focal": _class_target(6),
        "mse": torch.zeros(N, dtype=torch.float64),
        "kl": _probs(6),
        "coral": _class_target(6),
    }[name]
    assert head.loss_terms(outputs, target) == {}


def test_lm_head_without_z_loss_has_no_terms():
    head = _build("lm_ce")
    outputs = head(_features(7, 2, T))
    assert head.loss_terms(outputs, _class_target(7, 2, T)) == {}


# ----------------------------------------------------------------------------------------------
# predictions
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MULTICLASS + DISTRIBUTION)
def test_class_heads_predict_proba_and_predict(name):
    head = _build(name)
    outputs = head(_features(8) * 3)
    proba = head.predict_proba(outputs)
    assert proba.shape == (N, C)
    assert ((proba >= 0) & (proba <= 1)).all()
    torch.testing.assert_close(proba.sum(-1), torch.ones(N), atol=1e-6, rtol=0)
    pred = head.predict(outputs)
    assert pred.shape == (N,) and pred.dtype == torch.int64
    assert torch.equal(pred, proba.argmax(-1))


@pytest.mark.parametrize("name", BINARY)
def test_binary_heads_predict_proba_in_unit_interval(name):
    head = _build(name)
    outputs = head(_features(9) * 5)
    proba = head.predict_proba(outputs)
    assert proba.shape == (N,)
    assert ((proba >= 0) & (proba <= 1)).all()
    pred = head.predict(outputs)
    assert pred.dtype == torch.int64 and set(pred.tolist()) <= {0, 1}
    assert torch.equal(pred, (proba > 0.5).long())


def test_bce_predict_proba_is_sigmoid():
    head = _build("bce")
    outputs = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(head.predict_proba(outputs), torch.sigmoid(outputs).float())


def test_squared_hinge_predict_proba_inverts_its_minimiser():
    head = _build("squared_hinge")
    outputs = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    expected = torch.tensor([0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    torch.testing.assert_close(head.predict_proba(outputs), expected)
    wide = _build("squared_hinge", margin=2.0)
    torch.testing.assert_close(wide.predict_proba(torch.tensor([-2.0, 1.0, 4.0])), torch.tensor([0.0, 0.75, 1.0]))


@pytest.mark.parametrize("name", REGRESSION_SQUEEZED + ["gaussian_nll", "quantile"])
def test_regression_heads_predict_values_not_probabilities(name):
    head = _build(name)
    outputs = head(_features(10))
    with pytest.raises(TypeError, match="regression head"):
        head.predict_proba(outputs)
    pred = head.predict(outputs)
    assert pred.shape == (N,)
    if name == "poisson_nll":
        torch.testing.assert_close(pred, outputs.exp())


@pytest.mark.parametrize("k,M", [(1.0, 1.0), (2.0, 3.0), (1.0, 15.0)])
def test_square_head_predicts_the_top_score_and_a_softmax_without_ties(k, M):
    head = _build("square", k=k, M=M)
    outputs = head(_features(11) * 4)
    proba = head.predict_proba(outputs)
    assert proba.shape == (N, C) and (proba > 0).all()
    torch.testing.assert_close(proba.sum(-1), torch.ones(N), atol=1e-6, rtol=0)
    torch.testing.assert_close(head.predict(outputs), outputs.argmax(-1))
    torch.testing.assert_close(proba.argmax(-1), outputs.argmax(-1))
    # hand-computed: softmax(x / T) with T = M / ln(99 (C - 1)); the ideal scores M * one-hot give 0.99
    T = M / math.log(99 * (C - 1))
    torch.testing.assert_close(proba, torch.softmax(outputs.float() / T, -1))
    ideal = M * torch.eye(C)
    torch.testing.assert_close(head.predict_proba(ideal).diagonal(), torch.full((C,), 0.99))
    assert _build("square", k=k, M=M, temperature=0.5).predict_proba(ideal)[0, 0] == pytest.approx(
        math.exp(2 * M) / (math.exp(2 * M) + C - 1), rel=1e-5
    )


def test_square_head_regression_scores_below_zero_and_untrained_nll():
    """Before: scores were clipped to [0, M], so a row of negative scores became uniform and argmax picked
    class 0 (a tie), and the NLL of an untrained model was 10-17 instead of near ln C."""
    head = _build("square")
    negative = torch.tensor([[-0.5, -0.1, -0.3, -0.9, -0.2], [-0.2, -0.3, -0.05, -0.4, -0.6]])[:, :C]
    assert head.predict(negative).tolist() == negative.argmax(-1).tolist()
    assert head.predict_proba(negative).argmax(-1).tolist() == negative.argmax(-1).tolist()
    torch.manual_seed(0)
    untrained = head(
        torch.randn(256, head.proj.in_features, dtype=head.proj.weight.dtype) * 0.1
    )  # near-zero scores of a fresh projection
    target = torch.randint(0, C, (256,))
    nll = -head.predict_proba(untrained)[torch.arange(256), target].log().mean().item()
    assert math.isfinite(nll) and nll < 2 * math.log(C)  # the clipped rule gave 10-17 (p = 0 for many classes)
    with pytest.raises(ValueError, match="`temperature` must be > 0, got 0"):
        _build("square", temperature=0)


def test_coral_head_predictions():
    head = _build("coral", num_classes=5)
    out = torch.tensor([[3.0, 1.0, -1.0, -2.0], [-1.0, -2.0, -3.0, -4.0], [5.0, 4.0, 3.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(head.predict(out), torch.tensor([2, 0, 4]))
    proba = head.predict_proba(out)
    assert proba.shape == (3, 5)
    assert (proba >= 0).all()
    torch.testing.assert_close(proba.sum(-1), torch.ones(3), atol=1e-6, rtol=0)
    # rank-consistent logits: P(y = k) = sigmoid(z_{k-1}) - sigmoid(z_k)
    s = torch.sigmoid(out[0]).float()
    expected = torch.stack([1 - s[0], s[0] - s[1], s[1] - s[2], s[2] - s[3], s[3]])
    torch.testing.assert_close(proba[0], expected, atol=1e-6, rtol=1e-6)
    # from the head's own outputs: predict counts positive logits
    outputs = head(_features(12) * 3)
    torch.testing.assert_close(head.predict(outputs), (outputs > 0).sum(-1))
    torch.testing.assert_close(head.predict_proba(outputs).sum(-1), torch.ones(N), atol=1e-6, rtol=0)


def test_coral_head_loss_matches_formula():
    head = _build("coral", importance=[1.0, 0.5, 2.0])
    out = head(_features(13))
    t = _class_target(13)
    levels = (t[:, None] > torch.arange(C - 1)).double()
    imp = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    term = (F.logsigmoid(out) * levels + (F.logsigmoid(out) - out) * (1 - levels)) * imp
    torch.testing.assert_close(head.loss(out, t), -term.sum(1).mean(), **TOL)


def test_lm_head_predict_over_tokens():
    head = _build("lm_ce")
    outputs = head(_features(14, 2, T))
    proba = head.predict_proba(outputs)
    assert proba.shape == (2, T, C)
    torch.testing.assert_close(proba.sum(-1), torch.ones(2, T), atol=1e-6, rtol=0)
    assert head.predict(outputs).shape == (2, T)


# ----------------------------------------------------------------------------------------------
# heads reject what the functional rejects
# ----------------------------------------------------------------------------------------------


def test_heads_reject_bad_targets_with_named_arguments():
    mse = _build("mse")
    out = mse(_features(15))
    with pytest.raises(ValueError, match=r"`target`.*\(6,\).*\(6, 1\)"):
        mse.loss(out, torch.zeros(N, 1, dtype=torch.float64))
    ce = _build("ce")
    with pytest.raises(ValueError, match=r"`target` values.*got 9"):
        ce.loss(ce(_features(15)), torch.full((N,), 9))
    with pytest.raises(ValueError, match=r"`features` must have shape \(\.\.\., 5\)"):
        ce(torch.zeros(N, FEAT + 1, dtype=torch.float64))


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("ce", {"label_smoothing": 1.5}, "label_smoothing"),
        ("ce", {"weight": [1.0, 2.0]}, r"`weight` must have one value per class"),
        ("focal", {"gamma": -1.0}, "gamma"),
        ("gce", {"q": 0.0}, r"`q` must be in \(0.0, 1.0\]"),
        ("quantile", {"quantiles": (0.1, 1.0)}, "quantiles"),
        ("huber", {"delta": 0.0}, "delta"),
        ("kl", {"temperature": 0.0}, "temperature"),
        ("bce", {"label_smoothing": -0.1}, "label_smoothing"),
        ("lm_ce", {"z_loss": -1.0}, "z_loss"),
    ],
)
def test_heads_validate_constructor_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _build(name, **kwargs)

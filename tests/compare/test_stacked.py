"""One optimizer step for all members (issue 24 item 2): StackedAdamW / StackedSGD against torch's own AdamW / SGD
run on each member's slice alone, with that member's rate, decay, betas or momentum, skipping the steps it skips."""

from __future__ import annotations

import pytest
import torch

from lossbench.compare.execution.stacked import StackedAdamW, StackedSGD, stacked_group

K = 4
SHAPES = [(K, 5, 3), (K, 7)]
STEPPING = [[True] * K, [True, False, True, True], [False] * K, [True, True, False, True], [True] * K]


def _run(kind, dtype, settings):
    steps = len(STEPPING)
    torch.manual_seed(0)
    leaves = [torch.nn.Parameter(torch.randn(*shape, dtype=dtype)) for shape in SHAPES]
    head = torch.nn.Parameter(torch.randn(3, dtype=dtype))  # an ordinary group beside the stacked one
    alone = [[torch.nn.Parameter(leaf.detach()[i].clone()) for leaf in leaves] for i in range(K)]
    lrs = [[0.01 * (i + 1) * (1 + 0.1 * t) for i in range(K)] for t in range(steps)]  # per member, per step
    if kind == "adamw":
        group = stacked_group(leaves, settings["wd"], betas=settings["betas"])
        opt = StackedAdamW([group, {"params": [head], "lr": 0.05}])
        refs = [
            torch.optim.AdamW(alone[i], lr=lrs[0][i], weight_decay=settings["wd"][i], betas=settings["betas"][i])
            for i in range(K)
        ]
        head_ref = torch.optim.AdamW([torch.nn.Parameter(head.detach().clone())], lr=0.05)
    else:
        group = stacked_group(leaves, settings["wd"], momentum=settings["momentum"], nesterov=settings["nesterov"])
        opt = StackedSGD([group, {"params": [head], "lr": 0.05}])
        refs = [
            torch.optim.SGD(
                alone[i],
                lr=lrs[0][i],
                weight_decay=settings["wd"][i],
                momentum=settings["momentum"][i],
                nesterov=settings["nesterov"][i],
            )
            for i in range(K)
        ]
        head_ref = torch.optim.SGD([torch.nn.Parameter(head.detach().clone())], lr=0.05)
    for t in range(steps):
        grads = [torch.randn(*shape, dtype=dtype) for shape in SHAPES]
        head_grad = torch.randn(3, dtype=dtype)
        for leaf, grad in zip(leaves, grads):
            leaf.grad = grad.clone()
        head.grad = head_grad.clone()
        opt.set_members(lrs[t], STEPPING[t])
        opt.step()
        for i in range(K):
            if STEPPING[t][i]:  # a member that does not step: its optimizer is not called (a skipped step)
                for p, grad in zip(alone[i], grads):
                    p.grad = grad[i].clone()
                refs[i].param_groups[0]["lr"] = lrs[t][i]
                refs[i].step()
        head_ref.param_groups[0]["params"][0].grad = head_grad.clone()
        head_ref.step()
    return leaves, alone, head, head_ref.param_groups[0]["params"][0]


SETTINGS = {
    "adamw": {"wd": [0.0, 0.01, 0.1, 0.05], "betas": [(0.9, 0.999), (0.8, 0.99), (0.95, 0.9), (0.9, 0.999)]},
    "sgd": {"wd": [0.0, 0.01, 0.0, 0.1], "momentum": [0.0, 0.9, 0.5, 0.9], "nesterov": [False, False, True, True]},
}


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_each_members_slice_steps_as_torchs_optimizer_steps_it_alone_float64(kind):
    leaves, alone, head, head_alone = _run(kind, torch.float64, SETTINGS[kind])
    for j, leaf in enumerate(leaves):
        for i in range(K):
            torch.testing.assert_close(leaf.detach()[i], alone[i][j].detach(), rtol=0, atol=1e-13)
    torch.testing.assert_close(head.detach(), head_alone.detach(), rtol=0, atol=0)  # the ordinary group: torch's


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_float32_agrees_to_float32_rounding(kind):
    leaves, alone, *_ = _run(kind, torch.float32, SETTINGS[kind])
    for j, leaf in enumerate(leaves):
        for i in range(K):
            torch.testing.assert_close(leaf.detach()[i], alone[i][j].detach(), rtol=1e-6, atol=1e-6)


def test_state_survives_a_state_dict_round_trip():
    leaf = torch.nn.Parameter(torch.randn(K, 3, dtype=torch.float64))
    opt = StackedAdamW([stacked_group([leaf], [0.0] * K, betas=[(0.9, 0.999)] * K)])
    leaf.grad = torch.randn(K, 3, dtype=torch.float64)
    opt.set_members([0.1] * K, [True, False, True, True])
    opt.step()
    again = StackedAdamW([stacked_group([leaf], [0.0] * K, betas=[(0.9, 0.999)] * K)])
    again.load_state_dict(opt.state_dict())
    assert again.state[leaf]["step"].tolist() == [1.0, 0.0, 1.0, 1.0]
    torch.testing.assert_close(again.state[leaf]["exp_avg"], opt.state[leaf]["exp_avg"])


def test_a_group_whose_parameters_lack_the_members_is_refused():
    with pytest.raises(ValueError, match=r"every parameter must have the 4 members along dimension 0, got shape"):
        stacked_group([torch.zeros(3, 2)], [0.0] * K, betas=[(0.9, 0.999)] * K)

"""One optimizer step for every member of an array: AdamW and SGD over stacked parameters.

A stacked parameter holds one slice per member along its first dimension (the array's backbone: one leaf per
parameter name, HFTA's layout). Its update is the update torch's AdamW (SGD) gives each member's slice alone, with
that member's learning rate, weight decay, betas (momentum, nesterov) and step count, computed for all members at
once: a fixed number of tensor operations per parameter, whatever the number of members, and no host
synchronisation. A member that does not step (its step skipped by its NaN policy, or failed) is masked: its slice,
moments and step count stay as they are, as a sequential run's optimizer leaves a step it skips.

The array's other parameters (the heads, one set per member) are in ordinary groups, which the torch optimizer
these classes extend updates as usual. Before each step the array tells the optimizer each member's learning rate
and whether it steps (:meth:`StackedStep.set_members`); weight decay and betas (momentum, nesterov) are the
members' own, in the stacked group (:func:`stacked_group`).

Example (two members with their own learning rates; the second does not step):
    >>> import torch
    >>> leaf = torch.nn.Parameter(torch.ones(2, 3, dtype=torch.float64))
    >>> opt = StackedAdamW([stacked_group([leaf], weight_decay=[0.0, 0.0], betas=[(0.9, 0.999)] * 2)])
    >>> leaf.grad = torch.ones(2, 3, dtype=torch.float64)
    >>> opt.set_members(lrs=[0.1, 0.2], stepping=[True, False])
    >>> _ = opt.step()
    >>> [round(w, 6) for w in leaf[:, 0].tolist()]  # AdamW's first step moves a weight by lr; member 2 stays
    [0.9, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


def stacked_group(
    params: Sequence[Tensor],
    weight_decay: Sequence[float],
    betas: Sequence[Sequence[float]] | None = None,
    momentum: Sequence[float] | None = None,
    nesterov: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """A parameter group of stacked parameters (each ``(members, ...)``) with each member's own weight decay and
    AdamW's ``betas`` or SGD's ``momentum``/``nesterov`` (one entry per member)."""
    members = len(weight_decay)
    for p in params:
        if p.dim() == 0 or p.shape[0] != members:
            raise ValueError(
                f"stacked_group: every parameter must have the {members} members along dimension 0, got shape "
                f"{tuple(p.shape)}"
            )
    group: dict[str, Any] = {
        "params": list(params),
        "stacked": members,
        "member_weight_decay": [float(w) for w in weight_decay],
        "lr": 0.0,  # unused: each member's rate comes from set_members
        "weight_decay": 0.0,
    }
    if betas is not None:
        group["member_betas"] = [[float(b) for b in pair] for pair in betas]
    if momentum is not None:
        group["member_momentum"] = [float(m) for m in momentum]
        group["member_nesterov"] = [bool(n) for n in (nesterov or [False] * members)]
    return group


class StackedStep:
    """The stacked groups' step, before which the torch optimizer it is mixed into steps the other groups."""

    param_groups: list[dict[str, Any]]
    state: Any
    _lrs: list[float]
    _stepping: list[bool]

    def set_members(self, lrs: Sequence[float], stepping: Sequence[bool]) -> None:
        """Each member's learning rate for the next step, and whether it steps at all."""
        self._lrs, self._stepping = [float(lr) for lr in lrs], [bool(s) for s in stepping]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:  # Lightning's closure: the training step, backward, the array's gradient checks
            with torch.enable_grad():
                loss = closure()
        stacked = [g for g in self.param_groups if g.get("stacked")]
        held = [(p, p.grad) for g in stacked for p in g["params"]]
        for p, _ in held:  # the torch optimizer skips a parameter without a gradient: it steps the others only
            p.grad = None
        try:
            super().step()  # type: ignore[misc]
        finally:
            for p, grad in held:
                p.grad = grad
        with torch.no_grad():
            for group in stacked:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        members = int(group["stacked"])
        stepping = getattr(self, "_stepping", None) or [True] * members
        if len(stepping) != members or not any(stepping):
            if len(stepping) != members:
                raise ValueError(f"set_members: expected {members} members, got {len(stepping)}")
            return
        for p in group["params"]:
            if p.grad is not None:
                self._update(p, group, _float64(self._lrs, p), stepping)

    def _update(self, p: Tensor, group: dict[str, Any], lr: Tensor, stepping: list[bool]) -> None:
        """Step the members of ``p`` that step, at their rates ``lr`` (float64, one per member)."""
        raise NotImplementedError


class StackedAdamW(StackedStep, torch.optim.AdamW):
    """:class:`torch.optim.AdamW`, whose stacked groups step every member at once (its rate, decay, betas)."""

    def _update(self, p: Tensor, group: dict[str, Any], lr: Tensor, stepping: list[bool]) -> None:
        grad, state, shape = p.grad, self.state[p], member_shape(p)
        assert grad is not None
        if not state:
            state["step"] = torch.zeros(p.shape[0], dtype=torch.float64, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        mask = _mask(stepping, p)
        step = state["step"] + mask.to(torch.float64)
        betas = torch.tensor(group["member_betas"], dtype=torch.float64, device=p.device)
        beta1, beta2 = betas[:, 0], betas[:, 1]
        decay = _float64(group["member_weight_decay"], p)
        # torch's AdamW, each member's scalars as a (members,) tensor: decay, the moments, the bias corrections
        decays = any(group["member_weight_decay"])
        new_p = p * (1 - lr * decay).to(p.dtype).view(shape) if decays else p.clone()
        exp_avg = torch.lerp(state["exp_avg"], grad, (1 - beta1).to(p.dtype).view(shape))
        exp_avg_sq = state["exp_avg_sq"] * beta2.to(p.dtype).view(shape)
        exp_avg_sq.addcmul_(grad * (1 - beta2).to(p.dtype).view(shape), grad)
        safe = torch.where(step > 0, step, torch.ones_like(step))  # a member never stepped: no correction used
        step_size = (lr / (1 - beta1**safe)).to(p.dtype).view(shape)
        correction2 = ((1 - beta2**safe) ** 0.5).to(p.dtype).view(shape)
        denom = (exp_avg_sq.sqrt() / correction2).add_(group["eps"])
        new_p.sub_(step_size * exp_avg / denom)
        _commit(stepping, mask, shape, (p, new_p), (state["exp_avg"], exp_avg), (state["exp_avg_sq"], exp_avg_sq))
        state["step"] = step


class StackedSGD(StackedStep, torch.optim.SGD):
    """:class:`torch.optim.SGD`, whose stacked groups step every member at once (its rate, decay, momentum)."""

    def _update(self, p: Tensor, group: dict[str, Any], lr: Tensor, stepping: list[bool]) -> None:
        grad, state, shape = p.grad, self.state[p], member_shape(p)
        assert grad is not None
        mask = _mask(stepping, p)
        decay = _float64(group["member_weight_decay"], p).to(p.dtype)
        g = grad + decay.view(shape) * p if any(group["member_weight_decay"]) else grad
        momentum = _float64(group["member_momentum"], p).to(p.dtype)
        if any(group["member_momentum"]):
            if not state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["has_buffer"] = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
            has = state["has_buffer"].view(shape)
            buf = torch.where(has, state["momentum_buffer"] * momentum.view(shape) + g, g)  # a first step: the grad
            nesterov = torch.tensor(group["member_nesterov"], device=p.device).view(shape)
            g = torch.where(nesterov, g + momentum.view(shape) * buf, buf)
            _commit(stepping, mask, shape, (state["momentum_buffer"], buf))
            state["has_buffer"] = state["has_buffer"] | mask
        _commit(stepping, mask, shape, (p, p - lr.to(p.dtype).view(shape) * g))


def member_shape(p: Tensor) -> tuple[int, ...]:
    """The shape a (members,) tensor takes to broadcast over the member slices of the stacked ``p``."""
    return (p.shape[0],) + (1,) * (p.dim() - 1)


def _float64(values: Sequence[float], p: Tensor) -> Tensor:
    """One value per member, in float64 on ``p``'s device (torch's optimizers take their settings as Python
    floats, i.e. doubles, and round only where they meet the tensor)."""
    return torch.tensor(list(values), dtype=torch.float64, device=p.device)


def _mask(stepping: list[bool], p: Tensor) -> Tensor:
    return torch.tensor(stepping, dtype=torch.bool, device=p.device)


def _commit(stepping: list[bool], mask: Tensor, shape: tuple[int, ...], *pairs: tuple[Tensor, Tensor]) -> None:
    """``old.copy_(new)`` for each pair, only in the slices of the members that step."""
    for old, new in pairs:
        old.copy_(new if all(stepping) else torch.where(mask.view(shape), new, old))

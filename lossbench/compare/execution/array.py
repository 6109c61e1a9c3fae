"""``ModelArray``: the members of one seed (one :class:`~lossbench.LossbenchModule` per loss) as ONE module.

The backbones share one architecture, so they run as one vmapped forward over the shared batch
(``torch.func.functional_call`` + ``vmap`` over the members' stacked parameters). Each member's head
then runs on its own features and computes its own loss. One backward of the sum of the members'
losses gives each member exactly its own gradient: members share no parameters (the stack is part
of the graph, so each member's gradient flows back to its own leaves).

Everything that would couple the members is per member: the optimizer has one pair of parameter
groups per member (its learning rate, weight decay and schedule), gradient clipping is per member
(a global norm over the array would couple them), the NaN policy is per member (``skip`` drops that
member's update only; ``raise`` fails that member and the others go on; it sees each member's loss and,
where its gradient norm is computed, its gradient), and so are the metrics and the loss scale.

Loss scaling (``precision: 16-mixed``): one ``GradScaler`` for the whole array would skip every member's
step when one member's gradient overflows, and lower everyone's scale. The array takes the scaling over
from the Trainer's scaler (which it disables, :meth:`ModelArray.on_fit_start`): each member's loss is
multiplied by its own scale, its gradient unscaled by it, and a member whose gradient is not finite skips
its step alone and halves its scale (with the scaler's init scale, growth and backoff factors and growth
interval, as ``torch.amp.GradScaler`` does for one model).

The backbones' parameters are stacked (HFTA's layout): the array holds one leaf per parameter name with the
members along its first dimension (``stacked``), which the vmapped forward uses as it is and the optimizer steps
for all members at once (:mod:`~lossbench.compare.execution.stacked`); each member's backbone parameter is a
view of its slice. So the members are ordinary ``LossbenchModule`` s whose ``state_dict`` is the one a
sequential run of that loss has, and what a sequential run does with it (selection, test predictions, the
weights file) works unchanged.
"""

from __future__ import annotations

import copy
import os
import time
from functools import partial
from typing import Any, cast

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lossbench.compare.execution.stacked import StackedAdamW, StackedSGD, StackedStep, member_shape, stacked_group
from lossbench.module import LossbenchModule, loss_scaler, zero_loss

LAYOUT = "stacked"  # an array checkpoint's layout (an older lossbench's, without it, is started over)
FORWARDS = ("auto", "vmapped", "looped")
"""How an array's training forward runs its members' backbones: ``vmapped`` (one vmapped call), ``looped`` (one call
per member, on its slices of the stacked leaves: each takes the fused attention kernels, which have no batching rule)
or ``auto``: on a GPU vmapped; on a CPU, whichever of the two its first training steps time faster (the result is
the same function either way; which is faster depends on the sizes: vmap saves the per-member calls, the loop keeps
the fused kernels, and a batched matmul on a CPU is no faster than its matmuls one by one)."""
FORWARD_VARIABLE = "LOSSBENCH_FUSED_FORWARD"  # sets the default of ModelArray's `forward` (pin it: bitwise reruns)
TRIAL = ("vmapped", "looped") * 3  # auto's first training steps: each path's first is a warm-up, then the best of two
SWITCH = 0.9  # auto loops only where a looped step takes at most this share of a vmapped one (ties stay vmapped)


class ModelArray(pl.LightningModule):
    """Train ``members`` (label -> LossbenchModule, same backbone architecture) in lockstep on one batch stream.

    Args:
        members: the members, by label; their backbones must have the same parameter names and shapes.
        gradient_clip_val: clip each member's gradient norm to this (None: no clipping). A Trainer's
            ``gradient_clip_val`` takes its place: Lightning hands it to ``configure_gradient_clipping``,
            which clips per member (Lightning's own clipping would take one norm over all members).

    Each member's training step is :class:`~lossbench.LossbenchModule`'s: the array calls its ``check_loss`` and
    ``check_gradient`` (its ``nan_policy``, its ``skipped_steps``), its ``accumulate`` and ``epoch_values``
    (validation sums and metrics), so a member computes and counts exactly what a sequential run of its loss does.

    After each validation, ``values[i]`` holds member ``i``'s ``val/...`` numbers. ``failed`` maps the
    label of each member that failed (``nan_policy="raise"`` or an error in its head) to its error.
    ``step_grad_norms[i]`` and ``step_lrs[i]`` hold the gradient norm (before clipping) and learning rate of
    member ``i``'s last optimizer step that updated its weights (a skipped step changes neither).
    ``loss_scales`` holds each member's loss scale under loss scaling (None without).
    """

    def __init__(
        self, members: dict[str, LossbenchModule], gradient_clip_val: float | None = None, forward: str | None = None
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("ModelArray: `members` must hold at least one LossbenchModule, got none")
        forward = forward or os.environ.get(FORWARD_VARIABLE) or "auto"
        if forward not in FORWARDS:
            raise ValueError(
                f"ModelArray: `forward` (or ${FORWARD_VARIABLE}) must be one of {', '.join(FORWARDS)}, got {forward!r}"
            )
        self.labels = list(members)
        self.members = nn.ModuleList(members.values())
        shapes = [{n: tuple(p.shape) for n, p in m.backbone.named_parameters()} for m in members.values()]
        for label, shape in zip(self.labels, shapes):
            if shape != shapes[0]:
                raise ValueError(
                    f"ModelArray: member {label!r}'s backbone differs from {self.labels[0]!r}'s; "
                    "the members of an array must share the backbone's architecture"
                )
        optimizers = {str(m.hparams["optimizer"]) for m in members.values()}
        if len(optimizers) > 1:
            raise ValueError(
                f"ModelArray: the members use different optimizers {sorted(optimizers)}; one array "
                "has one optimizer (its members may differ in learning rate and weight decay)"
            )
        # the architecture without weights: functional_call runs it on the stacked parameters
        first = next(iter(members.values()))
        self._template = [copy.deepcopy(first.backbone).to("meta")]  # a list: not a submodule
        self.names = [name for name, _ in first.backbone.named_parameters()]
        self.buffer_names = [name for name, _ in first.backbone.named_buffers()]
        backbones = [dict(m.backbone.named_parameters()) for m in members.values()]
        self.stacked = nn.ParameterList(
            nn.Parameter(torch.stack([b[name].detach() for b in backbones]), requires_grad=p.requires_grad)
            for name, p in first.backbone.named_parameters()
        )
        buffers = [dict(m.backbone.named_buffers()) for m in members.values()]
        for j, name in enumerate(self.buffer_names):  # constants (a stateful backbone does not fuse)
            self.register_buffer(f"stacked_buffer_{j}", torch.stack([b[name] for b in buffers]), persistent=False)
        self._alias()
        self.gradient_clip_val = gradient_clip_val
        self.vmapped: bool | None = None  # None until the first forward; False: vmap failed, a loop is used
        self.vmap_error: str | None = None
        self.forward_mode = forward
        self.forward_path: str | None = None if forward == "auto" else forward  # auto: None until its trial ends
        self.step_seconds: dict[str, list[float]] = {"vmapped": [], "looped": []}  # auto's trial steps, by path
        self._step_path: str | None = None  # the path of the training step under way
        self._step_started = 0.0
        self.failed: dict[str, str] = {}
        self.values: list[dict[str, float]] = [{} for _ in self.labels]
        self.step_losses: list[Tensor | None] = [None] * len(self.labels)  # the last training step's, per member
        self._updated = [False] * len(self.labels)  # whether the member steps in this batch
        self.loss_scales: list[float] | None = None
        self._growth: list[int] = [0] * len(self.labels)  # steps since each member's scale last changed
        self._scaling = (2.0, 0.5, 2000)  # growth factor, backoff factor, growth interval
        self._first_group: list[int] = []  # member -> index of its first optimizer group (configure_optimizers)
        self._owner_index: tuple[Any, Tensor] | None = None  # grad_norms' index of each gradient's member (_owners)
        self._head_groups: list[list[int]] | None = None  # head_groups(), found on first use
        self._head_templates: dict[int, nn.Module] = {}  # a group's head without weights, by its first member
        self._group_index: dict[tuple[tuple[int, ...], torch.device], Tensor] = {}  # a group's live members, indexed

    @property
    def member_modules(self) -> list[LossbenchModule]:
        """The members in order, typed (``members`` is the ``nn.ModuleList`` that registers them)."""
        return cast("list[LossbenchModule]", list(self.members))

    # -- forward ---------------------------------------------------------------------------------
    def features(self, inputs: Tensor) -> Tensor:
        """Every member's backbone features for one batch, stacked: (members, batch, ...)."""
        if not self.training and not torch.is_grad_enabled():
            # evaluation: each backbone alone takes the encoder's fused inference kernels (faster on CPU than the
            # vmapped math path), and computes exactly what a sequential run's evaluation does
            return torch.stack(self._looped(inputs))
        path = self._training_path(inputs)
        self._step_path = path
        if path == "vmapped" and self.vmapped is not False:
            try:
                out = self._vmapped(inputs)
                self.vmapped = True
                return out
            except Exception as exc:  # an op without a batching rule: loop over the members instead
                if self.vmapped:  # it worked before: a real error, not a missing batching rule
                    raise
                self.vmapped, self.vmap_error = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                self.forward_path = self._step_path = "looped"
        return torch.stack(self._looped(inputs))

    def _training_path(self, inputs: Tensor) -> str:
        """The path of this training step's forward: the chosen one, or (``auto``, still deciding) the trial's."""
        if self.vmapped is False:  # vmap failed: the loop, whatever was asked
            return "looped"
        if self.forward_path is None and inputs.device.type != "cpu":
            self.forward_path = "vmapped"  # on an accelerator vmap is the point (and timing it would synchronise)
        if self.forward_path is not None:
            return self.forward_path
        return TRIAL[self._trial_steps()]

    def _trial_steps(self) -> int:
        """How many of ``auto``'s trial steps were timed."""
        return sum(len(v) for v in self.step_seconds.values())

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_path, self._step_started = None, time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Under ``auto``'s trial: the step's wall time (forward, backward, optimizer step) counts for its path."""
        if self.forward_path is not None or self._step_path is None:
            return
        self.step_seconds[self._step_path].append(time.perf_counter() - self._step_started)
        if self._trial_steps() == len(TRIAL):
            path = choose_forward(self.step_seconds)
            if self._trainer is not None and self.trainer.world_size > 1:  # every process at this step: one choice
                path = self.trainer.strategy.broadcast(path, src=0)
            self.forward_path = path
            self.vmapped = path == "vmapped"

    def forward_choice(self) -> dict[str, Any] | None:
        """How ``auto`` chose the training forward (None: it did not choose, a path was set or vmap failed): the
        path ("undecided" where training ended within the trial) and each path's best trial step, in seconds."""
        if self.forward_mode != "auto" or not any(self.step_seconds.values()):
            return None
        best = {k: round(min(v[1:] or v), 6) for k, v in self.step_seconds.items() if v}
        return {"path": self.forward_path or "undecided", "step_seconds": best}

    def _alias(self) -> None:
        """Make each member's backbone parameter a view of its slice of the stacked leaf (the members' state dicts,
        weights and evaluations read the values the array trains)."""
        for j, name in enumerate(self.names):
            leaf = self.stacked[j]
            for i, m in enumerate(self.member_modules):
                m.backbone.get_parameter(name).data = leaf.data[i]

    def _apply(self, fn: Any, recurse: bool = True) -> ModelArray:
        """``to``, ``double``, ``cuda`` ...: converted, the members' parameters are views of the leaves again."""
        super()._apply(fn, recurse)
        if "stacked" in self._modules:
            self._alias()
        return self

    def _stacked_buffers(self) -> dict[str, Tensor]:
        return {name: getattr(self, f"stacked_buffer_{j}") for j, name in enumerate(self.buffer_names)}

    def _looped(self, inputs: Tensor) -> list[Tensor]:
        """The members' backbones one after another, each drawing the same dropout masks (as vmap's
        ``randomness="same"`` does, and as sequential runs from the same seed do). With gradients: each member's
        slice of the stacked leaves (its gradient reaches the leaves); without: each member's own module."""
        devices = [inputs.device] if inputs.device.type == "cuda" else []
        forwards = self._slice_forwards() if torch.is_grad_enabled() else [m.backbone for m in self.member_modules]
        outs = []
        for forward in forwards[:-1]:
            with torch.random.fork_rng(devices=devices):
                outs.append(forward(inputs))
        return [*outs, forwards[-1](inputs)]  # the last one advances the RNG, once

    def _slice_forwards(self) -> list[Any]:
        """Member ``i``'s backbone as a function of its input, on its slices of the stacked leaves and buffers."""
        from torch.func import functional_call

        template = self._template[0]
        template.train(self.training)
        bufs = self._stacked_buffers()

        def forward(i: int, x: Tensor) -> Tensor:
            params = {name: leaf[i] for name, leaf in zip(self.names, self.stacked)}
            return functional_call(template, (params, {name: b[i] for name, b in bufs.items()}), (x,))

        return [partial(forward, i) for i in range(len(self.labels))]

    def _vmapped(self, inputs: Tensor) -> Tensor:
        from torch.func import functional_call, vmap
        from torch.nn.attention import SDPBackend, sdpa_kernel

        template = self._template[0]
        template.train(self.training)
        params = dict(zip(self.names, self.stacked))  # the leaves themselves: no stack per step
        bufs = self._stacked_buffers()

        def one(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(template, (p, b), (x,))

        # the math attention kernel and no encoder fast path: both have batching rules (the fused CPU kernels
        # have none, and vmap would loop over the members with a warning)
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with sdpa_kernel(SDPBackend.MATH):
                return vmap(one, in_dims=(0, 0, None), randomness="same")(params, bufs, inputs)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)

    def member_losses(
        self, batch: Any, feats: Tensor | None = None
    ) -> list[tuple[Tensor, dict[str, Tensor], Tensor] | BaseException | None]:
        """Each member's (loss, terms, outputs) on ``batch``, the exception its head raised, or None (failed)."""
        inputs, target = LossbenchModule.unpack_batch(batch)
        feats = self.features(inputs) if feats is None else feats
        grouped = self._grouped_outputs(feats)
        results: list[Any] = []
        for i, m in enumerate(self.member_modules):
            if self.labels[i] in self.failed:
                results.append(None)
                continue
            try:
                outputs = grouped[i] if i in grouped else m.head(feats[i])
                loss, terms = m.head_loss(outputs, target, batch)
                results.append((loss, terms, outputs))
            except Exception as exc:  # this member's head fails; the others go on
                results.append(exc)
        return results

    def head_groups(self) -> list[list[int]]:
        """The members whose heads share their class, arguments and parameter shapes, in groups of two or more:
        each group's heads run as one vmapped head over their stacked parameters (:meth:`_grouped_outputs`). A head
        with buffers is not grouped, nor is a group whose vmapped head raised once (its members' heads then run one
        by one, and any error is that member's alone)."""
        if self._head_groups is None:
            keys: dict[Any, list[int]] = {}
            for i, m in enumerate(self.member_modules):
                head = m.head
                if next(head.buffers(), None) is not None or next(head.parameters(), None) is None:
                    continue
                shapes = tuple((name, tuple(p.shape)) for name, p in head.named_parameters())
                keys.setdefault((*head_key(m), shapes), []).append(i)
            self._head_groups = [group for group in keys.values() if len(group) > 1]
        return self._head_groups

    def _grouped_outputs(self, feats: Tensor) -> dict[int, Any]:
        """member -> its head's outputs on its features, for the members of :meth:`head_groups` that have not failed:
        one vmapped call per group (the same function as each head alone: its own parameters, its own features)."""
        from torch.func import functional_call, vmap
        from torch.utils._pytree import tree_map

        out: dict[int, Any] = {}
        for group in list(self.head_groups()):
            live = [i for i in group if self.labels[i] not in self.failed]
            if len(live) < 2:
                continue
            heads = [self.member_modules[i].head for i in live]
            if group[0] not in self._head_templates:
                self._head_templates[group[0]] = copy.deepcopy(heads[0]).to("meta")
            template = self._head_templates[group[0]]
            template.train(self.training)
            names = [name for name, _ in template.named_parameters()]
            params = {name: torch.stack([h.get_parameter(name) for h in heads]) for name in names}
            key = (tuple(live), feats.device)  # the index kept: a copy from host memory to a GPU waits for the stream
            if key not in self._group_index:
                self._group_index[key] = torch.tensor(live, device=feats.device)
            chosen = feats[self._group_index[key]]
            try:
                outputs = vmap(partial(_call, functional_call, template), randomness="same")(params, chosen)
            except Exception:  # no batching rule, or one member's head raises: one by one from now on
                self._head_groups = [g for g in self.head_groups() if g is not group]
                continue
            for j, i in enumerate(live):
                out[i] = tree_map(lambda t, j=j: t[j], outputs)
        return out

    @torch.no_grad()
    def probe_losses(self, batch: Any) -> list[tuple[Tensor, dict[str, Tensor], Tensor] | BaseException | None]:
        """:meth:`member_losses` through the training path's vmapped forward (in eval mode: no dropout)."""
        inputs, _ = LossbenchModule.unpack_batch(batch)
        training = self.training
        self.eval()
        try:
            try:
                feats = self._vmapped(inputs)
            except Exception:  # no batching rule: training will loop over the members
                feats = torch.stack(self._looped(inputs))
            return self.member_losses(batch, feats)
        finally:
            self.train(training)

    def forward(self, inputs: Tensor) -> list[Tensor]:
        """Every member's head outputs for a batch of inputs."""
        feats = self.features(inputs)
        return [m.head(feats[i]) for i, m in enumerate(self.member_modules)]

    # -- training --------------------------------------------------------------------------------
    @property
    def step_grad_norms(self) -> list[Tensor | None]:
        """Each member's ``step_grad_norm``: the gradient norm of its last step that updated its weights."""
        return [m.step_grad_norm for m in self.member_modules]

    @property
    def step_lrs(self) -> list[float | None]:
        """Each member's ``step_lr``: the learning rate of its last step that updated its weights."""
        return [m.step_lr for m in self.member_modules]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        results = self.member_losses(batch)
        losses = [r[0].detach() for r in results if isinstance(r, tuple)]
        finite = iter(torch.isfinite(torch.stack(losses)).tolist() if losses else [])  # one sync for all members
        total: list[Tensor] = []
        for i, (m, result) in enumerate(zip(self.member_modules, results)):
            self._updated[i], self.step_losses[i] = False, None
            if result is None:
                continue
            if isinstance(result, BaseException):
                self._fail(i, result)
                continue
            loss, terms, _ = result
            try:  # the member's nan_policy: raise fails this member only, skip counts its step
                ok = m.check_loss(loss, terms, self.global_step, batch_idx, finite=next(finite), trainer=self._trainer)
            except FloatingPointError as exc:
                self._fail(i, exc)
                continue
            if ok:
                total.append(loss if self.loss_scales is None else loss * self.loss_scales[i])
                self._updated[i], self.step_losses[i] = True, loss.detach()
        distributed = self._trainer is not None and self.trainer.world_size > 1
        if distributed:  # DDP needs a gradient for every parameter: zeros for the members that do not step
            total.append(zero_loss(self))
        if not any(self._updated) and not distributed:
            return None  # no member steps: Lightning skips backward and the optimizer step
        return torch.stack(total).sum()

    def _fail(self, i: int, exc: BaseException) -> None:
        """Member ``i`` fails with ``exc`` (its head's error, or its ``nan_policy="raise"``); the others go on."""
        self.failed[self.labels[i]] = f"{type(exc).__name__}: {exc}"

    def grad_norms(self) -> list[Tensor]:
        """Every member's gradient norm (on the device, no sync): its slices of the stacked leaves' gradients, one
        norm per leaf over all members, and its head's, one ``_foreach_norm`` over all members' heads."""
        members = len(self.members)
        squares: list[Tensor] = []
        for leaf in self.stacked:
            if leaf.grad is not None:
                squares.append(torch.linalg.vector_norm(leaf.grad.detach().reshape(members, -1), dim=1).square())
        grads, counts = [], []
        for m in self.member_modules:
            mine = [g.detach() for g in _head_grads(m)]
            grads += mine
            counts.append(len(mine))
        if grads:
            heads = torch.stack(torch._foreach_norm(grads)).square()
            sums = torch.zeros(members, dtype=heads.dtype, device=heads.device)
            squares.append(sums.index_add_(0, self._owners(tuple(counts), heads.device), heads))
        if not squares:
            return [torch.zeros(()) for _ in self.members]
        return list(torch.stack(squares).sum(0).sqrt().unbind())

    def member_grads(self, i: int) -> list[Tensor | None]:
        """Member ``i``'s gradients in the order of its ``parameters()``: its slices of the stacked leaves'
        gradients for the backbone, its head's own."""
        leaves = {name: leaf for name, leaf in zip(self.names, self.stacked)}
        out: list[Tensor | None] = []
        for name, p in self.member_modules[i].named_parameters():
            leaf = leaves.get(name.removeprefix("backbone.")) if name.startswith("backbone.") else None
            out.append(p.grad if leaf is None else None if leaf.grad is None else leaf.grad[i])
        return out

    def _owners(self, counts: tuple[int, ...], device: torch.device) -> Tensor:
        """The member of each gradient (``counts[i]`` of member ``i``, in order) as an index tensor on ``device``,
        kept while the counts stay the same: a copy from host memory to a GPU waits for the stream, and this runs
        at every optimizer step."""
        key = (counts, device)
        if self._owner_index is None or self._owner_index[0] != key:
            owner = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
            self._owner_index = (key, owner.to(device))
        return self._owner_index[1]

    def grad_norm(self, i: int) -> Tensor:
        """Member ``i``'s gradient norm (on the device, no sync)."""
        return self.grad_norms()[i]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale each member's gradient (under loss scaling) and check it, then keep each stepping member's
        gradient norm and learning rate, drop the heads' gradients of the members that do not step, and tell the
        optimizer which members step (their stacked slices are masked) and at which rates.

        A member whose gradient is not finite does not step: under loss scaling its scale is lowered (an
        overflow); otherwise its ``nan_policy`` acts (``skip`` counts it in its ``skipped_steps``, ``raise``
        fails it). Lightning calls this after backward, before clipping (:meth:`configure_gradient_clipping`).
        """
        if any(self._updated):
            if self.loss_scales is not None:
                self._unscale()
            norms = self.grad_norms()
            finite = torch.isfinite(torch.stack(norms)).tolist()  # one sync for all members
            for i in range(len(self.members)):
                if self._updated[i]:
                    self._updated[i] = self._check_gradient(i, norms[i], finite[i], optimizer)
        for i, m in enumerate(self.member_modules):
            if not self._updated[i]:  # skipped or failed: no update (as a sequential run's skipped step)
                m.drop_gradients()
        if not isinstance(optimizer, StackedStep):
            raise TypeError(
                f"ModelArray: the optimizer must step the stacked parameters per member (configure_optimizers' "
                f"StackedAdamW or StackedSGD), got {type(optimizer).__name__}"
            )
        optimizer.set_members([self.member_lr(optimizer, i) for i in range(len(self.members))], self._updated)

    def _unscale(self) -> None:
        """Divide each member's gradient by its loss scale: the stacked leaves' at once, the heads' per member."""
        assert self.loss_scales is not None
        inverse = [1.0 / scale for scale in self.loss_scales]
        for leaf in self.stacked:
            if leaf.grad is not None:
                leaf.grad.mul_(
                    torch.tensor(inverse, dtype=leaf.grad.dtype, device=leaf.grad.device).view(member_shape(leaf))
                )
        for i, m in enumerate(self.member_modules):
            grads = _head_grads(m)
            if grads:
                torch._foreach_mul_(grads, inverse[i])

    def _check_gradient(self, i: int, norm: Tensor, finite: bool, optimizer: torch.optim.Optimizer) -> bool:
        """Whether member ``i`` steps, with its gradient's ``norm``: its ``check_gradient`` (an overflow under loss
        scaling lowers its scale instead, as ``GradScaler`` does; ``nan_policy="raise"`` fails the member)."""
        if self.loss_scales is not None:
            self._update_scale(i, finite)
        m = self.member_modules[i]
        try:
            return m.check_gradient(
                norm, self.member_lr(optimizer, i), finite=finite, scaled=self.loss_scales is not None
            )
        except FloatingPointError as exc:
            self._fail(i, exc)
            return False

    # -- loss scaling ----------------------------------------------------------------------------
    def use_loss_scaling(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        """Scale each member's loss by its own dynamic scale from now on (``torch.amp.GradScaler``'s settings);
        scales already set (by a checkpoint) are kept."""
        self._scaling = (float(growth_factor), float(backoff_factor), int(growth_interval))
        if self.loss_scales is None:
            self.loss_scales = [float(init_scale)] * len(self.members)
            self._growth = [0] * len(self.members)

    def _update_scale(self, i: int, finite: bool) -> None:
        """``GradScaler.update`` for member ``i``: back off on an overflow, grow after ``growth_interval`` steps."""
        scales = self.loss_scales
        if scales is None:  # no loss scaling
            return
        growth, backoff, interval = self._scaling
        if not finite:
            scales[i] *= backoff
            self._growth[i] = 0
            return
        self._growth[i] += 1
        if self._growth[i] == interval:
            scales[i] *= growth
            self._growth[i] = 0

    def on_fit_start(self) -> None:
        """Under a Trainer's loss scaler (``precision="16-mixed"``), scale per member instead: the scaler's settings
        go to :meth:`use_loss_scaling` and the Trainer's scaler is disabled (it would scale the array as one)."""
        scaler = loss_scaler(self.trainer)
        if scaler is None:
            return
        self.use_loss_scaling(
            scaler.get_scale(), scaler.get_growth_factor(), scaler.get_backoff_factor(), scaler.get_growth_interval()
        )
        # the scaler's plugin (MixedPrecision, FSDPPrecision ...): Lightning's Precision base declares no scaler
        plugin: Any = self.trainer.precision_plugin
        plugin.scaler = torch.amp.GradScaler(getattr(plugin, "device", "cuda"), enabled=False)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip each member's gradient norm to ``clip``, as ``clip_grad_norm_`` clips one model's (the stacked
        leaves' slices by one vectorised factor, the heads' per member)."""
        clip = self.gradient_clip_val if gradient_clip_val is None else gradient_clip_val
        if not clip or not any(self._updated):
            return
        norms = torch.stack(self.grad_norms())
        factors = (float(clip) / (norms + 1e-6)).clamp(max=1.0)  # clip_grad_norm_'s factor, per member
        for leaf in self.stacked:
            if leaf.grad is not None:
                leaf.grad.mul_(factors.to(leaf.grad.dtype).view(member_shape(leaf)))
        for i, m in enumerate(self.member_modules):
            grads = _head_grads(m)
            if self._updated[i] and grads:
                torch._foreach_mul_(grads, factors[i].to(grads[0].dtype))

    def configure_optimizers(self) -> Any:
        # the heads: members whose groups have the same settings and schedule share one group (the same update per
        # tensor, fewer calls), members that differ (learning rate, weight decay, schedule) get their own; the
        # stacked backbone leaves: one group of decayed leaves and one of the rest, each member at its own rate
        groups: list[dict[str, Any]] = []
        factors: list[Any] = []
        merged: dict[Any, int] = {}
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        self._first_group = []
        backbone = {id(p) for m in self.member_modules for p in m.backbone.parameters()}
        for m in self.member_modules:
            factor = m.lr_factor(total)
            for j, group in enumerate(m.param_groups()):
                key = (repr(sorted((k, v) for k, v in group.items() if k != "params")), _schedule_key(factor))
                if key not in merged:
                    merged[key] = len(groups)
                    groups.append({**group, "params": []})
                    factors.append(factor or _constant)
                groups[merged[key]]["params"] += [p for p in group["params"] if id(p) not in backbone]
                if j == 0:
                    self._first_group.append(merged[key])
        for group in self._stacked_groups():
            groups.append(group)
            factors.append(_constant)  # each member's scheduled rate is its head group's (set_members)
        sgd = self.member_modules[0].hparams["optimizer"] == "sgd"
        # foreach: one call per head group instead of a Python loop over every member's tensors (the same updates)
        opt = StackedSGD(groups, foreach=True) if sgd else StackedAdamW(groups, foreach=True)
        if all(f is _constant for f in factors):
            return opt
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factors)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _stacked_groups(self) -> list[dict[str, Any]]:
        """The stacked leaves in two groups, decayed and not, as a member's own ``param_groups`` splits them."""
        members = self.member_modules
        first = members[0]
        decayed = {id(p) for p in first.param_groups()[0]["params"]}
        own = dict(first.backbone.named_parameters())
        hp = [m.hparams for m in members]
        extra: dict[str, Any] = (
            {"momentum": [h["momentum"] for h in hp], "nesterov": [h["nesterov"] for h in hp]}
            if first.hparams["optimizer"] == "sgd"
            else {"betas": [tuple(h["betas"]) for h in hp]}
        )
        split: dict[bool, list[nn.Parameter]] = {True: [], False: []}
        for name, leaf in zip(self.names, self.stacked):
            if leaf.requires_grad:  # without weight decay anywhere, decayed or not is the same update: one group
                split[id(own[name]) in decayed and any(h["weight_decay"] for h in hp)].append(leaf)
        return [
            stacked_group(leaves, [h["weight_decay"] if decay else 0.0 for h in hp], **extra)
            for decay, leaves in split.items()
            if leaves
        ]

    def member_lr(self, optimizer: torch.optim.Optimizer, i: int) -> float:
        """Member ``i``'s current learning rate (its first parameter group's)."""
        return float(optimizer.param_groups[self._first_group[i]]["lr"])

    # -- validation ------------------------------------------------------------------------------
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, target = LossbenchModule.unpack_batch(batch)
        for m, result in zip(self.member_modules, self.member_losses(batch)):
            if isinstance(result, tuple):
                loss, terms, outputs = result
                m.accumulate("val", loss, terms, outputs, target)

    def on_validation_epoch_end(self) -> None:
        reduce = self.trainer.strategy.reduce
        for i, m in enumerate(self.member_modules):
            # the values a sequential run logs, as Lightning's logging stores them: float32 or float64 tensors
            self.values[i] = {k: float(_as_logged(v)) for k, v in m.epoch_values("val", reduce).items()}

    # -- state -----------------------------------------------------------------------------------
    def configure_callbacks(self) -> list[pl.Callback]:
        from lossbench.resume import ResumeState

        return [ResumeState()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lossbench_array"] = {
            "layout": LAYOUT,
            "labels": list(self.labels),
            "failed": dict(self.failed),
            "skipped_steps": [int(m.skipped_steps) for m in self.member_modules],
            "forward": {"path": self.forward_path, "step_seconds": self.step_seconds},
        }
        if self.loss_scales is not None:
            checkpoint["lossbench_array"]["loss_scales"] = [list(self.loss_scales), list(self._growth)]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("lossbench_array") or {}
        if state.get("labels", self.labels) != self.labels:
            raise ValueError(
                f"ModelArray: the checkpoint holds members {state.get('labels')}, this array {self.labels}"
            )
        self.failed = dict(state.get("failed", {}))
        for m, skipped in zip(self.member_modules, state.get("skipped_steps", [0] * len(self.members))):
            m.skipped_steps = int(skipped)
        forward = state.get("forward")
        if forward and self.forward_mode == "auto":  # resumed: the path chosen (or the trial so far) goes on
            self.forward_path = forward["path"]
            self.step_seconds = {k: [float(t) for t in v] for k, v in forward["step_seconds"].items()}
            self.vmapped = None if self.forward_path is None else self.forward_path == "vmapped"
        if "loss_scales" in state:
            scales, growth = state["loss_scales"]
            self.loss_scales, self._growth = [float(s) for s in scales], [int(g) for g in growth]
        if self._trainer is not None and str(self.trainer.precision).startswith("64"):
            self.double()  # before Lightning loads the weights (see LossbenchModule.on_load_checkpoint)


def head_key(member: LossbenchModule) -> tuple[type, str]:
    """Equal for members whose heads are of one class with the same arguments (they run the same code)."""
    return (type(member.head), repr(sorted(member.hparams["head_args"].items())))


def choose_forward(seconds: dict[str, list[float]]) -> str:
    """``auto``'s choice from its trial steps' wall times by path: each path's best step after its first (a warm-up);
    the loop only where it takes at most :data:`SWITCH` of the vmapped step.

    Example:
        >>> choose_forward({"vmapped": [0.5, 0.10, 0.11], "looped": [0.4, 0.08, 0.09]})
        'looped'
        >>> choose_forward({"vmapped": [0.5, 0.10, 0.11], "looped": [0.4, 0.095, 0.2]})
        'vmapped'
    """
    vmapped, looped = (min(seconds[path][1:] or seconds[path]) for path in ("vmapped", "looped"))
    return "looped" if looped <= SWITCH * vmapped else "vmapped"


def _call(functional_call: Any, module: nn.Module, params: dict[str, Tensor], inputs: Tensor) -> Any:
    """``module`` run on ``params`` (what a vmapped head maps over)."""
    return functional_call(module, params, (inputs,))


def _head_grads(member: LossbenchModule) -> list[Tensor]:
    """The gradients of ``member``'s head (its backbone's are slices of the stacked leaves' gradients)."""
    return [p.grad for p in member.head.parameters() if p.grad is not None]


def _constant(step: int) -> float:
    return 1.0


def _schedule_key(factor: Any) -> Any:
    """Equal for equal schedules (``functools.partial`` factors with the same function and arguments)."""
    if factor is None:
        return None
    if isinstance(factor, partial):
        return (factor.func, factor.args, tuple(sorted(factor.keywords.items())))
    return id(factor)  # another callable: its own group


def _as_logged(value: Tensor) -> Tensor:
    """A value as ``LightningModule.log`` keeps it: float32 or float64 kept, other dtypes to the default."""
    value = value.detach() if isinstance(value, Tensor) else torch.tensor(value)
    return value if value.dtype in (torch.float32, torch.float64) else value.to(torch.get_default_dtype())

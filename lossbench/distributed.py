"""Runs on several processes with Lightning's own strategies (``--trainer.strategy ddp --trainer.devices N``).

Lightning launches the processes, wraps the model in DDP and reduces the gradients;
lossbench adds only what makes N processes give the numbers of one process:

- :func:`process_sampler`: each process's share of the rows. Training keeps the seeded
  order: process ``r`` of ``W`` serves rows ``r, r + W, r + 2W, ...`` of the 1-process
  order, so with a per-process batch of ``B / W`` the union of step ``k``'s batches over
  the processes is exactly the 1-process batch ``k`` (Lightning would instead wrap a
  custom sampler in ``DistributedSamplerWrapper(shuffle=True)`` and reshuffle it, Lightning
  issues #21131/#21447). Evaluation is not padded: every row is evaluated exactly once,
  so processes may see different numbers of batches; the module's epoch means and
  torchmetrics reduce sums and counts across processes, never means of means.
- :class:`Processes`: the comparison engine launches the processes up front (Lightning
  Fabric, the same launcher the Trainer uses), so that every decision (skip, resume) is
  taken on global rank 0 and broadcast, and only rank 0 writes.
- :func:`same_on_all_ranks`: fingerprints (initial weights, batch order) are checked to
  agree across processes; a disagreement raises :class:`RankMismatchError` on every process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DistributedSampler, Sampler


class RankMismatchError(RuntimeError):
    """Processes of one distributed run disagree on something that must be identical (raised on every process)."""


# -- samplers ------------------------------------------------------------------------------------------
class OrderedDistributedSampler(DistributedSampler):
    """This process's share of a sampler's order, without reshuffling it.

    Process ``rank`` of ``num_replicas`` serves positions ``rank, rank + W, ...`` of the wrapped
    sampler's order, so consecutive batches of ``B / W`` rows on every process together form
    the 1-process batches of ``B`` rows, in order. Like :class:`DistributedSampler`, the order is
    padded with its first rows to a multiple of ``W`` (DDP needs the same number of batches on
    every process): when ``W`` does not divide the number of rows, the last batch of each epoch
    repeats up to ``W - 1`` rows of that epoch's start. A wrapped sampler resumed mid-epoch (it
    serves the epoch's last rows only) is sharded the same way, the rows resumed from being a
    multiple of ``W``.

    ``set_epoch`` and ``order`` are forwarded to the wrapped sampler (the batch-order fingerprint
    reads ``order``).

    Example:
        >>> from lossbench.data import SeededShuffleSampler
        >>> base = SeededShuffleSampler(6, seed=0)
        >>> shares = [list(OrderedDistributedSampler(base, num_replicas=2, rank=r)) for r in (0, 1)]
        >>> [x for pair in zip(*shares) for x in pair] == list(base)
        True
    """

    def __init__(self, sampler: Sampler[int], num_replicas: int, rank: int) -> None:
        if not isinstance(sampler, Sized):
            raise TypeError(f"OrderedDistributedSampler: `sampler` must have a length, got {type(sampler).__name__}")
        super().__init__(
            range(len(sampler)),  # type: ignore[arg-type]  # stubs say Dataset; DistributedSampler only takes its len()
            num_replicas=num_replicas,
            rank=rank,
            shuffle=False,
            drop_last=False,
        )
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        set_epoch = getattr(self.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def order(self, epoch: int | None = None) -> list[int]:
        """The wrapped sampler's (global, 1-process) order of ``epoch``."""
        return self.sampler.order(epoch)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[int]:
        served = list(self.sampler)  # a resumed epoch serves only its last rows
        # pad from the whole epoch's order when the sampler tells it, so that a resumed epoch ends as the
        # uninterrupted one does
        order = getattr(self.sampler, "order", None)
        full = order() if callable(order) else served
        padding = -len(full) % self.num_replicas
        if full:
            served += (full * math.ceil(padding / len(full)))[:padding]
        return iter(served[self.rank :: self.num_replicas])


class EvalDistributedSampler(DistributedSampler):
    """Rows ``rank, rank + W, ...`` of ``range(num_rows)``, unpadded: each row is evaluated exactly once.

    Processes may get different numbers of rows (and batches): sums and counts are reduced
    across processes at the epoch's end, so the means equal the 1-process ones. Lightning's own
    evaluation sampler pads with repeated rows instead, which shifts the means.
    """

    def __init__(self, num_rows: int, num_replicas: int, rank: int) -> None:
        super().__init__(
            range(num_rows),  # type: ignore[arg-type]  # stubs say Dataset; DistributedSampler only takes its len()
            num_replicas=num_replicas,
            rank=rank,
            shuffle=False,
            drop_last=False,
        )
        self.num_samples = len(range(rank, num_rows, num_replicas))
        self.total_size = num_rows

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def process_sampler(
    sampler: Sampler[int] | None, num_rows: int, trainer: Any, train: bool, what: str = "data"
) -> Sampler[int] | None:
    """The sampler a DataLoader of ``num_rows`` rows should use in this process.

    Without a distributed Trainer (none attached, or one process) ``sampler`` is returned
    unchanged. Under a data-parallel strategy (``trainer.distributed_sampler_kwargs``) it is a
    :class:`DistributedSampler`, which Lightning leaves as it is: for training an
    :class:`OrderedDistributedSampler` over ``sampler``, for evaluation an
    :class:`EvalDistributedSampler` (``sampler`` must then be None: sequential).

    Raises:
        ValueError: when an evaluation split has fewer rows than processes (a process would
            have nothing to evaluate, and Lightning stops on empty loaders).
    """
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
    if not kwargs or int(kwargs.get("num_replicas", 1)) <= 1:
        return sampler
    replicas, rank = int(kwargs["num_replicas"]), int(kwargs["rank"])
    if train:
        if sampler is None:
            raise ValueError("process_sampler: a training `sampler` (the row order) is needed")
        return OrderedDistributedSampler(sampler, num_replicas=replicas, rank=rank)
    if sampler is not None:
        raise ValueError("process_sampler: evaluation is sequential; pass `sampler`=None")
    if num_rows < replicas:
        raise ValueError(
            f"the {what} has {num_rows} rows, fewer than the {replicas} processes: every process needs at least one "
            "row to evaluate; give it more rows or run on fewer devices"
        )
    return EvalDistributedSampler(num_rows, num_replicas=replicas, rank=rank)


# -- processes -------------------------------------------------------------------------------------
def _group_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def same_on_all_ranks(what: str, value: str) -> None:
    """Raise :class:`RankMismatchError` on every process unless all processes hold the same ``value``.

    A no-op without a process group (one process).
    """
    if not _group_ready() or torch.distributed.get_world_size() == 1:
        return
    values: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    if len(set(values)) > 1:
        shown = ", ".join(f"rank {r}: {str(v)[:16]}" for r, v in enumerate(values))
        raise RankMismatchError(
            f"lossbench: the processes disagree on {what} ({shown}); every process must start from the same "
            "state and serve the same order (same versions of lossbench, torch and the data on every node). "
            "Refusing to train an unfair run"
        )


class Processes:
    """The processes of a comparison, launched before anything is decided or written.

    One process: every method is trivial. Several: Lightning Fabric's launcher (the one the
    Trainer would use) starts the other processes, which re-run the same command, and sets up
    the process group; the Trainers created afterwards join it instead of launching again.
    """

    def __init__(self, world_size: int = 1, global_rank: int = 0, fabric: Any = None) -> None:
        self.world_size, self.global_rank, self._fabric = world_size, global_rank, fabric

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @classmethod
    def launch(cls, trainer: dict[str, Any]) -> Processes:
        """Start the processes that ``trainer`` (a recipe's trainer section) asks for."""
        if _group_ready():  # launched already (a user's script, torchrun): join it
            return cls(torch.distributed.get_world_size(), torch.distributed.get_rank())
        if trainer["devices"] in (1, "1") and trainer["num_nodes"] in (1, "1"):
            return cls()  # one process: nothing to launch
        from lightning.fabric import Fabric

        fabric = Fabric(
            accelerator=trainer["accelerator"],
            devices=trainer["devices"],
            num_nodes=trainer["num_nodes"],
            strategy=trainer["strategy"],
        )
        if fabric.world_size == 1:
            return cls()
        check_script_launcher(fabric, trainer["strategy"])
        fabric.launch()
        return cls(fabric.world_size, fabric.global_rank, fabric)

    def broadcast(self, value: Any) -> Any:
        """Global rank 0's ``value`` on every process."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1 and _group_ready():
            torch.distributed.barrier()


def check_script_launcher(fabric: Any, strategy: Any) -> None:
    """Refuse strategies whose processes are spawned from a function (``ddp_spawn``, notebooks, XLA).

    The comparison engine needs every process to run the whole command (each builds the same
    runs in the same order); a spawned process would run one ``fit`` and lose the engine's state.
    """
    from lightning.fabric.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(fabric.strategy, "launcher", None)
    if launcher is not None and not isinstance(launcher, _SubprocessScriptLauncher):
        raise ValueError(
            f"`trainer.strategy` {strategy!r} starts its processes from a function ({type(launcher).__name__}); "
            "lossbench compare needs processes that each run the command: use 'ddp' (or 'auto'), "
            "launched from a terminal, torchrun or SLURM"
        )

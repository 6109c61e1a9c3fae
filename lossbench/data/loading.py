"""Batching of processed rows: the seeded training order and the collate function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from lossbench.data.spec import DataSpec

IGNORE_INDEX = -100  # language-modelling targets at padding


class SeededShuffleSampler(Sampler[int]):
    """A random order of ``range(num_rows)`` that is a function of ``(seed, epoch)`` only.

    Lightning calls :meth:`set_epoch` before each training epoch, so epoch ``e`` of any run
    with the same seed sees the same order, however many times the loader was iterated.

    Resuming mid-epoch: :meth:`resume` makes the next iteration of that epoch serve only the
    rows after those already served before the checkpoint; later iterations serve whole epochs
    again. ``len()`` stays the full epoch, as Lightning counts the resumed epoch's batches from
    the ones it restored (:class:`~lossbench.data.HFDataModule` does this from its checkpoint).

    Example:
        >>> list(SeededShuffleSampler(5, seed=0)) == list(SeededShuffleSampler(5, seed=0))
        True
        >>> sampler = SeededShuffleSampler(5, seed=0)
        >>> sampler.resume(epoch=0, start=3)
        >>> list(sampler) == sampler.order(0)[3:], list(sampler) == sampler.order(0)
        (True, True)
    """

    def __init__(self, num_rows: int, seed: int = 0) -> None:
        self.num_rows = int(num_rows)
        self.seed = int(seed)
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, first row) of the next iteration

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume(self, epoch: int, start: int) -> None:
        """Serve epoch ``epoch`` from position ``start`` of its order, once (rows before it were served)."""
        if not 0 <= int(start) <= self.num_rows:
            raise ValueError(f"SeededShuffleSampler.resume: `start` must be in [0, {self.num_rows}], got {start}")
        self.epoch = int(epoch)
        self._resume = (int(epoch), int(start))

    def order(self, epoch: int | None = None) -> list[int]:
        """The row order of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        state = np.random.SeedSequence([self.seed, epoch]).generate_state(2, dtype=np.uint32)
        gen = torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))
        return torch.randperm(self.num_rows, generator=gen).tolist()

    def __iter__(self):
        order = self.order()
        resume, self._resume = self._resume, None
        if resume is not None and resume[0] == self.epoch:
            order = order[resume[1] :]
        return iter(order)

    def __len__(self) -> int:
        return self.num_rows


class ResumableDataLoader(DataLoader):
    """The training DataLoader of :class:`~lossbench.data.HFDataModule`, resumable mid-epoch.

    Its position is saved by the data module (``HFDataModule.state_dict``: Lightning's batch
    count at the moment of the checkpoint), which hands it to the sampler of the loader it makes
    on resume; so the loader's own state is empty. It declares ``state_dict``/``load_state_dict``
    so that Lightning counts it as resumable and does not warn about resuming mid-epoch.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


MAX_MEMORY_ROWS = 500_000
"""Splits up to this many rows are served from memory (:class:`MemoryRows`); larger ones from the Arrow table."""


class MemoryRows(torch.utils.data.Dataset):
    """A processed split's rows held as tensors: a loader's fetch is a list lookup, not an Arrow read per batch.

    Row ``i`` is ``data[i]`` (the same tensors, the same dtypes); reading the Arrow table per batch costs ~20 ms
    for a batch of 64 digits rows, more than a training step of a small model.

    Example:
        >>> import datasets
        >>> data = datasets.Dataset.from_dict({"inputs": [[1.0, 2.0], [3.0, 4.0]], "target": [0, 1]})
        >>> data = data.with_format("torch")
        >>> rows = MemoryRows(data)
        >>> len(rows), rows[1]["inputs"].tolist(), int(rows[1]["target"]) == int(data[1]["target"])
        (2, [3.0, 4.0], True)
    """

    def __init__(self, data: Any) -> None:
        self.data = data  # the Arrow split these rows come from
        columns = data[:]
        self.rows = [{name: values[i] for name, values in columns.items()} for i in range(len(data))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self.rows[i] for i in indices]


class TeacherRows(torch.utils.data.Dataset):
    """A split's rows, each with its teacher's logits (``row["teacher"]``, float32 (C,)) for distillation."""

    def __init__(self, rows: Any, logits: torch.Tensor) -> None:
        if logits.dim() != 2 or logits.shape[0] != len(rows):
            raise ValueError(
                f"TeacherRows: `logits` must have one row per example ({len(rows)}, C), got {tuple(logits.shape)}"
            )
        self.rows, self.logits = rows, logits.detach().to(torch.float32).cpu()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.rows[index], "teacher": self.logits[index]}


def in_memory(data: Any) -> Any:
    """``data`` as :class:`MemoryRows` when it has at most :data:`MAX_MEMORY_ROWS` rows, else ``data``."""
    return MemoryRows(data) if len(data) <= MAX_MEMORY_ROWS else data


class Collate:
    """Rows of the processed dataset -> ``{"inputs": Tensor, "target": Tensor}`` with the spec's dtypes."""

    def __init__(self, spec: DataSpec, padding: str = "longest") -> None:
        self.input_kind = spec.input_kind
        self.target_kind = spec.target_kind
        self.pad_id = spec.pad_id if spec.pad_id is not None else 0
        self.width = None
        if padding == "max_length" and spec.max_length is not None:
            self.width = spec.max_length + (1 if spec.target_kind == "token" else 0)

    def _pad(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        width = self.width or max(len(r) for r in rows)
        out = torch.full((len(rows), width), self.pad_id, dtype=torch.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.input_kind == "tokens":
            tokens = self._pad([torch.as_tensor(r["inputs"]) for r in rows])
            if self.target_kind == "token":
                target = tokens[:, 1:].clone()
                target[target == self.pad_id] = IGNORE_INDEX
                return {"inputs": tokens[:, :-1].contiguous(), "target": target}
            inputs = tokens
        else:
            inputs = torch.stack([torch.as_tensor(r["inputs"]) for r in rows]).to(torch.float32)
        target = torch.stack([torch.as_tensor(r["target"]) for r in rows])
        target = target.to(torch.int64) if self.target_kind == "class" else target.to(torch.float32)
        if "teacher" in rows[0]:  # a teacher's logits for these rows (TeacherRows): distillation
            return {"inputs": inputs, "target": target, "teacher": torch.stack([r["teacher"] for r in rows])}
        return {"inputs": inputs, "target": target}

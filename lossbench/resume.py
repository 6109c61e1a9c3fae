"""Exact resume: a run stopped anywhere and resumed from its checkpoint continues as if never stopped.

Lightning's checkpoints hold the model, optimizer, scheduler and loop state. Three more things
decide what a run does next, and lossbench saves them too:

- the random number generators (torch, CUDA, numpy, python), which dropout and any sampling
  inside ``training_step`` draw from: :class:`ResumeState`;
- the position in the epoch's batch order: :class:`~lossbench.data.HFDataModule` saves it in
  its ``state_dict`` and its :class:`~lossbench.data.SeededShuffleSampler` skips the rows
  already served (a plain DataLoader would start the epoch over);
- a whole checkpoint file: :class:`AtomicCheckpointIO` never leaves half of one, even when the
  process is killed while writing it.

:class:`~lossbench.LossbenchModule` brings :class:`ResumeState` itself (``configure_callbacks``),
and ``lossbench compare`` uses all three. With another LightningModule, add them yourself::

    trainer = pl.Trainer(callbacks=[ResumeState()], plugins=[AtomicCheckpointIO()], deterministic=True)
    trainer.fit(model, datamodule=HFDataModule(...), ckpt_path="last.ckpt")

Exactness: on CPU the resumed run is bitwise identical to the uninterrupted one in float32 and
float64 (``tests/test_resume.py``); on GPU it needs ``deterministic=True`` as any rerun does.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lossbench._io import atomic_write_bytes

__all__ = ["AtomicCheckpointIO", "ResumeState", "get_rng_states", "seed_rngs", "set_rng_states"]


def get_rng_states() -> dict[str, Any]:
    """The global RNG states of torch (CPU, and the current CUDA device when in use), numpy and python.

    Plain tensors, lists and numbers only, so checkpoints load with ``torch.load(weights_only=True)``.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # the legacy tuple, not a dict
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned (a CUDA state only where CUDA is in use)."""
    torch.set_rng_state(states["torch"].cpu())
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"].cpu())


def seed_rngs(seed: int) -> None:
    """Seed torch (all devices), numpy and python's ``random`` from ``seed``, like Lightning's
    ``seed_everything`` but without its environment variables and log line."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ResumeState(pl.Callback):
    """Saves the RNG states in every checkpoint and restores them when training resumes from one.

    The states are taken when the checkpoint is written and put back in ``on_train_start`` of
    the resumed fit: after Lightning restored the checkpoint, built the training dataloader and
    ran the sanity check (which isolates its RNG use), right before the first resumed batch,
    which is where the uninterrupted run stood when it wrote the checkpoint. Data loaders that
    draw from the global RNG when an iterator is created would shift the state at epoch starts;
    :class:`~lossbench.data.HFDataModule`'s loaders draw from their own generators.

    :class:`~lossbench.LossbenchModule` returns one from ``configure_callbacks``, so every Trainer
    that fits it has one; add ``ResumeState()`` to your Trainer's callbacks for other modules.
    A checkpoint written without it resumes with the RNG as it is. Under DDP every process
    restores the state of process 0 (the one that writes checkpoints): exact when the processes
    were seeded alike, as ``seed_everything`` does.

    Example:
        >>> import torch
        >>> state = ResumeState().state_dict()
        >>> first = torch.rand(2)
        >>> callback = ResumeState()
        >>> callback.load_state_dict(state)
        >>> callback.on_train_start(None, None)
        >>> torch.equal(torch.rand(2), first)
        True
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": get_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but a checkpoint file is either the old one or the new one.

    The checkpoint is serialised in memory, written to a temporary file in the target's folder,
    flushed, fsynced and renamed over the target. Lightning's own writer goes through a
    temporary file in the system's temp folder, which is a copy (not a rename) when that folder
    is on another file system; a process killed then leaves a truncated checkpoint. Remote
    paths (``s3://`` ...) keep Lightning's writer.

    Use it as a Trainer plugin: ``pl.Trainer(plugins=[AtomicCheckpointIO()])``. ``guard`` checks each local
    path before it is written and raises to refuse it (the comparison passes its results-folder confinement).
    """

    def __init__(self, guard: Callable[[Path], Path] | None = None) -> None:
        super().__init__()
        self.guard = guard

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue(), guard=self.guard)

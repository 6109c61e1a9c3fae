"""Tensor files (``weights.pt``, ``test_predictions.pt``): ``{name: tensor}``, written atomically, read with
``weights_only=True``."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lossbench.compare.store.records import RUN_FILE_FIX, CorruptFileError, atomic_write_bytes

IGNORE_INDEX_KEY = "ignore_index"  # in the predictions: the head's ignore_index, absent for heads without one


def save_tensors(path: str | Path, tensors: dict[str, Tensor]) -> None:
    """``{name: tensor}`` to ``path`` atomically, readable with ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_tensors(path: str | Path) -> dict[str, Tensor]:
    """Read a file written by :func:`save_tensors` (``weights_only=True``: it cannot run code)."""
    value = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(value, dict) or not all(isinstance(v, Tensor) for v in value.values()):
        raise ValueError(f"{path}: expected a mapping of names to tensors, got {type(value).__name__}")
    return value


def load_run_tensors(path: str | Path, what: str) -> dict[str, Any]:
    """A run's torch file of named tensors (:func:`load_tensors`, weights only).

    Raises:
        CorruptFileError: naming ``path`` when torch cannot load it or it holds something else.
    """
    try:
        return load_tensors(path)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        UnicodeDecodeError,
        OSError,
    ) as exc:
        text = str(exc).strip().replace(str(path) + ": ", "")
        found = text.splitlines()[0][:200] if text else type(exc).__name__
        raise CorruptFileError(
            path,
            f"a torch file of named tensors ({what})",
            f"a file torch cannot load ({found})",
            RUN_FILE_FIX,
            "unreadable",
        ) from None

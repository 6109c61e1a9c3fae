"""Fingerprints that prove two runs started from the same weights and saw the same batches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import torch


def state_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too (a counter)
    return h.hexdigest()


def order_fingerprint(indices: Iterable[int]) -> str:
    """sha256 of a batch index sequence (the order in which rows are served)."""
    return hashlib.sha256(",".join(str(int(i)) for i in indices).encode()).hexdigest()


def combine(hashes: Iterable[str]) -> str:
    """One sha256 over several, in the given order."""
    return hashlib.sha256("|".join(hashes).encode()).hexdigest()

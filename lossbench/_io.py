"""Atomic file writes: a temporary file beside the target, flushed, fsynced and renamed over it.

A reader (or a process resumed after ``kill -9``) sees the old file or the new one, never a truncated one. Used by
the comparison's results folder (which adds its confinement check as ``guard``) and by
:class:`lossbench.resume.AtomicCheckpointIO` (Lightning checkpoints of ``lossbench fit``).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from lossbench import _killpoint

TEMPORARY_GLOB = ".*.tmp"
"""The temporary files :func:`atomic_write_bytes` writes beside their targets (``.<name>.<random>.tmp``): a writer
killed mid-write leaves one, which the next writer of the folder deletes."""


def is_global_zero() -> bool:
    """True unless this is a process other than global rank 0 of a distributed run (which must not write)."""
    dist = sys.modules.get("torch.distributed")  # no process group without torch imported
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return (os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0") == "0"  # launched, not yet joined


def atomic_write_bytes(path: str | Path, data: bytes, guard: Callable[[Path], Path] | None = None) -> None:
    """Write ``data`` to ``path`` through a temp file + fsync + rename (never a truncated file).

    ``guard`` checks (or maps) the path before anything is written; it raises to refuse it. A no-op on processes
    other than global rank 0 (:func:`is_global_zero`).
    """
    if not is_global_zero():
        return
    path = guard(Path(path)) if guard is not None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            if _killpoint.armed():  # test hook: die with half of the temporary file written
                f.write(data[: len(data) // 2])
                f.flush()
                _killpoint.kill_point(f"write:{path.name}")
                data = data[len(data) // 2 :]
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # disk full, quota, file size limit: the error names the file it was writing
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _temporary_file(path: Path) -> tuple[int, str]:
    """A new ``.<name>.<random>.tmp`` beside ``path``, created with mode 0666 less the umask (as ``open`` creates
    files; ``tempfile.mkstemp`` would make every written file 0600 whatever the umask)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:  # pragma: no cover - 2**-32 per try
            continue

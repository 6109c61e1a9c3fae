"""One writer per results folder: an advisory lock that the kernel releases when its holder dies.

``lossbench compare`` takes the lock of its ``--output`` folder (the file ``.lossbench.lock``
in it) after validating everything and before writing anything. A second process on the same
folder gets :class:`FolderBusyError` naming the holder's pid, or waits for it (``wait=True``,
``lossbench compare --wait``) and then finds the runs the first one finished. The lock is a
``fcntl.flock`` on the file, so a killed holder (even ``kill -9``) leaves no stale lock: the
next process simply takes it. Only global rank 0 of a distributed run locks (the other ranks
never write). Where ``fcntl`` does not exist (Windows) the folder is not locked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from lossbench.compare.store.layout import LOCK_FILE
from lossbench.compare.store.storage import confined


class FolderBusyError(RuntimeError):
    """Another process holds the results folder's lock."""


class FolderLock:
    """``with FolderLock(folder): ...`` holds the folder's lock (see the module docstring).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with FolderLock(folder):
    ...     try:
    ...         FolderLock(folder).acquire()
    ...     except FolderBusyError as exc:
    ...         print(str(exc).split(" (pid")[0])  # doctest: +ELLIPSIS
    results folder '...' is in use by another lossbench compare
    """

    def __init__(self, folder: str | Path, *, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> None:
        self.folder, self.wait, self.on_wait = Path(folder), bool(wait), on_wait  # on_wait(holder): before waiting
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks here
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(confined(self.path), os.O_RDWR | os.O_CREAT, 0o644)  # truncated and written: never outside
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                if not self.wait:
                    raise FolderBusyError(
                        f"results folder {str(self.folder)!r} is in use by another lossbench compare ({holder}); "
                        "wait for it to finish, or pass --wait to wait and then resume what it left"
                    ) from None
                if self.on_wait is not None:
                    self.on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder ends (or dies), or a signal's handler raises
            os.ftruncate(fd, 0)
            stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
            os.pwrite(fd, f"pid {os.getpid()}, since {stamp}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

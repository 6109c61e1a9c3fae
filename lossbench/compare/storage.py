"""The results folder as storage: writable before anything trains, and a failed write stops the comparison.

A full disk, a quota, a file size limit (``ulimit -f``) or a folder turned read-only is not a
property of one run: every later run would fail the same way. So a write failure is not
recorded as a failed run; it stops the comparison with :class:`WriteFailed` (one line naming
the file and the errno) and, every write being atomic, leaves a folder that resumes once the
cause is fixed.

    >>> import errno
    >>> exc = OSError(errno.ENOSPC, "No space left on device", "runs/x/record.json")
    >>> print(write_failure(exc, "runs/x"))
    could not write 'runs/x/record.json': [Errno 28] No space left on device (ENOSPC)
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

# errors that only a write raises: whatever the file, the storage is at fault
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
# errors that a write into the results folder raises when the folder (not the data) is at fault
_FOLDER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EIO}


class WriteFailed(Exception):
    """A file of the results folder could not be written; the folder resumes once the cause is fixed."""

    def __init__(self, path: str, code: int, reason: str) -> None:
        self.path, self.errno, self.reason = path, code, reason
        name = errno.errorcode.get(code, str(code))
        super().__init__(f"could not write {path!r}: [Errno {code}] {reason} ({name})")


def write_failure(exc: BaseException, root: str | Path) -> WriteFailed | None:
    """``exc`` as a :class:`WriteFailed` when it is a storage failure (or one writing under ``root``), else None."""
    if isinstance(exc, WriteFailed):
        return exc
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    path = str(exc.filename) if exc.filename is not None else str(root)
    under_root = exc.filename is not None and _is_under(Path(path), Path(root))
    if exc.errno in _STORAGE_ERRNOS or (exc.errno in _FOLDER_ERRNOS and under_root):
        return WriteFailed(path, exc.errno, exc.strerror or os.strerror(exc.errno))
    return None


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def check_writable(output: str | Path) -> str | None:
    """Why ``output`` cannot be the results folder (it, or the folder it would be created in), or None.

    Checks without writing: ``output`` is a folder or can be made in its nearest existing parent,
    and that folder accepts new files (``os.access``: permissions and read-only file systems).
    """
    output = Path(output)
    existing = output
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        if existing == output:
            return f"{str(output)!r} exists and is not a folder"
        return f"{str(existing)!r} is a file, so the folder {str(output)!r} cannot be created in it"
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is" if existing == output else f"cannot be created: its parent {str(existing)!r} is"
        return f"{str(output)!r} {what} not writable (permissions or a read-only file system)"
    return None

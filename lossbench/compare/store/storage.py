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

Nothing is written, deleted or moved outside the results folder: while a comparison runs (or its report is
rendered) inside :func:`results_folder`, every write, delete and move-aside first passes :func:`confined`,
which refuses (:class:`OutsideResultsFolder`) a path that resolves outside the folder, through a symbolic
link such as ``DIR/arrays -> ~/x``. A comparison folder never holds another one except its own parts
(``teacher/``, ``tuning/``): :func:`nesting_problem` refuses an ``--output`` inside or around another.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "arrays").symlink_to(tempfile.mkdtemp())
    >>> with results_folder(root):
    ...     _ = confined(root / "runs" / "ce" / "record.json")  # inside: allowed
    ...     confined(root / "arrays" / "seed_0", "delete")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lossbench.compare.store.storage.OutsideResultsFolder: refusing to delete '.../arrays/seed_0': ... outside ...
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path

from lossbench.compare.store.layout import COMPARISON_FILE

NAME_MAX_BYTES = 255  # the longest file or folder name most file systems take (NAME_MAX)

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


class OutsideResultsFolder(WriteFailed):
    """A write, delete or move-aside in the results folder would reach a path outside it (through a symlink)."""

    def __init__(self, path: str | Path, resolved: str | Path, root: str | Path, action: str = "write") -> None:
        self.path, self.errno, self.reason = str(path), errno.EXDEV, "outside the results folder"
        self.resolved, self.root, self.action = str(resolved), str(root), action
        Exception.__init__(
            self,
            f"refusing to {action} {self.path!r}: it resolves to {self.resolved!r}, outside the results "
            f"folder {self.root!r} (through a symbolic link); lossbench writes and deletes only inside its results "
            "folder: replace the link by a folder and rerun",
        )

    def __reduce__(self):
        return type(self), (self.path, self.resolved, self.root, self.action)


_FOLDER: ContextVar[Path | None] = ContextVar("lossbench_results_folder", default=None)


@contextlib.contextmanager
def results_folder(root: str | Path) -> Iterator[Path]:
    """Within the block, :func:`confined` keeps every write, delete and move-aside inside ``root``."""
    token = _FOLDER.set(Path(root).resolve())
    try:
        yield Path(root)
    finally:
        _FOLDER.reset(token)


def confined(path: str | Path, action: str = "write") -> Path:
    """``path``, after checking that it resolves inside the results folder of the enclosing
    :func:`results_folder` (any path outside one); raises :class:`OutsideResultsFolder` otherwise."""
    path = Path(path)
    root = _FOLDER.get()
    if root is not None and not is_under(path, root):
        raise OutsideResultsFolder(path, path.resolve(), root, action)
    return path


def remove_tree(path: str | Path) -> None:
    """Delete the folder ``path`` (if it exists), only inside the results folder (:func:`confined`)."""
    shutil.rmtree(confined(path, "delete"), ignore_errors=True)


def move_aside(path: str | Path, why: str, folder: str | Path | None = None) -> Path:
    """Rename ``path`` to ``<name>.<why>-<UTC time>`` (in ``folder``, default its own), kept for inspection;
    both names inside the results folder (:func:`confined`)."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = confined(Path(folder or path.parent) / f"{path.name}.{why}-{stamp}", "move a file to")
    os.replace(confined(path, "move aside"), aside)
    return aside


def write_failure(exc: BaseException, root: str | Path) -> WriteFailed | None:
    """``exc`` as a :class:`WriteFailed` when it is a storage failure (or one writing under ``root``), else None."""
    if isinstance(exc, WriteFailed):
        return exc
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    path = str(exc.filename) if exc.filename is not None else str(root)
    under_root = exc.filename is not None and is_under(Path(path), Path(root))
    if exc.errno in _STORAGE_ERRNOS or (exc.errno in _FOLDER_ERRNOS and under_root):
        return WriteFailed(path, exc.errno, exc.strerror or os.strerror(exc.errno))
    return None


def is_under(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` resolves (symbolic links followed) to ``root`` or a path inside it."""
    path, root = Path(path), Path(root)
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


def nesting_problem(output: str | Path, parts: tuple[str, ...] = ()) -> str | None:
    """Why ``output`` cannot be a comparison folder because another comparison folder (one holding
    comparison.json) is around it or inside it, or None. ``parts``: the paths, relative to ``output`` and with
    ``/``, of the comparison's own sub-comparisons (``teacher``, ``tuning``, and theirs: ``tuning/teacher``).
    Rerunning the outer comparison deletes and rewrites files in its folder: a comparison nested in it would be
    lost without a word.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / COMPARISON_FILE).write_text("{}")
    >>> print(nesting_problem(root / "arrays" / "seed_0"))  # doctest: +ELLIPSIS
    '.../arrays/seed_0' is inside the comparison folder '...' (it holds comparison.json): ...
    >>> for part in (root / "tuning", root / "tuning" / "teacher"):
    ...     part.mkdir()
    ...     _ = (part / COMPARISON_FILE).write_text("{}")
    >>> nesting_problem(root, parts=("teacher", "tuning", "tuning/teacher")) is None
    True
    """
    output = Path(output)
    lexical, resolved = Path(os.path.abspath(output)), output.resolve()
    for parent in [*lexical.parents, *resolved.parents]:
        if (parent / COMPARISON_FILE).is_file():
            return (
                f"{str(output)!r} is inside the comparison folder {str(parent)!r} (it holds {COMPARISON_FILE}): "
                "rerunning that comparison could delete or overwrite it; choose a folder outside it"
            )
    if (resolved / COMPARISON_FILE).is_file():  # any other non-empty folder is refused as foreign, unwalked
        for found in sorted(resolved.rglob(COMPARISON_FILE)):
            inner = found.parent.relative_to(resolved)
            if inner.parts and inner.as_posix() not in parts:
                return (
                    f"{str(output)!r} holds another comparison folder, {str(output / inner)!r} (it holds "
                    f"{COMPARISON_FILE}): rerunning this comparison could delete or overwrite it; move it out "
                    "first, or choose another folder"
                )
    return None


def folder_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one folder name (no path separators, not ``.``/``..``, at most
    :data:`NAME_MAX_BYTES` bytes of UTF-8), or None.

    >>> folder_name_problem("../../x")
    "it is not a single folder name (it has '/' or is '.' or '..')"
    >>> folder_name_problem("digits") is None
    True
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        return "it is not a single folder name (it has '/' or is '.' or '..')"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > NAME_MAX_BYTES:
        return f"it is {size} bytes long in UTF-8, more than the {NAME_MAX_BYTES} a folder name may have"
    return None

"""What a split holds, by content: a fingerprint of its processed rows and a short description.

The fingerprint is a sha256 over the processed columns (``inputs``, ``target``) row by row in
order: their values, lengths and dtypes, never a path or a modification time. Two splits with
the same fingerprint hold the same rows in the same order; replacing a data file by relabelled
rows at the same path changes it. :func:`describe_split` adds what a reader of a report needs:
rows, and class counts or the target's mean and standard deviation.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

_BATCH = 4096


def _hash_array(h: hashlib._Hash, array: Any) -> None:
    """Feed one Arrow array into ``h``: list lengths level by level, then the leaf values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        lengths = pc.list_value_length(array).fill_null(-1).to_numpy(zero_copy_only=False)
        h.update(b"L" + np.ascontiguousarray(lengths, dtype=np.int64).tobytes())
        _hash_array(h, array.flatten())
        return
    h.update(f"V{kind}|".encode())
    values = array.to_numpy(zero_copy_only=False)
    if values.dtype == object:  # strings or other Python values: their text, separated
        h.update("\x1f".join(repr(v) for v in values).encode())
    else:
        h.update(np.ascontiguousarray(values).tobytes())


def content_fingerprint(dataset: Any, columns: tuple[str, ...] = ("inputs", "target")) -> str:
    """sha256 of a ``datasets.Dataset``'s rows (the given columns that it has), in row order.

    Example:
        >>> import datasets
        >>> a = datasets.Dataset.from_dict({"inputs": [[1.0, 2.0], [3.0, 4.0]], "target": [0, 1]})
        >>> b = datasets.Dataset.from_dict({"inputs": [[1.0, 2.0], [3.0, 4.0]], "target": [1, 1]})
        >>> content_fingerprint(a) == content_fingerprint(a.select([0, 1]))
        True
        >>> content_fingerprint(a) == content_fingerprint(b)
        False
    """
    present = [c for c in columns if c in dataset.column_names]
    h = hashlib.sha256(f"rows={dataset.num_rows}|columns={present}|".encode())
    arrow = dataset.with_format("arrow", columns=present)
    for table in arrow.iter(batch_size=_BATCH):
        for column in present:
            h.update(f"|{column}|".encode())
            _hash_array(h, table[column])
    return h.hexdigest()


def describe_split(
    dataset: Any, target_kind: str | None, class_names: tuple[str, ...] | None = None, num_classes: int | None = None
) -> dict[str, Any]:
    """Rows, content fingerprint and the target's distribution of one processed split.

    ``class`` targets give ``class_counts`` (name -> rows, every class listed, in id order);
    ``real`` targets give ``target_mean`` and ``target_sd`` (ddof 1); other kinds give rows only.
    """
    info: dict[str, Any] = {"rows": int(dataset.num_rows), "fingerprint": content_fingerprint(dataset)}
    if target_kind not in ("class", "real") or "target" not in dataset.column_names:
        return info
    target = (
        np.concatenate(
            [np.asarray(b["target"]) for b in dataset.with_format("numpy", columns=["target"]).iter(batch_size=_BATCH)]
        )
        if dataset.num_rows
        else np.zeros(0)
    )
    if target_kind == "class":
        size = max(int(num_classes or 0), int(target.max()) + 1 if target.size else 0)
        counts = np.bincount(target.astype(np.int64), minlength=size)
        names = list(class_names) if class_names and len(class_names) == size else [str(i) for i in range(size)]
        info["class_counts"] = {name: int(c) for name, c in zip(names, counts)}
    else:
        t = target.astype(np.float64)
        info["target_mean"] = float(t.mean()) if t.size else None
        info["target_sd"] = float(t.std(ddof=1)) if t.size > 1 else None
    return info


def row_digests(dataset: Any, column: str = "inputs") -> list[bytes]:
    """One 16-byte digest per row of ``column`` (its values, dtype and shape): equal rows, equal digests."""
    out: list[bytes] = []
    if column not in dataset.column_names:
        return out
    for batch in dataset.with_format("numpy", columns=[column]).iter(batch_size=_BATCH):
        for row in batch[column]:
            row = np.ascontiguousarray(np.asarray(row))
            out.append(hashlib.blake2b(f"{row.dtype}{row.shape}".encode() + row.tobytes(), digest_size=16).digest())
    return out


def shared_rows(split: list[bytes], other: list[bytes]) -> dict[str, Any] | None:
    """The rows of a split whose inputs are also rows of ``other`` (:func:`row_digests` of each): their count and a
    fingerprint of which inputs they are (sha256 of their sorted digests); None when the splits share none.

    Example:
        >>> import datasets
        >>> train = datasets.Dataset.from_dict({"inputs": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]})
        >>> test = datasets.Dataset.from_dict({"inputs": [[3.0, 4.0], [7.0, 8.0]]})
        >>> shared_rows(row_digests(test), row_digests(train))["rows"]
        1
        >>> shared_rows(row_digests(test), row_digests(train.select([0]))) is None
        True
    """
    known = set(other)
    found = sorted(d for d in split if d in known)
    if not found:
        return None
    return {"rows": len(found), "fingerprint": hashlib.sha256(b"".join(found)).hexdigest()}


def fingerprints_of(described: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``{split: content fingerprint}`` of a ``describe_splits()`` result."""
    return {split: info["fingerprint"] for split, info in described.items()}

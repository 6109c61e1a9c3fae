"""Errors of :class:`~lossbench.data.HFDataModule`: each names the argument, the expected and the actual value."""

from __future__ import annotations

from typing import Any

_OWNER = "HFDataModule"


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub could not be reached to load a dataset by name."""


def _err(message: str) -> ValueError:
    return ValueError(f"{_OWNER}: {message}")


def _check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _err(f"`{name}` must be an int >= {low}{' or None' if allow_none else ''}, got {value!r}")


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise _err(f"`{name}` must be a number in [0, 1), got {value!r}")


def _looks_offline(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a network failure rather than a bad argument."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = type(e).__name__
        if isinstance(e, (ConnectionError, TimeoutError)) or any(k in name for k in ("Offline", "Connect", "Timeout")):
            return True
        e = e.__cause__ or e.__context__
    return False


def _hub_error(path: str, exc: BaseException) -> HubUnreachableError:
    return HubUnreachableError(
        f"{_OWNER}: could not reach the Hugging Face Hub to load `path`={path!r} "
        f"({type(exc).__name__}: {exc}). Check the network (or set HF_HUB_OFFLINE=1 if it is already cached), "
        "or load local files instead: a builder with `data_files`, e.g. path='parquet', "
        "data_files={'train': 'train.parquet'}, or a bundled dataset such as path='lossbench:digits'"
    )

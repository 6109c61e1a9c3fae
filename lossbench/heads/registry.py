"""Short names for heads: built-ins, decorated user classes and ``lossbench.heads`` entry points.

Third-party packages declare heads in their ``pyproject.toml``::

    [project.entry-points."lossbench.heads"]
    my_loss = "my_package.heads:MyLossHead"

Entry points are read from package metadata (cheap) and imported only when their
head is asked for or the registry is listed. A plugin that fails to import gives
one warning naming it; every other head keeps working.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from lossbench._hints import did_you_mean
from lossbench.heads.base import LossHead

GROUP = "lossbench.heads"
BUILTIN = "built-in"


class UnknownHeadError(LookupError):
    """No head is registered under the requested name."""


class DuplicateHeadError(ValueError):
    """Two sources register the same head name."""


@dataclass(frozen=True)
class HeadInfo:
    """One registry row: what ``lossbench heads`` prints."""

    name: str
    task: str
    source: str
    summary: str
    cls: type[LossHead]


_registry: dict[str, tuple[type[LossHead], str]] = {}
_plugins: dict[str, tuple[EntryPoint, str]] | None = None
_failed: dict[str, str] = {}


def _source_of(cls: type) -> str:
    module = cls.__module__
    return BUILTIN if module == "lossbench" or module.startswith("lossbench.") else f"module {module}"


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def _add(name: str, cls: type[LossHead], source: str) -> None:
    if not isinstance(cls, type) or not issubclass(cls, LossHead):
        raise TypeError(f"register_head({name!r}): expected a LossHead subclass from {source}, got {cls!r}")
    current = _registry.get(name)
    if current is not None and current[0] is not cls:
        raise DuplicateHeadError(
            f"head name {name!r} is registered twice: by {current[1]} ({_path(current[0])}) "
            f"and by {source} ({_path(cls)})"
        )
    _registry[name] = (cls, current[1] if current else source)
    if not cls.__dict__.get("name"):
        cls.name = name


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_head(name: str):
    """Class decorator registering a :class:`LossHead` subclass under a short name.

    Example:
        >>> import torch
        >>> from lossbench import LossHead, register_head, get_head
        >>> from lossbench.functional import mse_loss
        >>> @register_head("doc_mse")
        ... class DocMSE(LossHead):
        ...     '''MSE, registered from a docstring.'''
        ...     task = "regression"
        ...     def __init__(self, in_features: int):
        ...         super().__init__(in_features, 1, squeeze=True)
        ...     def _loss(self, outputs, target, reduction):
        ...         return mse_loss(outputs, target, reduction=reduction)
        >>> type(get_head("doc_mse", in_features=4)).__name__
        'DocMSE'
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_head: `name` must be an identifier-like string, got {name!r}")

    def decorator(cls: type[LossHead]) -> type[LossHead]:
        _add(name, cls, _source_of(cls))
        return cls

    return decorator


def _discover() -> dict[str, tuple[EntryPoint, str]]:
    """Entry points of the ``lossbench.heads`` group, read from metadata once (nothing imported)."""
    global _plugins
    if _plugins is None:
        found: dict[str, tuple[EntryPoint, str]] = {}
        for ep in entry_points(group=GROUP):
            owner = getattr(ep, "dist", None)
            dist = f"plugin {owner.name}" if owner is not None else "plugin (unknown distribution)"
            if ep.name in found and found[ep.name][0].value != ep.value:
                raise DuplicateHeadError(
                    f"head name {ep.name!r} is registered twice: by {found[ep.name][1]} ({found[ep.name][0].value}) "
                    f"and by {dist} ({ep.value})"
                )
            found[ep.name] = (ep, dist)
        _plugins = found
    return _plugins


def refresh_plugins() -> None:
    """Forget discovered entry points and failures, so newly installed plugins are found."""
    global _plugins
    _plugins = None
    _failed.clear()
    for name in [n for n, (_, src) in _registry.items() if src.startswith("plugin ")]:
        del _registry[name]


def _load(name: str) -> bool:
    """Import the entry point ``name``; warn once and return False if it fails."""
    ep, source = _discover()[name]
    if name in _failed:
        return False
    try:
        cls = ep.load()
        if not isinstance(cls, type) or not issubclass(cls, LossHead):
            raise TypeError(f"{ep.value} is not a LossHead subclass (got {cls!r})")
    except Exception as exc:  # a broken plugin must not break the others
        _failed[name] = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"lossbench: head plugin {name!r} from {source} ({ep.value}) failed to load and is skipped: "
            f"{_failed[name]}",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    current = _registry.get(name)
    if current is not None and current[0] is cls:  # decorated and declared: the same head
        _registry[name] = (cls, source)
        return True
    _add(name, cls, source)
    return True


def _check_collision(name: str) -> None:
    plugin = _discover().get(name)
    current = _registry.get(name)
    if plugin is None or current is None or current[1].startswith("plugin "):
        return
    if plugin[0].value != _path(current[0]):
        raise DuplicateHeadError(
            f"head name {name!r} is registered twice: by {current[1]} ({_path(current[0])}) "
            f"and by {plugin[1]} ({plugin[0].value})"
        )


def _ensure_builtins() -> None:
    importlib.import_module("lossbench.heads")


def get_head_class(name: str) -> type[LossHead]:
    """The head class registered under ``name`` (imports its plugin if needed)."""
    _ensure_builtins()
    if not isinstance(name, str):
        raise TypeError(f"get_head: `name` must be a string, got {type(name).__name__}")
    _check_collision(name)
    if name not in _registry and name in _discover():
        if not _load(name):
            raise UnknownHeadError(f"head {name!r} comes from a plugin that failed to load: {_failed[name]}")
    if name not in _registry:
        known = sorted(set(_registry) | set(_discover()))
        raise UnknownHeadError(
            f"unknown head name {name!r}{did_you_mean(name, known)} (known heads: {', '.join(known)}; "
            "`lossbench heads` lists them)"
        )
    return _registry[name][0]


def get_head(name: str, **kwargs) -> LossHead:
    """Build the head registered under ``name`` with the given constructor arguments.

    Example:
        >>> from lossbench import get_head
        >>> get_head("focal", in_features=16, num_classes=10, gamma=1.0).task
        'multiclass'
    """
    cls = get_head_class(name)
    return cls(**kwargs)


def list_heads() -> list[HeadInfo]:
    """Every available head, sorted by name, with its task, source and one-line summary."""
    _ensure_builtins()
    for name in _discover():
        _check_collision(name)
        if name not in _registry:
            _load(name)
    return [HeadInfo(name, cls.task, source, _summary(cls), cls) for name, (cls, source) in sorted(_registry.items())]

"""``comparison.json``: what a results folder holds (recipe, data, losses, seeds, target, budget), its schema defined
once by :class:`ComparisonMeta`.

The engine writes it (:func:`write_comparison`) before any run starts; the report, ``recompute`` and a resuming
engine read it (:func:`load_comparison`), which checks every key against the same fields:

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> meta = ComparisonMeta(name="demo", recipe={}, recipe_hash="a", setup_hash="b", baseline="ce",
    ...                       losses=["ce", "focal"], seeds=[0], target={"metric": "val/accuracy", "mode": "max"},
    ...                       budget={"max_steps": 10}, versions={}, created="2026-01-01T00:00:00+00:00")
    >>> write_comparison(root, meta)
    >>> load_comparison(root)["losses"]
    ['ce', 'focal']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossbench.compare.store.layout import COMPARISON_FILE
from lossbench.compare.store.records import COMPARISON_FIX, CorruptFileError, describe, read_json_file, write_json
from lossbench.config import SELECT, finite_number


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def _is_seeds(value: Any) -> bool:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _is(kind: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, kind) and not isinstance(value, bool)


def _rule(kind: str, ok: Callable[[Any], bool]) -> dict[str, Any]:
    return {"kind": kind, "ok": ok}


_TEXT = _rule("a string", _is(str))
_OBJECT = _rule("a JSON object", _is(dict))


@dataclass
class ComparisonMeta:
    """The contents of ``comparison.json``. Fields without a default are required in every file; the others may be
    missing or null (folders written by earlier versions)."""

    name: str = field(metadata=_TEXT)  # the recipe's name
    recipe: dict[str, Any] = field(metadata=_OBJECT)  # the resolved recipe (Recipe.to_dict())
    recipe_hash: str = field(metadata=_TEXT)  # the whole recipe's hash
    setup_hash: str = field(metadata=_TEXT)  # what every run shares (recipe setup + data contents)
    baseline: str = field(metadata=_TEXT)  # the loss every other one is compared with
    losses: list[str] = field(metadata=_rule("a non-empty list of loss names", _is_names))
    seeds: list[int] = field(metadata=_rule("a non-empty list of whole numbers", _is_seeds))
    target: dict[str, Any] = field(metadata=_OBJECT)  # {metric, mode, threshold}
    budget: dict[str, Any] = field(metadata=_OBJECT)  # {max_epochs, max_steps, eval_every_n_steps}
    versions: dict[str, str] = field(metadata=_OBJECT)  # library versions
    created: str = field(metadata=_TEXT)  # ISO time of the first write (kept when the folder resumes)
    recipe_setup_hash: str | None = field(default=None, metadata=_TEXT)  # the recipe's part of setup_hash
    data: dict[str, Any] | None = field(default=None, metadata=_OBJECT)  # split -> rows, fingerprint, class counts
    select: str | None = field(default=None, metadata=_rule("'final' or 'best'", lambda v: v in SELECT))
    optimizer: dict[str, Any] | None = field(default=None, metadata=_OBJECT)
    schedule: dict[str, Any] | None = field(default=None, metadata=_OBJECT)
    tuned: bool | None = field(default=None, metadata=_rule("true or false", lambda v: isinstance(v, bool)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


REQUIRED_KEYS = tuple(f.name for f in dataclasses.fields(ComparisonMeta) if f.default is dataclasses.MISSING)
"""The keys every ``comparison.json`` has."""


def comparison_path(root: str | Path) -> Path:
    return Path(root) / COMPARISON_FILE


def write_comparison(root: str | Path, meta: ComparisonMeta) -> None:
    """Write ``root/comparison.json`` atomically."""
    write_json(comparison_path(root), meta.to_dict())


def load_comparison(root: str | Path) -> dict[str, Any]:
    """Read and check ``root/comparison.json``.

    Raises:
        FileNotFoundError: when the file is missing (``root`` is not a comparison folder).
        CorruptFileError: (a ValueError) naming the file, when it is not UTF-8 JSON, not an object, a required
            key is missing, a field has another type than `lossbench compare` writes, or the baseline is not
            one of the losses.
    """
    path = comparison_path(root)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {Path(root)} is not a lossbench comparison folder "
            "(`lossbench compare RECIPE` creates one)"
        )
    comparison = read_json_file(path, "a comparison description written by `lossbench compare`", COMPARISON_FIX)

    def corrupt(expected: str, found: str) -> CorruptFileError:
        return CorruptFileError(path, expected, found, COMPARISON_FIX)

    if not isinstance(comparison, dict):
        raise corrupt("a JSON object", describe(comparison))
    missing = [key for key in REQUIRED_KEYS if key not in comparison]
    if missing:
        raise corrupt(f"the keys {list(REQUIRED_KEYS)}", f"missing keys {missing}")
    for f in dataclasses.fields(ComparisonMeta):
        value = comparison.get(f.name)
        if (f.name in REQUIRED_KEYS or value is not None) and not f.metadata["ok"](value):
            raise corrupt(f"{f.metadata['kind']} for {f.name!r}", describe(value))
    for key in ("losses", "seeds"):
        values = comparison[key]
        if len(set(values)) != len(values):
            raise corrupt(f"distinct {key}", f"{key} {values}")
    if comparison["baseline"] not in comparison["losses"]:
        raise corrupt(f"'baseline' one of 'losses' {comparison['losses']}", describe(comparison["baseline"]))
    _check_target(comparison["target"], corrupt)
    for split, info in (comparison.get("data") or {}).items():
        if not isinstance(info, dict):
            raise corrupt(f"a JSON object for data[{split!r}]", describe(info))
    return comparison


def _check_target(target: dict[str, Any], corrupt: Callable[[str, str], CorruptFileError]) -> None:
    threshold = target.get("threshold")
    metric = target.get("metric")
    if (
        not isinstance(metric, str)
        or not metric
        or target.get("mode") not in ("max", "min")
        or not (threshold is None or finite_number(threshold))
    ):
        raise corrupt(
            "'target' {'metric': 'val/<name>', 'mode': 'max'|'min', 'threshold': a number or null}", f"{target!r}"
        )

"""A recipe's ``teacher:`` section, parsed and checked (the teacher's runs: ``execution/teacher.py``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lossbench.compare.recipe.checks import RecipeError, check_config, check_keys


@dataclass
class TeacherConfig:
    """A recipe's ``teacher:`` section: a checkpoint to load (the same teacher for every seed), or a teacher to train
    first, once per seed, on the students' data and batch order. Its keys and defaults, defined once."""

    checkpoint: str | None = None  # a LossbenchModule checkpoint file (then only sha256 may be given besides)
    sha256: str | None = None  # the checkpoint file's sha256 (computed when not given; in the setup hash)
    head: str = "ce"  # a trained teacher's head: a registered name that does not distil
    head_args: dict[str, Any] | None = None  # its arguments
    backbone: dict[str, Any] | None = None  # its backbone settings (default: the students')
    max_epochs: int | None = None  # its budget: one of max_epochs and max_steps (default: the students')
    max_steps: int | None = None


KEYS = tuple(f.name for f in fields(TeacherConfig))


def parse_teacher(raw: Any) -> dict[str, Any]:
    """Check a recipe's ``teacher:`` section; returns it with its defaults (``head: ce``)."""
    from lossbench.config import BackboneConfig, defaults
    from lossbench.heads.registry import get_head_class

    if not isinstance(raw, dict) or not raw:
        raise RecipeError(
            f"recipe: `teacher` must be a mapping (`checkpoint`, or `head`, `backbone` and a budget), got {raw!r}"
        )
    check_keys("teacher.", raw, KEYS)
    if "checkpoint" in raw:
        extra = sorted(k for k in raw if k not in ("checkpoint", "sha256"))
        if extra:
            raise RecipeError(
                f"recipe: `teacher.checkpoint` loads a trained teacher; {extra} would train one: give one or the other"
            )
        path = raw["checkpoint"]
        if not isinstance(path, str) or not Path(path).is_file():
            raise RecipeError(
                f"recipe: `teacher.checkpoint` must be a LossbenchModule checkpoint file, got {path!r}"
                + (" (no such file)" if isinstance(path, str) else "")
            )
        pinned = raw.get("sha256")
        if pinned is not None and not (
            isinstance(pinned, str) and len(pinned) == 64 and all(c in "0123456789abcdef" for c in pinned)
        ):
            raise RecipeError(
                f"recipe: `teacher.sha256` must be the checkpoint file's sha256 (64 lowercase hex "
                f"digits), got {pinned!r}"
            )
        return {"checkpoint": path, "sha256": check_checkpoint_contents(path, pinned)}
    if "sha256" in raw:
        raise RecipeError("recipe: `teacher.sha256` fingerprints a `teacher.checkpoint`; a trained teacher has none")
    head = raw.get("head", TeacherConfig.head)
    if not isinstance(head, str) or "." in head:
        raise RecipeError(f"recipe: `teacher.head` must be a registered head name, got {head!r}")
    cls = get_head_class(head)
    if cls.distils:
        raise RecipeError(f"recipe: `teacher.head` {head!r} distils itself; a teacher learns from the labels")
    args = raw.get("head_args") or {}
    if not isinstance(args, dict):
        raise RecipeError(f"recipe: `teacher.head_args` must be a mapping, got {args!r}")
    backbone = raw.get("backbone")
    if backbone is not None:
        if not isinstance(backbone, dict):
            raise RecipeError(f"recipe: `teacher.backbone` must be a mapping, got {backbone!r}")
        check_keys("teacher.backbone.", backbone, list(defaults(BackboneConfig)))
        check_config(BackboneConfig(**{**defaults(BackboneConfig), **backbone}), "teacher.backbone")
    budget = {k: raw[k] for k in ("max_epochs", "max_steps") if raw.get(k) is not None}
    for key, value in budget.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RecipeError(f"recipe: `teacher.{key}` must be a positive int, got {value!r}")
    if len(budget) > 1:
        raise RecipeError("recipe: `teacher` takes one of `max_epochs` or `max_steps`, got both")
    return {"head": head, "head_args": dict(args), **({"backbone": dict(backbone)} if backbone else {}), **budget}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_checkpoint_contents(path: str, sha256: str | None, output: str | Path | None = None) -> str:
    """The sha256 of the teacher checkpoint ``path``; a RecipeError naming it when it is not ``sha256`` (the
    recipe's pin, or what the runs of ``output`` were trained with)."""
    try:
        now = file_sha256(path)
    except OSError as exc:
        raise RecipeError(f"recipe: `teacher.checkpoint` {path!r} cannot be read: {exc.strerror or exc}") from None
    if sha256 is not None and now != sha256:
        where = (
            f"since the runs in `--output` {str(output)!r} distilled from it"
            if output is not None
            else "from the sha256 in the recipe (`teacher.sha256`, or taken when the recipe was read)"
        )
        raise RecipeError(
            f"compare: the teacher checkpoint {path!r} changed {where} (sha256 {sha256[:12]} then, "
            f"{now[:12]} now): its students would learn from two teachers; restore the file, or use "
            "a new --output folder (or the new file's sha256)"
        )
    return now

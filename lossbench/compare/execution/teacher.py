"""Distillation in a comparison: a teacher whose logits on the training rows every student of a seed learns from.

A recipe's ``teacher:`` section either trains one first, once per seed, as a comparison of its
own in ``DIR/teacher`` (same data and batch order as the students, its own backbone, head and
budget), or loads a ``LossbenchModule`` checkpoint (the same teacher for every seed)::

    teacher: {head: ce, backbone: {d_model: 64, nhead: 4, num_layers: 2}, max_epochs: 10}
    teacher: {checkpoint: teachers/digits.ckpt}

A checkpoint's contents are fingerprinted (the sha256 of the file, ``teacher.sha256`` in the resolved recipe,
so part of the setup hash, like the data's contents): a file that changes is refused when the results
folder resumes or grows (naming it), and when it changes between the check and the loading. Give
``sha256`` in the recipe to pin the file you mean.

Its logits on the training split (row order, eval mode) ride along every training batch of its
seed (``batch["teacher"]``): heads that distil (``kd``) use them, the others (the hard-label
baseline) ignore them. Each run records their sha256 (``fingerprints["teacher"]``), which the
fairness check compares within a seed; the teacher's own test metrics are in the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lossbench.compare.recipe import LossSpec, RecipeError, _check_keys, check_config

if TYPE_CHECKING:
    from lossbench.compare.recipe import Recipe

TEACHER_DIR = "teacher"
TEACHER_LABEL = "teacher"
KEYS = ("checkpoint", "sha256", "head", "head_args", "backbone", "max_epochs", "max_steps")


def parse_teacher(raw: Any) -> dict[str, Any]:
    """Check a recipe's ``teacher:`` section; returns it with its defaults (``head: ce``)."""
    from lossbench.config import BackboneConfig, defaults
    from lossbench.heads.registry import get_head_class

    if not isinstance(raw, dict) or not raw:
        raise RecipeError(f"recipe: `teacher` must be a mapping (`checkpoint`, or `head`, `backbone` and a budget), "
                          f"got {raw!r}")
    _check_keys("teacher.", raw, KEYS)
    if "checkpoint" in raw:
        extra = sorted(k for k in raw if k not in ("checkpoint", "sha256"))
        if extra:
            raise RecipeError(f"recipe: `teacher.checkpoint` loads a trained teacher; {extra} would train one: "
                              "give one or the other")
        path = raw["checkpoint"]
        if not isinstance(path, str) or not Path(path).is_file():
            raise RecipeError(f"recipe: `teacher.checkpoint` must be a LossbenchModule checkpoint file, got {path!r}"
                              + (" (no such file)" if isinstance(path, str) else ""))
        pinned = raw.get("sha256")
        if pinned is not None and not (isinstance(pinned, str) and len(pinned) == 64
                                       and all(c in "0123456789abcdef" for c in pinned)):
            raise RecipeError(f"recipe: `teacher.sha256` must be the checkpoint file's sha256 (64 lowercase hex "
                              f"digits), got {pinned!r}")
        return {"checkpoint": path, "sha256": check_checkpoint_contents(path, pinned)}
    if "sha256" in raw:
        raise RecipeError("recipe: `teacher.sha256` fingerprints a `teacher.checkpoint`; a trained teacher has none")
    head = raw.get("head", "ce")
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
        _check_keys("teacher.backbone.", backbone, list(defaults(BackboneConfig)))
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
        where = (f"since the runs in `--output` {str(output)!r} distilled from it" if output is not None
                 else "from the sha256 in the recipe (`teacher.sha256`, or taken when the recipe was read)")
        raise RecipeError(f"compare: the teacher checkpoint {path!r} changed {where} (sha256 {sha256[:12]} then, "
                          f"{now[:12]} now): its students would learn from two teachers; restore the file, or use "
                          "a new --output folder (or the new file's sha256)")
    return now


def check_same_teacher(previous: dict[str, Any] | None, recipe: Recipe, output: str | Path) -> None:
    """Refuse to resume or grow the results folder ``output`` (``previous``: its comparison.json's recipe) when its
    teacher checkpoint's contents are not those its runs distilled from, naming the checkpoint."""
    before = (previous or {}).get("teacher") if isinstance(previous, dict) else None
    now = recipe.teacher or {}
    if not isinstance(before, dict) or "checkpoint" not in before or "checkpoint" not in now:
        return
    if before.get("sha256") is None:
        raise RecipeError(f"compare: the runs in `--output` {str(output)!r} distilled from the teacher checkpoint "
                          f"{before['checkpoint']!r} without recording its contents' sha256 (an older lossbench): "
                          "that the file is unchanged cannot be checked; use a new --output folder")
    check_checkpoint_contents(now["checkpoint"], before["sha256"], output)


def check_distillers(recipe: Recipe) -> None:
    """A loss that distils needs a teacher; a teacher needs a loss that distils."""
    from lossbench.module import resolve_head_class

    distil = [loss.label for loss in recipe.losses if resolve_head_class(loss.head).distils]
    if distil and recipe.teacher is None:
        raise RecipeError(f"recipe: losses {distil} distil from a teacher: give a `teacher:` section (a checkpoint, "
                          "or a head and a budget to train one first)")
    if recipe.teacher is not None and not distil:
        raise RecipeError("recipe: `teacher` is given but no loss distils from it (e.g. `{name: kd, args: "
                          "{temperature: 4.0, alpha: 0.5}}`)")


def teacher_recipe(recipe: Recipe) -> Recipe:
    """The comparison that trains the teachers: one run per seed of ``recipe`` (a tuning comparison has its own)."""
    t = recipe.teacher or {}
    trainer = dict(recipe.trainer)
    if "max_epochs" in t or "max_steps" in t:
        trainer.update(max_epochs=t.get("max_epochs"), max_steps=t.get("max_steps"))
    return dataclasses.replace(
        recipe, name=f"{recipe.name}-teacher", losses=[LossSpec(TEACHER_LABEL, t["head"], dict(t["head_args"]))],
        baseline=TEACHER_LABEL, seeds=list(recipe.seeds), tune=None, teacher=None, trainer=trainer,
        backbone={**recipe.backbone, **t.get("backbone", {})},
    )


@torch.no_grad()
def training_logits(model: Any, dm: Any) -> torch.Tensor:
    """``model``'s logits on ``dm``'s training split, in row order, eval mode, float32 on the CPU."""
    from lossbench.data.loading import Collate, in_memory

    rows, collate = in_memory(dm.train_dataset), Collate(dm.spec, dm.padding)
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        parts = []
        for start in range(0, len(rows), 512):
            batch = collate([rows[i] for i in range(start, min(start + 512, len(rows)))])
            inputs = batch["inputs"].to(param.device)
            parts.append(model(inputs.to(param.dtype) if inputs.is_floating_point() else inputs).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts)


def fingerprint(logits: torch.Tensor) -> str:
    """sha256 of the logits' float32 bytes and shape."""
    data = logits.detach().to(torch.float32).contiguous().cpu().numpy()
    return hashlib.sha256(repr(tuple(data.shape)).encode() + data.tobytes()).hexdigest()


def load_checkpoint_teacher(path: str, spec: Any, sha256: str | None = None) -> Any:
    """A ``LossbenchModule`` checkpoint as a teacher for data of ``spec`` (weights only, no code run, no model much
    larger than its weights); ``sha256``: the contents it must have (the recipe's ``teacher.sha256``), checked
    after loading, so that the teacher used is the one fingerprinted."""
    from lossbench.module import LossbenchModule

    try:
        model = LossbenchModule.load_from_checkpoint(path, map_location="cpu")
    except Exception as exc:
        raise RecipeError(f"recipe: `teacher.checkpoint` {path!r} cannot be loaded as a LossbenchModule: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}") from None
    check_checkpoint_contents(path, sha256)
    classes = getattr(model.head, "num_classes", None)
    if model.head.task != "multiclass" or classes != spec.num_classes:
        raise RecipeError(f"recipe: `teacher.checkpoint` {path!r} predicts {classes} classes ({model.head.task} head), "
                          f"the data has {spec.num_classes} classes: a teacher must predict the data's classes")
    if model.data_spec is not None and model.data_spec != spec:
        raise RecipeError(f"recipe: `teacher.checkpoint` {path!r} was trained on data with spec {model.data_spec}, "
                          f"this data gives {spec}")
    return model



def teacher_section(root: Path, comparison: dict[str, Any]) -> list[str]:
    """Markdown: what the students distilled from, and the teachers' own test metrics (mean over seeds)."""
    import statistics

    from lossbench.compare.format import _num
    from lossbench.compare.records import load_records
    from lossbench.compare.report_data import _table

    given = (comparison.get("recipe") or {}).get("teacher")
    if not given:
        return []
    lines = ["## Teacher", ""]
    if "checkpoint" in given:
        contents = f" (sha256 `{given['sha256'][:12]}`)" if given.get("sha256") else ""
        return lines + [f"Every seed's students distilled from the checkpoint `{given['checkpoint']}`{contents} (its "
                        "logits on the training rows; fingerprint in each record).", ""]
    records = [r for r, _ in load_records(Path(root) / TEACHER_DIR)] if (Path(root) / TEACHER_DIR).is_dir() else []
    finished = [r for r in records if r.status == "finished"]
    backbone = given.get("backbone") or {}
    budget = ", ".join(f"{k} {given[k]}" for k in ("max_epochs", "max_steps") if k in given) or "the recipe's budget"
    shape = ", ".join(f"{k} {v}" for k, v in backbone.items()) or "the students'"
    lines += [f"Each seed's teacher was trained first (`{given['head']}` head, backbone {shape}, {budget}; in "
              "`teacher/`) on the same training rows and batch order "
              "as its students; the students that distil learn from its logits on the training rows.", ""]
    metrics = sorted({m for r in finished for m in r.test})
    if finished and metrics:
        rows = [[m, str(len(finished)), _num(statistics.fmean(r.test[m] for r in finished if m in r.test))]
                for m in metrics]
        lines += _table(["teacher test metric", "seeds", "mean"], rows) + [""]
    return lines

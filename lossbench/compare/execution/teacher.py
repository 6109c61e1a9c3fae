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

from lossbench.compare.recipe.checks import RecipeError
from lossbench.compare.recipe.schema import LossSpec
from lossbench.compare.recipe.teacher import check_checkpoint_contents
from lossbench.compare.store.layout import TEACHER_LABEL

if TYPE_CHECKING:
    from lossbench.compare.recipe.schema import Recipe


def check_same_teacher(previous: dict[str, Any] | None, recipe: Recipe, output: str | Path) -> None:
    """Refuse to resume or grow the results folder ``output`` (``previous``: its comparison.json's recipe) when its
    teacher checkpoint's contents are not those its runs distilled from, naming the checkpoint."""
    before = (previous or {}).get("teacher") if isinstance(previous, dict) else None
    now = recipe.teacher or {}
    if not isinstance(before, dict) or "checkpoint" not in before or "checkpoint" not in now:
        return
    if before.get("sha256") is None:
        raise RecipeError(
            f"compare: the runs in `--output` {str(output)!r} distilled from the teacher checkpoint "
            f"{before['checkpoint']!r} without recording its contents' sha256 (an older lossbench): "
            "that the file is unchanged cannot be checked; use a new --output folder"
        )
    check_checkpoint_contents(now["checkpoint"], before["sha256"], output)


def check_distillers(recipe: Recipe) -> None:
    """A loss that distils needs a teacher; a teacher needs a loss that distils."""
    from lossbench.module import resolve_head_class

    distil = [loss.label for loss in recipe.losses if resolve_head_class(loss.head).distils]
    if distil and recipe.teacher is None:
        raise RecipeError(
            f"recipe: losses {distil} distil from a teacher: give a `teacher:` section (a checkpoint, "
            "or a head and a budget to train one first)"
        )
    if recipe.teacher is not None and not distil:
        raise RecipeError(
            "recipe: `teacher` is given but no loss distils from it (e.g. `{name: kd, args: "
            "{temperature: 4.0, alpha: 0.5}}`)"
        )


def teacher_recipe(recipe: Recipe) -> Recipe:
    """The comparison that trains the teachers: one run per seed of ``recipe`` (a tuning comparison has its own)."""
    t = recipe.teacher or {}
    trainer = dict(recipe.trainer)
    if "max_epochs" in t or "max_steps" in t:
        trainer.update(max_epochs=t.get("max_epochs"), max_steps=t.get("max_steps"))
    return dataclasses.replace(
        recipe,
        name=f"{recipe.name}-teacher",
        losses=[LossSpec(TEACHER_LABEL, t["head"], dict(t["head_args"]))],
        baseline=TEACHER_LABEL,
        seeds=list(recipe.seeds),
        tune=None,
        teacher=None,
        trainer=trainer,
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
        raise RecipeError(
            f"recipe: `teacher.checkpoint` {path!r} cannot be loaded as a LossbenchModule: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}"
        ) from None
    check_checkpoint_contents(path, sha256)
    classes = getattr(model.head, "num_classes", None)
    if model.head.task != "multiclass" or classes != spec.num_classes:
        raise RecipeError(
            f"recipe: `teacher.checkpoint` {path!r} predicts {classes} classes ({model.head.task} head), "
            f"the data has {spec.num_classes} classes: a teacher must predict the data's classes"
        )
    if model.data_spec is not None and model.data_spec != spec:
        raise RecipeError(
            f"recipe: `teacher.checkpoint` {path!r} was trained on data with spec {model.data_spec}, "
            f"this data gives {spec}"
        )
    return model

"""Your own backbone: any ``torch.nn.Module``, named by class path, in a recipe or in ``LossbenchModule``.

The backbone contract (the one definition; ``docs/custom_model.md`` shows it in use):

- **Named** ``{class_path: "pkg.module.MyEncoder", init_args: {...}}`` (LightningCLI's shape): lossbench imports
  ``pkg.module`` (running its code, as importing any module does) and builds ``MyEncoder(**init_args)``, which
  must be a ``torch.nn.Module``.
- **Built once per seed**, under that seed's RNG (``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``):
  every loss of a seed starts from a copy of the same weights, fingerprinted in each record.
- **Called** as ``backbone(inputs)`` on the batch inputs of the data's input kind (:class:`lossbench.data.DataSpec`):
  ``features``: float ``(B, num_features)``; ``tokens``: int64 ids ``(B, T)`` padded with the spec's ``pad_id``;
  ``image``: float ``(B, C, H, W)``.
- **Returns** per-example features ``(B, F)`` (per-token ``(B, T, F)`` for a language-model head).
- ``F`` is its ``out_features`` attribute when it has one, or else measured by one forward of a 2-row batch (in
  eval mode, without gradients, the global RNG untouched) before training; the record says which.
- A comparison's fused executor trains a seed's losses as one vmapped array when the backbone allows it; a
  backbone with state buffers (BatchNorm's running statistics) or one that ``torch.func.vmap`` cannot batch trains
  sequentially instead, with the reason in the records.

A class path found in a file lossbench reads (a checkpoint's hyper-parameters, a results folder) is never
imported on that file's word.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lossbench._classpath import import_class

KEYS = ("class_path", "init_args")
"""The keys of a backbone given by class path."""


def is_class_path(backbone: Any) -> bool:
    """Whether ``backbone`` (a recipe's ``backbone:`` value, a module's ``backbone=`` argument) names a class."""
    return isinstance(backbone, dict) and "class_path" in backbone


def check_class_path(backbone: dict[str, Any], where: str = "backbone") -> dict[str, Any]:
    """``backbone`` as ``{class_path, init_args}`` (init_args defaulting to {}); a ValueError naming the key."""
    unknown = sorted(set(backbone) - set(KEYS))
    if unknown:
        raise ValueError(
            f"`{where}` names a class (`class_path`), so it takes only `class_path` and `init_args`; got {unknown} "
            "(the built-in Transformer's settings do not apply to your module)"
        )
    path, args = backbone["class_path"], backbone.get("init_args") or {}
    if not isinstance(path, str) or "." not in path.strip(".") or " " in path:
        raise ValueError(f"`{where}.class_path` must be a dotted path 'package.module.Class', got {path!r}")
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ValueError(f"`{where}.init_args` must be a mapping of argument names to values, got {args!r}")
    return {"class_path": path, "init_args": dict(args)}


def import_backbone_class(class_path: str, where: str = "backbone") -> type[nn.Module]:
    """Import the class ``class_path`` names (this runs its module's code); a ValueError naming ``where``."""
    return import_class(class_path, where, nn.Module, "torch.nn.Module", "backbone")


def build_class_path(backbone: dict[str, Any], seed: int | None = None, where: str = "backbone") -> nn.Module:
    """``cls(**init_args)`` for ``backbone = {class_path, init_args}``, under ``seed``'s RNG when given."""
    given = check_class_path(backbone, where)
    cls = import_backbone_class(given["class_path"], where)
    try:
        if seed is None:
            return cls(**given["init_args"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(**given["init_args"])
    except TypeError as exc:  # a wrong argument name or count: say whose
        raise ValueError(f"`{where}`: {given['class_path']}(**{given['init_args']}) failed: {exc}") from exc


def describe(backbone: dict[str, Any], parameters: int | None = None) -> str:
    """``"my_pkg.CNN(channels=32), 81k parameters"``: how the report names a class-path backbone."""
    args = ", ".join(f"{k}={v!r}" for k, v in (backbone.get("init_args") or {}).items())
    size = "" if parameters is None else f", {count_text(parameters)} parameters"
    return f"{backbone['class_path']}({args}){size}"


def count_text(n: int) -> str:
    """``81200`` -> ``'81.2k'``."""
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)

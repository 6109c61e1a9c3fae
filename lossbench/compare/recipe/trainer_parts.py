"""A recipe's Lightning loggers and callbacks (``trainer.logger``, ``trainer.callbacks``): checked when the recipe
is read, built once per run (:func:`make_logger`, :func:`make_callbacks`).

``logger`` is ``"csv"``, ``"tensorboard"`` or ``{class_path, init_args}`` naming any Lightning ``Logger`` (MLflow,
W&B ... when installed). Each run gets its own: a logger that takes ``save_dir`` writes under the run's folder
(``<loss>/seed<k>/logs``); every logger gets the run's loss, seed and head as hyper-parameters. ``callbacks`` are
``{class_path, init_args}`` items naming Lightning ``Callback`` classes, built fresh for every run from the same
arguments, so every loss trains under the same callbacks. A class path's module is imported (its code runs) when
the recipe is read, as for heads and backbones.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from lossbench._classpath import import_class
from lossbench.models.custom import describe

LOGGERS = {"csv": "lightning.pytorch.loggers.CSVLogger", "tensorboard": "lightning.pytorch.loggers.TensorBoardLogger"}
"""``trainer.logger`` short names -> the Lightning logger each names."""


def _class_path(item: Any, where: str, base: type, base_name: str) -> tuple[type, dict[str, Any]]:
    """``{class_path, init_args}`` checked and imported: the class and its arguments."""
    if not isinstance(item, dict) or not isinstance(item.get("class_path"), str):
        raise ValueError(f"`{where}` must be {{class_path: package.module.Class, init_args: {{...}}}}, got {item!r}")
    unknown = sorted(set(item) - {"class_path", "init_args"})
    if unknown:
        raise ValueError(f"`{where}` takes only `class_path` and `init_args`, got {unknown}")
    args = item.get("init_args") or {}
    if not isinstance(args, dict):
        raise ValueError(f"`{where}.init_args` must be a mapping, got {args!r}")
    return import_class(item["class_path"], where, base, base_name, base_name), dict(args)


def check_logger(logger: Any) -> None:
    """``trainer.logger``: None, a short name of :data:`LOGGERS`, or a Logger class path (imported now)."""
    from lightning.pytorch.loggers import Logger

    if logger is None:
        return
    if isinstance(logger, str):
        if logger not in LOGGERS:
            raise ValueError(
                f"`trainer.logger` must be {' or '.join(map(repr, LOGGERS))}, a {{class_path, init_args}} logger or "
                f"null, got {logger!r}"
            )
        if logger == "tensorboard":
            _check_tensorboard()
        return
    _class_path(logger, "trainer.logger", Logger, "lightning Logger")


def _check_tensorboard() -> None:
    from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE, _TENSORBOARDX_AVAILABLE

    if not (_TENSORBOARD_AVAILABLE or _TENSORBOARDX_AVAILABLE):
        raise ValueError("`trainer.logger: tensorboard` needs TensorBoard: pip install tensorboard")


def check_callbacks(callbacks: Any) -> None:
    """``trainer.callbacks``: a list of Callback class paths (imported now)."""
    import lightning.pytorch as pl

    if not isinstance(callbacks, list):
        raise ValueError(f"`trainer.callbacks` must be a list of {{class_path, init_args}} items, got {callbacks!r}")
    for i, item in enumerate(callbacks):
        _class_path(item, f"trainer.callbacks[{i}]", pl.Callback, "lightning Callback")


def make_logger(setting: Any, folder: Path, tags: dict[str, Any]) -> Any:
    """The run's own logger (or False): under ``folder/logs`` when it takes ``save_dir``, tagged with ``tags``."""
    import lightning.pytorch as pl

    if setting is None:
        return False
    if isinstance(setting, str):
        setting = {"class_path": LOGGERS[setting], "init_args": {"name": "", "version": ""}}
    cls, args = _class_path(setting, "trainer.logger", pl.loggers.Logger, "lightning Logger")
    if "save_dir" in inspect.signature(cls).parameters and "save_dir" not in args:
        args["save_dir"] = str(folder / "logs")
    logger = cls(**args)
    logger.log_hyperparams(tags)
    return logger


def make_callbacks(settings: list[Any]) -> list[Any]:
    """A fresh instance of every ``trainer.callbacks`` item, for one run."""
    import lightning.pytorch as pl

    out = []
    for i, item in enumerate(settings):
        cls, args = _class_path(item, f"trainer.callbacks[{i}]", pl.Callback, "lightning Callback")
        out.append(cls(**args))
    return out


def describe_callbacks(settings: list[Any]) -> list[str]:
    """``["lightning.pytorch.callbacks.EarlyStopping(monitor='val/loss', patience=2)"]``: what the records say."""
    return [describe(item) for item in settings]

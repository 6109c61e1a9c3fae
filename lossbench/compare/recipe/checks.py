"""The recipe's checks that every section shares: one error type, unknown keys with a "did you mean", the bounds
on what a recipe may ask for, seeds, head class paths, and the trainer's and data's values.

Bounds guard against typos and hostile files (a billion seeds, a position table larger than memory), not against
real comparisons: each is far above any.
"""

from __future__ import annotations

from typing import Any

from lossbench._classpath import import_class
from lossbench._hints import did_you_mean
from lossbench.config import ConfigError, finite_number

MAX_LABEL_BYTES = 64
"""A loss label names its run folder and plot files: at most this many bytes of UTF-8, well below the 255-byte
name limit of file systems once suffixes (``.t03``, ``reliability_...png``) are added."""


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key, the expected and the given value."""


def check_keys(where: str, given: dict[str, Any], allowed: list[str] | tuple[str, ...]) -> None:
    for key in given:
        if key not in allowed:
            raise RecipeError(
                f"recipe: unknown key `{where}{key}`{did_you_mean(str(key), list(allowed))} "
                f"(allowed: {', '.join(allowed)})"
            )


MAX_SEEDS = 1_000  # seeds of one comparison (each is a run per loss)
MAX_RETRIES = 100  # launcher.retries: restarts of a unit whose worker died


MAX_SEED = 2**32 - 1  # the largest seed torch and numpy accept


MAX_LENGTH = 65_536  # `data.max_length`: tokens per sequence (the position table is max_length x d_model)


MAX_PARAMETERS = 1_000_000_000  # backbone parameters (4 GB in float32), counted before it is allocated


def is_seed_list(seeds: Any) -> bool:
    """Whether ``seeds`` is a list of 1 to :data:`MAX_SEEDS` ints in [0, :data:`MAX_SEED`] (``seeds``,
    ``tune.seeds``)."""
    return (
        isinstance(seeds, list)
        and 1 <= len(seeds) <= MAX_SEEDS
        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds)
    )


def shown_seeds(given: Any) -> str:
    """``given`` as an error shows it: a long list by its length and first values."""
    if isinstance(given, list) and len(given) > 10:
        return f"a list of {len(given)} starting {given[:5]}"
    return repr(given)


def import_head_class(class_path: str, i: int) -> type:
    """Import a user-named head class: this runs that module's code (documented)."""
    from lossbench.heads.base import LossHead

    try:
        return import_class(class_path, f"losses[{i}]", LossHead, "LossHead", "head")
    except ValueError as exc:
        raise RecipeError(f"recipe: {exc}") from exc.__cause__


def check_config(config: Any, section: str) -> None:
    """A config's own check (:mod:`lossbench.config`), naming its fields as ``<section>.<field>`` keys."""
    try:
        config.check("recipe", lambda f: f"{section}.{f}")
    except ConfigError as exc:
        raise RecipeError(str(exc)) from None


def check_trainer_values(trainer: dict[str, Any], on_this_machine: bool = True) -> None:
    """Trainer values Lightning would only refuse when the first run starts (after the folder is written).
    ``on_this_machine``: the runs train here, so the accelerator must exist here (not so for Ray's workers)."""
    from typing import get_args

    try:
        from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
    except ImportError:  # moved in another Lightning version: Lightning checks it at the first run
        allowed: tuple[Any, ...] = ()
    else:
        allowed = tuple(v for arg in get_args(_PRECISION_INPUT) for v in get_args(arg))
    if allowed and trainer["precision"] not in allowed:
        shown = ", ".join(repr(v) for v in allowed if isinstance(v, str))
        raise RecipeError(
            f"recipe: `trainer.precision` must be one of Lightning's precisions ({shown}), got {trainer['precision']!r}"
        )
    if on_this_machine:
        _check_accelerator(trainer["accelerator"], trainer["devices"])
    clip = trainer["gradient_clip_val"]
    if clip is not None and not (finite_number(clip) and clip >= 0):
        raise RecipeError(f"recipe: `trainer.gradient_clip_val` must be a number >= 0 or null, got {clip!r}")


def _check_accelerator(accelerator: Any, devices: Any) -> None:
    """``trainer.accelerator`` must exist on this machine (Lightning would fail every run, one by one)."""
    import torch
    from lightning.pytorch.accelerators import AcceleratorRegistry

    names = sorted(AcceleratorRegistry.available_accelerators())
    if accelerator == "auto" or not isinstance(accelerator, str):  # not a str: an Accelerator instance
        return
    if accelerator not in (*names, "gpu"):
        raise RecipeError(
            f"recipe: `trainer.accelerator` must be 'auto', 'gpu' or one of {names}, "
            f"got {accelerator!r}{did_you_mean(accelerator, [*names, 'gpu', 'auto'])}"
        )
    kinds = ("cuda", "mps") if accelerator == "gpu" else (accelerator,)
    found = [k for k in kinds if AcceleratorRegistry[k]["accelerator"].is_available()]
    if not found:
        raise RecipeError(
            f"recipe: `trainer.accelerator` is {accelerator!r} but this machine has no "
            f"{' or '.join(kinds)} device (torch {torch.__version__}); use 'cpu' or 'auto', "
            "or run on a machine that has one"
        )
    if found[0] == "cuda" and isinstance(devices, int) and not isinstance(devices, bool):
        count = torch.cuda.device_count()
        if devices > count:
            raise RecipeError(f"recipe: `trainer.devices` is {devices} but this machine has {count} CUDA device(s)")


def check_data_args(data: dict[str, Any]) -> None:
    import inspect

    from lossbench.data import HFDataModule

    allowed = [p for p in inspect.signature(HFDataModule.__init__).parameters if p not in ("self", "seed")]
    if "seed" in data:
        raise RecipeError(
            "recipe: `data.seed` is set by the comparison from `seeds` (one batch order per seed); remove it"
        )
    check_keys("data.", data, allowed)
    length = data.get("max_length")
    # other bad values (not a number, below 1, not whole): HFDataModule's own check names them
    if isinstance(length, (int, float)) and not isinstance(length, bool) and length > MAX_LENGTH:
        shown = f"{int(length):,}" if isinstance(length, int) or finite_number(length) else repr(length)
        raise RecipeError(
            f"recipe: `data.max_length` must be at most {MAX_LENGTH} tokens, got {length!r} "
            f"(the position table alone would hold {shown} x d_model numbers)"
        )

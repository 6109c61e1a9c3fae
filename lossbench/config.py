"""The settings of a model and its optimization, each defined once with its default and its check.

``LossbenchModule``'s arguments and a comparison recipe's ``backbone``, ``optimizer`` and
``schedule`` sections are these dataclasses' fields (nanoGPT style: one commented line per
setting). ``check(owner, key)`` raises :class:`ConfigError` naming the setting the way its
caller calls it (``key(field)``: ``lr`` for the module, ``optimizer.lr`` for a recipe), what was
expected and what was given. No torch import: recipes are checked before anything heavy loads.

Example:
    >>> OptimizerConfig(lr=-1.0).check("recipe", lambda f: f"optimizer.{f}")
    Traceback (most recent call last):
    ...
    lossbench.config.ConfigError: recipe: `optimizer.lr` must be a finite number > 0, got -1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeGuard

Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["none", "cosine", "linear"]
NanPolicy = Literal["raise", "skip"]
NAN_POLICIES: tuple[str, ...] = ("raise", "skip")  # on a non-finite training loss or gradient: raise, or skip the step
SELECT: tuple[str, ...] = ("final", "best")  # the weights a run reports: the last ones, or the best on validation
Key = Callable[[str], str]


class ConfigError(ValueError):
    """A setting out of its range; ``key`` is the setting as its caller names it (``lr``, ``optimizer.lr``)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def _same(field: str) -> str:
    return field


def finite_number(value: Any) -> TypeGuard[float]:
    """A real number (not a bool) that floats can hold: a 400-digit int is refused here, not an OverflowError later.

    Example:
        >>> [finite_number(v) for v in (3, 0.5, 10**400, float("inf"), True)]
        [True, True, False, False, False]
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


def _positive_int(value: Any, allow_none: bool = False) -> bool:
    return (allow_none and value is None) or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


@dataclass
class BackboneConfig:
    """Shape of the Transformer built from a :class:`DataSpec`; every field maps to ``TransformerBackbone``."""

    d_model: int = 64  # token width
    nhead: int = 4  # attention heads (must divide d_model)
    num_layers: int = 2  # encoder layers
    dim_feedforward: int | None = None  # feed-forward width (default 4 * d_model)
    dropout: float = 0.0  # dropout inside the encoder
    norm_first: bool = True  # pre-LayerNorm
    activation: str = "gelu"  # "gelu" or "relu"
    pooling: Literal["cls", "mean"] = "cls"  # sequence pooling (language modelling always uses none)
    patch_size: int | None = None  # images: None = one token per row, else square patches

    def check(self, owner: str = "BackboneConfig", key: Key = _same) -> None:
        """The values that do not depend on the data (the input adapter is checked with the data)."""
        for name in ("d_model", "nhead", "num_layers", "dim_feedforward", "patch_size"):
            optional = name in ("dim_feedforward", "patch_size")
            value = getattr(self, name)
            if not _positive_int(value, optional):
                raise ConfigError(
                    key(name),
                    f"{owner}: `{key(name)}` must be a positive int{' or null' if optional else ''}, got {value!r}",
                )
        if self.d_model % self.nhead:
            raise ConfigError(
                key("nhead"), f"{owner}: `{key('nhead')}`={self.nhead} must divide `{key('d_model')}`={self.d_model}"
            )
        if self.activation not in ("gelu", "relu"):
            raise ConfigError(
                key("activation"), f"{owner}: `{key('activation')}` must be 'gelu' or 'relu', got {self.activation!r}"
            )
        if self.pooling not in ("cls", "mean"):
            raise ConfigError(
                key("pooling"), f"{owner}: `{key('pooling')}` must be 'cls' or 'mean', got {self.pooling!r}"
            )
        if not (finite_number(self.dropout) and 0 <= self.dropout < 1):
            raise ConfigError(
                key("dropout"), f"{owner}: `{key('dropout')}` must be a number in [0, 1), got {self.dropout!r}"
            )
        if not isinstance(self.norm_first, bool):
            raise ConfigError(
                key("norm_first"), f"{owner}: `{key('norm_first')}` must be true or false, got {self.norm_first!r}"
            )


@dataclass
class OptimizerConfig:
    """The optimizer of every parameter group (``LossbenchModule`` calls ``name`` its ``optimizer`` argument)."""

    name: Optimizer = "adamw"  # "adamw" (decoupled weight decay) or "sgd"
    lr: float = 1e-3  # peak learning rate (after warm-up)
    weight_decay: float = 0.0  # not applied to biases, norms and embeddings
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd with momentum > 0 only
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only

    def check(self, owner: str = "OptimizerConfig", key: Key = _same) -> None:
        if self.name not in ("sgd", "adamw"):
            raise ConfigError(key("name"), f"{owner}: `{key('name')}` must be 'sgd' or 'adamw', got {self.name!r}")
        if not (finite_number(self.lr) and self.lr > 0):
            raise ConfigError(key("lr"), f"{owner}: `{key('lr')}` must be a finite number > 0, got {self.lr!r}")
        if not (finite_number(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(
                key("weight_decay"),
                f"{owner}: `{key('weight_decay')}` must be a number >= 0, got {self.weight_decay!r}",
            )
        if not (finite_number(self.momentum) and 0 <= self.momentum < 1):
            raise ConfigError(key("momentum"), f"{owner}: `{key('momentum')}` must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.nesterov, bool):
            raise ConfigError(
                key("nesterov"), f"{owner}: `{key('nesterov')}` must be true or false, got {self.nesterov!r}"
            )
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ConfigError(
                key("nesterov"),
                f"{owner}: `{key('nesterov')}=True` needs `{key('name')}`='sgd' and `{key('momentum')}` > 0",
            )
        betas = self.betas
        if not (
            isinstance(betas, (list, tuple)) and len(betas) == 2 and all(finite_number(b) and 0 <= b < 1 for b in betas)
        ):
            raise ConfigError(key("betas"), f"{owner}: `{key('betas')}` must be two numbers in [0, 1), got {betas!r}")


@dataclass
class ScheduleConfig:
    """The learning-rate schedule over the run's optimizer steps (``LossbenchModule``: ``schedule``)."""

    name: Schedule = "none"  # "none" (constant), "cosine" or "linear" decay to 0
    warmup_steps: int = 0  # linear warm-up from 0 over the first steps

    def check(self, owner: str = "ScheduleConfig", key: Key = _same) -> None:
        if self.name not in ("none", "cosine", "linear"):
            raise ConfigError(
                key("name"), f"{owner}: `{key('name')}` must be 'none', 'cosine' or 'linear', got {self.name!r}"
            )
        if not (
            isinstance(self.warmup_steps, int) and not isinstance(self.warmup_steps, bool) and self.warmup_steps >= 0
        ):
            raise ConfigError(
                key("warmup_steps"), f"{owner}: `{key('warmup_steps')}` must be an int >= 0, got {self.warmup_steps!r}"
            )


def defaults(config: type) -> dict[str, Any]:
    """A config's fields and defaults as plain YAML values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config()).items()}

"""Situations a loss is chosen for, made on purpose: label noise and class imbalance of the training split.

Both act on the processed class ids of a split (after preprocessing, so the rows' contents, and
with them the content fingerprints and the comparison's setup hash, say what was trained on),
are seeded independently of the training seed, and never touch the test split.

- **Label noise** (``{"kind": "symmetric" | "pairflip", "rate": r, "seed": s, "validation": false}``):
  ``round(r * n)`` rows, drawn without replacement, get another label: symmetric, a uniformly
  random *other* class; pair-flip, class ``c`` -> ``(c + 1) % C`` (Han et al. 2018). The validation
  split is made noisy too with ``validation: true`` (model selection on noisy labels, as in practice).
- **Imbalance** (``{"kind": "longtail" | "step", "ratio": m, "seed": s}``): the training split is
  subsampled to ``n_c`` rows of class ``c``: long-tailed, ``n_c = n_max * m ** (-c / (C - 1))``
  (Cao et al. 2019); step, ``n_max`` for the first half of the classes and ``n_max / m`` for the
  others (Buda et al. 2018); ``n_max`` is the smallest class's count, so every class can give it.

Example:
    >>> import numpy as np
    >>> noise = LabelNoise.parse({"kind": "pairflip", "rate": 0.5, "seed": 1})
    >>> noisy, info = noise.apply(np.array([0, 0, 1, 1, 2, 2]), num_classes=3)
    >>> info["flipped"], sorted(info["transitions"].items())
    (3, [('0->1', 1), ('1->2', 1), ('2->0', 1)])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lossbench._hints import did_you_mean
from lossbench.config import finite_number

NOISE_KINDS = ("symmetric", "pairflip")
IMBALANCE_KINDS = ("longtail", "step")


def _error(arg: str, message: str) -> ValueError:
    return ValueError(f"HFDataModule: `{arg}`{message}")


def _check_keys(arg: str, given: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in given:
        if key not in allowed:
            hint = did_you_mean(key, allowed, n=1)
            raise _error(f"{arg}.{key}", f" is not a setting{hint} (settings: {', '.join(allowed)})")


def _from_mapping(cls: type, given: Any, arg: str) -> Any:
    """``cls`` with the settings of the mapping ``given`` over its defaults (unknown settings refused by name)."""
    names = tuple(asdict(cls()))
    if not isinstance(given, dict):
        raise _error(arg, f" must be a mapping {{{', '.join(names)}}}, got {given!r}")
    _check_keys(arg, given, names)
    return cls(**{**asdict(cls()), **given})


def _seed(arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise _error(f"{arg}.seed", f" must be an int in [0, 2**32), got {value!r}")
    return value


@dataclass(frozen=True)
class LabelNoise:
    """Seeded label noise on the training split (and optionally validation); see the module."""

    kind: str = "symmetric"  # "symmetric" (another class, uniformly) or "pairflip" (c -> c + 1 mod C)
    rate: float = 0.0  # fraction of rows whose label is replaced, in [0, 1)
    seed: int = 0  # seeds which rows and which labels, independently of the training seed
    validation: bool = False  # make the validation split noisy too (never the test split)

    @classmethod
    def parse(cls, given: Any, arg: str = "label_noise") -> LabelNoise:
        if isinstance(given, LabelNoise):
            return given
        noise = _from_mapping(cls, given, arg)
        if noise.kind not in NOISE_KINDS:
            raise _error(f"{arg}.kind", f" must be one of {', '.join(map(repr, NOISE_KINDS))}, got {noise.kind!r}")
        rate = noise.rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (0 <= rate < 1):
            raise _error(f"{arg}.rate", f" must be a fraction in [0, 1), got {rate!r}")
        if not isinstance(noise.validation, bool):
            raise _error(f"{arg}.validation", f" must be true or false, got {noise.validation!r}")
        _seed(arg, noise.seed)
        return noise

    def apply(self, target: np.ndarray, num_classes: int, split: str = "train") -> tuple[np.ndarray, dict[str, Any]]:
        """The noisy labels and what was done: rows flipped, the realised transitions ``"a->b": count``."""
        if num_classes < 2:
            raise _error("label_noise", f" needs at least 2 classes, the data has {num_classes}")
        target = np.asarray(target, dtype=np.int64)
        # a stream per split: the validation split's noise does not depend on the training split's size
        rng = np.random.default_rng([self.seed, {"train": 0, "validation": 1}[split]])
        count = int(round(self.rate * len(target)))
        if count and count == len(target):  # every label replaced: no clean row is left to learn from
            raise _error(
                "label_noise.rate",
                f" {self.rate!r} replaces all {count} labels of the {split} split "
                "(realised rate 1.0): no clean row would be left; use a rate "
                f"below {(len(target) - 0.5) / len(target):.6g}",
            )
        rows = np.sort(rng.permutation(len(target))[:count])
        noisy = target.copy()
        if self.kind == "symmetric":  # uniformly among the other C - 1 classes
            noisy[rows] = (target[rows] + rng.integers(1, num_classes, size=count)) % num_classes
        else:
            noisy[rows] = (target[rows] + 1) % num_classes
        pairs: dict[str, int] = {}
        for a, b in zip(target[rows].tolist(), noisy[rows].tolist()):
            pairs[f"{a}->{b}"] = pairs.get(f"{a}->{b}", 0) + 1
        info = {
            **asdict(self),
            "split": split,
            "rows": len(target),
            "flipped": count,
            "realised_rate": count / len(target) if len(target) else 0.0,
            "transitions": dict(sorted(pairs.items(), key=lambda kv: tuple(map(int, kv[0].split("->"))))),
        }
        return noisy, info


@dataclass(frozen=True)
class Imbalance:
    """A seeded long-tailed or step subsample of the training split; see the module."""

    kind: str = "longtail"  # "longtail" (exponential decay over the class ids) or "step"
    ratio: float = 1.0  # largest class count / smallest, >= 1
    seed: int = 0  # seeds which rows are kept, independently of the training seed

    @classmethod
    def parse(cls, given: Any, arg: str = "imbalance") -> Imbalance:
        if isinstance(given, Imbalance):
            return given
        imbalance = _from_mapping(cls, given, arg)
        if imbalance.kind not in IMBALANCE_KINDS:
            raise _error(
                f"{arg}.kind", f" must be one of {', '.join(map(repr, IMBALANCE_KINDS))}, got {imbalance.kind!r}"
            )
        ratio = imbalance.ratio
        if not finite_number(ratio) or ratio < 1:
            raise _error(f"{arg}.ratio", f" must be a number >= 1 (largest class / smallest), got {ratio!r}")
        _seed(arg, imbalance.seed)
        return imbalance

    def counts(self, available: list[int]) -> list[int]:
        """Rows to keep per class id, given the rows each class has."""
        c, n_max = len(available), min(available)
        if self.kind == "longtail":
            wanted = [n_max * self.ratio ** (-i / (c - 1)) if c > 1 else n_max for i in range(c)]
        else:
            wanted = [n_max if i < (c + 1) // 2 else n_max / self.ratio for i in range(c)]
        return [max(1, int(math.floor(w))) for w in wanted]

    def rows(self, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The sorted row indices to keep, and the class counts before and after."""
        target = np.asarray(target, dtype=np.int64)
        before = [int((target == k).sum()) for k in range(num_classes)]
        if min(before) == 0:
            missing = [k for k, n in enumerate(before) if n == 0]
            raise _error("imbalance", f" needs rows of every class in the training split; classes {missing} have none")
        keep_counts = self.counts(before)
        rng = np.random.default_rng([self.seed, 2])
        keep = np.sort(
            np.concatenate([rng.permutation(np.flatnonzero(target == k))[:n] for k, n in enumerate(keep_counts)])
        )
        info = {**asdict(self), "before": before, "after": keep_counts, "rows": int(len(keep))}
        return keep, info

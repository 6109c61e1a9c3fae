"""A recipe's schema: its sections, their keys and defaults (each defined once, in a commented dataclass), and
the validated :class:`Recipe` with its hashes."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import yaml

from lossbench.compare.recipe.tune import TuneSpec
from lossbench.config import BackboneConfig, OptimizerConfig, ScheduleConfig, defaults


@dataclass
class TrainerConfig:
    """A recipe's ``trainer:`` section: the Lightning Trainer settings every run of the comparison shares."""

    max_epochs: int | None = None  # the budget: exactly one of max_epochs and max_steps
    max_steps: int | None = None
    eval_every_n_steps: int = 20  # validation every this many optimizer steps (and once at step 0)
    precision: str = "32"  # Lightning's precision: "32", "bf16-mixed", "16-mixed", "64", ...
    accelerator: str = "auto"  # Lightning's: "auto" (a GPU when there is one), "cpu", "gpu", "cuda", "mps"
    devices: Any = 1  # Lightning's devices: a count, a list of indices or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # Lightning's strategy ("ddp", ...)
    deterministic: bool = True  # torch's deterministic algorithms: reruns give the same numbers
    gradient_clip_val: float | None = None  # clip the gradient norm to this value (None: no clipping)
    checkpoint_every_s: float = 60  # a resume checkpoint at most this often (0: after every evaluation)
    logger: Any = None  # one logger per run: None, "csv", "tensorboard" or {class_path, init_args} (MLflow, W&B ...)
    callbacks: list[Any] = field(default_factory=list)  # {class_path, init_args} items, one fresh set per run
    accumulate_grad_batches: int = 1  # batches per optimizer step
    log_every_n_steps: int | None = None  # the logger's step rows; None: min(eval_every_n_steps, 50)


@dataclass
class TargetConfig:
    """A recipe's ``target:`` section: the validation metric every choice is made on, and the convergence bar."""

    metric: str | None = None  # a logged validation metric, "val/<name>"; None: the heads' task's (val/accuracy ...)
    mode: str | None = None  # "max" or "min"; None: the metric's own way (max for accuracy, min for mse ...)
    threshold: float | None = None  # steps-to-target = the first evaluation at or past it; None: not measured


@dataclass
class LauncherConfig:
    """A recipe's ``launcher:`` section: where the comparison's units of work run. Outside the setup hash: it
    changes where and when runs train, not what they compute (a folder resumes under another launcher)."""

    name: str = "local"  # "local": one unit after another in this process; "ray": Ray tasks, units in parallel
    address: str | None = None  # ray: "auto", "ray://host:10001" or "host:6379"; None: a Ray started here
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})  # ray: per unit (torch threads)
    retries: int = 2  # ray: how often a unit whose worker died (kill -9, a lost node) starts again; it resumes


SECTIONS: dict[str, dict[str, Any]] = {
    # section -> allowed keys and their defaults (None: required or no default); one definition of each default
    "data": {},  # HFDataModule arguments, checked against its signature
    "backbone": defaults(BackboneConfig),
    "optimizer": defaults(OptimizerConfig),
    "schedule": defaults(ScheduleConfig),
    "trainer": defaults(TrainerConfig),
    "target": defaults(TargetConfig),
    "launcher": defaults(LauncherConfig),
}


TRAINER_UNHASHED = ("checkpoint_every_s", "logger", "log_every_n_steps")
"""Trainer keys that change how a run is saved or logged, not what it computes: outside the setup hash (a folder
resumes with another value)."""

TRAINER_ADDED = {"callbacks": [], "accumulate_grad_batches": 1}
"""Trainer keys added after results folders existed: in the setup hash only when not at these defaults, so an older
folder's setup hash is unchanged (a callback or gradient accumulation changes what a run computes)."""


def resolved_accelerator(accelerator: Any, launcher: dict[str, Any]) -> Any:
    """The accelerator the runs train on, as the setup hash holds it: ``"auto"`` is resolved as Lightning resolves
    it (CUDA, else MPS, else the CPU) on this machine, or, under Ray, from the GPUs a unit asks for; any other value
    is itself. So a folder made with ``cpu`` resumes with ``auto`` on a machine without a GPU, and is refused on
    one with a GPU, where the runs would train on another device.

    Example:
        >>> resolved_accelerator("auto", {"name": "ray", "resources": {"cpu": 1, "gpu": 0.5}})
        'cuda'
        >>> resolved_accelerator("cpu", {"name": "local"})
        'cpu'
    """
    if accelerator != "auto":
        return accelerator
    if launcher.get("name") == "ray":
        return "cuda" if (launcher.get("resources") or {}).get("gpu") else "cpu"
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


LAUNCHERS = ("local", "ray")
"""Where a comparison's units of work run: in this process, or as Ray tasks (``lossbench[ray]``)."""

EXECUTORS = ("fused", "sequential")
"""How a comparison trains its runs: each seed's losses in lockstep as one model array, or one run after another."""


@dataclass(frozen=True)
class LossSpec:
    """One loss of a comparison: a label (its folder name), a head (short name or class path) and arguments."""

    label: str
    head: str
    args: dict[str, Any]
    tuning: dict[str, Any] = field(default_factory=dict)  # a tuned run's {role, loss, trial, point} (compare.tuning)

    @property
    def head_key(self) -> tuple[str, str]:
        """Equal for losses that build the same head with the same arguments (whatever their labels)."""
        return (self.head, repr(sorted(self.args.items())))

    @property
    def overrides(self) -> dict[str, Any]:
        """The recipe values this run sets for itself (a trial point's ``optimizer.*``): dotted path -> value."""
        return {p: v for p, v in (self.tuning.get("point") or {}).items() if not p.startswith("losses.")}

    def to_dict(self) -> dict[str, Any]:
        out = {"label": self.label, "head": self.head, "args": self.args}
        return {**out, "tuning": self.tuning} if self.tuning else out

    def to_recipe(self) -> dict[str, Any]:
        """This loss as a recipe's `losses` item."""
        return {"class_path" if "." in self.head else "name": self.head, "label": self.label, "args": self.args}


@dataclass
class Recipe:
    """A validated comparison recipe."""

    name: str
    description: str
    data: dict[str, Any]
    backbone: dict[str, Any]
    losses: list[LossSpec]
    baseline: str
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    trainer: dict[str, Any]
    seeds: list[int]
    target: dict[str, Any]
    nan_policy: str = "raise"
    select: str = "final"  # the weights a run reports on test: "final", or "best" on validation (target metric)
    executor: str = "fused"  # "fused": a seed's losses trained in lockstep as one model array; or "sequential"
    tune: TuneSpec | None = None  # equal-budget tuning per loss before the final seeds (compare.tuning)
    teacher: dict[str, Any] | None = None  # distillation: a checkpoint, or a teacher to train first (compare.teacher)
    launcher: dict[str, Any] = field(default_factory=lambda: defaults(LauncherConfig))  # where units run

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "description": self.description,
            "data": self.data,
            "backbone": self.backbone,
            "losses": [spec.to_dict() for spec in self.losses],
            "baseline": self.baseline,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "trainer": self.trainer,
            "seeds": self.seeds,
            "target": self.target,
            "nan_policy": self.nan_policy,
            "select": self.select,
            "executor": self.executor,
        }
        if self.tune is not None:  # only then: an untuned recipe's hashes are those it always had
            out["tune"] = self.tune.to_dict()
        if self.teacher is not None:
            out["teacher"] = dict(self.teacher)
        if self.launcher != defaults(LauncherConfig):  # only then: a local recipe's hashes are those it always had
            out["launcher"] = copy.deepcopy(self.launcher)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """The recipe whose :meth:`to_dict` is ``values`` (comparison.json's ``recipe``, a unit's): already checked
        when it was resolved, so not checked again."""
        values = copy.deepcopy(values)
        values["losses"] = [LossSpec(**item) for item in values["losses"]]
        if values.get("tune") is not None:
            values["tune"] = TuneSpec.from_dict(values["tune"])
        return cls(**values)

    def to_yaml(self) -> str:
        """The resolved recipe as a recipe file (defaults filled in): ``load_recipe`` of it gives this recipe."""
        values = self.to_dict()
        values["losses"] = [spec.to_recipe() for spec in self.losses]
        return yaml.safe_dump(values, sort_keys=False)

    @property
    def runnable(self) -> bool:
        """Whether :meth:`to_yaml` is a recipe file that runs this comparison. A tuning comparison's is not: its
        runs are trials, each at its own optimizer values, which a recipe's `losses` cannot state; it is run by
        its parent's recipe (``DIR/recipe.yaml``, not ``DIR/tuning/recipe.yaml``)."""
        return not any(spec.tuning for spec in self.losses)

    def setup(self) -> dict[str, Any]:
        """What must be identical for every loss: everything but the losses, baseline and seeds (and how the runs
        are executed: fused and sequential runs train the same models on the same batches; records say which)."""
        left_out = ("losses", "baseline", "seeds", "name", "description", "executor", "launcher")
        setup = {k: v for k, v in self.to_dict().items() if k not in left_out}
        setup["trainer"] = {
            k: v
            for k, v in self.trainer.items()
            if k not in TRAINER_UNHASHED and not (k in TRAINER_ADDED and v == TRAINER_ADDED[k])
        }
        setup["trainer"]["accelerator"] = resolved_accelerator(self.trainer["accelerator"], self.launcher)
        return setup

    @property
    def setup_hash(self) -> str:
        return _hash(self.setup())

    @property
    def recipe_hash(self) -> str:
        return _hash(self.to_dict())

    def loss(self, label: str) -> LossSpec:
        return next(spec for spec in self.losses if spec.label == label)


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


TOP_LEVEL = tuple(f.name for f in fields(Recipe))
"""A recipe's top-level keys: :class:`Recipe`'s fields."""

"""Comparison recipes: YAML -> a validated :class:`Recipe`, checked before anything trains.

A recipe names the data, the backbone, the losses (short names with arguments, or a
``class_path``), the baseline, the optimizer and schedule, the trainer budget, the
seeds and the target metric. Bundled recipes live in ``lossbench/recipes`` and are
available by short name (``lossbench compare digits``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lossbench._hints import did_you_mean
from lossbench.compare.store.storage import MAX_LABEL_BYTES
from lossbench.config import (
    NAN_POLICIES,
    SELECT,
    BackboneConfig,
    ConfigError,
    OptimizerConfig,
    ScheduleConfig,
    defaults,
    finite_number,
)

if TYPE_CHECKING:
    from lossbench.compare.recipe.tune import TuneSpec

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"

SECTIONS: dict[str, dict[str, Any]] = {
    # section -> allowed keys and their defaults (None: required or no default)
    "data": {},  # HFDataModule arguments, checked against its signature
    "backbone": defaults(BackboneConfig),  # the module's own configs: one definition of each default
    "optimizer": defaults(OptimizerConfig),
    "schedule": defaults(ScheduleConfig),
    "trainer": {
        "max_epochs": None,
        "max_steps": None,
        "eval_every_n_steps": 20,
        "precision": "32",
        "accelerator": "cpu",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "deterministic": True,
        "gradient_clip_val": None,
        "checkpoint_every_s": 60,
    },
    "target": {"metric": None, "mode": None, "threshold": None},
}
TRAINER_UNHASHED = ("checkpoint_every_s",)
"""Trainer keys that change how a run is saved, not what it computes: outside the setup hash (a folder resumes
with another value)."""
EXECUTORS = ("fused", "sequential")
"""How a comparison trains its runs: each seed's losses in lockstep as one model array, or one run after another."""
TOP_LEVEL = (
    "name",
    "description",
    "data",
    "backbone",
    "losses",
    "baseline",
    "optimizer",
    "schedule",
    "trainer",
    "seeds",
    "target",
    "nan_policy",
    "select",
    "executor",
    "tune",
    "teacher",
)


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key, the expected and the given value."""


def _check_keys(where: str, given: dict[str, Any], allowed: list[str] | tuple[str, ...]) -> None:
    for key in given:
        if key not in allowed:
            raise RecipeError(
                f"recipe: unknown key `{where}{key}`{did_you_mean(str(key), list(allowed))} "
                f"(allowed: {', '.join(allowed)})"
            )


@dataclass(frozen=True)
class LossSpec:
    """One loss of a comparison: a label (its folder name), a head (short name or class path) and arguments."""

    label: str
    head: str
    args: dict[str, Any]
    tuning: dict[str, Any] = field(default_factory=dict)  # a tuned run's {role, loss, trial, point} (compare.tuning)

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
        return out

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
        left_out = ("losses", "baseline", "seeds", "name", "description", "executor")
        setup = {k: v for k, v in self.to_dict().items() if k not in left_out}
        setup["trainer"] = {k: v for k, v in self.trainer.items() if k not in TRAINER_UNHASHED}
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


def bundled_recipes() -> dict[str, Path]:
    """Short name -> path of every bundled comparison recipe (``fit_*`` configs are for ``lossbench fit``)."""
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.yaml")) if not p.stem.startswith("fit_")}


# Bounds on what a recipe may ask for, checked before anything is allocated. They guard against typos and
# hostile files (a YAML alias bomb, a billion seeds), not against real comparisons: each is far above any.
MAX_YAML_DEPTH = 64  # nesting of mappings/lists in one YAML document
MAX_YAML_VALUES = 100_000  # values in a document once its aliases (*anchor) are expanded
MAX_SEEDS = 1_000  # seeds of one comparison (each is a run per loss)
MAX_SEED = 2**32 - 1  # the largest seed torch and numpy accept
MAX_LENGTH = 65_536  # `data.max_length`: tokens per sequence (the position table is max_length x d_model)
MAX_PARAMETERS = 1_000_000_000  # backbone parameters (4 GB in float32), counted before it is allocated


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents nested deeper than :data:`MAX_YAML_DEPTH`."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise RecipeError(f"line {mark.line + 1}: nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """Values in ``node`` with every alias expanded (an alias is the anchored node itself: counted by id once)."""
    if id(node) not in sizes:
        children = node.value if isinstance(node.value, list) else []
        flat = [part for child in children for part in (child if isinstance(child, tuple) else (child,))]
        sizes[id(node)] = min(1 + sum(_expanded_size(c, sizes) for c in flat), MAX_YAML_VALUES + 1)
    return sizes[id(node)]


def safe_yaml(text: str, where: str) -> Any:
    """Plain YAML values only (``yaml.SafeLoader``): a tag such as ``!!python/object`` is refused, never run.

    Documents nested deeper than :data:`MAX_YAML_DEPTH` or holding more than :data:`MAX_YAML_VALUES`
    values once aliases are expanded (a "billion laughs" file) are refused before they are built.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise RecipeError(f"expands to more than {MAX_YAML_VALUES} values once its aliases (*name) are expanded")
        return loader.construct_document(node)
    except RecipeError as exc:
        raise RecipeError(f"recipe: {where} is refused: {exc}; recipes are small plain YAML files") from None
    except yaml.constructor.ConstructorError as exc:
        mark = f" (line {exc.problem_mark.line + 1})" if exc.problem_mark is not None else ""
        raise RecipeError(
            f"recipe: {where} holds a YAML tag that safe loading refuses{mark}: {exc.problem}; "
            "recipes hold plain values only (mappings, lists, strings, numbers, booleans, null)"
        ) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe: {where} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def recipe_summary(path: Path) -> str:
    """The recipe's one-line description."""
    raw = safe_yaml(path.read_text(encoding="utf-8"), repr(str(path))) or {}
    return str(raw.get("description", "")).strip().splitlines()[0] if raw.get("description") else ""


def resolve_recipe_path(recipe: str | Path) -> Path:
    """A path to a YAML file, or a bundled recipe's short name."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe: `RECIPE` file {str(path)!r} does not exist")
        return path
    bundled = bundled_recipes()
    if str(recipe) in bundled:
        return bundled[str(recipe)]
    raise RecipeError(
        f"recipe: `RECIPE` {str(recipe)!r} is neither a YAML file nor a bundled recipe"
        f"{did_you_mean(str(recipe), list(bundled))} (bundled: {', '.join(bundled)}; `lossbench recipes` lists them)"
    )


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Override ``raw["a"]["b"] = value`` for ``dotted="a.b"``; the value is parsed as YAML."""
    keys = dotted.split(".")
    if keys[0] not in TOP_LEVEL:
        raise RecipeError(f"recipe: unknown override `--{dotted}`{did_you_mean(keys[0], list(TOP_LEVEL))}")
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise RecipeError(f"recipe: override `--{dotted}`: `{key}` is not a section")
    node[keys[-1]] = safe_yaml(value, f"override `--{dotted}`") if isinstance(value, str) else value


def load_recipe(
    recipe: str | Path | dict[str, Any],
    overrides: dict[str, Any] | None = None,
    seeds: int | None = None,
    losses: list[str] | None = None,
) -> Recipe:
    """Read, override and validate a recipe. Nothing is trained or written.

    Args:
        recipe: a YAML path, a bundled recipe name, or the recipe as a dict.
        overrides: dotted keys (``"trainer.max_epochs"``) -> values (YAML strings are parsed).
        seeds: run this many seeds (0, 1, ..., n-1) instead of the recipe's.
        losses: keep only these loss labels (the baseline is always kept).
    """
    if isinstance(recipe, dict):
        raw = copy.deepcopy(recipe)
    else:
        path = resolve_recipe_path(recipe)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RecipeError(f"recipe: `RECIPE` file {str(path)!r} cannot be read: {exc}") from None
        raw = safe_yaml(text, repr(str(path)))
        if not isinstance(raw, dict):
            raise RecipeError(f"recipe: {str(path)!r} must hold a YAML mapping, got {type(raw).__name__}")
        raw.setdefault("name", path.stem)
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
            raise RecipeError(f"recipe: `--seeds` must be a count in [1, {MAX_SEEDS}], got {seeds!r}")
        raw["seeds"] = list(range(seeds))
    return _validate(raw, keep=losses)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    given = raw.get(name) or {}
    if not isinstance(given, dict):
        raise RecipeError(f"recipe: `{name}` must be a mapping, got {given!r}")
    defaults = SECTIONS[name]
    _check_keys(f"{name}.", given, list(defaults))
    return {**defaults, **given}


def is_seed_list(seeds: Any) -> bool:
    """Whether ``seeds`` is a list of 1 to :data:`MAX_SEEDS` ints in [0, :data:`MAX_SEED`] (``seeds``, ``tune.seeds``)."""
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


def _loss_specs(raw_losses: Any, keep: list[str] | None = None, baseline: Any = None) -> list[LossSpec]:
    """The recipe's losses (all of them, or those in ``keep`` and the baseline); only their heads are resolved.

    A ``class_path`` module runs code when imported: a loss left out with ``--losses`` is never imported.
    """
    from lossbench.heads.registry import get_head_class

    if not isinstance(raw_losses, list) or not raw_losses:
        raise RecipeError(f"recipe: `losses` must be a non-empty list of loss names or mappings, got {raw_losses!r}")
    specs, class_paths = [], set()  # class_paths: labels given by `class_path` (imported), not by `name`
    for i, item in enumerate(raw_losses):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise RecipeError(f"recipe: `losses[{i}]` must be a name or a mapping, got {item!r}")
        _check_keys(f"losses[{i}].", item, ["name", "label", "args", "class_path", "init_args"])
        if ("name" in item) == ("class_path" in item):
            raise RecipeError(f"recipe: `losses[{i}]` needs exactly one of `name` or `class_path`, got {item!r}")
        head = item.get("name") or item["class_path"]
        if not isinstance(head, str) or not head:
            raise RecipeError(f"recipe: `losses[{i}]`'s `name`/`class_path` must be a non-empty string, got {head!r}")
        if "name" in item:  # a registry lookup runs no user code: checked for every loss
            get_head_class(head)  # unknown name: UnknownHeadError listing the nearest names
        args = dict(item.get("args") or item.get("init_args") or {})
        label = _label(item)
        if not label.replace("_", "").replace("-", "").isalnum():
            raise RecipeError(f"recipe: `losses[{i}].label` must be letters, digits, _ or -, got {label!r}")
        if len(label.encode("utf-8")) > MAX_LABEL_BYTES:  # it names a folder and files
            raise RecipeError(
                f"recipe: `losses[{i}].label` must be at most {MAX_LABEL_BYTES} bytes in UTF-8, got "
                f"{len(label.encode('utf-8'))} ({label[:20]!r}...)"
            )
        specs.append(LossSpec(label, head, args))
        if "class_path" in item:
            class_paths.add(label)
    labels = [s.label for s in specs]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise RecipeError(f"recipe: loss labels must be unique, {dupes} appear twice; give each a `label`")
    if baseline is None:
        baseline = labels[0]
    if baseline not in labels:
        raise RecipeError(
            f"recipe: `baseline` {baseline!r} is not one of the losses {labels}{did_you_mean(str(baseline), labels)}"
        )
    if keep:
        unknown = [k for k in keep if k not in labels]
        if unknown:
            raise RecipeError(f"recipe: `--losses` {unknown} are not in the recipe's losses {labels}")
        specs = [s for s in specs if s.label in keep or s.label == baseline]
    for spec in specs:
        if spec.label in class_paths:
            _import_head_class(spec.head, labels.index(spec.label))
    return specs


def _labels(raw_losses: list[Any]) -> list[str]:
    """Every loss label of a recipe's (checked) `losses`, without importing any head."""
    return [_label({"name": item} if isinstance(item, str) else item) for item in raw_losses]


def _label(item: dict[str, Any]) -> str:
    """A loss's label: its `label`, else its `name`, else its `class_path`'s class name."""
    head = item.get("name") or item["class_path"]
    return str(item.get("label") or (head.rsplit(".", 1)[-1] if "class_path" in item else head))


def _import_head_class(class_path: str, i: int) -> type:
    """Import a user-named head class: this runs that module's code (documented)."""
    import importlib

    from lossbench.heads.base import LossHead

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise RecipeError(f"recipe: `losses[{i}].class_path` {class_path!r} cannot be imported: {exc}") from exc
    except SystemExit as exc:  # a module that exits on import must not end the comparison with its code
        raise RecipeError(
            f"recipe: `losses[{i}].class_path` {class_path!r}: importing {module!r} called "
            f"sys.exit({exc.code!r}); a head's module must not exit when imported"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, LossHead)):
        raise RecipeError(f"recipe: `losses[{i}].class_path` {class_path!r} is not a LossHead subclass")
    return cls


def _validate(raw: dict[str, Any], keep: list[str] | None) -> Recipe:
    _check_keys("", raw, TOP_LEVEL)
    data = raw.get("data")
    if not isinstance(data, dict) or not data.get("path"):
        raise RecipeError(f"recipe: `data` must be a mapping with at least `path`, got {data!r}")
    _check_data_args(data)
    losses = _loss_specs(raw.get("losses"), keep, raw.get("baseline"))
    baseline = raw.get("baseline", losses[0].label)
    given_seeds = seeds = raw.get("seeds", [0, 1, 2])
    if isinstance(seeds, int) and not isinstance(seeds, bool) and 1 <= seeds <= MAX_SEEDS:
        seeds = list(range(seeds))
    if not is_seed_list(seeds):
        raise RecipeError(
            f"recipe: `seeds` must be a count in [1, {MAX_SEEDS}] or a list of 1 to {MAX_SEEDS} ints in "
            f"[0, {MAX_SEED}], got {shown_seeds(given_seeds)}"
        )
    if len(set(seeds)) != len(seeds):
        raise RecipeError(f"recipe: `seeds` must be distinct, got {seeds}")
    trainer = _section(raw, "trainer")
    if (trainer["max_epochs"] is None) == (trainer["max_steps"] is None):
        raise RecipeError(
            "recipe: `trainer` needs exactly one of `max_epochs` or `max_steps`, "
            f"got max_epochs={trainer['max_epochs']!r}, max_steps={trainer['max_steps']!r}"
        )
    for key in ("max_epochs", "max_steps", "eval_every_n_steps"):
        value = trainer[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise RecipeError(f"recipe: `trainer.{key}` must be a positive int, got {value!r}")
    every = trainer["checkpoint_every_s"]
    if not finite_number(every) or every < 0:
        raise RecipeError(
            "recipe: `trainer.checkpoint_every_s` must be a number of seconds >= 0 (0: a checkpoint "
            f"after every evaluation), got {every!r}"
        )
    target = _section(raw, "target")
    if not isinstance(target["metric"], str) or not target["metric"].startswith("val/"):
        raise RecipeError(
            f"recipe: `target.metric` must name a validation metric like 'val/accuracy', got {target['metric']!r}"
        )
    if target["mode"] not in ("max", "min"):
        raise RecipeError(f"recipe: `target.mode` must be 'max' or 'min', got {target['mode']!r}")
    threshold = target["threshold"]
    if not finite_number(threshold):
        raise RecipeError(f"recipe: `target.threshold` must be a finite number, got {threshold!r}")
    optimizer, schedule = _section(raw, "optimizer"), _section(raw, "schedule")
    nan_policy = raw.get("nan_policy", "raise")
    if nan_policy not in NAN_POLICIES:
        raise RecipeError(f"recipe: `nan_policy` must be {' or '.join(map(repr, NAN_POLICIES))}, got {nan_policy!r}")
    select = raw.get("select", "final")
    if select not in SELECT:
        raise RecipeError(
            f"recipe: `select` must be 'final' (the last weights) or 'best' (best on validation by "
            f"`target.metric`), got {select!r}"
        )
    executor = raw.get("executor", Recipe.executor)
    if executor not in EXECUTORS:
        raise RecipeError(
            f"recipe: `executor` must be 'fused' (each seed's losses trained in lockstep as one model "
            f"array) or 'sequential' (one run after another), got {executor!r}"
        )
    check_config(OptimizerConfig(**optimizer), "optimizer")  # the module's own checks, now, not at the first run
    check_config(ScheduleConfig(**schedule), "schedule")
    teacher = None
    if raw.get("teacher") is not None:
        from lossbench.compare.recipe.teacher import parse_teacher

        teacher = parse_teacher(raw["teacher"])
    tune = None
    if raw.get("tune") is not None:
        from lossbench.compare.recipe.tune import check_tuned_heads, parse_tune

        tune = parse_tune(raw["tune"], _labels(raw["losses"]), target, seeds, optimizer)
        check_tuned_heads(tune, losses)
    backbone = _section(raw, "backbone")
    check_config(BackboneConfig(**backbone), "backbone")
    _check_trainer_values(trainer)
    return Recipe(
        name=str(raw.get("name") or "comparison"),
        description=str(raw.get("description") or ""),
        data=dict(data),
        backbone=backbone,
        losses=losses,
        baseline=baseline,
        optimizer=optimizer,
        schedule=schedule,
        trainer=trainer,
        seeds=seeds,
        target=target,
        nan_policy=nan_policy,
        select=select,
        executor=executor,
        tune=tune,
        teacher=teacher,
    )


def check_config(config: Any, section: str) -> None:
    """A config's own check (:mod:`lossbench.config`), naming its fields as ``<section>.<field>`` keys."""
    try:
        config.check("recipe", lambda f: f"{section}.{f}")
    except ConfigError as exc:
        raise RecipeError(str(exc)) from None


def _check_trainer_values(trainer: dict[str, Any]) -> None:
    """Trainer values Lightning would only refuse when the first run starts (after the folder is written)."""
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


def _check_data_args(data: dict[str, Any]) -> None:
    import inspect

    from lossbench.data import HFDataModule

    allowed = [p for p in inspect.signature(HFDataModule.__init__).parameters if p not in ("self", "seed")]
    if "seed" in data:
        raise RecipeError(
            "recipe: `data.seed` is set by the comparison from `seeds` (one batch order per seed); remove it"
        )
    _check_keys("data.", data, allowed)
    length = data.get("max_length")
    # other bad values (not a number, below 1, not whole): HFDataModule's own check names them
    if isinstance(length, (int, float)) and not isinstance(length, bool) and length > MAX_LENGTH:
        shown = f"{int(length):,}" if isinstance(length, int) or finite_number(length) else repr(length)
        raise RecipeError(
            f"recipe: `data.max_length` must be at most {MAX_LENGTH} tokens, got {length!r} "
            f"(the position table alone would hold {shown} x d_model numbers)"
        )

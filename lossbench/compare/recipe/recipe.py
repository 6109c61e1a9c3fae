"""Comparison recipes: YAML -> a validated :class:`Recipe`, checked before anything trains.

A recipe names the data, the backbone, the losses (short names with arguments, or a
``class_path``), the baseline, the optimizer and schedule, the trainer budget, the
seeds and the target metric. Bundled recipes live in ``lossbench/recipes`` and are
available by short name (``lossbench compare digits``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

from lossbench._hints import did_you_mean
from lossbench.compare.recipe.bounded_yaml import safe_yaml
from lossbench.compare.recipe.checks import (
    MAX_LABEL_BYTES,
    MAX_RETRIES,
    MAX_SEED,
    MAX_SEEDS,
    RecipeError,
    check_config,
    check_data_args,
    check_keys,
    check_trainer_values,
    import_head_class,
    is_seed_list,
    shown_seeds,
)
from lossbench.compare.recipe.schema import EXECUTORS, LAUNCHERS, SECTIONS, TOP_LEVEL, LossSpec, Recipe
from lossbench.compare.recipe.teacher import parse_teacher
from lossbench.compare.recipe.trainer_parts import check_callbacks, check_logger
from lossbench.compare.recipe.trials import check_tuned_heads
from lossbench.compare.recipe.tune import TuneSpec, parse_tune
from lossbench.config import NAN_POLICIES, SELECT, BackboneConfig, OptimizerConfig, ScheduleConfig, finite_number
from lossbench.models.custom import check_class_path, import_backbone_class, is_class_path

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


def bundled_recipes() -> dict[str, Path]:
    """Short name -> path of every bundled comparison recipe (``fit_*`` configs are for ``lossbench fit``)."""
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.yaml")) if not p.stem.startswith("fit_")}


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
    check_keys(f"{name}.", given, list(defaults))
    return {**defaults, **given}


def _loss_specs(raw_losses: Any, keep: list[str] | None = None, baseline: Any = None) -> list[LossSpec]:
    """The recipe's losses (all of them, or those in ``keep`` and the baseline); only their heads are resolved.

    A ``class_path`` module runs code when imported: a loss left out with ``--losses`` is never imported.
    """
    if not isinstance(raw_losses, list) or not raw_losses:
        raise RecipeError(f"recipe: `losses` must be a non-empty list of loss names or mappings, got {raw_losses!r}")
    items = [_loss_item(i, item) for i, item in enumerate(raw_losses)]
    specs = [spec for spec, _ in items]
    class_paths = {spec.label for spec, by_class_path in items if by_class_path}  # imported, not looked up
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
        i = labels.index(spec.label)
        if spec.label in class_paths:
            check_head_args(i, spec.args, import_head_class(spec.head, i))
    return specs


def _loss_item(i: int, item: Any) -> tuple[LossSpec, bool]:
    """``losses[i]`` checked (a registry name is looked up; a class path is not imported yet), and whether it is
    given by ``class_path``."""
    from lossbench.heads.registry import get_head_class

    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise RecipeError(f"recipe: `losses[{i}]` must be a name or a mapping, got {item!r}")
    if "head" in item and "name" not in item and "class_path" not in item:  # Recipe.to_dict()'s form: round-trips
        head = item["head"]
        item = {k: v for k, v in item.items() if k != "head"}
        item["class_path" if isinstance(head, str) and "." in head else "name"] = head
    check_keys(f"losses[{i}].", item, ["name", "label", "args", "class_path", "init_args"])
    if ("name" in item) == ("class_path" in item):
        raise RecipeError(f"recipe: `losses[{i}]` needs exactly one of `name` or `class_path`, got {item!r}")
    head = item.get("name") or item["class_path"]
    if not isinstance(head, str) or not head:
        raise RecipeError(f"recipe: `losses[{i}]`'s `name`/`class_path` must be a non-empty string, got {head!r}")
    args = item.get("args") or item.get("init_args") or {}
    if not isinstance(args, dict):
        raise RecipeError(f"recipe: `losses[{i}].args` must be a mapping of the head's arguments, got {args!r}")
    if "name" in item:  # a registry lookup runs no user code: checked for every loss
        check_head_args(i, args, get_head_class(head))  # unknown name: UnknownHeadError listing the nearest
    label = _label(item)
    _check_label(i, label)
    return LossSpec(label, head, dict(args)), "class_path" in item


def check_head_args(i: int, args: dict[str, Any], cls: type) -> None:
    """Every key of ``losses[i].args`` is an argument of the head's ``__init__`` (unless it takes ``**kwargs``);
    a typo gets the nearest names ("did you mean 'gamma'")."""
    import inspect

    params = inspect.signature(cls).parameters  # the class's call: __init__ without self
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = list(params)
    for key in args:
        if key not in allowed:
            raise RecipeError(
                f"recipe: `losses[{i}].args.{key}` is not an argument of {cls.__name__}"
                f"{did_you_mean(str(key), allowed)} (it takes {', '.join(allowed)})"
            )


def _check_label(i: int, label: str) -> None:
    if not label.replace("_", "").replace("-", "").isalnum():
        raise RecipeError(f"recipe: `losses[{i}].label` must be letters, digits, _ or -, got {label!r}")
    if len(label.encode("utf-8")) > MAX_LABEL_BYTES:  # it names a folder and files
        raise RecipeError(
            f"recipe: `losses[{i}].label` must be at most {MAX_LABEL_BYTES} bytes in UTF-8, got "
            f"{len(label.encode('utf-8'))} ({label[:20]!r}...)"
        )


def _labels(raw_losses: list[Any]) -> list[str]:
    """Every loss label of a recipe's (checked) `losses`, without importing any head."""
    return [_label({"name": item} if isinstance(item, str) else item) for item in raw_losses]


def _label(item: dict[str, Any]) -> str:
    """A loss's label: its `label`, else its `name`, else its `class_path`'s class name."""
    head = str(item.get("name") or item.get("class_path") or item.get("head"))  # head: Recipe.to_dict()'s form
    return str(item.get("label") or (head.rsplit(".", 1)[-1] if "name" not in item else head))


def _validate(raw: dict[str, Any], keep: list[str] | None) -> Recipe:
    """One validator per section, in the order a reader meets them; the sections' own checks run last."""
    check_keys("", raw, TOP_LEVEL)
    data = _data(raw)
    losses = _loss_specs(raw.get("losses"), keep, raw.get("baseline"))
    seeds = _seeds(raw)
    trainer, target = _trainer(raw), _target(raw, losses)
    optimizer, schedule = _section(raw, "optimizer"), _section(raw, "schedule")
    nan_policy, select, executor = _nan_policy(raw), _select(raw), _executor(raw)
    launcher = _launcher(raw, trainer)
    check_config(OptimizerConfig(**optimizer), "optimizer")  # the module's own checks, now, not at the first run
    check_config(ScheduleConfig(**schedule), "schedule")
    teacher = parse_teacher(raw["teacher"]) if raw.get("teacher") is not None else None
    tune = _tune(raw, losses, target, seeds, optimizer)
    backbone = _backbone(raw)
    data = _pretrained_tokenizer(data, backbone)
    check_trainer_values(trainer, on_this_machine=launcher["name"] == "local")
    return Recipe(
        name=str(raw.get("name") or "comparison"),
        description=str(raw.get("description") or ""),
        data=dict(data),
        backbone=backbone,
        losses=losses,
        baseline=raw.get("baseline", losses[0].label),
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
        launcher=launcher,
    )


def _backbone(raw: dict[str, Any]) -> dict[str, Any]:
    """The built-in Transformer's settings (defaults filled in), or a class of your own by ``class_path`` (imported
    now: it is every loss's backbone; the contract is :mod:`lossbench.models.custom`'s)."""
    given = raw.get("backbone")
    if is_class_path(given):
        try:
            setting = check_class_path(cast("dict[str, Any]", given))
            import_backbone_class(setting["class_path"])
        except ValueError as exc:
            raise RecipeError(f"recipe: {exc}") from None
        return setting
    backbone = _section(raw, "backbone")
    check_config(BackboneConfig(**backbone), "backbone")
    return backbone


def _pretrained_tokenizer(data: dict[str, Any], backbone: dict[str, Any]) -> dict[str, Any]:
    """A pretrained Hugging Face backbone (:class:`lossbench.models.hf.HFEncoder`) reads its own tokenizer's ids:
    its arguments are checked now, and ``data.tokenizer`` defaults to ``"hf:<pretrained>"`` (another is refused)."""
    if not is_class_path(backbone):
        return data
    from lossbench.models import hf

    if not issubclass(import_backbone_class(backbone["class_path"]), hf.HFEncoder):
        return data
    try:
        args = hf.check_init_args(backbone["init_args"])
    except (ValueError, ImportError) as exc:
        raise RecipeError(f"recipe: `backbone.init_args`: {exc}") from None
    name = backbone["class_path"].rsplit(".", 1)[-1]
    if data.get("text_column") is None or data.get("task") == "lm":
        raise RecipeError(
            f"recipe: the backbone {name} pools token ids of texts into one feature row per text: `data` needs "
            f"`text_column` (and a task other than 'lm'), got text_column={data.get('text_column')!r}, "
            f"task={data.get('task', 'auto')!r}"
        )
    own, given = hf.tokenizer_setting(args), data.get("tokenizer")
    if given is None:
        return {**data, "tokenizer": own}
    if given != own:
        raise RecipeError(
            f"recipe: `data.tokenizer` must be the backbone's own tokenizer {own!r} ({name} reads its ids and pads "
            f"with its pad id), got {given!r}; leave `data.tokenizer` out to use it"
        )
    return data


def _data(raw: dict[str, Any]) -> dict[str, Any]:
    data = raw.get("data")
    if not isinstance(data, dict) or data.get("path") is None or data.get("path") == "":
        raise RecipeError(f"recipe: `data` must be a mapping with at least `path`, got {data!r}")
    check_data_args(data)
    return {**data, "path": _data_path(data)}


def _data_path(data: dict[str, Any]) -> Any:
    """``data.path``; a ``datasets`` object given in Python becomes its in-memory name (:mod:`lossbench.data.memory`:
    recipes, records and results folders hold plain values, and the name is of the rows' contents)."""
    from lossbench.data.memory import is_dataset_object, is_memory_name, memory_dataset, memory_name

    path = data["path"]
    try:
        if is_dataset_object(path):
            return memory_name(path, "data.path", str(data.get("train_split", "train")))
        if is_memory_name(path):
            memory_dataset(path, "data.path")
    except ValueError as exc:
        raise RecipeError("recipe: " + str(exc).removeprefix("HFDataModule: ")) from None
    return path


def _seeds(raw: dict[str, Any]) -> list[int]:
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
    return seeds


def _trainer(raw: dict[str, Any]) -> dict[str, Any]:
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
    for key, low, none in (("accumulate_grad_batches", 1, False), ("log_every_n_steps", 1, True)):
        value = trainer[key]
        if not (value is None and none) and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise RecipeError(
                f"recipe: `trainer.{key}` must be an int >= {low}{' or null' if none else ''}, got {value!r}"
            )
    try:
        check_logger(trainer["logger"])
        check_callbacks(trainer["callbacks"])
    except ValueError as exc:
        raise RecipeError(f"recipe: {exc}") from None
    return trainer


def _target(raw: dict[str, Any], losses: list[LossSpec]) -> dict[str, Any]:
    """``target``, its gaps filled: ``metric`` from the heads' task (val/accuracy for classes, val/mse for real
    targets, ...), ``mode`` from the metric, ``threshold`` None (steps-to-target is then not measured)."""
    from lossbench.metrics import TASK_TARGETS, metric_mode

    target = _section(raw, "target")
    if target["metric"] is None:
        tasks = _tasks(losses)
        if len(tasks) != 1:
            raise RecipeError(
                f"recipe: `target.metric` is missing, and the losses' heads have no one task to take its default "
                f"from (tasks {sorted(tasks)}): name a validation metric, e.g. target: {{metric: val/accuracy}}"
            )
        target["metric"] = f"val/{TASK_TARGETS[tasks.pop()]}"
    if not isinstance(target["metric"], str) or not target["metric"].startswith("val/"):
        raise RecipeError(
            f"recipe: `target.metric` must name a validation metric like 'val/accuracy', got {target['metric']!r}"
        )
    if target["mode"] is None:
        target["mode"] = metric_mode(target["metric"])
        if target["mode"] is None:
            raise RecipeError(
                f"recipe: `target.mode` is missing and {target['metric']!r} is not a metric lossbench logs, whose "
                "way it would know: say which way is better, 'max' or 'min'"
            )
    if target["mode"] not in ("max", "min"):
        raise RecipeError(f"recipe: `target.mode` must be 'max' or 'min', got {target['mode']!r}")
    threshold = target["threshold"]
    if threshold is not None and not finite_number(threshold):
        raise RecipeError(f"recipe: `target.threshold` must be a finite number or null, got {threshold!r}")
    return target


def _tasks(losses: list[LossSpec]) -> set[str]:
    """The head tasks of ``losses`` (a class path was imported by the losses' check already)."""
    from lossbench.heads.registry import get_head_class

    classes = [import_head_class(s.head, i) if "." in s.head else get_head_class(s.head) for i, s in enumerate(losses)]
    return {str(cls.task) for cls in classes}  # type: ignore[attr-defined]  # LossHead classes


def _nan_policy(raw: dict[str, Any]) -> str:
    nan_policy = raw.get("nan_policy", Recipe.nan_policy)
    if nan_policy not in NAN_POLICIES:
        raise RecipeError(f"recipe: `nan_policy` must be {' or '.join(map(repr, NAN_POLICIES))}, got {nan_policy!r}")
    return nan_policy


def _select(raw: dict[str, Any]) -> str:
    select = raw.get("select", Recipe.select)
    if select not in SELECT:
        raise RecipeError(
            f"recipe: `select` must be 'final' (the last weights) or 'best' (best on validation by "
            f"`target.metric`), got {select!r}"
        )
    return select


def _executor(raw: dict[str, Any]) -> str:
    executor = raw.get("executor", Recipe.executor)
    if executor not in EXECUTORS:
        raise RecipeError(
            f"recipe: `executor` must be 'fused' (each seed's losses trained in lockstep as one model "
            f"array) or 'sequential' (one run after another), got {executor!r}"
        )
    return executor


def _launcher(raw: dict[str, Any], trainer: dict[str, Any]) -> dict[str, Any]:
    """Where the units run (:class:`~lossbench.compare.recipe.schema.LauncherConfig`). A Ray unit trains on one
    device: a trainer that spreads one run over several processes (DDP) runs under the local launcher."""
    launcher = _section(raw, "launcher")
    name, address = launcher["name"], launcher["address"]
    if name not in LAUNCHERS:
        raise RecipeError(
            f"recipe: `launcher.name` must be 'local' (units one after another in this process) or 'ray' (units "
            f"in parallel as Ray tasks, pip install lossbench[ray]), got {name!r}{did_you_mean(str(name), LAUNCHERS)}"
        )
    if address is not None and (name != "ray" or not isinstance(address, str) or not address):
        raise RecipeError(
            f"recipe: `launcher.address` is a Ray cluster's address ('auto', 'ray://host:10001', 'host:6379') "
            f"and needs `launcher.name: ray`, got address={address!r} with name={name!r}"
        )
    launcher["resources"] = _resources(launcher["resources"])
    retries = launcher["retries"]
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise RecipeError(f"recipe: `launcher.retries` must be an int in [0, {MAX_RETRIES}], got {retries!r}")
    if name == "ray":
        spread = {k: trainer[k] for k in ("devices", "num_nodes", "strategy") if trainer[k] not in (1, "auto")}
        if spread:
            raise RecipeError(
                f"recipe: a Ray unit trains on one device, so `launcher.name: ray` takes none of {spread} in "
                "`trainer`; spread the runs with Ray, or one run over devices with the local launcher (DDP)"
            )
        if launcher["resources"]["gpu"] > 0 and trainer["accelerator"] == "cpu":
            raise RecipeError(
                f"recipe: `launcher.resources.gpu` is {launcher['resources']['gpu']} but `trainer.accelerator` is "
                "'cpu': the units would hold GPUs and train on CPUs; set `trainer.accelerator: auto`"
            )
    return launcher


def _resources(given: Any) -> dict[str, float]:
    """``launcher.resources``: CPUs (>= 1: each unit's torch threads) and GPUs (a fraction packs units on one)."""
    if not isinstance(given, dict):
        raise RecipeError(
            f"recipe: `launcher.resources` must be a mapping such as {{cpu: 1, gpu: 0.25}}, got {given!r}"
        )
    check_keys("launcher.resources.", given, ["cpu", "gpu"])
    out = {"cpu": given.get("cpu", 1), "gpu": given.get("gpu", 0)}
    for key, low in (("cpu", 1), ("gpu", 0)):
        value = out[key]
        if not finite_number(value) or value < low:
            raise RecipeError(f"recipe: `launcher.resources.{key}` must be a number >= {low}, got {value!r}")
    gpu = out["gpu"]
    if gpu > 1 and gpu != int(gpu):
        raise RecipeError(f"recipe: `launcher.resources.gpu` must be a fraction <= 1 or a whole number, got {gpu!r}")
    return out


def _tune(
    raw: dict[str, Any], losses: list[LossSpec], target: dict[str, Any], seeds: list[int], optimizer: dict[str, Any]
) -> TuneSpec | None:
    if raw.get("tune") is None:
        return None
    tune = parse_tune(raw["tune"], _labels(raw["losses"]), target, seeds, optimizer)
    check_tuned_heads(tune, losses)
    return tune

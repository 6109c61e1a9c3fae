"""``LossbenchModule``: a Transformer backbone, a swappable loss head, an optimizer and task metrics."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from lossbench.config import (
    NAN_POLICIES,
    BackboneConfig,
    NanPolicy,
    Optimizer,
    OptimizerConfig,
    Schedule,
    ScheduleConfig,
)
from lossbench.data.spec import DataSpec
from lossbench.heads import CLASS_TASKS, LossHead, get_head_class
from lossbench.metrics import RunningSums, TaskMetrics
from lossbench.models import FeatureTokenizer, PatchEmbedding, TokenEmbedding, TransformerBackbone
from lossbench.models.custom import build_class_path, check_class_path, is_class_path

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

_T = TypeVar("_T")


def _config_only(arg: str, config: Any, flat: dict[str, Any]) -> None:
    """Refuse flat arguments set next to a config that holds them (which one would win is not obvious)."""
    given = [k for k, v in flat.items() if v != getattr(type(config), k)]
    if given:
        raise ValueError(
            f"LossbenchModule: `{arg}` is a {type(config).__name__}, which holds every {arg} setting; "
            f"leave {', '.join(f'`{k}`' for k in given)} at the default (set them in the config)"
        )


def build_backbone(spec: DataSpec, config: BackboneConfig, seed: int | None = None) -> TransformerBackbone:
    """The backbone that fits ``spec``'s inputs: adapter chosen by the input kind."""
    d = config.d_model
    lm = spec.target_kind == "token"
    if spec.input_kind == "tokens":
        # positions cover the tokens only: the CLS token is prepended after the embedding
        vocab, length = (
            _spec_needs(spec, "vocab_size", spec.vocab_size),
            _spec_needs(spec, "max_length", spec.max_length),
        )
        adapter: nn.Module = TokenEmbedding(int(vocab), d, int(length), padding_idx=spec.pad_id)
    elif spec.input_kind == "features":
        adapter = FeatureTokenizer(int(_spec_needs(spec, "num_features", spec.num_features)), d)
    elif spec.input_kind == "image":
        shape = _spec_needs(spec, "image_shape", spec.image_shape)
        adapter = PatchEmbedding(tuple(shape), d, patch_size=config.patch_size)
    else:
        raise ValueError(f"build_backbone: unknown `input_kind` {spec.input_kind!r} in the data spec")
    return TransformerBackbone(
        adapter,
        d_model=d,
        nhead=config.nhead,
        num_layers=config.num_layers,
        dim_feedforward=config.dim_feedforward,
        dropout=config.dropout,
        norm_first=config.norm_first,
        activation=config.activation,
        pooling="none" if lm else config.pooling,
        causal=lm,
        seed=seed,
    )


def _spec_needs(spec: DataSpec, name: str, value: _T | None) -> _T:
    """``value``, the spec's ``name``, which inputs of ``spec.input_kind`` need."""
    if value is None:
        raise ValueError(f"build_backbone: {spec.input_kind!r} inputs need the data spec's `{name}`, got None")
    return value


BackboneSetting = BackboneConfig | dict[str, Any]
"""A backbone as settings: the built-in Transformer's (:class:`BackboneConfig`, or its fields as a dict), or a
class of your own, ``{"class_path": ..., "init_args": {...}}`` (:mod:`lossbench.models.custom`)."""


def backbone_setting(backbone: BackboneSetting | None) -> BackboneSetting:
    """``backbone`` checked: a :class:`BackboneConfig`, or a class path's ``{class_path, init_args}``."""
    if is_class_path(backbone):
        return check_class_path(cast("dict[str, Any]", backbone))
    if isinstance(backbone, dict):
        return BackboneConfig(**backbone)
    return backbone if backbone is not None else BackboneConfig()


def make_backbone(spec: DataSpec | None, backbone: BackboneSetting | None, seed: int | None = None) -> nn.Module:
    """The backbone ``backbone`` names, for ``spec``'s inputs: the built-in Transformer (:func:`build_backbone`,
    which needs ``spec``) or your class (built under ``seed``'s RNG)."""
    setting = backbone_setting(backbone)
    if isinstance(setting, dict):
        return build_class_path(setting, seed)
    if spec is None:
        raise ValueError(
            "LossbenchModule: `data_spec` is needed to build the backbone from a config; "
            "pass the data module's `spec`, or a ready `backbone` module"
        )
    return build_backbone(spec, setting, seed)


def sample_inputs(spec: DataSpec, rows: int = 2) -> Tensor:
    """``rows`` inputs of ``spec``'s kind and shape (zeros; token id 0): what the width probe feeds a backbone."""
    if spec.input_kind == "features":
        return torch.zeros(rows, int(_spec_needs(spec, "num_features", spec.num_features)))
    if spec.input_kind == "tokens":
        return torch.zeros(rows, int(_spec_needs(spec, "max_length", spec.max_length)), dtype=torch.long)
    if spec.input_kind == "image":
        return torch.zeros(rows, *_spec_needs(spec, "image_shape", spec.image_shape))
    raise ValueError(f"sample_inputs: unknown `input_kind` {spec.input_kind!r} in the data spec")


def backbone_width(backbone: nn.Module, spec: DataSpec | None) -> tuple[int, str]:
    """The width ``F`` of the features ``backbone`` returns, and how it is known: its ``out_features`` attribute,
    or ``"probe"``: one forward of a 2-row batch of ``spec``'s inputs (eval mode, no gradients, the RNG restored)."""
    width = getattr(backbone, "out_features", None)
    if width is not None:
        return int(width), "out_features"
    if spec is None:
        raise TypeError(
            f"LossbenchModule: a `backbone` module must have `out_features`, the width of the features it "
            f"returns; {type(backbone).__name__} has none (or pass `data_spec` to measure it on a 2-row batch)"
        )
    training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = backbone(sample_inputs(spec))
    except Exception as exc:
        raise ValueError(
            f"LossbenchModule: the backbone {type(backbone).__name__} fails on a 2-row batch of the data's "
            f"{spec.input_kind} inputs ({type(exc).__name__}: {exc}); see the backbone contract in "
            "lossbench.models.custom"
        ) from exc
    finally:
        backbone.train(training)
    if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"LossbenchModule: the backbone {type(backbone).__name__} must return features (B, F) (or (B, T, F)) "
            f"for a batch of B rows; on 2 rows it returned {shape}"
        )
    return int(out.shape[-1]), "probe"


def resolve_head_class(head: str) -> type[LossHead]:
    """A registered short name, or a dotted class path (which imports that user-named module)."""
    if "." not in head:
        return get_head_class(head)
    import importlib

    module, _, name = head.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, LossHead)):
        raise ValueError(f"LossbenchModule: `head` {head!r} is not a LossHead subclass")
    return cls


def check_head_fits_data(head_name: str, task: str, num_outputs: int | None, spec: DataSpec) -> None:
    """Refuse, before any training, a head whose task does not fit the data's targets."""
    kind, classes = spec.target_kind, spec.num_classes
    fits = {
        "class": ("multiclass", "ordinal", "binary"),
        "real": ("regression",),
        "probability": ("distribution",),
        "token": ("lm", "multiclass"),
    }[kind]
    described = {
        "class": f"class labels ({classes} classes)",
        "real": "real-valued targets",
        "probability": "probability-vector targets",
        "token": "next-token targets",
    }[kind]
    if task not in fits:
        hint = {"distribution": " (distribution heads need probability-vector targets)"}.get(task, "")
        raise ValueError(
            f"head {head_name!r} is a {task} head{hint}, but the data has {described}; "
            f"heads that fit are of task {', '.join(fits)} (`lossbench heads --task {fits[0]}`)"
        )
    if task == "binary" and classes != 2:
        raise ValueError(
            f"head {head_name!r} is a binary head, but the data has {classes} classes; use a multiclass head"
        )
    if task in CLASS_TASKS and num_outputs is not None and classes is not None and num_outputs < classes:
        raise ValueError(
            f"head {head_name!r} has `num_classes`={num_outputs} outputs, but the data has {classes} classes"
        )


def _target_scale(spec: DataSpec | None, head: LossHead) -> tuple[float, float] | None:
    """(mean, std) to standardise a regression head's target with, or None to train on the target as given."""
    if spec is None or spec.target_kind != "real" or spec.target_std is None or head.task != "regression":
        return None
    if not head.standardized_target:
        return None
    return float(spec.target_mean or 0.0), float(spec.target_std)


def _check_checkpoint_hparams(path: str | Path, overrides: dict[str, Any]) -> None:
    """Refuse what a checkpoint's hyper-parameters would make ``load_from_checkpoint`` do beyond reading weights."""
    owner = "LossbenchModule.load_from_checkpoint"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hp = {**(ckpt.get("hyper_parameters") or {}), **overrides} if isinstance(ckpt, dict) else {}
    head = hp.get("head")
    if "head" not in overrides and isinstance(head, str) and imports_a_module(head):
        raise ValueError(
            f"{owner}: the checkpoint {str(path)!r} names the head {head!r}, a dotted class path; loading a checkpoint "
            f"never imports a module. If you trust it, pass head={head!r} (or the class) explicitly"
        )
    backbone, spec = hp.get("backbone"), hp.get("data_spec")
    named = backbone.get("class_path") if is_class_path(backbone) else None  # type: ignore[union-attr]
    if "backbone" not in overrides and named is not None and imports_a_module(str(named)):
        raise ValueError(
            f"{owner}: the checkpoint {str(path)!r} names the backbone class {named!r}; loading a "
            f"checkpoint never imports a module. If you trust it, pass backbone={backbone!r} explicitly"
        )
    if not isinstance(backbone, dict) or not isinstance(spec, dict) or is_class_path(backbone):
        return
    check_fits_weights(
        model_values(
            head if isinstance(head, str) else None,
            hp.get("head_args") or {},
            DataSpec.from_dict(spec),
            BackboneConfig(**backbone),
        ),
        ckpt.get("state_dict") or {},
        f"{owner}: the checkpoint {str(path)!r}'s hyper-parameters",
        f"backbone {backbone}, head {head!r} {hp.get('head_args') or {}} on its data spec",
        "pass `backbone=` (or `head_args=`) explicitly if you mean it",
    )


def imports_a_module(head: str) -> bool:
    """Whether resolving ``head`` would import a module: a dotted class path whose module is not imported yet.

    Files lossbench reads (a checkpoint's hyper-parameters, a results folder's records) never make it import
    one on their word: only a registered name, a class path already imported, or one the user passes."""
    import sys

    return "." in head and head.rpartition(".")[0] not in sys.modules


def model_values(head: str | None, head_args: dict[str, Any], spec: DataSpec, backbone: BackboneSetting) -> int:
    """How many values (parameters and buffers) ``LossbenchModule(head, head_args, spec, backbone)`` holds, counted
    on the meta device: nothing is allocated, however large the arguments (``d_model``, ``num_classes``, the
    spec's ``vocab_size``, ``max_length``, ``image_shape`` ...) ask it to be. ``head`` None: the backbone only.
    ``head`` must not import a module (:func:`imports_a_module`)."""
    with torch.device("meta"):
        net = make_backbone(spec, backbone)
        count = sum(t.numel() for t in net.state_dict().values())
        width = backbone_width(net, spec)[0]  # a probe runs on meta tensors: shapes only
        if head is None:
            return count
        cls = resolve_head_class(head)
        kwargs = dict(head_args)
        if cls.task in CLASS_TASKS:
            kwargs.setdefault("num_classes", spec.num_classes)
        try:
            return count + sum(t.numel() for t in cls(in_features=width, **kwargs).state_dict().values())
        except Exception:  # a head whose own checks compute on values (impossible on meta): its projection's size
            outputs = kwargs.get("num_classes")
            outputs = outputs if isinstance(outputs, int) and not isinstance(outputs, bool) and outputs > 0 else 1
            return count + (width + 2) * outputs


def check_fits_weights(wanted: int, weights: dict[str, Any], what: str, detail: str, hint: str) -> None:
    """The rule for a model built from a file's word (a checkpoint's hyper-parameters, a results folder's recipe):
    one with more than twice the values its weights hold (plus 2**18) is refused before it is allocated.

    Args:
        wanted: the values the model would hold (:func:`model_values`).
        weights: the state dict that would be loaded into it.
        what: whose word builds it (the error's start).
        detail: the arguments that size it.
        hint: how to go on when the model is meant.
    """
    stored = sum(t.numel() for t in weights.values() if isinstance(t, Tensor))
    if wanted > 2 * stored + 2**18:
        raise ValueError(
            f"{what} build a model of {_size(4 * wanted)} but its weights hold {_size(4 * stored)} "
            f"(float32 sizes): refusing to allocate it (a corrupt or crafted file: {detail}); {hint}"
        )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


class LossbenchModule(pl.LightningModule):
    """A Transformer with a swappable loss head, trained the standard Lightning way.

    Forward -> ``head.compute`` (loss and named terms) -> Lightning's backward -> optimizer
    step. Logs ``{stage}/loss``, each named term, ``train/grad_norm``, ``train/lr`` and the
    head task's torchmetrics (``{stage}/accuracy`` ...).

    Args:
        head: a short name (``"focal"``) built for the data, or a :class:`LossHead` instance.
        head_args: constructor arguments of a head given by name (``in_features`` and
            ``num_classes`` come from the backbone and the data).
        data_spec: the data's :class:`DataSpec` (or its dict); needed to build the backbone.
        backbone: a :class:`BackboneConfig` (or dict) to build from ``data_spec``, or a
            ready ``nn.Module`` returning features of width ``out_features``.
        optimizer: "adamw" or "sgd", or an :class:`~lossbench.config.OptimizerConfig` holding every optimizer
            setting (then ``lr`` ... ``betas`` must be left at their defaults).
        lr: peak learning rate.
        weight_decay: decoupled (AdamW) or L2 (SGD) decay, applied to matrices only (not
            biases, norms or positions).
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        betas: AdamW betas.
        schedule: "none", or linear warmup then "cosine" or "linear" decay to 0 over the
            Trainer's total steps; or a :class:`~lossbench.config.ScheduleConfig` (then ``warmup_steps`` is
            left at its default).
        warmup_steps: linear warmup steps.
        metrics: compute task metrics on train/val/test.
        seed: initialise the backbone and head from this seed (same seed, same weights).
        nan_policy: on a non-finite training loss, "raise" (an error naming the step, the loss
            and the non-finite terms) or "skip" (no backward and no optimizer step; counted in
            ``skipped_steps``, logged as ``train/skipped_steps`` and saved in checkpoints). A finite
            loss whose gradient is not finite (a NaN or inf in it, seen in its norm before clipping)
            is treated the same: "raise" names the step, the loss and the gradient norm; "skip" drops
            the gradient (no optimizer step) and counts it in ``skipped_steps``. Under a loss scaler
            (``precision="16-mixed"``) a non-finite gradient is the scaler's: it skips the step and
            lowers the scale, as torch's ``GradScaler`` does, and the policy acts on the loss only.

    After each optimizer step that updated the weights, ``step_grad_norm`` (before clipping, on the
    device) and ``step_lr`` hold its gradient norm and learning rate; a skipped step changes neither
    (``lossbench compare`` writes them in each metrics.csv row).

    The training step's pieces are public, so that a :class:`~lossbench.compare.execution.array.ModelArray`
    runs each member's step through them rather than a copy: :meth:`unpack_batch`, :meth:`check_loss` and
    :meth:`check_gradient` (the NaN policy, ``skipped_steps``, ``step_grad_norm``/``step_lr``),
    :meth:`drop_gradients`, :meth:`accumulate` and :meth:`epoch_values` (the epoch's loss means and task
    metrics, keyed as logged). The hooks add Lightning's logging around them.

    Real targets: when ``data_spec`` carries the training split's ``target_mean``/``target_std``
    (:class:`~lossbench.data.HFDataModule` does by default), the loss is computed on the standardised
    target, so that every loss and learning rate behaves the same on any target scale; metrics,
    ``predict_step`` and :meth:`predict_values` are on the original scale (``train/loss`` and
    ``val/loss`` are on the standardised one). Heads with ``standardized_target = False``
    (``poisson_nll``) train on the raw target.

    Resuming: the module adds a :class:`lossbench.resume.ResumeState` callback to any Trainer
    that fits it (``configure_callbacks``), so its checkpoints carry the RNG states; with an
    :class:`~lossbench.data.HFDataModule` (which saves its position in the batch order) a run
    resumed from a checkpoint, even mid-epoch, continues exactly as if never stopped. Override
    ``configure_callbacks`` to leave it out.

    Example:
        >>> import torch
        >>> from lossbench import LossbenchModule
        >>> from lossbench.data import DataSpec
        >>> spec = DataSpec("features", "class", num_classes=3, num_features=4)
        >>> model = LossbenchModule("focal", data_spec=spec, backbone={"d_model": 16, "nhead": 2}, seed=0)
        >>> model(torch.randn(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        head: str | LossHead = "ce",
        head_args: dict[str, Any] | None = None,
        data_spec: DataSpec | dict[str, Any] | None = None,
        backbone: BackboneConfig | dict[str, Any] | nn.Module | None = None,
        optimizer: Optimizer | OptimizerConfig = OptimizerConfig.name,  # defaults: lossbench.config, defined once
        lr: float = OptimizerConfig.lr,
        weight_decay: float = OptimizerConfig.weight_decay,
        momentum: float = OptimizerConfig.momentum,
        nesterov: bool = OptimizerConfig.nesterov,
        betas: tuple[float, float] = OptimizerConfig.betas,
        schedule: Schedule | ScheduleConfig = ScheduleConfig.name,
        warmup_steps: int = ScheduleConfig.warmup_steps,
        metrics: bool = True,
        seed: int | None = None,
        nan_policy: NanPolicy = "raise",
    ) -> None:
        super().__init__()
        if nan_policy not in NAN_POLICIES:
            raise ValueError(
                f"LossbenchModule: `nan_policy` must be {' or '.join(map(repr, NAN_POLICIES))}, got {nan_policy!r}"
            )
        self.nan_policy = nan_policy
        self.skipped_steps = 0
        self._resumed_train_epoch: dict[str, Any] | None = None  # a checkpoint's mid-epoch sums, for on_train_start
        # since the last optimizer step: a batch skipped under DDP backpropagated a zero / a batch its loss
        self._zero_backward = self._loss_backward = False
        # the training step check_loss saw last: its loss, step and batch index (for check_gradient's error)
        self._step_loss: Tensor | None = None
        self._loss_step = self._batch_idx = 0
        self.step_grad_norm: Tensor | None = None  # the last optimizer step that updated the weights: its norm
        self.step_lr: float | None = None  # ... and learning rate
        if isinstance(optimizer, OptimizerConfig):
            flat = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov, "betas": betas}
            _config_only("optimizer", optimizer, flat)
            opt = optimizer
            optimizer, lr, weight_decay, momentum, nesterov, betas = (
                opt.name,
                opt.lr,
                opt.weight_decay,
                opt.momentum,
                opt.nesterov,
                cast("tuple[float, float]", tuple(opt.betas)),  # two numbers: _check_optim below refuses others
            )
        if isinstance(schedule, ScheduleConfig):
            _config_only("schedule", schedule, {"warmup_steps": warmup_steps})
            warmup_steps = schedule.warmup_steps
            schedule = schedule.name
        self._check_optim(optimizer, lr, weight_decay, momentum, nesterov, schedule, warmup_steps, betas)
        spec = DataSpec.from_dict(data_spec) if isinstance(data_spec, dict) else data_spec
        if backbone is None or isinstance(backbone, (dict, BackboneConfig)):
            setting = backbone_setting(backbone)
            self.backbone: nn.Module = make_backbone(spec, setting, seed)
            backbone_hparam: Any = dict(setting) if isinstance(setting, dict) else asdict(setting)
        else:
            self.backbone, backbone_hparam = backbone, None
        in_features, self.width_from = backbone_width(self.backbone, spec)  # the record says which
        if isinstance(head, str):
            cls = resolve_head_class(head)
            kwargs = dict(head_args or {})
            if spec is not None:  # before building: the head's own errors would be less clear
                check_head_fits_data(head, cls.task, kwargs.get("num_classes"), spec)
            if cls.task in CLASS_TASKS and "num_classes" not in kwargs:
                if spec is None or spec.num_classes is None:
                    raise ValueError(
                        f"LossbenchModule: head {head!r} needs `num_classes`: pass `data_spec` or head_args"
                    )
                kwargs["num_classes"] = spec.num_classes
            if seed is not None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    self.head: LossHead = cls(in_features=in_features, **kwargs)
            else:
                self.head = cls(in_features=in_features, **kwargs)
            head_hparam: Any = head
        elif isinstance(head, LossHead):
            self.head, head_hparam = head, None
            if head.in_features != in_features:
                raise ValueError(
                    f"LossbenchModule: the head takes `in_features`={head.in_features}, "
                    f"the backbone gives {in_features}"
                )
        else:
            raise TypeError(f"LossbenchModule: `head` must be a head name or a LossHead, got {type(head).__name__}")
        if spec is not None:
            check_head_fits_data(
                self.head.name or type(self.head).__name__,
                self.head.task,
                getattr(self.head, "num_classes", None),
                spec,
            )
        self.save_hyperparameters(
            {
                "head": head_hparam,
                "head_args": dict(head_args or {}),
                "data_spec": spec.to_dict() if spec is not None else None,
                "backbone": backbone_hparam,
                "optimizer": optimizer,
                "lr": lr,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "nesterov": nesterov,
                "betas": list(betas),
                "schedule": schedule,
                "warmup_steps": warmup_steps,
                "metrics": metrics,
                "seed": seed,
                "nan_policy": nan_policy,
            }
        )
        self.data_spec = spec
        self.target_scale = _target_scale(spec, self.head)
        num_classes = getattr(self.head, "num_classes", None)
        ignore = getattr(self.head, "ignore_index", -100)
        # ModuleDict keys may not shadow nn.Module attributes ("train"): prefix the stage
        self._sums = {stage: RunningSums() for stage in ("train", "val", "test")}
        self.metrics = nn.ModuleDict(
            {f"{s}_metrics": TaskMetrics(self.head.task, num_classes, ignore) for s in ("train", "val", "test")}
            if metrics
            else {}
        )

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        **kwargs: Any,
    ) -> Self:
        """Lightning's loader, reading with ``weights_only=True`` by default: a checkpoint cannot run code.

        Its hyper-parameters cannot either: a head named by a dotted class path is never imported on the
        checkpoint's word (pass ``head=`` explicitly), and a model much larger than the weights the checkpoint
        holds is refused before it is allocated. Pass ``weights_only=False`` only for files you trust.
        """
        if weights_only and isinstance(checkpoint_path, (str, Path)):
            _check_checkpoint_hparams(checkpoint_path, kwargs)
        return super().load_from_checkpoint(
            checkpoint_path, map_location, hparams_file, strict, weights_only=weights_only, **kwargs
        )

    @staticmethod
    def _check_optim(
        optimizer, lr, weight_decay, momentum, nesterov, schedule, warmup_steps, betas=OptimizerConfig.betas
    ) -> None:
        """The optimizer and schedule arguments' checks (:class:`OptimizerConfig`, :class:`ScheduleConfig`)."""
        OptimizerConfig(optimizer, lr, weight_decay, momentum, nesterov, betas).check(
            "LossbenchModule", lambda f: "optimizer" if f == "name" else f
        )
        ScheduleConfig(schedule, warmup_steps).check("LossbenchModule", lambda f: "schedule" if f == "name" else f)

    # -- forward and steps -----------------------------------------------------------------------
    def forward(self, inputs: Tensor) -> Tensor:
        """The head's outputs for a batch of inputs."""
        return self.head(self.backbone(inputs))

    @staticmethod
    def unpack_batch(batch: Any) -> tuple[Tensor, Tensor]:
        """A batch's ``(inputs, target)``: from a dict ``{"inputs": ..., "target": ...}`` or an ``(inputs, target)``
        pair (every step and the model array read batches through it)."""
        if isinstance(batch, dict):
            return batch["inputs"], batch["target"]
        inputs, target = batch
        return inputs, target

    def head_loss(self, outputs: Tensor, target: Tensor, batch: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The head's loss and terms on ``outputs``; a head that distils also gets the batch's teacher logits
        (``batch["teacher"]``, present in training batches of a comparison with a ``teacher:``)."""
        teacher = batch.get("teacher") if self.head.distils and isinstance(batch, dict) else None
        return self.head.compute(outputs, self._loss_target(target), teacher=teacher)

    def _step(self, batch: Any, stage: str) -> Tensor:
        inputs, target = self.unpack_batch(batch)
        outputs = self(inputs)
        loss, terms = self.head_loss(outputs, target, batch)
        self.accumulate(stage, loss, terms, outputs, target)
        return loss

    def accumulate(self, stage: str, loss: Tensor, terms: dict[str, Tensor], outputs: Tensor, target: Tensor) -> None:
        """Add one batch of ``stage`` (``"train"``, ``"val"`` or ``"test"``) to the epoch's values: its loss and
        named terms to the batch-size-weighted running sums, its ``outputs`` to the task metrics (read on the
        target's original scale). Nothing is logged or synced; :meth:`epoch_values` reads them at the epoch's end."""
        self._sums[stage].add(loss, terms, target.shape[0])
        metrics = self._task_metrics(stage)
        if metrics is not None:
            metrics.update(self.head, outputs.detach(), target, scale=self.target_scale)

    def epoch_values(self, stage: str, reduce: Callable[..., Tensor] | None = None) -> dict[str, Tensor]:
        """The values of ``stage``'s epoch so far, keyed as the module logs them, and a fresh start for the next.

        ``{stage}/loss`` and ``{stage}/<term>`` (``train/loss_epoch`` ... for ``"train"``) are the batch-size-weighted
        means of what :meth:`accumulate` added, summed over processes with ``reduce`` (a Lightning strategy's
        ``reduce``; None: this process's batches only); ``{stage}/<metric>`` are the task metrics that saw a batch
        (each syncs across processes itself). Both are reset. Empty when nothing was added.
        """
        suffix = "_epoch" if stage == "train" else ""
        values = {f"{stage}/{k}{suffix}": v for k, v in self._sums[stage].means(reduce).items()}
        for name, metric in _metric_items(self._task_metrics(stage)).items():
            if metric.update_count:
                values[f"{stage}/{name}"] = metric.compute()  # syncs across processes itself
            metric.reset()
        return values

    def _task_metrics(self, stage: str) -> TaskMetrics | None:
        metrics = self.metrics[f"{stage}_metrics"] if f"{stage}_metrics" in self.metrics else None
        return metrics if isinstance(metrics, TaskMetrics) else None

    def _log_step_values(self, loss: Tensor, terms: dict[str, Tensor], batch_size: int) -> None:
        """Log a training step's loss and terms (the global batch's under DDP) where Lightning writes them."""
        if not self._logs_step_values():
            return
        values = {"train/loss": loss.detach(), **{f"train/{k}": v.detach() for k, v in terms.items()}}
        if self.trainer.world_size > 1:  # the global batch's values (processes train equal shares): one sync
            reduced = self.trainer.strategy.reduce(torch.stack(list(values.values())), reduce_op="mean")
            values = dict(zip(values, reduced))
        self.log_dict(values, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch_size)

    def _logs_step_values(self) -> bool:
        """Whether this training batch logs its step values (loss, terms, gradient norm, learning rate).

        Lightning writes step values to the loggers only at the end of a batch where its logger connector's
        ``should_update_logs`` holds (every ``log_every_n_steps``-th batch that steps, counted as
        ``_batches_that_stepped + 1``; never when it is 0; every batch once a stop is requested) or under
        ``fast_dev_run``. A value logged at another batch stays in the metrics and is written by the next
        write, under that later step, so the values are logged where Lightning writes (the same property,
        asked while the batch runs), and at step 0 so that the keys are in ``callback_metrics`` and the
        progress bar from the start (overwritten before any write). Skipping the other batches saves
        ``self.log``'s cost (~0.4 ms a call on CPU) and, under DDP, a reduction per step. A stop that a
        callback requests in this batch's ``on_train_batch_end`` (``Timer`` does) comes after the batch
        logged: that last write holds the values logged before.
        """
        trainer = self._trainer
        if trainer is None:
            return False
        # Trainer sets fast_dev_run in its debugging-flags setup; the class does not declare it
        fast_dev_run = trainer.fast_dev_run  # type: ignore[attr-defined]
        return bool(trainer._logger_connector.should_update_logs or fast_dev_run or trainer.global_step == 0)

    def _epoch_end(self, stage: str) -> None:
        """Log the epoch's values (:meth:`epoch_values`: means summed over processes, task metrics), reset."""
        logged = self.epoch_values(stage, self.trainer.strategy.reduce)
        if logged:
            # the values are already reduced over processes (the same on each): under DDP a "max" sync keeps
            # them exactly and tells Lightning they are synced (no "use sync_dist=True" warning per key)
            sync = self.trainer.world_size > 1
            self.log_dict(
                logged,
                on_step=False,
                on_epoch=True,
                prog_bar=stage == "val",
                sync_dist=sync,
                reduce_fx="max" if sync else "mean",
            )

    def check_loss(
        self,
        loss: Tensor,
        terms: dict[str, Tensor],
        step: int,
        batch_idx: int,
        *,
        finite: bool | None = None,
        trainer: pl.Trainer | None = None,
    ) -> bool:
        """``nan_policy`` on a training step's loss: whether the step trains on it (backward, optimizer step).

        A loss finite on every process of ``trainer``'s run (default: this module's Trainer) gives True: the
        processes decide together, as a process skipping alone would hang DDP's gradient sync. Otherwise
        ``"raise"`` raises a ``FloatingPointError`` (:meth:`non_finite_message`: the step, the loss, its
        non-finite terms) and ``"skip"`` counts the step in ``skipped_steps`` and gives False. The loss, ``step``
        and ``batch_idx`` are kept for :meth:`check_gradient`'s error. ``finite``: whether the loss is finite on
        this process, when the caller knows it already (a model array checks all its members in one sync).
        """
        here = bool(torch.isfinite(loss.detach())) if finite is None else finite
        self._step_loss, self._loss_step, self._batch_idx = loss.detach(), step, batch_idx
        if _all_processes(self._trainer if trainer is None else trainer, here):
            return True
        self._skip_or_raise(self.non_finite_message(loss, terms, step, batch_idx, elsewhere=here))
        return False

    def check_gradient(self, norm: Tensor, lr: float, *, finite: bool | None = None, scaled: bool = False) -> bool:
        """``nan_policy`` on the gradient of the step :meth:`check_loss` let through: whether it updates the weights.

        ``norm`` is the gradient's norm before clipping (after DDP's reduction: the same on every process, so the
        processes decide alike) and ``lr`` the step's learning rate. A finite norm gives True, and
        ``step_grad_norm``/``step_lr`` keep both. A non-finite one gives False: under a loss scaler (``scaled``)
        it is the scaler's overflow (the step is skipped and the scale lowered by the scaler) and the policy does
        not act; otherwise ``"raise"`` raises a ``FloatingPointError`` (:meth:`non_finite_gradient_message`) and
        ``"skip"`` counts the step in ``skipped_steps`` (the caller drops the gradient: :meth:`drop_gradients`).
        ``finite``: whether ``norm`` is finite, when the caller knows it already.
        """
        if bool(torch.isfinite(norm)) if finite is None else finite:
            self.step_grad_norm, self.step_lr = norm.detach(), float(lr)
            return True
        if not scaled:
            self._skip_or_raise(
                self.non_finite_gradient_message(self._step_loss, norm, self._loss_step, self._batch_idx)
            )
        return False

    def _skip_or_raise(self, message: str) -> None:
        if self.nan_policy == "raise":
            raise FloatingPointError(message)
        self.skipped_steps += 1

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | dict[str, Any] | None:
        inputs, target = self.unpack_batch(batch)
        outputs = self(inputs)
        loss, terms = self.head_loss(outputs, target, batch)
        if self.check_loss(loss, terms, self.global_step, batch_idx):
            self._loss_backward = True
            self.accumulate("train", loss, terms, outputs, target)
            self._log_step_values(loss, terms, target.shape[0])
            return loss
        self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)
        if self._trainer is not None and self._trainer.world_size > 1:
            # Lightning refuses None under DDP: backward a zero through every parameter (so DDP's gradient
            # sync completes), then on_before_optimizer_step drops the gradients: no update, as with None
            self._zero_backward = True
            return {"loss": zero_loss(self), "skipped": True}
        return None  # Lightning skips backward and the optimizer step

    def non_finite_message(
        self, loss: Tensor, terms: dict[str, Tensor], step: int, batch_idx: int, elsewhere: bool = False
    ) -> str:
        """The error of ``nan_policy='raise'``: where, the loss and its non-finite terms."""
        bad = [name for name, value in terms.items() if not bool(torch.isfinite(value.detach()).all())]
        name = self.head.name or type(self.head).__name__
        detail = f"non-finite terms: {', '.join(bad)}" if bad else "the loss itself is non-finite"
        if elsewhere:
            detail = "non-finite in another process of this distributed run"
        return (
            f"LossbenchModule: at step {step} (batch {batch_idx}) the {name!r} loss is {float(loss.detach())} "
            f"({detail}); check the inputs and the learning rate, or set nan_policy='skip'"
        )

    def non_finite_gradient_message(self, loss: Tensor | None, norm: Tensor, step: int, batch_idx: int) -> str:
        """The error of ``nan_policy='raise'`` on a finite loss whose gradient is not: where, the loss, the norm."""
        name = self.head.name or type(self.head).__name__
        value = "finite" if loss is None else float(loss.detach())
        return (
            f"LossbenchModule: at step {step} (batch {batch_idx}) the {name!r} loss is {value} but its gradient "
            f"is not finite (gradient norm {float(norm)}); check the loss's gradient at these outputs and the "
            "learning rate, or set nan_policy='skip'"
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_callbacks(self) -> list[pl.Callback]:
        from lossbench.resume import ResumeState

        return [ResumeState()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lossbench_skipped_steps"] = self.skipped_steps
        if self._trainer is not None and self.trainer.world_size == 1:  # one process's sums: not resumable under DDP
            checkpoint["lossbench_train_epoch"] = self._train_epoch_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_steps = int(checkpoint.get("lossbench_skipped_steps", 0))
        if "lossbench_train_epoch" in checkpoint and (self._trainer is None or self.trainer.world_size == 1):
            self._resumed_train_epoch = checkpoint["lossbench_train_epoch"]
        if self._trainer is not None and str(self.trainer.precision).startswith("64"):
            # Lightning loads the weights before precision "64-true" converts the module: convert it
            # first, or float64 weights would be rounded to float32 on the way in
            self.double()

    def _train_epoch_state(self) -> dict[str, Any]:
        """The training epoch's running loss sums and metric states, so a mid-epoch resume logs whole-epoch means."""
        sums = self._sums["train"]
        metrics = _metric_items(self._task_metrics("train"))
        return {
            "epoch": int(self.trainer.current_epoch),
            "sums": dict(sums.sums),
            "count": sums.count,
            "metrics": {name: {"state": m.metric_state, "updates": m.update_count} for name, m in metrics.items()},
        }

    def on_train_start(self) -> None:
        state, self._resumed_train_epoch = self._resumed_train_epoch, None
        # only when the fit goes on in the epoch the checkpoint was saved in (Lightning starts the next one
        # when it was saved after the epoch's last batch, without that epoch's end)
        if state is not None and state.get("epoch") == self.trainer.current_epoch:
            self._load_train_epoch_state(state)

    def _load_train_epoch_state(self, state: dict[str, Any]) -> None:
        sums = self._sums["train"]
        sums.sums, sums.count = dict(state["sums"]), state["count"]
        metrics = _metric_items(self._task_metrics("train"))
        for name, saved in state["metrics"].items():
            if name in metrics:
                metric = metrics[name]
                for attr, value in saved["state"].items():
                    setattr(metric, attr, value)
                metric._update_count, metric._computed = int(saved["updates"]), None

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        inputs = (
            batch["inputs"] if isinstance(batch, dict) else (batch[0] if isinstance(batch, (list, tuple)) else batch)
        )
        outputs = self(inputs)
        return self.predict_values(outputs) if self.head.task == "regression" else self.head.predict_proba(outputs)

    def predict_values(self, outputs: Tensor) -> Tensor:
        """Regression predictions on the target's original scale (undoing the target standardisation)."""
        values = self.head.predict(outputs)
        if self.target_scale is None:
            return values
        mean, std = self.target_scale
        return values * std + mean

    def _loss_target(self, target: Tensor) -> Tensor:
        """The target the loss sees: standardised with the training split's mean and std when the spec has them."""
        if self.target_scale is None:
            return target
        mean, std = self.target_scale
        return (target - mean) / std

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Check the gradient (``nan_policy``), then keep and log its norm and the learning rate of a step that
        updates the weights. Lightning calls it after backward (and a loss scaler's unscaling), before clipping."""
        if self._zero_backward and not self._loss_backward:  # only skipped batches (DDP): no update, as with None
            self.drop_gradients()
        self._zero_backward = self._loss_backward = False
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:  # a step skipped on its loss: no update
            return
        # the same on every process (the gradients are reduced before this hook): they skip or raise together
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        scaled = loss_scaler(self._trainer) is not None  # a scaler skips the step and lowers its scale itself
        lr = float(optimizer.param_groups[0]["lr"])
        if self.check_gradient(norm, lr, scaled=scaled):
            if self._logs_step_values():
                values = {"train/grad_norm": norm.detach(), "train/lr": torch.tensor(lr)}
                self.log_dict(values, on_step=True, on_epoch=False)
        elif not scaled:  # skipped (nan_policy "skip"): no update, as a step skipped on its loss
            self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)
            self.drop_gradients()

    def drop_gradients(self) -> None:
        """Drop every parameter's gradient (set it to None): the optimizer then leaves the weights unchanged."""
        for p in self.parameters():
            p.grad = None

    # -- optimisation --------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups: decayed matrices, then the rest (biases, norms, positions), each
        with this module's learning rate, weight decay and optimizer settings (so modules may differ per group)."""
        hp = self.hparams
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.dim() >= 2 and "position" not in name and name != "backbone.cls" else no_decay).append(p)
        extra = (
            {"momentum": hp["momentum"], "nesterov": hp["nesterov"]}
            if hp["optimizer"] == "sgd"
            else {"betas": tuple(hp["betas"])}
        )
        return [
            {"params": decay, "weight_decay": hp["weight_decay"], "lr": hp["lr"], **extra},
            {"params": no_decay, "weight_decay": 0.0, "lr": hp["lr"], **extra},
        ]

    def lr_factor(self, total_steps: int) -> Callable[[int], float] | None:
        """The schedule as a function of the step (``LambdaLR``'s factor), or None for a constant rate."""
        hp = self.hparams
        if hp["schedule"] == "none" and hp["warmup_steps"] == 0:
            return None
        total = max(1, int(total_steps))
        return partial(schedule_factor, warmup=hp["warmup_steps"], kind=hp["schedule"], total=total)

    def configure_optimizers(self) -> Any:
        groups = self.param_groups()
        sgd = self.hparams["optimizer"] == "sgd"
        opt: torch.optim.Optimizer = torch.optim.SGD(groups) if sgd else torch.optim.AdamW(groups)
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        factor = self.lr_factor(total)
        if factor is None:
            return opt
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _all_processes(trainer: pl.Trainer | None, decision: bool) -> bool:
    """Whether ``decision`` holds on every process of ``trainer``'s run (no Trainer or one process: ``decision``)."""
    if trainer is None or trainer.world_size <= 1:
        return decision
    return bool(trainer.strategy.reduce_boolean_decision(decision, all=True))


def zero_loss(module: nn.Module) -> Tensor:
    """A zero through every trainable parameter of ``module``: its backward completes DDP's gradient sync (which
    needs a gradient for every parameter) for a step that must not update the weights."""
    return torch.stack([p.sum() for p in module.parameters() if p.requires_grad]).sum() * 0.0


def _metric_items(metrics: TaskMetrics | None) -> dict[str, Metric]:
    """A stage's task metrics by name (none without): :class:`TaskMetrics` holds torchmetrics metrics only."""
    return {} if metrics is None else cast("dict[str, Metric]", dict(metrics.metrics.items()))


def loss_scaler(trainer: Any) -> Any | None:
    """The enabled loss scaler (``torch.amp.GradScaler``) of a Trainer's precision (``"16-mixed"``), or None."""
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def schedule_factor(step: int, *, warmup: int, kind: str, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then constant (``"none"``) or ``"cosine"``/``"linear"`` decay to 0
    at step ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "none":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress

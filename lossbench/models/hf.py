"""A pretrained Hugging Face Transformer as the backbone (the ``hf`` extra: ``pip install lossbench[hf]``).

In a recipe::

    backbone: {class_path: lossbench.models.HFEncoder, init_args: {pretrained: ./my-model, pooling: mean}}

:class:`HFEncoder` follows the backbone contract of :mod:`lossbench.models.custom`: it is called on token ids
``(B, T)`` padded with the data's ``pad_id`` and returns pooled features ``(B, hidden_size)``. The comparison's
data then tokenizes with the model's own tokenizer (``data.tokenizer: "hf:<pretrained>"``, filled in when the
recipe gives none), so the ids, the padding id and the vocabulary are the model's.

Importing this module does not import ``transformers``; building an :class:`HFEncoder` does.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lossbench._extras import import_optional

__all__ = ["FREEZE_HELP", "POOLINGS", "HFEncoder", "check_init_args", "import_transformers", "tokenizer_setting"]

POOLINGS = ("cls", "mean")
FREEZE_HELP = "None, 'embeddings' or {'all_but_last_n': k} (k >= 0)"
TOKENIZER_PREFIX = "hf:"
"""The data's ``tokenizer`` setting that names a Hugging Face tokenizer: ``"hf:<name or folder>"``."""


def import_transformers() -> Any:
    """The ``transformers`` module, or a MissingExtraError naming the ``hf`` extra."""
    return import_optional("transformers", "hf", "HFEncoder (a pretrained Hugging Face model as the backbone)")


def _check_freeze(freeze: Any) -> None:
    if freeze is None or freeze == "embeddings":
        return
    if isinstance(freeze, dict) and set(freeze) == {"all_but_last_n"}:
        k = freeze["all_but_last_n"]
        if isinstance(k, int) and not isinstance(k, bool) and k >= 0:
            return
    raise ValueError(f"HFEncoder: `freeze` must be {FREEZE_HELP}, got {freeze!r}")


def _check_local_model(pretrained: str) -> None:
    """A folder must hold a model saved by ``save_pretrained`` with safetensors weights; a path-looking name that
    is not a folder is refused (a name that is neither is left to the hub)."""
    folder = Path(pretrained).expanduser()
    if folder.is_file():
        raise ValueError(f"HFEncoder: `pretrained`={pretrained!r} is a file, not a model folder (nor a hub name)")
    if not folder.is_dir():
        if pretrained.startswith((".", "/", "~")):
            raise ValueError(f"HFEncoder: `pretrained`={pretrained!r}: no such folder")
        return
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"HFEncoder: `pretrained`={pretrained!r} is not a Hugging Face model folder: it has no config.json "
            "(save one with model.save_pretrained(folder))"
        )
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.safetensors.index.json")):
        raise ValueError(
            f"HFEncoder: `pretrained`={pretrained!r} has no safetensors weights (lossbench loads no pickled "
            "weights): save the model with model.save_pretrained(folder), which writes model.safetensors"
        )


def check_init_args(init_args: dict[str, Any]) -> dict[str, Any]:
    """Check :class:`HFEncoder`'s arguments without loading anything (a recipe's check, before anything is
    written): the argument names, ``pretrained`` (a local folder must be a saved model), ``pooling``, ``freeze``,
    and that ``transformers`` is installed. Returns them bound to the signature, defaults filled in.

    Raises:
        ValueError: naming the argument, what is expected and what was given.
        MissingExtraError: ``transformers`` is missing (``pip install 'lossbench[hf]'``).
    """
    try:
        bound = inspect.signature(HFEncoder.__init__).bind(None, **init_args)
    except TypeError as exc:
        raise ValueError(f"HFEncoder: {exc} (its arguments: pretrained, pooling, freeze)") from None
    bound.apply_defaults()
    args = dict(bound.arguments)
    args.pop("self")
    pretrained = args["pretrained"]
    if not isinstance(pretrained, (str, os.PathLike)) or not os.fspath(pretrained):
        raise ValueError(f"HFEncoder: `pretrained` must be a hub name or a model folder, got {pretrained!r}")
    args["pretrained"] = os.fspath(pretrained)
    if args["pooling"] not in POOLINGS:
        raise ValueError(f"HFEncoder: `pooling` must be one of {POOLINGS}, got {args['pooling']!r}")
    _check_freeze(args["freeze"])
    import_transformers()
    _check_local_model(args["pretrained"])
    return args


def tokenizer_setting(init_args: dict[str, Any]) -> str:
    """The data's ``tokenizer`` for an HFEncoder with ``init_args``: the model's own, ``"hf:<pretrained>"``."""
    return TOKENIZER_PREFIX + os.fspath(init_args["pretrained"])


def state_sha256(state: dict[str, Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def _layers(model: Any) -> nn.ModuleList | None:
    """The model's stack of Transformer layers: its first ModuleList as long as the config's layer count."""
    config = model.config
    count = next(
        (getattr(config, k) for k in ("num_hidden_layers", "n_layer", "num_layers") if hasattr(config, k)), None
    )
    if not isinstance(count, int):
        return None
    return next((m for m in model.modules() if isinstance(m, nn.ModuleList) and 0 < len(m) == count), None)


def _embeddings(model: Any) -> nn.Module:
    found = getattr(model, "embeddings", None)
    return found if isinstance(found, nn.Module) else model.get_input_embeddings()


def _freeze(model: Any, freeze: Any, pretrained: str) -> list[str]:
    """Set ``requires_grad=False`` on what ``freeze`` names; the frozen parameters' names."""
    if freeze is None:
        return []
    frozen: list[nn.Module] = [_embeddings(model)]
    if isinstance(freeze, dict):
        layers = _layers(model)
        if layers is None:
            raise ValueError(
                f"HFEncoder: `freeze`={freeze!r} needs the model's layers, and {type(model).__name__} "
                f"({pretrained!r}) has no ModuleList of config.num_hidden_layers layers; use freeze='embeddings'"
            )
        k = freeze["all_but_last_n"]
        if k > len(layers):
            raise ValueError(
                f"HFEncoder: `freeze`={freeze!r} asks to train the last {k} layers, {pretrained!r} has {len(layers)}"
            )
        frozen.extend(layers[: len(layers) - k])
    names = {id(p) for module in frozen for p in module.parameters()}
    out = []
    for name, p in model.named_parameters():
        if id(p) in names:
            p.requires_grad_(False)
            out.append(name)
    return out


def _pad_id(transformers: Any, pretrained: str, config: Any) -> int:
    """The id the data pads with: the model's own tokenizer's pad token (the config's when it has no tokenizer)."""
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError):
        tokenizer = None
    from_tokenizer = getattr(tokenizer, "pad_token_id", None)
    from_config = getattr(config, "pad_token_id", None)
    if from_tokenizer is not None and from_config is not None and from_tokenizer != from_config:
        raise ValueError(
            f"HFEncoder: {pretrained!r}'s tokenizer pads with id {from_tokenizer} and its config says "
            f"pad_token_id={from_config}; make them agree (tokenizer.pad_token, model.config.pad_token_id)"
        )
    pad = from_tokenizer if from_tokenizer is not None else from_config
    if pad is None:
        raise ValueError(
            f"HFEncoder: {pretrained!r} has no padding token (neither its tokenizer's pad_token nor its "
            "config's pad_token_id): set one and save the model and tokenizer again"
        )
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"HFEncoder: {pretrained!r}'s tokenizer has {len(tokenizer)} ids, its model's embeddings "
            f"{config.vocab_size} (config.vocab_size): they are not a model and its own tokenizer"
        )
    return int(pad)


def _on_meta_device() -> bool:
    """Whether tensors are being made on the meta device (the engine counts a backbone's parameters that way)."""
    return torch.empty(0).device.type == "meta"


def _load(transformers: Any, pretrained: str) -> tuple[Any, set[str]]:
    """``AutoModel.from_pretrained`` (no remote code, safetensors only, float32; the Trainer's precision decides
    the rest) and the names of the weights the files did not hold (initialised under the seed's RNG). On the meta
    device, the model is made from its config alone: no weights are read."""
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # per-seed loading notes and bars are not a comparison's output
    transformers.utils.logging.disable_progress_bar()
    try:
        if _on_meta_device():
            config = transformers.AutoConfig.from_pretrained(pretrained, trust_remote_code=False)
            return transformers.AutoModel.from_config(config, trust_remote_code=False), set()
        model, info = transformers.AutoModel.from_pretrained(
            pretrained,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=torch.float32,
            output_loading_info=True,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"HFEncoder: `pretrained`={pretrained!r} is not a Hugging Face model that AutoModel can load "
            f"without remote code from safetensors weights: {str(exc).strip().splitlines()[0][:300]}"
        ) from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return model, set(info.get("missing_keys") or ())


class HFEncoder(nn.Module):
    """A pretrained Hugging Face model (``AutoModel``) as the backbone: token ids ``(B, T)`` -> ``(B, hidden)``.

    Loaded with ``AutoModel.from_pretrained(pretrained, trust_remote_code=False, use_safetensors=True)`` in
    float32 (the Trainer's ``precision`` decides the dtype it trains in). The attention mask is ``ids != pad_id``,
    with the pad id of the model's own tokenizer (the one the comparison's data tokenizes with). A pooler the
    model can be built without (BERT's ``add_pooling_layer``) is dropped: lossbench pools the last hidden states.

    Pretrained weights are the same for every seed: :attr:`pretrained_sha256` (in every run record) is the
    sha256 of the state loaded from the files; weights the files lack (:attr:`initialised`) are drawn under the
    seed's RNG, as every backbone is built.

    Args:
        pretrained: a hub name (when the hub is reachable) or a folder written by ``save_pretrained``.
        pooling: ``"cls"`` (the first token's last hidden state, BERT's ``[CLS]``) or ``"mean"`` (the mean over
            the non-padding tokens).
        freeze: None (train everything), ``"embeddings"`` (freeze the embeddings), or
            ``{"all_but_last_n": k}`` (freeze the embeddings and every layer but the last ``k``; ``k=0`` trains
            the head alone). Frozen parameters keep their pretrained values.

    Raises:
        MissingExtraError: ``transformers`` is not installed (``pip install 'lossbench[hf]'``).
        ValueError: a bad argument, or ``pretrained`` is not a model AutoModel can load.
    """

    def __init__(self, pretrained: str, pooling: str = "cls", freeze: str | dict[str, int] | None = None) -> None:
        super().__init__()
        args = check_init_args({"pretrained": pretrained, "pooling": pooling, "freeze": freeze})
        transformers = import_transformers()
        self.pretrained, self.pooling, self.freeze = args["pretrained"], pooling, freeze
        model, missing = _load(transformers, self.pretrained)
        pooler = getattr(model, "pooler", None)
        if isinstance(pooler, nn.Module) and "add_pooling_layer" in inspect.signature(type(model).__init__).parameters:
            model.pooler = None
        self.model = model.train()  # from_pretrained returns eval mode; a new backbone trains (dropout on)
        self.pad_id = _pad_id(transformers, self.pretrained, model.config)
        widths = [getattr(model.config, k, None) for k in ("hidden_size", "d_model", "dim")]
        width = next((w for w in widths if isinstance(w, int) and not isinstance(w, bool)), None)
        if width is not None:  # else lossbench measures F on a 2-row batch
            self.out_features = width
        self.max_positions: int | None = getattr(model.config, "max_position_embeddings", None)
        state = model.state_dict()
        self.initialised = sorted(k for k in state if k in missing)
        self.pretrained_sha256: str | None = None  # none on the meta device: no weights were read
        if not _on_meta_device():
            self.pretrained_sha256 = state_sha256({k: v for k, v in state.items() if k not in missing})
        self.frozen = _freeze(model, freeze, self.pretrained)

    def forward(self, input_ids: Tensor) -> Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"HFEncoder: expects token ids (B, T), got a tensor of shape {tuple(input_ids.shape)}")
        if self.max_positions is not None and input_ids.shape[1] > self.max_positions:
            raise ValueError(
                f"HFEncoder: {input_ids.shape[1]} tokens, {self.pretrained!r} has {self.max_positions} positions "
                f"(config.max_position_embeddings): set the data's `max_length` to at most {self.max_positions}"
            )
        mask = (input_ids != self.pad_id).long()
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def extra_repr(self) -> str:
        return f"pretrained={self.pretrained!r}, pooling={self.pooling!r}, freeze={self.freeze!r}"

"""What a data module tells the training module: its inputs and its targets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

InputKind = Literal["tokens", "features", "image"]
TargetKind = Literal["class", "real", "probability", "token"]


@dataclass(frozen=True)
class DataSpec:
    """Shapes and kinds of one dataset's inputs and targets (plain values: it is saved in checkpoints).

    Batches are dicts ``{"inputs": Tensor, "target": Tensor}``:

    - ``tokens``: int64 ids (N, T) padded with ``pad_id``; ``features``: float (N, F);
      ``image``: float (N, C, H, W).
    - ``class``: int64 labels (N,) in [0, num_classes); ``real``: float (N,);
      ``probability``: float (N, C) rows summing to 1; ``token``: int64 (N, T) next-token ids,
      ``-100`` at padding.
    """

    input_kind: InputKind
    target_kind: TargetKind
    num_classes: int | None = None  # classes, or the vocabulary size for language modelling
    num_features: int | None = None  # "features" inputs
    vocab_size: int | None = None  # "tokens" inputs
    max_length: int | None = None  # "tokens" inputs
    pad_id: int | None = None  # "tokens" inputs
    image_shape: tuple[int, int, int] | None = None  # "image" inputs: (C, H, W)
    class_names: tuple[str, ...] | None = None
    # "real" targets: the training split's mean and std; the module trains on (target - mean) / std and
    # reports metrics and predictions on the original scale. None: trained on the target as given.
    target_mean: float | None = None
    target_std: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataSpec:
        values = dict(values)
        for key in ("image_shape", "class_names"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

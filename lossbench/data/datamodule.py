"""``HFDataModule``: a Hugging Face ``datasets`` dataset as a LightningDataModule with a :class:`DataSpec`.

The work is shared out: :mod:`~lossbench.data.splits` picks or carves the splits,
:mod:`~lossbench.data.planning` reads what to compute from the training split,
:mod:`~lossbench.data.preprocess` computes it inside ``Dataset.map`` (cached), and
:mod:`~lossbench.data.loading` orders and batches the rows.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from lossbench._extras import require
from lossbench.data.builtin import BUILTIN_VERSION, load_builtin
from lossbench.data.config import TASKS, DataConfig
from lossbench.data.corrupt import Imbalance, LabelNoise
from lossbench.data.errors import (
    _OWNER,
    HubUnreachableError,
    _err,
    _hub_error,
    _looks_offline,
)
from lossbench.data.features import _feature_kind
from lossbench.data.loading import (
    IGNORE_INDEX,
    Collate,
    ResumableDataLoader,
    SeededShuffleSampler,
    TeacherRows,
    in_memory,
)
from lossbench.data.memory import is_memory_name, memory_dataset
from lossbench.data.planning import _count_features, _make_spec, _plan_image, _plan_target
from lossbench.data.preprocess import PREPROCESS_VERSION, _fingerprint, _Plan, _preprocess, _standardize
from lossbench.data.spec import DataSpec
from lossbench.data.splits import _SPLIT_ARGS, SPLITS, _check_columns, _make_splits
from lossbench.data.tokenize import BPETokenizer, ByteTokenizer, get_tokenizer, train_bpe_tokenizer
from lossbench.distributed import process_sampler

__all__ = [
    "IGNORE_INDEX",
    "PREPROCESS_VERSION",
    "SPLITS",
    "TASKS",
    "Collate",
    "HFDataModule",
    "HubUnreachableError",
    "SeededShuffleSampler",
]


class HFDataModule(L.LightningDataModule):
    """A Hugging Face ``datasets`` dataset (hub, local files or bundled) as a LightningDataModule.

    Batches are ``{"inputs": Tensor, "target": Tensor}`` as :class:`~lossbench.data.spec.DataSpec`
    describes: int64 token ids (N, T) padded with ``pad_id=0``, float32 features (N, F) or images
    (N, C, H, W); int64 class ids (N,), float32 real targets (N,) or probability rows (N, C), or
    int64 next-token ids (N, T) with ``-100`` at padding for language modelling.

    Loading is lazy: :attr:`spec`, :attr:`num_classes` and :attr:`label_names` load and check the
    data on first access (so LightningCLI can link ``data.spec`` to the model at instantiation),
    and :meth:`setup` does the same. Every check runs on every split before any training.

    Splits: ``train_split`` must exist; a missing ``val_split``/``test_split`` is carved out of the
    training split (``val_fraction``/``test_fraction`` of it, seeded by ``split_seed``, stratified by
    class when every class has enough rows). Bundled datasets come already split.

    Labels (``task="auto"``): ``ClassLabel``, int, bool and str columns are classes (strings map to
    ids in sorted order of the training labels, kept in :attr:`label_names` and the spec); float
    columns are real targets (kept raw in the data; with ``standardize_target`` the spec carries the
    training split's mean and std, the module trains on the standardised target and reports metrics and
    predictions on the original scale); lists of floats are probability rows.
    ``task="class"`` also accepts integral floats, ``task="real"`` also ints. Labels of ``-1`` are
    rejected: ``datasets`` uses -1 for unlabeled rows (e.g. GLUE test splits), so filter them out
    (``dataset.filter(lambda r: r["label"] != -1)``) or point the split at labelled data.

    Text: by default (``tokenizer="bpe"``) a byte-level BPE is trained offline on the training
    split only (never on validation/test rows), deterministically (the same data gives the same
    tokens), and saved under the cache, where later runs on the same data reuse it;
    ``tokenizer="byte"`` gives raw UTF-8 byte ids (259 ids, no training; a small model learns
    much less from them), ``tokenizer="hf:<name or folder>"`` is a pretrained model's own tokenizer
    (``AutoTokenizer``, the ``hf`` extra: its ids, special tokens and pad id, for
    :class:`lossbench.models.HFEncoder`), and a path to a saved tokenizer JSON also works. The BPE's vocabulary
    is at most ``tokenizer_vocab_size``: a small training split yields fewer merges, so
    :attr:`spec` reports the size reached. Classification sequences start with ``bos``; language-modelling
    sequences are ``bos + text + eos`` truncated to ``max_length + 1`` ids, then shifted.

    Preprocessing runs through ``Dataset.map`` with fingerprints computed from the source
    dataset's fingerprint and the preprocessing arguments, so a second run with the same data and
    arguments reads datasets' cache instead of recomputing.

    ``predict_dataloader`` serves the test split.

    Shuffling: the training order is a function of ``(seed, epoch)`` only
    (:class:`SeededShuffleSampler`; Lightning sets the epoch); :meth:`train_order` gives it.
    Every loader draws its worker seeds from its own generator, never from the global torch
    RNG, so iterating the data does not change the random numbers training draws (dropout).

    Resuming: checkpoints saved while fitting hold the position in the training order (epoch
    and batches served, through :meth:`state_dict`); a run resumed mid-epoch from one serves
    the rest of that epoch's order, not the epoch again from its start. With
    :class:`lossbench.resume.ResumeState` (RNG states) the resumed run continues exactly as if
    never stopped. The position is used on one process only: under DDP a resumed epoch starts
    over from its first batch (with a warning).

    The arguments are the fields of :class:`~lossbench.data.config.DataConfig` (their defaults come from
    it); :attr:`config` holds them as checked.

    Args:
        path: a hub dataset name (``"ag_news"``), a builder for local files (``"csv"``,
            ``"parquet"``, ``"json"``) with ``data_files``, a local dataset folder, or a bundled
            dataset ``"lossbench:<name>"`` (see :data:`lossbench.data.BUILTIN_DATASETS`), or a
            ``datasets.Dataset`` / ``DatasetDict`` in memory (a lone ``Dataset`` is ``train_split``; it is held
            under its contents' name, ``"memory:<sha256>"``: :mod:`lossbench.data.memory`).
        name: the dataset configuration, if it has several.
        data_files: local files for a builder: a path, a list of paths, or ``{split: path(s)}``.
        train_split: the split to train on.
        val_split: the validation split; carved out of ``train_split`` when absent or None.
        test_split: the test split; carved out of ``train_split`` when absent or None.
        val_fraction: share of the training rows carved out for validation when needed (0 = none).
        test_fraction: share of the training rows carved out for testing when needed (0 = none).
        split_seed: seed of carved and bundled splits; apart from ``seed`` so that training seeds
            vary initialisation and batch order on one fixed split.
        text_column: the column of texts (token inputs).
        feature_columns: numeric columns (each a number or a fixed-length list), concatenated,
            or a single column holding a list.
        image_column: the column of images (``datasets.Image``, 2-D or 3-D arrays); ``Image`` and
            uint8 pixels are scaled to [0, 1], other arrays are used as given.
        label_column: the target column; None: ``"label"``, or a bundled dataset's own.
        task: ``"auto"``, ``"class"``, ``"real"``, ``"probability"``, or ``"lm"`` (next-token
            prediction on ``text_column``; ``label_column`` is not used).
        tokenizer: ``"bpe"`` (default: a byte-level BPE trained on the training split),
            ``"byte"`` (UTF-8 bytes), ``"hf:<name or folder>"`` (a pretrained model's own tokenizer),
            or a path to a saved BPE tokenizer JSON.
        tokenizer_vocab_size: the largest vocabulary of a ``"bpe"`` tokenizer (>= 259).
        max_length: the most tokens per input sequence (>= 1); longer texts are truncated.
        padding: ``"longest"`` pads each batch to its longest sequence, ``"max_length"`` to
            ``max_length``.
        batch_size: training batch size.
        eval_batch_size: validation/test/predict batch size; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: seed of the training order.
        standardize: standardise numeric features with the training split's mean and std.
        standardize_target: for real targets, put the training split's target mean and std in
            :attr:`spec` (``target_mean``/``target_std``), so that the module trains on the
            standardised target (losses and learning rates then behave alike on any target scale);
            metrics and predictions stay on the original scale. False: train on the raw target.
        cache_dir: datasets' cache folder; None: datasets' default (``HF_DATASETS_CACHE``).

    Example:
        >>> import tempfile
        >>> dm = HFDataModule("lossbench:wine", batch_size=4, cache_dir=tempfile.mkdtemp())
        >>> dm.spec.input_kind, dm.spec.num_features, dm.num_classes
        ('features', 13, 3)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> batch["inputs"].shape, batch["target"].dtype
        (torch.Size([4, 13]), torch.int64)
    """

    def __init__(
        self,
        path: Any,
        name: str | None = DataConfig.name,
        data_files: str | list[str] | dict[str, str | list[str]] | None = DataConfig.data_files,
        train_split: str = DataConfig.train_split,
        val_split: str | None = DataConfig.val_split,
        test_split: str | None = DataConfig.test_split,
        val_fraction: float = DataConfig.val_fraction,
        test_fraction: float = DataConfig.test_fraction,
        split_seed: int = DataConfig.split_seed,
        text_column: str | None = DataConfig.text_column,
        feature_columns: list[str] | str | None = DataConfig.feature_columns,
        image_column: str | None = DataConfig.image_column,
        label_column: str | None = DataConfig.label_column,
        task: Literal["auto", "class", "real", "probability", "lm"] = DataConfig.task,
        tokenizer: str = DataConfig.tokenizer,
        tokenizer_vocab_size: int = DataConfig.tokenizer_vocab_size,
        max_length: int = DataConfig.max_length,
        padding: Literal["longest", "max_length"] = DataConfig.padding,
        batch_size: int = DataConfig.batch_size,
        eval_batch_size: int | None = DataConfig.eval_batch_size,
        num_workers: int = DataConfig.num_workers,
        seed: int = DataConfig.seed,
        standardize: bool = DataConfig.standardize,
        standardize_target: bool = DataConfig.standardize_target,
        cache_dir: str | None = DataConfig.cache_dir,
        label_noise: dict[str, Any] | None = DataConfig.label_noise,
        imbalance: dict[str, Any] | None = DataConfig.imbalance,
    ) -> None:
        # the arguments are DataConfig's fields, defaults included (tests/data/test_config.py pins it)
        require("compare", "HFDataModule (loading data with `datasets`)")
        super().__init__()
        config = DataConfig(
            path=path,
            name=name,
            data_files=data_files,
            train_split=train_split,
            val_split=val_split,
            test_split=test_split,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            text_column=text_column,
            feature_columns=feature_columns,
            image_column=image_column,
            label_column=label_column,
            task=task,
            tokenizer=tokenizer,
            tokenizer_vocab_size=tokenizer_vocab_size,
            max_length=max_length,
            padding=padding,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
            standardize=standardize,
            standardize_target=standardize_target,
            cache_dir=cache_dir,
            label_noise=label_noise,
            imbalance=imbalance,
        ).check()
        self.save_hyperparameters(config.to_dict())  # the checked values: plain paths, the columns used
        self._configure(config)

    def _configure(self, config: DataConfig) -> None:
        """The module's settings from checked ones (:meth:`DataConfig.check`), and its empty state."""
        features, label = config.feature_columns, config.label_column
        assert not isinstance(features, str) and label is not None  # check() made a list and named the label
        self.config = config
        self.builtin = config.builtin
        self.label_noise = LabelNoise.parse(config.label_noise) if config.label_noise is not None else None
        self.imbalance = Imbalance.parse(config.imbalance) if config.imbalance is not None else None
        self.path, self.name, self.data_files = config.path, config.name, config.data_files
        self.train_split, self.val_split, self.test_split = config.train_split, config.val_split, config.test_split
        self.val_fraction, self.test_fraction = float(config.val_fraction), float(config.test_fraction)
        self.split_seed = config.split_seed
        self.text_column, self.feature_columns, self.image_column = config.text_column, features, config.image_column
        self.label_column, self.task = label, config.task
        self.tokenizer_name, self.tokenizer_vocab_size = config.tokenizer, config.tokenizer_vocab_size
        self.max_length, self.padding = config.max_length, config.padding
        self.batch_size, self.eval_batch_size, self.num_workers = (
            config.batch_size,
            config.eval_batch_size,
            config.num_workers,
        )
        self.seed, self.standardize, self.cache_dir = config.seed, bool(config.standardize), config.cache_dir
        self.standardize_target = bool(config.standardize_target)
        self._spec: DataSpec | None = None
        self._processed: dict[str, Any] = {}
        self._memory: dict[str, Any] = {}  # split -> its rows for the loaders (loading.in_memory), built on first use
        self._described: dict[str, dict[str, Any]] | None = None  # describe_splits(), once per loaded data
        self._tokenizer: Any = None
        self._label_names: list[str] | None = None
        self.feature_stats: dict[str, list[float]] | None = None
        self._resume_position: dict[str, int] | None = None  # from a checkpoint, for the next train_dataloader()
        self.corruption: dict[str, dict[str, Any]] = {}  # split -> label noise / imbalance done (_corrupt)
        self.teacher_logits: torch.Tensor | None = None  # (train rows, C): training batches carry them (set_teacher)

    # ------------------------------------------------------------------ public properties

    @property
    def spec(self) -> DataSpec:
        """The inputs and targets of this data (loads and checks the data on first access)."""
        self._ensure_loaded()
        assert self._spec is not None
        return self._spec

    @property
    def num_classes(self) -> int | None:
        """Classes (or the vocabulary size for ``task="lm"``); None for real targets."""
        return self.spec.num_classes

    @property
    def label_names(self) -> list[str] | None:
        """Class names in id order (sorted training labels for string labels); None when not classes."""
        self._ensure_loaded()
        return None if self._label_names is None else list(self._label_names)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer of text inputs (None for other inputs)."""
        self._ensure_loaded()
        return self._tokenizer

    @property
    def train_dataset(self):
        """The processed training split (``inputs``/``target`` columns, torch format)."""
        return self._split("train")

    @property
    def val_dataset(self):
        """The processed validation split, or None when there is none."""
        return self._split("validation")

    @property
    def test_dataset(self):
        """The processed test split, or None when there is none."""
        return self._split("test")

    def _split(self, split: str):
        self._ensure_loaded()
        return self._processed.get(split)

    def describe_splits(self) -> dict[str, dict[str, Any]]:
        """Per split (train, validation, test): its source (given or carved), rows, content fingerprint,
        and class counts or the target's mean and sd (:func:`lossbench.data.identity.describe_split`).

        The fingerprint is of the processed rows' contents, not of a path: it changes when the data does.
        """
        from lossbench.data.identity import describe_split

        spec = self.spec  # loads the data first
        if self._described is None:  # hashing every split's contents once, not once per run
            out = {}
            for split in SPLITS:
                data = self._processed.get(split)
                if data is None:
                    continue
                info = describe_split(data, spec.target_kind, spec.class_names, spec.num_classes)
                out[split] = {
                    "source": self._split_sources.get(split, "given"),
                    **info,
                    **self.corruption.get(split, {}),
                }
            self._shared_rows(out)
            self._described = out
        return copy.deepcopy(self._described)

    def _shared_rows(self, described: dict[str, dict[str, Any]]) -> None:
        """Rows of validation or test whose inputs are also rows of an earlier split (train, validation): their
        count and fingerprint go into that split's description (``shared_rows``: earlier split -> them), and a
        warning says so. A held-out score on rows the model trained on measures memory, not generalisation."""
        from lossbench.data.identity import row_digests, shared_rows

        digests = {split: row_digests(self._processed[split]) for split in described}
        for i, split in enumerate(SPLITS):
            for earlier in SPLITS[:i]:
                if split not in digests or earlier not in digests:
                    continue
                shared = shared_rows(digests[split], digests[earlier])
                if shared is not None:
                    described[split].setdefault("shared_rows", {})[earlier] = shared
                    warnings.warn(
                        f"{_OWNER}: {shared['rows']} of the {described[split]['rows']} {split} rows have "
                        f"the same inputs as rows of the {earlier} split (leakage across splits; "
                        f"fingerprint {shared['fingerprint'][:12]})",
                        stacklevel=2,
                    )

    # ------------------------------------------------------------------ Lightning hooks

    def prepare_data(self) -> None:
        """Download (hub) or materialise (bundled) the raw data once, on one process."""
        self._load_raw()

    def setup(self, stage: str | None = None) -> None:
        self._ensure_loaded()

    def set_teacher(self, logits: torch.Tensor | None) -> None:
        """Give every training batch a teacher's logits for its rows (``batch["teacher"]``), for heads that distil;
        None removes them. Validation and test batches never carry them."""
        if logits is not None:
            rows, classes = len(self.train_dataset), self.spec.num_classes
            if logits.dim() != 2 or tuple(logits.shape) != (rows, classes):
                raise _err(
                    f"`set_teacher` needs logits of shape ({rows}, {classes}) (training rows, classes), "
                    f"got {tuple(logits.shape)}"
                )
        self.teacher_logits = logits

    def train_order(self, epoch: int = 0) -> list[int]:
        """The training rows in the order of ``epoch``: a function of ``(seed, epoch)``."""
        return SeededShuffleSampler(len(self.train_dataset), self.seed).order(epoch)

    def _loader(self, split: str, shuffle: bool) -> DataLoader | list:
        data = self._split(split)
        if data is None:
            return []
        if split not in self._memory:  # built once per split: every loader (and every run of a seed) shares it
            self._memory[split] = in_memory(data)
        data = self._memory[split]
        if split == "train" and self.teacher_logits is not None:
            data = TeacherRows(data, self.teacher_logits)
        return (ResumableDataLoader if shuffle else DataLoader)(
            data,
            batch_size=self.batch_size if shuffle else (self.eval_batch_size or self.batch_size),
            # under DDP: this process's share (training keeps the seeded order, evaluation is unpadded)
            sampler=process_sampler(
                SeededShuffleSampler(len(data), self.seed) if shuffle else None,
                len(data),
                getattr(self, "trainer", None),
                train=shuffle,
                what=f"{split!r} split",
            ),
            shuffle=False,
            # worker seeds from the loader's own generator: creating an iterator leaves the global RNG alone
            generator=torch.Generator().manual_seed(self.seed if shuffle else 0),
            collate_fn=Collate(self.spec, self.padding),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", shuffle=True)
        assert isinstance(loader, DataLoader)  # the training split always exists (_make_splits requires it)
        position, self._resume_position = self._resume_position, None
        if position is not None:
            self._resume_sampler(loader.sampler, position)
        return loader

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        """Saved in Lightning checkpoints: the data spec and, while fitting, the training position."""
        state: dict[str, Any] = {"data_spec": self._spec.to_dict()} if self._spec is not None else {}
        position = self._train_position()
        if position is not None:
            state["train_position"] = position
        return state

    def _train_position(self) -> dict[str, int] | None:
        """Where the training order stands: the epoch and the batches of it served so far."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn != "fit" or self._spec is None:
            return None
        loop = trainer.fit_loop
        return {
            "epoch": int(trainer.current_epoch),
            "batches": int(loop.epoch_loop.batch_progress.current.ready),  # fetched from the loader this epoch
            "batch_size": int(self.batch_size),
            "num_rows": len(self._processed["train"]),
            "seed": int(self.seed),
            "world_size": int(trainer.world_size),
        }

    def _resume_sampler(self, sampler: Any, position: dict[str, int]) -> None:
        """Make the training sampler serve the saved epoch from the first row not yet served."""
        trainer = getattr(self, "trainer", None)
        world_size = int(trainer.world_size) if trainer is not None else 1
        if world_size != 1 or position.get("world_size", 1) != 1:
            served = int(position.get("batches", 0)) * int(position.get("batch_size", 0)) * world_size
            if 0 < served < int(position.get("num_rows", 0)):
                warnings.warn(
                    f"{_OWNER}: resuming mid-epoch on {world_size} processes: the position in the batch order is "
                    "kept on one process only, so the resumed epoch starts over from its first batch",
                    UserWarning,
                    stacklevel=2,
                )
            return
        if not isinstance(sampler, SeededShuffleSampler):
            return
        now = {"batch_size": self.batch_size, "num_rows": sampler.num_rows, "seed": sampler.seed}
        changed = {k: (position.get(k), v) for k, v in now.items() if position.get(k) != v}
        if changed:
            warnings.warn(
                f"{_OWNER}: the checkpoint's training position does not fit this data module "
                f"({', '.join(f'{k} {a} then, {b} now' for k, (a, b) in changed.items())}); "
                "the resumed epoch starts from its beginning",
                UserWarning,
                stacklevel=2,
            )
            return
        epoch, start = int(position["epoch"]), int(position["batches"]) * self.batch_size
        if start >= sampler.num_rows:  # saved at the end of an epoch: Lightning goes on with the next one
            epoch, start = epoch + 1, 0
        sampler.resume(epoch, start)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        position = state_dict.get("train_position")
        self._resume_position = dict(position) if position else None
        saved = state_dict.get("data_spec")
        if saved is None:
            return
        saved_spec = DataSpec.from_dict(saved)
        if saved_spec != self.spec:
            raise _err(
                f"the checkpoint was trained on data with spec {saved_spec}, but this data module gives {self.spec}; "
                "the data or its preprocessing arguments changed"
            )

    # ------------------------------------------------------------------ loading

    @property
    def _cache_root(self) -> Path:
        import datasets

        return Path(self.cache_dir or datasets.config.HF_DATASETS_CACHE)

    def _load_raw(self):
        import datasets

        if self.builtin is not None:
            if not datasets.is_caching_enabled():
                return load_builtin(self.builtin, self.split_seed)
            folder = self._cache_root / "lossbench_builtin" / f"{self.builtin}-seed{self.split_seed}-v{BUILTIN_VERSION}"
            if not (folder / "dataset_dict.json").is_file():
                tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
                load_builtin(self.builtin, self.split_seed).save_to_disk(str(tmp))
                try:
                    os.replace(tmp, folder)
                except OSError:  # another process got there first
                    import shutil

                    shutil.rmtree(tmp, ignore_errors=True)
            return datasets.load_from_disk(str(folder))
        if is_memory_name(self.path):
            return memory_dataset(self.path)
        local = Path(self.path)
        if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
            out = datasets.load_from_disk(str(local))
            return out if isinstance(out, datasets.DatasetDict) else datasets.DatasetDict({self.train_split: out})
        try:
            out = datasets.load_dataset(self.path, self.name, data_files=self.data_files, cache_dir=self.cache_dir)
        except FileNotFoundError as exc:
            if self.data_files is not None:
                raise FileNotFoundError(f"{_OWNER}: `data_files`={self.data_files!r} could not be read: {exc}") from exc
            if _looks_offline(exc):
                raise _hub_error(self.path, exc) from exc
            raise FileNotFoundError(
                f"{_OWNER}: `path`={self.path!r} is not a hub dataset, a local dataset or a builder with "
                f"`data_files`: {exc}"
            ) from exc
        except Exception as exc:
            if _looks_offline(exc):
                raise _hub_error(self.path, exc) from exc
            empty = _empty_split(exc)
            if empty is not None:
                raise ValueError(
                    f"{_OWNER}: the {empty!r} split of `path`={self.path!r}"
                    + (f" (`data_files`={self.data_files!r})" if self.data_files is not None else "")
                    + " is empty (0 rows); give data with rows, or leave that split out"
                ) from exc
            if self.data_files is not None:
                cause = exc.__cause__ or exc
                raise ValueError(
                    f"{_OWNER}: `data_files`={self.data_files!r} could not be read with the {self.path!r} builder: "
                    f"{type(cause).__name__}: {cause}"
                ) from exc
            raise
        if isinstance(out, datasets.Dataset):
            out = datasets.DatasetDict({self.train_split: out})
        return out

    def _ensure_loaded(self) -> None:
        if self._spec is not None:
            return
        raw = self._load_raw()
        self._split_sources: dict[str, str] = {}
        splits = _make_splits(
            raw,
            path=self.path,
            train_split=self.train_split,
            val_split=self.val_split,
            test_split=self.test_split,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            split_seed=self.split_seed,
            stratify_column=None if self.task in ("lm", "real", "probability") else self.label_column,
            sources=self._split_sources,
        )
        for split, ds in splits.items():
            if ds.num_rows == 0:
                raise _err(f"the {split!r} split {self._split_origin(split)} is empty (0 rows); give data with rows")
        _check_columns(
            splits,
            self.path,
            text_column=self.text_column,
            image_column=self.image_column,
            feature_columns=self.feature_columns,
            label_column=None if self.task == "lm" else self.label_column,
        )
        plan = self._plan(splits)
        self._label_names = plan.label_names
        processed = _preprocess(splits, plan)
        self.corruption = self._corrupt(processed, plan)
        if plan.input_kind == "features" and self.standardize:
            processed, self.feature_stats = _standardize(processed)
        self._processed = {k: v.with_format("torch") for k, v in processed.items()}
        self._memory = {}
        self._described = None
        self._tokenizer = plan.tokenizer
        spec = _make_spec(plan, self.task, self.max_length)
        if spec.target_kind == "real" and self.standardize_target:
            mean, std = _target_stats(self._processed["train"])
            spec = replace(spec, target_mean=mean, target_std=std)
        self._spec = spec

    def _corrupt(self, processed: dict[str, Any], plan: _Plan) -> dict[str, dict[str, Any]]:
        """Subsample (``imbalance``), then make noisy (``label_noise``) the processed class ids; split -> what was
        done (:mod:`lossbench.data.corrupt`). The test split is never touched."""
        done: dict[str, dict[str, Any]] = {}
        if self.label_noise is None and self.imbalance is None:
            return done
        if plan.target_kind != "class":
            used = "label_noise" if self.label_noise is not None else "imbalance"
            raise _err(
                f"`{used}` needs class labels, this data's target is {plan.target_kind!r} (`task`={self.task!r})"
            )
        classes = plan.num_classes
        assert classes is not None  # _plan_target sets it for class targets
        if self.imbalance is not None:
            keep, info = self.imbalance.rows(np.asarray(processed["train"]["target"]), classes)
            processed["train"] = processed["train"].select(keep).flatten_indices()
            done["train"] = {"imbalance": info}
        if self.label_noise is not None:
            for split in ("train", "validation") if self.label_noise.validation else ("train",):
                if split not in processed:
                    continue
                ds = processed[split]
                noisy, info = self.label_noise.apply(np.asarray(ds["target"]), classes, split)
                info["flipped_fingerprint"] = _fingerprint("lossbench-label-noise", noisy.tolist())
                processed[split] = ds.remove_columns("target").add_column(
                    "target", noisy.tolist(), feature=ds.features["target"]
                )
                done.setdefault(split, {})["label_noise"] = info
        return done

    def _split_origin(self, split: str) -> str:
        arg = _SPLIT_ARGS[split]
        name = getattr(self, arg)
        return f"(`{arg}`={name!r} of `path`={self.path!r})"

    # ------------------------------------------------------------------ what to compute

    def _plan(self, splits: dict[str, Any]) -> _Plan:
        train = splits["train"]
        if self.text_column is not None:
            plan = _Plan("tokens", None, [self.text_column], None, argument={self.text_column: "text_column"})
            kind, _ = _feature_kind(train.features[self.text_column])
            if kind != "str":
                raise _err(
                    f"`text_column`={self.text_column!r} must hold strings, has type {train.features[self.text_column]}"
                )
            plan.tokenizer = self._make_tokenizer(train)
            if self.task == "lm":
                plan.max_length, plan.add_eos = self.max_length + 1, True
            else:
                plan.max_length = self.max_length
        elif self.image_column is not None:
            plan = _Plan("image", None, [self.image_column], None, argument={self.image_column: "image_column"})
            _plan_image(plan, train, self.image_column)
        else:
            columns = list(self.feature_columns or [])
            plan = _Plan("features", None, columns, None, argument={c: "feature_columns" for c in columns})
            plan.num_features = _count_features(train, columns)
        if self.task != "lm":
            _plan_target(plan, splits, self.task, self.label_column)
        return plan

    def _make_tokenizer(self, train):
        if self.tokenizer_name == "byte":
            return ByteTokenizer()
        if self.tokenizer_name != "bpe":
            return get_tokenizer(self.tokenizer_name)
        key = _fingerprint(
            "lossbench-bpe", PREPROCESS_VERSION, train._fingerprint, self.text_column, self.tokenizer_vocab_size
        )
        file = self._cache_root / "lossbench_tokenizers" / f"bpe-{key}.json"
        if file.is_file():
            return BPETokenizer.load(file)
        texts = (
            t
            for batch in train.select_columns([self.text_column]).iter(batch_size=1000)
            for t in batch[self.text_column]
            if isinstance(t, str)
        )
        return train_bpe_tokenizer(texts, self.tokenizer_vocab_size, file)


def _empty_split(exc: BaseException) -> str | None:
    """The split that ``datasets`` could not build because it has no rows ('Instruction "test" corresponds to no
    data!'), or None for any other error."""
    import re

    for error in (exc, exc.__cause__, exc.__context__):
        found = re.search(r'Instruction "([^"]+)" corresponds to no data', str(error)) if error is not None else None
        if found:
            return found.group(1)
    return None


def _target_stats(train: Any) -> tuple[float, float]:
    """Mean and std (float64, ddof 0; 1.0 for a constant target) of a processed training split's real targets."""
    import numpy as np

    values = np.asarray(train.with_format("numpy")["target"], dtype=np.float64).reshape(-1)
    mean, std = float(values.mean()), float(values.std())
    return mean, std if std > 0 else 1.0

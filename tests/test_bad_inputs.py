"""The bad-input matrix: every case fails with a named error type and a message naming the argument or value.

One table (:data:`CASES`) across heads, the training module, data, recipes, the comparison
engine and the CLI. Each case is ``(id, call, error type, regex)``: ``call`` gets a
:class:`Ctx` (a fresh ``tmp`` folder and ``capsys``), and ``regex`` must name the offending
argument and/or value. Cases that take an output folder name it in ``output``: after the
error the folder must not exist, or, when the case filled it first (``before``), hold
exactly the same bytes; nothing is written before validation passes.

CLI cases run ``lossbench.cli.main([...])`` in-process: the exit code must be 2 and the
regex is matched against stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lossbench import LossbenchModule, UnknownHeadError, get_head
from lossbench.cli import main
from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.data import DataSpec, HFDataModule

SMALL = {"d_model": 16, "nhead": 2, "num_layers": 1}
CLASSES3 = DataSpec("features", "class", num_classes=3, num_features=4)


@dataclass
class Ctx:
    tmp: Path
    capsys: Any


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Ctx], Any]
    error: type[BaseException]
    match: str  # must name the argument and/or the offending value
    output: str | None = None  # output folder (relative to tmp) that must stay untouched
    before: Callable[[Path], None] | None = None  # fills the output folder before the call


class CLIFailed(Exception):
    """``lossbench.cli.main`` returned a non-zero code; the message is what it printed to stderr."""

    def __init__(self, code: int, stderr: str) -> None:
        super().__init__(stderr)
        self.code = code


# ---------------------------------------------------------------------------------------------- helpers


def cli(*argv: str) -> Callable[[Ctx], None]:
    """Run the CLI; ``{tmp}`` in an argument is the case's folder."""

    def call(ctx: Ctx) -> None:
        ctx.capsys.readouterr()
        code = main([a.format(tmp=ctx.tmp) for a in argv])
        err = ctx.capsys.readouterr().err
        if code != 0:
            raise CLIFailed(code, err)

    return call


def recipe(tmp: Path, **changes: Any) -> dict[str, Any]:
    """A tiny wine comparison (its datasets cache in ``tmp``), with top-level keys replaced by ``changes``."""
    raw = {
        "name": "tiny",
        "data": {"path": "lossbench:wine", "batch_size": 32, "cache_dir": str(tmp / "hf")},
        "backbone": {"d_model": 8, "nhead": 2, "num_layers": 1},
        "losses": ["ce", {"name": "focal", "args": {"gamma": 2.0}}],
        "baseline": "ce",
        "optimizer": {"name": "adamw", "lr": 0.01},
        "trainer": {"max_steps": 2, "eval_every_n_steps": 2},
        "seeds": [0],
        "target": {"metric": "val/accuracy", "mode": "max", "threshold": 0.5},
    }
    raw.update(changes)
    return raw


def compare(**changes: Any) -> Callable[[Ctx], Any]:
    """Validate and run a comparison into ``tmp/out`` through the Python API."""
    return lambda ctx: Comparison(load_recipe(recipe(ctx.tmp, **changes)), ctx.tmp / "out", progress=False).run()


def recipe_file(tmp: Path, **changes: Any) -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(tmp, **changes)), encoding="utf-8")
    return path


def cli_recipe(*extra: str, **changes: Any) -> Callable[[Ctx], None]:
    """``lossbench compare <recipe file> --output tmp/out`` with a recipe written to ``tmp``."""

    def call(ctx: Ctx) -> None:
        path = recipe_file(ctx.tmp, **changes)
        cli("compare", str(path), "--output", "{tmp}/out", "--no-progress", *extra)(ctx)

    return call


def frame(n: int = 20, labels: list[Any] | None = None, **columns: Any) -> pd.DataFrame:
    data = {"x": np.linspace(0.0, 1.0, n), "label": labels if labels is not None else [i % 2 for i in range(n)]}
    data.update(columns)
    return pd.DataFrame(data)


def parquet(tmp: Path, name: str, df: pd.DataFrame) -> str:
    path = tmp / f"{name}.parquet"
    df.to_parquet(path)
    return str(path)


def load(ctx: Ctx, **kwargs: Any):
    """Build the data module and load it (data checks run when the spec is first needed)."""
    kwargs.setdefault("cache_dir", str(ctx.tmp / "hf"))
    return HFDataModule(**kwargs).spec


def train_and_val(ctx: Ctx, val: pd.DataFrame, **kwargs: Any):
    files = {"train": parquet(ctx.tmp, "train", frame()), "validation": parquet(ctx.tmp, "val", val)}
    return load(ctx, path="parquet", data_files=files, feature_columns="x", test_fraction=0, **kwargs)


def empty_validation_split(ctx: Ctx):
    # datasets' builders refuse to write (and load_from_disk to read) a 0-row split: hand one over as a loader would
    features = datasets.Features({"x": datasets.Value("float32"), "label": datasets.Value("int64")})
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"x": [0.0, 1.0] * 5, "label": [0, 1] * 5}, features=features),
            "validation": datasets.Dataset.from_dict({"x": [], "label": []}, features=features),
        }
    )
    with mock.patch.object(datasets, "load_dataset", lambda *args, **kwargs: dd):
        return load(ctx, path="some/dataset", feature_columns="x", test_fraction=0)


def unreadable(ctx: Ctx, suffix: str, content: bytes):
    path = ctx.tmp / f"bad.{suffix}"
    path.write_bytes(content)
    return load(ctx, path=suffix, data_files=str(path), feature_columns="x")


def ce_head():
    return get_head("ce", in_features=8, num_classes=3)


def module(head: str = "ce", **kwargs: Any) -> LossbenchModule:
    kwargs.setdefault("data_spec", CLASSES3)
    return LossbenchModule(head, backbone=SMALL, seed=0, **kwargs)


def another_comparison(out: Path) -> None:
    """A results folder of another recipe setup (as `lossbench compare` leaves it)."""
    out.mkdir(parents=True)
    (out / "comparison.json").write_text(json.dumps({"name": "other", "setup_hash": "0" * 64}), encoding="utf-8")
    (out / "recipe.yaml").write_text("name: other\n", encoding="utf-8")
    run = out / "runs" / "ce" / "seed_0"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps({"loss": "ce", "head": "ce", "head_args": {}, "seed": 0}))
    (run / "metrics.csv").write_text("step,val/accuracy\n0,0.3\n")


def foreign_folder(out: Path) -> None:
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("my own files\n")


def python_tag_recipe(ctx: Ctx) -> None:
    path = ctx.tmp / "evil.yaml"
    path.write_text(f"name: evil\ndata: !!python/object/apply:builtins.open [{str(ctx.tmp / 'MARKER')!r}, w]\n")
    cli("compare", str(path), "--output", "{tmp}/out")(ctx)


def not_utf8_recipe(ctx: Ctx) -> None:
    path = ctx.tmp / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    cli("compare", str(path), "--output", "{tmp}/out")(ctx)


def malformed_comparison(ctx: Ctx) -> None:
    (ctx.tmp / "cmp").mkdir()
    (ctx.tmp / "cmp" / "comparison.json").write_text("{not json")
    cli("report", "{tmp}/cmp")(ctx)


# ---------------------------------------------------------------------------------------------- the matrix

CASES = [
    # -- heads: shapes, dtypes, target values, arguments ------------------------------------------------
    Case(
        "head-features-wrong-width",
        lambda c: ce_head()(torch.randn(4, 5)),
        ValueError,
        r"`features` must have shape \(\.\.\., 8\) \(in_features=8\), got \(4, 5\)",
    ),
    Case(
        "head-target-wrong-shape",
        lambda c: ce_head().loss(torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long)),
        ValueError,
        r"`target` must have shape \(4,\) for `input` of shape \(4, 3\) .*got \(4, 1\)",
    ),
    Case(
        "head-target-float-dtype",
        lambda c: ce_head().loss(torch.randn(4, 3), torch.zeros(4)),
        TypeError,
        r"`target` must hold integer class indices \(int64\), got dtype torch.float32",
    ),
    Case(
        "head-target-out-of-range",
        lambda c: ce_head().loss(torch.randn(3, 3), torch.tensor([0, 3, 1])),
        ValueError,
        r"`target` values must be class indices in \[0, 2\] or ignore_index=-100, got 3",
    ),
    Case(
        "head-label-minus-one",
        lambda c: ce_head().loss(torch.randn(3, 3), torch.tensor([0, -1, 1])),
        ValueError,
        r"`target` values must be class indices in \[0, 2\] or ignore_index=-100, got -1",
    ),
    Case(
        "head-regression-never-broadcasts",
        lambda c: get_head("mse", in_features=8).loss(torch.randn(4), torch.randn(4, 1)),
        ValueError,
        r"`target` must have the shape of `input` \(4,\), got \(4, 1\) \(lossbench never broadcasts\)",
    ),
    Case(
        "head-binary-target-out-of-range",
        lambda c: get_head("bce", in_features=8).loss(torch.zeros(3), torch.tensor([0.0, 2.0, 1.0])),
        ValueError,
        r"`target` values must be in \[0, 1\], got 2.0",
    ),
    Case(
        "head-poisson-negative-count",
        lambda c: get_head("poisson_nll", in_features=8).loss(torch.zeros(3), torch.tensor([1.0, -1.0, 2.0])),
        ValueError,
        r"`target` must hold non-negative counts, got -1.0",
    ),
    Case(
        "head-distribution-rows-not-probabilities",
        lambda c: get_head("kl", in_features=8, num_classes=3).loss(torch.randn(4, 3), torch.ones(4, 3)),
        ValueError,
        r"`target` rows must sum to 1 .*off by 2",
    ),
    Case(
        "head-unknown-name",
        lambda c: get_head("focall", in_features=8),
        UnknownHeadError,
        r"unknown head name 'focall'; did you mean 'focal'",
    ),
    Case(
        "head-negative-gamma",
        lambda c: get_head("focal", in_features=8, num_classes=3, gamma=-1.0),
        ValueError,
        r"`gamma` must be >= 0, got -1.0",
    ),
    Case(
        "head-one-class",
        lambda c: get_head("ce", in_features=8, num_classes=1),
        ValueError,
        r"`num_classes` must be an int >= 2, got 1",
    ),
    Case(
        "head-quantile-outside-unit-interval",
        lambda c: get_head("quantile", in_features=8, quantiles=[0.1, 1.5]),
        ValueError,
        r"`quantiles` must be in \(0, 1\), got 1.5",
    ),
    # -- the training module ------------------------------------------------------------------------------
    Case("module-negative-lr", lambda c: module(lr=-0.1), ValueError, r"`lr` must be a finite number > 0, got -0.1"),
    Case("module-unknown-head", lambda c: module("focall"), UnknownHeadError, r"unknown head name 'focall'"),
    Case(
        "module-head-does-not-fit-data",
        lambda c: module("mse"),
        ValueError,
        r"head 'mse' is a regression head, but the data has class labels \(3 classes\)",
    ),
    Case(
        "module-binary-head-on-3-classes",
        lambda c: module("bce"),
        ValueError,
        r"head 'bce' is a binary head, but the data has 3 classes",
    ),
    Case(
        "module-int-features",
        lambda c: module()(torch.ones(2, 4, dtype=torch.int64)),
        ValueError,
        r"`features` must be floats of shape \(N, 4\), got torch.int64 \(2, 4\)",
    ),
    Case(
        "module-nan-features",
        lambda c: module().training_step(
            {"inputs": torch.full((2, 4), float("nan")), "target": torch.tensor([0, 1])}, 0
        ),
        FloatingPointError,
        r"at step 0 \(batch 0\) the 'ce' loss is nan",
    ),
    Case(
        "module-target-out-of-range",
        lambda c: module().training_step({"inputs": torch.randn(2, 4), "target": torch.tensor([0, 3])}, 0),
        ValueError,
        r"`target` values must be class indices in \[0, 2\].*got 3",
    ),
    # -- data ----------------------------------------------------------------------------------------------
    Case(
        "data-missing-column",
        lambda c: load(c, path="parquet", data_files=parquet(c.tmp, "d", frame()), feature_columns=["x", "x9"]),
        ValueError,
        r"`feature_columns`='x9' is not a column of the 'train' split .*its columns are \['x', 'label'\]",
    ),
    Case(
        "data-missing-label-column",
        lambda c: load(
            c, path="parquet", data_files=parquet(c.tmp, "d", frame()), feature_columns="x", label_column="target"
        ),
        ValueError,
        r"`label_column`='target' is not a column of the 'train' split",
    ),
    Case(
        "data-empty-split",
        empty_validation_split,
        ValueError,
        r"the 'validation' split \(`val_split`='validation' of `path`='some/dataset'\) is empty \(0 rows\)",
    ),
    Case(
        "data-fraction-gives-empty-split",
        lambda c: load(
            c, path="parquet", data_files=parquet(c.tmp, "d", frame()), feature_columns="x", val_fraction=0.01
        ),
        ValueError,
        r"`val_fraction`=0.01 of the 20 rows of `train_split`='train' gives an empty validation split",
    ),
    Case(
        "data-unseen-string-labels-in-val",
        lambda c: load(
            c,
            path="parquet",
            feature_columns="x",
            test_fraction=0,
            data_files={
                "train": parquet(c.tmp, "train", frame(labels=["cat", "dog"] * 10)),
                "validation": parquet(c.tmp, "val", frame(4, labels=["cat", "emu", "dog", "yak"])),
            },
        ),
        ValueError,
        r"`label_column`='label' of the 'validation' split holds labels that the training split does "
        r"not have: \['emu', 'yak'\]",
    ),
    Case(
        "data-labels-minus-one",
        lambda c: train_and_val(c, frame(4, labels=[0, -1, 1, -1])),
        ValueError,
        r"`label_column`='label' is -1 in 2 row\(s\) of the 'validation' split.*`val_split`",
    ),
    Case(
        "data-nan-features",
        lambda c: train_and_val(c, frame(4, x=[0.0, np.nan, 1.0, 2.0])),
        ValueError,
        r"`feature_columns`='x' holds NaN or infinite values in 1 row\(s\) of the 'validation' split \(rows \[1\]",
    ),
    Case(
        "data-string-feature-column",
        lambda c: load(c, path="parquet", data_files=parquet(c.tmp, "d", frame(x=["a"] * 20)), feature_columns="x"),
        ValueError,
        r"`feature_columns` must name numeric columns .*'x' has type",
    ),
    Case(
        "data-non-integral-class-labels",
        lambda c: load(
            c,
            path="parquet",
            data_files=parquet(c.tmp, "d", frame(labels=[0.5, 1.0] * 10)),
            feature_columns="x",
            task="class",
        ),
        ValueError,
        r"`task`='class' needs whole-number labels in `label_column`='label', got \[0.5",
    ),
    Case(
        "data-missing-file",
        lambda c: load(c, path="parquet", data_files=str(c.tmp / "nope.parquet"), feature_columns="x"),
        FileNotFoundError,
        r"`data_files`='.*nope.parquet' could not be read",
    ),
    Case(
        "data-unreadable-parquet",
        lambda c: unreadable(c, "parquet", b"not a parquet file\n" * 20),
        ValueError,
        r"`data_files`='.*bad.parquet' could not be read",
    ),
    Case(
        "data-unreadable-csv",
        lambda c: unreadable(c, "csv", b"\xff\xfe\x00x\x00\n\x01,\x00"),
        ValueError,
        r"`data_files`='.*bad.csv' could not be read",
    ),
    Case(
        "data-batch-size-zero",
        lambda c: HFDataModule("lossbench:wine", batch_size=0),
        ValueError,
        r"`batch_size` must be an int >= 1, got 0",
    ),
    Case(
        "data-unknown-task",
        lambda c: HFDataModule("lossbench:wine", task="regression"),
        ValueError,
        r"`task` must be one of .*got 'regression'",
    ),
    # -- recipes (validated before anything is written) ----------------------------------------------------
    Case(
        "recipe-unknown-key",
        lambda c: load_recipe(recipe(c.tmp, optimiser={})),
        RecipeError,
        r"unknown key `optimiser`; did you mean 'optimizer'",
    ),
    Case(
        "recipe-unknown-section-key",
        lambda c: load_recipe(recipe(c.tmp, trainer={"max_steps": 2, "max_epoch": 1})),
        RecipeError,
        r"unknown key `trainer.max_epoch`; did you mean 'max_epochs'",
    ),
    Case(
        "recipe-unknown-head",
        lambda c: load_recipe(recipe(c.tmp, losses=["ce", "focall"])),
        UnknownHeadError,
        r"unknown head name 'focall'; did you mean 'focal'",
    ),
    Case(
        "recipe-negative-lr",
        lambda c: load_recipe(recipe(c.tmp, optimizer={"name": "adamw", "lr": -0.1})),
        RecipeError,
        r"recipe: `optimizer.lr` must be a finite number > 0, got -0.1",
    ),
    Case(
        "recipe-zero-seeds",
        lambda c: load_recipe(recipe(c.tmp, seeds=0)),
        RecipeError,
        r"`seeds` must be a count in \[1, 1000\] or a list of 1 to 1000 ints in \[0, 4294967295\], got 0",
    ),
    Case(
        "recipe-negative-seed",
        lambda c: load_recipe(recipe(c.tmp, seeds=[0, -1])),
        RecipeError,
        r"`seeds` must be .*got \[0, -1\]",
    ),
    Case(
        "recipe-bad-betas",
        lambda c: load_recipe(recipe(c.tmp, optimizer={"name": "adamw", "betas": [1.5, 0.999]})),
        RecipeError,
        r"`optimizer.betas` must be two numbers in \[0, 1\), got \[1.5, 0.999\]",
    ),
    Case(
        "recipe-nhead-does-not-divide-d-model",
        lambda c: load_recipe(recipe(c.tmp, backbone={"d_model": 10, "nhead": 3})),
        RecipeError,
        r"`backbone.nhead`=3 must divide `backbone.d_model`=10",
    ),
    Case(
        "recipe-bad-precision",
        lambda c: load_recipe(recipe(c.tmp, trainer={"max_steps": 2, "precision": "bf17"})),
        RecipeError,
        r"`trainer.precision` must be one of Lightning's precisions .*'bf16-mixed'.*got 'bf17'",
    ),
    Case(
        "recipe-negative-budget",
        lambda c: load_recipe(recipe(c.tmp, trainer={"max_steps": -1})),
        RecipeError,
        r"`trainer.max_steps` must be a positive int, got -1",
    ),
    Case(
        "recipe-baseline-not-a-loss",
        lambda c: load_recipe(recipe(c.tmp, baseline="cee")),
        RecipeError,
        r"`baseline` 'cee' is not one of the losses \['ce', 'focal'\]; did you mean 'ce'",
    ),
    # -- the comparison engine: output folder, data and losses against the data ----------------------------
    Case(
        "compare-output-holds-another-recipe",
        compare(),
        RecipeError,
        r"`--output` '.*out' holds results of another recipe setup \('other'",
        output="out",
        before=another_comparison,
    ),
    Case(
        "compare-output-foreign-folder",
        compare(),
        RecipeError,
        r"`--output` '.*out' is not empty and holds no lossbench comparison",
        output="out",
        before=foreign_folder,
    ),
    Case(
        "compare-loss-does-not-fit-data",
        compare(losses=["ce", "mse"]),
        RecipeError,
        r"loss 'mse' does not fit the data: head 'mse' is a regression head",
        output="out",
    ),
    Case(
        "compare-target-metric-not-logged",
        compare(target={"metric": "val/r2", "mode": "max", "threshold": 0.5}),
        RecipeError,
        r"`target.metric` 'val/r2' is not logged for loss 'ce'",
        output="out",
    ),
    Case(
        "compare-data-missing-column",
        lambda c: compare(data={"path": "lossbench:wine", "feature_columns": ["nope"], "cache_dir": str(c.tmp / "hf")})(
            c
        ),
        ValueError,
        r"`feature_columns`='nope' is not a column",
        output="out",
    ),
    Case(
        "compare-bad-head-args",
        compare(losses=["ce", {"name": "focal", "args": {"gamma": -1.0}}]),
        ValueError,
        r"`gamma` must be >= 0, got -1.0",
        output="out",
    ),
    Case(
        "compare-class-weight-length",
        compare(losses=["ce", {"name": "focal", "args": {"weight": [1.0, 2.0]}}]),
        ValueError,
        r"`weight` must have one value per class, shape \(3,\), got \(2,\)",
        output="out",
    ),
    # -- the CLI: exit code 2 and the message on stderr ----------------------------------------------------
    Case(
        "cli-unknown-recipe",
        cli("compare", "digitz", "--output", "{tmp}/out"),
        CLIFailed,
        r"'digitz' is neither a YAML file nor a bundled recipe; did you mean 'digits'",
        output="out",
    ),
    Case(
        "cli-zero-seeds",
        cli("compare", "wine", "--output", "{tmp}/out", "--seeds", "0"),
        CLIFailed,
        r"`--seeds` must be a count in \[1, 1000\], got 0",
        output="out",
    ),
    Case(
        "cli-negative-lr",
        cli("compare", "wine", "--output", "{tmp}/out", "--optimizer.lr=-0.5"),
        CLIFailed,
        r"`optimizer.lr` must be a finite number > 0, got -0.5",
        output="out",
    ),
    Case(
        "cli-unknown-override",
        cli("compare", "wine", "--output", "{tmp}/out", "--trainr.max_epochs", "2"),
        CLIFailed,
        r"unknown override `--trainr.max_epochs`; did you mean 'trainer'",
        output="out",
    ),
    Case(
        "cli-unknown-loss-subset",
        cli("compare", "wine", "--output", "{tmp}/out", "--losses", "nope"),
        CLIFailed,
        r"`--losses` \['nope'\] are not in the recipe's losses",
        output="out",
    ),
    Case(
        "cli-output-holds-another-recipe",
        cli_recipe(),
        CLIFailed,
        r"`--output` '.*out' holds results of another recipe setup",
        output="out",
        before=another_comparison,
    ),
    Case(
        "cli-data-missing-column",
        lambda c: cli_recipe(
            data={"path": "lossbench:wine", "feature_columns": ["nope"], "cache_dir": str(c.tmp / "hf")}
        )(c),
        CLIFailed,
        r"lossbench compare: HFDataModule: `feature_columns`='nope' is not a column",
        output="out",
    ),
    Case(
        "cli-loss-does-not-fit-data",
        cli_recipe(losses=["ce", "mse"]),
        CLIFailed,
        r"loss 'mse' does not fit the data",
        output="out",
    ),
    Case(
        "cli-python-tag-in-recipe",
        python_tag_recipe,
        CLIFailed,
        r"'.*evil.yaml' holds a YAML tag that safe loading refuses \(line 2\).*python/object/apply:builtins.open",
        output="out",
    ),
    Case(
        "cli-recipe-not-utf8", not_utf8_recipe, CLIFailed, r"`RECIPE` file '.*latin1.yaml' cannot be read", output="out"
    ),
    Case(
        "cli-heads-unknown-task",
        cli("heads", "--task", "sorting"),
        CLIFailed,
        r"--task must be one of .*multiclass.*got 'sorting'",
    ),
    Case(
        "cli-report-not-a-comparison",
        cli("report", "{tmp}/nothing"),
        CLIFailed,
        r"nothing is not a lossbench comparison folder",
        output="nothing",
    ),
    Case("cli-report-malformed-json", malformed_comparison, CLIFailed, r"comparison.json: not valid JSON"),
]


# ---------------------------------------------------------------------------------------------- the test


def snapshot(folder: Path) -> dict[str, bytes | None] | None:
    """Every file (bytes) and folder (None) under ``folder``; None when it does not exist."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_the_matrix_is_broad():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 20
    categories = {i.split("-")[0] for i in ids}
    assert categories == {"head", "module", "data", "recipe", "compare", "cli"}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id) for c in CASES],
)
def test_bad_input(case: Case, tmp_path: Path, capsys):
    ctx = Ctx(tmp_path, capsys)
    out = tmp_path / case.output if case.output else None
    if case.before is not None:
        assert out is not None
        case.before(out)
    before = snapshot(out) if out is not None else None
    with pytest.raises(case.error) as info:
        case.call(ctx)
    message = str(info.value)
    if isinstance(info.value, CLIFailed):
        assert info.value.code == 2, message
        assert message.startswith("lossbench "), message  # the message names the command: no traceback, no chatter
        assert "Traceback" not in message
    assert info.match(case.match), message
    if out is not None:
        assert snapshot(out) == before, f"{case.id}: the output folder changed before validation passed"
    assert not (tmp_path / "MARKER").exists()

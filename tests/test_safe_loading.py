"""Safe loading: checkpoints, records and recipes are read without running code they carry.

- Checkpoints that lossbench writes hold only types ``torch.load(weights_only=True)`` accepts,
  and every loading path lossbench uses (``LossbenchModule.load_from_checkpoint``,
  ``Trainer.fit(ckpt_path=...)`` in the comparison engine, ``lossbench fit --ckpt_path``)
  refuses a crafted pickle instead of running it.
- Recipes and configs are YAML read with safe loaders (``!!python/...`` tags refused); records
  and comparison metadata are JSON.
- A head's short name resolves only built-in heads and registered plugins: nothing else is
  imported. A dotted ``class_path`` (recipes, ``LossbenchModule(head="pkg.mod.Head")``)
  imports the module it names; that is documented.
"""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch

import lossbench
from lossbench import LossbenchModule, UnknownHeadError, get_head, get_head_class
from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.compare.execution.callbacks import DataOrderFingerprint, RunRecorder
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import RunRecord
from lossbench.data import DataSpec, HFDataModule

ROOT = Path(lossbench.__file__).resolve().parent
SMALL = {"d_model": 16, "nhead": 2, "num_layers": 1}
SPEC = DataSpec("features", "class", num_classes=3, num_features=4)
NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"  # torch: weights_only=None means False when this is set


def quiet_trainer(root: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        num_sanity_val_steps=0,
        **kwargs,
    )


def loader(n: int = 16) -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)
    return torch.utils.data.DataLoader([{"inputs": a, "target": b} for a, b in zip(x, y)], batch_size=8)


class Payload:
    """Unpickling this runs ``open(marker, "w")``: the marker file proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A real LossbenchModule checkpoint with a code-running object hidden in its hyperparameters."""
    model = LossbenchModule("ce", data_spec=SPEC, backbone=SMALL, seed=0)
    trainer = quiet_trainer(path.parent, max_steps=1, enable_checkpointing=False)
    trainer.fit(model, loader())
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["note"] = Payload(marker)
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "MARKER"
    return malicious_checkpoint(tmp_path / "evil.ckpt", marker), marker


# ------------------------------------------------------------------ checkpoints lossbench writes are safe to read


def test_trainer_checkpoint_holds_only_weights_only_types(tmp_path):
    """A comparison-style checkpoint (HF data module, schedule, lossbench callbacks) loads with weights_only=True."""
    df = pd.DataFrame({"x1": np.linspace(0, 1, 40), "x2": np.cos(np.arange(40.0)), "label": np.arange(40) % 3})
    df.to_parquet(tmp_path / "d.parquet")
    dm = HFDataModule(
        "parquet",
        data_files=str(tmp_path / "d.parquet"),
        feature_columns=["x1", "x2"],
        cache_dir=str(tmp_path / "hf"),
        batch_size=8,
    )
    model = LossbenchModule(
        "focal",
        head_args={"weight": [1.0, 2.0, 1.0]},
        data_spec=dm.spec,
        backbone=SMALL,
        schedule="cosine",
        warmup_steps=1,
        seed=0,
    )
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last", enable_version_counter=False)
    trainer = quiet_trainer(
        tmp_path,
        max_steps=2,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        callbacks=[RunRecorder(), DataOrderFingerprint(), checkpoint],
    )
    trainer.fit(model, dm)
    path = tmp_path / "ckpt" / "last.ckpt"

    loaded = torch.load(path, weights_only=True)  # raises UnpicklingError naming any unsafe global
    assert {
        "state_dict",
        "optimizer_states",
        "lr_schedulers",
        "callbacks",
        "hyper_parameters",
        "datamodule_hyper_parameters",
        "lossbench_skipped_steps",
    } <= set(loaded)
    assert {"RunRecorder", "DataOrderFingerprint"} <= set(loaded["callbacks"])
    assert loaded["hyper_parameters"]["data_spec"] == dm.spec.to_dict()

    again = LossbenchModule.load_from_checkpoint(path, weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    resumed = quiet_trainer(tmp_path, max_steps=3, val_check_interval=2, check_val_every_n_epoch=None)
    resumed.fit(again, dm, ckpt_path=str(path), weights_only=True)
    assert resumed.global_step == 3


def test_path_arguments_keep_the_checkpoint_weights_only(tmp_path):
    dm = HFDataModule("lossbench:wine", cache_dir=tmp_path / "hf", batch_size=16)
    model = LossbenchModule("ce", data_spec=dm.spec, backbone=SMALL, seed=0)
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    torch.load(tmp_path / "x.ckpt", weights_only=True)


# ------------------------------------------------------------------ a crafted checkpoint is refused, never run


def test_the_payload_is_live(evil):
    """Control: loading the crafted file with weights_only=False does run its code."""
    path, marker = evil
    loaded = torch.load(path, weights_only=False)
    loaded["hyper_parameters"]["note"].close()
    assert marker.exists()


def _fit_from(path: Path) -> None:
    model = LossbenchModule("ce", data_spec=SPEC, backbone=SMALL, seed=0)
    quiet_trainer(path.parent, max_steps=2, enable_checkpointing=False).fit(model, loader(), ckpt_path=str(path))


def _lightning_cli_fit(path: Path) -> None:
    from lossbench.cli import main

    main(
        [
            "fit",
            "--data.path",
            "lossbench:wine",
            "--data.cache_dir",
            str(path.parent / "hf"),
            "--trainer.max_steps",
            "1",
            "--trainer.logger",
            "false",
            "--ckpt_path",
            str(path),
        ]
    )


LOADERS = {
    "torch.load-default": lambda p: torch.load(p),
    "load_from_checkpoint-default": lambda p: LossbenchModule.load_from_checkpoint(p),
    "load_from_checkpoint-weights_only": lambda p: LossbenchModule.load_from_checkpoint(p, weights_only=True),
    "trainer.fit-ckpt_path": _fit_from,
    "lossbench-fit-ckpt_path": _lightning_cli_fit,
}


@pytest.mark.parametrize("how", sorted(LOADERS))
def test_crafted_checkpoint_is_refused(evil, how):
    path, marker = evil
    with pytest.raises(
        pickle.UnpicklingError, match=r"(?s)Weights only load failed.*Unsupported global: GLOBAL io.open"
    ):
        LOADERS[how](path)
    assert not marker.exists()


def test_explicit_weights_only_wins_over_the_environment(evil, monkeypatch):
    path, marker = evil
    monkeypatch.setenv(NO_WEIGHTS_ONLY, "1")
    with pytest.raises(pickle.UnpicklingError):
        LossbenchModule.load_from_checkpoint(path, weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_load_from_checkpoint_is_safe_by_default_even_under_the_environment(evil, monkeypatch):
    path, marker = evil
    monkeypatch.setenv(NO_WEIGHTS_ONLY, "1")
    try:
        LossbenchModule.load_from_checkpoint(path)
    except Exception:
        pass
    assert not marker.exists()


def tiny_recipe(tmp_path: Path) -> dict:
    return {
        "name": "tiny",
        "data": {"path": "lossbench:wine", "batch_size": 32, "cache_dir": str(tmp_path / "hf")},
        "backbone": {"d_model": 8, "nhead": 2, "num_layers": 1},
        "losses": ["ce"],
        "seeds": [0],
        "optimizer": {"name": "adamw", "lr": 0.01},
        "trainer": {"max_steps": 2, "eval_every_n_steps": 2},
        "target": {"metric": "val/accuracy", "mode": "max", "threshold": 0.5},
    }


def interrupted_with_crafted_checkpoint(tmp_path: Path) -> tuple[Comparison, Path, Path]:
    """A finished comparison turned into an interrupted one whose last checkpoint is the crafted file."""
    out, marker = tmp_path / "out", tmp_path / "MARKER"
    recipe = load_recipe(tiny_recipe(tmp_path))
    Comparison(recipe, out, progress=False).run()
    folder = run_dir(out, "ce", 0)
    record = RunRecord.load(folder / "record.json")
    record.status = "running"
    record.save(folder / "record.json")
    (folder / "checkpoints").mkdir(exist_ok=True)
    malicious_checkpoint(folder / "checkpoints" / "last.ckpt", marker)
    return Comparison(recipe, out, progress=False), folder, marker


def test_comparison_resume_refuses_a_crafted_checkpoint(tmp_path):
    comparison, folder, marker = interrupted_with_crafted_checkpoint(tmp_path)
    comparison.run()
    assert not marker.exists()
    record = RunRecord.load(folder / "record.json")
    # refused (never unpickled with code), moved aside for inspection, and the run started over and finished
    assert record.status == "finished" and len(record.restarts) == 1
    assert "UnpicklingError" in record.restarts[0] and "run started over" in record.restarts[0]
    assert len(list(folder.glob("last.ckpt.unreadable-*"))) == 1


def test_comparison_resume_is_safe_even_under_the_environment(tmp_path, monkeypatch):
    comparison, _, marker = interrupted_with_crafted_checkpoint(tmp_path)
    monkeypatch.setenv(NO_WEIGHTS_ONLY, "1")
    comparison.run()
    assert not marker.exists()


# ------------------------------------------------------------------ recipes, configs and records


def evil_yaml(marker: Path, tag: str = "python/object/apply:builtins.open") -> str:
    return f"name: evil\ndata: {{path: lossbench:wine}}\nlosses: [ce]\nnote: !!{tag} [{str(marker)!r}, w]\n"


@pytest.mark.parametrize(
    "tag", ["python/object/apply:builtins.open", "python/object/new:builtins.open", "python/name:builtins.open"]
)
def test_recipe_with_python_tags_is_refused(tmp_path, tag):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.yaml"
    path.write_text(evil_yaml(marker, tag), encoding="utf-8")
    with pytest.raises(
        RecipeError,
        match=rf"recipe: '.*evil.yaml' holds a YAML tag that safe loading refuses "
        rf"\(line 4\).*{tag.split(':')[0]}",
    ):
        load_recipe(path)
    assert not marker.exists()


def test_override_with_a_python_tag_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    value = f"!!python/object/apply:builtins.open [{str(marker)!r}, w]"
    with pytest.raises(RecipeError, match=r"override `--trainer.max_steps` holds a YAML tag that safe loading refuses"):
        load_recipe(tiny_recipe(tmp_path), overrides={"trainer.max_steps": value})
    assert not marker.exists()


def test_lightning_cli_config_with_a_python_tag_is_refused(tmp_path):
    from lossbench.cli import main

    marker = tmp_path / "MARKER"
    config = tmp_path / "fit.yaml"
    config.write_text(f"data:\n  path: !!python/object/apply:builtins.open [{str(marker)!r}, w]\n")
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(config)])
    assert info.value.code == 2 and not marker.exists()


UNSAFE_CALLS = {
    ("yaml", "load"),
    ("yaml", "full_load"),
    ("yaml", "unsafe_load"),
    ("yaml", "load_all"),
    ("yaml", "full_load_all"),
    ("yaml", "unsafe_load_all"),
    ("pickle", "load"),
    ("pickle", "loads"),
    ("dill", "load"),
    ("cloudpickle", "load"),
    ("marshal", "loads"),
    ("shelve", "open"),
}


def test_lossbench_reads_with_safe_loaders_only():
    """Static check of the package source: no unsafe deserialiser, torch.load only with weights_only=True."""
    problems = []
    for file in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
                problems.append(f"{file.relative_to(ROOT)}:{node.lineno}: {func.id}()")
            if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
                continue
            call = (func.value.id, func.attr)
            if call in UNSAFE_CALLS:
                problems.append(f"{file.relative_to(ROOT)}:{node.lineno}: {'.'.join(call)}()")
            if call == ("torch", "load"):
                safe = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                if not safe:
                    problems.append(f"{file.relative_to(ROOT)}:{node.lineno}: torch.load without weights_only=True")
    assert problems == []


def test_records_and_metadata_are_plain_json(tmp_path):
    """A record file is data: JSON has no way to name code, and a pickle in its place is a decode error."""
    path = tmp_path / "record.json"
    path.write_bytes(pickle.dumps(Payload(tmp_path / "MARKER")))
    with pytest.raises(ValueError):  # json.JSONDecodeError / UnicodeDecodeError
        RunRecord.load(path)
    assert not (tmp_path / "MARKER").exists()


# ------------------------------------------------------------------ head names never import user code


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """An importable module, outside lossbench and the plugins, that leaves a marker when imported."""
    name = "lossbench_probe_heads_mod"
    marker = tmp_path / "IMPORTED"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("imported")
        from lossbench import LossHead
        from lossbench.functional import cross_entropy

        class ProbeHead(LossHead):
            task = "multiclass"

            def __init__(self, in_features, num_classes):
                super().__init__(in_features, num_classes)
                self.num_classes = num_classes

            def _loss(self, outputs, target, reduction):
                return cross_entropy(outputs, target, reduction=reduction)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "lookup",
    [
        lambda name: get_head(f"{name}.ProbeHead", in_features=4, num_classes=3),
        lambda name: get_head_class(name),
        lambda name: get_head(name, in_features=4),
        lambda name: load_recipe(
            {
                "data": {"path": "lossbench:wine"},
                "losses": [f"{name}.ProbeHead"],
                "trainer": {"max_steps": 1},
                "target": {"metric": "val/accuracy", "mode": "max", "threshold": 0.5},
            }
        ),
    ],
    ids=["get_head-dotted", "get_head_class-module-name", "get_head-module-name", "recipe-loss-name"],
)
def test_head_names_import_nothing(probe_module, lookup):
    name, marker = probe_module
    lossbench.list_heads()  # entry-point discovery (metadata only) done once beforehand
    before = set(sys.modules)
    with pytest.raises(UnknownHeadError, match=rf"unknown head name '{name}(\.ProbeHead)?'"):
        lookup(name)
    assert set(sys.modules) - before == set()
    assert name not in sys.modules and not marker.exists()


def test_short_names_in_a_fresh_interpreter_import_only_lossbench_and_plugins():
    """From a cold start: resolving names (known, unknown, dotted) imports lossbench, plugins and stdlib only."""
    code = textwrap.dedent("""
        import sys
        from importlib.metadata import entry_points
        import lossbench
        before = set(sys.modules)
        lossbench.get_head_class("focal")
        for name in ("json.decoder.JSONDecoder", "some.module.path", "antigravity"):
            try:
                lossbench.get_head(name, in_features=4)
            except lossbench.UnknownHeadError:
                pass
        lossbench.list_heads()
        plugins = {ep.module.split(".")[0] for ep in entry_points(group="lossbench.heads")}
        allowed = set(sys.stdlib_module_names) | {"lossbench"} | plugins
        extra = sorted(m for m in set(sys.modules) - before if m.split(".")[0] not in allowed)
        print("EXTRA", extra)
        print("ANTIGRAVITY", "antigravity" in sys.modules)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(ROOT.parent)
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "EXTRA []" in out.stdout and "ANTIGRAVITY False" in out.stdout, out.stdout


def test_class_paths_import_the_named_module_as_documented(probe_module, tmp_path):
    """A dotted head in LossbenchModule or a recipe's class_path imports (runs) that module: documented."""
    name, marker = probe_module
    model = LossbenchModule(f"{name}.ProbeHead", data_spec=SPEC, backbone=SMALL, seed=0)
    assert type(model.head).__name__ == "ProbeHead" and marker.exists()
    docs = (ROOT.parent / "docs" / "compare.md").read_text(encoding="utf-8")
    assert "`class_path` imports the module it names, i.e. runs that code" in docs
    from lossbench.module import resolve_head_class

    assert "imports that user-named module" in resolve_head_class.__doc__

"""Settings and rules that several places use are defined once (issue 20, item 4): each pinned here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lossbench
from lossbench.config import NAN_POLICIES, SELECT

PACKAGE = Path(lossbench.__file__).parent


def _pyproject_version() -> str:
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the one line is enough
        line = next(line for line in text.splitlines() if line.startswith("version = "))
        return line.split("=", 1)[1].strip().strip('"')
    return tomllib.loads(text)["project"]["version"]


def test_the_version_is_pyprojects():
    assert lossbench.__version__ == _pyproject_version()


def _calls(name: str) -> list[str]:
    """Modules of the package that call ``<anything>.name(...)`` or ``name(...)``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            func = node.func if isinstance(node, ast.Call) else None
            if func is not None and (getattr(func, "attr", None) == name or getattr(func, "id", None) == name):
                found.append(str(path.relative_to(PACKAGE)))
                break
    return found


def test_did_you_mean_hints_come_from_one_helper():
    assert _calls("get_close_matches") == ["_hints.py"]


@pytest.mark.parametrize("where", ["head", "dataset", "recipe key", "corrupt setting"])
def test_every_unknown_name_error_gives_the_same_hint(where):
    from lossbench.compare import load_recipe
    from lossbench.data.builtin import check_builtin_name
    from lossbench.data.corrupt import LabelNoise
    from lossbench.heads import get_head_class
    from tests.compare.conftest import tiny_recipe

    attempts = {
        "head": (lambda: get_head_class("focla"), "'focal'"),
        "dataset": (lambda: check_builtin_name("digts"), "'digits'"),
        "recipe key": (lambda: load_recipe({**tiny_recipe(), "seedz": 2}), "'seeds'"),
        "corrupt setting": (lambda: LabelNoise.parse({"rat": 0.2}), "'rate'"),
    }
    call, suggestion = attempts[where]
    with pytest.raises((LookupError, ValueError)) as info:  # UnknownHeadError, RecipeError, ValueError
        call()
    assert f"; did you mean {suggestion}" in str(info.value)


def test_nan_policy_and_select_are_checked_against_one_definition():
    from lossbench.compare import load_recipe
    from lossbench.compare.recipe.checks import RecipeError
    from lossbench.module import LossbenchModule
    from tests.compare.conftest import tiny_recipe

    base = tiny_recipe()
    for policy in NAN_POLICIES:
        assert load_recipe({**base, "nan_policy": policy}).nan_policy == policy
    for select in SELECT:
        assert load_recipe({**base, "select": select}).select == select
    expected = " or ".join(map(repr, NAN_POLICIES))
    with pytest.raises(RecipeError, match=f"`nan_policy` must be {expected}, got 'ignore'"):
        load_recipe({**base, "nan_policy": "ignore"})
    with pytest.raises(ValueError, match=f"`nan_policy` must be {expected}, got 'ignore'"):
        LossbenchModule("ce", head_args={"num_classes": 3}, nan_policy="ignore")
    with pytest.raises(RecipeError, match="`select` must be 'final'"):
        load_recipe({**base, "select": "last"})


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """The string literals of a module that are not docstrings: (line, value)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_results_folder_names_come_from_the_layout():
    """Every file and folder name of a results folder is written once, in store/layout.py; the modules that read or
    write the folder use its names (a literal "record.json" elsewhere would be a second definition)."""
    from lossbench.compare.store import layout

    names = {
        value
        for key, value in vars(layout).items()
        if key.isupper() and isinstance(value, str) and "." in value  # the files
    } | {layout.RUNS_DIR, layout.ARRAYS_DIR, layout.CHECKPOINTS_DIR, layout.PLOTS_DIR}  # folders no key shares
    assert {"record.json", "metrics.csv", "comparison.json", "last.ckpt", "runs", "arrays"} <= names
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r}"
        for path in sorted((PACKAGE / "compare").rglob("*.py"))
        if path.name != "layout.py"
        for line, value in _string_constants(path)
        if value in names
    ]
    assert found == []


def test_a_finite_number_is_one_helper():
    """`config.finite_number` is the one test of "a finite real number, not a bool"; no module writes its own."""
    import re

    own = re.compile(r"isinstance\((\w+), \(int, float\)\) and not isinstance\(\1, bool\) and math\.isfinite")
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{i}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if own.search(line)
    ]
    assert found == []
    assert own.search("isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)")


def test_comparison_json_is_written_and_read_by_one_schema(tmp_path):
    """The engine writes exactly ComparisonMeta's fields, and load_comparison requires exactly its required ones."""
    import dataclasses
    import json

    from lossbench.compare import Comparison, load_recipe
    from lossbench.compare.store.meta import REQUIRED_KEYS, ComparisonMeta, load_comparison
    from tests.compare.conftest import tiny_recipe

    Comparison(load_recipe({**tiny_recipe(), "losses": ["ce"], "seeds": [0]}), tmp_path, progress=False).run()
    written = json.loads((tmp_path / "comparison.json").read_text())
    assert set(written) == {f.name for f in dataclasses.fields(ComparisonMeta)}
    assert set(REQUIRED_KEYS) < set(written)
    assert load_comparison(tmp_path) == written


def test_the_transformer_backbone_takes_its_defaults_and_checks_from_backbone_config():
    import dataclasses
    import inspect

    from lossbench.config import BackboneConfig
    from lossbench.models import FeatureTokenizer, TransformerBackbone

    params = inspect.signature(TransformerBackbone).parameters
    shared = [f for f in dataclasses.fields(BackboneConfig) if f.name in params]
    assert {f.name for f in shared} == {f.name for f in dataclasses.fields(BackboneConfig)} - {"patch_size"}
    assert {f.name: params[f.name].default for f in shared} == {f.name: f.default for f in shared}
    # the config's own check, with the config's messages
    for bad, message in (({"nhead": 3}, "`nhead`=3 must divide `d_model`=16"), ({"dropout": 1.5}, "`dropout` must")):
        with pytest.raises(ValueError, match=message):
            BackboneConfig(d_model=16, **{"nhead": 2, **bad}).check("TransformerBackbone")
        with pytest.raises(ValueError, match=message):
            TransformerBackbone(FeatureTokenizer(4, 16), d_model=16, **{"nhead": 2, **bad})

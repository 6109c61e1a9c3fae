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

"""The comparison engine, one subpackage per stage, each importing only the ones before it:

``recipe`` -> ``store`` -> ``analysis`` -> ``report`` -> ``execution`` (see docs/architecture.md).

The package is callable: ``lossbench.compare(recipe, output=..., trainer__max_steps=20)`` checks, runs and reports a
comparison and returns its :class:`ComparisonResult` (:func:`run_comparison`, the same function under a name that
type checkers see). ``from lossbench import compare`` (or ``import lossbench.compare``) makes it available.

The public names load lazily, so that importing one stage (``lossbench.compare.store.records``) does not import
the others.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lossbench.compare.execution.engine import Comparison
    from lossbench.compare.execution.recompute import recompute
    from lossbench.compare.recipe.checks import RecipeError
    from lossbench.compare.recipe.recipe import bundled_recipes, load_recipe
    from lossbench.compare.recipe.schema import Recipe
    from lossbench.compare.report.render import render_report
    from lossbench.compare.report.verdicts import LossVerdict
    from lossbench.compare.result import ComparisonResult, run_comparison

_PUBLIC = {
    "Comparison": "lossbench.compare.execution.engine",
    "Recipe": "lossbench.compare.recipe.schema",
    "RecipeError": "lossbench.compare.recipe.checks",
    "bundled_recipes": "lossbench.compare.recipe.recipe",
    "load_recipe": "lossbench.compare.recipe.recipe",
    "render_report": "lossbench.compare.report.render",
    "recompute": "lossbench.compare.execution.recompute",
    "ComparisonResult": "lossbench.compare.result",
    "LossVerdict": "lossbench.compare.report.verdicts",
    "run_comparison": "lossbench.compare.result",
}

__all__ = [
    "Comparison",
    "ComparisonResult",
    "LossVerdict",
    "Recipe",
    "RecipeError",
    "bundled_recipes",
    "load_recipe",
    "recompute",
    "render_report",
    "run_comparison",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lossbench.compare' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _CallableModule(types.ModuleType):
    """``lossbench.compare`` itself: calling it is :func:`run_comparison`."""

    def __call__(self, *args: Any, **kwargs: Any) -> ComparisonResult:
        from lossbench._extras import require

        require("compare", "lossbench.compare(...)")
        from lossbench.compare.result import run_comparison

        return run_comparison(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

"""The comparison engine, one subpackage per stage, each importing only the ones before it:

``recipe`` -> ``store`` -> ``analysis`` -> ``report`` -> ``execution`` (see docs/architecture.md).

The public names load lazily, so that importing one stage (``lossbench.compare.store.records``) does not import
the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lossbench.compare.execution.engine import Comparison
    from lossbench.compare.execution.recompute import recompute
    from lossbench.compare.recipe.checks import RecipeError
    from lossbench.compare.recipe.recipe import bundled_recipes, load_recipe
    from lossbench.compare.recipe.schema import Recipe
    from lossbench.compare.report.render import render_report

_PUBLIC = {
    "Comparison": "lossbench.compare.execution.engine",
    "Recipe": "lossbench.compare.recipe.schema",
    "RecipeError": "lossbench.compare.recipe.checks",
    "bundled_recipes": "lossbench.compare.recipe.recipe",
    "load_recipe": "lossbench.compare.recipe.recipe",
    "render_report": "lossbench.compare.report.render",
    "recompute": "lossbench.compare.execution.recompute",
}

__all__ = ["Comparison", "Recipe", "RecipeError", "bundled_recipes", "load_recipe", "recompute", "render_report"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lossbench.compare' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""The comparison engine: recipes, identical-setup runs, fingerprints, records, statistics and report."""

from lossbench.compare.engine import Comparison
from lossbench.compare.recipe import Recipe, RecipeError, bundled_recipes, load_recipe

__all__ = ["Comparison", "Recipe", "RecipeError", "bundled_recipes", "load_recipe"]

"""Recipes are small plain YAML files: safe loading (no tags), bounded depth and size (no alias bomb)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from lossbench.compare.recipe.checks import RecipeError

MAX_YAML_DEPTH = 64  # nesting of mappings/lists in one YAML document


MAX_YAML_VALUES = 100_000  # values in a document once its aliases (*anchor) are expanded


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents nested deeper than :data:`MAX_YAML_DEPTH`, and reads numbers
    as YAML 1.2 does: ``1e-3`` and ``5e+2`` are floats (YAML 1.1, PyYAML's, reads them as strings)."""

    depth = 0
    yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise RecipeError(f"line {mark.line + 1}: nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
"""Exponent floats without a dot or a sign (``1e-3``, ``2E5``) that YAML 1.1 leaves as strings."""
for _first in "-+0123456789.":
    _BoundedLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:float", _FLOAT_12))


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """Values in ``node`` with every alias expanded (an alias is the anchored node itself: counted by id once)."""
    if id(node) not in sizes:
        children = node.value if isinstance(node.value, list) else []
        flat = [part for child in children for part in (child if isinstance(child, tuple) else (child,))]
        sizes[id(node)] = min(1 + sum(_expanded_size(c, sizes) for c in flat), MAX_YAML_VALUES + 1)
    return sizes[id(node)]


def safe_yaml(text: str, where: str) -> Any:
    """Plain YAML values only (``yaml.SafeLoader``): a tag such as ``!!python/object`` is refused, never run.

    Documents nested deeper than :data:`MAX_YAML_DEPTH` or holding more than :data:`MAX_YAML_VALUES`
    values once aliases are expanded (a "billion laughs" file) are refused before they are built.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise RecipeError(f"expands to more than {MAX_YAML_VALUES} values once its aliases (*name) are expanded")
        return loader.construct_document(node)
    except RecipeError as exc:
        raise RecipeError(f"recipe: {where} is refused: {exc}; recipes are small plain YAML files") from None
    except yaml.constructor.ConstructorError as exc:
        mark = f" (line {exc.problem_mark.line + 1})" if exc.problem_mark is not None else ""
        raise RecipeError(
            f"recipe: {where} holds a YAML tag that safe loading refuses{mark}: {exc.problem}; "
            "recipes hold plain values only (mappings, lists, strings, numbers, booleans, null)"
        ) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe: {where} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()

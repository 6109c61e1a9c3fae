"""What kind of values a ``datasets`` feature (a column's type) holds."""

from __future__ import annotations

from typing import Any

_INT_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_FLOAT_DTYPES = {"float16", "float32", "float64", "bfloat16"}
_STR_DTYPES = {"string", "large_string"}


def _feature_kind(feature: Any) -> tuple[str, Any]:
    """Classify a ``datasets`` feature.

    Returns ``(kind, inner)``, kind one of classlabel, int, float, bool, str, list, array, image, other.
    """
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return "classlabel", feature
    if isinstance(feature, datasets.Value):
        dtype = feature.dtype
        if dtype in _INT_DTYPES:
            return "int", dtype
        if dtype in _FLOAT_DTYPES:
            return "float", dtype
        if dtype == "bool":
            return "bool", dtype
        if dtype in _STR_DTYPES:
            return "str", dtype
        return "other", dtype
    if isinstance(feature, datasets.Image):
        return "image", feature
    if isinstance(feature, (datasets.Array2D, datasets.Array3D)):
        return "array", feature
    inner = getattr(feature, "feature", None)
    if inner is not None and type(feature).__name__ in ("List", "LargeList", "Sequence"):
        return "list", feature
    if isinstance(feature, list) and len(feature) == 1:  # old-style [Value(...)]
        return "list", datasets.List(feature[0])
    return "other", feature


def _list_depth_and_leaf(feature: Any) -> tuple[int, Any]:
    depth = 0
    while _feature_kind(feature)[0] == "list":
        feature = feature.feature if not isinstance(feature, list) else feature[0]
        depth += 1
    return depth, feature


def _is_numeric_value(feature: Any) -> bool:
    return _feature_kind(feature)[0] in ("int", "float", "bool")


def _list_length(train: Any, column: str) -> int:
    """Length of the lists in ``column``: the feature's fixed length, else that of the first row."""
    length = getattr(train.features[column], "length", -1)
    return length if length and length > 0 else len(train[0][column])

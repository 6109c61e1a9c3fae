"""Shared test helpers."""

import lossbench
from lossbench.heads import CLASS_TASKS


def build_head(name: str, in_features: int = 8, num_classes: int = 5, **kwargs):
    """Build a registered head with the arguments its task needs."""
    if lossbench.get_head_class(name).task in CLASS_TASKS:
        kwargs["num_classes"] = num_classes
    return lossbench.get_head(name, in_features=in_features, **kwargs)

"""Tuning's files: ``DIR/tuning.json``, a summary of the tuning comparison (recomputable from its records)."""

from __future__ import annotations

from pathlib import Path

from lossbench.compare.analysis.tuning import LossTuning
from lossbench.compare.recipe.tune import TuneSpec
from lossbench.compare.store.layout import SUMMARY_FILE
from lossbench.compare.store.records import write_json


def write_summary(root: Path, tune: TuneSpec, chosen: dict[str, LossTuning]) -> None:
    """``DIR/tuning.json``: the spec and every loss's points, scores and choice (recomputable from the records)."""
    write_json(root / SUMMARY_FILE, {"tune": tune.to_dict(), "losses": {k: v.to_dict() for k, v in chosen.items()}})

"""The results folder's layout: every file and folder name a comparison writes, defined once.

::

    DIR/
      comparison.json                the comparison's metadata (store.meta.ComparisonMeta)
      .lossbench.lock                held while a command writes DIR
      report.md, results.csv         the report (report/ writes them, from the files alone)
      plots/                         the report's figures
      runs/<loss>/seed_<seed>/       one run: record.json, metrics.csv, weights.pt, test_predictions.pt,
                                     checkpoints/last.ckpt (while it trains)
      arrays/seed_<seed>/last.ckpt   a fused array's checkpoint (while it trains)
      tuning/                        the tuning comparison (the same layout)
      teacher/                       the teachers' comparison (the same layout; loss label ``teacher``)

Every module that reads or writes the folder takes its names from here.
"""

from __future__ import annotations

from pathlib import Path

COMPARISON_FILE = "comparison.json"  # what makes a folder a comparison folder
LOCK_FILE = ".lossbench.lock"
REPORT_FILE = "report.md"
RESULTS_FILE = "results.csv"
PLOTS_DIR = "plots"
RUNS_DIR = "runs"
ARRAYS_DIR = "arrays"
RECORD_FILE = "record.json"
METRICS_FILE = "metrics.csv"
WEIGHTS_FILE = "weights.pt"
PREDICTIONS_FILE = "test_predictions.pt"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
TUNING_DIR = "tuning"
SUMMARY_FILE = "tuning.json"  # DIR/tuning.json: the tuning's spec, points, scores and choices
TEACHER_DIR = "teacher"
TEACHER_LABEL = "teacher"  # the loss label of the teachers' runs in DIR/teacher
TARGET_PNG = "target_metric.png"
TRAIN_LOSS_PNG = "train_loss.png"
GRAD_NORM_PNG = "grad_norm.png"
TUNING_PNG = "tuning_sensitivity.png"
RELIABILITY_PNG = "reliability.png"  # class tasks: the reliability diagrams, a panel per loss
RECIPE_FILE = "recipe.yaml"  # DIR/recipe.yaml: the resolved recipe, rerunnable (`lossbench compare DIR/recipe.yaml`)


def run_dir(root: str | Path, loss: str, seed: int) -> Path:
    """``DIR/runs/<loss>/seed_<seed>``: one run's folder."""
    return Path(root) / RUNS_DIR / loss / f"seed_{seed}"


def array_dir(root: str | Path, seed: int, name: str | None = None) -> Path:
    """``DIR/arrays/<name>`` (default ``seed_<seed>``): a fused array's checkpoint folder."""
    return Path(root) / ARRAYS_DIR / (name or f"seed_{seed}")


def run_checkpoint(root: str | Path, loss: str, seed: int) -> Path:
    """A sequential run's resume checkpoint: ``DIR/runs/<loss>/seed_<seed>/checkpoints/last.ckpt``."""
    return run_dir(root, loss, seed) / CHECKPOINTS_DIR / LAST_CHECKPOINT


def record_paths(root: str | Path) -> list[Path]:
    """Every run's ``record.json`` under ``root`` (``DIR/runs/*/seed_*/record.json``), sorted."""
    return sorted(Path(root).glob(f"{RUNS_DIR}/*/seed_*/{RECORD_FILE}"))

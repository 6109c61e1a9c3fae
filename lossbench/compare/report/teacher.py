"""The report's Teacher section: what the students distilled from, and the teachers' own test metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lossbench.compare.store.layout import TEACHER_DIR


def teacher_section(root: Path, comparison: dict[str, Any]) -> list[str]:
    """Markdown: what the students distilled from, and the teachers' own test metrics (mean over seeds)."""
    import statistics

    from lossbench.compare.report.data import _table
    from lossbench.compare.report.format import _num
    from lossbench.compare.store.records import load_records

    given = (comparison.get("recipe") or {}).get("teacher")
    if not given:
        return []
    lines = ["## Teacher", ""]
    if "checkpoint" in given:
        contents = f" (sha256 `{given['sha256'][:12]}`)" if given.get("sha256") else ""
        return lines + [
            f"Every seed's students distilled from the checkpoint `{given['checkpoint']}`{contents} (its "
            "logits on the training rows; fingerprint in each record).",
            "",
        ]
    records = [r for r, _ in load_records(Path(root) / TEACHER_DIR)] if (Path(root) / TEACHER_DIR).is_dir() else []
    finished = [r for r in records if r.status == "finished"]
    backbone = given.get("backbone") or {}
    budget = ", ".join(f"{k} {given[k]}" for k in ("max_epochs", "max_steps") if k in given) or "the recipe's budget"
    shape = ", ".join(f"{k} {v}" for k, v in backbone.items()) or "the students'"
    lines += [
        f"Each seed's teacher was trained first (`{given['head']}` head, backbone {shape}, {budget}; in "
        "`teacher/`) on the same training rows and batch order "
        "as its students; the students that distil learn from its logits on the training rows.",
        "",
    ]
    metrics = sorted({m for r in finished for m in r.test})
    if finished and metrics:
        rows = [
            [m, str(len(finished)), _num(statistics.fmean(r.test[m] for r in finished if m in r.test))] for m in metrics
        ]
        lines += _table(["teacher test metric", "seeds", "mean"], rows) + [""]
    return lines

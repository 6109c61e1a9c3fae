"""A rerun of a finished comparison (or ``lossbench report``) redraws only the plots whose inputs changed, says so,
and a kept plot is byte for byte the plot that drawing again would give."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import yaml

from lossbench.cli import main
from lossbench.compare.report.drawn import DRAWN_FILE
from tests.compare.conftest import tiny_recipe

PLOTS = ["grad_norm.png", "reliability.png", "target_metric.png", "train_loss.png"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("redraw")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(executor="fused")))
    out = root / "out"
    assert main(["compare", str(recipe), "--output", str(out)]) == 0
    return recipe, out


def _report(out, capsys) -> str:
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    return capsys.readouterr().out


def _plots(out) -> dict[str, bytes]:
    return {name: (out / "plots" / name).read_bytes() for name in PLOTS}


def test_a_rerun_redraws_nothing_and_says_so(finished, capsys):
    recipe, out = finished
    assert sorted(json.loads((out / "plots" / DRAWN_FILE).read_text())) == PLOTS
    stamps = {name: (out / "plots" / name).stat().st_mtime_ns for name in PLOTS}
    assert "plots: none redrawn (4 unchanged)" in _report(out, capsys)
    capsys.readouterr()
    assert main(["compare", str(recipe), "--output", str(out)]) == 0  # every run finished: nothing trained
    assert "plots: none redrawn (4 unchanged)" in capsys.readouterr().err
    assert {name: (out / "plots" / name).stat().st_mtime_ns for name in PLOTS} == stamps  # not even rewritten


def test_a_kept_plot_is_the_plot_drawing_gives(finished, capsys):
    _, out = finished
    before = _plots(out)
    (out / "plots" / DRAWN_FILE).unlink()  # no index: every plot is drawn
    assert "plots: 4 drawn" in _report(out, capsys)
    assert _plots(out) == before
    (out / "plots" / "grad_norm.png").write_bytes(b"edited by hand")  # a changed file is drawn again
    assert "plots: 1 redrawn (grad_norm.png), 3 unchanged" in _report(out, capsys)
    assert _plots(out) == before


def test_changed_curves_redraw_the_curve_plots_only(finished, capsys):
    _, out = finished
    before = _plots(out)
    metrics = out / "runs" / "focal" / "seed_1" / "metrics.csv"
    rows = list(csv.DictReader(metrics.open()))
    row = next(r for r in rows if r.get("train_loss"))
    row["train_loss"] = str(float(row["train_loss"]) * 2)
    with metrics.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    said = _report(out, capsys)
    assert "plots: 3 redrawn (target_metric.png, train_loss.png, grad_norm.png), 1 unchanged" in said
    after = _plots(out)
    assert after["train_loss.png"] != before["train_loss.png"] and after["reliability.png"] == before["reliability.png"]


def test_rendering_a_report_imports_neither_lightning_nor_torchmetrics(finished):
    """What a rerun spends is imports: the report reads files with torch, numpy, scipy and matplotlib only (before:
    torchmetrics, and the transformers it imports when installed: ~2 s of a 5.5 s `lossbench report`)."""
    _, out = finished
    code = (
        "import sys; from lossbench.cli import main; assert main(['report', sys.argv[1]]) == 0; "
        "print(sorted(m for m in ('lightning', 'torchmetrics', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout

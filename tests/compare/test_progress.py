"""The progress display moves with optimizer steps (issue 23 item 3): within a fused array, each step of the array
is a step of each member; not a terminal: one line per finished run and no bar."""

from __future__ import annotations

import io
import re
import sys

from lossbench.compare import Comparison, load_recipe

from .conftest import tiny_recipe


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_display_moves_with_every_step_of_an_array(monkeypatch, capsys, tmp_path):
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    recipe = load_recipe(tiny_recipe(executor="fused", seeds=[0]))  # 3 losses, 8 steps each: 24 steps in all
    Comparison(recipe, tmp_path / "out", progress=True).run()
    text, lines = screen.getvalue(), capsys.readouterr().out
    counts = [int(n) for n in re.findall(r"\| *(\d+)/24 \[", text)]
    # it moved while the only array trained (a count strictly between 0 and 24), 3 members a step
    assert counts[-1] == 24 and any(0 < c < 24 for c in counts) and all(c % 3 == 0 for c in counts), counts
    # the array's members and epoch, and its members' latest validation accuracy as a range
    shown = re.findall(r"seed 0: ce, focal, sce as one array, epoch 1, val/accuracy (\d\.\d{4})\.\.(\d\.\d{4})", text)
    assert shown and all(float(low) <= float(high) for low, high in shown), text[-2000:]
    assert "[1/3] ce seed 0" in lines and "in a 3-member array" in lines
    assert "s train" not in lines  # no copy of the array's time per member


def test_not_a_terminal_gets_lines_only(capsys, tmp_path):
    recipe = load_recipe(tiny_recipe(executor="fused", seeds=[0]))
    Comparison(recipe, tmp_path / "out", progress=True).run()
    found = capsys.readouterr()
    assert "[1/3] ce seed 0" in found.out and "[3/3] sce seed 0" in found.out
    assert "step/s" not in found.err and "/24 [" not in found.err


def test_a_sequential_run_shows_its_own_latest_validation_metric(monkeypatch, tmp_path):
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    recipe = load_recipe(tiny_recipe(executor="sequential", seeds=[0], losses=["ce", "sce"]))
    Comparison(recipe, tmp_path / "out", progress=True).run()
    assert re.search(r"sce seed 0, epoch \d, val/accuracy \d\.\d{4}\]", screen.getvalue())

"""Speed is measured in benchmarks/, never asserted in tests: a busy 2-core machine fails a timed assertion.

This walks every test module's syntax tree and refuses an ``assert`` that compares a
wall-clock reading: a call to ``time.time``/``perf_counter``/``monotonic`` (or a name
bound from one, or from a difference of them), or a name that says it holds seconds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
CLOCKS = {"time", "perf_counter", "monotonic", "perf_counter_ns", "monotonic_ns", "time_ns"}
TIMED_NAMES = ("seconds", "elapsed", "duration", "wall")


def _is_clock_call(node: ast.AST) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in CLOCKS


def _clock_names(tree: ast.AST) -> set[str]:
    """Names bound (anywhere in the module) from an expression that reads a clock."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(_is_clock_call(n) for n in ast.walk(node.value)):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def timed_assertions(source: str) -> list[int]:
    """Line numbers of the assertions in ``source`` that compare a wall-clock reading."""
    tree = ast.parse(source)
    clocks = _clock_names(tree)
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
            if not any(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in compare.ops):
                continue
            parts = [compare.left, *compare.comparators]
            inner = [n for part in parts for n in ast.walk(part)]
            if any(_is_clock_call(n) for n in inner) or any(
                isinstance(n, ast.Name) and (n.id in clocks or any(t in n.id.lower() for t in TIMED_NAMES))
                for n in inner
            ):
                lines.append(node.lineno)
                break
    return lines


def test_the_detector_finds_timed_assertions_and_passes_others():
    check = "assert"  # spelt apart so that a grep of tests/ for timed assertions does not find these samples
    bad = (
        f"import time\nstart = time.perf_counter()\n{check} time.perf_counter() - start < 5\n"
        f"elapsed = time.monotonic() - start\n{check} elapsed <= 1.0\n"
        f"def f(compared):\n    root, seconds = compared\n    {check} seconds < 45\n"
    )
    assert timed_assertions(bad) == [3, 5, 8]
    good = "x = 3\nassert x < 4\nrecord = {}\nassert record.get('train_seconds', 1) == 1\n"
    assert timed_assertions(good) == []


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_test_asserts_on_wall_clock_time(path):
    found = timed_assertions(path.read_text())
    assert not found, (
        f"{path.relative_to(TESTS)} asserts on wall-clock time at lines {found}: measure it in benchmarks/"
    )

"""The package's layers: no import circle and no upward import in ``lossbench/``, function-level imports included.

Run it as a command to see the graph's problems: ``python tests/test_layers.py``.

Every import counts, wherever it sits (module level, inside a function, under ``TYPE_CHECKING``): an import placed
inside a function to break a circle still makes one. The implicit import of a package's ``__init__`` on the way to
one of its modules is not an edge (every module would otherwise depend on ``lossbench/__init__.py``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "lossbench"

LAYERS = [
    # lowest first; a module imports only from its own layer (without a circle) or from the layers below it
    [
        "lossbench._hints",
        "lossbench._classpath",
        "lossbench._killpoint",
        "lossbench._io",
        "lossbench._version",
        "lossbench._extras",
        "lossbench._metric_rules",
        "lossbench.functional",
    ],
    ["lossbench.config", "lossbench.heads", "lossbench.metrics", "lossbench.distributed"],
    ["lossbench.models"],
    ["lossbench.module", "lossbench.data", "lossbench.resume"],
    ["lossbench.testing"],
    ["lossbench.compare.recipe"],  # the comparison engine, by stage
    ["lossbench.compare.store"],
    ["lossbench.compare.analysis"],
    ["lossbench.compare.report"],
    ["lossbench.compare.execution"],
    ["lossbench.compare"],  # the facade: lazy public names
    ["lossbench.fit"],
    ["lossbench.cli"],
    ["lossbench"],  # the package's __init__
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The lossbench modules that ``name`` imports, anywhere in its source."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "lossbench"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.split(".")[0] != "lossbench":
                continue
            for alias in node.names:  # `from package import submodule` depends on the submodule
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer(name: str) -> int:
    """The index of the most specific LAYERS prefix that holds ``name``."""
    best, depth = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = i, prefix.count(".")
    if best < 0:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS in {__file__}")
    return best


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in g.items() for b in deps if layer(b) > layer(a))


def test_no_import_circle():
    assert circles(graph()) == []


def test_no_upward_import():
    assert upward(graph()) == []


def test_the_checker_finds_a_circle_and_an_upward_edge():
    g = {
        "lossbench.config": {"lossbench.module"},
        "lossbench.module": {"lossbench.config"},
        "lossbench.compare.store.records": {"lossbench.compare.execution.engine"},
        "lossbench.compare.execution.engine": set(),
    }
    assert circles(g) == [["lossbench.config", "lossbench.module"]]
    assert upward(g) == [
        "lossbench.compare.store.records -> lossbench.compare.execution.engine",
        "lossbench.config -> lossbench.module",
    ]


def test_function_level_and_from_package_imports_are_edges(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from lossbench.compare.store import records\n    import lossbench.cli\n")
    known = modules()
    assert imports("lossbench.x", src, known) == {"lossbench.compare.store.records", "lossbench.cli"}


if __name__ == "__main__":
    g = graph()
    for c in circles(g):
        print("circle:", " <-> ".join(c))
    for e in upward(g):
        print("upward:", e)

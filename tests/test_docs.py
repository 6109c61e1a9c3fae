"""The python blocks of docs/*.md and README.md run, in order, one namespace per file."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.fixture(autouse=True)
def _restore_registry():
    """Docs register example heads; keep them out of the other tests."""
    from lossbench.heads import registry

    saved = dict(registry._registry)
    yield
    registry._registry.clear()
    registry._registry.update(saved)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_doc_code_blocks_run(path):
    blocks = python_blocks(path)
    namespace = {"__name__": f"docs_{path.stem}"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # point at the block, not at exec
            raise AssertionError(f"{path.name} block {i} fails: {exc!r}\n{code}") from exc


def test_custom_head_example_is_at_most_15_lines():
    first = python_blocks(ROOT / "docs" / "custom_head.md")[0]
    lines = [line for line in first.splitlines() if line.strip()]
    assert len(lines) <= 15, len(lines)

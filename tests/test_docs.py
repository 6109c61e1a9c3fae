"""The python blocks of docs/*.md and README.md run, in order, one namespace per file.

A block opened with ```` ```python file=NAME.py ```` is a file of the reader's own: it is written to a temporary
folder on ``sys.path`` (so the other blocks can import it, or name its classes by class path), not run."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
FILE_BLOCK = re.compile(r"^```python file=([\w.]+\.py)\n(.*?)^```", re.S | re.M)


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


def file_blocks(path: Path) -> dict[str, str]:
    return dict(FILE_BLOCK.findall(path.read_text()))


@pytest.fixture
def user_files(tmp_path, monkeypatch):
    """Write a doc's file blocks to a folder on sys.path; forget their modules afterwards."""
    import sys

    written: list[str] = []

    def write(path: Path) -> None:
        for name, code in file_blocks(path).items():
            (tmp_path / name).write_text(code)
            written.append(name.removesuffix(".py"))
        monkeypatch.syspath_prepend(str(tmp_path))

    yield write
    for module in written:
        sys.modules.pop(module, None)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_doc_code_blocks_run(path, user_files):
    user_files(path)
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


def test_custom_model_example_is_about_25_lines():
    """docs/custom_model.md's whole example: the user's file and the comparison that names it."""
    doc = ROOT / "docs" / "custom_model.md"
    code = [*file_blocks(doc).values(), python_blocks(doc)[0]]
    lines = [line for block in code for line in block.splitlines() if line.strip()]
    assert len(lines) <= 28, len(lines)

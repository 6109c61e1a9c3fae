"""Issue 9, finding 9: a results folder that cannot be written is refused in validation, and a write that fails
mid-comparison (disk full, quota, `ulimit -f`) stops it with one line naming the file and the errno, leaving a
folder that resumes (before: NotADirectoryError/OSError tracebacks after validation passed, or every run recorded
`failed`)."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lossbench import _io
from lossbench.cli import EXIT_WRITE_FAILED, main
from lossbench.compare.store import storage
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import RunRecord
from tests.compare.conftest import tiny_recipe

ROOT = Path(__file__).parents[2]
RECIPE = tiny_recipe(losses=["ce", "focal"], seeds=[0])


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(RECIPE, sort_keys=False), encoding="utf-8")
    return path


def test_an_output_below_a_file_is_refused_before_anything_runs(recipe_file, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["compare", str(recipe_file), "--output", str(tmp_path / "file" / "sub"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, so the folder" in err and "Traceback" not in err


def test_an_unwritable_output_is_refused_in_validation(recipe_file, tmp_path, capsys, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    real = os.access
    monkeypatch.setattr(storage.os, "access", lambda p, mode: False if Path(p) == parent else real(p, mode))
    assert main(["compare", str(recipe_file), "--output", str(parent / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"its parent {str(parent)!r} is not writable" in err and not (parent / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_in_validation(recipe_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["compare", str(recipe_file), "--output", str(out), "--no-progress"]) == 2
    finally:
        out.chmod(0o755)
    assert "is not writable" in capsys.readouterr().err


def _full_disk_after(monkeypatch, writes: int) -> None:
    """Every atomic write after the first ``writes`` fails as on a full disk (ENOSPC from fsync)."""
    real, done = os.fsync, []

    def fsync(fd):
        done.append(fd)
        if len(done) > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(_io.os, "fsync", fsync)


@pytest.mark.parametrize("writes", [3, 12])  # 3: during the first run's first evaluations; 12: a later one
def test_a_full_disk_stops_the_comparison_in_one_line_and_the_folder_resumes(
    recipe_file, tmp_path, capsys, monkeypatch, writes
):
    out = tmp_path / "out"
    _full_disk_after(monkeypatch, writes)
    assert main(["compare", str(recipe_file), "--output", str(out), "--no-progress"]) == EXIT_WRITE_FAILED
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"could not write '{out}" in err and "[Errno 28] No space left on device (ENOSPC)" in err
    assert "rerun the same command to resume" in err
    statuses = [RunRecord.load(p).status for p in out.glob("runs/*/seed_*/record.json")]
    assert "failed" not in statuses  # the disk's fault, not the runs'
    assert not list(out.rglob(".*.tmp"))
    monkeypatch.undo()
    assert main(["compare", str(recipe_file), "--output", str(out), "--no-progress"]) == 0
    assert [RunRecord.load(run_dir(out, loss, 0) / "record.json").status for loss in ("ce", "focal")] == [
        "finished",
        "finished",
    ]
    assert (out / "report.md").is_file()


def test_a_file_size_limit_stops_the_comparison_in_one_line(recipe_file, tmp_path):
    """`ulimit -f`: the kernel refuses the write with EFBIG (Python ignores SIGXFSZ); the folder resumes."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lossbench.cli", "compare", str(recipe_file), "--output", str(out), "--no-progress"]
    warm = subprocess.run(
        [
            *cmd[:-3],
            "--output",
            str(tmp_path / "warm"),
            "--no-progress",
            "--losses",
            "ce",
            "--trainer.max_steps=1",
            "--trainer.eval_every_n_steps=1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert warm.returncode == 0, warm.stderr[-2000:]  # the data cache is written before the limit applies

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, resource.RLIM_INFINITY))

    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT, preexec_fn=limit)
    assert done.returncode == EXIT_WRITE_FAILED, done.stderr[-3000:]
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "[Errno 27] File too large (EFBIG)" in err[0] and str(out) in err[0], err
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert RunRecord.load(run_dir(out, "focal", 0) / "record.json").status == "finished"

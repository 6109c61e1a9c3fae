"""Issue 9, findings 1, 2, 4 and 10: one writer per folder, SIGTERM/SIGINT at any moment, a first start killed
early, and exit codes (each case failed before: two processes both trained every run, SIGTERM exited 0 and left
the run for the next process to trip over, a folder killed on its first start was refused forever, and a
comparison whose runs all failed exited 0)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lossbench.compare.store.lock import FolderBusyError, FolderLock
from tests.compare.test_kill import RECIPE, RUNS, check_files, record, same_results, status

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSSBENCH_TEST_KILL")}
    env.update(HF_DATASETS_CACHE=str(cache), HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", **extra)
    return env


def _cmd(recipe: Path, out: Path, *more: str) -> list[str]:
    quiet = [] if "--wait" in more else ["--no-progress"]  # with progress, a line per run: who trained what
    return [sys.executable, "-m", "lossbench.cli", "compare", str(recipe), "--output", str(out), *quiet, *more]


def _run(recipe, out, cache, *more, **env):
    return subprocess.run(
        _cmd(recipe, out, *more), capture_output=True, text=True, env=_env(cache, **env), timeout=300, cwd=ROOT
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt")
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE, sort_keys=False), encoding="utf-8")
    done = _run(recipe, root / "reference", root / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    return root, recipe


def test_a_held_folder_is_refused_naming_the_holder(setup, tmp_path):
    root, recipe = setup
    with FolderLock(tmp_path / "out"):
        busy = _run(recipe, tmp_path / "out", root / "cache")
        with pytest.raises(FolderBusyError, match=f"pid {os.getpid()}"):
            FolderLock(tmp_path / "out").acquire()
    assert busy.returncode == 2
    assert f"is in use by another lossbench compare (pid {os.getpid()}, since" in busy.stderr
    assert "--wait" in busy.stderr and not (tmp_path / "out" / "comparison.json").exists()


def test_three_concurrent_processes_train_each_run_once(setup, tmp_path):
    root, recipe = setup
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            _cmd(recipe, out, "--wait"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(root / "cache"),
            cwd=ROOT,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-2000:] for _, e in outputs]
    trained = [
        line
        for o, _ in outputs
        for line in o.splitlines()
        if re.search(r"\[\d/4\] \w+ seed \d: ", line) and "finished earlier, skipped" not in line
    ]
    assert len(trained) == len(RUNS), trained  # each run trained by exactly one process
    assert all(record(out, loss, seed)["resumed"] == 0 for loss, seed in RUNS)
    assert check_files(out) == []
    same_results(out, root / "reference")


@pytest.mark.parametrize(
    "point,signal_name,code,where",
    [
        ("step:6", "TERM", 143, "run 1/4 (ce seed 0)"),  # mid-training, inside Lightning's fit
        ("validate:0", "TERM", 143, "run 2/4 (focal seed 0)"),  # the stand-alone evaluation of the initial weights
        ("test", "INT", 130, "run 1/4 (ce seed 0)"),  # the test evaluation at the end of a run (Ctrl-C)
    ],
)
def test_a_signal_at_any_moment_exits_non_zero_and_resumes(setup, tmp_path, point, signal_name, code, where):
    root, recipe = setup
    out = tmp_path / "out"
    at = point if point != "validate:0" else "validate:0@2"  # the second run's step-0 evaluation
    stopped = _run(recipe, out, root / "cache", LOSSBENCH_TEST_KILL_AT=at, LOSSBENCH_TEST_KILL_SIGNAL=signal_name)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    line = f"lossbench compare: stopped by SIG{signal_name} at {where}; the folder {str(out)!r} is resumable"
    assert line in stopped.stderr and "Traceback" not in stopped.stderr
    assert "finished" not in status(out)[len(status(out)) - 1 :]  # the last run never finished
    assert not (out / "results.csv").exists()
    again = _run(recipe, out, root / "cache")
    assert again.returncode == 0, again.stderr[-3000:]
    assert status(out) == ["finished"] * 4 and check_files(out) == []
    same_results(out, root / "reference")


def test_a_folder_killed_on_its_first_start_resumes(setup, tmp_path):
    root, recipe = setup
    out = tmp_path / "out"
    killed = _run(recipe, out, root / "cache", LOSSBENCH_TEST_KILL_AT="write:comparison.json")
    assert killed.returncode == -9 and not (out / "comparison.json").exists()
    again = _run(recipe, out, root / "cache")
    assert again.returncode == 0, again.stderr[-3000:]
    same_results(out, root / "reference")


def test_failed_runs_give_a_non_zero_exit_naming_them(setup, tmp_path):
    root, recipe = setup
    bad = {
        **RECIPE,
        "losses": ["ce"],
        "seeds": [0],
        "optimizer": {"name": "adamw", "lr": 1.0e6},
        "nan_policy": "raise",
        "data": {**RECIPE["data"], "batch_size": 16},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False), encoding="utf-8")
    done = _run(path, tmp_path / "out", root / "cache")
    if record(tmp_path / "out", "ce", 0)["status"] == "finished":
        pytest.skip("lr 1e6 did not diverge on this machine")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "lossbench compare: 1 run(s) failed: ce seed 0 (FloatingPointError" in done.stderr
    assert (tmp_path / "out" / "report.md").is_file()

"""`lossbench compare` survives kill -9: a real subprocess is SIGKILLed at chosen moments (between runs,
mid-run, while writing a record, a checkpoint or results.csv, between "finished" and the checkpoint
clean-up) and the same command is started again each time. It ends with the results of an uninterrupted
run (timings aside), never trains a finished run again, and never leaves a truncated file behind.

The moments come from the engine's test hook ``LOSSBENCH_TEST_KILL_AT`` (lossbench/_killpoint.py):
the process sends itself SIGKILL there, so each kill lands exactly where the test says.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml

from lossbench.compare.store.layout import LOCK_FILE
from tests.compare.conftest import tiny_recipe

pytestmark = pytest.mark.slow

# wine: 124 training rows in batches of 16 -> 8 batches per epoch; evaluations (and checkpoints) at
# steps 4 (mid-epoch), 8 (end of epoch 0) and 12; dropout makes the RNG states matter
RECIPE = tiny_recipe(
    losses=["ce", {"name": "focal", "args": {"gamma": 2.0}}],
    seeds=[0, 1],
    data__batch_size=16,
    backbone__dropout=0.1,
    trainer={"max_steps": 12, "eval_every_n_steps": 4},
)
RUNS = [("ce", 0), ("focal", 0), ("ce", 1), ("focal", 1)]  # the plan's order: seeds outer, losses inner
TIMING = {"train_seconds", "seconds_per_step", "seconds_to_target", "resumed", "wall_time"}
PNG_END = b"IEND\xaeB`\x82"


def compare(recipe: Path, out: Path, cache: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LOSSBENCH_TEST_KILL_AT"}
    env.update(HF_DATASETS_CACHE=str(cache), HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    if kill_at is not None:
        env["LOSSBENCH_TEST_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "lossbench.cli", "compare", str(recipe), "--output", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=Path(__file__).parents[2],
    )


def check_files(out: Path) -> list[Path]:
    """Every file parses whole; returns the temporary files a killed writer left (``.<name>.*.tmp``)."""
    left = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if path.name.startswith(".") and path.suffix == ".tmp":
            left.append(path)
        elif path.name == LOCK_FILE:  # the folder's lock: released by the kernel when its holder dies
            continue
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".csv":
            with open(path, encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f))
            assert rows and rows[0], f"{path}: no header"
            assert all(len(r) == len(rows[0]) for r in rows), f"{path}: rows of unequal length"
        elif path.suffix == ".ckpt":
            assert "state_dict" in torch.load(path, map_location="cpu", weights_only=False)
        elif path.suffix == ".pt":  # kept weights and test predictions: plain tensors, weights_only-loadable
            assert torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix == ".yaml":
            assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict)
        elif path.suffix == ".png":
            assert path.read_bytes().endswith(PNG_END), f"{path}: truncated image"
        elif path.suffix == ".md":
            assert path.read_text(encoding="utf-8").endswith("\n"), f"{path}: truncated report"
        else:
            raise AssertionError(f"unexpected file {path}")
    return left


def record(out: Path, loss: str, seed: int) -> dict | None:
    path = out / "runs" / loss / f"seed_{seed}" / "record.json"
    return json.loads(path.read_text()) if path.exists() else None


def checkpoint_step(out: Path, loss: str, seed: int) -> int | None:
    path = out / "runs" / loss / f"seed_{seed}" / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"] if path.exists() else None


def status(out: Path) -> list[str | None]:
    return [(record(out, loss, seed) or {}).get("status") for loss, seed in RUNS]


def finished_runs(out: Path) -> dict[tuple[str, int], tuple[bytes, bytes]]:
    """The files of every finished run: they must never change again."""
    done = {}
    for loss, seed in RUNS:
        folder = out / "runs" / loss / f"seed_{seed}"
        if (record(out, loss, seed) or {}).get("status") == "finished":
            done[(loss, seed)] = ((folder / "record.json").read_bytes(), (folder / "metrics.csv").read_bytes())
    return done


def survive(recipe: Path, out: Path, cache: Path, kills: list[tuple[str, object]]) -> None:
    """Kill the command at each moment in turn (checking the folder after each), then let it finish."""
    finished: dict = {}
    for kill_at, expect in [*kills, (None, None)]:
        done = compare(recipe, out, cache, kill_at)
        if kill_at is None:
            assert done.returncode == 0, done.stderr[-3000:]
        else:
            assert done.returncode == -signal.SIGKILL, f"{kill_at}: exit {done.returncode}\n{done.stderr[-3000:]}"
        left = check_files(out)
        assert not left or kill_at is not None and kill_at.startswith("write:"), left  # only a killed write leaves one
        now = finished_runs(out)
        for run, files in finished.items():  # a finished run is never trained (or rewritten) again
            assert now.get(run) == files, f"finished run {run} changed after kill at {kill_at!r}"
        finished = now
        if expect is not None:
            expect(out)
    assert check_files(out) == [] and not list(out.rglob("checkpoints"))


def survive_beside_reference(recipe: Path, tmp_path: Path, kills: list[tuple[str, object]]) -> tuple[Path, Path]:
    """:func:`survive` in ``tmp_path/killed`` while an uninterrupted run fills ``tmp_path/reference`` (two
    processes at a time: each command spends seconds importing); returns both folders."""

    def reference() -> None:
        done = compare(recipe, tmp_path / "reference", tmp_path / "cache-ref")
        assert done.returncode == 0, done.stderr[-3000:]

    with ThreadPoolExecutor(2) as pool:
        ref = pool.submit(reference)
        survive(recipe, tmp_path / "killed", tmp_path / "cache", kills)
        ref.result()
    return tmp_path / "killed", tmp_path / "reference"


def same_results(out: Path, reference: Path) -> None:
    def table(path, drop):
        with open(path, encoding="utf-8", newline="") as f:
            return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]

    assert table(out / "results.csv", TIMING) == table(reference / "results.csv", TIMING)
    for loss, seed in RUNS:
        metrics = Path("runs") / loss / f"seed_{seed}" / "metrics.csv"
        assert table(out / metrics, {"wall_time"}) == table(reference / metrics, {"wall_time"}), metrics


def lane_a(recipe, out, cache):
    """Between runs, mid-run (mid-epoch), while writing a record, between "finished" and the clean-up."""

    def between_runs(o):
        assert status(o) == ["finished", None, None, None]

    def mid_run(o):  # focal seed 0 killed at step 6: its checkpoint is the evaluation of step 4
        assert status(o)[1] == "running" and checkpoint_step(o, "focal", 0) == 4

    def writing_record(o):  # it resumed (record write 1) and finished; killed writing "finished" (write 2)
        assert status(o)[1] == "running" and checkpoint_step(o, "focal", 0) == 12

    def before_cleanup(o):  # focal seed 0 resumed again and finished; ce seed 1 finished, checkpoints not deleted
        assert status(o)[:3] == ["finished"] * 3 and checkpoint_step(o, "ce", 1) == 12

    survive(
        recipe,
        out,
        cache,
        [
            ("run:2", between_runs),
            ("step:6", mid_run),
            ("write:record.json@2", writing_record),
            ("finished@2", before_cleanup),
        ],
    )
    return [record(out, loss, seed)["resumed"] for loss, seed in RUNS]


def lane_b(recipe, out, cache):
    """Mid-run at an epoch's end, while writing a checkpoint, its test predictions, results.csv."""

    def end_of_epoch(o):  # ce seed 0 killed at step 10: its checkpoint is step 8, the end of epoch 0
        assert status(o)[0] == "running" and checkpoint_step(o, "ce", 0) == 8

    def writing_checkpoint(o):  # resumed, killed writing the checkpoint of step 12: step 8's is there, whole
        assert status(o)[0] == "running" and checkpoint_step(o, "ce", 0) == 8

    def writing_predictions(o):  # resumed, trained to the end, killed writing its test predictions: not finished
        assert status(o)[0] == "running" and checkpoint_step(o, "ce", 0) == 12
        assert not (o / "runs" / "ce" / "seed_0" / "test_predictions.pt").exists()

    def writing_results(o):
        assert status(o) == ["finished"] * 4 and not (o / "results.csv").exists()

    survive(
        recipe,
        out,
        cache,
        [
            ("step:10", end_of_epoch),
            ("write:last.ckpt", writing_checkpoint),
            ("write:test_predictions.pt", writing_predictions),
            ("write:results.csv", writing_results),
        ],
    )
    return [record(out, loss, seed)["resumed"] for loss, seed in RUNS]


def test_compare_survives_kill_9_at_any_moment(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE, sort_keys=False), encoding="utf-8")

    def reference():
        done = compare(recipe, tmp_path / "reference", tmp_path / "cache-ref")
        assert done.returncode == 0, done.stderr[-3000:]

    with ThreadPoolExecutor(2) as pool:  # two lanes at a time: each command spends seconds importing
        a = pool.submit(lane_a, recipe, tmp_path / "a", tmp_path / "cache-a")
        b = pool.submit(lambda: (reference(), lane_b(recipe, tmp_path / "b", tmp_path / "cache-b"))[1])
        resumed_a, resumed_b = a.result(), b.result()
    assert resumed_a == [0, 2, 0, 0]  # focal seed 0 was resumed twice, nothing else was ever trained twice
    assert resumed_b == [3, 0, 0, 0]  # ce seed 0: after step 10, while checkpointing, while writing predictions
    for lane in ("a", "b"):
        same_results(tmp_path / lane, tmp_path / "reference")

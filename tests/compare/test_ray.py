"""The Ray launcher (issue 22) on a local 2-CPU Ray cluster (loopback only): the same records as the local launcher,
units in parallel, a killed worker retried and resumed, a killed or stopped driver resumed, a folder the workers do
not share refused, an unreachable cluster refused before anything is written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import lossbench
from lossbench.compare import RecipeError, load_recipe
from lossbench.compare.execution import ray_launcher
from lossbench.compare.store.layout import COMPARISON_FILE
from lossbench.compare.store.records import load_records

from .conftest import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]


def ray_recipe(**changes):
    """tiny_recipe in float64 (the launchers' numbers are compared to the last digit), fused, on Ray."""
    recipe = tiny_recipe(executor="fused", **changes)
    recipe["trainer"]["precision"] = "64-true"
    recipe["launcher"] = {"name": "ray", "resources": {"cpu": 1}}
    return recipe


def runs(folder):
    return {(r.loss, r.seed): (r, rows) for r, rows in load_records(folder)}


def assert_same_runs(mine, theirs):
    """The same runs: fingerprints, every metric of every evaluation, the test numbers, to the last digit."""
    assert mine.keys() == theirs.keys() and mine
    for key, (record, rows) in mine.items():
        other, other_rows = theirs[key]
        assert record.status == other.status == "finished", key
        assert record.fingerprints == other.fingerprints, key
        assert (record.test, record.final, record.best, record.steps) == (
            other.test,
            other.final,
            other.best,
            other.steps,
        ), key
        assert len(rows) == len(other_rows)
        for row, ref in zip(rows, other_rows):
            assert {k: v for k, v in row.items() if k != "wall_time"} == {
                k: v for k, v in ref.items() if k != "wall_time"
            }, key


# -- the recipe (no Ray needed) ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("launcher", "trainer", "match"),
    [
        ({"name": "rya"}, {}, r"`launcher.name` must be 'local' .* got 'rya'; did you mean 'ray'\?"),
        ({"address": "auto"}, {}, r"`launcher.address` .* needs `launcher.name: ray`, got address='auto'"),
        ({"name": "ray"}, {"devices": 2}, r"a Ray unit trains on one device, .* none of \{'devices': 2\}"),
        (
            {"name": "ray", "resources": {"gpu": 0.5}},
            {"accelerator": "cpu"},
            r"`launcher.resources.gpu` is 0.5 but `trainer.accelerator`",
        ),
        ({"name": "ray", "resources": {"cpu": 0}}, {}, r"`launcher.resources.cpu` must be a number >= 1, got 0"),
        ({"name": "ray", "resources": {"gpu": 1.5}}, {}, r"`launcher.resources.gpu` must be a fraction <= 1 or a "),
        ({"name": "ray", "resources": {"cpus": 1}}, {}, r"unknown key `launcher.resources.cpus`; did you mean 'cpu'"),
        ({"name": "ray", "retries": -1}, {}, r"`launcher.retries` must be an int in \[0, 100\], got -1"),
    ],
)
def test_bad_launcher_settings_are_named(launcher, trainer, match):
    recipe = tiny_recipe(launcher=launcher)
    recipe["trainer"].update(trainer)
    with pytest.raises(RecipeError, match=match):
        load_recipe(recipe)


def test_the_launcher_is_outside_the_setup_hash_and_round_trips():
    local, ray = load_recipe(tiny_recipe()), load_recipe(ray_recipe())
    assert "launcher" not in local.to_dict()  # a local recipe's hashes are those it always had
    assert ray.launcher == {"name": "ray", "address": None, "resources": {"cpu": 1, "gpu": 0}, "retries": 2}
    assert load_recipe(ray.to_dict()) == ray
    tiny = tiny_recipe()
    tiny["trainer"]["precision"] = "64-true"
    assert load_recipe(tiny).setup_hash == ray.setup_hash  # a folder resumes under another launcher
    gpu = tiny_recipe(launcher={"name": "ray", "resources": {"gpu": 0.25}})
    assert gpu["trainer"].get("accelerator", "auto") == "auto"  # the default: the GPU is the workers' (not refused
    assert load_recipe(gpu).launcher["resources"] == {"cpu": 1, "gpu": 0.25}  # on a CPU-only driver)
    assert load_recipe(gpu).setup()["trainer"]["accelerator"] == "cuda"  # what the units train on


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RecipeError, match=r"`launcher.name: ray` needs Ray, which is not installed .*"
                       r"pip install lossbench\[ray\]"):  # fmt: skip
        lossbench.compare(ray_recipe(), output=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / COMPARISON_FILE).exists()


def test_an_unreachable_cluster_is_refused_before_anything_is_written(tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(RecipeError, match=r"cannot reach the Ray cluster at `launcher.address`='127.0.0.1:9' "
                       r"\(127.0.0.1:9 takes no connection"):  # fmt: skip
        lossbench.compare(ray_recipe(), output=tmp_path / "out", progress=False, address="127.0.0.1:9")
    assert not (tmp_path / "out").exists()


# -- on a local Ray cluster --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The same comparison under the local launcher (one thread, as each Ray unit has)."""
    import torch

    folder = tmp_path_factory.mktemp("local") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recipe = ray_recipe()
        del recipe["launcher"]
        lossbench.compare(recipe, output=folder, progress=False)
    finally:
        torch.set_num_threads(threads)
    return runs(folder), folder


@pytest.mark.slow
def test_ray_gives_the_records_of_the_local_launcher(ray_cluster, local, tmp_path):
    local_runs, local_folder = local
    result = lossbench.compare(ray_recipe(), output=tmp_path / "out", progress=False)
    mine = runs(tmp_path / "out")
    assert_same_runs(mine, local_runs)
    for (loss, seed), (record, _) in mine.items():
        worker = record.worker
        assert worker["launcher"] == "ray" and worker["device"] == "cpu" and worker["pid"] != os.getpid()
        assert worker["started_at"] <= worker["finished_at"]
        assert local_runs[(loss, seed)][0].worker["launcher"] == "local"
    assert result.failed == [] and not list((tmp_path / "out").glob(".lossbench-probe-*"))
    timed = [c for c in result.table if "second" in c]  # the machine's timing
    theirs = lossbench.compare.ComparisonResult.load(local_folder).table
    assert result.table.drop(columns=timed).equals(theirs.drop(columns=timed))


@pytest.mark.slow
def test_sequential_runs_are_one_unit_each_with_the_local_numbers(ray_cluster, tmp_path):
    import torch

    recipe = {**ray_recipe(seeds=[1], losses=["ce", "focal"]), "executor": "sequential"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lossbench.compare({**recipe, "launcher": {"name": "local"}}, output=tmp_path / "local", progress=False)
    finally:
        torch.set_num_threads(threads)
    lossbench.compare(recipe, output=tmp_path / "ray", progress=False)
    mine = runs(tmp_path / "ray")
    assert_same_runs(mine, runs(tmp_path / "local"))
    assert {r.execution["executor"] for r, _ in mine.values()} == {"sequential"}


@pytest.mark.slow
def test_two_seeds_train_at_the_same_time(ray_cluster, tmp_path):
    recipe = ray_recipe(seeds=[0, 1])
    recipe["trainer"].update(max_steps=60, eval_every_n_steps=20)
    lossbench.compare(recipe, output=tmp_path / "out", progress=False)
    times = {
        seed: (r.worker["started_at"], r.worker["finished_at"]) for (_, seed), (r, _) in runs(tmp_path / "out").items()
    }
    (start0, end0), (start1, end1) = times[0], times[1]
    assert start0 < end1 and start1 < end0, times  # the two seeds' arrays overlap in time
    pids = {r.worker["pid"] for r, _ in runs(tmp_path / "out").values()}
    assert len(pids) == 2


@pytest.mark.slow
def test_a_folder_the_workers_do_not_share_is_refused(ray_cluster, tmp_path, monkeypatch):
    elsewhere = tmp_path / "the driver's own disk"
    elsewhere.mkdir()
    monkeypatch.setattr(ray_launcher, "_driver_view", lambda folder: elsewhere)
    match = (
        r"the results folder '.*out' is not shared with every Ray worker: node .*cannot read the driver's probe "
        r"file there .*every node mounts at the same path"
    )
    with pytest.raises(RecipeError, match=match):
        lossbench.compare(ray_recipe(), output=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / COMPARISON_FILE).exists()
    assert not list(elsewhere.iterdir())  # the probe files are gone


# -- faults: the driver as a command, with its own local Ray ------------------------------------------------------
def compare_command(tmp_path, env=None, check=True, retries=2):
    recipe = ray_recipe(seeds=[0, 1])
    recipe["launcher"]["retries"] = retries
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    command = [sys.executable, "-m", "lossbench.cli", "compare", str(path), "--output", str(tmp_path / "out"),
               "--no-progress"]  # fmt: skip
    found = subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    if check:
        assert found.returncode == 0, found.stderr[-3000:]
    return found


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_resumes(local, tmp_path):
    once = tmp_path / "killed-once"
    compare_command(tmp_path, {"LOSSBENCH_TEST_KILL_AT": "step:6", "LOSSBENCH_TEST_KILL_ONCE": str(once)})
    assert once.exists()  # a worker was killed at step 6 (after the checkpoint of step 4), once
    mine = runs(tmp_path / "out")
    resumed = {key for key, (record, _) in mine.items() if record.resumed}
    assert resumed and len({seed for _, seed in resumed}) == 1  # one unit resumed from its checkpoint
    assert_same_runs(mine, local[0])


@pytest.mark.slow
def test_a_stopped_or_killed_driver_resumes(local, tmp_path):
    stopped = compare_command(tmp_path, {"LOSSBENCH_TEST_KILL_AT": "unit:1", "LOSSBENCH_TEST_KILL_SIGNAL": "TERM"},
                              check=False)  # fmt: skip
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "stopped by SIGTERM" in stopped.stderr and "rerun the same command to continue" in stopped.stderr
    first = {k: r.worker["finished_at"] for k, (r, _) in runs(tmp_path / "out").items() if r.status == "finished"}
    assert first  # the unit that ended before the stop
    killed = compare_command(tmp_path, {"LOSSBENCH_TEST_KILL_AT": "unit:1"}, check=False)
    assert killed.returncode == -signal.SIGKILL
    compare_command(tmp_path)
    mine = runs(tmp_path / "out")
    assert all(r.status == "finished" for r, _ in mine.values()) and len(mine) == 6
    assert all(mine[k][0].worker["finished_at"] == t for k, t in first.items())  # skipped, not trained again
    assert_same_runs(mine, local[0])
    assert "## Outcome" in (tmp_path / "out" / "report.md").read_text()


def staged_recipe():
    """Teachers, then tuning trials, then selection, then the final runs: every stage's units on Ray."""
    recipe = ray_recipe(losses=["ce", {"name": "kd", "args": {"temperature": 2.0, "alpha": 0.5}}], seeds=[0])
    recipe["teacher"] = {"head": "ce", "backbone": {"d_model": 8, "nhead": 2, "num_layers": 1}, "max_steps": 6}
    recipe["tune"] = {"trials": 2, "seeds": [100, 101], "space": {"optimizer.lr": {"low": 1e-3, "high": 3e-2}}}
    return recipe


@pytest.mark.slow
def test_every_stage_runs_on_ray_with_the_local_numbers(ray_cluster, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = staged_recipe()
        del local["launcher"]
        lossbench.compare(local, output=tmp_path / "local", progress=False)
    finally:
        torch.set_num_threads(threads)
    lossbench.compare(staged_recipe(), output=tmp_path / "ray", progress=False)
    for part in ("teacher", "tuning", "."):
        mine, theirs = runs(tmp_path / "ray" / part), runs(tmp_path / "local" / part)
        assert_same_runs(mine, theirs)
        assert {r.worker["launcher"] for r, _ in mine.values()} == {"ray"}, part
    assert len(runs(tmp_path / "ray" / "tuning")) == 2 * 2 * 2  # 2 losses x 2 trials x 2 tuning seeds
    chosen = (tmp_path / "ray" / "tuning.json").read_text()
    assert chosen == (tmp_path / "local" / "tuning.json").read_text()


@pytest.mark.slow
def test_in_memory_data_travels_to_the_workers(ray_cluster, tmp_path, capsys):
    import datasets
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.rename(columns={"target": "label"})
    recipe = ray_recipe(seeds=[0])
    recipe["data"] = {"path": datasets.Dataset.from_pandas(frame), "feature_columns": list(frame.columns[:-1])}
    result = lossbench.compare(recipe, output=tmp_path / "out", progress=True)
    assert result.failed == [] and {r.status for r, _ in runs(tmp_path / "out").values()} == {"finished"}
    assert "Source: an in-memory dataset" in result.report_path.read_text()
    lines = capsys.readouterr().out  # one line per run as its unit ends, counted (not a terminal: no bar)
    assert "[1/3] ce seed 0" in lines and "[3/3] sce seed 0" in lines


@pytest.mark.slow
def test_a_unit_that_fails_for_good_marks_its_runs_failed_and_the_others_finish(tmp_path):
    """No retries, and one worker dies at its 6th step: that seed's unit fails for good, the others finish."""
    once = tmp_path / "killed-once"
    env = {"LOSSBENCH_TEST_KILL_AT": "step:6", "LOSSBENCH_TEST_KILL_ONCE": str(once)}
    found = compare_command(tmp_path, env, check=False, retries=0)
    assert found.returncode == 1, found.stderr[-2000:]
    mine = runs(tmp_path / "out")
    failed = {key for key, (record, _) in mine.items() if record.status == "failed"}
    assert len({seed for _, seed in failed}) == 1 and len(failed) == 3  # one seed's unit: its 3 losses
    assert all("the Ray task of seed" in mine[key][0].error for key in failed)
    assert all(record.status == "finished" for key, (record, _) in mine.items() if key not in failed)
    assert "run(s) failed" in found.stderr and "rerunning the command retries them" in found.stderr


def scale_doc_commands() -> list[list[str]]:
    """Every ``lossbench compare`` command of docs/scale.md's shell blocks (after ``--`` in ``ray job submit``)."""
    import re
    import shlex

    text = (ROOT / "docs" / "scale.md").read_text()
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "--" in words:
                words = words[words.index("--") + 1 :]
            if words[:2] == ["lossbench", "compare"]:
                commands.append(words[2:])
    return commands


def test_the_scale_docs_commands_and_settings_are_valid(capsys):
    """Each command of docs/scale.md, resolved as it would run (--print-config: nothing is started), asks for Ray;
    its YAML block is a valid part of a recipe."""
    import re

    from lossbench.cli import main
    from lossbench.compare.recipe.recipe import bundled_recipes

    commands = scale_doc_commands()
    assert len(commands) >= 5
    for words in commands:
        recipe = words[0] if words[0] in bundled_recipes() else "digits"  # my_recipe.yaml: a recipe of yours
        assert main(["compare", recipe, *words[1:], "--print-config"]) == 0
        resolved = yaml.safe_load(capsys.readouterr().out)
        assert resolved["launcher"]["name"] == "ray", words
    block = re.search(r"^```yaml\n(.*?)^```", (ROOT / "docs" / "scale.md").read_text(), re.S | re.M).group(1)
    given = yaml.safe_load(block)
    recipe = load_recipe("digits", overrides={f"{section}.{k}": v for section, values in given.items()
                                              for k, v in values.items()})  # fmt: skip
    assert recipe.launcher == {"name": "ray", "address": None, "resources": {"cpu": 2, "gpu": 0.25}, "retries": 2}

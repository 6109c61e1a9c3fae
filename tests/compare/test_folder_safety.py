"""Issue 19, item 11 (B1, B2, B8, B10 and weak findings): a results folder is written and deleted only inside
itself. Before: a symlinked ``arrays/`` made a no-op rerun delete folders outside the results folder, a symlinked
run folder lost its ``checkpoints/`` outside, a symlinked ``plots/`` made ``lossbench report`` overwrite files
outside; a comparison could be made inside another's folder (and was deleted by rerunning the outer one), or in
its ``teacher/`` beside it; a 300-character label was a traceback after comparison.json was written (labels
``çe`` and ``ée`` shared one reliability diagram, before the diagrams became one grid); ``name: ../../x`` wrote
outside ``runs/``; every written file was mode 0600 whatever the umask; and a signal while ``--wait`` waited was a
traceback (SIGINT) or a silent death (SIGTERM)."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import threading

import pytest
import yaml

from lossbench.cli import main
from lossbench.compare import Comparison, load_recipe
from lossbench.compare.recipe.checks import MAX_LABEL_BYTES, RecipeError
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.lock import FolderLock
from lossbench.compare.store.records import atomic_write_bytes
from tests.compare.conftest import tiny_recipe
from tests.compare.fake import make_folder

RECIPE = tiny_recipe(losses=["ce", "focal"], seeds=[0], executor="fused")


def _recipe_file(tmp_path, recipe=RECIPE):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished fused comparison (its array's folder deleted at the end, as always)."""
    root = tmp_path_factory.mktemp("safety")
    Comparison(load_recipe(RECIPE), root / "reference", progress=False).run()
    return root / "reference"


def _rerun(tmp_path, out, capsys):
    code = main(["compare", str(_recipe_file(tmp_path)), "--output", str(out), "--no-progress"])
    return code, capsys.readouterr().err


def _outside(tmp_path):
    """A folder outside the results folder holding what a symlink would expose: seed_0/ with a file."""
    outside = tmp_path / "elsewhere"
    (outside / "seed_0").mkdir(parents=True)
    (outside / "seed_0" / "keep.txt").write_text("mine")
    return outside


def test_a_symlinked_arrays_folder_is_refused_and_nothing_outside_is_deleted(finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    outside = _outside(tmp_path)
    (out / "arrays").symlink_to(outside)
    code, err = _rerun(tmp_path, out, capsys)
    assert (outside / "seed_0" / "keep.txt").read_text() == "mine"  # before: deleted by the no-op rerun
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"refusing to delete {str(out / 'arrays' / 'seed_0')!r}: it resolves to" in err
    assert "outside the results folder" in err


def test_a_symlinked_run_folder_keeps_its_files_outside(finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    outside = _outside(tmp_path)
    folder = run_dir(out, "focal", 0)
    shutil.move(folder, outside / "focal_seed_0")
    (outside / "focal_seed_0" / "checkpoints").mkdir()
    (outside / "focal_seed_0" / "checkpoints" / "keep.txt").write_text("mine")
    folder.symlink_to(outside / "focal_seed_0")
    code, err = _rerun(tmp_path, out, capsys)
    assert (outside / "focal_seed_0" / "checkpoints" / "keep.txt").read_text() == "mine"
    assert code == 2 and "refusing to delete" in err and "checkpoints" in err and "Traceback" not in err, err


def test_report_refuses_a_symlinked_plots_folder(tmp_path, capsys):
    out = make_folder(tmp_path / "out")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "target_metric.png").write_bytes(b"mine")
    (out / "plots").symlink_to(outside)
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert (outside / "target_metric.png").read_bytes() == b"mine"  # before: overwritten
    assert len(err.strip().splitlines()) == 1 and "refusing to write" in err and "outside the results folder" in err


def test_report_refuses_a_plots_link_to_a_folder_not_yet_made(tmp_path, capsys):
    out = make_folder(tmp_path / "out")
    (out / "plots").symlink_to(tmp_path / "elsewhere")  # dangling: mkdir would make it outside
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists() and "refusing to write" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "inner", [("arrays", "seed_0"), ("runs", "ce", "seed_1", "checkpoints"), ("teacher",), ("tuning",)]
)
def test_an_output_inside_another_comparison_is_refused(tmp_path, inner):
    """B2, and B10: ``DIR/teacher`` and ``DIR/tuning`` are the comparison's own, never another's output."""
    outer = make_folder(tmp_path / "outer")
    output = outer.joinpath(*inner)
    with pytest.raises(RecipeError, match=rf"is inside the comparison folder {str(outer)!r} \(it holds comparison"):
        Comparison(load_recipe(RECIPE), output, progress=False).prepare()
    assert not output.exists() or not any(output.iterdir())


def test_a_comparison_holding_another_inside_is_refused(tmp_path):
    outer = make_folder(tmp_path / "outer")
    make_folder(outer / "arrays" / "seed_0")  # made there before this check existed
    with pytest.raises(RecipeError, match=r"holds another comparison folder, .*arrays/seed_0"):
        Comparison(load_recipe(RECIPE), outer, progress=False).prepare()


def test_a_teacher_inside_its_comparison_still_runs(tmp_path):
    """The check leaves the comparison's own sub-comparison alone (here: a teacher trained in DIR/teacher)."""
    recipe = {
        **tiny_recipe(losses=["ce", "kd"], seeds=[0], executor="fused"),
        "teacher": {"head": "ce", "backbone": {"d_model": 8, "nhead": 2, "num_layers": 1}, "max_steps": 4},
    }
    out = tmp_path / "out"
    Comparison(load_recipe(recipe), out, progress=False).run()
    Comparison(load_recipe(recipe), out, progress=False).run()  # a rerun finds its own teacher/, not another's
    assert (out / "teacher" / "comparison.json").is_file() and (out / "report.md").is_file()


def test_a_label_too_long_for_a_file_name_is_a_recipe_error(tmp_path, capsys):
    label = "a" * 300
    with pytest.raises(
        RecipeError,
        match=rf"`losses\[1\].label` must be at most {MAX_LABEL_BYTES} bytes in UTF-8, "
        "got 300",
    ):
        load_recipe(tiny_recipe(losses=["ce", {"name": "focal", "label": label}]))
    wide = "é" * (MAX_LABEL_BYTES // 2 + 1)  # few characters, too many bytes
    with pytest.raises(RecipeError, match=f"got {2 * len(wide)}"):
        load_recipe(tiny_recipe(losses=["ce", {"name": "focal", "label": wide}]))
    out = tmp_path / "out"
    recipe = tiny_recipe(losses=["ce", {"name": "focal", "label": label}])
    assert main(["compare", str(_recipe_file(tmp_path, recipe)), "--output", str(out), "--no-progress"]) == 2
    assert not out.exists()  # refused before anything is written


def test_a_recipe_name_that_is_not_a_folder_name_needs_an_output(tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    path = _recipe_file(tmp_path, {**tiny_recipe(losses=["ce"], seeds=[0]), "name": "../../x"})
    assert main(["compare", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "`name` must be one folder name when --output is not given" in err and "'../../x'" in err, err
    assert not (tmp_path / "a" / "x").exists() and not (cwd / "runs").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "f.json", b"{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o666 & ~umask  # before: always 0600


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_waiting_for_the_folder_is_one_line(tmp_path, signum, code):
    from tests.compare.test_preemption import ROOT, _env

    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "lossbench.cli",
        "compare",
        str(_recipe_file(tmp_path)),
        "--output",
        str(out),
        "--wait",
    ]
    with FolderLock(out):
        proc = subprocess.Popen(
            command,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=_env(tmp_path / "cache"),
            cwd=ROOT,
        )
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
        reader.start()
        seen = []
        try:  # it says when it starts waiting; without that line the signal still goes, after a bound
            while "waiting for it to finish" not in "".join(seen):
                seen.append(lines.get(timeout=240))
        except queue.Empty:
            pass
        proc.send_signal(signum)
        proc.wait(timeout=240)
    reader.join(timeout=60)  # the rest of stderr, up to its end
    err = "".join(seen)
    while not lines.empty():
        err += lines.get()
    assert proc.returncode == code, err[-3000:]  # before: 1 with a KeyboardInterrupt traceback, or -15
    name = signal.Signals(signum).name
    assert (
        "Traceback" not in err
        and (
            f"lossbench compare: stopped by {name} at start-up, waiting for the other "
            f"lossbench compare (pid {os.getpid()}, since"
        )
        in err
    ), err
    assert not (out / "comparison.json").exists()


def test_the_comparisons_own_parts_are_not_another_comparison(tmp_path):
    """teacher/, tuning/ and a tuned recipe's tuning/teacher/ are the comparison's own sub-comparisons."""
    from lossbench.compare.execution.engine import OWN_PARTS
    from lossbench.compare.store.storage import nesting_problem

    outer = make_folder(tmp_path / "outer")
    for part in (("teacher",), ("tuning",), ("tuning", "teacher")):
        make_folder(outer.joinpath(*part))
    assert nesting_problem(outer, parts=OWN_PARTS) is None
    make_folder(outer / "tuning" / "runs" / "ce.t0" / "seed_0")  # not one of its parts
    assert "holds another comparison folder" in nesting_problem(outer, parts=OWN_PARTS)


@pytest.mark.parametrize("inner", [("teacher", "teacher"), ("tuning", "tuning"), ("teacher", "tuning")])
def test_a_comparison_under_a_part_of_the_same_name_is_another(tmp_path, inner):
    """Only the parts themselves are the comparison's own: before, any path made of the names teacher and tuning
    passed (DIR/teacher/teacher, DIR/tuning/tuning), so a comparison made there was lost by rerunning DIR."""
    outer = make_folder(tmp_path / "outer")
    make_folder(outer.joinpath(*inner))
    with pytest.raises(RecipeError, match=rf"holds another comparison folder, .*{'/'.join(inner)}'"):
        Comparison(load_recipe(RECIPE), outer, progress=False).prepare()


def test_a_folder_that_is_no_comparison_is_refused_without_walking_it(tmp_path, monkeypatch):
    """``--output ~`` is refused as not empty at once: before, the search for comparisons nested in it walked the
    whole tree first (only a comparison folder, rerun, can hold its own parts or another comparison)."""
    import pathlib

    foreign = tmp_path / "home"
    make_folder(foreign / "projects" / "old")  # deep inside: still refused, as a folder that is not empty
    (foreign / "notes.txt").write_text("mine")

    def walked(self, pattern):
        raise AssertionError(f"walked {self} for {pattern}")

    monkeypatch.setattr(pathlib.Path, "rglob", walked)
    with pytest.raises(RecipeError, match="is not empty and holds no lossbench comparison"):
        Comparison(load_recipe(RECIPE), foreign, progress=False).prepare()

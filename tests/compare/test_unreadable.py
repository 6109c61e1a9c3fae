"""Issue 9, finding 3: an unreadable last.ckpt is moved aside and its run starts over (before: the run failed on
every rerun, forever, with `resumed` rising and exit 0)."""

from __future__ import annotations

import io
import shutil

import pytest
import torch

from lossbench.compare.execution.engine import Comparison
from lossbench.compare.recipe.recipe import load_recipe
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import RunRecord, read_csv
from tests.compare.conftest import tiny_recipe


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("unreadable") / "reference"
    recipe = load_recipe(tiny_recipe(losses=["ce"], seeds=[0]))
    Comparison(recipe, out, progress=False).run()
    return recipe, out


BAD = {
    "truncated": lambda p, good: p.write_bytes(good[: len(good) // 3]),
    "random": lambda p, good: p.write_bytes(bytes(range(256)) * 40),
    "empty": lambda p, good: p.write_bytes(b""),
    "a folder": lambda p, good: p.mkdir(),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_an_unreadable_checkpoint_is_moved_aside_and_the_run_starts_over(finished, tmp_path, kind):
    recipe, reference = finished
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    folder = run_dir(out, "ce", 0)
    record = RunRecord.load(folder / "record.json")
    record.status = "running"  # as if interrupted
    record.save(folder / "record.json")
    (folder / "checkpoints").mkdir()
    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "global_step": 4}, buffer)
    BAD[kind](folder / "checkpoints" / "last.ckpt", buffer.getvalue())

    report = Comparison(recipe, out, progress=False).run()
    again = RunRecord.load(folder / "record.json")
    assert again.status == "finished" and again.resumed == 0, again.error
    assert len(again.restarts) == 1 and "unreadable" in again.restarts[0] and "run started over" in again.restarts[0]
    kept = list(folder.glob("last.ckpt.unreadable-*"))
    assert len(kept) == 1 and (kept[0].is_dir() if kind == "a folder" else kept[0].is_file())
    # trained from its initial weights: the same results as the uninterrupted run
    assert (
        read_csv(folder / "metrics.csv")[-1]["val/accuracy"]
        == read_csv(run_dir(reference, "ce", 0) / "metrics.csv")[-1]["val/accuracy"]
    )
    assert again.test == RunRecord.load(run_dir(reference, "ce", 0) / "record.json").test
    assert "Runs that started over from their initial weights: ce seed 0: checkpoint last.ckpt unreadable" in (
        report.read_text()
    )


# Issue 9, finding 11: an unreadable or ill-typed record.json is moved aside and its run trained again, which
# rebuilds it (before: a traceback from `lossbench compare` on every rerun); an unreadable comparison.json is one
# error naming the file (before: JSONDecodeError/AttributeError tracebacks).
BAD_RECORDS = {
    "a list": b"[]",
    "an empty object": b"{}",
    "final null": None,
    "a string step count": None,
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("kind", sorted(BAD_RECORDS))
def test_an_unreadable_record_is_moved_aside_and_its_run_rebuilt(finished, tmp_path, kind):
    import json

    recipe, reference = finished
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    path = run_dir(out, "ce", 0) / "record.json"
    values = json.loads(path.read_text())
    if kind == "final null":
        values["final"] = None
    elif kind == "a string step count":
        values["steps"] = "abc"
    path.write_bytes(BAD_RECORDS[kind] if BAD_RECORDS[kind] is not None else json.dumps(values).encode())

    Comparison(recipe, out, progress=False).run()
    again = RunRecord.load(path)
    assert (
        again.status == "finished"
        and len(again.restarts) == 1
        and "record record.json unreadable" in (again.restarts[0])
    )
    assert len(list(path.parent.glob("record.json.unreadable-*"))) == 1
    assert again.test == RunRecord.load(run_dir(reference, "ce", 0) / "record.json").test  # rebuilt, same numbers


@pytest.mark.parametrize("content", [b"[1, 2]", b"{not json", b'{"data": [1]}'])
def test_an_unreadable_comparison_json_is_one_error_naming_it(finished, tmp_path, capsys, content):
    import yaml

    from lossbench.cli import main

    recipe, reference = finished
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (out / "comparison.json").write_bytes(content)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(losses=["ce"], seeds=[0]), sort_keys=False))
    assert main(["compare", str(path), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{str(out / 'comparison.json')!r} is unreadable" in err, err
    assert (out / "comparison.json").read_bytes() == content  # left for the user to restore


# Issue 19, item 11 (weak): a corrupt metrics.csv of a finished run crashed every rerun (the report's CorruptFileError)
# until moved by hand; it is moved aside and its run trained again, as for an unreadable record.json.
BAD_METRICS = {
    "binary": lambda p: p.write_bytes(bytes(range(256))),
    "short row": lambda p: p.write_text("step,epoch,val/accuracy\n0,0\n"),
    "a word as a step": lambda p: p.write_text("step,epoch\nabc,0\n"),
    "a folder": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("kind", sorted(BAD_METRICS))
def test_a_corrupt_metrics_csv_of_a_finished_run_is_moved_aside_and_its_run_rebuilt(finished, tmp_path, kind):
    recipe, reference = finished
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    folder = run_dir(out, "ce", 0)
    BAD_METRICS[kind](folder / "metrics.csv")

    report = Comparison(recipe, out, progress=False).run()
    again = RunRecord.load(folder / "record.json")
    assert again.status == "finished" and len(again.restarts) == 1, again.restarts
    assert again.restarts[0].startswith("metrics.csv unreadable (") and "run started over" in again.restarts[0]
    assert len(list(folder.glob("metrics.csv.unreadable-*"))) == 1  # kept for inspection
    untimed = [
        [{k: v for k, v in row.items() if k != "wall_time"} for row in read_csv(root / "metrics.csv")]
        for root in (folder, run_dir(reference, "ce", 0))
    ]
    assert untimed[0] == untimed[1]
    assert again.test == RunRecord.load(run_dir(reference, "ce", 0) / "record.json").test  # rebuilt, same numbers
    assert "Runs that started over from their initial weights: ce seed 0: metrics.csv unreadable" in report.read_text()

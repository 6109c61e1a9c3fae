"""Issue 9, findings 11, 12 and 7b: corrupt files give one clear error naming the file; truncated metrics, skipped
steps and non-finite validation losses are reported (before: tracebacks, "failed after 0 steps", silent ranking)."""

from __future__ import annotations

import json
import math
import pickle
import shutil

import pytest

from lossbench.cli import main
from lossbench.compare.execution.engine import Comparison
from lossbench.compare.recipe.recipe import load_recipe
from lossbench.compare.report.render import render_report
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import RunRecord, read_csv, write_csv
from tests.compare.conftest import tiny_recipe
from tests.compare.fake import make_folder

RUN_FIX = "rerun `lossbench compare` with the same --output to rebuild that run"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A real finished comparison: ce and focal on seed 0 (8 steps, evaluations at steps 0, 4 and 8)."""
    out = tmp_path_factory.mktemp("corrupt") / "reference"
    Comparison(load_recipe(tiny_recipe(losses=["ce", "focal"], seeds=[0])), out, progress=False).run()
    return out


@pytest.fixture
def folder(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    return out


def _record_json(folder, loss="ce"):
    return run_dir(folder, loss, 0) / "record.json"


def _metrics_csv(folder, loss="ce"):
    return run_dir(folder, loss, 0) / "metrics.csv"


def _edit_record(**changes):
    def edit(folder):
        path = _record_json(folder)
        values = json.loads(path.read_text())
        for key, value in changes.items():
            if value is _DELETE:
                del values[key]
            else:
                values[key] = value
        path.write_text(json.dumps(values))
        return path

    return edit


def _write(which, data: bytes):
    def edit(folder):
        path = which(folder)
        path.write_bytes(data)
        return path

    return edit


def _edit_comparison(**changes):
    def edit(folder):
        path = folder / "comparison.json"
        values = json.loads(path.read_text())
        values.update(changes)
        path.write_text(json.dumps(values))
        return path

    return edit


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])
    return path


def _extra_field(folder):
    path = _metrics_csv(folder)
    path.write_text(path.read_text() + "12,1,0.1,1.0,1.0,0.01,0.5,0.1,0.5,0.9,0.9,surplus\n")
    return path


def _text_step(folder):
    path = _metrics_csv(folder)
    lines = path.read_text().splitlines()
    lines[2] = "abc" + lines[2][1:]
    path.write_text("\n".join(lines) + "\n")
    return path


_DELETE = object()
RANDOM = bytes(range(256)) * 40

RUN_FILES = {
    "record: a list": _write(_record_json, b"[]"),
    "record: an empty object": _write(_record_json, b"{}"),
    "record: random bytes": _write(_record_json, RANDOM),
    "record: not JSON": _write(_record_json, b'{"loss": "ce", '),
    "record: final null": _edit_record(final=None),
    "record: steps a string": _edit_record(steps="abc"),
    "record: a metric a string": _edit_record(final={"val/accuracy": "x"}),
    "record: test a list": _edit_record(test=[1, 2]),
    "record: seed a string": _edit_record(seed="0"),
    "record: unknown status": _edit_record(status="done"),
    "record: no head": _edit_record(head=_DELETE),
    "record: restarts a string": _edit_record(restarts="x"),
    "record: auc a string": _edit_record(auc="high"),
    "record: fingerprints a list": _edit_record(fingerprints=[]),
    "metrics: random bytes": _write(_metrics_csv, RANDOM),
    "predictions: random bytes": _write(lambda folder: run_dir(folder, "focal", 0) / "test_predictions.pt", RANDOM),
    "predictions: truncated": lambda folder: _truncate(run_dir(folder, "ce", 0) / "test_predictions.pt"),
    "metrics: non-UTF-8": _write(_metrics_csv, "step,epoch\n0,0\n".encode("utf-16")),
    "metrics: NUL bytes": _write(_metrics_csv, b"step,epoch\n0\x00,0\n"),
    "metrics: empty": _write(_metrics_csv, b""),
    "metrics: no step column": _write(_metrics_csv, b"epoch,loss\n0,1.0\n"),
    "metrics: a surplus field": _extra_field,
    "metrics: a step not a number": _text_step,
}
COMPARISON_FILES = {
    "comparison: a list": _write(lambda folder: folder / "comparison.json", b"[1, 2]"),
    "comparison: random bytes": _write(lambda folder: folder / "comparison.json", RANDOM),
    "comparison: seeds a string": _edit_comparison(seeds="abc"),
    "comparison: seeds of strings": _edit_comparison(seeds=["a"]),
    "comparison: losses a number": _edit_comparison(losses=5),
    "comparison: budget a string": _edit_comparison(budget="x"),
    "comparison: versions a list": _edit_comparison(versions=[1]),
    "comparison: threshold a string": _edit_comparison(
        target={"metric": "val/accuracy", "mode": "max", "threshold": "x"}
    ),
    "comparison: recipe a string": _edit_comparison(recipe="x"),
}


def _report_fails_with_one_line(folder, path, capsys):
    before = (folder / "report.md").read_bytes()
    capsys.readouterr()
    assert main(["report", str(folder)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lossbench report: ") and str(path) in lines[0], lines[0]
    assert "Traceback" not in captured.err
    assert (folder / "report.md").read_bytes() == before  # nothing re-rendered halfway
    return lines[0]


@pytest.mark.parametrize("kind", sorted(RUN_FILES))
def test_a_corrupt_run_file_gives_one_line_naming_it(folder, capsys, kind):
    path = RUN_FILES[kind](folder)
    line = _report_fails_with_one_line(folder, path, capsys)
    assert "expected" in line and "found" in line and RUN_FIX in line and "delete the run folder" in line


@pytest.mark.parametrize("kind", sorted(COMPARISON_FILES))
def test_a_corrupt_comparison_json_gives_one_line_naming_it(folder, capsys, kind):
    path = COMPARISON_FILES[kind](folder)
    line = _report_fails_with_one_line(folder, path, capsys)
    assert "expected" in line and "found" in line and "start a new results folder" in line


def test_recompute_lists_an_unreadable_predictions_file_as_a_problem(folder, capsys):
    path = _truncate(run_dir(folder, "ce", 0) / "test_predictions.pt")
    capsys.readouterr()
    assert main(["report", str(folder), "--recompute"]) == 1
    out = capsys.readouterr().out
    assert f"DIFFERS: ce seed 0: {path}: unreadable: expected a torch file of named tensors" in out
    assert "recomputed 2 finished run(s)" in out and "Traceback" not in out


def test_corrupt_file_error_api(folder):
    from lossbench.compare.store.records import CorruptFileError

    path = _record_json(folder)
    path.write_text("[]")
    with pytest.raises(CorruptFileError) as info:
        RunRecord.load(path)
    error = info.value
    assert isinstance(error, ValueError) and error.path == path
    assert error.expected == "a JSON object (a run record)" and error.found == "the JSON array []"
    assert error.problem == "corrupt" and RUN_FIX in error.fix
    assert str(error) == f"{path}: corrupt: expected {error.expected}, found {error.found}; {error.fix}"
    assert pickle.loads(pickle.dumps(error)).args == error.args
    _metrics_csv(folder).write_bytes(RANDOM)
    with pytest.raises(CorruptFileError, match="metrics.csv: not valid CSV: .*not UTF-8") as info:
        read_csv(_metrics_csv(folder))
    assert info.value.problem == "not valid CSV" and "record.json aside" in info.value.fix
    path.write_text("{not json")
    with pytest.raises(CorruptFileError, match="record.json: not valid JSON: expected JSON"):
        RunRecord.load(path)


def test_a_valid_record_still_loads_and_none_is_accepted_where_allowed(folder):
    path = _record_json(folder)
    record = RunRecord.load(path)
    assert record.status == "finished" and record.steps == 8
    values = json.loads(path.read_text())
    values.update(auc=None, seconds_per_step=None, final={"val/accuracy": None, "val/loss": math.nan}, error=None)
    del values["head_args"]  # older records: optional
    path.write_text(json.dumps(values))
    again = RunRecord.load(path)
    assert again.auc is None and again.head_args == {} and math.isnan(again.final["val/loss"])


def _irregular_section(text):
    return text.split("## Unfinished or irregular runs")[1].split("\n## ")[0]


def test_a_truncated_metrics_csv_is_flagged(folder):
    path = _metrics_csv(folder)
    rows = read_csv(path)
    write_csv(path, rows[:2])  # ends at step 4; the record says 8
    write_csv(_metrics_csv(folder, "focal"), rows[:0], list(rows[0]))  # the header alone
    text = render_report(folder).read_text()
    section = _irregular_section(text)
    assert (
        "- ce, seed 0: runs/ce/seed_0/metrics.csv ends at step 4 but the run finished at step 8 (truncated?)" in section
    )
    assert (
        "- focal, seed 0: runs/focal/seed_0/metrics.csv has no evaluation rows but the run finished at step 8 "
        "(truncated?)"
    ) in section
    assert render_report(folder).read_text() == text


def test_a_missing_metrics_csv_of_a_finished_run_is_flagged(folder):
    _metrics_csv(folder).unlink()
    section = _irregular_section(render_report(folder).read_text())
    assert "- ce, seed 0: runs/ce/seed_0/metrics.csv is missing although the run finished at step 8" in section


def test_failed_and_interrupted_runs_count_their_steps_from_metrics_csv(folder):
    for loss, status in (("ce", "failed"), ("focal", "running")):
        record = RunRecord.load(_record_json(folder, loss))
        record.status, record.steps = status, 0
        record.error = "Traceback (most recent call last):\nRuntimeError: boom" if status == "failed" else None
        record.save(_record_json(folder, loss))
    section = _irregular_section(render_report(folder).read_text())
    assert "- ce, seed 0: failed after 8 steps: RuntimeError: boom" in section
    assert "- focal, seed 0: running (8 steps done, resumed 0 times)" in section


def test_skipped_steps_are_listed_and_flag_the_loss_that_ranks_first(tmp_path):
    root = make_folder(tmp_path, changes={("focal", 1): {"skipped_steps": 3}})  # focal ranks first
    text = render_report(root).read_text()
    section = _irregular_section(text)
    assert (
        "- focal, seed 1: skipped 3 of 120 optimizer steps on a non-finite loss or gradient (nan_policy: skip)"
        in section
    )
    assert "kept in the statistics" in section
    ranking = text.split("## Ranking")[1].split("\n## ")[0]
    assert "| 1 | focal (irregular: 1/3 seeds) |" in ranking
    per_loss = text.split("## Results per loss")[1].split("\n## ")[0].splitlines()
    assert per_loss[2].endswith("| still improving | irregular runs |")
    assert [line for line in per_loss if line.startswith("| focal | 3 |")][0].endswith("| 1/3 seeds |")
    assert [line for line in per_loss if line.startswith("| ce (baseline) | 3 |")][0].endswith("| — |")
    outcome = text.split("## Outcome")[1].split("\n## ")[0]
    assert (
        "focal ranks first (0.92, next ce with 0.85); the gap is within noise" in outcome
        and "That first place is flagged: 1 of focal's 3 seeds had an irregular run (skipped optimizer steps), "
        "so read it with care."
        in outcome
    )
    assert "Irregular runs, kept in the statistics and flagged" in outcome
    assert render_report(root).read_bytes() == text.encode()


def test_a_non_finite_validation_loss_is_listed_and_flagged(folder):
    path = _metrics_csv(folder, "focal")
    rows = read_csv(path)
    rows[1]["val/loss"], rows[2]["val/loss"] = math.nan, math.inf
    write_csv(path, rows)
    record = RunRecord.load(_record_json(folder, "focal"))
    record.final["val/loss"] = math.inf
    record.save(_record_json(folder, "focal"))
    text = render_report(folder).read_text()
    section = _irregular_section(text)
    assert "- focal, seed 0: val/loss was not finite at 2 of 3 evaluations" in section
    ranking = text.split("## Ranking")[1].split("\n## ")[0]
    assert "focal (irregular: 1/1 seeds)" in ranking
    outcome = text.split("## Outcome")[1].split("\n## ")[0]
    assert "focal (1/1 seeds: non-finite validation loss)" in outcome
    assert render_report(folder).read_bytes() == text.encode()


def test_a_non_finite_final_validation_loss_in_the_record_alone_is_flagged(tmp_path):
    root = make_folder(tmp_path, changes={("mse", 0): {"final": {"val/accuracy": 0.5, "val/loss": math.nan}}})
    section = _irregular_section(render_report(root).read_text())
    assert "- mse, seed 0: val/loss was not finite at the last evaluation (record.json)" in section

"""Verdicts that survive review: test split once per run, data identity, re-checkable runs, environment."""

import shutil

import datasets
import numpy as np
import pytest
import torch

from lossbench.cli import main
from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.compare.analysis.summary import summarise_rows
from lossbench.compare.execution.evaluate import metrics_from_predictions
from lossbench.compare.execution.recompute import recompute
from lossbench.compare.store.layout import PREDICTIONS_FILE, WEIGHTS_FILE, run_dir
from lossbench.compare.store.records import RunRecord, load_records, read_csv, read_json
from lossbench.compare.store.tensors import load_tensors
from tests.compare.conftest import tiny_recipe


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("verdicts") / "out"
    Comparison(load_recipe(tiny_recipe(losses=["ce", "sce"])), out, progress=False).run()
    return out


def test_each_run_is_scored_once_on_test_from_the_files_it_keeps(finished):
    for record, _ in load_records(finished):
        folder = run_dir(finished, record.loss, record.seed)
        weights = torch.load(folder / WEIGHTS_FILE, weights_only=True)
        assert "head.proj.weight" in weights and any(k.startswith("backbone.") for k in weights)
        predictions = load_tensors(folder / PREDICTIONS_FILE)
        assert predictions["proba"].shape == (predictions["target"].shape[0], 3)  # wine: 3 classes
        assert torch.equal(predictions["label"], predictions["proba"].argmax(-1))
        # the record's test metrics ARE the metrics of the saved predictions, bit for bit
        assert record.test == metrics_from_predictions("multiclass", 3, predictions)
        accuracy = (predictions["label"] == predictions["target"]).double().mean().item()
        assert record.test["test/accuracy"] == pytest.approx(accuracy, abs=1e-7)
        assert record.selected == {"rule": "final", "step": 8}
        env = record.environment
        assert env["torch_threads"] == torch.get_num_threads() and env["accelerator"] == "cpu"
        assert env["precision"] == "32-true" and env["deterministic"] is True


def test_results_and_report_lead_with_test_metrics_and_list_the_splits(finished):
    rows = read_csv(finished / "results.csv")
    assert list(rows[0])[:5] == ["loss", "seed", "status", "fairness", "test/accuracy"]
    text = (finished / "report.md").read_text()
    assert "test/accuracy, evaluated once per run on the test split with the final weights" in text
    data = text.split("## Data")[1].split("##")[0]
    meta = read_json(finished / "comparison.json")["data"]
    for split in ("train", "validation", "test"):
        info = meta[split]
        assert f"| {split} | {info['source']} | {info['rows']} |" in data
        assert info["fingerprint"][:12] in data
    assert sum(meta["test"]["class_counts"].values()) == meta["test"]["rows"]
    assert "p (Holm)" in text and "low power" in text
    assert "These verdicts hold under a budget of 8 optimizer steps" in text
    assert "not tuned per loss" in text


def test_recompute_equals_the_records_and_catches_a_tampered_number(finished, tmp_path, capsys):
    result = recompute(finished)
    assert result.ok, result.problems
    assert len(result.checked) == 4 and result.max_prediction_diff <= 1e-6
    assert main(["report", str(finished), "--recompute"]) == 0
    assert "all equal to the records" in capsys.readouterr().out
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    path = run_dir(copy, "sce", 1) / "record.json"
    record = RunRecord.load(path)
    record.test["test/accuracy"] += 1 / 1000
    record.save(path)
    bad = recompute(copy)
    assert not bad.ok and any("sce seed 1: test/accuracy" in p for p in bad.problems)
    assert main(["report", str(copy), "--recompute"]) == 1


def test_best_selection_reports_the_best_validation_weights(tmp_path):
    out = tmp_path / "best"
    recipe = tiny_recipe(losses=["ce"], seeds=[0], select="best", trainer={"max_steps": 12, "eval_every_n_steps": 2})
    Comparison(load_recipe(recipe), out, progress=False).run()
    ((record, rows),) = load_records(out)
    trained = [r for r in rows if r["step"] > 0]
    best = max(trained, key=lambda r: (r["val/accuracy"], -r["step"]))  # the earliest of equal values
    assert record.selected["rule"] == "best" and record.selected["step"] == best["step"]
    assert record.selected["value"] == pytest.approx(best["val/accuracy"])
    assert record.best["val/accuracy"] == pytest.approx(best["val/accuracy"])
    assert recompute(out).ok


def test_best_never_includes_step_zero():
    rows = [
        {"step": 0, "wall_time": 0.0, "val/ece": 0.01, "val/accuracy": 0.1},
        {"step": 4, "wall_time": 1.0, "val/ece": 0.20, "val/accuracy": 0.6},
        {"step": 8, "wall_time": 2.0, "val/ece": 0.10, "val/accuracy": 0.5},
    ]
    got = summarise_rows(
        rows, {"val/ece": "min", "val/accuracy": "max"}, {"metric": "val/accuracy", "mode": "max", "threshold": 0.55}
    )
    assert got["best"] == {"val/ece": 0.10, "val/accuracy": 0.6}  # step 0's ece of 0.01 is not "best"
    assert got["final"] == {"val/ece": 0.10, "val/accuracy": 0.5} and got["steps_to_target"] == 4


def _csv_data(folder, labels):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(labels), 3))
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", slice(0, 80)), ("test", slice(80, None))):
        table = {"a": x[rows, 0], "b": x[rows, 1], "c": x[rows, 2], "label": labels[rows]}
        datasets.Dataset.from_dict(table).to_csv(str(folder / f"{split}.csv"))
    return {"train": str(folder / "train.csv"), "test": str(folder / "test.csv")}


def _csv_recipe(files, cache):
    return tiny_recipe(
        losses=["ce", "sce"],
        seeds=[0],
        data={
            "path": "csv",
            "data_files": files,
            "feature_columns": ["a", "b", "c"],
            "label_column": "label",
            "batch_size": 16,
            "cache_dir": str(cache),
        },
    )


def test_a_given_test_file_is_the_test_split_and_changed_data_is_refused(tmp_path):
    labels = np.arange(100) % 2
    files = _csv_data(tmp_path / "data", labels)
    recipe = load_recipe(_csv_recipe(files, tmp_path / "cache"), losses=["ce"])
    out = tmp_path / "out"
    Comparison(recipe, out, progress=False).run()
    data = read_json(out / "comparison.json")["data"]
    assert data["test"]["source"].startswith("given: split 'test'") and data["test"]["rows"] == 20
    assert data["validation"]["source"].startswith("carved: 0.15 of 'train'")
    assert data["train"]["rows"] + data["validation"]["rows"] == 80
    record = load_records(out)[0][0]
    assert record.fingerprints["data"] == {s: data[s]["fingerprint"] for s in data}
    # the same path, relabelled rows: the rerun (which would add sce) refuses, naming the split
    _csv_data(tmp_path / "data", 1 - labels)
    again = load_recipe(_csv_recipe(files, tmp_path / "cache"))
    with pytest.raises(RecipeError, match="contents of split 'train'.*differ") as info:
        Comparison(again, out, progress=False).run()
    assert "'validation'" in str(info.value) and "'test'" in str(info.value)
    assert not run_dir(out, "sce", 0).exists()


def test_a_comparison_without_test_rows_is_refused(tmp_path):
    recipe = tiny_recipe(
        data={
            "path": "csv",
            "data_files": _csv_data(tmp_path / "d", np.arange(100) % 2)["train"],
            "feature_columns": ["a", "b", "c"],
            "test_fraction": 0.0,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    with pytest.raises(RecipeError, match="no test split"):
        Comparison(load_recipe(recipe), tmp_path / "out", progress=False).prepare()
    assert not (tmp_path / "out").exists()


def test_report_of_a_finished_folder_flags_runs_on_other_data(finished, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    path = run_dir(copy, "sce", 0) / "record.json"
    record = RunRecord.load(path)
    record.fingerprints["data"]["test"] = "0" * 64
    record.save(path)
    from lossbench.compare.report.render import render_report

    text = render_report(copy).read_text()
    assert text.startswith("> **WARNING: the fairness check failed.**")
    assert "contents of the 'test' split (data)" in text
    rows = {(r["loss"], r["seed"]): r["fairness"] for r in read_csv(copy / "results.csv")}
    # within seed 0 two runs disagree (neither can be trusted); seed 1 agrees with the majority across seeds
    assert rows[("sce", 0)] == rows[("ce", 0)] == "invalid"
    assert rows[("sce", 1)] == rows[("ce", 1)] == "ok"

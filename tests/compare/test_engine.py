"""The comparison engine: identical setups proved by fingerprints, records, resume, refusals."""

import json
import shutil

import lightning.pytorch as pl
import pytest

from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.compare.store.layout import run_dir
from lossbench.compare.store.records import RunRecord, load_records, read_csv
from tests.compare.conftest import tiny_recipe


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "out"
    report = Comparison(load_recipe(tiny_recipe()), out, progress=False).run()
    return out, report


def test_every_run_finishes_with_records_metrics_and_report(finished):
    out, report = finished
    records = load_records(out)
    assert [(r.loss, r.seed) for r, _ in records] == [(l, s) for l in ("ce", "focal", "sce") for s in (0, 1)]
    for record, rows in records:
        assert record.status == "finished" and record.steps == 8
        assert [row["step"] for row in rows] == [0, 4, 8]  # step 0: the shared initial weights
        assert rows[0]["train_loss"] is None and rows[1]["train_loss"] > 0
        assert set(record.final) >= {"val/accuracy", "val/f1_macro", "val/nll", "val/ece", "val/loss"}
        assert record.final["val/accuracy"] == rows[-1]["val/accuracy"]
        assert record.best["val/accuracy"] == max(r["val/accuracy"] for r in rows)
        assert record.versions["torch"] and record.recipe_hash and record.setup_hash
        assert not (run_dir(out, record.loss, record.seed) / "checkpoints").exists()
    assert report.exists() and (out / "results.csv").exists()


def test_runs_of_a_seed_share_initial_weights_and_batch_order(finished):
    out, _ = finished
    by_seed = {}
    for record, rows in load_records(out):
        by_seed.setdefault(record.seed, []).append((record, rows))
    for runs in by_seed.values():
        fps = [r.fingerprints for r, _ in runs]
        assert len({f["backbone_init"] for f in fps}) == 1
        assert len({f["head_init"] for f in fps}) == 1  # ce, focal, sce: same projection shape
        assert len({json.dumps(f["data_order"], sort_keys=True) for f in fps}) == 1
        assert len(fps[0]["data_order"]) == 2  # 8 steps of 4 batches: two epochs
        # same weights: the step-0 evaluation is the same for every head of one shape
        assert len({rows[0]["val/accuracy"] for _, rows in runs}) == 1
    assert by_seed[0][0][0].fingerprints["backbone_init"] != by_seed[1][0][0].fingerprints["backbone_init"]
    assert by_seed[0][0][0].fingerprints["data_order"] != by_seed[1][0][0].fingerprints["data_order"]


def test_rerun_skips_finished_runs(finished, monkeypatch):
    out, _ = finished
    calls = []
    monkeypatch.setattr(pl.Trainer, "fit", lambda *a, **k: calls.append(a))
    Comparison(load_recipe(tiny_recipe()), out, progress=False).run()
    assert calls == []


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    recipe = load_recipe(tiny_recipe(losses=["ce"], seeds=[0]))
    out = tmp_path / "out"

    class Stop(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, idx):
            if trainer.global_step == 6:
                raise RuntimeError("simulated crash at step 6")

    comparison = Comparison(recipe, out, progress=False)
    make = comparison.book.trainer  # every Trainer of the comparison's runs (RunBook.trainer)
    comparison.book.trainer = lambda callbacks, root, run=None: make(callbacks + [Stop()], root, run)
    comparison.run()
    record = RunRecord.load(run_dir(out, "ce", 0) / "record.json")
    assert record.status == "failed" and "simulated crash" in record.error
    assert (run_dir(out, "ce", 0) / "checkpoints" / "last.ckpt").exists()  # saved at step 4

    Comparison(recipe, out, progress=False).run()
    record = RunRecord.load(run_dir(out, "ce", 0) / "record.json")
    rows = read_csv(run_dir(out, "ce", 0) / "metrics.csv")
    assert record.status == "finished" and record.resumed == 1 and record.steps == 8
    assert [r["step"] for r in rows] == [0, 4, 8]


def test_changed_recipe_is_refused_and_nothing_is_touched(finished, tmp_path):
    out, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = sorted((p.relative_to(copy), p.read_bytes()) for p in copy.rglob("*") if p.is_file())
    with pytest.raises(RecipeError, match="holds results of another recipe setup"):
        Comparison(load_recipe(tiny_recipe(optimizer={"name": "adamw", "lr": 0.02})), copy, progress=False).run()
    after = sorted((p.relative_to(copy), p.read_bytes()) for p in copy.rglob("*") if p.is_file())
    assert before == after


def test_same_label_with_other_arguments_is_refused(finished):
    out, _ = finished
    recipe = load_recipe(tiny_recipe(losses=["ce", {"name": "focal", "args": {"gamma": 1.0}}, "sce"]))
    with pytest.raises(RecipeError, match="loss 'focal' .* was run as focal {'gamma': 2.0}"):
        Comparison(recipe, out, progress=False).run()


def test_foreign_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RecipeError, match="is not empty and holds no lossbench comparison"):
        Comparison(load_recipe(tiny_recipe()), tmp_path, progress=False).run()


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"losses": ["ce", "mse"]}, "loss 'mse' does not fit the data: head 'mse' is a regression head"),
        ({"losses": ["ce", "kl"]}, "distribution heads need probability-vector targets"),
        ({"target": {"metric": "val/r2", "mode": "max", "threshold": 0.5}}, "`target.metric` 'val/r2' is not logged"),
    ],
)
def test_losses_that_do_not_fit_the_data_are_refused_before_any_write(tmp_path, changes, match):
    out = tmp_path / "never"
    with pytest.raises(RecipeError, match=match):
        Comparison(load_recipe(tiny_recipe(**changes)), out, progress=False).run()
    assert not out.exists()

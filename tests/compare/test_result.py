"""``lossbench.compare(...)`` and its ComparisonResult: the table is results.csv, the verdicts and ranking are the
report's, a run's module predicts what the run kept, and a finished folder loads as the same result."""

import re
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import lossbench.compare as compare
from lossbench import LossbenchModule
from lossbench.compare import ComparisonResult, RecipeError, render_report
from lossbench.compare.analysis.stats import ComparisonStats, Estimate, Paired, Verdict
from lossbench.compare.execution.evaluate import metrics_from_predictions, predict
from lossbench.compare.report.outcome import _headline_sentences
from lossbench.compare.report.verdicts import OUTCOMES, verdict_of
from lossbench.compare.result import resolve_recipe, run_comparison
from lossbench.compare.store.layout import PREDICTIONS_FILE, RECORD_FILE, run_dir
from lossbench.compare.store.records import RunRecord, read_json
from lossbench.compare.store.tensors import load_tensors, save_tensors
from lossbench.data import HFDataModule
from tests.compare.conftest import tiny_recipe

LOSSES = ["ce", "focal", "sce"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 3-loss, 2-seed comparison run through the callable package, with overrides of both kinds."""
    out = tmp_path_factory.mktemp("result") / "out"
    result = compare(
        tiny_recipe(),
        out,
        progress=False,
        trainer__max_steps=12,  # a Python value, used as given
        overrides={"trainer.eval_every_n_steps": "6"},  # as on the command line: read as YAML
        seeds=[0, 1],
    )
    return out, result


# -- the outcome sentences of report.md, parsed ------------------------------------------------------------------
def outcomes_stated(text: str, losses: list[str], baseline: str, headline: str) -> dict[str, str]:
    """loss -> better / worse / no difference / inconclusive, as the report's Outcome sentences say it."""
    found: dict[str, str] = {}

    def named(fragment: str) -> list[str]:
        return [loss for loss in losses if re.search(rf"(^|, ){re.escape(loss)}( \(|,|$)", fragment)]

    for loss, word in re.findall(rf"(\S+) has a significantly (better|worse) {re.escape(headline)} than", text):
        found[loss] = word
    for part in re.findall(rf"The {re.escape(headline)} of (.*?) differs? from {re.escape(baseline)} on the", text):
        found.update(dict.fromkeys(named(part), "inconclusive"))
    for part in re.findall(r"are within noise for (.*?) \(not significant", text):
        found.update(dict.fromkeys(named(part), "no difference"))
    for part in re.findall(rf"(?:^|\. ){re.escape(headline)} of (.*?) could not be tested against", text):
        found.update(dict.fromkeys(named(part), "inconclusive"))
    return found


def paired_rows(report: str) -> dict[tuple[str, str], list[str]]:
    """(loss, quantity) -> the cells of report.md's paired-comparison table."""
    section = report.split("## Paired comparison")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] not in ("loss", "---"):
            rows[(cells[0], cells[1])] = cells
    return rows


def check_against_report(result: ComparisonResult) -> None:
    from lossbench.compare.report.format import _ci, _pvalue, _signed

    report = result.report_path.read_text()
    outcome = report.split("## Outcome")[1].split("\n## ")[0]
    stats = result.stats
    stated = outcomes_stated(outcome, stats.losses, result.baseline, stats.headline_label)
    assert stated == {loss: v.outcome for loss, v in result.verdicts.items()}
    assert set(result.verdicts) == set(stats.losses) - {result.baseline}
    rows = paired_rows(report)
    for loss, v in result.verdicts.items():
        row = rows[(loss, stats.headline_label)]
        assert row[2] == str(v.seeds) and row[3] == _signed(v.effect)
        assert row[4] == _ci(Estimate(v.seeds, v.effect, *v.ci)) and row[6].startswith(_pvalue(v.seeds_p_adj))
        if v.examples_p_adj is not None:
            (examples,) = [cells for key, cells in rows.items() if key[0] == loss and "per test example" in key[1]]
            assert examples[6] == _pvalue(v.examples_p_adj)
    ranking = report.split("## Ranking")[1].split("\n## ")[0]
    ranked = [line.split("|")[2].strip().split(" ")[0] for line in ranking.splitlines() if re.match(r"\| \d+ \|", line)]
    assert ranked == result.ranking


# -- the result of a run --------------------------------------------------------------------------------------------
def test_the_table_is_results_csv(finished):
    out, result = finished
    assert result.folder == out and result.report_path == out / "report.md" and result.report_path.is_file()
    pd.testing.assert_frame_equal(result.table, pd.read_csv(out / "results.csv"))
    assert list(result.table["loss"]) == [loss for loss in LOSSES for _ in (0, 1)]
    assert set(result.table["status"]) == {"finished"} and result.failed == []


def test_overrides_of_both_kinds_are_applied_and_recorded(finished):
    out, _ = finished
    recipe = read_json(out / "comparison.json")["recipe"]
    assert recipe["trainer"]["max_steps"] == 12 and recipe["trainer"]["eval_every_n_steps"] == 6
    assert recipe["seeds"] == [0, 1]
    for loss in LOSSES:
        record = RunRecord.load(run_dir(out, loss, 1) / RECORD_FILE)
        assert record.steps == 12 and record.selected["step"] == 12


def test_verdicts_and_ranking_are_the_reports(finished):
    _, result = finished
    check_against_report(result)
    assert all(v.outcome in OUTCOMES and v.baseline == "ce" for v in result.verdicts.values())
    by_mean = sorted(
        LOSSES,
        key=lambda loss: (-result.table.loc[result.table["loss"] == loss, "test/accuracy"].mean(), LOSSES.index(loss)),
    )
    assert result.ranking == by_mean  # best first by mean test accuracy, ties in recipe order
    text = result._repr_markdown_()
    assert "test/accuracy" in text and str(result.report_path) in text
    for loss, v in result.verdicts.items():
        assert re.search(rf"\| {loss} \|.*\| {v.outcome} ", text)


def test_load_gives_the_same_result(finished):
    out, result = finished
    again = ComparisonResult.load(out)
    assert again.verdicts == result.verdicts and again.ranking == result.ranking
    assert again.failed == result.failed and again.report_path == result.report_path
    pd.testing.assert_frame_equal(again.table, result.table)
    assert again._repr_markdown_() == result._repr_markdown_()
    with pytest.raises(FileNotFoundError, match="not a lossbench comparison folder"):
        ComparisonResult.load(out / "runs")


@pytest.mark.parametrize("loss, seed", [("focal", 1), ("sce", 0)])
def test_load_module_predicts_what_the_run_kept(finished, loss, seed):
    out, result = finished
    model = ComparisonResult.load(out).load_module(loss, seed)
    assert isinstance(model, LossbenchModule) and not model.training
    dm = HFDataModule(**read_json(out / "comparison.json")["recipe"]["data"], seed=seed)  # the run's data, again
    again = predict(model, dm.test_dataset, dm.spec, padding=dm.padding, batch_size=dm.eval_batch_size or dm.batch_size)
    kept = load_tensors(run_dir(out, loss, seed) / PREDICTIONS_FILE)
    assert set(again) == set(kept)
    assert torch.equal(again["label"], kept["label"]) and torch.equal(again["target"], kept["target"])
    assert torch.allclose(again["proba"], kept["proba"], rtol=0, atol=1e-6)
    record = RunRecord.load(run_dir(out, loss, seed) / RECORD_FILE)
    assert metrics_from_predictions("multiclass", 3, again)["test/accuracy"] == record.test["test/accuracy"]


def test_load_module_refuses_what_it_cannot_give(finished, tmp_path):
    out, result = finished
    with pytest.raises(ValueError, match="`loss` must be one of"):
        result.load_module("fcal", 0)
    with pytest.raises(ValueError, match="`seed` must be one of"):
        result.load_module("ce", 7)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    path = run_dir(copy, "sce", 1) / RECORD_FILE
    record = RunRecord.load(path)
    record.status, record.error = "failed", "FloatingPointError: the loss is nan\nTraceback ..."
    record.save(path)
    failed = ComparisonResult.load(copy)
    assert failed.failed == ["sce seed 1 (FloatingPointError: the loss is nan)"]
    with pytest.raises(ValueError, match="not finished"):
        failed.load_module("sce", 1)


# -- verdicts with a difference: a copy of the folder with chosen test numbers, its report rendered again ----------
def test_a_better_and_a_split_verdict_are_the_reports(finished, tmp_path):
    out, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    accuracy = {"ce": (0.10, 0.12), "focal": (0.10, 0.14), "sce": (0.90, 0.905)}  # seed 0, seed 1
    for loss, values in accuracy.items():
        for seed, value in zip((0, 1), values):
            path = run_dir(copy, loss, seed) / RECORD_FILE
            record = RunRecord.load(path)
            record.test["test/accuracy"] = value
            record.save(path)
            if loss == "ce":  # the baseline misses every test example: the others differ example by example
                kept = run_dir(copy, loss, seed) / PREDICTIONS_FILE
                tensors = load_tensors(kept)
                wrong = (tensors["target"] + 1) % 3
                tensors["label"] = wrong
                tensors["proba"] = torch.nn.functional.one_hot(wrong, 3).to(tensors["proba"].dtype)
                save_tensors(kept, tensors)
    render_report(copy)
    result = ComparisonResult.load(copy)
    check_against_report(result)
    sce, focal = result.verdicts["sce"], result.verdicts["focal"]
    assert sce.outcome == "better" and sce.effect == pytest.approx((0.80 + 0.785) / 2) and sce.p_adj < 0.05
    assert sce.ci[0] > 0 and sce.p_adj == max(sce.seeds_p_adj, sce.examples_p_adj, sce.verdict.joint_p_adj)
    assert focal.outcome == "inconclusive" and focal.examples_p_adj < 0.05 and focal.seeds_p_adj >= 0.05
    assert result.ranking[0] == "sce"


# -- the report's rules on every kind of verdict ----------------------------------------------------------------
def _paired(loss, mean, low, high, p, p_adj, n=3):
    return Paired("test/accuracy", loss, "ce", tuple(range(n)), Estimate(n, mean, low, high), p, p_adj=p_adj)


def _examples(p):
    return SimpleNamespace(p=p, method="McNemar", n_seeds=3, n_examples=50, diff=0.0, detail={})


@pytest.mark.parametrize("mode", ["max", "min"])
def test_each_kind_of_verdict_is_worded_as_the_report_words_it(mode):
    up = 1.0 if mode == "max" else -1.0
    verdicts = {
        "up": Verdict(_paired("up", 0.1 * up, *sorted((0.05 * up, 0.15 * up)), 0.001, 0.004), _examples(0.001), 0.004,
                      0.004),
        "down": Verdict(_paired("down", -0.1 * up, *sorted((-0.05 * up, -0.15 * up)), 0.001, 0.004), _examples(0.001),
                        0.004, 0.004),
        "noise": Verdict(_paired("noise", 0.02, -0.1, 0.14, 0.4, 0.8), _examples(0.5), 1.0, 1.0),
        "split": Verdict(_paired("split", 0.05, -0.05, 0.15, 0.2, 0.6), _examples(0.001), 0.003, 0.6),
        "same": Verdict(_paired("same", 0.0, 0.0, 0.0, None, None)),
        "one": Verdict(_paired("one", 0.1, None, None, None, None, n=1)),
        "none": Verdict(None),
    }  # fmt: skip
    losses = ["ce", *verdicts]
    stats = ComparisonStats(
        "val/accuracy", mode, None, "ce", losses, ["val/accuracy"], headline="test/accuracy", verdicts=verdicts,
        vs_baseline={loss: {"headline": v.seeds} for loss, v in verdicts.items()},
    )  # fmt: skip
    text = " ".join(_headline_sentences(stats))
    got = {loss: verdict_of(loss, stats) for loss in verdicts}
    assert outcomes_stated(text, losses, "ce", "test/accuracy") == {loss: v.outcome for loss, v in got.items()}
    assert {loss: v.outcome for loss, v in got.items()} == {
        "up": "better", "down": "worse", "noise": "no difference", "split": "inconclusive",
        "same": "inconclusive", "one": "inconclusive", "none": "inconclusive",
    }  # fmt: skip
    assert got["up"].p_adj == 0.004 and got["noise"].p_adj == 1.0 and got["split"].p_adj == 0.6
    assert got["none"].p_adj is None and got["none"].seeds == 0 and got["one"].effect == 0.1


# -- arguments, checked before anything is written --------------------------------------------------------------
def test_a_bad_override_is_a_recipe_error_naming_it(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RecipeError, match=r"`trainer\.max_stpes`.*did you mean 'max_steps'"):
        compare(tiny_recipe(), out, trainer__max_stpes=3)
    with pytest.raises(RecipeError, match=r"unknown override `traner__max_steps`.*did you mean 'trainer'"):
        run_comparison(tiny_recipe(), out, traner__max_steps=3)
    with pytest.raises(RecipeError, match=r"unknown override `max_steps`"):
        compare(tiny_recipe(), out, max_steps=3)
    with pytest.raises(RecipeError, match=r"`trainer\.max_steps` must be a positive int, got '12'"):
        compare(tiny_recipe(), out, trainer__max_steps="12")  # a keyword's string is not read as YAML
    with pytest.raises(RecipeError, match="given twice"):
        compare(tiny_recipe(), out, trainer__max_steps=3, overrides={"trainer.max_steps": 4})
    assert not out.exists()


def test_the_arguments_map_to_the_commands_options():
    text = 'yes: "é" \\ 😀\n[1]'  # a keyword's string stays the string it is
    recipe = resolve_recipe(tiny_recipe(), seeds=3, losses=["sce"], executor="fused", name="2024", description=text)
    assert recipe.seeds == [0, 1, 2] and [loss.label for loss in recipe.losses] == ["ce", "sce"]
    assert recipe.executor == "fused" and recipe.name == "2024" and recipe.description == text
    assert resolve_recipe(tiny_recipe(), overrides={"trainer.max_steps": "20"}).trainer["max_steps"] == 20  # YAML
    assert resolve_recipe(recipe) is recipe
    lowered = resolve_recipe(recipe, optimizer__lr=0.5)
    assert lowered.optimizer["lr"] == 0.5 and lowered.to_dict() == {**recipe.to_dict(), "optimizer": lowered.optimizer}
    with pytest.raises(RecipeError, match="`seeds` must be a count or a list"):
        resolve_recipe(tiny_recipe(), seeds="3")


# -- a backbone of the user's own, named by class path --------------------------------------------------------------
USER_FILE = """
from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features: int = 13, hidden: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU())
        self.out_features = hidden

    def forward(self, x):
        return self.net(x)
"""


def test_load_module_rebuilds_a_class_path_backbone_and_never_imports_it_on_the_folders_word(tmp_path, monkeypatch):
    import importlib
    import sys

    (tmp_path / "result_user_models.py").write_text(USER_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "result_user_models", raising=False)
    out = tmp_path / "out"
    backbone = {"class_path": "result_user_models.MLP", "init_args": {"hidden": 8}}
    result = compare(tiny_recipe(losses=["ce", "sce"], backbone=backbone), out, seeds=1, progress=False)
    model = result.load_module("sce", 0)
    assert type(model.backbone).__module__ == "result_user_models"
    dm = HFDataModule(**read_json(out / "comparison.json")["recipe"]["data"], seed=0)
    again = predict(model, dm.test_dataset, dm.spec, padding=dm.padding, batch_size=dm.eval_batch_size or dm.batch_size)
    kept = load_tensors(run_dir(out, "sce", 0) / PREDICTIONS_FILE)
    assert torch.equal(again["label"], kept["label"]) and torch.allclose(again["proba"], kept["proba"], atol=1e-6)
    del sys.modules["result_user_models"]  # a new session that has not imported it
    with pytest.raises(ValueError, match=r"'result_user_models\.MLP'.*import result_user_models yourself first"):
        ComparisonResult.load(out).load_module("sce", 0)
    assert "result_user_models" not in sys.modules
    importlib.import_module("result_user_models")
    assert type(ComparisonResult.load(out).load_module("ce", 0).backbone).__name__ == "MLP"


def test_lossbench_compare_is_callable_from_a_plain_import_lossbench():
    import subprocess
    import sys

    code = "import lossbench; assert callable(lossbench.compare); print(lossbench.compare.run_comparison.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "run_comparison"

"""A command validates once: `lossbench compare` prepares, then runs, and every loss is built once for the checks
(and once per distinct head arguments of its tuning points), not again by run() nor by the tuning comparison;
what another process may change meanwhile is checked again under the folder's lock."""

from __future__ import annotations

import pytest

from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.compare.execution import runner
from lossbench.compare.execution.runner import quiet
from lossbench.compare.store.layout import COMPARISON_FILE
from tests.compare.conftest import tiny_recipe

LOSSES, TRIALS, TUNE_SEEDS, SEEDS = ["ce", "focal"], 2, [100], [0]
RECIPE = {
    **tiny_recipe(losses=LOSSES, seeds=SEEDS, executor="fused", trainer={"max_steps": 4, "eval_every_n_steps": 2}),
    "tune": {"trials": TRIALS, "seeds": TUNE_SEEDS, "space": {"optimizer.lr": {"low": 1e-3, "high": 1e-2}}},
}


@pytest.fixture
def builds(monkeypatch):
    """The head of every LossbenchModule a comparison builds (RunBook.build_model's build_module), in order."""
    made: list[str] = []
    original = runner.build_module

    def counting(recipe, head, *args, **kwargs):
        made.append(head)
        return original(recipe, head, *args, **kwargs)

    monkeypatch.setattr(runner, "build_module", counting)
    return made


def test_a_command_builds_each_loss_once_to_check_it_then_once_per_run(tmp_path, builds):
    comparison = Comparison(load_recipe(RECIPE), tmp_path / "out", progress=False)
    with quiet():  # as `lossbench compare` does: prepare (refusals before anything is written), then run
        comparison.prepare()
    # each loss as given; its trials differ in optimizer values only (checked without a build)
    checks = len(LOSSES)
    assert len(builds) == checks
    comparison.prepare()
    assert len(builds) == checks  # a second prepare does nothing
    comparison.run()
    trained = len(LOSSES) * TRIALS * len(TUNE_SEEDS) + len(LOSSES) * len(SEEDS)  # the trials, the final runs
    # before: run() prepared again (6 more) and so did the tuning comparison (4 more): 22 builds, 12 for checks;
    # then each trial point was built for its check too (2 more), then each loss once more for its trials (2 more)
    assert len(builds) == checks + trained == 8
    assert comparison.failed == []


def test_what_another_process_changes_after_prepare_is_refused_under_the_lock(tmp_path, builds):
    out = tmp_path / "out"
    comparison = Comparison(load_recipe(RECIPE), out, progress=False)
    with quiet():
        comparison.prepare()
    checked = len(builds)
    other = load_recipe({**RECIPE, "optimizer": {"name": "adamw", "lr": 0.02}})  # another setup, same folder
    Comparison(other, out, progress=False).run()  # the other process: it ran while this one was preparing
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    builds.clear()
    with pytest.raises(RecipeError, match="holds results of another recipe setup"):
        comparison.run()
    assert builds == []  # refused by reading the folder's files, without building a model
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # and without writing
    assert checked == len(LOSSES) and (out / COMPARISON_FILE).exists()

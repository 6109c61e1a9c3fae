"""A comparison on a datasets.Dataset given in Python (issue 21 item 5): the same runs as on the same rows in a file,
the data fingerprinted by content, the Data section naming it, reruns with other rows refused."""

import json

import datasets
import pytest
from sklearn.datasets import load_wine

import lossbench
from lossbench.compare import RecipeError, load_recipe
from lossbench.compare.recipe.bounded_yaml import safe_yaml
from lossbench.compare.store.records import load_records
from lossbench.data import memory as memory_module
from lossbench.data.memory import MEMORY_PREFIX, memory_name

from .conftest import tiny_recipe


def wine_frame():
    return load_wine(as_frame=True).frame.rename(columns={"target": "label"})


FEATURES = [c for c in wine_frame().columns if c != "label"]


def in_memory_recipe(data, **changes):
    recipe = tiny_recipe(losses=["ce", "focal"], seeds=[0], executor="fused", **changes)
    recipe["data"] = {"path": data, "feature_columns": FEATURES, "batch_size": 32}
    return recipe


def test_the_recipe_holds_the_datasets_name_and_round_trips():
    data = datasets.Dataset.from_pandas(wine_frame())
    recipe = load_recipe(in_memory_recipe(data))
    assert recipe.data["path"] == memory_name(data)
    json.dumps(recipe.to_dict())  # plain values only: comparison.json, units and recipe.yaml hold it
    assert load_recipe(recipe.to_dict()) == recipe
    assert load_recipe(safe_yaml(recipe.to_yaml(), "recipe.yaml")) == recipe
    relabelled = data.map(lambda row: {"label": (row["label"] + 1) % 3})
    assert load_recipe(in_memory_recipe(relabelled)).setup_hash != recipe.setup_hash
    assert load_recipe(in_memory_recipe(data.select(range(len(data))))).setup_hash == recipe.setup_hash


def test_a_recipe_file_of_in_memory_data_read_in_another_process_is_refused(monkeypatch, tmp_path):
    recipe = load_recipe(in_memory_recipe(datasets.Dataset.from_pandas(wine_frame())))
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe.to_yaml())
    monkeypatch.setattr(memory_module, "_HELD", {})  # what a fresh process holds
    with pytest.raises(
        RecipeError,
        match=r"^recipe: `data.path`='memory:[0-9a-f]{64}' names an in-memory dataset "
        r"that this Python process does not hold.*lossbench.compare\(recipe, data__path=dataset\)",
    ):
        load_recipe(path)


def test_a_streaming_dataset_is_refused_naming_data_path():
    data = datasets.Dataset.from_pandas(wine_frame()).to_iterable_dataset()
    with pytest.raises(
        RecipeError,
        match=r"^recipe: `data.path` must be a datasets.Dataset or DatasetDict held in "
        "memory, got a streaming IterableDataset",
    ):
        load_recipe(in_memory_recipe(data))


@pytest.mark.slow
def test_a_comparison_on_a_dataset_is_the_comparison_on_the_same_rows_in_a_file(tmp_path):
    frame = wine_frame()
    data = datasets.Dataset.from_pandas(frame)
    frame.to_parquet(tmp_path / "wine.parquet")
    from_file = in_memory_recipe("parquet")
    from_file["data"]["data_files"] = str(tmp_path / "wine.parquet")
    theirs = lossbench.compare(from_file, output=tmp_path / "file", progress=False)
    mine = lossbench.compare(in_memory_recipe(data), output=tmp_path / "memory", progress=False)

    def runs(result):
        return {(r.loss, r.seed): r for r, _ in load_records(result.folder)}

    mine_runs, their_runs = runs(mine), runs(theirs)
    assert mine_runs.keys() == their_runs.keys() == {("ce", 0), ("focal", 0)}
    for key, run in mine_runs.items():
        other = their_runs[key]
        assert run.fingerprints == other.fingerprints  # data contents, initial weights, batch order
        assert run.test == pytest.approx(other.test, abs=1e-6) and run.test
    report = mine.report_path.read_text()
    assert (
        f"Source: an in-memory dataset (a `datasets` object given in Python), fingerprint "
        f"`{memory_name(data)[len(MEMORY_PREFIX) :][:12]}` of its rows as given."
    ) in report
    assert "Source: `parquet`, files" in theirs.report_path.read_text()
    # the same rows again: everything is finished, nothing is retrained
    again = lossbench.compare(
        in_memory_recipe(datasets.Dataset.from_pandas(frame)), output=tmp_path / "memory", progress=False
    )
    assert {k: r.to_dict() for k, r in runs(again).items()} == {k: r.to_dict() for k, r in mine_runs.items()}
    relabelled = data.map(lambda row: {"label": (row["label"] + 1) % 3})
    with pytest.raises(RecipeError, match=r"holds results of another recipe setup .* it differs in `data`"):
        lossbench.compare(in_memory_recipe(data), output=tmp_path / "memory", progress=False, data__path=relabelled)
    assert mine.load_module("focal", 0).hparams is not None

"""A pretrained Hugging Face model as the backbone (issue 21 item 4), offline: a tiny random BERT and its WordPiece
tokenizer saved into a temporary folder stand in for a hub model; a 3-loss, 2-seed text comparison runs end to end
on both executors."""

from __future__ import annotations

import math

import pytest
import torch

from lossbench.compare import Comparison, ComparisonResult, RecipeError, load_recipe
from lossbench.compare.analysis.fairness import check_fairness
from lossbench.compare.store.layout import WEIGHTS_FILE, run_dir
from lossbench.compare.store.records import load_records
from tests.models.hf_tiny import save_texts, save_tiny_bert

pytest.importorskip("transformers")

LOSSES = ("ce", "focal", "label_smoothing")
FREEZE = {"all_but_last_n": 1}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf")
    return save_tiny_bert(tmp / "tiny-bert"), save_texts(tmp / "texts.parquet")


def recipe(files, **changes):
    model, texts = files
    values = {
        "data": {
            "path": "parquet",
            "data_files": str(texts),
            "text_column": "text",
            "max_length": 16,
            "batch_size": 16,
        },
        "backbone": {
            "class_path": "lossbench.models.hf.HFEncoder",
            "init_args": {"pretrained": str(model), "pooling": "mean", "freeze": FREEZE},
        },
        "losses": list(LOSSES),
        "optimizer": {"name": "adamw", "lr": 0.01},
        "trainer": {"max_steps": 6, "eval_every_n_steps": 3, "precision": "64-true"},
        "seeds": [0, 1],
        "target": {"metric": "val/accuracy", "mode": "max", "threshold": 0.5},
    }
    return {**values, **changes}


@pytest.fixture(scope="module")
def both(files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf_runs")
    out = {}
    for executor in ("fused", "sequential"):
        folder = tmp / executor
        Comparison(load_recipe(recipe(files, executor=executor)), folder, progress=False).run()
        out[executor] = folder, {(r.loss, r.seed): (r, rows) for r, rows in load_records(folder)}
    return out


def test_the_data_tokenizes_with_the_models_own_tokenizer_unless_told_otherwise(files):
    model, _ = files
    assert load_recipe(recipe(files)).data["tokenizer"] == f"hf:{model}"
    given = recipe(files)
    given["data"] = {**given["data"], "tokenizer": f"hf:{model}"}
    assert load_recipe(given).data["tokenizer"] == f"hf:{model}"  # to_dict() round trips
    given["data"]["tokenizer"] = "bpe"
    with pytest.raises(RecipeError, match=r"`data.tokenizer` must be the backbone's own tokenizer 'hf:.*got 'bpe'"):
        load_recipe(given)


def test_a_recipe_checks_the_pretrained_backbone_before_anything_is_written(files, tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    bad = recipe(files)
    bad["backbone"] = {"class_path": "lossbench.models.HFEncoder", "init_args": {"pretrained": str(empty)}}
    with pytest.raises(RecipeError, match="is not a Hugging Face model folder: it has no config.json"):
        load_recipe(bad)
    bad["backbone"]["init_args"] = {"pretrained": str(files[0]), "pooling": "max"}
    with pytest.raises(RecipeError, match=r"`pooling` must be one of \('cls', 'mean'\), got 'max'"):
        load_recipe(bad)
    bad["backbone"]["init_args"] = {"pretrained": str(files[0])}
    bad["data"] = {"path": "lossbench:wine"}
    with pytest.raises(RecipeError, match="needs `text_column`"):
        load_recipe(bad)


def test_a_recipe_naming_hfencoder_without_transformers_says_how_to_install_it(files, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    with pytest.raises(RecipeError, match=r"HFEncoder .* needs the `hf` extra .*: pip install 'lossbench\[hf\]'"):
        load_recipe(recipe(files))


@pytest.mark.slow
def test_every_run_finishes_on_both_executors_with_equal_numbers(both):
    (_, fused), (_, seq) = both["fused"], both["sequential"]
    assert set(fused) == set(seq) == {(loss, s) for loss in LOSSES for s in (0, 1)}
    for key, (record, rows) in fused.items():
        other, other_rows = seq[key]
        assert record.status == other.status == "finished", key
        # BERT's buffers (position_ids, token_type_ids) are constants, not state: the losses train as one array; the
        # model does not vmap (it asks its meta-device template for a device), so the array runs member by member
        # and the record says why
        assert record.execution["executor"] == "fused" and record.execution["members"] == list(LOSSES)
        assert record.execution["vmapped"] is False and "meta" in record.execution["vmap_error"]
        assert len(rows) == len(other_rows) > 1
        for row, ref in zip(rows, other_rows):
            for column in ref:
                if column != "wall_time" and ref[column] is not None:
                    assert math.isclose(row[column], ref[column], rel_tol=1e-12, abs_tol=1e-12), (key, column)
        assert record.fingerprints == other.fingerprints
    assert check_fairness([r for r, _ in fused.values()]).ok


@pytest.mark.slow
def test_the_records_and_the_report_name_the_pretrained_backbone(both, files):
    out, fused = both["fused"]
    for seed in (0, 1):
        inits = {fused[(loss, seed)][0].fingerprints["backbone_init"] for loss in LOSSES}
        assert len(inits) == 1  # built once per seed, copied to every loss
    shas = {r.backbone["pretrained_sha256"] for r, _ in fused.values()}
    assert len(shas) == 1 and len(next(iter(shas))) == 64  # the same pretrained weights for every seed
    name = f"lossbench.models.hf.HFEncoder(pretrained={str(files[0])!r}, pooling='mean', freeze={FREEZE!r})"
    record = fused[("ce", 0)][0]
    assert record.backbone["name"] == name and record.backbone["width"] == 16
    report = (out / "report.md").read_text()
    assert f"- Backbone: {name}, " in report
    assert f"pretrained weights sha256 `{next(iter(shas))[:12]}`" in report  # the weights, not only their folder
    assert "fused array(s)" in report and "fell back" not in report


@pytest.mark.slow
def test_frozen_parameters_keep_their_pretrained_values_and_the_rest_trains(both, files):
    from safetensors.torch import load_file

    pretrained = load_file(str(files[0] / "model.safetensors"))
    out, _ = both["sequential"]
    for loss in LOSSES:
        weights = torch.load(run_dir(out, loss, 0) / WEIGHTS_FILE, weights_only=True)
        for name, value in pretrained.items():
            trained = weights.get(f"backbone.model.{name}")
            if trained is None:  # the pooler: dropped, lossbench pools the hidden states itself
                assert name.startswith("pooler."), name
                continue
            same = torch.equal(trained, value.to(trained.dtype))
            frozen = name.startswith(("embeddings.", "encoder.layer.0."))
            assert same == frozen, (loss, name)


@pytest.mark.slow
def test_the_result_object_rebuilds_a_trained_module(both):
    out, fused = both["sequential"]
    module = ComparisonResult.load(out).load_module("focal", 1)
    weights = torch.load(run_dir(out, "focal", 1) / WEIGHTS_FILE, weights_only=True)
    assert torch.equal(
        module.state_dict()["backbone.model.encoder.layer.1.output.dense.weight"].double(),
        weights["backbone.model.encoder.layer.1.output.dense.weight"].double(),
    )


@pytest.mark.slow
def test_a_rerun_on_other_weights_at_the_same_path_is_refused(tmp_path):
    """The recipe names only the folder: the weights' sha256 in the records is what tells a rerun they changed."""
    model, texts = save_tiny_bert(tmp_path / "bert", seed=0), save_texts(tmp_path / "texts.parquet")
    small = recipe((model, texts), losses=["ce", "focal"], seeds=[0], trainer={"max_steps": 2, "eval_every_n_steps": 1})
    Comparison(load_recipe(small), tmp_path / "out", progress=False).run()
    Comparison(load_recipe(small), tmp_path / "out", progress=False).prepare()  # the same weights: resumes
    from transformers import BertModel

    bert = BertModel.from_pretrained(model)
    with torch.no_grad():
        bert.encoder.layer[1].output.dense.bias.add_(0.5)  # other weights, the same tokenizer, folder and recipe
    bert.save_pretrained(model)
    with pytest.raises(
        RecipeError,
        match=r"the pretrained weights of `backbone` changed since the runs in `--output` "
        r".* \(run 'ce' seed 0: sha256 [0-9a-f]{12} then, [0-9a-f]{12} now\); refusing to resume",
    ):
        Comparison(load_recipe(small), tmp_path / "out", progress=False).prepare()

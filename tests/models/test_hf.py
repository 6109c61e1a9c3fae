"""HFEncoder (a pretrained Hugging Face model as the backbone) and the data's ``tokenizer="hf:..."``, offline: a tiny
random BERT and its WordPiece tokenizer saved into a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.models.hf_tiny import save_texts, save_tiny_bert

pytest.importorskip("transformers")

from lossbench.models.hf import HFEncoder  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="module")
def ids(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return torch.tensor(tok(["the movie was great", "a plot"], padding=True)["input_ids"])


def test_importing_lossbench_models_does_not_import_transformers():
    code = "import sys, lossbench.models; assert 'transformers' not in sys.modules; lossbench.models.HFEncoder"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_encoder_follows_the_backbone_contract(model_dir, ids):
    from transformers import AutoModel

    torch.manual_seed(0)
    encoder = HFEncoder(str(model_dir)).eval()
    assert encoder.training is False and encoder.out_features == 16 and encoder.pad_id == 0
    assert ids[1, -1] == 0  # the second row is padded
    reference = AutoModel.from_pretrained(model_dir).eval()
    mask = (ids != 0).long()
    expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    assert torch.allclose(encoder(ids), expected, atol=1e-6)
    assert encoder.model.pooler is None  # BERT's pooler is dropped: lossbench pools the hidden states itself
    assert len(encoder.pretrained_sha256) == 64 and encoder.initialised == []
    assert HFEncoder(str(model_dir)).training  # a new backbone is in training mode, as any nn.Module


def test_mean_pooling_ignores_padding(model_dir, ids):
    encoder = HFEncoder(str(model_dir), pooling="mean").eval()
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    assert torch.allclose(encoder(ids), encoder(padded), atol=1e-6)


def test_pretrained_weights_are_the_same_for_every_seed_and_their_sha_says_so(model_dir):
    torch.manual_seed(0)
    a = HFEncoder(str(model_dir))
    torch.manual_seed(1)
    b = HFEncoder(str(model_dir))
    assert a.pretrained_sha256 == b.pretrained_sha256
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    ("freeze", "frozen"),
    [
        (None, ()),
        ("embeddings", ("embeddings.",)),
        ({"all_but_last_n": 1}, ("embeddings.", "encoder.layer.0.")),
        ({"all_but_last_n": 0}, ("embeddings.", "encoder.layer.0.", "encoder.layer.1.")),
    ],
)
def test_freeze_sets_requires_grad(model_dir, freeze, frozen):
    encoder = HFEncoder(str(model_dir), freeze=freeze)
    for name, p in encoder.model.named_parameters():
        assert p.requires_grad != name.startswith(frozen), name
    assert encoder.frozen == [n for n, p in encoder.model.named_parameters() if not p.requires_grad]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"pooling": "max"}, r"`pooling` must be one of \('cls', 'mean'\), got 'max'"),
        ({"freeze": "layers"}, r"`freeze` must be None, 'embeddings' or \{'all_but_last_n': k\}"),
        ({"freeze": {"all_but_last_n": -1}}, "`freeze` must be"),
        ({"freeze": {"all_but_last_n": 3}}, "asks to train the last 3 layers, .* has 2"),
        ({"dropout": 0.5}, "unexpected keyword argument 'dropout'"),
    ],
)
def test_bad_arguments_are_named(model_dir, args, match):
    with pytest.raises(ValueError, match=match):
        HFEncoder(str(model_dir), **args) if "dropout" not in args else _check(model_dir, args)


def _check(model_dir, args):
    from lossbench.models.hf import check_init_args

    check_init_args({"pretrained": str(model_dir), **args})


def test_a_folder_that_is_not_a_model_is_refused_clearly(model_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="is not a Hugging Face model folder: it has no config.json"):
        HFEncoder(str(empty))
    with pytest.raises(ValueError, match="no such folder"):
        HFEncoder(str(tmp_path / "nowhere"))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(model_dir / "config.json", pickled)
    with pytest.raises(ValueError, match="has no safetensors weights"):
        HFEncoder(str(pickled))
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ValueError, match="is not a Hugging Face model that AutoModel can load"):
        HFEncoder(str(broken))


def test_without_transformers_the_error_says_how_to_install_it(model_dir, monkeypatch):
    from lossbench._extras import MissingExtraError
    from lossbench.data import HFDataModule

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingExtraError, match=r"^HFEncoder .* needs the `hf` extra .*'lossbench\[hf\]'$"):
        HFEncoder(str(model_dir))
    with pytest.raises(MissingExtraError, match=r"^tokenizer='hf:...' .*: pip install 'lossbench\[hf\]'$"):
        HFDataModule("parquet", text_column="text", tokenizer=f"hf:{model_dir}")


def test_on_the_meta_device_no_weights_are_read(model_dir):
    with torch.device("meta"):
        encoder = HFEncoder(str(model_dir))
    assert all(p.is_meta for p in encoder.parameters()) and encoder.pretrained_sha256 is None
    assert sum(p.numel() for p in encoder.parameters()) == sum(
        p.numel() for p in HFEncoder(str(model_dir)).parameters()
    )


def test_too_long_inputs_name_the_data_setting(model_dir):
    with pytest.raises(ValueError, match=r"has 64 positions .* set the data's `max_length` to at most 64"):
        HFEncoder(str(model_dir))(torch.ones(1, 65, dtype=torch.long))


def test_the_data_tokenizes_with_the_models_tokenizer_and_its_fingerprint_covers_the_ids(model_dir, tmp_path):
    from lossbench.data import HFDataModule, HFTokenizer

    texts = save_texts(tmp_path / "texts.parquet")

    def data(tokenizer, max_length=8):
        dm = HFDataModule(
            "parquet", data_files=str(texts), text_column="text", tokenizer=tokenizer, max_length=max_length
        )
        dm.setup()
        return dm

    dm = data(f"hf:{model_dir}")
    tok = dm.tokenizer
    assert isinstance(tok, HFTokenizer) and dm.spec.pad_id == tok.pad_id == 0 and dm.spec.vocab_size == tok.vocab_size
    row = dm.train_dataloader().dataset[0]["inputs"].tolist()
    assert row[0] == tok.tokenizer.cls_token_id and row[-1] == tok.tokenizer.sep_token_id and len(row) <= 8
    assert tok.encode("a great story was told in the end", max_length=5)[-1] == tok.tokenizer.sep_token_id
    splits = dm.describe_splits()

    copy = tmp_path / "same-tokenizer"  # the same tokenizer elsewhere: the same ids, the same fingerprints
    shutil.copytree(model_dir, copy)
    assert data(f"hf:{copy}").describe_splits() == splits
    other = save_tiny_bert(tmp_path / "other", vocab_size=60)  # fewer word pieces: other ids for the same texts
    assert HFTokenizer.load(str(other)).fingerprint != tok.fingerprint
    changed = data(f"hf:{other}", 32).describe_splits()
    assert all(changed[s]["fingerprint"] != splits[s]["fingerprint"] for s in splits)
    byte = data("byte", 64).describe_splits()
    assert all(byte[s]["fingerprint"] != splits[s]["fingerprint"] for s in splits)


def test_a_folder_without_a_tokenizer_is_refused_by_the_data(model_dir, tmp_path):
    from lossbench.data.tokenize import get_tokenizer

    with pytest.raises(ValueError, match="no tokenizer can be loaded from"):
        get_tokenizer(f"hf:{tmp_path}")


def test_the_pad_id_comes_from_the_tokenizer_or_the_config_and_they_must_agree(model_dir, tmp_path):
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_dir / name, weights_only)
    assert HFEncoder(str(weights_only)).pad_id == 0  # no tokenizer saved: the config's pad_token_id
    disagree = tmp_path / "disagree"
    shutil.copytree(model_dir, disagree)
    config = json.loads((disagree / "config.json").read_text())
    (disagree / "config.json").write_text(json.dumps({**config, "pad_token_id": 3}))
    with pytest.raises(ValueError, match="tokenizer pads with id 0 and its config says pad_token_id=3"):
        HFEncoder(str(disagree))


HUB_SNIPPET = """
import json, sys
from lossbench.compare import load_recipe
from lossbench.data import HFDataModule
from lossbench.models import HFEncoder

name, texts = sys.argv[1], sys.argv[2]
recipe = load_recipe({"data": {"path": "parquet", "data_files": texts, "text_column": "text", "max_length": 8},
                      "backbone": {"class_path": "lossbench.models.HFEncoder", "init_args": {"pretrained": name}},
                      "losses": ["ce"], "trainer": {"max_steps": 1},
                      "target": {"metric": "val/accuracy", "mode": "max", "threshold": 0.5}})
dm = HFDataModule(**recipe.data)
print(json.dumps({"sha": HFEncoder(name).pretrained_sha256, "tokenizer": recipe.data["tokenizer"],
                  "data": {k: v["fingerprint"] for k, v in dm.describe_splits().items()}}))
"""


def test_a_hub_name_loads_from_the_hub_cache_like_its_folder(model_dir, tmp_path):
    """A hub name goes to ``from_pretrained`` as a name: here the hub is a local cache laid out as the hub writes
    it (``models--org--name/snapshots/<commit>``), read with ``HF_HUB_OFFLINE=1``, so nothing touches the network.
    The name gives the weights and the token ids of the folder it was made from."""
    from lossbench.data import HFDataModule

    texts = save_texts(tmp_path / "texts.parquet")
    repo, commit = tmp_path / "hub" / "models--lossbench-test--tiny-bert", "0" * 40
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    found = subprocess.run(
        [sys.executable, "-c", HUB_SNIPPET, "lossbench-test/tiny-bert", str(texts)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    hub = json.loads(found.stdout.strip().splitlines()[-1])
    local = HFDataModule(
        "parquet", data_files=str(texts), text_column="text", max_length=8, tokenizer=f"hf:{model_dir}"
    )
    assert hub["tokenizer"] == "hf:lossbench-test/tiny-bert"
    assert hub["sha"] == HFEncoder(str(model_dir)).pretrained_sha256
    assert hub["data"] == {k: v["fingerprint"] for k, v in local.describe_splits().items()}

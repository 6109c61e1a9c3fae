"""Offline tokenizers: bytes and a BPE trained on the training split."""

import sys

import pytest

from lossbench.data import BPETokenizer, ByteTokenizer, train_bpe_tokenizer
from lossbench.data import tokenize as tokenize_module


def test_byte_roundtrip_and_specials():
    tok = ByteTokenizer()
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (0, 1, 2, 259)
    ids = tok.encode("añb €", add_bos=True, add_eos=True)
    assert ids[0] == 1 and ids[-1] == 2 and min(ids[1:-1]) >= 3 and max(ids) < 259
    assert tok.decode(ids) == "añb €"


def test_byte_truncation_counts_specials():
    tok = ByteTokenizer()
    assert tok.encode("abcdef", max_length=4, add_bos=True, add_eos=True) == [1, 100, 101, 102]
    assert len(tok.encode("", max_length=4, add_bos=True, add_eos=True)) == 2


def test_byte_batch_padding():
    tok = ByteTokenizer()
    assert tok.encode_batch(["abc", "a"], padding="longest") == [[100, 101, 102], [100, 0, 0]]
    assert tok.encode_batch(["a"], max_length=3, padding="max_length") == [[100, 0, 0]]
    assert tok.encode_batch(["abc", "a"]) == [[100, 101, 102], [100]]


def test_byte_bad_arguments():
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match=r"`max_length` must be an int >= 1 or None, got 0"):
        tok.encode("a", max_length=0)
    with pytest.raises(TypeError, match=r"`text` must be a str, got int"):
        tok.encode(3)
    with pytest.raises(ValueError, match=r"`padding`='max_length' needs `max_length`"):
        tok.encode_batch(["a"], padding="max_length")


TEXTS = [f"the quick brown fox {i} jumps over the lazy dog" for i in range(100)] + ["lorem ipsum dolor"] * 20


def test_bpe_train_save_reload(tmp_path):
    pytest.importorskip("tokenizers")
    path = tmp_path / "tok.json"
    tok = train_bpe_tokenizer(TEXTS, vocab_size=300, path=path)
    assert path.is_file() and tok.vocab_size == 300
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    ids = tok.encode("the quick brown fox", add_bos=True)
    assert ids[0] == 1 and len(ids) < len("the quick brown fox") + 1  # merges happened
    assert tok.decode(ids) == "the quick brown fox"
    again = BPETokenizer.load(path)
    assert again.fingerprint == tok.fingerprint
    assert again.encode("the lazy dog") == tok.encode("the lazy dog")
    assert train_bpe_tokenizer(TEXTS, vocab_size=300).fingerprint == tok.fingerprint  # deterministic


def test_bpe_vocab_size_floor():
    pytest.importorskip("tokenizers")
    with pytest.raises(ValueError, match=r"`vocab_size` must be an int >= 259.*got 100"):
        train_bpe_tokenizer(TEXTS, vocab_size=100)


def test_bpe_without_tokenizers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if not installed
    with pytest.raises(ImportError, match=r"^the BPE tokenizer .* needs the `bpe` extra .*'lossbench\[bpe\]'$"):
        tokenize_module.train_bpe_tokenizer(TEXTS, vocab_size=300)

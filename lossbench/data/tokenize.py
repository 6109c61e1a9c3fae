"""Tokenizers that need no download: a BPE trained on your own training split, or bytes.

:class:`lossbench.data.HFDataModule` uses the BPE by default (``tokenizer="bpe"``): one id per
common word or word piece, so a small model learns text in a few epochs. Raw bytes
(``tokenizer="byte"``) make sequences several times longer and leave the model to learn the
spelling of every word, which small models and short budgets underfit.

Both share the special ids ``pad=0``, ``bos=1``, ``eos=2`` and one interface:
``encode(text, max_length)``, ``encode_batch(texts, max_length, padding)``, ``decode(ids)``,
``vocab_size`` and a ``fingerprint`` that changes whenever the ids would.

Truncation keeps the first ``max_length`` ids, counting ``bos``/``eos``: a truncated text
loses its ``eos``, which tells a language model that the text goes on.

A pretrained model's own tokenizer (``tokenizer="hf:<name or folder>"``, the ``hf`` extra) is
:class:`HFTokenizer`: the model's ids, special tokens (``[CLS] ... [SEP]`` for BERT) and pad id,
with Hugging Face's truncation to ``max_length``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lossbench._extras import import_optional

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, EOS)  # ids 0, 1, 2 in both tokenizers


def _check_max_length(owner: str, max_length: int | None) -> None:
    if max_length is None:
        return
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"{owner}: `max_length` must be an int >= 1 or None, got {max_length!r}")


class _Tokenizer:
    """Shared encode/pad logic; subclasses give ``_ids(text)``, ``decode`` and ``vocab_size``."""

    pad_id = 0
    bos_id = 1
    eos_id = 2
    vocab_size: int
    fingerprint: str

    def _ids(self, text: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._ids(t) for t in texts]

    def _wrap(self, ids: list[int], max_length: int | None, add_bos: bool, add_eos: bool) -> list[int]:
        ids = ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])
        return ids if max_length is None else ids[:max_length]

    def encode(
        self, text: str, max_length: int | None = None, add_bos: bool = False, add_eos: bool = False
    ) -> list[int]:
        """Ids of one text, truncated to ``max_length`` (``bos``/``eos`` included in the count)."""
        name = type(self).__name__
        _check_max_length(f"{name}.encode", max_length)
        if not isinstance(text, str):
            raise TypeError(f"{name}.encode: `text` must be a str, got {type(text).__name__}")
        return self._rows([text], max_length, add_bos, add_eos)[0]

    def _rows(self, texts: list[str], max_length: int | None, add_bos: bool, add_eos: bool) -> list[list[int]]:
        """Ids of ``texts`` with their special ids, truncated to ``max_length``."""
        return [self._wrap(ids, max_length, add_bos, add_eos) for ids in self._ids_batch(texts)]

    def encode_batch(
        self,
        texts: Sequence[str],
        max_length: int | None = None,
        add_bos: bool = False,
        add_eos: bool = False,
        padding: bool | str = False,
    ) -> list[list[int]]:
        """Ids of many texts; ``padding=True``/``"longest"`` pads to the longest, ``"max_length"`` to ``max_length``."""
        name = type(self).__name__
        _check_max_length(f"{name}.encode_batch", max_length)
        bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{name}.encode_batch: `texts` must all be str, got a {bad[0]}")
        rows = self._rows(list(texts), max_length, add_bos, add_eos)
        if padding in (False, None, "do_not_pad"):
            return rows
        if padding in (True, "longest"):
            width = max((len(r) for r in rows), default=0)
        elif padding == "max_length":
            if max_length is None:
                raise ValueError(f"{name}.encode_batch: `padding`='max_length' needs `max_length`, got None")
            width = max_length
        else:
            raise ValueError(
                f"{name}.encode_batch: `padding` must be False, True, 'longest' or 'max_length', got {padding!r}"
            )
        return [r + [self.pad_id] * (width - len(r)) for r in rows]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class ByteTokenizer(_Tokenizer):
    """UTF-8 bytes as ids: ``id = byte + 3``, after ``pad=0``, ``bos=1``, ``eos=2``; 259 ids, no unknowns.

    Example:
        >>> tok = ByteTokenizer()
        >>> tok.encode("hé", add_bos=True, add_eos=True)
        [1, 107, 198, 172, 2]
        >>> tok.encode_batch(["ab", "a"], padding=True)
        [[100, 101], [100, 0]]
        >>> tok.decode([1, 107, 198, 172, 2])
        'hé'
        >>> tok.vocab_size
        259
    """

    offset = len(SPECIAL_TOKENS)
    vocab_size = 256 + len(SPECIAL_TOKENS)
    fingerprint = "byte-v1"

    def _ids(self, text: str) -> list[int]:
        return [b + self.offset for b in text.encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, special ids skipped; broken UTF-8 (from truncation) becomes U+FFFD."""
        return bytes(int(i) - self.offset for i in ids if int(i) >= self.offset).decode("utf-8", errors="replace")


def _import_tokenizers() -> Any:
    return import_optional("tokenizers", "bpe", "the BPE tokenizer (or tokenizer='byte', which needs nothing)")


class BPETokenizer(_Tokenizer):
    """A byte-level BPE from the ``tokenizers`` library, with ``pad=0``, ``bos=1``, ``eos=2``.

    Build it with :func:`train_bpe_tokenizer`, reload it with :meth:`load`.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != [0, 1, 2]:
            raise ValueError(
                f"BPETokenizer: `tokenizer` must have the special tokens {list(SPECIAL_TOKENS)} at ids [0, 1, 2], "
                f"got ids {ids}"
            )
        self.vocab_size = tokenizer.get_vocab_size()
        self.fingerprint = "bpe-" + hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:16]

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def _ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, special ids skipped."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON (atomically) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.tokenizer.to_str())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Reload a tokenizer written by :meth:`save` (or any ``tokenizers`` JSON with the same special ids)."""
        tokenizers = _import_tokenizers()
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"BPETokenizer.load: `path` must be a tokenizer JSON file, got {str(path)!r}, which does not exist"
            )
        return cls(tokenizers.Tokenizer.from_file(str(path)))


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int, path: str | os.PathLike | None = None, min_frequency: int = 2
) -> BPETokenizer:
    """Train a byte-level BPE on ``texts`` (your training split), optionally saving it to ``path``.

    Offline and deterministic: the same texts (in the same order) and arguments give the same
    merges, ids and :attr:`BPETokenizer.fingerprint` in every process.

    Args:
        texts: the training texts.
        vocab_size: the largest vocabulary, at least 259 (3 specials + 256 bytes); fewer ids when
            the texts have fewer pairs seen ``min_frequency`` times.
        path: where to save the tokenizer JSON, or None.
        min_frequency: the fewest occurrences for a merge.

    Raises:
        MissingExtraError: the ``tokenizers`` library is not installed (``pip install 'lossbench[bpe]'``).

    Example:
        >>> texts = ["the movie was great", "the movie was awful", "a great story"] * 5
        >>> tok = train_bpe_tokenizer(texts, 300)
        >>> tok.encode("the movie was great")  # one id per word
        [266, 273, 271, 272]
        >>> tok.decode(tok.encode("the movie", add_bos=True))
        'the movie'
        >>> tok.fingerprint == train_bpe_tokenizer(texts, 300).fingerprint
        True
    """
    tokenizers = _import_tokenizers()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    floor = 256 + len(SPECIAL_TOKENS)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < floor:
        raise ValueError(
            f"train_bpe_tokenizer: `vocab_size` must be an int >= {floor} (3 specials + 256 bytes), got {vocab_size!r}"
        )
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bpe = BPETokenizer(tok)
    if path is not None:
        bpe.save(path)
    return bpe


HF_PREFIX = "hf:"
"""``tokenizer="hf:<name or folder>"``: that pretrained model's own tokenizer (:class:`HFTokenizer`)."""


def import_transformers() -> Any:
    """The ``transformers`` module, or a MissingExtraError naming the ``hf`` extra."""
    return import_optional("transformers", "hf", "tokenizer='hf:...' (a pretrained model's own tokenizer)")


class HFTokenizer(_Tokenizer):
    """A pretrained model's own tokenizer (``transformers.AutoTokenizer``), with that model's ids.

    Each text gets the model's special tokens (``[CLS] ... [SEP]`` for BERT; ``add_bos``/``add_eos`` are the
    tokenizer's to decide) and is truncated by the tokenizer to ``max_length`` ids, specials included. The
    padding id is the tokenizer's ``pad_token_id``; the vocabulary size counts its added tokens. The
    :attr:`fingerprint` covers its vocabulary, rules and special tokens. Build it with :meth:`load`.
    """

    def __init__(self, tokenizer, name: str) -> None:
        self.tokenizer, self.name = tokenizer, name
        if tokenizer.pad_token_id is None:
            raise ValueError(
                f"HFTokenizer: the tokenizer of {name!r} has no padding token; set one "
                "(tokenizer.pad_token = ...) and save it again with save_pretrained"
            )
        self.pad_id = int(tokenizer.pad_token_id)
        self.bos_id = _first_id(tokenizer, ("bos_token_id", "cls_token_id"), self.pad_id)
        self.eos_id = _first_id(tokenizer, ("eos_token_id", "sep_token_id"), self.pad_id)
        self.vocab_size = len(tokenizer)
        self.fingerprint = "hf-" + hashlib.sha256(_tokenizer_identity(tokenizer).encode()).hexdigest()[:16]

    def _rows(self, texts: list[str], max_length: int | None, add_bos: bool, add_eos: bool) -> list[list[int]]:
        encoded = self.tokenizer(
            texts, add_special_tokens=True, truncation=max_length is not None, max_length=max_length
        )
        return [list(ids) for ids in encoded["input_ids"]]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, special ids skipped."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, vocab_size={self.vocab_size})"

    @classmethod
    def load(cls, name: str) -> HFTokenizer:
        """``AutoTokenizer.from_pretrained(name)`` (a hub name or a folder; no remote code), wrapped."""
        transformers = import_transformers()
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(name, trust_remote_code=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"HFTokenizer: no tokenizer can be loaded from {name!r} (a hub name or a folder written by "
                f"tokenizer.save_pretrained): {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc!r}"
            ) from exc
        return cls(tokenizer, name)


def _first_id(tokenizer, names: tuple[str, ...], default: int) -> int:
    found = [getattr(tokenizer, n, None) for n in names]
    return int(next((i for i in found if i is not None), default))


def _tokenizer_identity(tokenizer) -> str:
    """What decides a Hugging Face tokenizer's ids: its rules (a fast tokenizer's JSON, else its vocabulary), its
    special tokens and truncation side."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    rules = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    extra = repr((type(tokenizer).__name__, sorted(tokenizer.special_tokens_map.items()), tokenizer.truncation_side))
    return rules + extra


def get_tokenizer(tokenizer: str) -> _Tokenizer:
    """``"byte"`` -> :class:`ByteTokenizer`; ``"hf:<name or folder>"`` -> :class:`HFTokenizer`; a path to a saved
    BPE JSON -> :class:`BPETokenizer`."""
    if tokenizer == "byte":
        return ByteTokenizer()
    if tokenizer.startswith(HF_PREFIX):
        return HFTokenizer.load(tokenizer[len(HF_PREFIX) :])
    return BPETokenizer.load(tokenizer)

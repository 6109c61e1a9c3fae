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
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

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
        return self._wrap(self._ids(text), max_length, add_bos, add_eos)

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
        rows = [self._wrap(ids, max_length, add_bos, add_eos) for ids in self._ids_batch(list(texts))]
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


def _import_tokenizers():
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the BPE tokenizer needs the `tokenizers` library: `pip install tokenizers` "
            "(or use tokenizer='byte', which needs nothing)"
        ) from exc
    return tokenizers


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
        ImportError: the ``tokenizers`` library is not installed (``pip install tokenizers``).

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


def get_tokenizer(tokenizer: str) -> _Tokenizer:
    """``"byte"`` -> :class:`ByteTokenizer`; a path to a saved BPE JSON -> :class:`BPETokenizer`."""
    if tokenizer == "byte":
        return ByteTokenizer()
    return BPETokenizer.load(tokenizer)

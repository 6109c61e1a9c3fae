"""A tiny random BERT and its WordPiece tokenizer, made offline and saved with ``save_pretrained``: what the tests
use in place of a hub model (nothing here touches the network)."""

from __future__ import annotations

from pathlib import Path

WORDS = {
    0: ["great", "wonderful", "lovely", "superb", "charming"],
    1: ["awful", "boring", "dreadful", "tedious", "clumsy"],
    2: ["long", "french", "recent", "black", "silent"],
}
THINGS = ["movie", "story", "plot", "cast", "ending", "score"]


def labelled_texts(rows_per_class: int = 30) -> dict[str, list]:
    """Distinct short sentences of 3 classes (the class is the adjective's kind), in a fixed order; at most 30 a
    class."""
    texts, labels = [], []
    for i in range(rows_per_class):
        for label, words in WORDS.items():
            word, thing = words[i % len(words)], THINGS[i // len(words)]
            texts.append(f"the {thing} was {word}" if i % 2 else f"a {word} {thing} indeed")
            labels.append(label)
    return {"text": texts, "label": labels}


def save_tiny_bert(folder: str | Path, hidden: int = 16, layers: int = 2, seed: int = 0, vocab_size: int = 150) -> Path:
    """A random ``BertModel`` (hidden ``hidden``, ``layers`` layers, 64 positions) and a WordPiece tokenizer of at
    most ``vocab_size`` ids trained on :func:`labelled_texts`, both saved into ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(labelled_texts()["text"], trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        pad_token_id=fast.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(folder)
    return folder


def save_texts(path: str | Path, rows_per_class: int = 30) -> Path:
    """:func:`labelled_texts` as a parquet file."""
    from datasets import Dataset

    Dataset.from_dict(labelled_texts(rows_per_class)).to_parquet(str(path))
    return Path(path)

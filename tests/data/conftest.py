"""Small local datasets written by the tests (no network), and a private datasets cache per test."""

import numpy as np
import pandas as pd
import pytest

LABELS = ["positive", "negative", "neutral"]


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "hf_cache")


def text_frame(n: int = 60) -> pd.DataFrame:
    """Texts of varied length whose last word is their (string) label."""
    rows = [{"text": "word " * (i % 9) + f"{i} " + LABELS[i % 3], "label": LABELS[i % 3]} for i in range(n)]
    return pd.DataFrame(rows)


def write_parquet(frame: pd.DataFrame, path) -> str:
    frame.to_parquet(path)
    return str(path)


@pytest.fixture
def text_parquet(tmp_path):
    return write_parquet(text_frame(), tmp_path / "text.parquet")


SIGNAL_WORDS = {
    "positive": ["great", "lovely", "superb", "wonderful"],
    "negative": ["awful", "boring", "dull", "terrible"],
    "neutral": ["okay", "average", "fine", "decent"],
}
FILLER_WORDS = "the film movie story actor plot scene was and it a with of this that ending music cast".split()


def review_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Short 3-class "reviews": 6-13 shared filler words with one or two words of their class inserted."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % 3]
        words = [str(w) for w in rng.choice(FILLER_WORDS, size=int(rng.integers(6, 14)))]
        for _ in range(int(rng.integers(1, 3))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(SIGNAL_WORDS[label])))
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture
def review_parquet(tmp_path):
    return write_parquet(review_frame(), tmp_path / "reviews.parquet")


def numeric_frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(5.0, 2.0, n), rng.normal(-1.0, 0.5, n)
    return pd.DataFrame({"id": np.arange(n, dtype=float), "x1": x1, "x2": x2, "y": 3 * x1 - x2 + 0.1})


@pytest.fixture
def numeric_csv(tmp_path):
    path = tmp_path / "numeric.csv"
    numeric_frame().to_csv(path, index=False)
    return str(path)

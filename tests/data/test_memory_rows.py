"""Loaders serve small splits from memory (MemoryRows): the same batches as reading the Arrow table."""

import pytest
import torch

from lossbench.data import HFDataModule, loading
from lossbench.data.loading import Collate, MemoryRows


def arrow_batches(dm, split, order, size):
    data = dm._split(split)
    collate = Collate(dm.spec, dm.padding)
    return [collate([data[i] for i in order[k : k + size]]) for k in range(0, len(order), size)]


@pytest.mark.parametrize("kind", ["digits", "text"])
def test_memory_rows_give_the_arrow_batches_of_every_split(kind, cache_dir, text_parquet):
    if kind == "digits":
        dm = HFDataModule("lossbench:digits", batch_size=32, cache_dir=cache_dir)
    else:  # variable-length token rows, padded per batch
        dm = HFDataModule("parquet", data_files=text_parquet, text_column="text", batch_size=8, cache_dir=cache_dir)
    dm.setup("fit")
    loaders = {"train": (dm.train_dataloader(), dm.train_order(0)), "validation": (dm.val_dataloader(), None)}
    for split, (loader, order) in loaders.items():
        assert isinstance(loader.dataset, MemoryRows) and loader.dataset.data is dm._split(split), split
        order = order if order is not None else list(range(len(dm._split(split))))
        expected = arrow_batches(dm, split, order, loader.batch_size)
        got = list(loader)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), (split, key)


def test_large_splits_stay_in_the_arrow_table(cache_dir, monkeypatch):
    monkeypatch.setattr(loading, "MAX_MEMORY_ROWS", 10)
    dm = HFDataModule("lossbench:wine", batch_size=16, cache_dir=cache_dir)
    dm.setup("fit")
    assert dm.train_dataloader().dataset is dm.train_dataset  # 124 rows > 10: read per batch, as before

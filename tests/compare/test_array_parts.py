"""A seed's losses train in several arrays when one would be too large: the same numbers as one array."""

from __future__ import annotations

import pytest

from lossbench.compare.execution import fused
from lossbench.compare.execution.fused import array_parts
from tests.compare.test_fused import RECIPE64, close, run


def test_array_parts_bound_members_and_values():
    assert array_parts([1] * 5, members=5, values=100) == [[0, 1, 2, 3, 4]]
    assert array_parts([1] * 5, members=2, values=100) == [[0, 1], [2, 3], [4]]
    assert array_parts([40, 40, 40], members=64, values=100) == [[0, 1], [2]]
    assert array_parts([500, 1], members=64, values=100) == [[0], [1]]  # too large alone: an array of its own
    assert array_parts([], members=2, values=100) == []


@pytest.mark.slow
def test_losses_split_over_arrays_train_as_in_one_array(tmp_path, monkeypatch):
    whole, one = run(tmp_path, RECIPE64, "fused", "whole")
    monkeypatch.setattr(fused, "MAX_ARRAY_MEMBERS", 2)
    split, parts = run(tmp_path, RECIPE64, "fused", "split")
    assert set(parts) == set(one)
    for key, (record, rows) in parts.items():
        other, other_rows = one[key]
        assert record.status == other.status == "finished"
        # ce and coral share the first array of each seed, sq trains in a second one
        assert record.execution["members"] == (["sq"] if key[0] == "sq" else ["ce", "coral"])
        assert other.execution["members"] == ["ce", "coral", "sq"]
        assert record.fingerprints == other.fingerprints
        for row, ref in zip(rows, other_rows, strict=True):
            for column in ref:
                if column != "wall_time":
                    assert close(row[column], ref[column], 1e-10), (key, row["step"], column)
        assert record.test and record.test.keys() == other.test.keys()
        for name, value in other.test.items():
            assert close(record.test[name], value, 1e-9), (key, name)
    assert not (split / "arrays").exists()  # every array's checkpoint is removed when it ends

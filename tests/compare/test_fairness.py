import hashlib

from lossbench.compare.analysis.fairness import check_fairness, data_fingerprint
from tests.compare.fake import LOSSES, SEEDS, make_record


def _records(changes=None, losses=LOSSES):
    changes = changes or {}
    out = []
    for loss in losses:
        for seed in SEEDS:
            record = make_record(loss, seed)
            for key, value in changes.get((loss, seed), {}).items():
                if key == "fingerprints":
                    record.fingerprints = {**record.fingerprints, **value}
                else:
                    setattr(record, key, value)
            out.append(record)
    return out


def test_identical_setups_pass():
    result = check_fairness(_records())
    assert result.ok and result.problems == [] and result.invalid == set()
    assert result.checked == {0: LOSSES, 1: LOSSES, 2: LOSSES}


def test_different_backbone_init_marks_the_minority():
    result = check_fairness(_records({("focal", 1): {"fingerprints": {"backbone_init": "other"}}}))
    assert not result.ok and result.invalid == {("focal", 1)}
    assert len(result.problems) == 1
    assert "Seed 1" in result.problems[0] and "'focal'" in result.problems[0]
    assert "backbone_init" in result.problems[0]


def test_no_majority_marks_the_whole_seed():
    result = check_fairness(_records({("focal", 2): {"setup_hash": "x" * 64}}, losses=["ce", "focal"]))
    assert result.invalid == {("ce", 2), ("focal", 2)}
    assert "setup_hash" in result.problems[0] and "no majority" in result.problems[0]


def test_data_order_compared_on_common_epochs_only():
    short = {"data_order": {"0": "order-0-0"}}  # trained one epoch: only epoch 0 is compared
    assert check_fairness(_records({("mse", 0): {"fingerprints": short, "epochs": 1}})).ok
    changed = {"data_order": {"0": "order-0-0", "1": "shuffled"}}
    result = check_fairness(_records({("mse", 0): {"fingerprints": changed}}))
    assert result.invalid == {("mse", 0)}
    assert "epoch 1" in result.problems[0] and "data_order" in result.problems[0]


def test_head_init_compared_among_equal_shapes():
    other_shape = {"head_shape": "(10, 8)", "head_init": "different"}
    assert check_fairness(_records({("mse", 0): {"fingerprints": other_shape}})).ok
    result = check_fairness(_records({("mse", 0): {"fingerprints": {"head_init": "different"}}}))
    assert result.invalid == {("mse", 0)} and "head_init" in result.problems[0]


def test_pairs_of_record_and_rows_accepted_and_missing_fingerprints_skipped():
    records = _records()
    records[0].fingerprints = {}  # a pending run: nothing to compare yet
    assert check_fairness([(r, []) for r in records]).ok


def test_data_fingerprint_is_sha256_over_epochs_in_order():
    record = make_record("ce", 0)
    record.fingerprints["data_order"] = {"10": "c", "2": "b", "0": "a"}
    assert data_fingerprint(record) == hashlib.sha256(b"a|b|c").hexdigest()
    record.fingerprints["data_order"] = {}
    assert data_fingerprint(record) is None

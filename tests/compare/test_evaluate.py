"""The test split's metrics from the kept predictions (lossbench.compare.execution.evaluate)."""

from __future__ import annotations

import pytest
import torch

from lossbench.compare.execution.evaluate import metrics_from_predictions, predict
from lossbench.compare.store.tensors import load_tensors, save_tensors
from lossbench.data import HFDataModule
from lossbench.module import LossbenchModule


def test_test_metrics_leave_out_the_heads_ignore_index_as_the_modules_own_metrics_do(tmp_path):
    """Issue 19: metrics_from_predictions (test metrics, `report --recompute`) used -100 whatever the head's
    ignore_index; with ignore_index=1 the kept predictions must give the module's own test metrics."""
    dm = HFDataModule(path="lossbench:wine", batch_size=16, seed=0)
    dm.setup()
    model = LossbenchModule(
        "ce",
        head_args={"num_classes": 3, "ignore_index": 1},
        data_spec=dm.spec,
        backbone={"d_model": 8, "nhead": 2, "num_layers": 1},
        seed=0,
    )
    model.eval()
    logged = model.metrics["test_metrics"]
    with torch.no_grad():
        for batch in dm.test_dataloader():
            logged.update(model.head, model(batch["inputs"]), batch["target"])
    expected = {f"test/{name}": float(metric.compute()) for name, metric in logged.metrics.items()}
    save_tensors(tmp_path / "predictions.pt", predict(model, dm.test_dataset, dm.spec))
    kept = load_tensors(tmp_path / "predictions.pt")  # what the record and `report --recompute` read
    assert (kept["target"] == 1).any()  # the ignored class is in the test split
    assert metrics_from_predictions("multiclass", 3, kept) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_test_metrics_of_classes_last_token_predictions_equal_the_modules_task_metrics(ignore_index):
    """(N, T, C) predictions (a per-token multiclass head) score as TaskMetrics does: one row per position."""
    from lossbench.heads import get_head
    from lossbench.metrics import TaskMetrics

    head = get_head("ce", in_features=4, num_classes=5, ignore_index=ignore_index)
    outputs = torch.randn(3, 6, 5)
    target = torch.randint(0, 5, (3, 6))
    target[0, :2] = ignore_index
    metrics = TaskMetrics("multiclass", 5, ignore_index)
    metrics.update(head, outputs, target)
    expected = {f"test/{name}": float(metric.compute()) for name, metric in metrics.metrics.items()}
    preds = {
        "target": target,
        "label": head.predict(outputs),
        "proba": head.predict_proba(outputs),
        "ignore_index": torch.tensor(ignore_index),
    }
    got = metrics_from_predictions("multiclass", 5, preds)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-7), name


def test_members_predicted_together_get_exactly_their_own_predictions_and_errors():
    """An array's members are predicted in one pass over the test split (predict_many): each gets what predict
    gives it alone, bit for bit (a class head with an ignore_index among them),
    a member whose head raises gets its error, and the others go on; each is left in the mode it was in."""
    from lossbench.compare.execution.evaluate import predict_many

    dm = HFDataModule(path="lossbench:wine", batch_size=16, seed=0, eval_batch_size=20)
    dm.setup()
    backbone = {"d_model": 8, "nhead": 2, "num_layers": 1}
    ce = LossbenchModule("ce", head_args={"ignore_index": 1}, data_spec=dm.spec, backbone=backbone, seed=0)
    focal = LossbenchModule("focal", data_spec=dm.spec, backbone=backbone, seed=1)
    broken = LossbenchModule("ce", data_spec=dm.spec, backbone=backbone, seed=2)
    broken.head.predict_proba = lambda outputs: (_ for _ in ()).throw(RuntimeError("broken head"))
    focal.eval()
    together = predict_many([ce, broken, focal], dm.test_dataset, dm.spec, batch_size=20)
    assert isinstance(together[1], RuntimeError) and "broken head" in str(together[1])
    assert [m.training for m in (ce, broken, focal)] == [True, True, False]
    for model, got in ((ce, together[0]), (focal, together[2])):
        alone = predict(model, dm.test_dataset, dm.spec, batch_size=20)
        assert got.keys() == alone.keys() and len(got["target"]) == len(dm.test_dataset) > 20  # several batches
        assert all(torch.equal(got[k], alone[k]) for k in alone)
    assert int(together[0]["ignore_index"]) == 1
    with pytest.raises(RuntimeError, match="broken head"):
        predict(broken, dm.test_dataset, dm.spec)

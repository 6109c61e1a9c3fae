"""Distributed runs: 2 CPU processes (Lightning's ``ddp`` strategy, gloo) give the 1-process numbers.

The slow tests run small scripts in subprocesses with ``strategy="ddp"``: Lightning's
subprocess launcher re-runs the script for rank 1, exactly as ``lossbench compare ...
--trainer.strategy ddp --trainer.devices 2`` does from a terminal (``ddp_spawn`` would run
one function in fresh processes, which is not how the engine runs and which it refuses).
The 1-process reference is the same script on one device, with the same global batch
(per-process batch = global / 2).

Tolerances. Both runs compute the same sums in float32 in a different order: DDP averages
two 4-sample mean gradients where one process takes one 8-sample mean, and the forward of
4 rows may use other kernel blockings than that of 8 rows. Each such sum differs by a few
ulps (float32 eps = 1.2e-7, so a relative 1e-7..1e-6 per reduction of 8 terms); 8 SGD steps
with momentum carry such differences along roughly linearly, giving a bound of about 1e-5
relative. Observed: at most 1.2e-7 absolute on weights and losses. We assert ``rtol=1e-5,
atol=1e-6``: 10-100x above what float32 reordering gives, and 1e4x below what one row more or
less in a batch (a wrong batch composition) or one duplicated validation row (padding) shifts
(1e-2..1e-1 on these values). Batch composition and fingerprints are compared exactly.

Weights are compared after SGD: Adam turns gradients that are zero in exact arithmetic
(the attention's key bias, to which softmax is invariant) into +-lr steps of their rounding
noise, in one process as in two, so those parameters differ by up to lr while every loss
and metric still agrees (the comparison-engine test runs AdamW and compares those).
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lossbench.distributed import (
    EvalDistributedSampler,
    OrderedDistributedSampler,
    Processes,
    RankMismatchError,
    process_sampler,
    same_on_all_ranks,
)

RTOL, ATOL = 1e-5, 1e-6


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)


# -- fast: the samplers and the rank-0-only writers --------------------------------------------------
class FakeTrainer:
    def __init__(self, replicas: int, rank: int) -> None:
        self.distributed_sampler_kwargs = {"num_replicas": replicas, "rank": rank}


def test_training_shares_interleave_into_the_one_process_order_with_padding():
    from lossbench.data import SeededShuffleSampler

    base = SeededShuffleSampler(11, seed=3)
    shares = [list(OrderedDistributedSampler(base, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [len(s) for s in shares] == [6, 6]
    interleaved = [x for pair in zip(*shares) for x in pair]
    assert interleaved == base.order() + base.order()[:1]  # padded with the epoch's first row, like DistributedSampler
    # per-process batches of 2 -> global batches of 4, in the 1-process order
    assert sorted(shares[0][:2] + shares[1][:2]) == sorted(base.order()[:4])
    sampler = OrderedDistributedSampler(base, num_replicas=2, rank=0)
    sampler.set_epoch(5)
    assert base.epoch == 5 and sampler.order(5) == base.order(5)
    # resumed after 2 global batches of 4: the shares continue the uninterrupted ones, padding included
    uninterrupted = [list(OrderedDistributedSampler(base, 2, r)) for r in (0, 1)]
    resumed = []
    for r in (0, 1):
        base.resume(epoch=5, start=8)
        resumed.append(list(OrderedDistributedSampler(base, 2, r)))
    assert resumed == [share[4:] for share in uninterrupted]


def test_evaluation_shares_cover_every_row_once_without_padding():
    shares = [list(EvalDistributedSampler(5, num_replicas=2, rank=r)) for r in (0, 1)]
    assert shares == [[0, 2, 4], [1, 3]]
    assert [len(EvalDistributedSampler(5, 2, r)) for r in (0, 1)] == [3, 2]


def test_process_sampler_leaves_one_process_alone_and_shards_under_ddp():
    from lossbench.data import SeededShuffleSampler

    base = SeededShuffleSampler(8, seed=0)
    assert process_sampler(base, 8, None, train=True) is base
    assert process_sampler(None, 8, FakeTrainer(1, 0), train=False) is None
    assert isinstance(process_sampler(base, 8, FakeTrainer(2, 1), train=True), OrderedDistributedSampler)
    assert isinstance(process_sampler(None, 8, FakeTrainer(2, 1), train=False), EvalDistributedSampler)
    with pytest.raises(ValueError, match="'validation' split has 1 rows, fewer than the 2 processes"):
        process_sampler(None, 1, FakeTrainer(2, 0), train=False, what="'validation' split")


def test_one_process_needs_no_process_group():
    processes = Processes.launch({"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"})
    assert processes.world_size == 1 and processes.is_global_zero and processes.broadcast(3) == 3
    same_on_all_ranks("anything", "a value")  # nothing to compare with


def test_spawned_processes_are_refused_before_anything_starts():
    with pytest.raises(ValueError, match="'ddp_spawn' starts its processes from a function.*use 'ddp'"):
        Processes.launch({"accelerator": "cpu", "devices": 2, "num_nodes": 1, "strategy": "ddp_spawn"})


def test_only_global_rank_zero_writes_records(tmp_path, monkeypatch):
    from lossbench.compare.store.records import write_json

    monkeypatch.setenv("LOCAL_RANK", "1")  # a process Lightning launched, before it joins the group
    write_json(tmp_path / "a.json", {"x": 1})
    assert not (tmp_path / "a.json").exists()
    monkeypatch.setenv("LOCAL_RANK", "0")
    write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").exists()


def test_a_fingerprint_disagreement_stops_the_comparison(tmp_path, monkeypatch):
    from lossbench.compare import Comparison, load_recipe
    from lossbench.compare.execution import runner
    from tests.compare.conftest import tiny_recipe

    def disagree(what, value):
        raise RankMismatchError(f"the processes disagree on {what}")

    monkeypatch.setattr(runner, "same_on_all_ranks", disagree)
    with pytest.raises(RankMismatchError, match="backbone_init fingerprint of loss 'ce' seed 0"):
        Comparison(load_recipe(tiny_recipe(losses=["ce"], seeds=[0])), tmp_path / "out", progress=False).run()


def test_a_batch_order_disagreement_stops_the_comparison_instead_of_failing_one_run(tmp_path, monkeypatch):
    from lossbench.compare import Comparison, load_recipe
    from lossbench.compare.execution import callbacks
    from tests.compare.conftest import tiny_recipe

    def disagree(what, value):
        raise RankMismatchError(f"the processes disagree on {what}")

    monkeypatch.setattr(callbacks, "same_on_all_ranks", disagree)
    with pytest.raises(RankMismatchError, match="batch order of epoch 0"):
        Comparison(load_recipe(tiny_recipe(losses=["ce"], seeds=[0])), tmp_path / "out", progress=False).run()


# -- slow: 2 processes against 1 -----------------------------------------------------------------
WORKER = textwrap.dedent('''
    """DEVICES DATA OUT: fit LossbenchModule on HFDataModule, record what each process saw."""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    import lightning.pytorch as pl
    from lossbench import LossbenchModule
    from lossbench.data import HFDataModule
    from lossbench.distributed import RankMismatchError, same_on_all_ranks

    devices, data, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    GLOBAL_BATCH = 8
    SMALL = {"d_model": 8, "nhead": 2, "num_layers": 1}
    dm = HFDataModule(data, feature_columns="x", batch_size=GLOBAL_BATCH // devices, eval_batch_size=2, seed=0,
                      cache_dir=os.path.join(out, "cache"))
    dm.setup("fit")
    train_ids = {tuple(r.tolist()): i for i, r in enumerate(dm.train_dataset["inputs"])}
    val_ids = {tuple(r.tolist()): i for i, r in enumerate(dm.val_dataset["inputs"])}
    assert len(train_ids) == len(dm.train_dataset) and len(val_ids) == len(dm.val_dataset)  # rows are distinct

    def ids(batch, table):
        return [table[tuple(r.tolist())] for r in batch["inputs"]]

    class Spy(pl.Callback):
        def __init__(self):
            self.steps, self.val_rows, self.evals = [], [], []
        def on_train_batch_start(self, trainer, module, batch, i):
            self.steps.append({"rows": ids(batch, train_ids)})
        def on_train_batch_end(self, trainer, module, outputs, batch, i):
            self.steps[-1]["loss"] = float(outputs["loss"])  # this process's share
            self.steps[-1]["logged"] = {k: float(v) for k, v in trainer.callback_metrics.items()
                                        if k in ("train/loss", "train/ce", "train/poly")}
        def on_validation_batch_start(self, trainer, module, batch, i, dataloader_idx=0):
            self.val_rows.append(ids(batch, val_ids))
        def on_validation_end(self, trainer, module):
            self.evals.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})

    def trainer(**kw):
        return pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                          logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, num_sanity_val_steps=0, deterministic=True, **kw)

    # 1. 8 steps (one epoch of 64 rows) of SGD with momentum, evaluating every 4 steps
    spy = Spy()
    model = LossbenchModule("poly1", data_spec=dm.spec, backbone=SMALL, optimizer="sgd", lr=0.1, seed=0)
    fit = trainer(max_steps=8, val_check_interval=4, check_val_every_n_epoch=None, log_every_n_steps=1,
                  callbacks=[spy])
    fit.fit(model, datamodule=dm)
    rank = fit.global_rank
    result = {
        "steps": spy.steps, "val_rows": spy.val_rows, "evals": spy.evals,
        "epoch_end": {k: float(v) for k, v in fit.callback_metrics.items() if k.endswith("_epoch")},
        "samplers": [type(fit.train_dataloader.sampler).__name__, type(fit.val_dataloaders.sampler).__name__],
    }
    validate = trainer(callbacks=[spy])
    validate.validate(model, datamodule=dm, verbose=False)  # trainer.validate: outside the DDP wrapper
    result["validate"] = spy.evals[-1]
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(out, f"weights_{devices}.pt"))

    # 2. a processes' disagreement raises on every process
    if devices > 1:
        try:
            same_on_all_ranks("a value that differs", f"value of rank {rank}")
        except RankMismatchError as exc:
            result["mismatch"] = str(exc)

    # 3. nan_policy="skip": one NaN row of the global batch 1 makes every process skip that step
    class Poison(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, i):
            # global row 1 of batch 1: row 0 of rank 1's share under 2 processes, row 1 under one
            if i == 1 and (trainer.global_rank == 1 if devices > 1 else True):
                batch["inputs"][1 if devices == 1 else 0, 0] = float("nan")

    skip = LossbenchModule("ce", data_spec=dm.spec, backbone=SMALL, optimizer="sgd", lr=0.1, seed=0, nan_policy="skip")
    trainer(max_steps=4, limit_val_batches=0, callbacks=[Poison()]).fit(skip, datamodule=dm)
    result["skipped_steps"] = skip.skipped_steps
    if rank == 0:
        torch.save(skip.state_dict(), os.path.join(out, f"skip_weights_{devices}.pt"))
    with open(os.path.join(out, f"result_{devices}_{rank}.json"), "w") as f:
        json.dump(result, f)
''')


def run(args: list[str], cwd: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **env}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The worker on 1 and on 2 processes over 64 training rows and 5 validation rows."""
    import datasets
    import numpy as np

    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)

    def split(n):
        x = rng.normal(size=(n, 4)).astype("float32")
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
        return datasets.Dataset.from_dict({"x": x.tolist(), "label": y.tolist()})

    data = root / "data"
    datasets.DatasetDict({"train": split(64), "validation": split(5), "test": split(5)}).save_to_disk(str(data))
    (root / "worker.py").write_text(WORKER)
    results = {}
    for devices in (1, 2):
        run(["worker.py", str(devices), str(data), str(root)], cwd=root)
        results[devices] = [json.loads((root / f"result_{devices}_{r}.json").read_text()) for r in range(devices)]
    return root, results


@pytest.mark.slow
def test_each_step_trains_the_one_process_batch_split_across_processes(runs):
    _, results = runs
    (one,), (r0, r1) = results[1], results[2]
    assert r0["samplers"] == ["OrderedDistributedSampler", "EvalDistributedSampler"], (
        "HFDataModule's loaders must take their samplers from lossbench.distributed.process_sampler: "
        f"Lightning's own ({r0['samplers']}) reshuffle the training order and pad the validation rows"
    )
    assert len(one["steps"]) == len(r0["steps"]) == len(r1["steps"]) == 8
    for k, (a, b, c) in enumerate(zip(one["steps"], r0["steps"], r1["steps"])):
        assert len(b["rows"]) == len(c["rows"]) == 4
        assert sorted(b["rows"] + c["rows"]) == sorted(a["rows"]), f"step {k}: the processes' rows are not the batch"
        assert not set(b["rows"]) & set(c["rows"])
        # equal shares: DDP's mean of the per-process means is the mean over the global batch
        assert close((b["loss"] + c["loss"]) / 2, a["loss"]), (k, a["loss"], b["loss"], c["loss"])
        # the logged step values (loss and its named terms) are the global batch's on every process
        assert a["logged"].keys() == b["logged"].keys() == {"train/loss", "train/ce", "train/poly"}
        assert b["logged"] == c["logged"]
        for key, value in a["logged"].items():
            assert close(value, b["logged"][key]), (k, key, value, b["logged"][key])


@pytest.mark.slow
def test_final_weights_match_one_process(runs):
    root, _ = runs
    one, two = torch.load(root / "weights_1.pt"), torch.load(root / "weights_2.pt")
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], rtol=RTOL, atol=ATOL), (name, (one[name] - two[name]).abs().max())


@pytest.mark.slow
def test_validation_with_unequal_batch_counts_evaluates_each_row_once_and_matches(runs):
    _, results = runs
    (one,), (r0, r1) = results[1], results[2]
    # 5 rows, 2 per batch: rank 0 serves [0, 2], [4] and rank 1 [1, 3] (no padded duplicate)
    evaluations = len(one["evals"])
    assert evaluations == 3  # steps 4 and 8 while fitting, then trainer.validate
    assert r0["val_rows"] == [[0, 2], [4]] * evaluations and r1["val_rows"] == [[1, 3]] * evaluations
    for a, b, c in zip(one["evals"], r0["evals"], r1["evals"]):
        assert a.keys() == b.keys() >= {"val/loss", "val/ce", "val/poly", "val/accuracy", "val/nll", "val/ece"}
        assert b == c  # logged values are the reduced ones on every process
        for key in a:
            assert close(a[key], b[key]), (key, a[key], b[key])


@pytest.mark.slow
def test_named_loss_terms_are_reduced_like_the_loss(runs):
    _, results = runs
    (one,), (r0, r1) = results[1], results[2]
    assert one["epoch_end"].keys() >= {"train/loss_epoch", "train/ce_epoch", "train/poly_epoch"}
    assert r0["epoch_end"] == r1["epoch_end"]
    for key, value in one["epoch_end"].items():
        assert close(value, r0["epoch_end"][key]), (key, value, r0["epoch_end"][key])
    epoch = one["epoch_end"]
    assert close(epoch["train/ce_epoch"] + epoch["train/poly_epoch"], epoch["train/loss_epoch"])


@pytest.mark.slow
def test_a_nan_on_one_process_skips_the_step_on_every_process(runs):
    root, results = runs
    assert [r["skipped_steps"] for r in results[2]] == [1, 1] and results[1][0]["skipped_steps"] == 1
    one, two = torch.load(root / "skip_weights_1.pt"), torch.load(root / "skip_weights_2.pt")
    for name in one:
        assert torch.isfinite(two[name]).all() and torch.allclose(one[name], two[name], rtol=RTOL, atol=ATOL), name


@pytest.mark.slow
def test_processes_that_disagree_raise_on_every_process(runs):
    _, results = runs
    for r in results[2]:
        assert "disagree on a value that differs" in r["mismatch"] and "rank 1: value of rank 1" in r["mismatch"]


# -- slow: the comparison engine on 2 processes ------------------------------------------------------
RECIPE = """\
name: ddp_tiny
data: {path: "lossbench:wine", batch_size: 8}
backbone: {d_model: 8, nhead: 2, num_layers: 1}
losses: [ce, poly1]
baseline: ce
optimizer: {name: adamw, lr: 0.01}
trainer: {max_steps: 20, eval_every_n_steps: 10}  # wine: 124 training rows, 16 steps an epoch
seeds: [0]
target: {metric: val/accuracy, mode: max, threshold: 0.5}
"""

# every file-system write under the output folder, with the writer's rank, goes to a log per process
# (audit hooks see each open for writing, rename, remove and mkdir); paths come from the environment, which
# the process Lightning launches for rank 1 inherits (it re-runs this script with the same arguments)
COMPARE = textwrap.dedent("""
    import atexit, os, sys
    out = os.path.realpath(os.environ["AUDIT_OUT"])
    log = open(f"{os.environ['AUDIT_LOG']}.{os.getpid()}", "a", buffering=1)
    WRITES = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate"}

    def audit(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
        else:
            writing, path = event in WRITES, (args[1] if event == "os.rename" else args[0] if args else None)
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            path = os.fsdecode(path)
            if os.path.realpath(path).startswith(out):
                log.write(f"{os.environ.get('LOCAL_RANK', '0')}\\t{event}\\t{path}\\n")

    sys.addaudithook(audit)
    atexit.register(lambda: log.write(f"{os.environ.get('LOCAL_RANK', '0')}\\texit\\t-\\n"))
    import torch
    torch.set_num_threads(1)
    from lossbench.cli import main
    sys.exit(main())
""")

TIMING = {"wall_time", "train_seconds", "seconds_per_step", "seconds_to_target"}


def number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def same_table(a: list[dict], b: list[dict], where: str) -> None:
    assert len(a) == len(b), where
    for row_a, row_b in zip(a, b):
        assert row_a.keys() == row_b.keys(), where
        for key in row_a.keys() - TIMING:
            x, y = number(row_a[key]), number(row_b[key])
            if isinstance(x, float) and isinstance(y, float):
                assert close(x, y), (where, key, x, y)
            else:
                assert x == y, (where, key, x, y)  # status, fingerprints, errors: exactly


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """The recipe on 1 process (in this process) and on 2 (``lossbench compare`` with ddp, global batch 8)."""
    from lossbench.compare import Comparison, load_recipe

    root = tmp_path_factory.mktemp("ddp-compare")
    (root / "recipe.yaml").write_text(RECIPE)
    (root / "compare.py").write_text(COMPARE)
    Comparison(load_recipe(str(root / "recipe.yaml")), root / "one", progress=False).run()
    done = run(
        [
            "compare.py",
            "compare",
            "recipe.yaml",
            "--output",
            "two",
            "--trainer.strategy",
            "ddp",
            "--trainer.devices",
            "2",
            "--data.batch_size",
            "4",
        ],
        cwd=root,
        AUDIT_OUT=str(root / "two"),
        AUDIT_LOG=str(root / "writes"),
        LOSSBENCH_FUSED_FORWARD="auto",  # its timed choice: rank 0's, broadcast at the same step to rank 1
    )
    logs = {}
    deadline = time.monotonic() + 30  # rank 1 may still be exiting when rank 0 is done
    while time.monotonic() < deadline:
        logs = {p.name: p.read_text() for p in root.glob("writes.*")}
        if len(logs) == 2 and all("\texit\t" in text for text in logs.values()):
            break
        time.sleep(0.2)
    return root, done, logs


@pytest.mark.slow
def test_compare_on_two_processes_gives_the_one_process_results(compared):
    root, _, _ = compared
    one, two = root / "one", root / "two"
    for name in ("comparison.json", "recipe.yaml", "results.csv", "report.md"):
        assert (two / name).is_file(), name
    same_table(
        list(csv.DictReader(open(one / "results.csv"))), list(csv.DictReader(open(two / "results.csv"))), "results.csv"
    )
    for loss in ("ce", "poly1"):
        run_one, run_two = one / "runs" / loss / "seed_0", two / "runs" / loss / "seed_0"
        same_table(
            list(csv.DictReader(open(run_one / "metrics.csv"))),
            list(csv.DictReader(open(run_two / "metrics.csv"))),
            f"{loss} metrics.csv",
        )
        record = json.loads((run_two / "record.json").read_text())
        assert record["status"] == "finished" and record["steps"] == 20
        assert record["execution"]["forward"]["path"] in ("vmapped", "looped")  # chosen on 2 processes as on one
        assert len(record["fingerprints"]["data_order"]) == 2  # two epochs: the sampler's epoch reached every process
        # fingerprints: computed on rank 0, equal to the 1-process ones (same weights, same global order)
        assert record["fingerprints"] == json.loads((run_one / "record.json").read_text())["fingerprints"]
        assert not (run_two / "checkpoints").exists()


@pytest.mark.slow
def test_compare_on_two_processes_writes_from_rank_zero_only_and_shows_one_progress(compared):
    root, done, logs = compared
    assert len(logs) == 2, f"expected one write log per process, got {sorted(logs)}"
    lines = [line.split("\t") for text in logs.values() for line in text.splitlines()]
    ranks = {rank for rank, event, _ in lines if event == "exit"}
    assert ranks == {"0", "1"}
    written = [(rank, event, path) for rank, event, path in lines if event != "exit"]
    assert [w for w in written if w[0] != "0"] == []  # rank 1 never wrote under the output folder
    for name in ("comparison.json", "recipe.yaml", "record.json", "metrics.csv", "results.csv", "report.md"):
        assert any(Path(path).name == name for _, _, path in written), f"rank 0 never wrote {name}"
    # one progress display and one line per run, from rank 0
    for line in ("[1/2] ce seed 0:", "[2/2] poly1 seed 0:"):
        assert done.stderr.count(line) + done.stdout.count(line) == 1, line

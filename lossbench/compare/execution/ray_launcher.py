"""The Ray launcher: a comparison's units of work as Ray tasks, in parallel over CPUs, GPUs and machines.

The driver (the process running ``lossbench compare``) holds the folder's lock, writes comparison.json, runs the
stages in their order (teachers, tuning trials, selection, final runs) and renders the report. Within a stage, each
unit (:mod:`~lossbench.compare.execution.unit`: one seed's fused arrays, or one sequential run) is a Ray task: a
worker process rebuilds the unit's data, initial state and models itself and writes its runs' files into the
results folder with the same atomic writes, so its records carry the same fingerprints and numbers as a local run.
The fairness proof stays inside one process: one seed's losses are one unit.

Every worker must reach the results folder at the same path (one machine: any local path; a cluster: a shared file
system): :meth:`RayLauncher.check_shared` makes a task on every node read the driver's probe file and write its own
before anything is written. A worker that dies (kill -9, a lost node) is retried by Ray ``launcher.retries`` times
and resumes from the unit's checkpoints; a unit that fails for good marks its unfinished runs failed while the
others finish. Ctrl-C or SIGTERM on the driver cancels the tasks; the folder resumes.

Only Ray core is used (``ray.remote`` tasks), not Ray's Lightning integration, and only through the optional extra
``lossbench[ray]``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lossbench import _killpoint as killpoint
from lossbench.compare.execution.probe import PROBE_PREFIX, probe_folder
from lossbench.compare.execution.unit import Unit, run_unit
from lossbench.compare.recipe.checks import RecipeError

INSTALL = "pip install lossbench[ray]"
CONNECT_TIMEOUT_S = 10  # an address that takes no TCP connection in this time is refused
GCS_PORT, CLIENT_PORT = 6379, 10001  # Ray's default ports: "host" alone is host:6379, "ray://host" host:10001
WAIT_S = 0.5  # the driver waits for its tasks this long at a time (Ctrl-C and SIGTERM act between waits)
PROBE_TIMEOUT_S = 120  # a node that cannot run the probe in this time is refused by name


def import_ray() -> Any:
    """``ray``, or a RecipeError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RecipeError(
            f"compare: `launcher.name: ray` needs Ray, which is not installed ({exc}): {INSTALL}"
        ) from None
    return ray


def _work(unit: dict[str, Any], cpus: float, data: Any = None) -> dict[str, Any]:
    """A Ray task: run one unit in this worker (:func:`~lossbench.compare.execution.unit.run_unit`) with ``cpus``
    torch threads; ``data``: the comparison's in-memory dataset, registered here under the same name."""
    import torch

    torch.set_num_threads(max(1, int(cpus)))
    if data is not None:
        from lossbench.data.memory import memory_name

        memory_name(data, "data.path", str(unit["recipe"]["data"].get("train_split", "train")))
    lines, failed = run_unit(Unit.from_dict(unit), launcher="ray")
    return {"lines": lines, "failed": failed}


def _driver_view(folder: Path) -> Path:
    """Where the driver writes its probe: the results folder (a test points it elsewhere to stand for a folder
    the workers do not share)."""
    return folder


class RayLauncher:
    """The ``launcher:`` section's Ray: connected on :meth:`open` (before anything is written), units run by
    :meth:`run`, and the Ray started here shut down on :meth:`close` (a Ray running before is left running)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.ray: Any = None
        self.started = False  # this launcher started the Ray it uses (a local one): it shuts it down

    def open(self) -> None:
        """Connect to ``launcher.address`` (or start a local Ray); a RecipeError names an unreachable address."""
        ray = import_ray()
        self.ray = ray
        if ray.is_initialized():  # the caller's own ray.init(): used as it is
            return
        address = self.settings.get("address")
        _check_reachable(address)
        env = {"PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                runtime_env={"env_vars": env},  # the driver's folder: a class path of the user's own imports
            )
        except Exception as exc:  # ConnectionError, TimeoutError, ValueError: one clear line, nothing written
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise RecipeError(
                f"compare: cannot reach the Ray cluster at `launcher.address`={address!r} ({first}); start it "
                "(`ray start --head`), give its address, or leave `launcher.address` out for a local Ray"
            ) from None
        self.started = address is None

    def close(self) -> None:
        if self.started and self.ray is not None:
            self.ray.shutdown()
        self.started = False

    # -- the folder --------------------------------------------------------------------------------------------
    def check_shared(self, folder: Path) -> None:
        """Every alive node reads the driver's probe file in ``folder`` and writes its own, which the driver
        reads back: a RecipeError names the folder and the first node that does not share it."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray, token = self.ray, secrets.token_hex(8)
        view = _driver_view(folder)
        mine = view / f"{PROBE_PREFIX}{token}.tmp"
        mine.write_text(token, encoding="utf-8")
        probe = ray.remote(num_cpus=0, max_retries=0)(probe_folder)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                str(folder), token
            )
            for n in nodes
        ]
        try:
            found = ray.get(refs, timeout=PROBE_TIMEOUT_S)
        finally:
            mine.unlink(missing_ok=True)
        problems = []
        for node, result in zip(nodes, found):
            written = view / result["written"] if result.get("written") else None
            if result["problem"] is None and (written is None or not written.is_file()):
                result["problem"] = "the driver does not see the file it wrote there"
            if written is not None:
                written.unlink(missing_ok=True)
            if result["problem"]:
                problems.append(f"node {node.get('NodeManagerAddress')} ({result['host']}): {result['problem']}")
        if problems:
            raise RecipeError(
                f"compare: the results folder {str(folder)!r} is not shared with every Ray worker: "
                f"{'; '.join(problems)}; put --output on a file system every node mounts at the same path"
            )

    # -- the units ---------------------------------------------------------------------------------------------
    def run(
        self, units: list[Unit], data: Any, on_done: Callable[[Unit, dict[str, Any] | None, str | None], None]
    ) -> None:
        """Run ``units`` as Ray tasks, all at once (Ray queues what the cluster cannot hold); ``on_done(unit,
        result, error)`` is called on the driver as each one ends (``error``: why it failed for good)."""
        ray, resources = self.ray, self.settings["resources"]
        task = ray.remote(
            num_cpus=resources["cpu"],
            num_gpus=resources["gpu"],
            max_retries=int(self.settings["retries"]),
            retry_exceptions=False,  # a worker that died is retried (the unit resumes); an error in it is not
        )(_work)
        shared = ray.put(data) if data is not None else None
        pending, ended = {task.remote(unit.to_dict(), resources["cpu"], shared): unit for unit in units}, 0
        with _cancelled_on_exit(ray, pending):
            while pending:  # a short wait: the driver's signal handlers run between waits
                done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                for ref in done:
                    unit = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # RayTaskError, WorkerCrashedError after the retries, ...
                        on_done(unit, None, _task_error(exc))
                    else:
                        on_done(unit, result, None)
                    ended += 1
                    killpoint.kill_point(f"unit:{ended}")  # test hook: the driver dies after a unit ended


def _check_reachable(address: str | None) -> None:
    """A RecipeError, within :data:`CONNECT_TIMEOUT_S`, when ``host:port`` (or ``ray://host:port``) takes no
    connection: ``ray.init`` would wait for it for many minutes. ``auto`` and None are Ray's to find."""
    if address is None or address == "auto":
        return
    client = address.startswith("ray://")
    where = address[len("ray://") :] if client else address
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        host, port = where, str(CLIENT_PORT if client else GCS_PORT)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RecipeError(
            f"compare: cannot reach the Ray cluster at `launcher.address`={address!r} ({host}:{port} takes no "
            f"connection: {exc}); start it (`ray start --head`), give its address, or leave `launcher.address` "
            "out for a local Ray"
        ) from None


def _task_error(exc: BaseException) -> str:
    """A failed task's error in one line: the unit's own exception when there is one."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1][:300] if text else 'no message'}"


@contextmanager
def _cancelled_on_exit(ray: Any, pending: dict[Any, Unit]) -> Iterator[None]:
    """Cancel the tasks still pending when the driver stops early (Ctrl-C, SIGTERM, an error): their units resume."""
    try:
        yield
    finally:
        for ref in list(pending):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or the cluster is gone: nothing left to cancel
                pass

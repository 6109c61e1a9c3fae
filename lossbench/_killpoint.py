"""Test hook: a comparison process SIGKILLs itself at a named moment (``tests/compare/test_kill.py``).

Only for tests of crash safety. ``LOSSBENCH_TEST_KILL_AT="<point>"`` or ``"<point>@<n>"`` makes
the process ``kill -9`` itself the n-th time (default: the first) it reaches that point
(``LOSSBENCH_TEST_KILL_SIGNAL=TERM`` or ``INT`` sends that signal instead, as a scheduler or Ctrl-C would):

- ``run:<i>``: before planned run ``i`` (1-based) starts, i.e. between runs;
- ``step:<k>``: at the start of a run's training batch after ``k`` optimizer steps (mid-run);
- ``validate:<k>``: at the start of an evaluation after ``k`` steps (``validate:0``: the stand-alone
  evaluation of the initial weights);
- ``test``: before a run's test split is evaluated;
- ``finished``: after a run's record says finished, before its checkpoints are deleted;
- ``write:<file name>``: with half of that file's temporary copy written (``record.json``,
  ``metrics.csv``, ``results.csv``, ``last.ckpt`` ...);
- ``unit:<n>``: on a Ray launcher's driver, after its n-th unit ended (workers never reach it).

``LOSSBENCH_TEST_KILL_ONCE=<file>`` fires the point only if ``<file>`` does not exist yet (it is created then):
so one process of many (a Ray worker, which Ray starts again after the kill) dies, once.

Unset (always, outside these tests) the variable is read once at import and every point costs
one comparison with None.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from typing import Any

_KILL_AT = os.environ.get("LOSSBENCH_TEST_KILL_AT") or None
_SIGNAL = getattr(signal, "SIG" + os.environ.get("LOSSBENCH_TEST_KILL_SIGNAL", "KILL"))
_reached: Counter[str] = Counter()


def armed() -> bool:
    return _KILL_AT is not None


def kill_point(point: str) -> None:
    """SIGKILL this process if ``point`` is the armed one and reached for the armed time."""
    if _KILL_AT is None:
        return
    _reached[point] += 1
    name, _, times = _KILL_AT.partition("@")
    if point == name and _reached[point] == int(times or 1) and _first_time():
        os.kill(os.getpid(), _SIGNAL)


def _first_time() -> bool:
    """Without ``LOSSBENCH_TEST_KILL_ONCE``, always; with it, only for the process that creates that file."""
    once = os.environ.get("LOSSBENCH_TEST_KILL_ONCE")
    if not once:
        return True
    try:
        os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def callbacks() -> list[Any]:
    """The ``step:<k>`` and ``validate:<k>`` points as a Lightning callback while armed; none otherwise."""
    if _KILL_AT is None or not _KILL_AT.startswith(("step:", "validate:")):
        return []
    import lightning.pytorch as pl

    class StepKill(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            kill_point(f"step:{trainer.global_step}")

        def on_validation_start(self, trainer, pl_module) -> None:
            kill_point(f"validate:{trainer.global_step}")

    return [StepKill()]

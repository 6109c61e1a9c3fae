"""Pre-emption: SIGTERM (batch schedulers, ``timeout``, systemd) and SIGINT (Ctrl-C) stop a comparison cleanly.

Every file a comparison writes is written atomically and every run resumes from its last
checkpoint, so any moment is a safe point to stop: the signal raises :class:`Interrupted` in the
main thread wherever it is (training, a stand-alone evaluation, between runs), the run being
trained stays ``running`` in its record, and rerunning the same command resumes it. The command
line prints where it stopped and exits ``128 + signal`` (143 for SIGTERM, 130 for SIGINT).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A comparison stopped by a signal (a BaseException, like KeyboardInterrupt: no ``except Exception`` eats it).

    >>> exc = Interrupted(signal.SIGTERM)
    >>> exc.name, exc.exit_code
    ('SIGTERM', 143)
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.name = signal.Signals(self.signum).name
        super().__init__(f"stopped by {self.name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Interrupted`; the previous handlers come back after.

    Lightning's own SIGTERM handler (installed while fitting) runs first and forwards the signal to
    the other processes of a distributed run; then this one raises.
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

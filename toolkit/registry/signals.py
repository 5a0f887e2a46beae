"""SIGTERM and SIGINT turned into an exception during a merge's writes, and only then.

GitLab Runner cancels a job by sending its script SIGTERM, and SIGKILL after a grace period
(gitlab-runner helpers/process/killer_unix.go: `Terminate` then `ForceKill`); Jenkins aborts a
`sh` step's processes with a signal too. Killed between two PUTs, a merge would leave the
release tag and the child tags half-moved; as an exception, the signal lets the transaction
roll back. Outside the write phase the default stays: nothing is written yet, so dying at
once is right.

Only the main thread can install handlers (the CLI's merge runs there; a merge run in another
thread, as tests do, keeps the process's handlers).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from .transaction import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WritePhase:
    """While active, the first SIGTERM/SIGINT raises Interrupted; later ones (and any that
    come while `deferred`, e.g. during the rollback) are only remembered."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.deferred = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if first and not self.deferred:
            raise Interrupted(signum, signal.Signals(signum).name)

    @contextmanager
    def defer(self) -> Iterator[None]:
        """Signals are remembered, not raised: a rollback or repair must run to its end."""
        was, self.deferred = self.deferred, True
        try:
            yield
        finally:
            self.deferred = was

    def pending(self) -> Interrupted | None:
        """A signal that came while deferred, as the exception it would have been."""
        if self.received is None:
            return None
        return Interrupted(self.received, signal.Signals(self.received).name)


@contextmanager
def write_phase() -> Iterator[WritePhase]:
    phase = WritePhase()
    if threading.current_thread() is not threading.main_thread():
        yield phase
        return
    previous: dict[int, Any] = {s: signal.signal(s, phase.handle) for s in SIGNALS}
    try:
        yield phase
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

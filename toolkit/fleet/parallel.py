"""Run one function per host on a bounded pool; every host gets an outcome, none stops another.

Like Fabric's GroupResult: failures are collected, not raised midway, so one unreachable
host never leaves the others half-done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..inventory import Host

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    host: Host
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def for_each_host(
    hosts: Sequence[Host],
    work: Callable[[Host], T],
    *,
    workers: int = 8,
    expected: tuple[type[Exception], ...] = (Exception,),
    on_done: Callable[[Outcome[T]], None] | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> list[Outcome[T]]:
    """Outcomes in inventory order; `expected` errors become the host's error message (without
    the host's name in front: `own_message`).

    `meanwhile` runs in the calling thread once the hosts' work has started (e.g. setting up
    what the work waits for later); if it raises, the hosts' work is waited for and its
    outcomes dropped, and the exception propagates."""
    outcomes: dict[str, Outcome[T]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(hosts) or 1))) as pool:
        futures = {pool.submit(work, host): host for host in hosts}
        if meanwhile is not None:
            meanwhile()
        for future in as_completed(futures):
            host = futures[future]
            try:
                outcome: Outcome[T] = Outcome(host, value=future.result())
            except expected as exc:
                outcome = Outcome(host, error=own_message(host, exc))
            outcomes[host.name] = outcome
            if on_done is not None:
                on_done(outcome)
    return [outcomes[host.name] for host in hosts]


def own_message(host: Host, exc: BaseException) -> str:
    """The error as the host's outcome carries it: the outcome names the host already, so a
    message that starts with the host's name ("build-1: cannot connect …", as the fleet
    modules' errors do, to stand alone) loses that prefix — no "build-1: build-1: …"."""
    text = str(exc) or type(exc).__name__
    return text.removeprefix(f"{host.name}: ")

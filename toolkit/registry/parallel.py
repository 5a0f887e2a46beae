"""Bounded concurrency for registry requests, with outcomes in input order.

A merge's requests of one kind (N manifest reads, N config reads, N child-tag PUTs) do not
depend on each other, so they go out together: on a registry 50-100 ms away a merge costs
round trips of latency, not requests. Two rules keep that deterministic:

- results come back in input order, and the error raised is the one of the *first failing
  item in input order* (later items still queued are cancelled, earlier ones are awaited), so
  a run with two bad sources always names the same one;
- `attempt_all` runs every item and returns every outcome: a write round must know which of its
  PUTs were sent, whatever else failed, to put them back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Generic, TypeVar

# Requests in flight per merge. These are small manifest and config requests, not layer
# transfers (for which pullers limit themselves to 3-5 for bandwidth's sake): 16 lets an
# 8-platform merge send each round, target and child tags together (N + 1), as one wave.
DEFAULT_WORKERS = 16

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """What one item of `attempt_all` came to: its value, or the exception it raised."""

    item: T
    value: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def ordered_map(
    fn: Callable[[T], R], items: Sequence[T], workers: int = DEFAULT_WORKERS
) -> list[R]:
    """`[fn(x) for x in items]`, at most `workers` at a time; raises the error of the first
    failing item in input order.

    On a failure, items after it that have not started are cancelled; items before it always
    run to the end (one of them may fail too, and then its error is the one raised).
    """
    if len(items) <= 1 or workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        position = {future: index for index, future in enumerate(futures)}
        for future in as_completed(futures):
            if not future.cancelled() and future.exception() is not None:
                for later in futures[position[future] + 1 :]:
                    later.cancel()
    # Only items after a failed one were cancelled, so the first failure in input order is
    # found before any cancelled item.
    for future in futures:
        if future.cancelled():
            continue
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]


def attempt_all(
    fn: Callable[[T], R], items: Sequence[T], workers: int = DEFAULT_WORKERS
) -> list[Outcome[T, R]]:
    """Run `fn` on every item (at most `workers` at a time) and return every outcome, in input
    order; nothing is cancelled and nothing is raised."""

    def one(item: T) -> Outcome[T, R]:
        try:
            return Outcome(item, fn(item))
        except Exception as exc:  # the caller decides; every outcome is reported
            return Outcome(item, error=exc)

    if len(items) <= 1 or workers <= 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(one, items))

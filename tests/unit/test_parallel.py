"""parallel.py: outcomes in input order, the first failure in input order raised, bounded."""

from __future__ import annotations

import threading
import time

import pytest

from toolkit.registry.parallel import attempt_all, ordered_map


def test_results_come_back_in_input_order() -> None:
    def slow_first(n: int) -> int:
        time.sleep(0.05 if n == 0 else 0)
        return n * n

    assert ordered_map(slow_first, [0, 1, 2, 3], workers=4) == [0, 1, 4, 9]


def test_the_error_of_the_first_failing_item_in_input_order_is_raised() -> None:
    """Item 1 fails late, item 3 fails at once: item 1's error, every time."""
    release = threading.Event()

    def work(n: int) -> int:
        if n == 3:
            release.set()
            raise ValueError("three")
        if n == 1:
            release.wait(5)
            raise ValueError("one")
        return n

    for _ in range(20):
        release.clear()
        with pytest.raises(ValueError, match="one"):
            ordered_map(work, [0, 1, 2, 3, 4], workers=5)


def test_queued_items_after_a_failure_are_not_started() -> None:
    started: list[int] = []

    def work(n: int) -> int:
        started.append(n)
        if n == 0:
            raise RuntimeError("first")
        time.sleep(0.01)
        return n

    with pytest.raises(RuntimeError, match="first"):
        ordered_map(work, list(range(50)), workers=2)
    assert len(started) < 50


def test_no_more_than_workers_at_once() -> None:
    lock = threading.Lock()
    running = peak = 0

    def work(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return n

    ordered_map(work, list(range(24)), workers=3)
    assert 1 < peak <= 3


def test_attempt_all_runs_everything_and_reports_each_outcome() -> None:
    def work(n: int) -> int:
        if n % 2:
            raise KeyError(n)
        return n

    outcomes = attempt_all(work, [0, 1, 2, 3], workers=4)
    assert [o.item for o in outcomes] == [0, 1, 2, 3]
    assert [o.value for o in outcomes if o.ok] == [0, 2]
    assert [type(o.error) for o in outcomes if not o.ok] == [KeyError, KeyError]

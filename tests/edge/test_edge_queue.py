"""The one background queue of the sinks (edge/sinks/queue.py): never blocks the producer, drops
the oldest when full and counts it, waits for idle, flushes on close and counts what was left."""

from __future__ import annotations

import threading
import time

from edge.sinks.queue import DropOldest, Worker


def test_drop_oldest_counts_what_it_drops() -> None:
    items: DropOldest[int] = DropOldest(3, "full (%d)")
    for n in range(5):
        items.append(n)
    assert list(items) == [2, 3, 4] and items.dropped == 2 and len(items) == 3
    assert items.clear() == 3 and not items


def test_worker_handles_in_order_and_close_flushes() -> None:
    seen: list[int] = []
    work = Worker("test-worker", seen.append, 100, "full (%d)")
    for n in range(50):
        assert work.put(n)
    assert work.wait_idle(5.0)
    assert seen == list(range(50)) and work.pending == 0
    assert work.close(1.0) == 0
    assert not work.put(99) and seen[-1] == 49  # closed: ignored


def test_a_stuck_handler_never_blocks_put_and_close_gives_up_in_time() -> None:
    release = threading.Event()
    work = Worker("stuck-worker", lambda item: release.wait(5.0), 4, "full (%d)")
    work.put(0)
    deadline = time.monotonic() + 2
    while work.items and time.monotonic() < deadline:  # the handler holds item 0
        time.sleep(0.01)
    start = time.monotonic()
    for n in range(1, 20):
        work.put(n)
    assert time.monotonic() - start < 0.05  # put never waits
    assert work.dropped == 15 and list(work.items) == [16, 17, 18, 19]
    start = time.monotonic()
    assert work.close(0.3) == 5  # four queued and one in hand
    assert time.monotonic() - start < 1.5
    assert work.stopping.is_set()
    release.set()

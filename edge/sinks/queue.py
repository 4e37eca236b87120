"""The bounded background queue every slow sink shares (webhook, snapshots, history; the MQTT
sink keeps its messages in a `DropOldest` too).

The camera loop must never wait for a network or a disk: it `put`s an item and goes on. When the
worker falls behind and the queue is full, the *oldest* item is dropped and counted (the newest
alert is the one a person at the door wants), with one warning. `close` gives the worker
`timeout` seconds to finish what is queued, then stops it and says how many items were left;
`wait_idle` lets tests (and `close`) wait until everything queued was handled.

Written here rather than with `queue.Queue`: that blocks or raises when full, where a camera needs
drop-oldest with a count, and it has no "idle" (queued or in hand) to wait for.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

log = logging.getLogger("edge")
T = TypeVar("T")


class DropOldest(Generic[T]):
    """A FIFO of at most `size` items that drops (and counts) the oldest one when full. Not
    locked: its owner's lock guards it. `warning` (with `%d` for the size) is logged once."""

    def __init__(self, size: int, warning: str) -> None:
        if size < 1:
            raise ValueError("a queue needs room for at least one item")
        self._items: collections.deque[T] = collections.deque(maxlen=size)
        self.warning = warning
        self.dropped = 0

    @property
    def size(self) -> int:
        return self._items.maxlen or 0

    def append(self, item: T) -> None:
        if len(self._items) == self.size:
            self.dropped += 1
            if self.dropped == 1:
                log.warning(self.warning, self.size)
        self._items.append(item)

    def popleft(self) -> T:
        return self._items.popleft()

    def clear(self) -> int:
        """Empty the queue; how many items were in it."""
        count = len(self._items)
        self._items.clear()
        return count

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)


class Worker(Generic[T]):
    """One daemon thread calling `handle(item)` for each item `put` from the camera loop.

    `stopping` is set when `close` gives up on the queue: a handler that waits (a retry's
    backoff) should wait on it and return early."""

    def __init__(self, name: str, handle: Callable[[T], None], size: int, warning: str) -> None:
        self.items: DropOldest[T] = DropOldest(size, warning)
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self._handle = handle
        self._busy = self._closed = False
        self.unsent = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> bool:
        """Queue `item` (never blocks); False once the worker is closed."""
        with self.cond:
            if self._closed:
                return False
            self.items.append(item)
            self.cond.notify_all()
        return True

    @property
    def dropped(self) -> int:
        return self.items.dropped

    @property
    def pending(self) -> int:
        """Items queued or in the handler's hands."""
        with self.cond:
            return len(self.items) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until every queued item was handled."""
        with self.cond:
            return self.cond.wait_for(lambda: not (self.items or self._busy), timeout)

    def close(self, timeout: float) -> int:
        """Handle what is queued (up to `timeout` seconds), stop the thread; the items this call
        left over (0 when already closed)."""
        with self.cond:
            if self._closed:
                return 0
            self._closed = True
        self.wait_idle(timeout)
        with self.cond:
            self.unsent = len(self.items) + self._busy
            self.items.clear()
            self.stopping.set()
            self.cond.notify_all()
        self._thread.join(timeout=max(0.1, timeout))
        return self.unsent

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.items or self.stopping.is_set())
                if self.stopping.is_set():
                    return
                item = self.items.popleft()
                self._busy = True
            try:
                self._handle(item)
            finally:
                with self.cond:
                    self._busy = False
                    self.cond.notify_all()

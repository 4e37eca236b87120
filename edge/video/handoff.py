"""A one-item handoff between a producer thread and the frame loop.

The producer (capture, or detection one frame ahead) `put`s items; the consumer `take`s the newest.
With `wait=False` a new item replaces one that was never taken (a live camera drops frames instead
of building a backlog); with `wait=True` the producer waits until the slot is free (files, where
every frame counts). Memory stays at one item whatever the speeds.
"""

from __future__ import annotations

import threading
from typing import Generic, Self, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """Thread-safe single slot (see module docstring)."""

    def __init__(self) -> None:
        self._slot: T | None = None
        self._ended = False
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T, wait: bool) -> bool:
        """Hand over `item`; True when it replaced an item that was never taken."""
        with self._cond:
            if wait:
                while self._slot is not None and not self._closed:
                    self._cond.wait(0.1)
            replaced = self._slot is not None
            self._slot = item
            self._cond.notify_all()
            return replaced

    def take(self, timeout: float = 0.1) -> T | None:
        """The newest item, waiting at most `timeout` seconds; None if none came."""
        with self._cond:
            if self._slot is None and not self._ended:
                self._cond.wait(timeout)
            item, self._slot = self._slot, None
            self._cond.notify_all()
            return item

    def end(self) -> None:
        """The producer has no more items."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop: wake a producer waiting for a free slot."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        """True once the producer has ended and its last item was taken."""
        with self._cond:
            return self._ended and self._slot is None


class HandoffThread(Generic[T]):
    """A daemon thread producing items into a `Handoff`; subclasses implement `_run`.

    The consumer calls `next()` for the newest item and `finished` to know when to stop asking.
    """

    def __init__(self, name: str) -> None:
        self._handoff: Handoff[T] = Handoff()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        """True once the producer has ended and its last item was taken."""
        return self._handoff.finished

    def next(self, timeout: float = 0.1) -> T | None:
        """The newest unprocessed item, waiting at most `timeout` seconds; None if none came."""
        return self._handoff.take(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._handoff.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        raise NotImplementedError

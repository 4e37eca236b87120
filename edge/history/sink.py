"""`edge run --history PATH`: alerts, stats and person tracks into the SQLite history.

`HistorySink` is a sink (`edge.sinks.outputs.Sink`). The camera loop must not wait for a disk,
least of all an SD card, so `write` and `event` only append to a bounded queue under a lock
(edge/sinks/queue.py's `DropOldest`: when it is full the oldest item is dropped and counted) and
return, without waking anyone; ONE writer thread drains the queue every `POLL` seconds, turns
frame records into track summaries, inserts the rows and commits in small batches: every
`COMMIT_SECONDS` or `COMMIT_ROWS` rows, whichever comes first. The records are not copied (the
loop never changes one after handing it out). A SIGKILL therefore loses at most the batch not
yet committed, and the WAL journal (edge/history/store.py) leaves a database that opens and
passes `PRAGMA integrity_check` (after a power cut, at worst the last commits as well).
`close` drains the queue, writes a row for every track still open and commits; `wait_idle`
(for tests and callers that read while the run goes on) waits until everything queued so far is
committed.

There is no "track ended" event in the loop, so the sink follows the tracks itself, from the
per-frame records (each face's `track`, smoothed `label`, `detector_score`, `box`, `in_zone`): a
track ends when it has not been seen for more than the tracker's `max_age` + `reid_age` processed
frames (the tracker's own rule: until then its person may come back), at the next photo for a
photo's faces, or when the run closes. Whether it counted as a person is decided by
`Tracker.counted` itself, on the same sums the tracker keeps (from the rounded values of the
records), so `edge history` counts people the way the run summary does. A database error (a
full disk) loses that batch, is said once, counted in the summary, and the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.history import store
from edge.sinks.queue import DropOldest
from edge.tracking.alerts import masked_labels
from edge.tracking.events import ALERT, STATS, event_json
from edge.tracking.tracks import Tracker, TrackerOptions

log = logging.getLogger(__name__)

FRAME = "frame"  # the queue's kind for a frame record (events carry their own "event" kind)


def _when(record: dict[str, Any]) -> float:
    """A record's time (Unix seconds); now for one without (a hand-made record)."""
    value = record.get("time")
    return time.time() if value is None else float(value)


def _json(value: Any) -> str | None:
    """A JSON column (the sinks' one encoder); SQL NULL for a field the event lacks."""
    return None if value is None else event_json(value)


@dataclass
class SeenTrack:
    """What the frame records told about one track. The sums are named as `Track`'s in
    edge/tracking/tracks.py because `Tracker.counted` reads them: the count rule stays one."""

    id: int
    first: float
    last: float
    seen_at: int  # the book's number of the frame it was last seen in
    source: str | None  # the photo it is in (None on video)
    still: bool
    hits: int = 0
    zone_hits: int = 0
    score_sum: float = 0.0
    side_sum: float = 0.0
    votes: Counter[str] = field(default_factory=Counter)  # smoothed label per in-zone sighting

    def majority(self) -> str | None:
        return self.votes.most_common(1)[0][0] if self.votes else None


class TrackBook:
    """The open tracks of a run, followed from its frame records (module docstring)."""

    def __init__(self, labels: Sequence[str] = (), tracking: TrackerOptions | None = None) -> None:
        self.rule = Tracker(labels, tracking)  # only its `counted` and options are used
        self.open: dict[int, SeenTrack] = {}
        self.frames = 0

    def update(self, record: dict[str, Any]) -> list[SeenTrack]:
        """Take one frame record; the tracks that ended with it."""
        self.frames += 1
        when = _when(record)
        source = record.get("source")
        still = source is not None
        present = set()
        for face in record.get("faces") or ():
            number = int(face["track"])
            present.add(number)
            seen = self.open.get(number)
            if seen is None:
                seen = self.open[number] = SeenTrack(number, when, when, self.frames, source,
                                                     still)
            x1, y1, x2, y2 = face["box"]
            seen.last, seen.seen_at = when, self.frames
            seen.hits += 1
            seen.score_sum += float(face.get("detector_score", 0.0))
            seen.side_sum += min(x2 - x1, y2 - y1)
            if face.get("in_zone", True):
                seen.zone_hits += 1
                seen.votes[str(face["label"])] += 1
        options = self.rule.options
        max_age = options.max_age + options.reid_age  # a track may come back until then
        ended = [s for n, s in self.open.items() if n not in present
                 and (still or self.frames - s.seen_at > max_age)]
        for seen in ended:
            del self.open[seen.id]
        return ended

    def close(self) -> list[SeenTrack]:
        """Every track still open (the run ends)."""
        ended, self.open = list(self.open.values()), {}
        return ended

    def row(self, run: int, seen: SeenTrack) -> tuple[Any, ...]:
        """The `tracks` row of an ended track (columns: store.COLUMNS["tracks"])."""
        label = seen.majority()
        masked = None if label is None else int(bool(masked_labels((label,))))
        counted = int(label is not None and self.rule.counted(seen))  # type: ignore[arg-type]
        return (run, seen.id, seen.first, seen.last, seen.hits, seen.zone_hits, label, masked,
                _json(dict(seen.votes)), counted, seen.source)


def alert_row(run: int, event: dict[str, Any]) -> tuple[Any, ...]:
    """The `alerts` row of an alert event (edge/tracking/events.py)."""
    return (run, _when(event), event.get("frame"),
            event.get("source"), event.get("track"), event.get("label"), event.get("score"),
            event.get("frames"), _json(event.get("box")), _json(event.get("snapshot")))


def stats_row(run: int, event: dict[str, Any]) -> tuple[Any, ...]:
    """The `stats` row of a stats event (edge/tracking/events.py)."""
    return (run, _when(event), event.get("frame"), event.get("fps"),
            event.get("total"), event.get("compliance"), _json(event.get("people")),
            _json(event.get("now")))


class HistorySink:
    """Frames and events of a run into the history database, from one writer thread."""

    needs_image = False
    OUTPUT_NAME = "history"  # its counters' name in the run summary
    POLL = 0.1  # seconds the writer sleeps when the queue is empty
    COMMIT_SECONDS = 0.5  # at most this long between a row's insert and its commit ...
    COMMIT_ROWS = 200  # ... or this many rows, whichever comes first
    PRUNE_SECONDS = 3600.0  # retention runs at open and then about hourly
    CLOSE_TIMEOUT = 15.0  # seconds `close` waits for the writer to finish

    def __init__(self, path: str | Path, days: float = 30, labels: Sequence[str] = (),
                 tracking: TrackerOptions | None = None, source: str = "",
                 queue_size: int = 10_000) -> None:
        if queue_size < 1 or days <= 0:
            raise store.HistoryError("--history needs a queue of at least 1 and days > 0")
        self.path, self.days = Path(path), days
        self._conn = store.open_for_writing(self.path, days)
        try:
            self.run_id = store.new_run(self._conn, source, json.dumps(list(labels)),
                                        time.time())
        except sqlite3.Error as exc:
            self._conn.close()
            raise store.HistoryError(f"history database {path}: {exc}") from None
        self._book = TrackBook(labels, tracking)
        self._queue: DropOldest[tuple[str, dict[str, Any]]] = DropOldest(
            queue_size, "history queue full (%d items): dropping the oldest")
        self._cond = threading.Condition()
        self._closing = self._flush = self._busy = False
        self.written: Counter[str] = Counter(dict.fromkeys(("alerts", "stats", "tracks"), 0))
        self.lost = 0
        self.error: str | None = None
        self._pending: Counter[str] = Counter()  # rows inserted in the open transaction
        self._last_commit = self._last_prune = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="history", daemon=True)
        self._thread.start()

    # -- the camera loop's side: append and return ------------------------------------------

    def _put(self, kind: str, record: dict[str, Any]) -> None:
        with self._cond:
            if not self._closing:
                self._queue.append((kind, record))

    def write(self, record: dict[str, Any], annotated: Any = None) -> None:
        self._put(FRAME, record)

    def event(self, record: dict[str, Any]) -> None:
        kind = record.get("event")
        if kind in (ALERT, STATS):
            self._put(kind, record)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if not (self._queue or self._closing or self._flush):
                        self._cond.wait(self.POLL)
                    items, closing, flush = list(self._queue), self._closing, self._flush
                    self._queue.clear()
                    self._busy = bool(items)
                self._apply(items)
                if closing:
                    self._apply_ended(self._book.close())
                self._commit_if_due(force=flush or closing)
                if not closing:
                    self._prune_if_due()
                with self._cond:
                    if flush and not self._queue:
                        self._flush = False
                    self._busy = False
                    self._cond.notify_all()
                if closing:
                    return
        finally:
            self._conn.close()

    def _apply(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Insert the rows these queue items make (a frame: the tracks it ended)."""
        for kind, record in items:
            try:
                if kind == FRAME:
                    self._apply_ended(self._book.update(record))
                elif kind == ALERT:
                    self._insert("alerts", alert_row(self.run_id, record))
                else:
                    self._insert("stats", stats_row(self.run_id, record))
            except (KeyError, TypeError, ValueError) as exc:  # a malformed record: skip it
                self.lost += 1
                self._say(f"bad {kind} record ({type(exc).__name__}: {exc})")

    def _apply_ended(self, ended: list[SeenTrack]) -> None:
        for seen in ended:
            self._insert("tracks", self._book.row(self.run_id, seen))

    def _insert(self, table: str, row: tuple[Any, ...]) -> None:
        try:
            if not self._conn.in_transaction:
                self._conn.execute("BEGIN")
            self._conn.execute(store.insert_sql(table), row)
        except sqlite3.Error as exc:
            self._failed(exc, extra=1)
            return
        self._pending[table] += 1
        if self._pending.total() >= self.COMMIT_ROWS:
            self._commit()

    def _commit_if_due(self, force: bool) -> None:
        if self._pending and (force or time.monotonic() - self._last_commit
                              >= self.COMMIT_SECONDS):
            self._commit()

    def _commit(self) -> None:
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed(exc)
            return
        self.written.update(self._pending)
        self._pending.clear()
        self._last_commit = time.monotonic()

    def _failed(self, exc: sqlite3.Error, extra: int = 0) -> None:
        """A batch the database refused: rolled back, counted as lost, said once."""
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
        self.lost += self._pending.total() + extra
        self._pending.clear()
        self._last_commit = time.monotonic()
        self._say(str(exc))

    def _say(self, problem: str) -> None:
        if self.error is None:
            log.warning("history %s: %s; rows are lost, the run goes on", self.path, problem)
        self.error = problem

    def _prune_if_due(self) -> None:
        if time.monotonic() - self._last_prune < self.PRUNE_SECONDS:
            return
        self._commit_if_due(force=True)
        self._last_prune = time.monotonic()
        try:
            store.prune(self._conn, self.days, keep_run=self.run_id)
        except sqlite3.Error as exc:
            self._say(f"retention: {exc}")

    # -- the rest ---------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait up to `timeout` seconds until everything queued so far is committed (tracks
        still open are not written until they end)."""
        with self._cond:
            self._flush = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not (self._queue or self._busy or self._flush)
                                       or not self._thread.is_alive(), timeout)

    @property
    def dropped(self) -> int:
        """Queue items dropped because the writer fell behind."""
        return self._queue.dropped

    def summary(self) -> dict[str, Any]:
        """Counters for the run summary: rows committed per table, dropped and lost."""
        counters: dict[str, Any] = {"db": str(self.path), **self.written,
                                    "dropped": self.dropped, "lost": self.lost}
        if self.error is not None:
            counters["error"] = self.error
        return counters

    def close(self, ok: bool = True) -> None:
        """Drain the queue, write the tracks still open, commit, close the database. The
        history is kept whether the run ended well or not: it is what happened."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(self.CLOSE_TIMEOUT)
        if self._thread.is_alive():
            log.warning("history %s: the writer did not finish within %.0f s", self.path,
                        self.CLOSE_TIMEOUT)

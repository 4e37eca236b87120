"""People, compliance and alerts per hour or per day, read from the history database.

A person is a `tracks` row that counted (edge/history/sink.py: the tracker's own count rule), in
the bucket of its first sighting; compliance is the share of those under a masked label
(edge/tracking/alerts.py), None for a bucket nobody was counted in; alerts are `alerts` rows by
their time. Buckets are local hours or local days (what a person reading a table or a chart
means by "8 o'clock"), every bucket of the range is listed, empty ones too, so a chart has no
gaps. Rows are bucketed here, not in SQL, so the buckets are exactly the ones listed even across
a change of summer time.

`report` answers `edge history`; `hourly(db, hours)` and `daily(db, days)` are what the
dashboard's `/api/history` serves. Everything opens the file read-only: reading never changes it
and never waits for the running writer (WAL).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.history.store import HistoryError, open_for_reading

BY = ("hour", "day")
LABEL_FORMAT = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d"}
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_AGO = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*([smhdw])$", re.IGNORECASE)


def parse_when(text: str, option: str = "--since", now: float | None = None) -> float:
    """Unix seconds of `text`: `now`, a time ago (`-24h`, `-30m`, `-7d`, `-2w`; the `-` may be
    left out), or an ISO date or time (`2024-05-01`, `2024-05-01T08:00`, with an offset or in
    local time). `HistoryError` naming `option` otherwise."""
    now = time.time() if now is None else now
    value = text.strip()
    if value.lower() == "now":
        return now
    ago = _AGO.match(value)
    if ago:
        return now - float(ago.group(1)) * _UNITS[ago.group(2).lower()]
    try:
        return datetime.fromisoformat(value).timestamp()  # naive: local time
    except ValueError:
        raise HistoryError(f"{option} {text!r}: expected an ISO time like 2024-05-01T08:00 or a "
                           f"time ago like -24h or -7d") from None


def floor(when: float, by: str) -> float:
    """The start (Unix seconds) of the local hour or day `when` falls in."""
    t = time.localtime(when)
    hour, dst = (t.tm_hour, t.tm_isdst) if by == "hour" else (0, -1)
    start = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, hour, 0, 0, 0, 0, dst))
    return start if start <= when else start - 3600.0  # a summer-time change that hour


def following(start: float, by: str) -> float:
    """The start of the bucket after the one starting at `start`."""
    return start + 3600.0 if by == "hour" else floor(start + 26 * 3600.0, "day")


def window(by: str, count: int, now: float | None = None) -> tuple[float, float]:
    """(since, until) of the last `count` hours or days, the current one included."""
    now = time.time() if now is None else now
    start = floor(now, by)
    for _ in range(count - 1):
        start = floor(start - 1.0, by)
    return start, now


@dataclass
class Bucket:
    """One hour or day of history."""

    start: float
    label: str  # local time, LABEL_FORMAT
    people: int = 0
    masked: int = 0
    alerts: int = 0
    classes: dict[str, int] = field(default_factory=dict)  # people per majority label

    @property
    def compliance(self) -> float | None:
        return round(self.masked / self.people, 4) if self.people else None

    def to_json(self) -> dict[str, Any]:
        return {"start": self.label, "time": self.start, "people": self.people,
                "classes": dict(self.classes), "masked": self.masked,
                "compliance": self.compliance, "alerts": self.alerts}


@dataclass
class Report:
    """People, compliance and alerts per bucket between `since` and `until`."""

    db: str
    by: str
    since: float
    until: float
    labels: list[str]
    buckets: list[Bucket]

    def total(self) -> Bucket:
        whole = Bucket(self.since, "total")
        for b in self.buckets:
            whole.people += b.people
            whole.masked += b.masked
            whole.alerts += b.alerts
            for label, n in b.classes.items():
                whole.classes[label] = whole.classes.get(label, 0) + n
        return whole

    def to_json(self) -> dict[str, Any]:
        return {"db": self.db, "by": self.by, "since": _iso(self.since),
                "until": _iso(self.until), "labels": self.labels,
                "buckets": [b.to_json() for b in self.buckets],
                "total": {k: v for k, v in self.total().to_json().items()
                          if k not in ("start", "time")}}


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")


def _labels(conn: sqlite3.Connection, seen: list[str]) -> list[str]:
    """The models' labels (runs, oldest first), then any other label the tracks carry."""
    labels: list[str] = []
    for (text,) in conn.execute("SELECT labels FROM runs ORDER BY id"):
        try:
            names = json.loads(text or "[]")
        except ValueError:
            continue
        labels += [n for n in names if isinstance(n, str) and n not in labels]
    return labels + sorted({s for s in seen if s not in labels})


def report(conn: sqlite3.Connection, since: float, until: float, by: str = "hour",
           db: str = "") -> Report:
    """The buckets of [since, until) from an open history database (module docstring)."""
    if by not in BY:
        raise HistoryError(f"--by must be one of {', '.join(BY)}, not {by!r}")
    if since >= until:
        raise HistoryError("--since must be before --until")
    buckets, start = [], floor(since, by)
    while start < until:
        buckets.append(Bucket(start, time.strftime(LABEL_FORMAT[by], time.localtime(start))))
        start = following(start, by)
    starts = [b.start for b in buckets]

    def bucket(when: float) -> Bucket:
        return buckets[bisect.bisect_right(starts, when) - 1]

    seen: list[str] = []
    for first, label, masked in conn.execute(
            "SELECT first, label, masked FROM tracks WHERE counted = 1 AND first >= ? AND "
            "first < ?", (since, until)):
        b = bucket(first)
        b.people += 1
        b.masked += bool(masked)
        b.classes[label] = b.classes.get(label, 0) + 1
        seen.append(label)
    for (when,) in conn.execute("SELECT time FROM alerts WHERE time >= ? AND time < ?",
                                (since, until)):
        bucket(when).alerts += 1
    labels = _labels(conn, seen)
    for b in buckets:
        b.classes = {label: b.classes.get(label, 0) for label in labels}
    return Report(db, by, since, until, labels, buckets)


def read_report(db: str | Path, since: float, until: float, by: str = "hour") -> Report:
    """`report` on the file `db`, opened read-only (one-line `HistoryError` when it cannot be)."""
    conn = open_for_reading(db)
    try:
        return report(conn, since, until, by, str(db))
    except sqlite3.Error as exc:
        raise HistoryError(f"history database {db}: {exc}") from None
    finally:
        conn.close()


def hourly(db: str | Path, hours: int = 24, now: float | None = None) -> dict[str, Any]:
    """The last `hours` local hours (this one included), as JSON for the dashboard."""
    since, until = window("hour", hours, now)
    return read_report(db, since, until, "hour").to_json()


def daily(db: str | Path, days: int = 7, now: float | None = None) -> dict[str, Any]:
    """The last `days` local days (today included), as JSON for the dashboard."""
    since, until = window("day", days, now)
    return read_report(db, since, until, "day").to_json()


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def format_table(rep: Report) -> str:
    """The report as a plain-text table, one row per bucket and a total."""
    head = [rep.by, "people", *rep.labels, "compliance", "alerts"]
    rows = [[b.label, str(b.people), *(str(b.classes.get(x, 0)) for x in rep.labels),
             _percent(b.compliance), str(b.alerts)] for b in (*rep.buckets, rep.total())]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    title = (f"history {rep.db}: {_iso(rep.since)} to {_iso(rep.until)}, by {rep.by} "
             f"(local time); people are person tracks counted, in the {rep.by} first seen")
    return "\n".join([title, line(head), *(line(r) for r in rows[:-1]),
                      line(["-" * widths[0], *("" for _ in widths[1:])]), line(rows[-1])])


def to_csv(rep: Report) -> str:
    """The report as CSV: one row per bucket (no total), compliance as a fraction."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start", "time", "people", *rep.labels, "masked", "compliance", "alerts"])
    for b in rep.buckets:
        writer.writerow([b.label, int(b.start), b.people,
                         *(b.classes.get(x, 0) for x in rep.labels), b.masked,
                         "" if b.compliance is None else b.compliance, b.alerts])
    return out.getvalue()

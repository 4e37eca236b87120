"""The history database: one SQLite file, its schema, its migrations and its retention.

Why SQLite, and why these settings: a device keeps weeks of events in one file that any tool
opens, and it must survive being unplugged. The journal is WAL (`journal_mode=WAL`): readers
(`edge history`, the dashboard's `/api/history`) never block the writer and the writer never
blocks them, and a process killed mid-write leaves a file that opens, passes `PRAGMA
integrity_check` and holds every committed transaction. `synchronous=NORMAL` is WAL's usual
pairing: a commit does not wait for fsync, so it is cheap on an SD card; what a power cut (not a
killed process) can lose is the last commits, never the file's consistency.

The schema's version is `PRAGMA user_version`; `MIGRATIONS` is the ordered list of what brings
a database from version N-1 to N, each applied in one transaction together with the new version
number, so a failed migration leaves the file at the version before. A file of a newer version
than this code knows is refused with one line (an older maskedge must not write into a schema it
does not understand).

Version 1: `runs` (one row per `edge run`: start time, source, the model's labels), `alerts`
(each alert event), `stats` (each stats event: people per class, compliance, FPS), `tracks` (one
row per person track, written when the track ends or the run closes: first and last time,
sightings, majority label, votes per class, whether it counted as a person); every time column
is Unix seconds, indexed. Retention (`prune`) deletes rows older than the days kept.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

DAY = 86400.0
#: How long a connection waits for another one's lock before it gives up (seconds).
BUSY_TIMEOUT = 5.0


class HistoryError(ValueError):
    """A history database that cannot be opened or used (one line that names the file)."""


Migration = tuple[str, ...]

V1: Migration = (
    "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, "
    "source TEXT, "
    "labels TEXT NOT NULL DEFAULT '[]')",
    "CREATE TABLE alerts (id INTEGER PRIMARY KEY, run INTEGER, time REAL NOT NULL, "
    "frame INTEGER, source TEXT, track INTEGER, label TEXT, score REAL, frames INTEGER, "
    "box TEXT, snapshots TEXT)",
    "CREATE TABLE stats (id INTEGER PRIMARY KEY, run INTEGER, time REAL NOT NULL, "
    "frame INTEGER, fps REAL, total INTEGER, compliance REAL, people TEXT, now TEXT)",
    "CREATE TABLE tracks (id INTEGER PRIMARY KEY, run INTEGER, track INTEGER NOT NULL, "
    "first REAL NOT NULL, last REAL NOT NULL, frames INTEGER NOT NULL, "
    "zone_frames INTEGER NOT NULL, label TEXT, masked INTEGER, votes TEXT, "
    "counted INTEGER NOT NULL, source TEXT)",
    "CREATE INDEX alerts_time ON alerts(time)",
    "CREATE INDEX stats_time ON stats(time)",
    "CREATE INDEX tracks_first ON tracks(first)",
    "CREATE INDEX tracks_last ON tracks(last)",
    "CREATE INDEX runs_started ON runs(started)",
)
#: MIGRATIONS[n] brings a database from version n to n + 1. Append only; never edit one that
#: shipped (databases in the field are at its version already).
MIGRATIONS: tuple[Migration, ...] = (V1,)
VERSION = len(MIGRATIONS)

#: The columns the sink writes, per table (the id is SQLite's).
COLUMNS: dict[str, tuple[str, ...]] = {
    "alerts": ("run", "time", "frame", "source", "track", "label", "score", "frames", "box",
               "snapshots"),
    "stats": ("run", "time", "frame", "fps", "total", "compliance", "people", "now"),
    "tracks": ("run", "track", "first", "last", "frames", "zone_frames", "label", "masked",
               "votes", "counted", "source"),
}
#: (table, the time column retention looks at): a track goes when its last sighting is old.
TIMED = (("alerts", "time"), ("stats", "time"), ("tracks", "last"))


def insert_sql(table: str) -> str:
    """The INSERT statement of one row of `table` (values in `COLUMNS[table]` order)."""
    columns = COLUMNS[table]
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})")


def _problem(path: Path, exc: sqlite3.Error) -> HistoryError:
    """One line for an SQLite error about `path` (a file that is no database says so)."""
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return HistoryError(f"{path} is not an SQLite database (or it is damaged)")
    return HistoryError(f"history database {path}: {text}")


def connect(path: str | Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to `path` in autocommit mode (transactions are explicit: BEGIN ... COMMIT),
    usable from another thread than the one that opened it (the sink hands it to its writer).
    `readonly` opens an existing file without ever writing to it. The file's header is read at
    once, so a file that is not a database fails here, naming the file."""
    path = Path(path)
    if path.is_dir():
        raise HistoryError(f"{path} is a folder, not a history database")
    if readonly and not path.is_file():
        raise HistoryError(f"no history database at {path}")
    try:
        if readonly:
            target, uri = path.resolve().as_uri() + "?mode=ro", True
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            target, uri = str(path), False
    except OSError as exc:
        raise HistoryError(f"cannot create history database {path}: "
                           f"{exc.strerror or exc}") from None
    try:
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False, uri=uri)
    except sqlite3.Error as exc:
        raise _problem(path, exc) from None
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: fails on non-db
    except sqlite3.Error as exc:
        conn.close()
        raise _problem(path, exc) from None
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _newer(path: Path, version: int, known: int) -> HistoryError:
    return HistoryError(f"history database {path} has schema version {version}, newer than "
                        f"this maskedge knows ({known}): upgrade maskedge, or use another file")


def migrate(conn: sqlite3.Connection, path: str | Path,
            migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the database to `len(migrations)`, one transaction per version (the version
    number is set inside it, so a failure leaves the version before); the version now."""
    version = schema_version(conn)
    if version > len(migrations):
        raise _newer(Path(path), version, len(migrations))
    for number in range(version + 1, len(migrations) + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in migrations[number - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number:d}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise HistoryError(f"history database {path}: migration to schema version "
                               f"{number} failed: {exc}") from None
    return len(migrations)


def prune(conn: sqlite3.Connection, days: float, now: float | None = None,
          keep_run: int | None = None) -> int:
    """Delete the rows older than `days` (and runs left without rows, except `keep_run`, the
    one writing); how many rows were deleted. One transaction, so readers see the history
    before or after, never half of it."""
    cutoff = (time.time() if now is None else now) - days * DAY
    conn.execute("BEGIN IMMEDIATE")
    try:
        deleted = sum(conn.execute(f"DELETE FROM {table} WHERE {column} < ?",
                                   (cutoff,)).rowcount for table, column in TIMED)
        in_use = " UNION ".join(f"SELECT run FROM {t} WHERE run IS NOT NULL" for t, _ in TIMED)
        conn.execute(f"DELETE FROM runs WHERE started < ? AND id IS NOT ? AND id NOT IN "
                     f"({in_use})", (cutoff, keep_run))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return deleted


def open_for_writing(path: str | Path, days: float | None = None) -> sqlite3.Connection:
    """The writer's connection: WAL, synchronous=NORMAL, migrated to `VERSION`, rows older than
    `days` deleted (None: none). `HistoryError` (one line naming the file) when it cannot be."""
    conn = connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryError(f"history database {path}: the WAL journal is not available "
                               f"here (journal mode {mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn, path)
        if days is not None:
            prune(conn, days)
    except sqlite3.Error as exc:
        conn.close()
        raise _problem(Path(path), exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def open_for_reading(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing history database of a version this code reads."""
    conn = connect(path, readonly=True)
    try:
        version = schema_version(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise _problem(Path(path), exc) from None
    if version == 0:
        conn.close()
        raise HistoryError(f"{path} holds no maskedge history (an empty database); "
                           f"`edge run --history {path}` writes one")
    if version > VERSION:
        conn.close()
        raise _newer(Path(path), version, VERSION)
    return conn


def new_run(conn: sqlite3.Connection, source: str, labels: str, started: float) -> int:
    """Record the start of a run (committed at once); its id, which every row of it carries."""
    cursor = conn.execute("INSERT INTO runs (started, source, labels) VALUES (?, ?, ?)",
                          (started, source, labels))
    return int(cursor.lastrowid or 0)

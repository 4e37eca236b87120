"""The device's event history: alerts, stats and one row per person track, kept in SQLite.

- `store`: the database (WAL journal, schema version and migrations, retention);
- `sink`: `HistorySink`, the `edge run --history PATH` output, written from one thread off the
  camera loop;
- `query` and `command`: people, compliance and alerts per hour or day, for `edge history` and
  the dashboard's `/api/history`.

Standard library only (sqlite3), plus edge.tracking's count rule in the sink.
"""

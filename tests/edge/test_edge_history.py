"""The SQLite event history (edge/history): real `edge run --history` on face-mask-voc photos and a
video made of them, migrations, retention, `edge history` (table, --csv, --json, errors), the
writer's queue and errors, a SIGKILL in the middle of a run, the writer's cost to the camera loop,
and the dashboard's history charts in headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA_VOC, ROOT
from test_edge_dashboard import chromium, dump_dom, publishing  # noqa: F401  (fixture, helpers)
from typer.testing import CliRunner

from edge.cli import app
from edge.history import store
from edge.history.query import floor, parse_when, window
from edge.history.sink import HistorySink, TrackBook
from edge.inference.evaluate import load_voc
from edge.runner import Runner, RunOptions
from edge.sinks.dashboard import DashboardServer
from edge.tracking.tracks import TrackerOptions

MODEL = Path(os.environ.get("MASKEDGE_MODEL") or ROOT / "models" / "face_mask_2c_int8.tflite")
needs_model = pytest.mark.skipif(not MODEL.is_file(), reason=f"shipped model {MODEL} not built")
PHOTOS = 12
LABELS = ("with_mask", "without_mask")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("history") / "photos"
    folder.mkdir()
    for item in load_voc(DATA_VOC, limit=PHOTOS):
        (folder / item.path.name).symlink_to(item.path)
    return folder


@pytest.fixture(scope="module")
def video(photos: Path) -> Path:
    """The photos as a 640x480 video, each held 4 frames (so its faces are tracks that count)."""
    out = photos.parent / "voc.mp4"
    result = CliRunner().invoke(app, ["make-video", str(photos), str(out), "--hold", "4"])
    assert result.exit_code == 0, result.output
    return out


def edge(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge", *args]


def query(db: Path, sql: str, *args: Any) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def people_in(db: Path) -> dict[str, int]:
    return dict(query(db, "SELECT label, count(*) FROM tracks WHERE counted GROUP BY label"))


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def one_error(result: Any) -> str:
    """The single `edge: error:` line of a failed command (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("edge: error: "), result.output
    return lines[0]


# --- real runs ---------------------------------------------------------------------------------

@needs_model
def test_run_on_a_video_keeps_history_that_matches_its_summary(video: Path,
                                                               tmp_path: Path) -> None:
    db = tmp_path / "sub" / "events.db"
    result = invoke("run", "--source", str(video), "--model", str(MODEL), "--history", str(db),
                    "--stats-every", "0.2", "--alert-after", "2", "--json-summary", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    people = {k: v for k, v in summary["people"].items() if v}
    assert sum(people.values()) >= 5 and summary["alerts"] >= 1
    assert people_in(db) == people  # the tracker's count rule, from the frame records
    written = summary["outputs"]["history"]
    assert written["dropped"] == written["lost"] == 0 and "error" not in written
    assert query(db, "SELECT count(*) FROM alerts")[0][0] == summary["alerts"] == written["alerts"]
    assert query(db, "SELECT count(*) FROM stats")[0][0] == written["stats"] >= 1
    assert query(db, "SELECT count(*) FROM tracks")[0][0] == written["tracks"]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    ((source, labels),) = query(db, "SELECT source, labels FROM runs")
    assert source.endswith("voc.mp4") and json.loads(labels) == list(LABELS)
    alert = query(db, "SELECT label, track, box, frames FROM alerts LIMIT 1")[0]
    assert alert[0] == "without_mask" and len(json.loads(alert[2])) == 4 and alert[3] == 2
    last = query(db, "SELECT people, total, compliance FROM stats ORDER BY time DESC LIMIT 1")[0]
    assert json.loads(last[0]) == summary["people"] and last[2] == summary["compliance"]

    report = invoke("history", "--db", str(db), "--json")
    assert report.exit_code == 0, report.output
    total = json.loads(report.stdout)["total"]
    assert total["people"] == sum(people.values()) and total["alerts"] == summary["alerts"]
    assert total["compliance"] == pytest.approx(summary["compliance"], abs=1e-4)
    table = invoke("history", "--db", str(db))
    assert re.search(rf"^total\s+{total['people']}\s.*{round(100 * summary['compliance'])}%\s+"
                     rf"{summary['alerts']}$", table.stdout, re.MULTILINE), table.stdout


@needs_model
def test_photos_each_face_is_a_person_of_its_photo(photos: Path, tmp_path: Path) -> None:
    db = tmp_path / "photos.db"
    result = invoke("run", "--source", str(photos), "--history", str(db), "--json-summary",
                    "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert people_in(db) == {k: v for k, v in summary["people"].items() if v}
    sources = {s for (s,) in query(db, "SELECT source FROM tracks")}
    assert sources <= {p.name for p in photos.iterdir()} and len(sources) >= PHOTOS // 2
    assert query(db, "SELECT max(frames) FROM tracks") == [(1,)]  # one sighting per photo


# --- the store: migrations and retention -------------------------------------------------------

V2 = ("ALTER TABLE tracks ADD COLUMN zone TEXT", "CREATE INDEX tracks_label ON tracks(label)")


def test_an_old_database_is_upgraded_one_transaction_per_version(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    sqlite3.connect(db).close()  # version 0: an empty SQLite file
    conn = store.open_for_writing(db)
    assert store.schema_version(conn) == store.VERSION == 1
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%'")}
    assert tables == {"runs", "alerts", "stats", "tracks"}
    conn.execute(store.insert_sql("tracks"), (1, 7, 1.0, 2.0, 5, 5, "with_mask", 1, "{}", 1, None))
    assert store.migrate(conn, db, (*store.MIGRATIONS, V2)) == 2  # the next version keeps rows
    assert conn.execute("SELECT track, zone FROM tracks").fetchall() == [(7, None)]
    with pytest.raises(store.HistoryError, match="migration to schema version 3 failed"):
        store.migrate(conn, db, (*store.MIGRATIONS, V2, ("CREATE TABLE half (a)", "NOT SQL")))
    assert store.schema_version(conn) == 2  # rolled back: no version 3, no half of it
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchall()
    conn.close()


@needs_model
def test_a_newer_schema_is_one_line_for_run_and_history(video: Path, tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    conn = store.open_for_writing(db)
    conn.execute(f"PRAGMA user_version = {store.VERSION + 1}")
    conn.close()
    for result in (invoke("history", "--db", str(db)),
                   invoke("run", "--source", str(video), "--history", str(db), "--quiet")):
        line = one_error(result)
        assert str(db) in line and "schema version 2, newer than this maskedge knows" in line
    with pytest.raises(store.HistoryError, match="newer"):
        HistorySink(db)


def test_retention_at_open_and_then_while_running(tmp_path: Path) -> None:
    db, now = tmp_path / "keep.db", time.time()
    sink = HistorySink(db, days=10, labels=LABELS)
    for days_ago in (40, 11, 9, 0):
        sink.event({"event": "stats", "time": now - days_ago * 86400, "frame": days_ago,
                    "people": {}, "total": 0, "compliance": None, "now": {}, "fps": 1.0})
    sink.close()
    assert [f for (f,) in query(db, "SELECT frame FROM stats ORDER BY frame")] == [0, 9, 11, 40]
    conn = store.connect(db)
    store.new_run(conn, "an old run", "[]", now - 40 * 86400)
    conn.close()
    HistorySink(db, days=10).close()  # opening prunes, old runs without rows too
    assert [f for (f,) in query(db, "SELECT frame FROM stats ORDER BY frame")] == [0, 9]
    assert query(db, "SELECT id FROM runs") == [(1,), (3,)]
    running = HistorySink(db, days=5, labels=LABELS)  # ... and pruning recurs while running
    assert [f for (f,) in query(db, "SELECT frame FROM stats")] == [0]
    running.days = 0.5 / 86400 + 1e-9  # everything older than half a second
    running.PRUNE_SECONDS = 0.2
    deadline = time.monotonic() + 10
    while query(db, "SELECT count(*) FROM stats")[0][0] and time.monotonic() < deadline:
        time.sleep(0.1)
    running.close()
    assert query(db, "SELECT count(*) FROM stats") == [(0,)]
    assert query(db, "SELECT id FROM runs") == [(running.run_id,)]  # the writing run stays


# --- `edge history` on known rows --------------------------------------------------------------

def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()  # local time, as `edge history` reads it


def face(track: int, label: str, score: float = 0.9, side: float = 60.0) -> dict[str, Any]:
    return {"track": track, "label": label, "box": [10.0, 10.0, 10 + side, 10 + side],
            "detector_score": score, "in_zone": True, "score": 0.9}


@pytest.fixture
def known_db(tmp_path: Path) -> Path:
    """8:00 two people (one masked) and a face seen once, 1 alert; 10:00 one masked person, 2
    alerts; the next day 9:00 one unmasked person. Local times of 2024-05-01/02."""
    db = tmp_path / "known.db"
    sink = HistorySink(db, days=36500, labels=LABELS, tracking=TrackerOptions(max_age=2))
    plan = [("2024-05-01T08:10", [face(1, "with_mask"), face(2, "without_mask")], 5),
            ("2024-05-01T08:30", [face(3, "with_mask")], 1),
            ("2024-05-01T10:05", [face(4, "with_mask")], 5),
            ("2024-05-01T10:40", [face(5, "with_mask", score=0.3)], 5),  # unsure: no person
            ("2024-05-02T09:00", [face(6, "without_mask")], 5)]
    frame = 0
    for start, faces, times in plan:
        for i in range(times + 3):  # seen `times` frames, then gone (tracks end after 2)
            sink.write({"frame": frame, "time": at(start) + i, "faces": faces if i < times else [],
                        "fps": 10.0, "timings_ms": {}})
            frame += 1
    for when in ("2024-05-01T08:20", "2024-05-01T10:06", "2024-05-01T10:50"):
        sink.event({"event": "alert", "time": at(when), "frame": 1, "track": 2,
                    "label": "without_mask", "score": 0.9, "box": [1, 2, 3, 4], "frames": 3})
    sink.close()
    assert query(db, "SELECT track, counted FROM tracks ORDER BY track") == [
        (1, 1), (2, 1), (3, 0), (4, 1), (5, 0), (6, 1)]
    return db


def test_edge_history_table_by_hour_and_day(known_db: Path) -> None:
    result = invoke("history", "--db", str(known_db), "--since", "2024-05-01T07:00",
                    "--until", "2024-05-01T12:00")
    assert result.exit_code == 0, result.output
    print(result.stdout)
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["hour", "people", "with_mask", "without_mask", "compliance",
                                "alerts"]
    rows = [x.split() for x in lines[2:] if x[:1].isdigit()]
    assert [r[1:] for r in rows] == [["07:00", "0", "0", "0", "-", "0"],
                                     ["08:00", "2", "1", "1", "50%", "1"],
                                     ["09:00", "0", "0", "0", "-", "0"],
                                     ["10:00", "1", "1", "0", "100%", "2"],
                                     ["11:00", "0", "0", "0", "-", "0"]]
    assert lines[-1].split() == ["total", "3", "2", "1", "67%", "3"]
    days = invoke("history", "--db", str(known_db), "--by", "day", "--since", "2024-05-01",
                  "--until", "2024-05-03")
    assert [x.split() for x in days.stdout.splitlines()[2:4]] == [
        ["2024-05-01", "3", "2", "1", "67%", "3"], ["2024-05-02", "1", "0", "1", "0%", "0"]]


def test_edge_history_csv_and_json(known_db: Path, tmp_path: Path) -> None:
    span = ["--db", str(known_db), "--since", "2024-05-01T07:00", "--until", "2024-05-01T12:00"]
    out = tmp_path / "out" / "hours.csv"
    result = invoke("history", *span, "--csv", str(out))
    assert result.exit_code == 0 and "total" in result.stdout  # the table, and the file
    rows = list(csv.DictReader(out.open()))
    assert [r["start"][-5:] for r in rows] == ["07:00", "08:00", "09:00", "10:00", "11:00"]
    assert rows[1] == {"start": "2024-05-01 08:00", "time": str(int(at("2024-05-01T08:00"))),
                       "people": "2", "with_mask": "1", "without_mask": "1", "masked": "1",
                       "compliance": "0.5", "alerts": "1"}
    stdout_csv = invoke("history", *span, "--csv", "-").stdout
    assert list(csv.DictReader(io.StringIO(stdout_csv))) == rows  # only the CSV on stdout
    report = json.loads(invoke("history", *span, "--json").stdout)
    assert report["by"] == "hour" and report["labels"] == list(LABELS)
    assert [b["people"] for b in report["buckets"]] == [0, 2, 0, 1, 0]
    assert [b["compliance"] for b in report["buckets"]] == [None, 0.5, None, 1.0, None]
    assert report["total"] == {"people": 3, "classes": {"with_mask": 2, "without_mask": 1},
                               "masked": 2, "compliance": 0.6667, "alerts": 3}


def test_times_and_default_windows() -> None:
    now = at("2024-05-01T10:30")
    assert parse_when("-24h", now=now) == parse_when("24h", now=now) == now - 86400
    assert parse_when("-90m", now=now) == now - 5400 and parse_when("now", now=now) == now
    assert parse_when("2w", now=now) == now - 14 * 86400
    assert parse_when("2024-05-01T08:00:00+00:00") == datetime.fromisoformat(
        "2024-05-01T08:00:00+00:00").timestamp()
    assert window("hour", 24, now) == (at("2024-04-30T11:00"), now)
    assert window("day", 7, now) == (at("2024-04-25T00:00"), now)
    assert floor(now, "hour") == at("2024-05-01T10:00")
    with pytest.raises(store.HistoryError, match="--until 'soon'"):
        parse_when("soon", "--until")


def test_bad_database_paths_and_values_are_one_line(known_db: Path, tmp_path: Path) -> None:
    text, empty, a_file = tmp_path / "notes.db", tmp_path / "empty.db", tmp_path / "a-file"
    text.write_text("certainly not SQLite\n" * 20)
    sqlite3.connect(empty).close()
    a_file.write_text("x")
    cases = {
        ("--db", str(tmp_path / "missing.db")): f"no history database at {tmp_path}/missing.db",
        ("--db", str(text)): f"{text} is not an SQLite database",
        ("--db", str(tmp_path)): f"{tmp_path} is a folder",
        ("--db", str(empty)): f"{empty} holds no maskedge history",
        ("--db", str(known_db), "--since", "tomorrow"): "--since 'tomorrow'",
        ("--db", str(known_db), "--since", "-1h", "--until", "-2h"): "--since must be before",
        ("--db", str(known_db), "--by", "week"): "--by must be one of hour, day",
        ("--db", str(known_db), "--csv", "-", "--json"): "--csv - and --json",
        ("--db", str(known_db), "--csv", f"{a_file}/out.csv"): f"cannot write --csv {a_file}",
    }
    for args, message in cases.items():
        assert message in one_error(invoke("history", *args)), args
    assert text.read_text() == "certainly not SQLite\n" * 20  # never written to


@needs_model
def test_run_with_a_file_that_is_no_database_is_one_line(video: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("certainly not SQLite\n" * 20)
    line = one_error(invoke("run", "--source", str(video), "--history", str(text), "--quiet"))
    assert f"{text} is not an SQLite database" in line


# --- the writer --------------------------------------------------------------------------------

def stats_event(frame: int) -> dict[str, Any]:
    return {"event": "stats", "time": time.time(), "frame": frame, "people": {}, "total": 0,
            "compliance": None, "now": {}, "fps": 1.0}


def test_a_full_queue_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    sink = HistorySink(tmp_path / "q.db", queue_size=5)
    with sink._cond:  # the writer cannot drain while the loop side fills the queue
        for frame in range(20):
            sink.event(stats_event(frame))
    assert sink.wait_idle(10)
    assert [f for (f,) in query(sink.path, "SELECT frame FROM stats")] == [15, 16, 17, 18, 19]
    sink.close()
    assert sink.summary()["dropped"] == 15 and sink.summary()["stats"] == 5


def test_a_database_error_loses_that_batch_and_the_run_goes_on(tmp_path: Path) -> None:
    sink = HistorySink(tmp_path / "e.db")
    other = sqlite3.connect(sink.path)
    other.execute("ALTER TABLE stats RENAME TO gone")
    other.commit()
    sink.event(stats_event(1))
    assert sink.wait_idle(10)
    sink.event({"event": "alert", "time": time.time(), "frame": 2, "track": 1,
                "label": "without_mask", "score": 0.9, "box": [1, 2, 3, 4], "frames": 3})
    sink.close()
    summary = sink.summary()
    assert summary["lost"] == 1 and "no such table: stats" in summary["error"]
    assert summary["alerts"] == 1 and query(sink.path, "SELECT frame FROM alerts") == [(2,)]
    other.close()


def test_track_book_ends_tracks_like_the_tracker() -> None:
    book = TrackBook(LABELS, TrackerOptions(max_age=2, count_after=3, reid_age=0))
    frames = [[face(1, "without_mask"), face(2, "with_mask", side=8)]] * 3 + [[]] * 2
    assert [book.update({"time": float(i), "faces": f}) for i, f in enumerate(frames)] == [
        [], [], [], [], []]
    ended = book.update({"time": 5.0, "faces": []})  # missed 3 > max_age 2: both end
    assert [(s.id, s.hits, s.first, s.last) for s in ended] == [(1, 3, 0.0, 2.0), (2, 3, 0.0, 2.0)]
    rows = [book.row(9, s) for s in ended]
    assert [(r[6], r[7], r[9]) for r in rows] == [("without_mask", 0, 1),  # counted
                                                  ("with_mask", 1, 0)]  # 8 px faces: not
    photo = {"time": 6.0, "source": "a.jpg", "faces": [face(3, "with_mask")]}
    assert book.update(photo) == []
    assert [s.id for s in book.update({**photo, "source": "b.jpg", "faces": []})] == [3]
    seen = book.update({"time": 7.0, "faces": [face(4, "with_mask")]})
    assert seen == [] and [book.row(1, s)[9] for s in book.close()] == [0]  # 1 sighting of 3
    # With re-identification a track may come back, so it ends only after max_age + reid_age.
    waiting = TrackBook(LABELS, TrackerOptions(max_age=2, reid_age=3))
    waiting.update({"time": 0.0, "faces": [face(5, "with_mask")]})
    assert [waiting.update({"time": float(i), "faces": []}) for i in range(1, 6)] == [[]] * 5
    assert [s.id for s in waiting.update({"time": 6.0, "faces": []})] == [5]


# --- a SIGKILL in the middle of a run ----------------------------------------------------------

def committed(db: Path) -> dict[str, set[int]]:
    """The row ids a reader sees (committed rows only), per table; {} before the schema is."""
    try:
        conn = store.open_for_reading(db)
    except store.HistoryError:
        return {}
    try:
        return {t: {i for (i,) in conn.execute(f"SELECT id FROM {t}")}
                for t in ("alerts", "stats", "tracks")}
    finally:
        conn.close()


@needs_model
def test_sigkill_keeps_every_committed_row_and_a_sound_database(video: Path,
                                                                tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    proc = subprocess.Popen(edge("run", "--source", str(video), "--loop", "--history", str(db),
                                 "--stats-every", "0.05", "--alert-after", "2", "--quiet"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        before: dict[str, set[int]] = {}
        while not (len(before.get("stats", ())) >= 40 and len(before.get("tracks", ())) >= 40):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, f"too few rows committed: {before}"
            time.sleep(0.3)
            before = committed(db)
        before = committed(db)  # read just before the kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert Path(str(db) + "-wal").exists()  # killed: the journal was not checkpointed away
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    after = committed(db)
    for table, ids in before.items():
        assert ids <= after[table], table
    print(f"\nSIGKILL: committed before the kill {({t: len(v) for t, v in before.items()})}, "
          f"in the database after it {({t: len(v) for t, v in after.items()})}; "
          f"integrity_check ok")
    result = invoke("history", "--db", str(db), "--json")  # readable, and writable again
    assert result.exit_code == 0 and json.loads(result.stdout)["total"]["people"] > 0
    HistorySink(db).close()


# --- what the writer costs the camera loop -----------------------------------------------------

@needs_model
def test_history_costs_the_camera_loop_under_one_percent(video: Path, tmp_path: Path) -> None:
    runner = Runner(RunOptions(source=str(video), loop=True, max_frames=400,
                               history=tmp_path / "cost.db", stats_every=0.1, alert_after=2,
                               quiet=True))
    runner.open()
    (sink,) = [s for s in runner.sinks if isinstance(s, HistorySink)]
    calls: list[float] = []  # seconds of each write/event call, on the loop thread
    writer: list[float] = []  # seconds of each batch the writer thread handled

    def timed(method: Any, into: list[float]) -> Any:
        def call(*args: Any) -> None:
            start = time.perf_counter()
            method(*args)
            into.append(time.perf_counter() - start)
        return call

    sink.write, sink.event = timed(sink.write, calls), timed(sink.event, calls)  # type: ignore
    sink._apply = timed(sink._apply, writer)  # type: ignore[method-assign]
    summary = runner.run()
    share = sum(calls) / summary.seconds
    frame_ms = summary.seconds / summary.frames * 1e3
    print(f"\nhistory sink on the loop thread: {sum(calls) / summary.frames * 1e6:.1f} us per "
          f"frame ({len(calls)} calls, median {statistics.median(calls) * 1e6:.1f} us, max "
          f"{max(calls) * 1e3:.2f} ms) against {frame_ms:.1f} ms per frame ({summary.fps:.0f} "
          f"FPS): {share:.3%} of the loop; the writer thread beside it: "
          f"{sum(writer) / summary.frames * 1e6:.0f} us per frame "
          f"({sum(writer) / summary.seconds:.2%})")
    assert summary.frames == 400 and summary.outputs["history"]["dropped"] == 0
    assert summary.outputs["history"]["tracks"] > 0
    assert share < 0.01


# --- the dashboard -----------------------------------------------------------------------------

def recent_db(tmp_path: Path) -> tuple[Path, float]:
    """A history with people in this hour and two hours ago, and yesterday."""
    db = tmp_path / "recent.db"
    now = time.time()
    hour = floor(now, "hour")
    sink = HistorySink(db, labels=LABELS, tracking=TrackerOptions(max_age=1))
    frame = 0
    yesterday = floor(floor(now, "day") - 1, "day") + 3600
    for when, faces in ((yesterday, [face(1, "without_mask")]),
                        (hour - 7200 + 60, [face(2, "with_mask"), face(3, "without_mask")]),
                        (hour + (now - hour) / 2, [face(4, "with_mask")])):
        for i in range(5):
            sink.write({"frame": frame, "time": when + i * 1e-3, "faces": faces})
            frame += 1
    sink.close()
    return db, now


def api(server: DashboardServer, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_api_history_and_none_without_a_history(tmp_path: Path) -> None:
    db, _ = recent_db(tmp_path)
    with_history = DashboardServer(history=db)
    without = DashboardServer()
    try:
        status, body = api(with_history, "/api/history")
        assert status == 200 and len(body["hourly"]["buckets"]) == 24
        assert len(body["daily"]["buckets"]) == 7
        assert [b["people"] for b in body["hourly"]["buckets"][-3:]] == [2, 0, 1]
        assert body["daily"]["total"]["people"] == 4 and body["hourly"]["total"]["people"] >= 3
        assert api(without, "/api/history")[0] == 404
    finally:
        with_history.close()
        without.close()


@needs_model
def test_edge_run_serve_with_history_serves_it(video: Path, tmp_path: Path) -> None:
    runner = Runner(RunOptions(source=str(video), serve="127.0.0.1:0", max_frames=5, quiet=True,
                               history=tmp_path / "served.db"), notice=lambda line: None)
    runner.open()
    try:
        (server,) = [s for s in runner.sinks if isinstance(s, DashboardServer)]
        status, body = api(server, "/api/history")
        assert status == 200 and body["hourly"]["total"]["people"] == 0
    finally:
        runner.run()


def test_dashboard_history_charts_in_headless_chromium(chromium: str,  # noqa: F811
                                                       tmp_path: Path) -> None:
    db, _ = recent_db(tmp_path)
    server = DashboardServer(source="lobby", history=db)
    try:
        with publishing(server, period=0.05):
            dom = dump_dom(chromium, server.url, tmp_path / "profile")
    finally:
        server.close()
    section = re.search(r'<section id="history"([^>]*)>(.*?)</section>', dom, re.DOTALL)
    assert section and "hidden" not in section.group(1), dom[-3000:]
    hourly = re.search(r'<svg id="chart-hourly"([^>]*)>(.*?)</svg>', section.group(2), re.DOTALL)
    daily = re.search(r'<svg id="chart-daily"([^>]*)>(.*?)</svg>', section.group(2), re.DOTALL)
    assert hourly and daily
    assert 'data-buckets="24"' in hourly.group(1) and 'data-buckets="7"' in daily.group(1)
    bars = [int(n) for n in re.findall(r'<rect class="bar"[^>]*data-people="(\d+)"',
                                       hourly.group(2))]
    assert len(bars) == 24 and bars[-3:] == [2, 0, 1]
    assert len(re.findall(r'<rect class="bar"', daily.group(2))) == 7
    assert re.findall(r'data-compliance="([\d.]+)"', hourly.group(2))[-2:] == ["0.5", "1"]
    assert '<polyline class="line"' in daily.group(2) and " style=" not in section.group(2)

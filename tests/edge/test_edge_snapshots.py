"""edge.sinks.snapshots: JPEGs per alert, named by time and track, bounded folder, full disk."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.sinks import snapshots
from edge.sinks.snapshots import SnapshotWriter, utc_stamp

T0 = 1764490500.123  # 2025-11-30 08:15:00.123 UTC


def alert(track: int, seconds: float = T0) -> dict[str, Any]:
    return {"event": "alert", "time": seconds, "frame": 3, "track": track,
            "label": "without_mask", "score": 0.9, "box": [40.0, 30.0, 80.0, 90.0], "frames": 5}


def red_frame(height: int = 120, width: int = 160) -> np.ndarray:
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = 255  # red in RGB
    return rgb


def test_face_and_frame_named_by_time_and_track(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "snaps")
    event = alert(12)
    annotated = np.full((120, 160, 3), (0, 255, 0), np.uint8)  # green, BGR
    writer.on_alert(event, red_frame(), annotated)
    raw = alert(13, T0 + 1)
    writer.on_alert(raw, red_frame(), None)
    writer.close()
    assert utc_stamp(T0) == "20251130T081500.123Z"
    folder = (tmp_path / "snaps").absolute()
    assert event["snapshot"] == {"face": str(folder / "20251130T081500.123Z_track12_face.jpg"),
                                 "frame": str(folder / "20251130T081500.123Z_track12_frame.jpg")}
    assert sorted(p.name for p in folder.iterdir()) == [
        "20251130T081500.123Z_track12_face.jpg", "20251130T081500.123Z_track12_frame.jpg",
        "20251130T081501.123Z_track13_face.jpg", "20251130T081501.123Z_track13_frame.jpg"]
    face = cv2.imread(event["snapshot"]["face"])
    # box 40x60 with a 0.3 margin each side: 64 x 96 (clipped to the 120-pixel height)
    assert face.shape[:2] == (96, 64) and face[..., 2].mean() > 200  # red
    assert cv2.imread(event["snapshot"]["frame"])[..., 1].mean() > 200  # the annotated one
    assert cv2.imread(raw["snapshot"]["frame"])[..., 2].mean() > 200  # raw frame, as BGR
    assert writer.summary()["written"] == 2 and writer.failed == 0


def test_writing_does_not_stall_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = snapshots.write_bytes_atomic

    def slow(path: Path, data: bytes) -> None:
        time.sleep(0.1)
        real(path, data)

    monkeypatch.setattr(snapshots, "write_bytes_atomic", slow)
    writer = SnapshotWriter(tmp_path, queue_size=2)
    start = time.perf_counter()
    for n in range(5):
        writer.on_alert(alert(n, T0 + n), red_frame(480, 640), None)
    assert time.perf_counter() - start < 0.25
    assert writer.wait_idle(5)
    writer.close()
    assert writer.written + writer.dropped == 5 and writer.dropped >= 2


def test_keep_bounds_the_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    writer = SnapshotWriter(tmp_path, keep=3)
    for n in range(7):
        writer.on_alert(alert(n, T0 + n), red_frame(), None)
        assert writer.wait_idle(5)
    writer.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "notes.txt" in names and len(names) == 7
    assert {n.split("_")[1] for n in names if n.endswith(".jpg")} == {"track4", "track5",
                                                                      "track6"}
    assert writer.deleted == 4


def test_same_track_and_millisecond_get_distinct_names(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path)
    first, second = alert(1), alert(1)
    writer.on_alert(first, red_frame(), None)
    writer.on_alert(second, red_frame(), None)
    writer.close()
    assert first["snapshot"]["face"] != second["snapshot"]["face"]
    assert len(list(tmp_path.glob("*.jpg"))) == 4


def test_full_disk_is_counted_and_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(snapshots, "write_bytes_atomic", full)
    caplog.set_level(logging.WARNING)
    writer = SnapshotWriter(tmp_path)
    for n in range(4):
        writer.on_alert(alert(n, T0 + n), red_frame(), None)
    assert writer.wait_idle(5)
    writer.close()
    assert writer.failed == 4 and writer.written == 0
    assert "No space left on device" in (writer.last_error or "")
    assert len([r for r in caplog.records if r.name == "edge.sinks.snapshots"]) == 1


def test_unwritable_folder_does_not_stop_the_run(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("not a folder")
    caplog.set_level(logging.WARNING)
    writer = SnapshotWriter(tmp_path / "file" / "snaps")
    event = alert(1)
    writer.on_alert(event, red_frame(), None)
    assert writer.wait_idle(5)
    writer.close()
    assert writer.failed == 1 and "snapshot" in event
    assert len([r for r in caplog.records if r.name == "edge.sinks.snapshots"]) == 1


def test_real_full_tmpfs(tmp_path: Path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        writer = SnapshotWriter(mount)
        noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
        for n in range(4):
            writer.on_alert(alert(n, T0 + n), noise, None)
        assert writer.wait_idle(5)
        writer.close()
        assert writer.failed >= 1 and "No space left" in (writer.last_error or "")
        assert not [p for p in mount.iterdir() if p.name.startswith(".")]  # no temp files left
    finally:
        subprocess.run(["umount", str(mount)], check=False)

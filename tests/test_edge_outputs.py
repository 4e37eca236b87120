"""Outputs of the frame loop: JSON lines, video file, window (live page: test_edge_dashboard)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.outputs import (
    JsonLinesSink,
    OutputError,
    VideoSink,
    WindowSink,
    fit_frame,
    gui_problem,
    parse_address,
)


def frame(value: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:, : size[0] // 2] = value
    return image


def test_json_lines_appear_whole_on_close_and_never_partially(tmp_path: Path) -> None:
    target = tmp_path / "events.jsonl"
    sink = JsonLinesSink(target)
    sink.write({"frame": 0, "faces": []}, None)
    sink.event({"event": "alert", "frame": 0})
    assert not target.exists()  # still being written beside the target
    sink.close()
    assert [json.loads(x) for x in target.read_text().splitlines()] == [
        {"frame": 0, "faces": []}, {"event": "alert", "frame": 0}]
    failed = JsonLinesSink(tmp_path / "failed.jsonl")
    failed.write({"frame": 0}, None)
    failed.close(ok=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]


def test_json_lines_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = JsonLinesSink("-")
    sink.write({"frame": 3}, None)
    sink.close()
    assert capsys.readouterr().out == '{"frame":3}\n'


def test_video_sink_writes_a_playable_file_renamed_on_close(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    sink = VideoSink(target, fps=10)
    for i in range(12):
        size = (64, 48) if i % 3 else (100, 60)  # odd sizes are fitted to the first frame
        sink.write({}, frame(20 * i, size))
    assert not target.exists()
    sink.close()
    cap = cv2.VideoCapture(str(target))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 12 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 100
    with pytest.raises(OutputError, match="use one of"):
        VideoSink(tmp_path / "out.gif", 10)
    empty = VideoSink(tmp_path / "empty.mp4", 10)
    empty.close()
    assert not (tmp_path / "empty.mp4").exists()  # no frames, no file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_fit_frame_letterboxes() -> None:
    fitted = fit_frame(np.full((100, 200, 3), 255, np.uint8), (640, 480))
    assert fitted.shape == (480, 640, 3)
    assert fitted[0, 320].max() == 0 and fitted[240, 320].min() == 255


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":0") == ("127.0.0.1", 0)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:8000") == ("::1", 8000)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("localhost:http")


def test_show_without_gui_is_a_clear_error() -> None:
    problem = gui_problem()
    if problem is None:
        pytest.skip("this OpenCV build has a GUI and a display")
    with pytest.raises(OutputError) as info:
        WindowSink()
    assert str(info.value) == problem and "--serve" in problem


def test_json_lines_to_a_fifo_or_through_a_symlink_keep_the_node(tmp_path: Path) -> None:
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    sink = JsonLinesSink(fifo)  # written straight to the FIFO, never renamed over it
    sink.write({"frame": 1}, None)
    sink.close()
    reader.join(timeout=10)
    assert received == ['{"frame":1}\n'] and stat.S_ISFIFO(fifo.stat().st_mode)
    real, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    real.write_text("old\n")
    link.symlink_to(real)
    sink = JsonLinesSink(link)
    sink.write({"frame": 2}, None)
    sink.close()
    assert link.is_symlink() and real.read_text() == '{"frame":2}\n'

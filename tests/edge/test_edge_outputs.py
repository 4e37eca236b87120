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
from conftest import DATA_VOC, ROOT
from typer.testing import CliRunner

from edge.sinks.outputs import (
    ImageFolderSink,
    JsonLinesSink,
    OutputError,
    VideoSink,
    WindowSink,
    fit_frame,
    gui_problem,
    is_folder_target,
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


def test_video_of_mixed_sizes_says_once_that_it_letterboxes(tmp_path: Path) -> None:
    said: list[str] = []
    sink = VideoSink(tmp_path / "out.avi", fps=10, notice=said.append)
    for size in ((100, 60), (100, 60), (64, 48), (80, 80)):
        sink.write({}, frame(50, size))
    sink.close()
    assert len(said) == 1 and "100x60" in said[0] and "64x48" in said[0]
    assert "letterboxed" in said[0] and "--save DIR/" in said[0]


def test_image_folder_sink_writes_each_frame_whole(tmp_path: Path) -> None:
    assert is_folder_target(f"{tmp_path}/new/") and is_folder_target(tmp_path)
    assert not is_folder_target(tmp_path / "out.mp4")
    sink = ImageFolderSink(tmp_path / "images")
    sink.write({"frame": 0, "source": "a photo.png"}, frame(200, (30, 20)))
    sink.write({"frame": 7}, frame(100, (64, 48)))  # a video frame: numbered
    sink.write({"frame": 8, "source": "odd.xyz"}, frame(100))  # OpenCV cannot write .xyz
    sink.write({"frame": 9}, None)  # not drawn: nothing
    sink.close()
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert names == ["a photo.png", "frame_000007.jpg", "odd.xyz.jpg"]  # no temporary files
    assert cv2.imread(str(tmp_path / "images" / "a photo.png")).shape == (20, 30, 3)
    assert sink.summary() is None
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputError, match="a-file"):
        ImageFolderSink(tmp_path / "a-file" / "images")


MODEL = ROOT / "models" / "face_mask_2c_int8.tflite"


@pytest.fixture()
def mixed_photos(tmp_path: Path) -> Path:
    """Four face-mask-voc photos of different sizes, as symlinks in a folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted((DATA_VOC / "images").glob("*.jpg"))[:4]:
        (folder / photo.name).symlink_to(photo)
    sizes = {cv2.imread(str(p)).shape for p in folder.iterdir()}
    assert len(sizes) > 1
    return folder


@pytest.mark.skipif(not MODEL.is_file(), reason="shipped model not built")
def test_save_to_a_folder_writes_one_annotated_image_per_photo(mixed_photos: Path,
                                                               tmp_path: Path) -> None:
    from edge.cli import app

    out = tmp_path / "annotated"
    result = CliRunner().invoke(app, ["run", "--source", str(mixed_photos), "--save", f"{out}/",
                                      "--detector", "none", "--quiet"])
    assert result.exit_code == 0, result.output
    photos = sorted(mixed_photos.iterdir())
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in photos]
    for photo in photos:  # each at its own size, and drawn on
        original, annotated = cv2.imread(str(photo)), cv2.imread(str(out / photo.name))
        assert annotated.shape == original.shape
        assert np.abs(annotated.astype(int) - original.astype(int)).max() > 100
    video = tmp_path / "photos.avi"
    result = CliRunner().invoke(app, ["run", "--source", str(mixed_photos), "--save", str(video),
                                      "--detector", "none", "--quiet"])
    assert result.exit_code == 0, result.output
    notes = [x for x in result.stderr.splitlines() if "letterboxed" in x]
    assert len(notes) == 1 and str(video) in notes[0]
    result = CliRunner().invoke(app, ["run", "--source", str(mixed_photos), "--save",
                                      str(mixed_photos), "--detector", "none", "--quiet"])
    assert result.exit_code == 2 and "is the --source folder" in result.stderr
    assert sorted(mixed_photos.iterdir()) == photos and all(p.is_symlink() for p in photos)

"""Frame sources and the capture thread: newest-frame handoff, unreadable frames, lost cameras."""

from __future__ import annotations

import itertools
import sys
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DATA_VOC
from support.cameras import FastCamera, ScriptedCapture

from edge.video.capture import Backoff, FrameGrabber
from edge.video.sources import (
    ImageFolderSource,
    OpenCVSource,
    Pacer,
    Picamera2Source,
    SourceError,
    camera_source,
    file_source,
)
from edge.video.videomaker import make_video

PHOTOS = sorted((DATA_VOC / "images").glob("*.jpg"))[:5]


def drain(grabber: FrameGrabber, limit: int = 1000, timeout: float = 10.0) -> list:
    frames, deadline = [], time.monotonic() + timeout
    while len(frames) < limit and time.monotonic() < deadline:
        frame = grabber.next(timeout=0.05)
        if frame is not None:
            frames.append(frame)
        elif grabber.finished:
            break
    return frames


def test_slow_consumer_drops_frames_and_never_builds_a_backlog() -> None:
    grabber = FrameGrabber(FastCamera()).start()
    try:
        got = []
        for _ in range(5):
            time.sleep(0.05)  # a slow model: ~25 frames arrive meanwhile
            frame = grabber.next(timeout=1.0)
            assert frame is not None
            got.append(frame.index)
            captured_now = grabber.stats.captured
            # What we got is the newest frame, not the oldest of a queue.
            assert frame.index >= captured_now - 2 - grabber.stats.unreadable
        assert all(b - a > 5 for a, b in itertools.pairwise(got)), got
        assert grabber.stats.dropped > 50
        assert grabber.drop is True
    finally:
        grabber.stop()


def test_file_sources_deliver_every_frame_in_order(tmp_path: Path) -> None:
    video = make_video(PHOTOS, tmp_path / "v.mp4", (320, 240), fps=10, hold=2).path
    grabber = FrameGrabber(file_source(str(video))).start()
    frames = drain(grabber)
    grabber.stop()
    assert [f.index for f in frames] == list(range(10))
    assert grabber.drop is False and grabber.stats.dropped == 0
    assert frames[0].rgb.shape == (240, 320, 3) and frames[0].capture_ms > 0


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    for p in PHOTOS[:3]:
        (tmp_path / p.name).symlink_to(p)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    grabber = FrameGrabber(file_source(str(tmp_path))).start()
    frames = drain(grabber)
    grabber.stop()
    assert len(frames) == 3 and grabber.stats.unreadable == 1
    bgr = cv2.imread(str(PHOTOS[0]))
    assert [f.index for f in frames] == [1, 2, 3]  # index 0 is broken.jpg (name order)
    first = frames[0]
    np.testing.assert_array_equal(first.rgb, bgr[..., ::-1])  # RGB inside the pipeline


def test_lost_camera_is_reopened_with_backoff() -> None:
    factory = ScriptedCapture([5, "fail", "fail", 10_000])
    source = OpenCVSource(0, live=True, description="camera 0", capture_factory=factory)
    grabber = FrameGrabber(source, drop=False,
                           backoff=Backoff(initial=0.01, maximum=0.05, attempts=5)).start()
    frames = drain(grabber, limit=20)
    grabber.stop()
    assert len(frames) == 20
    assert factory.opens == 4  # first open, two failed reopens, one that works
    assert grabber.stats.reconnects == 1
    assert grabber.stats.unreadable == 4  # failed reads before the camera counted as lost
    assert grabber.error is None


def test_camera_that_never_comes_back_ends_with_an_error() -> None:
    factory = ScriptedCapture([3, "fail"])
    source = OpenCVSource(0, live=True, description="camera 0", capture_factory=factory)
    grabber = FrameGrabber(source, backoff=Backoff(initial=0.01, maximum=0.02,
                                                   attempts=3)).start()
    drain(grabber)
    grabber.stop()
    assert grabber.finished
    assert grabber.error == ("camera 0 stopped delivering frames; could not reopen it after "
                             "3 attempts")


def test_no_camera_is_a_clear_error() -> None:
    source = camera_source(7, backend="opencv")
    with pytest.raises(SourceError) as info:
        source.open()
    message = str(info.value)
    assert message.startswith("cannot open camera 7") and "picamera2" in message
    with pytest.raises(SourceError, match="no such file or folder"):
        file_source("/nonexistent/video.mp4")
    with pytest.raises(SourceError, match="unknown camera backend"):
        camera_source(0, backend="gstreamer")


def test_picamera2_is_used_for_the_camera_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class FakePicamera2:
        def __init__(self, camera_num: int = 0) -> None:
            calls.append(f"open {camera_num}")

        @staticmethod
        def global_camera_info() -> list[dict]:
            return [{"Model": "imx708"}]

        def create_video_configuration(self, main: dict) -> dict:
            calls.append(f"config {main['size']} {main['format']}")
            return {"main": main}

        def configure(self, config: dict) -> None:
            pass

        def start(self) -> None:
            calls.append("start")

        def capture_array(self, name: str = "main") -> np.ndarray:
            frame = np.zeros((480, 640, 3), np.uint8)
            frame[..., 0] = 255  # blue first in memory: libcamera's "RGB888"
            return frame

        def stop(self) -> None:
            calls.append("stop")

        def close(self) -> None:
            calls.append("close")

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    source = camera_source(0, (640, 480), backend="auto")
    assert isinstance(source, Picamera2Source)
    source.open()
    rgb = source.read()
    source.close()
    assert rgb.shape == (480, 640, 3) and rgb[0, 0].tolist() == [0, 0, 255]
    assert calls == ["open 0", "config (640, 480) RGB888", "start", "stop", "close"]


def test_picamera2_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import raises ImportError
    with pytest.raises(SourceError, match="picamera2 is not installed"):
        Picamera2Source(0).open()
    assert not isinstance(camera_source(0, backend="auto"), Picamera2Source)


def test_realtime_pacing_and_loop(tmp_path: Path) -> None:
    pacer = Pacer(100.0)
    start = time.perf_counter()
    for _ in range(6):
        pacer.wait()
    assert time.perf_counter() - start >= 0.045
    (tmp_path / PHOTOS[0].name).symlink_to(PHOTOS[0])
    looping = ImageFolderSource(tmp_path, loop=True)
    looping.open()
    assert all(looping.read().shape[2] == 3 for _ in range(3))  # one photo, read three times


def test_stream_url_source_reads_mjpeg_and_notices_when_the_stream_dies() -> None:
    from edge.sinks.dashboard import DashboardServer

    server = DashboardServer("127.0.0.1", 0)
    stop = threading.Event()

    def publish() -> None:
        image = np.zeros((120, 160, 3), np.uint8)
        image[..., 2] = 200  # red in BGR
        while not stop.is_set():
            server.publish(image.copy())
            time.sleep(0.02)

    threading.Thread(target=publish, daemon=True).start()
    source = file_source(server.url + "stream.mjpg")
    assert source.live
    grabber = FrameGrabber(source, backoff=Backoff(0.01, 0.02, attempts=2)).start()
    try:
        frames = drain(grabber, limit=3)
        assert len(frames) == 3 and frames[0].rgb[0, 0].tolist() == [200, 0, 0]
        stop.set()
        server.close()
        drain(grabber)
        assert grabber.finished and "could not reopen it after 2 attempts" in grabber.error
    finally:
        stop.set()
        grabber.stop()

"""The frame loop: a slow model drops frames without growing memory; stops and faults."""

from __future__ import annotations

import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_VOC, DETECTORS, ROOT
from support.cameras import FastCamera, ScriptedCapture

from edge.core.boxes import Face
from edge.inference.pipeline import Pipeline, PipelineOptions
from edge.loop import LoopOptions, run_loop
from edge.sinks.outputs import JsonLinesSink
from edge.video.capture import Backoff, FrameGrabber
from edge.video.sources import OpenCVSource, file_source
from edge.video.videomaker import make_video

MODEL = Path(os.environ.get("MASKEDGE_MODEL") or ROOT / "models" / "face_mask_2c_int8.tflite")
YUNET = DETECTORS / "face_detection_yunet_2023mar.onnx"
needs_model = pytest.mark.skipif(not MODEL.is_file(),
                                 reason=f"shipped model {MODEL} not built yet")


class SlowDetector:
    """Pretends to be a slow model: one centred face after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def detect(self, rgb: np.ndarray) -> list[Face]:
        time.sleep(self.delay)
        h, w = rgb.shape[:2]
        return [Face((w / 4, h / 4, 3 * w / 4, 3 * h / 4), 0.9)]


class FixedClassifier:
    labels = ("with_mask", "without_mask")

    def classify(self, crops: list[np.ndarray]) -> np.ndarray:
        return np.tile(np.array([[0.2, 0.8]], np.float32), (len(crops), 1))


class VgaCamera(FastCamera):
    """A live 640x480 camera at ~200 FPS."""

    def read(self) -> np.ndarray:
        time.sleep(self.period)
        self.n += 1
        return np.full((480, 640, 3), self.n % 256, np.uint8)


def slow_pipeline(delay: float) -> Pipeline:
    """A pipeline whose detector takes `delay` s on every frame (not every other, the default)."""
    return Pipeline.from_parts(SlowDetector(delay), FixedClassifier(),  # type: ignore[arg-type]
                               PipelineOptions(detect_every=1))


def test_slow_model_drops_frames_and_memory_stays_flat() -> None:
    grabber = FrameGrabber(VgaCamera(period=0.005)).start()
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    tracemalloc.start()
    try:
        summary = run_loop(slow_pipeline(0.05), grabber, [], LoopOptions(), stop)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        grabber.stop()
    frame_bytes = 480 * 640 * 3
    assert summary.stopped_by == "signal"
    assert 10 <= summary.frames <= 35  # ~20 frames/s for a 50 ms model
    assert summary.captured > 3 * summary.frames and summary.dropped > summary.frames
    assert peak < 12 * frame_bytes, f"{peak / frame_bytes:.1f} frames held"  # not ~200
    assert summary.faces == {"with_mask": 0, "without_mask": summary.frames}
    assert summary.timings_ms["detect"] >= 45


def test_max_frames_and_summary_counts() -> None:
    grabber = FrameGrabber(FastCamera(period=0.001)).start()
    try:
        summary = run_loop(slow_pipeline(0.0), grabber, [], LoopOptions(max_frames=7))
    finally:
        grabber.stop()
    assert summary.stopped_by == "max frames" and summary.frames == 7
    assert summary.fps > 0 and "7 processed" in summary.format()


def test_camera_lost_for_good_ends_the_run_with_an_error() -> None:
    source = OpenCVSource(0, live=True, description="camera 0",
                          capture_factory=ScriptedCapture([4, "fail"]))
    grabber = FrameGrabber(source, backoff=Backoff(0.01, 0.02, attempts=2)).start()
    try:
        summary = run_loop(slow_pipeline(0.0), grabber, [], LoopOptions())
    finally:
        grabber.stop()
    assert summary.stopped_by == "source lost" and summary.frames >= 1
    assert summary.error and "could not reopen it after 2 attempts" in summary.error
    assert "error       camera 0 stopped delivering frames" in summary.format()


@needs_model
def test_detect_ahead_gives_the_same_faces_as_the_sequential_loop(tmp_path: Path) -> None:
    video = make_video(sorted((DATA_VOC / "images").glob("*.jpg"))[:12], tmp_path / "v.mp4",
                       (640, 480), fps=10).path
    pipeline = Pipeline(PipelineOptions(model=MODEL, detector_model=YUNET))
    results = {}
    for ahead in (False, True):
        events = tmp_path / f"ahead-{ahead}.jsonl"
        sink = JsonLinesSink(events)
        grabber = FrameGrabber(file_source(str(video))).start()
        try:
            summary = run_loop(pipeline, grabber, [sink], LoopOptions(detect_ahead=ahead))
        finally:
            grabber.stop()
            sink.close()
        assert summary.frames == 12 and summary.stopped_by == "end of stream"
        results[ahead] = [json.loads(x)["faces"] for x in events.read_text().splitlines()]
    assert results[True] == results[False] and any(results[True])


def test_detect_ahead_reports_a_lost_camera() -> None:
    source = OpenCVSource(0, live=True, description="camera 0",
                          capture_factory=ScriptedCapture([4, "fail"]))
    grabber = FrameGrabber(source, backoff=Backoff(0.01, 0.02, attempts=2)).start()
    try:
        summary = run_loop(slow_pipeline(0.0), grabber, [], LoopOptions(detect_ahead=True))
    finally:
        grabber.stop()
    assert summary.stopped_by == "source lost" and summary.frames >= 1
    assert "could not reopen" in (summary.error or "")

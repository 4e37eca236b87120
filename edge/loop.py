"""The frame loop: newest frame -> pipeline -> drawing -> outputs, timed per stage, until stopped.

`run_loop` takes a started `FrameGrabber` (edge/capture.py), a `Pipeline` and output sinks
(edge/outputs.py). It stops at the end of a file, after `max_frames`, when `stop` is set (the CLI
sets it on SIGINT/SIGTERM), when a window asks to quit, or when a lost camera cannot be reopened;
then it returns a `RunSummary`: frames, dropped and unreadable frames, FPS, faces per class, mean
milliseconds per stage. Closing the sinks is the caller's job, so they are closed on every path.
With `detect_ahead`, detection of the next frame overlaps classification of this one
(edge/detect_ahead.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.alerts import AlertTracker
from edge.capture import CapturedFrame, FrameGrabber
from edge.detect_ahead import DetectAhead
from edge.draw import annotate
from edge.outputs import Sink
from edge.pipeline import FrameResult, Pipeline

STAGES = ("capture", "wait", "detect", "classify", "draw", "output")


@dataclass(frozen=True)
class LoopOptions:
    max_frames: int | None = None
    alert_after: int | None = None  # frames a face must stay unmasked to raise an alert
    alert_labels: tuple[str, ...] = ()  # labels that count as unmasked
    status_every: float = 0.0  # seconds between status lines (0: none)
    #: Detect the next frame on a thread while classifying this one (edge/detect_ahead.py).
    detect_ahead: bool = False


@dataclass
class RunSummary:
    source: str
    frames: int = 0  # processed
    captured: int = 0
    dropped: int = 0
    unreadable: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    faces: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)  # mean per processed frame
    stopped_by: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        faces = ", ".join(f"{k} {v}" for k, v in self.faces.items()) or "none"
        stages = "  ".join(f"{k} {v:.1f}" for k, v in self.timings_ms.items())
        lines = [
            f"source      {self.source}",
            f"stopped by  {self.stopped_by}",
            f"frames      {self.frames} processed in {self.seconds:.1f} s = {self.fps:.1f} FPS "
            f"(captured {self.captured}, dropped {self.dropped}, unreadable {self.unreadable}, "
            f"reconnects {self.reconnects})",
            f"faces       {faces}",
            f"alerts      {self.alerts}",
            f"ms/frame    {stages}",
        ]
        if self.error:
            lines.append(f"error       {self.error}")
        return "\n".join(lines)


def frame_record(index: int, captured_at: float, result: FrameResult, fps: float,
                 timings: dict[str, float]) -> dict[str, Any]:
    """The JSON-lines object of one frame."""
    return {"frame": index, "time": round(captured_at, 3),
            "faces": [f.to_json() for f in result.faces], "fps": round(fps, 2),
            "timings_ms": {k: round(v, 2) for k, v in timings.items()}}


class _Feed:
    """The next (frame, result) pair: detect + classify here, or classify what DetectAhead found."""

    def __init__(self, pipeline: Pipeline, grabber: FrameGrabber, detect_ahead: bool) -> None:
        self.pipeline, self.grabber = pipeline, grabber
        self.ahead = DetectAhead(pipeline, grabber).start() if detect_ahead else None
        self.ended = False
        self.error: str | None = None

    def next(self) -> tuple[CapturedFrame, FrameResult, float] | None:
        """(frame, result, milliseconds waited for the frame); None if nothing came yet or
        the feed `ended` (then `error` says why, if it failed)."""
        waited = time.perf_counter()
        if self.ahead is None:
            captured = self.grabber.next(timeout=0.1)
            if captured is None:
                self._check(self.grabber.finished, None)
                return None
            wait_ms = (time.perf_counter() - waited) * 1000.0
            return captured, self.pipeline.process(captured.rgb), wait_ms
        detected = self.ahead.next(timeout=0.1)
        if detected is None:
            self._check(self.ahead.finished, self.ahead.error)
            return None
        wait_ms = (time.perf_counter() - waited) * 1000.0
        frame = detected.frame
        return frame, self.pipeline.classify(frame.rgb, detected.faces, detected.detect_ms), wait_ms

    def _check(self, finished: bool, error: str | None) -> None:
        if finished:
            self.ended = True
            self.error = self.grabber.error or error

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.stop()


def run_loop(pipeline: Pipeline, grabber: FrameGrabber, sinks: Sequence[Sink],
             options: LoopOptions | None = None, stop: threading.Event | None = None,
             status: Callable[[str], None] | None = None) -> RunSummary:
    """Process frames from a started grabber until something stops the run (module docstring)."""
    options = options or LoopOptions()
    stop = stop or threading.Event()
    summary = RunSummary(source=grabber.source.description)
    faces: Counter[str] = Counter({label: 0 for label in pipeline.labels})
    totals: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    alerts = (AlertTracker(options.alert_after, options.alert_labels)
              if options.alert_after else None)
    drawing = any(s.needs_image for s in sinks)
    fps = 0.0
    last_done: float | None = None
    start = time.perf_counter()
    next_status = start + options.status_every
    feed = _Feed(pipeline, grabber, options.detect_ahead)
    try:
        while True:
            if stop.is_set():
                stopped_by = "signal"
                break
            if options.max_frames is not None and summary.frames >= options.max_frames:
                stopped_by = "max frames"
                break
            if any(getattr(s, "quit_requested", False) for s in sinks):
                stopped_by = "window closed"
                break
            item = feed.next()
            if item is None:
                if feed.ended:
                    stopped_by = "end of stream" if not feed.error else (
                        "source lost" if grabber.error else "error")
                    summary.error = feed.error
                    break
                continue
            captured, result, wait_ms = item
            timings = {"capture": captured.capture_ms, "wait": wait_ms, **result.timings_ms}
            drawn = time.perf_counter()
            annotated = annotate(captured.rgb, result, fps) if drawing else None
            timings["draw"] = (time.perf_counter() - drawn) * 1000.0
            record = frame_record(captured.index, captured.time, result, fps, timings)
            out_start = time.perf_counter()
            for sink in sinks:
                sink.write(record, annotated)
            for event in alerts.update(captured.index, result.faces) if alerts else []:
                event["time"] = record["time"]
                summary.alerts += 1
                if status is not None:
                    status(f"alert: frame {event['frame']}: {event['label']} for "
                           f"{event['frames']} frames at {event['box']}")
                for sink in sinks:
                    sink.event(event)
            done = time.perf_counter()
            timings["output"] = (done - out_start) * 1000.0
            for key in STAGES:
                totals[key] += timings.get(key, 0.0)
            faces.update(f.label for f in result.faces)
            summary.frames += 1
            if last_done is not None:
                instant = 1.0 / max(done - last_done, 1e-6)
                fps = instant if fps == 0.0 else 0.9 * fps + 0.1 * instant
            last_done = done
            if status is not None and options.status_every > 0 and done >= next_status:
                next_status = done + options.status_every
                status(f"frame {captured.index}: {fps:.1f} FPS, "
                       + ", ".join(f"{k} {v}" for k, v in faces.items()))
    finally:
        feed.close()
    summary.seconds = time.perf_counter() - start
    summary.fps = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    stats = grabber.stats
    summary.captured, summary.dropped = stats.captured, stats.dropped
    summary.unreadable, summary.reconnects = stats.unreadable, stats.reconnects
    summary.faces = dict(faces)
    summary.timings_ms = {k: round(v / max(summary.frames, 1), 2) for k, v in totals.items()}
    summary.stopped_by = stopped_by
    return summary

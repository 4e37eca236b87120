"""The frame loop: newest frame -> pipeline -> tracks -> drawing -> outputs, timed, until stopped.

`run_loop` takes a started `FrameGrabber` (edge/video/capture.py), a `Pipeline` and output sinks
(edge/sinks/outputs.py). Each frame's faces get track ids and smoothed labels
(edge/tracking/tracks.py), are marked inside or outside the zones (edge/tracking/zones.py), counted
as people (edge/tracking/stats.py) and checked for alerts (edge/tracking/alerts.py); alerts go
through the alert hooks, then to every sink, and `stats` events go to every sink every `stats_every`
seconds and once at the end (shapes: edge/tracking/events.py). The run stops at the end of a file,
after `max_frames`, when `stop` is set (the runner sets it on SIGINT/SIGTERM), when a window asks to
quit, or when a lost camera cannot be reopened; then `run_loop` returns a `RunSummary`: frames,
dropped and unreadable frames, FPS, faces and people per class, compliance, alerts, mean
milliseconds per stage. Closing the sinks is the caller's job (edge/runner.py), so they are closed
on every path. With `detect_ahead`, detection of the next frame overlaps classification of this one
(edge/inference/detect_ahead.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edge.inference.detect_ahead import DetectAhead
from edge.inference.pipeline import FrameResult, Pipeline
from edge.sinks.draw import annotate
from edge.sinks.outputs import Sink, StopsRun
from edge.tracking.alerts import TrackAlerts
from edge.tracking.events import AlertHook, FrameRecord
from edge.tracking.stats import PeopleCounter
from edge.tracking.tracks import TrackedFace, Tracker, TrackerOptions
from edge.tracking.zones import PixelBox, Zone, in_zones, pixel_zones
from edge.video.capture import CapturedFrame, FrameGrabber

STAGES = ("capture", "wait", "detect", "classify", "track", "draw", "output")
#: What the people count and the alerts of a run mean, for its summary.
COUNTING = {
    "tracks": "a person is a track seen in several frames; a cut ends every track",
    "photos": "photos are independent: each face of each photo counts once and alerts at once",
}
Status = Callable[[str], None]


@runtime_checkable
class SeesFaces(Protocol):
    """A sink that also needs each frame's raw pixels and its faces as the tracker gave them
    (per-class probabilities, which the JSON record leaves out): `edge run --collect`
    (edge/collect/sink.py). Called after `write`; a run without one does nothing more."""

    def see_faces(self, frame: CapturedFrame, faces: Sequence[TrackedFace],
                  record: FrameRecord) -> None: ...


@dataclass(frozen=True)
class LoopOptions:
    max_frames: int | None = None
    alert_after: int | None = None  # frames a tracked face must stay unmasked to raise an alert
    alert_labels: tuple[str, ...] = ()  # labels that count as unmasked
    status_every: float = 0.0  # seconds between status lines (0: none)
    #: Detect the next frame on a thread while classifying this one
    #: (edge/inference/detect_ahead.py).
    detect_ahead: bool = False
    stats_every: float = 0.0  # seconds between `stats` events (0: none, not even at the end)
    zones: tuple[Zone, ...] = ()  # faces count only inside these (none: everywhere)
    blur_faces: bool = False  # blur faces in the annotated frames
    tracking: TrackerOptions = field(default_factory=TrackerOptions)


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
    faces: dict[str, int] = field(default_factory=dict)  # face sightings in zones, smoothed label
    people: dict[str, int] = field(default_factory=dict)  # distinct tracks per majority label
    compliance: float | None = None  # share of people with a mask (None: nobody counted)
    #: "tracks" (video, cameras, streams: a person is a track seen `count_after` times) or
    #: "photos" (every face of every photo is a person of that photo; nothing carries over).
    counting: str = "tracks"
    alerts: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)  # mean per processed frame
    stopped_by: str = ""
    error: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # MQTT, webhook, snapshots

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        faces = ", ".join(f"{k} {v}" for k, v in self.faces.items()) or "none"
        people = ", ".join(f"{k} {v}" for k, v in self.people.items()) or "none"
        compliance = "-" if self.compliance is None else f"{self.compliance:.0%}"
        stages = "  ".join(f"{k} {v:.1f}" for k, v in self.timings_ms.items())
        lines = [
            f"source      {self.source}",
            f"stopped by  {self.stopped_by}",
            f"frames      {self.frames} processed in {self.seconds:.1f} s = {self.fps:.1f} FPS "
            f"(captured {self.captured}, dropped {self.dropped}, unreadable {self.unreadable}, "
            f"reconnects {self.reconnects})",
            f"faces       {faces}",
            f"people      {people} (compliance {compliance}; {COUNTING[self.counting]})",
            f"alerts      {self.alerts}",
            f"ms/frame    {stages}",
        ]
        for name, counters in self.outputs.items():
            lines.append(f"{name:<11} " + ", ".join(f"{k} {v}" for k, v in counters.items()
                                                    if not isinstance(v, dict | list)))
        if self.error:
            lines.append(f"error       {self.error}")
        return "\n".join(lines)


def frame_record(index: int, captured_at: float, faces: Sequence[TrackedFace], fps: float,
                 timings: dict[str, float], source: str | None = None) -> FrameRecord:
    """The JSON-lines object of one frame (edge/tracking/events.py); `source` names the frame's
    file."""
    return FrameRecord(frame=index, time=round(captured_at, 3),
                       **({"source": source} if source is not None else {}),  # type: ignore
                       faces=[f.to_json() for f in faces], fps=round(fps, 2),
                       timings_ms={k: round(v, 2) for k, v in timings.items()})


class _Feed:
    """The next (frame, result) pair from a grabber: detect + classify here."""

    def __init__(self, pipeline: Pipeline, grabber: FrameGrabber) -> None:
        self.pipeline, self.grabber = pipeline, grabber
        self.ended = False
        self.error: str | None = None

    def next(self) -> tuple[CapturedFrame, FrameResult, float] | None:
        """(frame, result, milliseconds waited for the frame); None if nothing came yet or
        the feed `ended` (then `error` says why, if it failed)."""
        waited = time.perf_counter()
        captured = self.grabber.next(timeout=0.1)
        if captured is None:
            self._check(self.grabber.finished, None)
            return None
        wait_ms = (time.perf_counter() - waited) * 1000.0
        return captured, self.pipeline.process(captured.rgb, captured.name is None,
                                               captured.scene), wait_ms

    def _check(self, finished: bool, error: str | None) -> None:
        if finished:
            self.ended = True
            self.error = self.grabber.error or error

    def close(self) -> None:
        pass


class _AheadFeed(_Feed):
    """The same feed with detection on a thread one frame ahead (edge/inference/detect_ahead.py)."""

    def __init__(self, pipeline: Pipeline, grabber: FrameGrabber) -> None:
        super().__init__(pipeline, grabber)
        self.ahead = DetectAhead(pipeline, grabber).start()

    def next(self) -> tuple[CapturedFrame, FrameResult, float] | None:
        waited = time.perf_counter()
        detected = self.ahead.next(timeout=0.1)
        if detected is None:
            self._check(self.ahead.finished, self.ahead.error)
            return None
        wait_ms = (time.perf_counter() - waited) * 1000.0
        frame = detected.frame
        return frame, self.pipeline.classify(frame.rgb, detected.faces, detected.detect_ms,
                                             frame.name is None, frame.scene), wait_ms

    def close(self) -> None:
        self.ahead.stop()


class _FrameLoop:
    """The state of one run between frames: tracks, counts, alerts, timings, FPS, clocks."""

    def __init__(self, pipeline: Pipeline, grabber: FrameGrabber, sinks: Sequence[Sink],
                 options: LoopOptions, hooks: Sequence[AlertHook],
                 status: Status | None) -> None:
        self.sinks, self.options, self.hooks, self.status = sinks, options, hooks, status
        self.grabber = grabber
        self.summary = RunSummary(source=grabber.source.description)
        self.faces: Counter[str] = Counter(dict.fromkeys(pipeline.labels, 0))
        self.totals: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.tracker = Tracker(pipeline.labels, options.tracking)
        self.people = PeopleCounter(self.tracker)
        self.alerts = (TrackAlerts(options.alert_after, options.alert_labels)
                       if options.alert_after else None)
        self.drawing = any(getattr(x, "needs_image", False) for x in (*sinks, *hooks))
        self.watchers = [s for s in sinks if isinstance(s, SeesFaces)]
        self.fps = 0.0
        self.start = self.last_done = time.perf_counter()
        self.next_status = self.start + options.status_every
        self.next_stats = self.start + options.stats_every
        self.last: tuple[int, float, list[TrackedFace]] = (-1, time.time(), [])
        self._zones: tuple[tuple[int, int], list[PixelBox]] | None = None

    def stop_reason(self, stop: threading.Event) -> str | None:
        """Why the loop should stop before the next frame, or None to go on."""
        if stop.is_set():
            return "signal"
        if self.options.max_frames is not None and self.summary.frames >= self.options.max_frames:
            return "max frames"
        if any(isinstance(s, StopsRun) and s.quit_requested for s in self.sinks):
            return "window closed"
        return None

    def zones(self, rgb: np.ndarray) -> list[PixelBox]:
        """The zones in pixels of this frame's size (computed again only when it changes)."""
        size = (rgb.shape[1], rgb.shape[0])
        if self._zones is None or self._zones[0] != size:
            self._zones = size, pixel_zones(self.options.zones, *size)
        return self._zones[1]

    def step(self, captured: CapturedFrame, result: FrameResult, wait_ms: float) -> None:
        """Track, draw and output one frame, then update counts, FPS, status and stats."""
        timings = {"capture": captured.capture_ms, "wait": wait_ms, **result.timings_ms}
        clock = time.perf_counter()
        zones = self.zones(captured.rgb)
        tracked = self.tracker.update(result.faces, in_zones([f.box for f in result.faces], zones),
                                      captured.scene, still=captured.name is not None)
        self.people.update()
        if captured.name is not None:
            self.summary.counting = "photos"
        timings["track"] = (time.perf_counter() - clock) * 1000.0
        clock = time.perf_counter()
        annotated = (annotate(captured.rgb, tracked, self.fps, zones=zones,
                              blur=self.options.blur_faces) if self.drawing else None)
        timings["draw"] = (time.perf_counter() - clock) * 1000.0
        clock = time.perf_counter()
        record = frame_record(captured.index, captured.time, tracked, self.fps, timings,
                              captured.name)
        for sink in self.sinks:
            sink.write(record, annotated)
        for watcher in self.watchers:
            watcher.see_faces(captured, tracked, record)
        self._alert(captured, tracked, annotated)
        done = time.perf_counter()
        timings["output"] = (done - clock) * 1000.0
        self._count(captured, tracked, timings, done)

    def _alert(self, captured: CapturedFrame, tracked: list[TrackedFace],
               annotated: np.ndarray | None) -> None:
        """Raise this frame's alerts: hooks first (they may add fields), then every sink."""
        if self.alerts is None:
            return
        alive = {t.id for t in self.tracker.tracks + self.tracker.lost}
        for alert in self.alerts.update(captured.index, tracked, alive,
                                        still=captured.name is not None):
            alert["time"] = round(captured.time, 3)
            if captured.name is not None:
                alert["source"] = captured.name
            for hook in self.hooks:
                hook.on_alert(alert, captured.rgb, annotated)
            self.summary.alerts += 1
            if self.status is not None:
                self.status(f"alert: frame {alert['frame']}: track {alert['track']} "
                            f"{alert['label']} for {alert['frames']} frames at {alert['box']}")
            for sink in self.sinks:
                sink.event(alert)

    def _count(self, captured: CapturedFrame, tracked: list[TrackedFace],
               timings: dict[str, float], done: float) -> None:
        for key in STAGES:
            self.totals[key] += timings.get(key, 0.0)
        self.faces.update(f.label for f in tracked if f.in_zone)
        if self.summary.frames:
            instant = 1.0 / max(done - self.last_done, 1e-6)
            self.fps = instant if self.fps == 0.0 else 0.9 * self.fps + 0.1 * instant
        self.summary.frames += 1
        self.last_done = done
        self.last = (captured.index, captured.time, tracked)
        options = self.options
        if self.status is not None and options.status_every > 0 and done >= self.next_status:
            self.next_status = done + options.status_every
            self.status(f"frame {captured.index}: {self.fps:.1f} FPS, people "
                        + ", ".join(f"{k} {v}" for k, v in self.people.people().items()))
        if options.stats_every > 0 and done >= self.next_stats:
            self.next_stats = done + options.stats_every
            self.emit_stats()

    def emit_stats(self, at: float | None = None) -> None:
        """Give every sink a `stats` event about the last frame (at `at`, default its time)."""
        frame, captured_at, tracked = self.last
        event = self.people.event(frame, captured_at if at is None else at, tracked, self.fps)
        for sink in self.sinks:
            sink.event(event)

    def finish(self, stopped_by: str, error: str | None) -> RunSummary:
        """The final `stats` event (when they are on) and the summary."""
        if self.options.stats_every > 0:
            self.emit_stats(at=time.time())
        summary = self.summary
        summary.seconds = time.perf_counter() - self.start
        summary.fps = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
        stats = self.grabber.stats
        summary.captured, summary.dropped = stats.captured, stats.dropped
        summary.unreadable, summary.reconnects = stats.unreadable, stats.reconnects
        summary.faces = dict(self.faces)
        summary.people = self.people.people()
        summary.compliance = self.people.compliance(summary.people)
        summary.timings_ms = {k: round(v / max(summary.frames, 1), 2)
                              for k, v in self.totals.items()}
        summary.stopped_by, summary.error = stopped_by, error
        return summary


def _drive(state: _FrameLoop, feed: _Feed, grabber: FrameGrabber,
           stop: threading.Event) -> str:
    """Step frames until something stops the run; why it stopped."""
    while True:
        reason = state.stop_reason(stop)
        if reason is not None:
            return reason
        item = feed.next()
        if item is not None:
            state.step(*item)
        elif feed.ended:
            if not feed.error:
                return "end of stream"
            return "source lost" if grabber.error else "error"


def run_loop(pipeline: Pipeline, grabber: FrameGrabber, sinks: Sequence[Sink],
             options: LoopOptions | None = None, stop: threading.Event | None = None,
             status: Status | None = None, hooks: Sequence[AlertHook] = ()) -> RunSummary:
    """Process frames from a started grabber until something stops the run (module docstring).
    `hooks` see each alert (with the frame) before the sinks do."""
    options = options or LoopOptions()
    state = _FrameLoop(pipeline, grabber, sinks, options, hooks, status)
    feed = (_AheadFeed if options.detect_ahead else _Feed)(pipeline, grabber)
    try:
        stopped_by = _drive(state, feed, grabber, stop or threading.Event())
    finally:
        feed.close()
    return state.finish(stopped_by, feed.error)

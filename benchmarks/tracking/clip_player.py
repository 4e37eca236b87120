"""Play a clip through the real device loop, exactly as `edge run` does, and keep what it reports.

The tracking benchmark must measure the device, not a model of it: `ClipSource` is an
`edge.video.sources.FrameSource` that renders a clip's frames on demand
(benchmarks/tracking/clips.py), read by `edge.video.capture.FrameGrabber(drop=False)` on its thread,
processed by `edge.inference.pipeline.Pipeline` and `edge.loop.run_loop` with the `LoopOptions`
`edge run` builds (video mode, detect every 2nd frame, classify every 3rd, tracker, people counter,
alerts), into a `CollectingSink` that keeps every frame record and event, like `--json` would write
them.

Tracker variants differ only after the pipeline: the pipeline's output on a clip does not depend
on the tracker. So the first variant of a clip runs the real detector and classifier and records
their outputs (`Tape`), and the other variants replay them through the same Pipeline code, loop,
tracker and alerts; a replayed call checks that it sees the same frame (a pixel fingerprint) and
the same number of faces as the recorded one, so a replay that diverged fails instead of scoring
the wrong thing. Pipeline FPS is that of the recorded (real) run.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.tracking.clips import Clip
from benchmarks.tracking.metrics import Played
from edge.core.boxes import Face
from edge.inference.pipeline import Pipeline, PipelineOptions
from edge.loop import LoopOptions, run_loop
from edge.tracking.tracks import TrackerOptions
from edge.video.capture import FrameGrabber
from edge.video.sources import FrameSource, StreamEnded


class ReplayError(RuntimeError):
    """A replayed run asked the models something the recorded run did not."""


class ClipSource:
    """A clip as a file-like frame source: every frame in order, then `StreamEnded`."""

    live = False

    def __init__(self, clip: Clip) -> None:
        self.clip = clip
        self.description = f"clip {clip.name}"
        self.fps: float | None = clip.fps
        self._next = 0

    def open(self) -> None:
        self._next = 0

    def read(self) -> np.ndarray:
        if self._next >= len(self.clip):
            raise StreamEnded(self.description)
        rgb = self.clip.frame(self._next)
        self._next += 1
        return rgb

    def close(self) -> None:
        pass


class CollectingSink:
    """An `edge.sinks.outputs.Sink` keeping every frame record and event (`played`)."""

    needs_image = False

    def __init__(self, on_frame: Callable[[], None] | None = None) -> None:
        self.played = Played()
        self.on_frame = on_frame

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        self.played.records.append(record)
        if self.on_frame is not None:
            self.on_frame()

    def event(self, record: dict[str, Any]) -> None:
        self.played.events.append(record)

    def close(self, ok: bool = True) -> None:
        pass


def fingerprint(rgb: np.ndarray) -> int:
    """A cheap checksum of a frame (a sparse grid of its pixels)."""
    return zlib.crc32(np.ascontiguousarray(rgb[::23, ::29]).tobytes())


@dataclass
class Tape:
    """The detector's and classifier's outputs over one run, in call order."""

    detections: list[tuple[int, list[Face]]] = field(default_factory=list)
    classifications: list[tuple[int, np.ndarray]] = field(default_factory=list)


class RecordingDetector:
    def __init__(self, inner: Any, tape: Tape) -> None:
        self.inner, self.tape = inner, tape

    def detect(self, rgb: np.ndarray) -> list[Face]:
        faces = list(self.inner.detect(rgb))
        self.tape.detections.append((fingerprint(rgb), faces))
        return faces


class RecordingClassifier:
    def __init__(self, inner: Any, tape: Tape) -> None:
        self.inner, self.tape = inner, tape

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.inner.labels)

    def classify(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        probs = np.asarray(self.inner.classify(crops))
        self.tape.classifications.append((len(crops), probs.copy()))
        return probs


class ReplayDetector:
    def __init__(self, tape: Tape) -> None:
        self.tape, self._next = tape, 0

    def detect(self, rgb: np.ndarray) -> list[Face]:
        if self._next >= len(self.tape.detections):
            raise ReplayError("replay: more detector calls than recorded")
        key, faces = self.tape.detections[self._next]
        if key != fingerprint(rgb):
            raise ReplayError(f"replay: detector call {self._next} sees another frame")
        self._next += 1
        return list(faces)


class ReplayClassifier:
    def __init__(self, tape: Tape, labels: Sequence[str]) -> None:
        self.tape, self._next, self._labels = tape, 0, tuple(labels)

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    def classify(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if self._next >= len(self.tape.classifications):
            raise ReplayError("replay: more classifier calls than recorded")
        count, probs = self.tape.classifications[self._next]
        if count != len(crops):
            raise ReplayError(f"replay: classifier call {self._next} has {len(crops)} faces, "
                              f"recorded {count}")
        self._next += 1
        return probs.copy()


@dataclass(frozen=True)
class Device:
    """What every run shares: the live models, the pipeline options and the alert settings."""

    detector: Any
    classifier: Any
    options: PipelineOptions
    alert_after: int | None
    alert_labels: tuple[str, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.classifier.labels)

    def pipeline(self, tape: Tape, replay: bool) -> Pipeline:
        """A fresh pipeline (no state from an earlier clip): recording the live models into
        `tape`, or replaying it."""
        if replay:
            return Pipeline.from_parts(ReplayDetector(tape),
                                       ReplayClassifier(tape, self.labels),
                                       self.options)
        return Pipeline.from_parts(RecordingDetector(self.detector, tape),
                                   RecordingClassifier(self.classifier, tape),
                                   self.options)


def play(source: FrameSource, pipeline: Pipeline, device: Device, tracking: TrackerOptions,
         on_frame: Callable[[], None] | None = None) -> Played:
    """One device run over `source`: grabber (no drops: every frame is processed), `run_loop`
    with `edge run`'s loop options and this tracker; the records, events and summary."""
    grabber = FrameGrabber(source, drop=False)
    sink = CollectingSink(on_frame)
    grabber.start()
    try:
        summary = run_loop(pipeline, grabber, [sink], LoopOptions(
            alert_after=device.alert_after, alert_labels=device.alert_labels,
            stats_every=0.0, tracking=tracking))
    finally:
        grabber.stop()
        sink.close()
    if summary.error:
        raise RuntimeError(f"{source.description}: {summary.error}")
    sink.played.summary = summary.to_json()
    sink.played.tracking = tracking
    return sink.played

"""Detect faces in the next frame on a thread while the frame loop classifies the current one.

Both the detector (OpenCV DNN / LiteRT) and the classifier (LiteRT) release the GIL while they
compute, so on a multi-core board the two stages overlap: throughput approaches the slower
stage instead of their sum, at the cost of one frame of extra latency. The handoff holds one
detected frame at most; frames the loop cannot keep up with are dropped by the grabber as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.core.boxes import Face
from edge.inference.pipeline import Pipeline
from edge.video.capture import CapturedFrame, FrameGrabber
from edge.video.handoff import HandoffThread


@dataclass(frozen=True)
class DetectedFrame:
    frame: CapturedFrame
    faces: list[Face]
    detect_ms: float


class DetectAhead(HandoffThread[DetectedFrame]):
    """Pulls frames from a grabber, detects faces, hands them over one at a time."""

    def __init__(self, pipeline: Pipeline, grabber: FrameGrabber) -> None:
        self.pipeline = pipeline
        self.grabber = grabber
        self.error: str | None = None
        super().__init__("detect")

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.grabber.next(timeout=0.1)
                if frame is None:
                    if self.grabber.finished:
                        break
                    continue
                faces, detect_ms = (self.pipeline.detect(frame.rgb) if frame.name is not None
                                    else self.pipeline.detect_video(frame.rgb, frame.scene))
                self._handoff.put(DetectedFrame(frame, faces, detect_ms), wait=True)
        except Exception as exc:  # surface detector failures to the loop
            self.error = f"detection failed: {type(exc).__name__}: {exc}"
        finally:
            self._handoff.end()

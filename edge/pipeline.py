"""One frame in, faces with labels out: detect, crop with a margin, classify all faces in one batch.

This is the Python API of the device runtime:

    from edge.pipeline import Pipeline, PipelineOptions
    pipeline = Pipeline(PipelineOptions(detector="yunet", detector_model="yunet.onnx"))
    result = pipeline.process(rgb_frame)      # FrameResult
    for face in result.faces:
        print(face.box, face.label, face.score)

Frames are RGB uint8 (H, W, 3). The camera loop (edge/loop.py) adds capture, drawing and outputs
around `process`. No TensorFlow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.assets import resolve_model
from edge.boxes import Box, Face
from edge.classifier import ClassifierOptions, MaskClassifier
from edge.detectors import DEFAULT_DETECTOR, Detector, DetectorOptions, create_detector
from edge.imageops import FACE_MARGIN, crop_face


@dataclass(frozen=True)
class PipelineOptions:
    """Everything that decides what the pipeline computes and how fast."""

    model: Path | None = None  # None: $MASKEDGE_MODEL or models/face_mask_2c_int8.tflite
    detector: str = DEFAULT_DETECTOR
    detector_model: Path | None = None  # None: the shipped YuNet, or the verified cached download
    detector_threshold: float | None = None  # None: the detector's default
    #: YuNet's ONNX file sees frames scaled to this width; 0 = as they are; None = the default
    #: (edge.detectors.DEFAULT_DETECT_WIDTH; the shipped .tflite YuNet has it built in).
    detect_width: int | None = None
    calibrate_boxes: bool = True  # YuNet boxes mapped onto the annotation convention
    threads: int | None = None  # interpreter (and OpenCV) threads; None lets them choose
    runtime: str = "auto"  # auto | litert | tflite_runtime | tensorflow
    margin: float = FACE_MARGIN
    max_faces: int = 32


@dataclass(frozen=True)
class FaceResult:
    """One classified face."""

    box: Box  # (x1, y1, x2, y2) in frame pixels
    label: str
    score: float  # probability of `label`
    probabilities: tuple[float, ...]  # one per model label, in label order
    detector_score: float

    def to_json(self) -> dict[str, Any]:
        return {"box": [round(v, 1) for v in self.box], "label": self.label,
                "score": round(self.score, 4), "detector_score": round(self.detector_score, 4)}


@dataclass(frozen=True)
class FrameResult:
    """The faces of one frame and how long each stage took (milliseconds)."""

    faces: tuple[FaceResult, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """Detector + classifier. Build from options, or from ready parts (`from_parts`)."""

    def __init__(self, options: PipelineOptions | None = None, *,
                 detector: Detector | None = None,
                 classifier: MaskClassifier | None = None) -> None:
        """Build the parts the options name; `detector` / `classifier` given ready are used as
        they are (tests, benchmarks)."""
        self.options = options = options or PipelineOptions()
        self.classifier = classifier if classifier is not None else MaskClassifier(
            ClassifierOptions(resolve_model(options.model), options.threads, options.runtime))
        self.detector = detector if detector is not None else create_detector(DetectorOptions(
            name=options.detector, model=options.detector_model, threads=options.threads,
            runtime=options.runtime, score_threshold=options.detector_threshold,
            input_width=options.detect_width, calibrate=options.calibrate_boxes))

    @classmethod
    def from_parts(cls, detector: Detector, classifier: MaskClassifier,
                   options: PipelineOptions | None = None) -> Pipeline:
        """A pipeline of ready parts (the options then only set margin and face limit)."""
        return cls(options, detector=detector, classifier=classifier)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def classify_faces(self, rgb: np.ndarray, faces: list[Face]) -> list[FaceResult]:
        """Crop every face with the margin and classify them in one batch."""
        if not faces:
            return []
        crops = [crop_face(rgb, face.box, self.options.margin) for face in faces]
        probs = self.classifier.classify(crops)
        best = probs.argmax(axis=1)
        labels = self.classifier.labels
        return [FaceResult(face.box, labels[k], float(p[k]), tuple(float(v) for v in p),
                           face.score)
                for face, p, k in zip(faces, probs, best, strict=True)]

    def detect(self, rgb: np.ndarray) -> tuple[list[Face], float]:
        """The faces of one RGB frame (at most `max_faces`) and the milliseconds it took."""
        start = time.perf_counter()
        faces = self.detector.detect(rgb)[: self.options.max_faces]
        return faces, (time.perf_counter() - start) * 1000.0

    def classify(self, rgb: np.ndarray, faces: list[Face], detect_ms: float) -> FrameResult:
        """Classify detected faces; the second half of `process`."""
        start = time.perf_counter()
        results = self.classify_faces(rgb, faces)
        return FrameResult(tuple(results), {"detect": detect_ms,
                                            "classify": (time.perf_counter() - start) * 1000.0})

    def process(self, rgb: np.ndarray) -> FrameResult:
        """Detect and classify the faces of one RGB frame."""
        faces, detect_ms = self.detect(rgb)
        return self.classify(rgb, faces, detect_ms)

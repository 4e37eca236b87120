"""One frame in, faces with labels out: detect, crop with a margin, classify all faces in one batch.

This is the Python API of the device runtime:

    from edge.inference.pipeline import Pipeline, PipelineOptions
    pipeline = Pipeline(PipelineOptions(detector="yunet", detector_model="yunet.onnx"))
    result = pipeline.process(rgb_frame)      # FrameResult
    for face in result.faces:
        print(face.box, face.label, face.score)

Frames are RGB uint8 (H, W, 3). The camera loop (edge/loop.py) adds capture, drawing and outputs
around `process`. No TensorFlow.

Frames of one video are related: with `process(rgb, video=True)` a face that overlaps (IoU >= 0.5)
a face of the previous frame keeps that face's class probabilities for up to `classify_every` - 1
frames before it is classified again (`FaceResult.reused`), so the classifier runs on a third of
the faces at the default of 3. With `detect_every` N > 1 the detector runs on every Nth video frame
and the frames between reuse its boxes (a new face shows up to N-1 frames late; default 2, which
keeps a 640x480 video above 60 FPS on a slow 2-core x86; 1 detects every frame).
Photos (`video=False`, the default) are always detected and classified afresh. A new `scene`
(edge/video/scenecut.py: a cut, a reconnect, a restart) forgets the boxes and labels to reuse, and a
face is only taken for the previous frame's face when it also looks like it
(edge/inference/appearance.py), so a new person at the same spot is classified afresh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.assets import resolve_model
from edge.core.boxes import Box, Face, greedy_pairs, iou_matrix
from edge.core.imageops import FACE_MARGIN, crop_face
from edge.detection.detectors import DEFAULT_DETECTOR, Detector, DetectorOptions, create_detector
from edge.inference.appearance import SAME_FACE, descriptor, similarities
from edge.inference.classifier import ClassifierOptions, MaskClassifier

#: Video frames between two classifications of the same face (`--classify-every`).
DEFAULT_CLASSIFY_EVERY = 3
#: Video frames between two runs of the detector (`--detect-every`).
DEFAULT_DETECT_EVERY = 2
#: Overlap with a face of the previous frame above which a face is taken as the same one.
REUSE_IOU = 0.5


@dataclass(frozen=True)
class PipelineOptions:
    """Everything that decides what the pipeline computes and how fast."""

    model: Path | None = None  # None: $MASKEDGE_MODEL or the shipped default (edge.core.assets)
    detector: str = DEFAULT_DETECTOR
    detector_model: Path | None = None  # None: the shipped YuNet, or the verified cached download
    detector_threshold: float | None = None  # None: the detector's default
    #: YuNet's ONNX file sees frames scaled to this width; 0 = as they are; None = the default
    #: (edge.detection.detectors.DEFAULT_DETECT_WIDTH; the shipped .tflite YuNet has it built in).
    detect_width: int | None = None
    calibrate_boxes: bool = True  # YuNet boxes mapped onto the annotation convention
    threads: int | None = None  # interpreter (and OpenCV) threads; None lets them choose
    runtime: str = "auto"  # auto | litert | tflite_runtime | tensorflow
    margin: float = FACE_MARGIN
    max_faces: int = 32
    #: Video: classify a face that was already seen at most every this many frames (1: always).
    classify_every: int = DEFAULT_CLASSIFY_EVERY
    #: Video: run the detector on every this many frames; the frames between keep its faces.
    detect_every: int = DEFAULT_DETECT_EVERY


@dataclass(frozen=True)
class FaceResult:
    """One classified face."""

    box: Box  # (x1, y1, x2, y2) in frame pixels
    label: str
    score: float  # probability of `label`
    probabilities: tuple[float, ...]  # one per model label, in label order
    detector_score: float
    reused: int = 0  # frames since the probabilities were computed (0: classified on this frame)
    age: int = 0  # video frames since the detector found the box (`Face.age`)
    #: Video: what the face looks like (edge/inference/appearance.py), for the tracker; not in the
    #: JSON.
    appearance: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        record = {"box": [round(v, 1) for v in self.box], "label": self.label,
                  "score": round(self.score, 4), "detector_score": round(self.detector_score, 4)}
        if self.reused:
            record["reused"] = self.reused
        return record


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
        if options.classify_every < 1 or options.detect_every < 1:
            raise ValueError("classify_every and detect_every must be >= 1")
        self._previous: list[FaceResult] = []
        self._detected: list[Face] | None = None  # video: the last detector output
        self._since_detect = 0
        # The scenes the reused labels and the reused boxes belong to (two attributes: with
        # --detect-ahead, detection runs on its own thread).
        self._label_scene = self._box_scene = -1

    @classmethod
    def from_parts(cls, detector: Detector, classifier: MaskClassifier,
                   options: PipelineOptions | None = None) -> Pipeline:
        """A pipeline of ready parts (the options then set margin, face limit and video reuse)."""
        return cls(options, detector=detector, classifier=classifier)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def classify_faces(self, rgb: np.ndarray, faces: list[Face],
                       video: bool = False, scene: int = 0) -> list[FaceResult]:
        """Crop every face with the margin and classify them in one batch; with `video`, faces
        seen on the previous frame of the same scene may keep their probabilities."""
        if scene != self._label_scene:
            self._previous, self._label_scene = [], scene
        # A reused box may no longer sit on its face: its look would be another's.
        looks = [descriptor(rgb, f.box) if video and not f.age else None for f in faces]
        reuse = self._reusable(faces, looks) if video else {}
        fresh = [i for i in range(len(faces)) if i not in reuse]
        probs = (self.classifier.classify([crop_face(rgb, faces[i].box, self.options.margin)
                                           for i in fresh]) if fresh else np.zeros((0, 0)))
        computed = dict(zip(fresh, probs, strict=True))
        labels = self.classifier.labels
        results = []
        for i, face in enumerate(faces):
            previous = reuse.get(i)
            p = computed[i] if previous is None else np.asarray(previous.probabilities)
            k = int(np.argmax(p))
            results.append(FaceResult(face.box, labels[k], float(p[k]),
                                      tuple(float(v) for v in p), face.score,
                                      0 if previous is None else previous.reused + 1, face.age,
                                      looks[i]))
        self._previous = results if video else []
        return results

    def _reusable(self, faces: list[Face],
                  looks: list[np.ndarray | None]) -> dict[int, FaceResult]:
        """Face index -> the previous frame's result whose probabilities it may keep: the same
        spot (IoU >= REUSE_IOU) and the same look (edge/inference/appearance.py)."""
        previous = [r for r in self._previous if r.reused + 1 < self.options.classify_every]
        if not faces or not previous:
            return {}
        ious = iou_matrix(np.array([f.box for f in faces], np.float64),
                          np.array([r.box for r in previous], np.float64))
        same = similarities(looks, [r.appearance for r in previous]) >= SAME_FACE
        pairs = greedy_pairs(ious, (ious >= REUSE_IOU) & same)
        return {i: previous[j] for i, j in pairs}

    def detect(self, rgb: np.ndarray) -> tuple[list[Face], float]:
        """The faces of one RGB frame (at most `max_faces`) and the milliseconds it took."""
        start = time.perf_counter()
        faces = self.detector.detect(rgb)[: self.options.max_faces]
        return faces, (time.perf_counter() - start) * 1000.0

    def classify(self, rgb: np.ndarray, faces: list[Face], detect_ms: float,
                 video: bool = False, scene: int = 0) -> FrameResult:
        """Classify detected faces; the second half of `process`."""
        start = time.perf_counter()
        results = self.classify_faces(rgb, faces, video, scene)
        return FrameResult(tuple(results), {"detect": detect_ms,
                                            "classify": (time.perf_counter() - start) * 1000.0})

    def process(self, rgb: np.ndarray, video: bool = False, scene: int = 0) -> FrameResult:
        """Detect and classify the faces of one RGB frame (`video`: the next frame of a video,
        `scene`: its scene number, edge/video/scenecut.py)."""
        faces, detect_ms = self.detect_video(rgb, scene) if video else self.detect(rgb)
        return self.classify(rgb, faces, detect_ms, video, scene)

    def detect_video(self, rgb: np.ndarray, scene: int = 0) -> tuple[list[Face], float]:
        """`detect` on every `detect_every`-th frame of a video and on the first of a scene;
        the last faces in between."""
        self._since_detect += 1
        if scene != self._box_scene:
            self._detected, self._box_scene = None, scene
        if self._detected is None or self._since_detect >= self.options.detect_every:
            self._detected, ms = self.detect(rgb)
            self._since_detect = 0
            return self._detected, ms
        return [replace(f, age=self._since_detect) for f in self._detected], 0.0

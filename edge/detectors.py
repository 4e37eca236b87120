"""Face detectors behind one protocol: `detect(rgb) -> list[Face]`, boxes in frame pixels.

- `yunet`: OpenCV's `cv2.FaceDetectorYN` (ONNX model); the frame is downscaled to at most
  `input_width` pixels wide before detection, boxes are scaled back.
- `blazeface-short` / `blazeface-full`: MediaPipe's BlazeFace `.tflite` files run by LiteRT
  (edge/blazeface.py).
- `none`: the whole frame is one face, for kiosk cameras that frame one person.

`create_detector(DetectorOptions(...))` builds one by name; model files come from
`--detector-model` or a verified cached download (edge/assets.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge.assets import resolve_detector_model
from edge.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector
from edge.boxes import Face, clip_box

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class Detector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB frame (H, W, 3) uint8, best first."""
        ...


@dataclass(frozen=True)
class DetectorOptions:
    """Which detector to build and how to run it."""

    name: str = "yunet"
    model: Path | None = None  # None: the cached download (never for tests)
    threads: int | None = None
    runtime: str = "auto"  # TFLite runtime for BlazeFace
    score_threshold: float | None = None  # None: the detector's own default
    #: YuNet sees frames downscaled to at most this width (0 or None: full resolution).
    input_width: int | None = 320


class YuNetDetector:
    """cv2.FaceDetectorYN on a downscaled copy of the frame."""

    default_score_threshold = 0.6

    def __init__(self, model_path: str | Path, score_threshold: float | None = None,
                 input_width: int | None = 320, threads: int | None = None,
                 nms_threshold: float = 0.3) -> None:
        if threads:
            cv2.setNumThreads(int(threads))
        self.score_threshold = (self.default_score_threshold if score_threshold is None
                                else score_threshold)
        self.input_width = input_width or None
        self._size = (320, 240)
        try:
            self._net = cv2.FaceDetectorYN.create(str(model_path), "", self._size,
                                                  self.score_threshold, nms_threshold, 5000)
        except cv2.error as exc:
            raise ValueError(f"OpenCV cannot load YuNet model {model_path}: "
                             f"{str(exc).strip().splitlines()[-1]}") from None

    def detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        scale = 1.0
        if self.input_width and w > self.input_width:
            scale = self.input_width / w
            small = cv2.resize(rgb, (self.input_width, max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
        else:
            small = rgb
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)  # YuNet was trained on BGR
        # YuNet pads its input to multiples of 32 anyway; padding here (bottom/right, so boxes
        # keep their coordinates) lets photos of slightly different sizes share one input size
        # instead of re-planning the network for each.
        sh, sw = bgr.shape[:2]
        pad_h, pad_w = -sh % 32, -sw % 32
        if pad_h or pad_w:
            bgr = cv2.copyMakeBorder(bgr, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, found = self._net.detect(bgr)
        if found is None:
            return []
        faces = []
        for row in found[np.argsort(-found[:, -1])]:
            x, y, bw, bh = row[:4] / scale
            box = clip_box((x, y, x + bw, y + bh), w, h)
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                faces.append(Face(box, float(row[-1])))
        return faces


class WholeFrameDetector:
    """The whole frame is one face (a kiosk camera framing one person)."""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        return [Face((0.0, 0.0, float(w), float(h)), 1.0)]


def _yunet(options: DetectorOptions) -> Detector:
    return YuNetDetector(resolve_detector_model("yunet", options.model), options.score_threshold,
                         options.input_width, options.threads)


def _blazeface(kind: str) -> Callable[[DetectorOptions], Detector]:
    spec = SHORT_RANGE if kind == "blazeface-short" else FULL_RANGE

    def build(options: DetectorOptions) -> Detector:
        threshold = 0.5 if options.score_threshold is None else options.score_threshold
        return BlazeFaceDetector(resolve_detector_model(kind, options.model), spec,
                                 options.threads, options.runtime, threshold)

    return build


#: Detector name -> (factory, one-line description).
DETECTORS: dict[str, tuple[Callable[[DetectorOptions], Detector], str]] = {
    "yunet": (_yunet, "OpenCV YuNet (cv2.FaceDetectorYN, ONNX)"),
    "blazeface-short": (_blazeface("blazeface-short"),
                        "MediaPipe BlazeFace short range (128 px, faces within ~2 m)"),
    "blazeface-full": (_blazeface("blazeface-full"),
                       "MediaPipe BlazeFace full range (192 px, faces within ~5 m)"),
    "none": (lambda options: WholeFrameDetector(), "no detector: the whole frame is one face"),
}

DEFAULT_DETECTOR = "yunet"


def create_detector(options: DetectorOptions) -> Detector:
    """Build the named detector; ValueError for an unknown name, AssetError for a missing file."""
    if options.name not in DETECTORS:
        raise ValueError(f"unknown detector {options.name!r}; choose from "
                         f"{', '.join(DETECTORS)}")
    return DETECTORS[options.name][0](options)

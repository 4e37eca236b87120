"""Face detectors behind one protocol: `detect(rgb) -> list[Face]`, boxes in frame pixels.

- `yunet` (default): YuNet on the frame scaled to `input_width` (default 640). Without
  `--detector-model`, the `.tflite` fine-tuned on masked faces that ships in the package, run by
  LiteRT (edge/detection/yunet.py), at the threshold chosen with it; with YuNet's ONNX file,
  OpenCV's `cv2.FaceDetectorYN`. Boxes are mapped onto the annotation convention by a calibration
  fitted on held-in photos (edge/detection/yunet.py). `yunet-stock`: YuNet with OpenCV's weights,
  shipped too.
- `blazeface-short` / `blazeface-full`: MediaPipe's BlazeFace `.tflite` files run by LiteRT
  (edge/detection/blazeface.py).
- `none`: the whole frame is one face, for kiosk cameras that frame one person.

`create_detector(DetectorOptions(...))` builds one by name; model files come from
`--detector-model`, the package (YuNet) or a verified cached download (BlazeFace;
edge/core/assets.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

# The defaults live in edge/core/assets.py, which edge/cli.py's help reads.
from edge.core.assets import (
    DEFAULT_BLAZEFACE_THRESHOLD,
    DEFAULT_DETECT_WIDTH,
    DEFAULT_YUNET_THRESHOLD,
    resolve_detector_model,
    shipped_yunet_calibration,
    shipped_yunet_model,
)
from edge.core.boxes import Face, clip_box
from edge.detection.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector
from edge.detection.yunet import BoxCalibration, RawFaces, YuNetLite, load_score_threshold

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class Detector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB frame (H, W, 3) uint8, best first."""
        ...


@dataclass(frozen=True)
class DetectorOptions:
    """Which detector to build and how to run it."""

    name: str = "yunet"
    model: Path | None = None  # None: the shipped model (YuNet) or the cached download
    threads: int | None = None
    runtime: str = "auto"  # TFLite runtime for BlazeFace and the YuNet .tflite
    score_threshold: float | None = None  # None: the detector's own default
    #: YuNet (ONNX) sees frames scaled to this width (0: as they are; None: the default).
    input_width: int | None = None
    #: YuNet boxes mapped onto the annotation convention (the calibration in the settings file).
    calibrate: bool = True


class _YuNetBase:
    """What both YuNet back ends share: the detect-width policy (the frame scaled, up or down, to
    `input_width` and padded bottom/right to multiples of 32, as YuNet wants), and raw faces ->
    calibrated, clipped `Face` boxes."""

    calibration: BoxCalibration | None = None
    input_width: int | None = DEFAULT_DETECT_WIDTH

    def _detect_bgr(self, bgr: np.ndarray) -> RawFaces:
        raise NotImplementedError

    def detect_raw(self, rgb: np.ndarray) -> RawFaces:
        h, w = rgb.shape[:2]
        scale = self.input_width / w if self.input_width else 1.0
        if scale != 1.0:
            rgb = cv2.resize(rgb, (self.input_width, max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # YuNet was trained on BGR
        # Padding bottom/right keeps box coordinates and lets photos of slightly different sizes
        # share one input size instead of re-planning the network for each.
        sh, sw = bgr.shape[:2]
        if sh % 32 or sw % 32:
            bgr = cv2.copyMakeBorder(bgr, 0, -sh % 32, 0, -sw % 32, cv2.BORDER_CONSTANT, value=0)
        return self._detect_bgr(bgr).scaled(1.0 / scale)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        return self.faces(self.detect_raw(rgb), w, h)

    def faces(self, raw: RawFaces, width: int, height: int) -> list[Face]:
        """Raw detections -> calibrated `Face` boxes clipped to a width x height frame."""
        w, h = width, height
        if self.calibration is not None:
            boxes = self.calibration.apply(raw)
        else:
            boxes = np.concatenate([raw.boxes[:, :2], raw.boxes[:, :2] + raw.boxes[:, 2:]], 1)
        faces = []
        for box, score in zip(boxes, raw.scores, strict=True):
            clipped = clip_box(box, w, h)
            if clipped[2] - clipped[0] >= 2 and clipped[3] - clipped[1] >= 2:
                faces.append(Face(clipped, float(score)))
        return faces


class YuNetDetector(_YuNetBase):
    """YuNet's ONNX file under OpenCV (`cv2.FaceDetectorYN`)."""

    default_score_threshold = DEFAULT_YUNET_THRESHOLD

    def __init__(self, model_path: str | Path, score_threshold: float | None = None,
                 input_width: int | None = DEFAULT_DETECT_WIDTH, threads: int | None = None,
                 nms_threshold: float = 0.3) -> None:
        if threads:
            cv2.setNumThreads(int(threads))
        self.score_threshold = (self.default_score_threshold if score_threshold is None
                                else score_threshold)
        self.input_width = input_width or None
        self._size = (320, 256)
        try:
            self._net = cv2.FaceDetectorYN.create(str(model_path), "", self._size,
                                                  self.score_threshold, nms_threshold, 5000)
        except cv2.error as exc:
            raise ValueError(f"OpenCV cannot load YuNet model {model_path}: "
                             f"{str(exc).strip().splitlines()[-1]}") from None

    def _detect_bgr(self, bgr: np.ndarray) -> RawFaces:
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, found = self._net.detect(bgr)
        if found is None or not len(found):
            return RawFaces.empty()
        found = found[np.argsort(-found[:, -1], kind="stable")]
        return RawFaces(found[:, :4], found[:, 4:14], found[:, -1])


class YuNetTFLiteDetector(_YuNetBase):
    """YuNet's `.tflite` (dynamic input size) under LiteRT: edge/detection/yunet.py."""

    def __init__(self, model_path: Path, score_threshold: float | None = None,
                 input_width: int | None = DEFAULT_DETECT_WIDTH, threads: int | None = None,
                 runtime: str = "auto") -> None:
        threshold = DEFAULT_YUNET_THRESHOLD if score_threshold is None else score_threshold
        self._lite = YuNetLite(model_path, threads, runtime, threshold)
        self.score_threshold = threshold
        self.input_width = input_width or None

    def _detect_bgr(self, bgr: np.ndarray) -> RawFaces:
        return self._lite.detect_bgr(bgr)


class WholeFrameDetector:
    """The whole frame is one face (a kiosk camera framing one person)."""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        return [Face((0.0, 0.0, float(w), float(h)), 1.0)]


def _yunet(stock: bool) -> Callable[[DetectorOptions], Detector]:
    """YuNet: the shipped `.tflite` (fine-tuned on masked faces, or `stock`) under LiteRT, or a
    given file (`.tflite` under LiteRT, ONNX under OpenCV), taken for stock YuNet: the stock
    calibration and threshold. A shipped model's threshold comes from its settings file."""

    def build(options: DetectorOptions) -> Detector:
        width = DEFAULT_DETECT_WIDTH if options.input_width is None else options.input_width
        given = options.model is not None
        path = (resolve_detector_model("yunet", options.model) if given
                else shipped_yunet_model(stock))
        settings = shipped_yunet_calibration(stock or given)
        threshold = options.score_threshold
        if threshold is None:
            stored = load_score_threshold(settings)
            threshold = DEFAULT_YUNET_THRESHOLD if stored is None else stored
        detector: _YuNetBase
        if path.suffix.lower() == ".tflite":
            detector = YuNetTFLiteDetector(path, threshold, width, options.threads,
                                           options.runtime)
        else:
            detector = YuNetDetector(path, threshold, width, options.threads)
        if options.calibrate:
            detector.calibration = BoxCalibration.load(settings)
        return detector

    return build


def _blazeface(kind: str) -> Callable[[DetectorOptions], Detector]:
    spec = SHORT_RANGE if kind == "blazeface-short" else FULL_RANGE

    def build(options: DetectorOptions) -> Detector:
        threshold = (DEFAULT_BLAZEFACE_THRESHOLD if options.score_threshold is None
                     else options.score_threshold)
        return BlazeFaceDetector(resolve_detector_model(kind, options.model), spec,
                                 options.threads, options.runtime, threshold)

    return build


#: Detector name -> (factory, one-line description).
DETECTORS: dict[str, tuple[Callable[[DetectorOptions], Detector], str]] = {
    "yunet": (_yunet(stock=False), "YuNet fine-tuned on masked faces (shipped .tflite, LiteRT), "
              "or a given YuNet file (.tflite: LiteRT; ONNX: OpenCV)"),
    "yunet-stock": (_yunet(stock=True), "YuNet with OpenCV's weights (shipped .tflite, LiteRT)"),
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

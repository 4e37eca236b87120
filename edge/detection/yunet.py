"""YuNet (OpenCV's face detector) as a LiteRT `.tflite`, decoded here, and its box calibration.

The shipped files (`models/yunet_masked.tflite`, fine-tuned on masked faces, the default, and
`models/yunet.tflite`, stock) are YuNet 2023mar with a dynamic input size (see
`models/DETECTOR_CARD.md`); edge/detection/detectors.py scales each frame to the detect
width, pads it to multiples of 32 and feeds BGR pixels (YuNet was trained on BGR). YuNet is
anchor-free: each cell of the stride-8/16/32 grids predicts a score (sqrt(cls * obj)), a box
(centre offset in cells, log size) and five landmarks; overlapping boxes are merged by NMS,
exactly as `cv2.FaceDetectorYN` does (boxes agree with it to 0.01 px).

`BoxCalibration` maps YuNet's boxes (which reach higher up the forehead than face-mask
annotations) onto the annotation convention: a linear map from the box's five landmarks,
fitted on the tuning part of face-mask-ilc-dev (`python -m benchmarks.stages.detector_calibration`;
for the fine-tuned default, `python -m benchmarks.stages.detector_finetune`, which also stores the
score threshold it chose in the same file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.runtime import load_interpreter

STRIDES = (8, 16, 32)
#: ONNX output order, for files whose signature lost the names (output_0 ... output_11).
ONNX_OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES)


@dataclass(frozen=True)
class RawFaces:
    """Detections in frame pixels: boxes (N, 4) as x, y, w, h; landmarks (N, 10); scores (N,)."""

    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> RawFaces:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, 10), np.float32),
                   np.zeros(0, np.float32))

    def scaled(self, factor: float) -> RawFaces:
        return RawFaces(self.boxes * factor, self.landmarks * factor, self.scores)

    def at_least(self, threshold: float) -> RawFaces:
        """The detections scoring `threshold` or more (after NMS at a lower threshold: the same
        boxes NMS at `threshold` keeps, since a box is only suppressed by a higher-scoring one)."""
        keep = self.scores >= threshold
        return RawFaces(self.boxes[keep], self.landmarks[keep], self.scores[keep])


def prior_boxes(bbox: np.ndarray, prior_xy: np.ndarray, stride: np.ndarray | int) -> np.ndarray:
    """YuNet box outputs (N, 4) relative to their grid cells' prior points (cell corner times
    stride) -> x, y, w, h in input pixels. Shared by decoding here and training
    (trainer/detector.py)."""
    size = np.exp(np.clip(bbox[:, 2:4], -10, 10)) * stride
    return np.concatenate([prior_xy + bbox[:, :2] * stride - size / 2, size], axis=1)


def decode(outputs: dict[str, np.ndarray], width: int, height: int, score_threshold: float,
           nms_threshold: float = 0.3, top_k: int = 5000) -> RawFaces:
    """YuNet's raw outputs for an input of width x height -> faces in input pixels, best first."""
    boxes, landmarks, scores = [], [], []
    for stride in STRIDES:
        cols = width // stride
        cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0, 1)
        obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0, 1)
        score = np.sqrt(cls * obj)
        keep = np.nonzero(score >= score_threshold)[0]
        if not len(keep):
            continue
        cell = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)
        boxes.append(prior_boxes(outputs[f"bbox_{stride}"].reshape(-1, 4)[keep], cell * stride,
                                 stride))
        kps = outputs[f"kps_{stride}"].reshape(-1, 5, 2)[keep]
        landmarks.append(((kps + cell[:, None, :]) * stride).reshape(-1, 10))
        scores.append(score[keep])
    if not scores:
        return RawFaces.empty()
    all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
    picked = cv2.dnn.NMSBoxes(all_boxes.tolist(), all_scores.tolist(), score_threshold,
                              nms_threshold, top_k=top_k)
    idx = np.asarray(picked, np.int64).reshape(-1)
    idx = idx[np.argsort(-all_scores[idx], kind="stable")]
    return RawFaces(all_boxes[idx].astype(np.float32),
                    np.concatenate(landmarks)[idx].astype(np.float32),
                    all_scores[idx].astype(np.float32))


class YuNetLite:
    """A YuNet `.tflite` with a dynamic input size, run by a TFLite interpreter.

    `detect_bgr` takes a BGR image whose sides are multiples of 32 (the caller scales and pads
    it); the interpreter's input is resized, and its tensors re-planned, only when that size
    changes, so a camera pays for it once.
    """

    def __init__(self, model_path: Path, threads: int | None = None, runtime: str = "auto",
                 score_threshold: float = 0.6, nms_threshold: float = 0.3) -> None:
        loaded = load_interpreter(model_path, threads, runtime)
        self.runtime = loaded.runtime
        self.interpreter = loaded.interpreter
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        inp = self.interpreter.get_input_details()[0]
        if len(inp["shape"]) != 4 or inp["shape"][3] != 3 or min(inp["shape_signature"][1:3]) > 0:
            raise ValueError(f"{Path(model_path).name} is not a YuNet .tflite with a dynamic "
                             f"input (input {list(inp['shape_signature'])}, expected 1 x -1 x -1 "
                             "x 3)")
        self.input = inp
        self.outputs = self._output_names(Path(model_path))
        self._size: tuple[int, int] | None = None

    def _output_names(self, path: Path) -> dict[str, int]:
        """Output tensor index by YuNet output name (cls_8 ... kps_32)."""
        runner_outputs = self.interpreter.get_signature_runner().get_output_details()
        names = sorted(runner_outputs)
        if not set(ONNX_OUTPUTS) <= set(names):  # output_0 ... output_11 in ONNX order
            names = sorted(names, key=lambda n: int(n.rsplit("_", 1)[-1]))
            if len(names) != len(ONNX_OUTPUTS):
                raise ValueError(f"{path.name} does not have YuNet's 12 outputs")
            runner_outputs = {onnx: runner_outputs[n] for onnx, n in zip(ONNX_OUTPUTS, names,
                                                                         strict=True)}
        return {name: int(runner_outputs[name]["index"]) for name in ONNX_OUTPUTS}

    def detect_bgr(self, bgr: np.ndarray) -> RawFaces:
        """Faces in the pixels of `bgr` (H, W multiples of 32), best first."""
        h, w = bgr.shape[:2]
        if self._size != (h, w):
            self.interpreter.resize_tensor_input(self.input["index"], [1, h, w, 3])
            self.interpreter.allocate_tensors()
            self._size = (h, w)
        self.interpreter.set_tensor(self.input["index"], bgr[None].astype(np.float32))
        self.interpreter.invoke()
        outputs = {name: self.interpreter.get_tensor(index)
                   for name, index in self.outputs.items()}
        return decode(outputs, w, h, self.score_threshold, self.nms_threshold)


@dataclass(frozen=True)
class BoxCalibration:
    """A linear map from a YuNet box and its landmarks to the annotation convention.

    Features: 1, the five landmarks' x and y relative to the box (fractions of its width and
    height), the box's aspect ratio and log width. Targets: the annotated box's corners relative
    to the YuNet box, in the same fractions.
    """

    coef: np.ndarray  # (13, 4)
    fitted_on: str = ""

    @staticmethod
    def features(faces: RawFaces) -> np.ndarray:
        x, y, w, h = (faces.boxes[:, i] for i in range(4))
        w, h = np.maximum(w, 1e-3), np.maximum(h, 1e-3)
        lm = faces.landmarks.reshape(-1, 5, 2)
        lx = (lm[:, :, 0] - x[:, None]) / w[:, None]
        ly = (lm[:, :, 1] - y[:, None]) / h[:, None]
        return np.column_stack([np.ones(len(x)), lx, ly, h / w, np.log(w)]).astype(np.float64)

    def apply(self, faces: RawFaces) -> np.ndarray:
        """Calibrated boxes (N, 4) as x1, y1, x2, y2."""
        if not len(faces.scores):
            return np.zeros((0, 4))
        t = self.features(faces) @ self.coef
        x, y, w, h = (faces.boxes[:, i].astype(np.float64) for i in range(4))
        return np.column_stack([x + t[:, 0] * w, y + t[:, 1] * h, x + t[:, 2] * w,
                                y + t[:, 3] * h])

    def to_json(self) -> dict:
        return {"coef": np.round(self.coef, 6).tolist(), "fitted_on": self.fitted_on}

    @classmethod
    def from_json(cls, data: dict) -> BoxCalibration:
        coef = np.asarray(data["coef"], np.float64)
        if coef.shape != (13, 4):
            raise ValueError(f"box calibration must be 13 x 4, got {coef.shape}")
        return cls(coef, str(data.get("fitted_on", "")))

    @classmethod
    def load(cls, path: Path) -> BoxCalibration:
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8"))["calibration"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read the box calibration in {path}: {exc}") from None


def load_score_threshold(path: Path) -> float | None:
    """The score threshold chosen with a calibration (its file's `score_threshold`), if any."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8")).get("score_threshold")
        return None if value is None else float(value)
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"cannot read the detector settings in {path}: {exc}") from None


def fit_calibration(pairs: list[tuple[RawFaces, np.ndarray]], ridge: float = 1.0,
                    fitted_on: str = "") -> BoxCalibration:
    """Least squares (ridge) fit from matched (YuNet face, annotated x1,y1,x2,y2 box) pairs."""
    feats, targets = [], []
    for faces, truth in pairs:
        x, y, w, h = (faces.boxes[:, i].astype(np.float64) for i in range(4))
        feats.append(BoxCalibration.features(faces))
        targets.append(np.column_stack([(truth[:, 0] - x) / w, (truth[:, 1] - y) / h,
                                        (truth[:, 2] - x) / w, (truth[:, 3] - y) / h]))
    a, b = np.concatenate(feats), np.concatenate(targets)
    coef = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ b)
    return BoxCalibration(coef, fitted_on)

"""YuNet (OpenCV's face detector) as a LiteRT `.tflite`, decoded here, and its box calibration.

The shipped files (`models/yunet_640x480.tflite`, `models/yunet_480x640.tflite`) are YuNet
2023mar converted from ONNX with a fixed input (landscape and portrait); see
`models/DETECTOR_CARD.md`. A frame is scaled to fit the input of its orientation (up or down,
aspect kept), padded bottom/right, and fed as BGR pixels (YuNet was trained on BGR). YuNet is
anchor-free: each cell of the stride-8/16/32 grids predicts a score (sqrt(cls * obj)), a box
(centre offset in cells, log size) and five landmarks; overlapping boxes are merged by NMS,
exactly as `cv2.FaceDetectorYN` does (boxes agree with it to 0.01 px).

`BoxCalibration` maps YuNet's boxes (which reach higher up the forehead than face-mask
annotations) onto the annotation convention: a linear map from the box's five landmarks,
fitted on the tuning part of face-mask-ilc-dev (`python -m benchmarks.detector_calibration`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.runtime import load_interpreter

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
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        centre = (cell + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:4]) * stride
        boxes.append(np.concatenate([centre - size / 2, size], axis=1))
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
    """YuNet `.tflite` files (one input size each) run by a TFLite interpreter."""

    def __init__(self, model_paths: list[Path], threads: int | None = None,
                 runtime: str = "auto", score_threshold: float = 0.6,
                 nms_threshold: float = 0.3) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._models = [_Model(path, threads, runtime) for path in model_paths]
        self.runtime = self._models[0].runtime

    @property
    def input_sizes(self) -> list[tuple[int, int]]:
        return [(m.width, m.height) for m in self._models]

    def _model_for(self, width: int, height: int) -> _Model:
        """The input whose orientation matches the frame's (the first one on a tie)."""
        portrait = height > width
        return next((m for m in self._models if (m.height > m.width) == portrait),
                    self._models[0])

    def detect_raw(self, rgb: np.ndarray) -> RawFaces:
        h, w = rgb.shape[:2]
        model = self._model_for(w, h)
        scale = min(model.width / w, model.height / h)
        nw, nh = max(1, min(model.width, round(w * scale))), max(1, min(model.height,
                                                                       round(h * scale)))
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                             else cv2.INTER_LINEAR)
        canvas = np.zeros((model.height, model.width, 3), np.uint8)
        canvas[:nh, :nw] = resized[:, :, ::-1]  # RGB -> BGR
        outputs = model.run(canvas)
        found = decode(outputs, model.width, model.height, self.score_threshold,
                       self.nms_threshold)
        return found.scaled(1.0 / scale)


class _Model:
    """One YuNet `.tflite`: its interpreter, input size and named outputs."""

    def __init__(self, path: Path, threads: int | None, runtime: str) -> None:
        loaded = load_interpreter(path, threads, runtime)
        self.runtime = loaded.runtime
        self.interpreter = loaded.interpreter
        inp = self.interpreter.get_input_details()[0]
        if len(inp["shape"]) != 4 or inp["shape"][3] != 3:
            raise ValueError(f"{Path(path).name} is not a YuNet .tflite (input "
                             f"{list(inp['shape'])}, expected 1 x H x W x 3)")
        self.height, self.width = int(inp["shape"][1]), int(inp["shape"][2])
        self.input = inp
        self.outputs = self._output_names(path)

    def _output_names(self, path: Path) -> dict[str, dict]:
        details = {d["name"]: d for d in self.interpreter.get_output_details()}
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise ValueError(f"{Path(path).name} has no signature naming YuNet's outputs")
        sig = next(iter(signatures.values()))
        runner_outputs = self.interpreter.get_signature_runner().get_output_details()
        names = sorted(runner_outputs)
        if set(names) != set(ONNX_OUTPUTS):  # output_0 ... output_11 in ONNX order
            names = sorted(sig["outputs"], key=lambda n: int(n.rsplit("_", 1)[-1]))
            if len(names) != len(ONNX_OUTPUTS):
                raise ValueError(f"{Path(path).name} does not have YuNet's 12 outputs")
            runner_outputs = {onnx: runner_outputs[n] for onnx, n in zip(ONNX_OUTPUTS, names,
                                                                         strict=True)}
        by_index = {d["index"]: d for d in details.values()}
        return {name: by_index[d["index"]] for name, d in runner_outputs.items()}

    def run(self, bgr: np.ndarray) -> dict[str, np.ndarray]:
        x = bgr[None]
        if self.input["dtype"] == np.float32:
            x = x.astype(np.float32)
        elif self.input["dtype"] != np.uint8:
            scale, zero = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
            x = x.astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        out = {}
        for name, d in self.outputs.items():
            t = self.interpreter.get_tensor(d["index"])
            if t.dtype != np.float32:
                scale, zero = d["quantization"]
                t = (t.astype(np.float32) - zero) * scale
            out[name] = t
        return out


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

"""BlazeFace (MediaPipe's short- and full-range face detectors) run by LiteRT, decoded here.

The `.tflite` files output raw SSD regressions and logits, one per anchor. This module builds the
anchors as MediaPipe's `SsdAnchorsCalculator` does for these two models, decodes the regressions
into boxes (x, y, w, h relative to the anchor centre, in input pixels), turns logits into scores
(clipped, then sigmoid) and merges overlapping boxes with MediaPipe's weighted non-maximum
suppression. Frames are letterboxed into the square input (aspect ratio kept) and boxes mapped
back to frame pixels. numpy + OpenCV + a TFLite interpreter; no MediaPipe, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.boxes import Face, clip_box, iou_matrix
from edge.core.runtime import load_interpreter

#: MediaPipe clips logits to +-100; 80 keeps the float32 sigmoid from overflowing.
RAW_SCORE_LIMIT = 80.0


@dataclass(frozen=True)
class AnchorSpec:
    """The SSD anchor layout of one BlazeFace model (MediaPipe's SsdAnchorsCalculatorOptions)."""

    input_size: int
    strides: tuple[int, ...]
    #: 1.0 adds an interpolated anchor per aspect ratio (two anchors per cell and layer);
    #: 0.0 keeps one anchor per cell.
    interpolated_scale_aspect_ratio: float
    anchor_offset: float = 0.5


SHORT_RANGE = AnchorSpec(input_size=128, strides=(8, 16, 16, 16),
                         interpolated_scale_aspect_ratio=1.0)
FULL_RANGE = AnchorSpec(input_size=192, strides=(4,), interpolated_scale_aspect_ratio=0.0)


def ssd_anchors(spec: AnchorSpec) -> np.ndarray:
    """Anchor centres (N, 2) as (x, y) in [0, 1]; anchor sizes are fixed at 1 (input size)."""
    centres: list[np.ndarray] = []
    layer = 0
    while layer < len(spec.strides):
        stride = spec.strides[layer]
        per_cell = 0
        # Consecutive layers with the same stride share one feature map.
        while layer < len(spec.strides) and spec.strides[layer] == stride:
            per_cell += 2 if spec.interpolated_scale_aspect_ratio == 1.0 else 1
            layer += 1
        cells = -(-spec.input_size // stride)  # ceil, as MediaPipe
        ys, xs = np.meshgrid((np.arange(cells) + spec.anchor_offset) / cells,
                             (np.arange(cells) + spec.anchor_offset) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, input_size: int) -> np.ndarray:
    """Boxes (N, 4) as (x1, y1, x2, y2) in [0, 1] of the input square, from raw (N, >=4)."""
    raw = np.asarray(raw, np.float32).reshape(len(anchors), -1)
    centre = raw[:, 0:2] / input_size + anchors
    half = raw[:, 2:4] / (2.0 * input_size)
    return np.concatenate([centre - half, centre + half], axis=1)


def sigmoid_scores(logits: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(logits, np.float32).reshape(-1), -RAW_SCORE_LIMIT,
                      RAW_SCORE_LIMIT)
    return 1.0 / (1.0 + np.exp(-clipped))


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3,
                 score_threshold: float = 0.5, max_faces: int = 100,
                 ) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: each cluster of overlapping boxes becomes their score-weighted
    mean, with the best score of the cluster. Returns (box, score) pairs, best first."""
    keep = scores >= score_threshold
    boxes, scores = boxes[keep], scores[keep]
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = boxes[valid], scores[valid]
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    merged: list[tuple[np.ndarray, float]] = []
    while len(scores) and len(merged) < max_faces:
        overlap = iou_matrix(boxes[:1], boxes)[0] > iou_threshold
        overlap[0] = True
        weights = scores[overlap]
        box = (boxes[overlap] * weights[:, None]).sum(axis=0) / weights.sum()
        merged.append((box, float(scores[0])))
        boxes, scores = boxes[~overlap], scores[~overlap]
    return merged


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the square input: scale, then padding on the left/top."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """The frame scaled to fit a size x size square, centred on black, as float32 in [-1, 1]."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                         else cv2.INTER_LINEAR)
    pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[pad_y:pad_y + nh, pad_x:pad_x + nw] = resized
    tensor = canvas.astype(np.float32) * (1.0 / 127.5) - 1.0
    return tensor[None], Letterbox(scale, float(pad_x), float(pad_y))


class BlazeFaceDetector:
    """A BlazeFace `.tflite` model as a `Detector` (see edge/detection/detectors.py)."""

    def __init__(self, model_path: str | Path, spec: AnchorSpec, threads: int | None = None,
                 runtime: str = "auto", score_threshold: float = 0.5,
                 iou_threshold: float = 0.3) -> None:
        loaded = load_interpreter(model_path, threads, runtime)
        self.runtime = loaded.runtime
        self._interpreter = loaded.interpreter
        inp = self._interpreter.get_input_details()[0]
        if tuple(inp["shape"][1:3]) != (spec.input_size, spec.input_size):
            raise ValueError(f"{Path(model_path).name} takes {tuple(inp['shape'][1:3])} inputs, "
                             f"not the {spec.input_size}x{spec.input_size} of this BlazeFace kind")
        self._input = inp["index"]
        outputs = self._interpreter.get_output_details()
        # Regressors have 16 values per anchor, classificators one.
        self._boxes = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self.spec = spec
        self.anchors = ssd_anchors(spec)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold

    def detect(self, rgb: np.ndarray) -> list[Face]:
        tensor, fit = letterbox(rgb, self.spec.input_size)
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._boxes)[0]
        scores = sigmoid_scores(self._interpreter.get_tensor(self._scores)[0])
        candidates = scores >= self.score_threshold
        if not candidates.any():
            return []
        boxes = decode_boxes(raw, self.anchors, self.spec.input_size)
        h, w = rgb.shape[:2]
        faces = []
        size = self.spec.input_size
        for box, score in weighted_nms(boxes, scores, self.iou_threshold, self.score_threshold):
            xs = (box[[0, 2]] * size - fit.pad_x) / fit.scale
            ys = (box[[1, 3]] * size - fit.pad_y) / fit.scale
            clipped = clip_box((xs[0], ys[0], xs[1], ys[1]), w, h)
            if clipped[2] - clipped[0] >= 2 and clipped[3] - clipped[1] >= 2:
                faces.append(Face(clipped, score))
        return faces

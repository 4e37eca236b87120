"""Face boxes: the `Face` record every detector returns, and IoU between boxes.

Boxes are (x1, y1, x2, y2) in float pixels of the frame the detector was given. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Face:
    """One detected face: its box in frame pixels and the detector's confidence."""

    box: Box
    score: float
    #: Video frames since the detector found this box (0: this frame; > 0: reused on a frame the
    #: detector skipped, `--detect-every`, so the face may have moved away from it).
    age: int = 0

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def clip_box(box: Box | np.ndarray, width: int, height: int) -> Box:
    """A box clipped to a width x height frame."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4): an (N, M) array."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(ix2 - ix1, 0.0) * np.maximum(iy2 - iy1, 0.0)  # (np.clip is slower)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def iou(a: Box, b: Box) -> float:
    return float(iou_matrix(np.asarray(a), np.asarray(b))[0, 0])


def greedy_pairs(quality: np.ndarray, keep: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) pairs, best quality first, each row and column once, only where `keep`."""
    rows, cols = np.nonzero(keep)
    order = np.argsort(-quality[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for i in order:
        r, c = int(rows[i]), int(cols[i])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


def match_iou(a: np.ndarray, b: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Greedy IoU matching of boxes `a` (N, 4) to boxes `b` (M, 4), best overlap first: (a, b)
    index pairs overlapping at least `threshold` (tracking, reuse of video labels)."""
    ious = iou_matrix(a, b)
    return greedy_pairs(ious, ious >= threshold)

"""ByteTrack-style association: a Kalman filter per track and two matching stages by score.

Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box" (ECCV 2022),
as their reference code does it (`yolox/tracker/byte_tracker.py`, `kalman_filter.py`):

- each track's box moves by a constant-velocity Kalman filter on (centre x, centre y, aspect
  ratio, height), with the noise scaled by the box height (weights 1/20 for position, 1/160 for
  velocity);
- stage 1 matches the high-score detections (score >= `high`) to every track, found or lost, by
  IoU with the predicted boxes (IoU >= 1 - 0.8);
- stage 2 matches the remaining low-score detections to the tracks found on the previous frame
  and still unmatched (IoU >= 0.5): a face the detector is unsure of (blurred, turned, half
  hidden) keeps its track instead of being lost.

Two differences, both forced by the device: the assignment is greedy (best IoU first) instead of
the Jonker-Volgenant solver (`lap`), which needs a compiled package the Pi image does not have;
with at most a few dozen faces a frame the two rarely differ. And every detection is reported
(edge run shows every face it classified), so an unmatched low-score detection starts a track
too, where ByteTrack drops it; its "low" band is the part of the detector's scores between its
own threshold and `high`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.core.boxes import Box, greedy_pairs, iou_matrix

WEIGHT_POSITION = 1.0 / 20
WEIGHT_VELOCITY = 1.0 / 160
STAGE1_IOU = 0.2  # 1 - ByteTrack's match_thresh 0.8
STAGE2_IOU = 0.5
#: Detector scores at or above this are "high" (the detector's own threshold is 0.5).
HIGH_SCORE = 0.6

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


class KalmanBox:
    """Constant-velocity Kalman filter on (cx, cy, w/h, h) and their velocities."""

    def __init__(self, box: Box) -> None:
        z = _measure(box)
        h = z[3]
        self.mean = np.concatenate([z, np.zeros(4)])
        std = [2 * WEIGHT_POSITION * h, 2 * WEIGHT_POSITION * h, 1e-2, 2 * WEIGHT_POSITION * h,
               10 * WEIGHT_VELOCITY * h, 10 * WEIGHT_VELOCITY * h, 1e-5, 10 * WEIGHT_VELOCITY * h]
        self.covariance = np.diag(np.square(std))

    def predict(self) -> None:
        h = self.mean[3]
        std = [WEIGHT_POSITION * h, WEIGHT_POSITION * h, 1e-2, WEIGHT_POSITION * h,
               WEIGHT_VELOCITY * h, WEIGHT_VELOCITY * h, 1e-5, WEIGHT_VELOCITY * h]
        self.mean = _F @ self.mean
        self.covariance = _F @ self.covariance @ _F.T + np.diag(np.square(std))

    def update(self, box: Box) -> None:
        h = self.mean[3]
        noise = np.diag(np.square([WEIGHT_POSITION * h, WEIGHT_POSITION * h, 1e-1,
                                   WEIGHT_POSITION * h]))
        s = _H @ self.covariance @ _H.T + noise
        gain = np.linalg.solve(s, _H @ self.covariance).T
        self.mean = self.mean + gain @ (_measure(box) - _H @ self.mean)
        self.covariance = self.covariance - gain @ s @ gain.T

    def box(self) -> Box:
        cx, cy, a, h = self.mean[:4]
        w = a * h
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _measure(box: Box) -> np.ndarray:
    x1, y1, x2, y2 = box
    w, h = max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, w / h, h], np.float64)


def associate(faces: np.ndarray, scores: Sequence[float], tracks: np.ndarray,
              found_last: Sequence[bool], allowed: np.ndarray) -> list[tuple[int, int]]:
    """(face, track) pairs of ByteTrack's two stages (module docstring). `tracks` are the
    predicted boxes, `found_last[j]` whether track j was seen on the previous frame, `allowed`
    a (faces, tracks) mask of pairs that may match at all (appearance)."""
    if not len(faces) or not len(tracks):
        return []
    ious = iou_matrix(faces, tracks)
    high = np.asarray(scores, np.float64) >= HIGH_SCORE
    keep1 = allowed & high[:, None] & (ious >= STAGE1_IOU)
    pairs = greedy_pairs(ious, keep1)
    used_f = {f for f, _ in pairs}
    used_t = {t for _, t in pairs}
    free_f = np.array([i not in used_f and not high[i] for i in range(len(faces))])
    free_t = np.array([j not in used_t and found_last[j] for j in range(len(tracks))])
    keep2 = allowed & free_f[:, None] & free_t[None, :] & (ious >= STAGE2_IOU)
    return pairs + greedy_pairs(ious, keep2)

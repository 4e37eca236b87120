"""Raise an event when a face stays without a mask for N consecutive frames.

Unmasked faces are followed from frame to frame by box overlap (IoU), so two people are counted
separately and one person moving slowly keeps their count. A track that is not seen unmasked for
more than `max_missed` frames ends (its count starts again from zero); each track alerts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.boxes import Box, iou_matrix
from edge.pipeline import FaceResult


def unmasked_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """The labels that mean "no mask" (or a mask worn wrong): without_*, *incorrect*, no_mask."""
    return tuple(x for x in labels
                 if x.lower().startswith(("without", "no_mask", "nomask", "unmasked"))
                 or "incorrect" in x.lower())


@dataclass
class _Track:
    box: Box
    streak: int = 1
    missed: int = 0
    alerted: bool = False


class AlertTracker:
    """Counts consecutive frames per unmasked face; `update` returns the alerts of a frame."""

    def __init__(self, after_frames: int, labels: Sequence[str], iou_threshold: float = 0.3,
                 max_missed: int = 2) -> None:
        if after_frames < 1:
            raise ValueError("--alert-after needs at least 1 frame")
        self.after_frames = after_frames
        self.labels = frozenset(labels)
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: list[_Track] = []

    def update(self, frame: int, faces: Sequence[FaceResult]) -> list[dict[str, Any]]:
        unmasked = [f for f in faces if f.label in self.labels]
        tracks = self._tracks
        taken = [False] * len(tracks)
        new_tracks: list[_Track] = []
        alerts = []
        if tracks and unmasked:
            ious = iou_matrix(np.array([f.box for f in unmasked]),
                              np.array([t.box for t in tracks]))
        for i, face in enumerate(unmasked):
            best = -1
            if tracks:
                row = np.where(taken, -1.0, ious[i])
                j = int(row.argmax())
                best = j if row[j] >= self.iou_threshold else -1
            if best >= 0:
                taken[best] = True
                track = tracks[best]
                track.box, track.missed = face.box, 0
                track.streak += 1
            else:
                track = _Track(face.box)
                new_tracks.append(track)
            if track.streak >= self.after_frames and not track.alerted:
                track.alerted = True
                alerts.append({"event": "alert", "frame": frame, "label": face.label,
                               "box": [round(v, 1) for v in face.box],
                               "score": round(face.score, 4), "frames": track.streak})
        for track, seen in zip(tracks, taken, strict=True):
            if not seen:
                track.missed += 1
        self._tracks = [t for t in tracks if t.missed <= self.max_missed] + new_tracks
        return alerts

"""Raise one alert per tracked person who stays without a mask for N frames.

Faces are followed by `edge.tracking.tracks.Tracker`; a track's streak counts its sightings inside a
zone with an alert label (its smoothed label, so one misread frame neither starts nor breaks a
streak). A sighting with another label resets the streak; frames the track is missed or outside
every zone leave it as it is. When the streak reaches `after_frames` the track alerts, once for
its life; a face that leaves for longer than the tracker's max-age comes back as a new track.
A photo (a still: an image file, or a folder's image) is one sighting of each of its faces, so an
unmasked face there alerts at once; nothing carries from one photo to the next.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from edge.tracking.events import ALERT, AlertEvent
from edge.tracking.tracks import TrackedFace


def unmasked_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """The labels that mean "no mask" (or a mask worn wrong): without_*, *incorrect*, no_mask."""
    return tuple(x for x in labels
                 if x.lower().startswith(("without", "no_mask", "nomask", "unmasked"))
                 or "incorrect" in x.lower())


def masked_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """The labels that count as wearing a mask properly (every label `unmasked_labels` leaves)."""
    unmasked = set(unmasked_labels(labels))
    return tuple(x for x in labels if x not in unmasked)


class TrackAlerts:
    """Per-track streaks of alert labels; `update` returns the alerts of a frame."""

    def __init__(self, after_frames: int, labels: Sequence[str]) -> None:
        if after_frames < 1:
            raise ValueError("--alert-after needs at least 1 frame")
        self.after_frames = after_frames
        self.labels = frozenset(labels)
        self._streaks: dict[int, int] = {}
        self._alerted: set[int] = set()

    def update(self, frame: int, faces: Sequence[TrackedFace], alive: Collection[int],
               still: bool = False) -> list[AlertEvent]:
        """Alerts raised by this frame's faces; `alive` are the ids of the tracker's live tracks
        (state of ended tracks is dropped). On a `still` (a photo) one sighting is enough."""
        after = 1 if still else self.after_frames
        alerts = []
        for face in faces:
            if not face.in_zone:
                continue
            streak = self._streaks.get(face.track, 0) + 1 if face.label in self.labels else 0
            self._streaks[face.track] = streak
            if streak >= after and face.track not in self._alerted:
                self._alerted.add(face.track)
                alerts.append({"event": ALERT, "frame": frame, "track": face.track,
                               "label": face.label, "score": round(face.score, 4),
                               "box": [round(v, 1) for v in face.box], "frames": streak})
        self._streaks = {k: v for k, v in self._streaks.items() if k in alive}
        self._alerted &= set(alive)
        return alerts

"""People counts per class and the compliance ratio, from tracks.

A track counts as one person once it has been seen inside a zone for `count_after` frames
(`TrackerOptions`), under its majority label: the smoothed label it was shown with most often
inside a zone. Ended tracks keep their count; live ones are counted under their current majority.
Compliance is the share of people under a masked label (with_mask), None before anyone counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from edge.tracking.alerts import masked_labels
from edge.tracking.events import STATS, StatsEvent
from edge.tracking.tracks import TrackedFace, Tracker


class PeopleCounter:
    """Distinct people per class over a run; call `update` after every `Tracker.update`."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.masked = frozenset(masked_labels(tracker.labels))
        self._ended: Counter[str] = Counter()

    def update(self) -> None:
        for track in self.tracker.expired:
            label = track.majority()
            if label is not None and self.tracker.counted(track):
                self._ended[label] += 1

    def people(self) -> dict[str, int]:
        counts = Counter(dict.fromkeys(self.tracker.labels, 0)) + self._ended
        for track in self.tracker.tracks + self.tracker.lost:  # lost: may still come back
            label = track.majority()
            if label is not None and self.tracker.counted(track):
                counts[label] += 1
        return {label: counts[label] for label in self.tracker.labels}

    def compliance(self, people: dict[str, int]) -> float | None:
        total = sum(people.values())
        if not total:
            return None
        return round(sum(v for k, v in people.items() if k in self.masked) / total, 4)

    def event(self, frame: int, time: float, faces: Sequence[TrackedFace],
              fps: float) -> StatsEvent:
        """The `stats` event (shape in edge/tracking/events.py); `faces` are the latest frame's."""
        people = self.people()
        now = Counter(dict.fromkeys(self.tracker.labels, 0))
        now.update(f.label for f in faces if f.in_zone)
        return {"event": STATS, "time": round(time, 3), "frame": frame, "people": people,
                "total": sum(people.values()), "compliance": self.compliance(people),
                "now": dict(now), "fps": round(fps, 2)}

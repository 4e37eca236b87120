"""What `edge run` tells the outside world: the event shapes every sink receives.

The frame loop hands each sink (`edge.sinks.outputs.Sink`) two kinds of objects:

* `write(record, annotated)`, once per frame: the frame record
  `{"frame", "time", "source"?, "faces": [face...], "fps", "timings_ms"}` where each face is
  `{"box": [x1, y1, x2, y2], "track": int, "label": smoothed label, "score": smoothed
  probability of that label, "raw_label", "raw_score", "detector_score", "in_zone": bool,
  "reused"?: frames since the raw probabilities were computed (video, `--classify-every`)}`.
* `event(event)`, for each event, a dict with an `"event"` key:

  - `alert`: `{"event": "alert", "time", "frame", "track", "label", "score", "box", "frames",
    "source"?, "snapshot"?: {"face": path, "frame": path}}`: a tracked person seen with an alert
    label (without_mask, mask_weared_incorrect) for `frames` frames; once per track.
  - `stats`: `{"event": "stats", "time", "frame", "people": {label: distinct tracks},
    "total", "compliance": share of people with_mask (None before anyone was seen),
    "now": {label: faces in this frame}, "fps"}`; every `--stats-every` seconds and at the end.
    With `--zone`, people and faces count only inside the zones (edge/tracking/zones.py). On video a
    person is a track (edge/tracking/tracks.py; a cut ends every track); for photos every face of
    every photo is one person of that photo and nothing carries from one photo to the next.

Alert hooks (`AlertHook`) run in the frame loop *before* an alert reaches the sinks and may add
fields to it (the snapshot writer adds the paths of its JPEGs), so every sink sees one alert.
A hook with `needs_image = True` gets the annotated frame even when no sink draws.
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, Protocol, TypedDict

import numpy as np

ALERT = "alert"
STATS = "stats"


class FaceRecord(TypedDict):
    """One face of a frame record."""

    box: list[float]  # x1, y1, x2, y2 in frame pixels
    track: int
    label: str  # the track's smoothed label
    score: float  # its smoothed probability
    raw_label: str  # this frame's classification
    raw_score: float
    detector_score: float
    in_zone: bool
    reused: NotRequired[int]  # frames since the raw probabilities were computed


class FrameRecord(TypedDict):
    """What `Sink.write` receives once per frame."""

    frame: int
    time: float
    faces: list[FaceRecord]
    fps: float
    timings_ms: dict[str, float]
    source: NotRequired[str]


class AlertEvent(TypedDict):
    """A tracked person seen with an alert label for `frames` frames; once per track."""

    event: str  # ALERT
    time: float
    frame: int
    track: int
    label: str
    score: float
    box: list[float]
    frames: int
    source: NotRequired[str]
    snapshot: NotRequired[dict[str, str]]  # {"face": path, "frame": path}


class StatsEvent(TypedDict):
    """People per class, compliance and faces now; every `--stats-every` seconds and at the
    end."""

    event: str  # STATS
    time: float
    frame: int
    people: dict[str, int]
    total: int
    compliance: float | None
    now: dict[str, int]
    fps: float


def plain(value: Any) -> Any:
    """What JSON cannot hold as it is: numpy scalars and arrays as numbers and lists, the rest
    (paths) as text."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return str(value)


def event_json(record: Any) -> str:
    """The one JSON form of a record or an event, for every sink (MQTT, webhook, dashboard,
    history): compact, numpy values as numbers."""
    return json.dumps(record, separators=(",", ":"), default=plain)


class AlertHook(Protocol):
    """Called with each alert, the frame's RGB pixels and the annotated BGR frame (or None)."""

    def on_alert(self, alert: dict[str, Any], rgb: np.ndarray,
                 annotated: np.ndarray | None) -> None: ...

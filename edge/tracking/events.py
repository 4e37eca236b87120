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

from typing import Any, Protocol

import numpy as np

ALERT = "alert"
STATS = "stats"


class AlertHook(Protocol):
    """Called with each alert, the frame's RGB pixels and the annotated BGR frame (or None)."""

    def on_alert(self, alert: dict[str, Any], rgb: np.ndarray,
                 annotated: np.ndarray | None) -> None: ...

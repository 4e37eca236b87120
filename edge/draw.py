"""Draw a frame's faces (box, track, label, confidence), zones and the FPS onto a BGR copy.

The annotated frame is BGR because every consumer (video writer, JPEG encoder, window) is OpenCV:
the RGB frame is converted once, then drawn on in place. With `blur` each face is blurred first
(shrunk to a few pixels and scaled back, which no filter undoes) for privacy; boxes and labels
are drawn over it. Faces outside every zone are drawn grey; zones are yellow rectangles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from edge.boxes import Box
from edge.pipeline import FrameResult

#: BGR colours: masked faces green, unmasked red, anything else amber.
GREEN, RED, AMBER = (60, 180, 60), (40, 40, 220), (0, 170, 255)
WHITE, BLACK, GREY, YELLOW = (255, 255, 255), (0, 0, 0), (150, 150, 150), (0, 220, 240)
#: Blurred faces keep this many blocks across their longer side.
BLUR_BLOCKS = 6


class Drawable(Protocol):
    """What `annotate` draws: a `FaceResult`, or an `edge.tracking.TrackedFace` (adds the track
    id and whether it is inside a zone)."""

    @property
    def box(self) -> Box: ...

    @property
    def label(self) -> str: ...

    @property
    def score(self) -> float: ...
FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_colour(label: str) -> tuple[int, int, int]:
    name = label.lower()
    if name.startswith(("without", "no_", "no-", "nomask", "unmasked")):
        return RED
    if name.startswith(("with", "mask")) and "incorrect" not in name:
        return GREEN
    return AMBER


def _text(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int],
          scale: float) -> None:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    y = max(y, th + base + 2)
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 2, y - base), FONT, scale, WHITE if colour != WHITE else BLACK,
                1, cv2.LINE_AA)


def blur_box(image: np.ndarray, box: Box) -> None:
    """Blur one box of `image` in place beyond recognition."""
    h, w = image.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    roi = image[y1:y2, x1:x2]
    side = max(x2 - x1, y2 - y1)
    small = (max(1, round(BLUR_BLOCKS * (x2 - x1) / side)),
             max(1, round(BLUR_BLOCKS * (y2 - y1) / side)))
    tiny = cv2.resize(roi, small, interpolation=cv2.INTER_AREA)
    roi[:] = cv2.resize(tiny, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)


def annotate(rgb: np.ndarray, faces: FrameResult | Sequence[Drawable], fps: float | None = None,
             *, zones: Sequence[tuple[int, int, int, int]] = (),
             blur: bool = False) -> np.ndarray:
    """A BGR copy of the frame with every face's box, track id, label and score, the zones
    (pixels) and the FPS; faces blurred first with `blur`."""
    items: Sequence[Drawable] = faces.faces if isinstance(faces, FrameResult) else faces
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    h = image.shape[0]
    scale = max(0.4, min(1.0, h / 960))
    thickness = max(1, round(h / 240))
    if blur:
        for face in items:
            blur_box(image, face.box)
    for x1, y1, x2, y2 in zones:
        cv2.rectangle(image, (x1, y1), (x2, y2), YELLOW, thickness)
    for face in items:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        inside = getattr(face, "in_zone", True)
        colour = label_colour(face.label) if inside else GREY
        track = getattr(face, "track", None)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness if inside else 1)
        name = f"#{track} {face.label}" if track is not None else face.label
        _text(image, f"{name} {face.score:.2f}", x1, y1 - 1, colour, scale)
    if fps is not None:
        _text(image, f"{fps:5.1f} FPS  {len(items)} faces", 4, round(24 * scale) + 4,
              BLACK, scale)
    return image

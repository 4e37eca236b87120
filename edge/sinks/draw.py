"""Draw a frame's faces (box, track, label, confidence), zones and the FPS onto a BGR copy.

The annotated frame is BGR because every consumer (video writer, JPEG encoder, window) is OpenCV:
the RGB frame is converted once, then drawn on in place. With `blur` each face is blurred first
(shrunk to a few pixels and scaled back, which no filter undoes) for privacy; boxes and labels
are drawn over it. Faces outside every zone are drawn grey; zones are yellow rectangles.

Labels stay inside the frame and never cover each other or the banner (`place_labels`): each
goes above its face if there is room, else below it, else inside its top edge, shifted left at
the right edge; where all three are taken it moves down (then up) past the labels in the way,
and a label with no free place left in a crowded frame is not drawn (its box still is). The
banner shows the face count, and the FPS once there is a figure (none on the first frame).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from edge.core.boxes import Box
from edge.inference.pipeline import FrameResult

#: BGR colours: masked faces green, unmasked red, anything else amber.
GREEN, RED, AMBER = (60, 180, 60), (40, 40, 220), (0, 170, 255)
WHITE, BLACK, GREY, YELLOW = (255, 255, 255), (0, 0, 0), (150, 150, 150), (0, 220, 240)
#: Blurred faces keep this many blocks across their longer side.
BLUR_BLOCKS = 6


class Drawable(Protocol):
    """What `annotate` draws: a `FaceResult`, or an `edge.tracking.tracks.TrackedFace` (adds the
    track id and whether it is inside a zone)."""

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


#: A label's rectangle in pixels, (x1, y1, x2, y2), x2 and y2 exclusive.
Rect = tuple[int, int, int, int]


def _text_size(text: str, scale: float, width: int) -> tuple[float, int, int]:
    """(scale, width, height) of a label: the text's box plus its margins, at `scale` or less
    so that it fits in `width` pixels."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    while tw + 4 > width and scale > 0.15:
        scale *= 0.9
        (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    return scale, tw + 4, th + base + 3


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(rect: Rect, width: int, height: int) -> Rect:
    """`rect` moved (not resized) into the frame: left at the right edge, down at the top."""
    w, h = rect[2] - rect[0], rect[3] - rect[1]
    x = max(0, min(rect[0], width - w))
    y = max(0, min(rect[1], height - h))
    return x, y, x + w, y + h


def _free(rect: Rect, placed: Sequence[Rect], height: int) -> Rect | None:
    """`rect`, or the nearest place in its column below (then above) it that covers none of
    `placed` and stays inside the frame's `height`; None when the column is full."""
    x1, y0, x2, y2 = rect
    h = y2 - y0
    for step in (1, -1):
        y = y0
        while y >= 0 and y + h <= height:
            hit = next((r for r in placed if _overlaps((x1, y, x2, y + h), r)), None)
            if hit is None:
                return x1, y, x2, y + h
            y = hit[3] if step > 0 else hit[1] - h  # just past the label in the way
    return None


def place_labels(boxes: Sequence[Box], sizes: Sequence[tuple[int, int]], frame: tuple[int, int],
                 reserved: Sequence[Rect] = ()) -> list[Rect | None]:
    """Where each face's label goes: `sizes` are the labels' (width, height), `frame` the
    frame's (width, height); inside the frame, covering no other label and nothing `reserved`
    (the banner). Above the face, else below it, else inside its top edge; else the nearest
    free place in those columns; None when a crowded frame has no free place left."""
    width, height = frame
    placed: list[Rect] = list(reserved)
    out: list[Rect | None] = [None] * len(boxes)
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0]))
    for i in order:
        x1, y1, _, y2 = (round(v) for v in boxes[i])
        w, h = sizes[i]
        tops = [y for y, room in ((y1 - h, y1 - h >= 0), (y2, y2 + h <= height)) if room]
        candidates = [_inside((x1, y, x1 + w, y + h), width, height)  # above, below, inside
                      for y in (*tops, y1)]
        spot = next((c for c in candidates if c[3] <= height
                     and not any(_overlaps(c, r) for r in placed)), None)
        if spot is None:  # all three taken: the nearest free place in one of their columns
            spot = next((f for c in candidates if (f := _free(c, placed, height))), None)
        if spot is not None:
            placed.append(spot)
            out[i] = spot
    return out


def _label(image: np.ndarray, text: str, rect: Rect, colour: tuple[int, int, int],
           scale: float) -> None:
    """`text` on a filled `rect` of `colour` (white text, black on white)."""
    x1, y1, x2, y2 = rect
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, cv2.FILLED)
    base = cv2.getTextSize(text, FONT, scale, 1)[1]
    cv2.putText(image, text, (x1 + 2, y2 - base - 2), FONT, scale,
                WHITE if colour != WHITE else BLACK, 1, cv2.LINE_AA)


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
    """A BGR copy of the frame with every face's box, track id, label and score (placed by
    `place_labels`), the zones (pixels) and the banner (`fps` None: none); faces blurred first
    with `blur`."""
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
    banner = _banner(image, fps, len(items), scale)
    colours, texts, sizes = [], [], []
    for face in items:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        inside = getattr(face, "in_zone", True)
        colours.append(label_colour(face.label) if inside else GREY)
        cv2.rectangle(image, (x1, y1), (x2, y2), colours[-1], thickness if inside else 1)
        track = getattr(face, "track", None)
        name = f"#{track} {face.label}" if track is not None else face.label
        texts.append(f"{name} {face.score:.2f}")
        sizes.append(_text_size(texts[-1], scale, image.shape[1]))
    spots = place_labels([f.box for f in items], [(sw, sh) for _, sw, sh in sizes],
                         (image.shape[1], image.shape[0]), [banner] if banner else [])
    for text, colour, (text_scale, _, _), spot in zip(texts, colours, sizes, spots, strict=True):
        if spot is not None:
            _label(image, text, spot, colour, text_scale)
    return image


def _banner(image: np.ndarray, fps: float | None, faces: int, scale: float) -> Rect | None:
    """The top-left banner: the face count, with the FPS once there is a figure (`fps` > 0);
    nothing when `fps` is None. Its rectangle, which labels keep clear of."""
    if fps is None:
        return None
    counted = f"{faces} face{'' if faces == 1 else 's'}"
    text = f"{fps:5.1f} FPS  {counted}" if math.isfinite(fps) and fps > 0 else counted
    text_scale, w, h = _text_size(text, scale, image.shape[1] - 4)
    rect = _inside((4, 4, 4 + w, 4 + h), image.shape[1], image.shape[0])
    _label(image, text, rect, BLACK, text_scale)
    return rect

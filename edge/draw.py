"""Draw a frame's faces (box, label, confidence) and the FPS onto a BGR copy for display.

The annotated frame is BGR because every consumer (video writer, JPEG encoder, window) is OpenCV:
the RGB frame is converted once, then drawn on in place.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.pipeline import FrameResult

#: BGR colours: masked faces green, unmasked red, anything else amber.
GREEN, RED, AMBER = (60, 180, 60), (40, 40, 220), (0, 170, 255)
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
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


def annotate(rgb: np.ndarray, result: FrameResult, fps: float | None = None) -> np.ndarray:
    """A BGR copy of the frame with every face's box, label and score, and the FPS."""
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    h = image.shape[0]
    scale = max(0.4, min(1.0, h / 960))
    thickness = max(1, round(h / 240))
    for face in result.faces:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        colour = label_colour(face.label)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        _text(image, f"{face.label} {face.score:.2f}", x1, y1 - 1, colour, scale)
    if fps is not None:
        _text(image, f"{fps:5.1f} FPS  {len(result.faces)} faces", 4, round(24 * scale) + 4,
              BLACK, scale)
    return image

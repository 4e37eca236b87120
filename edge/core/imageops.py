"""Pixel operations shared by training and the device, so both see faces the same way.

`crop_face` cuts a face box out of a frame with a margin; `resize_to_input` scales any RGB crop to a
model's input size. The trainer uses both on its photos and the edge runtime on camera frames:
one implementation, so training and the camera can never disagree. numpy + OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Default margin around a detected or annotated face box, as a fraction of its width/height.
FACE_MARGIN = 0.2


def crop_face(image: np.ndarray, box: tuple[float, float, float, float],
              margin: float = FACE_MARGIN) -> np.ndarray:
    """Crop box (x1, y1, x2, y2) enlarged by `margin` on every side, clipped to the image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, round(x1 - mx)), max(0, round(y1 - my))
    right, bottom = min(w, round(x2 + mx)), min(h, round(y2 + my))
    if right <= left or bottom <= top:
        raise ValueError(f"face box {box} lies outside the {w}x{h} image")
    return image[top:bottom, left:right]


def resize_to_input(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 image to (height, width): area averaging down, bilinear up."""
    th, tw = size
    h, w = image.shape[:2]
    if (h, w) == (th, tw):
        return np.ascontiguousarray(image)
    interp = cv2.INTER_AREA if (h > th or w > tw) else cv2.INTER_LINEAR
    return cv2.resize(image, (tw, th), interpolation=interp)

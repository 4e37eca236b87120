"""Make a test video from a folder of photos: each photo fitted into the frame, held for N frames.

Used to run the camera pipeline end to end on known pictures (face-mask-voc) in tests and
benchmarks. The video is written beside the target and renamed into place when complete.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.fileio import atomic_path
from edge.core.imagesize import read_bgr
from edge.sinks.outputs import FOURCC, OutputError, fit_frame
from edge.video.sources import IMAGE_SUFFIXES


@dataclass(frozen=True)
class VideoReport:
    path: Path
    frames: int
    photos: int
    unreadable: list[str]


def list_images(folder: Path, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return files[:limit] if limit else files


def make_video(photos: Sequence[Path], target: Path, size: tuple[int, int] = (640, 480),
               fps: float = 10.0, hold: int = 1,
               on_photo: Callable[[], None] | None = None, pan: float = 0.0) -> VideoReport:
    """Write `photos` (fitted to `size`, each shown for `hold` frames) as a video at `target`;
    with `pan`, each held frame moves the picture that many pixels right (people walking by)."""
    if target.suffix.lower() not in FOURCC:
        raise OutputError(f"cannot write video {target}: use one of {', '.join(sorted(FOURCC))}")
    if not photos:
        raise OutputError(f"no photos to make {target} from")
    frames, used, unreadable = 0, 0, []
    with atomic_path(target) as tmp:
        fourcc = cv2.VideoWriter.fourcc(*FOURCC[target.suffix.lower()])
        writer = cv2.VideoWriter(str(tmp), fourcc, fps, size)
        if not writer.isOpened():
            raise OutputError(f"OpenCV cannot encode {target.suffix} video here")
        try:
            for photo in photos:
                bgr = read_bgr(photo)  # None: unreadable, or too large to decode
                if on_photo:
                    on_photo()
                if bgr is None:
                    unreadable.append(photo.name)
                    continue
                frame = fit_frame(bgr, size)
                for k in range(hold):
                    writer.write(_shifted(frame, pan * k) if pan else frame)
                frames += hold
                used += 1
        finally:
            writer.release()
        if not frames:
            raise OutputError(f"none of the {len(photos)} photos could be read (the first: "
                              f"{photos[0]})")
    return VideoReport(target, frames, used, unreadable)


def _shifted(frame: np.ndarray, dx: float) -> np.ndarray:
    """The frame moved `dx` pixels right, the edge it uncovers mirrored."""
    move = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(frame, move, (frame.shape[1], frame.shape[0]),
                          borderMode=cv2.BORDER_REFLECT)

"""Scene cuts: when the view changes wholesale, nothing seen before it may carry past it.

`SceneCuts.scene(rgb)` gives each frame a scene number. It goes up by one when the frame differs
from the one before it wholesale: an edited video's hard cut, a stream that jumps, another photo.
The capture thread numbers every frame it reads (edge/video/capture.py), so a cut is not lost when
the frame loop drops frames; it also starts a new scene after a reconnect, after a `--loop` file
restarts, and for every photo of a folder. The frame loop ends every track at a new scene and the
pipeline forgets the boxes and labels it would otherwise reuse (edge/inference/pipeline.py,
edge/tracking/tracks.py).

The test compares two 32x24 grey thumbnails (about 0.1 ms for a 640x480 frame, on the capture
thread): the normalised correlation of their pixels (structure, insensitive to exposure changes)
and the overlap of their 16-bin grey histograms (content, insensitive to a moving camera). A cut
needs both to drop: `correlation < CUT_CORRELATION` and `histogram overlap < CUT_HISTOGRAM`, or
the correlation alone below `HARD_CUT_CORRELATION`. The thresholds were chosen on 300 held-in
photos (face-mask-ilc-dev and face-mask-voc minus their held-out lists, fitted into 640x480): a
photo against itself panned up to 10 px, zoomed up to 4 % and with sensor noise (sigma 4) kept a
correlation of at least 0.80 and a histogram overlap of at least 0.87, so none of the 300 pairs
cut; of the 299 pairs of different photos 4 did not cut (similar street scenes), and there the
appearance test of the tracker (edge/inference/appearance.py) still keeps faces apart. The margin
below 0.80 is for what a real camera adds between two processed frames: people walking, exposure.
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB = (32, 24)  # width, height
BINS = 16
#: Below this correlation and below `CUT_HISTOGRAM` histogram overlap, the view has changed.
CUT_CORRELATION = 0.85
CUT_HISTOGRAM = 0.8
#: Below this correlation alone the view has changed, whatever the histograms say.
HARD_CUT_CORRELATION = 0.6


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The frame as a small grey float32 image (every 4th pixel averaged down: a tenth of the
    time of an area resize of the whole frame, and as steady under noise)."""
    step = max(1, min(rgb.shape[0] // (4 * THUMB[1]), rgb.shape[1] // (4 * THUMB[0])))
    small = cv2.resize(rgb[::step, ::step], THUMB, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY) if small.ndim == 3 else small
    return grey.astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(pixel correlation, histogram overlap) of two thumbnails, each in [-1, 1] / [0, 1]."""
    za, zb = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((za * za).sum() * (zb * zb).sum()))
    corr = float((za * zb).sum() / norm) if norm > 1e-6 else (1.0 if np.allclose(a, b) else 0.0)
    ha = np.bincount((a * (BINS / 256.0)).astype(np.intp).ravel(), minlength=BINS)
    hb = np.bincount((b * (BINS / 256.0)).astype(np.intp).ravel(), minlength=BINS)
    overlap = float(np.minimum(ha, hb).sum() / max(ha.sum(), 1))
    return corr, overlap


def is_cut(corr: float, overlap: float) -> bool:
    """Whether a pair of frames with this similarity lies across a cut (module docstring)."""
    return corr < HARD_CUT_CORRELATION or (corr < CUT_CORRELATION and overlap < CUT_HISTOGRAM)


class SceneCuts:
    """Scene numbers for successive frames of one source (module docstring)."""

    def __init__(self) -> None:
        self.scene = -1  # before the first frame
        self._last: np.ndarray | None = None

    def next(self, rgb: np.ndarray, new_scene: bool = False) -> int:
        """The scene of this frame; `new_scene` forces a new one (a photo, a reconnect)."""
        thumb = thumbnail(rgb)
        if new_scene or self._last is None or is_cut(*similarity(self._last, thumb)):
            self.scene += 1
        self._last = thumb
        return self.scene

    def restart(self) -> None:
        """The next frame starts a new scene (the source was reopened or rewound)."""
        self._last = None

"""What a face looks like, in a few numbers: enough to tell a new person at the same spot.

Boxes alone cannot tell that the face at a spot now is not the one that stood there a frame ago
(the next person in a queue stepping into the same place, a cut the scene test missed). The
descriptor is the face box shrunk to 8x8 RGB (about 20 microseconds a face), with its mean
taken out and scaled to unit length: colours and layout of skin, hair, mask and background at
that spot. Two sightings of one face under the motion, zoom and noise of a camera stay close
(cosine similarity near 1); two people rarely do. The pipeline reuses a face's label on the next
frame only at `SAME_FACE` or above; the tracker continues a track at its own
`TrackerOptions.appearance_min` (0.45, chosen on held-in clips, edge/tracking/tracks.py).
`SAME_FACE` came from 595 held-in faces of face-mask-ilc-dev (>= 24 px, its held-out photos left
out): each against itself in a view panned up to 10 px, zoomed up to 4 %, with sensor noise (sigma
4) and the box jittered by 5 % of its width, the similarity was at least 0.66 (99.5 % above 0.68);
against another face of the set it was above 0.6 for 4.2 % of 593 random pairs (0.45: about 14 %).
Together with the spatial test (the same spot) that keeps a new person at a spot apart from the
last one. A box the pipeline reused from an earlier frame (`--detect-every`) gets no look: the
face may have moved out of it.

Hand-written because it has to be tiny: a learned re-identification network would cost more per
face than the mask classifier itself on a Raspberry Pi.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.core.boxes import Box

SIZE = 8
#: Least cosine similarity of two descriptors for them to be taken as the same face.
SAME_FACE = 0.6


def descriptor(rgb: np.ndarray, box: Box) -> np.ndarray | None:
    """The unit-length appearance vector of the face in `box`, or None for an empty box."""
    h, w = rgb.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(round(float(box[2])), w), min(round(float(box[3])), h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    step = max(1, min(y2 - y1, x2 - x1) // (4 * SIZE))  # every nth pixel, then averaged down
    small = cv2.resize(rgb[y1:y2:step, x1:x2:step], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    v = small.reshape(-1).astype(np.float32)
    v -= v.mean()
    norm = float(np.sqrt(v @ v))
    return v / norm if norm > 1e-6 else None


def similarities(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> np.ndarray:
    """Cosine similarity of every descriptor in `a` with every one in `b`, (len(a), len(b));
    1.0 where either is missing (no evidence against the pair)."""
    out = np.ones((len(a), len(b)), np.float64)
    ia = [i for i, v in enumerate(a) if v is not None]
    ib = [j for j, v in enumerate(b) if v is not None]
    if ia and ib:
        ma = np.stack([a[i] for i in ia])
        mb = np.stack([b[j] for j in ib])
        out[np.ix_(ia, ib)] = ma @ mb.T
    return out

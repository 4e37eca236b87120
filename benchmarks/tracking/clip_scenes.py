"""The parts of a moving scene (benchmarks/tracking/clips.py): face paths by script, face sprites
cut from annotated photos, face-free backgrounds, and what of a face stays visible.

Each script makes a situation a tracker gets wrong on a real camera, so the tracking benchmark
measures it on purpose: faces at very different speeds (a fast face jumps most of its width
between frames), two faces passing through each other (which one keeps which id), a face that
leaves for longer than the tracker's max-age and comes back (the same person), and a slow crowd
whose faces overlap. A path is the centre of the face box, linear between key times; before its
first and after its last key time the face is not in the scene. Paths come from a seeded
generator, so a scene is the same for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from edge.core.boxes import Box
from edge.core.imagesize import header_size, read_bgr
from edge.core.voc import AnnotatedImage

FRAME = (640, 480)
SCRIPTS = ("speeds", "cross", "return", "crowd", "swap")
FACE_WIDTHS = (40.0, 140.0)  # px in the frame
SPRITE_MARGIN = 0.35  # of the box, on every side of a pasted face (benchmarks.tracking.clips)
ASPECT = 1.35  # face box height / width assumed when keeping a face inside the frame
SPEED_BANDS = ((0.8, 2.0), (3.0, 5.5), (7.0, 12.0))  # px per frame: slow, medium, fast
AWAY_FRAMES = (20, 40)  # frames a face that leaves stays away (the tracker's max-age is 10)
BACKGROUND_MIN_WIDTH = 200  # px of photo under a 640 px background


@dataclass(frozen=True)
class FacePath:
    """A face box of `width` px whose centre goes through (xs[k], ys[k]) at times[k]."""

    width: float
    times: tuple[float, ...]
    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def centre(self, t: float) -> tuple[float, float] | None:
        if t < self.times[0] or t > self.times[-1]:
            return None
        return float(np.interp(t, self.times, self.xs)), float(np.interp(t, self.times, self.ys))


def _width(rng: np.random.Generator, low: float = FACE_WIDTHS[0],
           high: float = FACE_WIDTHS[1]) -> float:
    return float(rng.uniform(low, high))


def _outside(width: float) -> float:
    """How far past the frame's edge a face's centre must be for its sprite to be out of view."""
    return width * (0.5 + SPRITE_MARGIN) + 2.0


def _row(rng: np.random.Generator, width: float) -> float:
    """A centre y that keeps the face inside the frame vertically."""
    half = width * ASPECT / 2 + 4
    return float(rng.uniform(half, FRAME[1] - half))


def _inside(rng: np.random.Generator, width: float) -> tuple[float, float]:
    half = width / 2 + 4
    return float(rng.uniform(half, FRAME[0] - half)), _row(rng, width)


def wander(rng: np.random.Generator, length: int, width: float | None = None,
           speeds: tuple[float, float] = (0.5, 2.5)) -> FacePath:
    """A face inside the frame going from one random point to the next, slowly."""
    width = width or _width(rng)
    x, y = _inside(rng, width)
    times, xs, ys = [0.0], [x], [y]
    while times[-1] < length:
        nx, ny = _inside(rng, width)
        step = float(np.hypot(nx - xs[-1], ny - ys[-1])) / float(rng.uniform(*speeds))
        times.append(times[-1] + max(step, 8.0))
        xs.append(nx)
        ys.append(ny)
    return FacePath(width, tuple(times), tuple(xs), tuple(ys))


def crossing(rng: np.random.Generator, length: int, band: tuple[float, float],
             start: float = 0.0) -> FacePath:
    """A face crossing the frame sideways at a speed from `band` (a slow one starts inside)."""
    width, speed = _width(rng), float(rng.uniform(*band))
    left_to_right = bool(rng.integers(2))
    y0 = _row(rng, width)
    y1 = float(np.clip(y0 + rng.uniform(-40, 40), width * ASPECT / 2 + 4,
                       FRAME[1] - width * ASPECT / 2 - 4))
    off = _outside(width)
    x0 = (float(rng.uniform(0.2, 0.8)) * FRAME[0] if band[1] < 3.0
          else (-off if left_to_right else FRAME[0] + off))
    x1 = FRAME[0] + off if left_to_right else -off
    return FacePath(width, (start, start + abs(x1 - x0) / speed), (x0, x1), (y0, y1))


def _speeds(rng: np.random.Generator, length: int) -> tuple[list[FacePath], int]:
    starts = rng.uniform(0, length * 0.25, len(SPEED_BANDS))
    return [crossing(rng, length, band, float(s))
            for band, s in zip(SPEED_BANDS, starts, strict=True)], length


def _cross(rng: np.random.Generator, length: int) -> tuple[list[FacePath], int]:
    """Two faces at about the same height meeting at the centre halfway through the scene."""
    y = _row(rng, FACE_WIDTHS[1] * 0.85)
    middle = length / 2
    paths = []
    for direction in (1, -1):
        width, speed = _width(rng, 50.0, 120.0), float(rng.uniform(2.5, 5.5))
        x0 = FRAME[0] / 2 - direction * speed * middle
        x1 = FRAME[0] / 2 + direction * speed * (length - middle)
        dy = float(rng.uniform(-12, 12))
        paths.append(FacePath(width, (0.0, float(length)), (x0, x1), (y + dy, y + dy)))
    if rng.random() < 0.5:
        paths.insert(0, wander(rng, length, _width(rng, 40.0, 70.0)))
    return paths, length


def _return(rng: np.random.Generator, length: int) -> tuple[list[FacePath], int]:
    """A face walks out at the nearer side, stays away AWAY_FRAMES, and comes back in."""
    width, speed = _width(rng, 50.0, 130.0), float(rng.uniform(4.0, 8.0))
    left = bool(rng.integers(2))
    x_in = FRAME[0] * (0.3 if left else 0.7)
    x_out = -_outside(width) if left else FRAME[0] + _outside(width)
    x_back = float(rng.uniform(0.25, 0.75)) * FRAME[0]
    y, y_back = _row(rng, width), _row(rng, width)
    t_out = abs(x_out - x_in) / speed
    t_again = t_out + float(rng.integers(*AWAY_FRAMES))
    t_back = t_again + abs(x_back - x_out) / speed
    end = max(float(length), t_back + 20.0)
    path = FacePath(width, (0.0, t_out, t_again, t_back, end),
                    (x_in, x_out, x_out, x_back, x_back), (y, y, y_back, y_back, y_back))
    total = int(np.ceil(end))
    return [wander(rng, total, _width(rng, 40.0, 80.0)), path], total


def _swap(rng: np.random.Generator, length: int) -> tuple[list[FacePath], int]:
    """One person stands at a spot, swaying a little; halfway through the scene another steps
    into the same place from one frame to the next (the next in a queue at the door)."""
    width = _width(rng, 60.0, 120.0)
    x, y = _inside(rng, width)
    middle = float(length // 2)
    sway = float(rng.uniform(2.0, 6.0))
    first = FacePath(width, (0.0, middle / 2, middle - 1), (x, x + sway, x), (y, y, y))
    second = FacePath(width, (middle, middle + length / 4, float(length)),
                      (x, x - sway, x), (y, y, y))
    return [wander(rng, length, _width(rng, 40.0, 70.0)), first, second], length


def _crowd(rng: np.random.Generator, length: int) -> tuple[list[FacePath], int]:
    return [wander(rng, length) for _ in range(int(rng.integers(3, 5)))], length


def scene_paths(script: str, rng: np.random.Generator,
                length: int) -> tuple[list[FacePath], int]:
    """The paths of one scene of about `length` frames (lowest drawn first) and its length."""
    makers = {"speeds": _speeds, "cross": _cross, "return": _return, "crowd": _crowd,
              "swap": _swap}
    if script not in makers:
        raise ValueError(f"unknown scene script {script!r}; choose from {', '.join(SCRIPTS)}")
    return makers[script](rng, length)


# ----------------------------------------------------------------------------- sprites


def read_rgb(path: Path) -> np.ndarray:
    bgr = read_bgr(path)
    if bgr is None:
        raise ValueError(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class FaceSource:
    """An annotated face a sprite is cut from."""

    photo: Path
    index: int
    label: str
    box: Box

    @property
    def identity(self) -> str:
        return f"{self.photo.name}#{self.index}"


@dataclass(frozen=True)
class Sprite:
    """Where a face sprite comes from in its photo and where the face box lies inside it."""

    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 in photo pixels (may pass the edges)
    size: tuple[int, int]  # sprite width, height
    box: Box  # the face box in sprite pixels


def sprite_of(source: FaceSource, width: float) -> Sprite:
    """The sprite geometry of `source` scaled so that its face box is `width` px wide."""
    x1, y1, x2, y2 = source.box
    mx, my = (x2 - x1) * SPRITE_MARGIN, (y2 - y1) * SPRITE_MARGIN
    crop = (math.floor(x1 - mx), math.floor(y1 - my), math.ceil(x2 + mx), math.ceil(y2 + my))
    scale = width / (x2 - x1)
    size = (max(2, round((crop[2] - crop[0]) * scale)), max(2, round((crop[3] - crop[1]) * scale)))
    fx, fy = size[0] / (crop[2] - crop[0]), size[1] / (crop[3] - crop[1])
    return Sprite(crop, size, ((x1 - crop[0]) * fx, (y1 - crop[1]) * fy,
                               (x2 - crop[0]) * fx, (y2 - crop[1]) * fy))


@lru_cache(maxsize=256)
def sprite_alpha(width: int, height: int) -> np.ndarray:
    """A (height, width) float32 alpha: 1 inside 85 % of the inscribed ellipse, fading to 0 at
    its edge (the face box itself, inside 83 %, stays opaque)."""
    u = (np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1
    v = (np.arange(height, dtype=np.float32) + 0.5) / height * 2 - 1
    r = np.sqrt(u[None, :] ** 2 + v[:, None] ** 2)
    return np.clip((1.0 - r) / 0.15, 0.0, 1.0).astype(np.float32)


def sprite_pixels(source: FaceSource, sprite: Sprite) -> np.ndarray:
    """The sprite's RGB pixels (float32): its crop of the photo, mirrored past the photo's edges,
    resized."""
    rgb = read_rgb(source.photo)
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = sprite.crop
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    crop = rgb[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    shrink = sprite.size[0] < crop.shape[1]
    return cv2.resize(crop, sprite.size, interpolation=cv2.INTER_AREA if shrink
                      else cv2.INTER_LINEAR).astype(np.float32)


@dataclass(frozen=True)
class Mover:
    """A face on a path through one scene, drawn above the movers of lower `depth`."""

    source: FaceSource
    sprite: Sprite
    path: FacePath
    depth: int

    def place(self, t: float) -> tuple[int, int] | None:
        """The sprite's top-left corner (integer px) at scene time t, or None when off-path."""
        centre = self.path.centre(t)
        if centre is None:
            return None
        bx1, by1, bx2, by2 = self.sprite.box
        return (round(centre[0] - (bx1 + bx2) / 2), round(centre[1] - (by1 + by2) / 2))

    def box_at(self, corner: tuple[int, int]) -> Box:
        x, y = corner
        b = self.sprite.box
        return (x + b[0], y + b[1], x + b[2], y + b[3])


@dataclass(frozen=True)
class Background:
    photo: Path
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1


def find_background(item: AnnotatedImage) -> Background | None:
    """The largest 4:3 crop of a photo clear of its annotated faces (grown by a quarter), at
    least BACKGROUND_MIN_WIDTH px wide; None when there is none."""
    size = header_size(item.path)
    if size is None:
        return None
    w, h = size
    grown = [(a.box[0] - (a.box[2] - a.box[0]) / 4, a.box[1] - (a.box[3] - a.box[1]) / 4,
              a.box[2] + (a.box[2] - a.box[0]) / 4, a.box[3] + (a.box[3] - a.box[1]) / 4)
             for a in item.annotations]
    full = min(w, h * 4 / 3)
    for fraction in (1.0, 0.85, 0.7, 0.6, 0.5, 0.4, 0.33):
        cw = full * fraction
        ch = cw * 3 / 4
        if cw < BACKGROUND_MIN_WIDTH:
            break
        for y0 in np.linspace(0, h - ch, 6):
            for x0 in np.linspace(0, w - cw, 6):
                if not any(b[0] < x0 + cw and x0 < b[2] and b[1] < y0 + ch and y0 < b[3]
                           for b in grown):
                    return Background(item.path, (int(x0), int(y0), int(x0 + cw), int(y0 + ch)))
    return None


@dataclass(frozen=True)
class Scene:
    background: Background
    length: int
    movers: tuple[Mover, ...]
    script: str


def paste(canvas: np.ndarray, pixels: np.ndarray, alpha: np.ndarray,
          corner: tuple[int, int]) -> None:
    """Blend a sprite onto a float32 canvas at `corner`, clipped to the canvas."""
    x, y = corner
    h, w = alpha.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = canvas[y0:y1, x0:x1]
    region *= 1.0 - a
    region += pixels[y0 - y:y1 - y, x0 - x:x1 - x] * a


def visible_share(box: Box, above: Sequence[tuple[tuple[int, int], np.ndarray]]) -> float:
    """The share of `box`'s pixels inside the frame and not under an opaque (alpha > 0.5) part of
    the sprites `above` (corner, alpha)."""
    bx0, by0 = math.floor(box[0]), math.floor(box[1])
    bx1, by1 = max(math.ceil(box[2]), bx0 + 1), max(math.ceil(box[3]), by0 + 1)
    seen = np.zeros((by1 - by0, bx1 - bx0), bool)
    fx0, fy0 = max(bx0, 0), max(by0, 0)
    fx1, fy1 = min(bx1, FRAME[0]), min(by1, FRAME[1])
    if fx1 <= fx0 or fy1 <= fy0:
        return 0.0
    seen[fy0 - by0:fy1 - by0, fx0 - bx0:fx1 - bx0] = True
    for (x, y), alpha in above:
        ox0, oy0 = max(x, bx0), max(y, by0)
        ox1, oy1 = min(x + alpha.shape[1], bx1), min(y + alpha.shape[0], by1)
        if ox1 > ox0 and oy1 > oy0:
            seen[oy0 - by0:oy1 - by0, ox0 - bx0:ox1 - bx0] &= \
                alpha[oy0 - y:oy1 - y, ox0 - x:ox1 - x] <= 0.5
    return float(seen.mean())

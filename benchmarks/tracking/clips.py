"""Synthetic clips with ground truth for the tracking benchmark (`python -m benchmarks.tracking`).

What it is for: `edge run` follows faces with a tracker (edge/tracking/tracks.py) and reports each
track's smoothed label; whether the tracker keeps people apart (across photos, cuts, crossings,
drops) can only be measured on video where every face's identity and box is known in every frame.
There is no annotated video of masked faces in ../shared, so the clips are made from the annotated
photos (`edge.core.voc.load_voc` over face-mask-ilc-dev and face-mask-voc), reproducibly from a
seed, and rendered lazily: `clip.frame(i)` draws frame i on demand (no clip is held in memory) and
`clip.truth(i)` is its ground truth, one `Truth` (identity, box, class, visible) per face.

Every frame is 640x480 RGB with Gaussian sensor noise (sigma `NOISE_SIGMA`, seeded per frame).

- `held`: photos one after another, each held `HOLD_FRAMES` frames with a hard cut between them.
  A photo is scaled to fit the frame (aspect kept, centred; the rest of the frame is black, as
  `edge.sinks.outputs.fit_frame` letterboxes); within a photo the view pans up to `MAX_PAN` px and
  zooms up to `MAX_ZOOM` smoothly (smoothstep), and the boxes move with the view. Identity = (photo,
  annotation index).
- `moving`: scenes separated by explicit hard cuts (`clip.cuts`). A scene's background is the
  largest 4:3 crop of a photo that holds no annotated face (boxes grown by a quarter), scaled up
  to 640x480. Face sprites (annotation box plus 35 % on every side, with a soft elliptical alpha
  edge; faces >= `SOURCE_MIN_FACE` px in their photo) move over it, 40-140 px wide, 1-4 at a time,
  by script: `speeds` (three faces crossing the frame slow / medium / fast), `cross` (two faces
  passing through each other; the one drawn on top stays visible), `return` (a face leaves the
  frame for longer than the tracker's max-age and comes back: same identity), `crowd` (slow
  wanderers that overlap), `swap` (a person standing at a spot is replaced there by another from
  one frame to the next, as the next in a queue steps up). A face more than half covered (by
  sprites drawn above it, alpha > 0.5) or more than half outside the frame is not `visible`; a
  visible face smaller than `MIN_FACE` px on its short side is "don't care" for the metrics.
- `dropped`: the `moving` clip with frames dropped at a jittered, seeded stride (1, 2 or 3, mean
  2), as `edge run --realtime` on a device that manages about half the camera's frame rate.
- `masked`: a moving clip of with_mask faces only (false alerts per hour).

Held-in / held-out: `photo_pool(split)` is the only way photos are chosen, by one `split`
argument. "held-in" uses only photos that are in neither held-out list
(`benchmarks/holdout/face-mask-ilc-dev-test.txt`, `.../face-mask-voc-test.txt`; both datasets),
"held-out" only the photos of the ilc-dev held-out list: the 3-class model never trained on them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.holdout_split import HOLDOUT_DIR, ILC_TEST_LIST
from benchmarks.tracking.clip_scenes import (
    FRAME,
    SCRIPTS,
    Background,
    FaceSource,
    Mover,
    Scene,
    find_background,
    paste,
    read_rgb,
    scene_paths,
    sprite_alpha,
    sprite_of,
    sprite_pixels,
    visible_share,
)
from edge.core.boxes import Box, clip_box
from edge.core.imagesize import header_size
from edge.core.labelmap import LabelMap
from edge.core.voc import AnnotatedImage, load_voc, read_name_list
from edge.sinks.outputs import fit_transform

VOC_TEST_LIST = HOLDOUT_DIR / "face-mask-voc-test.txt"
ILC_DATA = Path("datasets") / "face-mask-ilc-dev"
VOC_DATA = Path("datasets") / "face-mask-voc"
#: ilc-dev's original name for the third class; its stored annotations already use ours (checked:
#: both datasets name with_mask / without_mask / mask_weared_incorrect), so this is a safeguard.
LABEL_MAP = ("with_incorrect_mask=mask_weared_incorrect",)
SPLITS = ("held-in", "held-out")
KINDS = ("held", "moving", "dropped", "masked")
FPS = 15.0  # nominal frame rate of every clip (alerts per hour are counted at it)
HOLD_FRAMES = 12
MAX_PAN = 10.0  # px the view moves within one held photo
MAX_ZOOM = 0.04  # zoom change within one held photo
NOISE_SIGMA = 4.0
MIN_FACE = 16  # px, short side: smaller ground-truth faces are "don't care"
VISIBLE_SHARE = 0.5  # a face with less of its box in view (uncovered, in the frame) is not visible
SOURCE_MIN_FACE = 32  # px, short side in its photo, for a face pasted into a moving clip
DROP_STRIDES = (1, 2, 3)
DROP_WEIGHTS = (0.25, 0.5, 0.25)
MASKED_LABEL = "with_mask"


@dataclass(frozen=True)
class Truth:
    """One face of one frame: who it is, where (box clipped to the frame), its class, and whether
    it is visible (at least `VISIBLE_SHARE` of its box uncovered and inside the frame)."""

    identity: str
    box: Box
    label: str
    visible: bool

    @property
    def short_side(self) -> float:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def counts(self) -> bool:
        """Whether the metrics count this face (visible and >= MIN_FACE px); else don't care."""
        return self.visible and self.short_side >= MIN_FACE


class _Cache:
    """The last few values of an expensive function of one key (decoded photos, sprites)."""

    def __init__(self, make: Callable[[Any], Any], size: int = 2) -> None:
        self.make, self.size = make, size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def __call__(self, key: Hashable) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = self.make(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


NOISE_FIELDS = 8
NOISE_SLACK = 16  # px: a frame's noise is a window of one field, at a seeded offset


@lru_cache(maxsize=2)
def noise_fields(seed: int) -> np.ndarray:
    """NOISE_FIELDS fields of Gaussian noise (sigma NOISE_SIGMA, int8), a little larger than a
    frame: drawing 921,600 normals per frame would cost more than the rest of the rendering."""
    rng = np.random.default_rng([seed, 99])
    shape = (NOISE_FIELDS, FRAME[1] + NOISE_SLACK, FRAME[0] + NOISE_SLACK, 3)
    return np.clip(np.rint(rng.standard_normal(shape, dtype=np.float32) * NOISE_SIGMA),
                   -127, 127).astype(np.int8)


def add_noise(rgb: np.ndarray, seed: int, i: int) -> np.ndarray:
    """`rgb` (a FRAME, uint8 or float) plus sensor noise: frame i of a clip seeded `seed` always
    gets the same noise (a seeded window of one of the seed's noise fields)."""
    k, dy, dx = np.random.default_rng([seed, i]).integers(
        (0, 0, 0), (NOISE_FIELDS, NOISE_SLACK + 1, NOISE_SLACK + 1))
    noise = noise_fields(seed)[k, dy:dy + FRAME[1], dx:dx + FRAME[0]]
    base = np.rint(rgb).astype(np.int16) if rgb.dtype != np.uint8 else rgb.astype(np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


class Clip:
    """A clip: `len(clip)` frames, `frame(i)` (RGB uint8 640x480), `truth(i)`, the frames where a
    new shot begins (`cuts`) and a description for the results."""

    kind = ""
    fps = FPS
    size = FRAME

    def __init__(self, name: str, seed: int) -> None:
        self.name, self.seed = name, seed

    def __len__(self) -> int:
        raise NotImplementedError

    def frame(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def truth(self, i: int) -> list[Truth]:
        raise NotImplementedError

    @property
    def cuts(self) -> tuple[int, ...]:
        return ()

    @property
    def seconds(self) -> float:
        """The clip's length in clip time (frames at its nominal FPS)."""
        return len(self) / self.fps

    def _check(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise IndexError(f"{self.name} has {len(self)} frames, not frame {i}")

    def describe(self) -> dict[str, Any]:
        seen = {t.identity for i in range(len(self)) for t in self.truth(i) if t.counts}
        return {"kind": self.kind, "name": self.name, "frames": len(self), "fps": self.fps,
                "seconds": round(self.seconds, 1), "cuts": len(self.cuts),
                "identities": len(seen), "seed": self.seed}


# ----------------------------------------------------------------------------- photos


@dataclass(frozen=True)
class PhotoPool:
    """The annotated photos (with at least one face) a split may use."""

    split: str
    photos: tuple[AnnotatedImage, ...]
    datasets: dict[str, int]  # photos per dataset


def photo_pool(split: str, shared: Path) -> PhotoPool:
    """The photos of `split` (module docstring): held-in = in neither held-out list, held-out =
    the ilc-dev held-out list. DatasetError when a dataset is missing."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    held_out = read_name_list(ILC_TEST_LIST)
    label_map = LabelMap.parse(LABEL_MAP)
    if split == "held-out":
        sources = {"face-mask-ilc-dev": load_voc(shared / ILC_DATA, label_map=label_map,
                                                 only=held_out)}
    else:
        leave_out = held_out | read_name_list(VOC_TEST_LIST)
        sources = {name: load_voc(shared / data, label_map=label_map, exclude=leave_out)
                   for name, data in (("face-mask-ilc-dev", ILC_DATA),
                                      ("face-mask-voc", VOC_DATA))}
    photos = tuple(p for items in sources.values() for p in items if p.annotations)
    return PhotoPool(split, photos, {k: sum(1 for p in v if p.annotations)
                                     for k, v in sources.items()})


# ----------------------------------------------------------------------------- held photos


@dataclass(frozen=True)
class Shot:
    """One held photo: its size and the view (zoom, pan x, pan y) at its first and last frame."""

    photo: AnnotatedImage
    size: tuple[int, int]
    start: tuple[float, float, float]
    end: tuple[float, float, float]


def _smoothstep(u: float) -> float:
    return u * u * (3.0 - 2.0 * u)


class HeldClip(Clip):
    """Photos held `hold` frames each, panning and zooming a little (module docstring)."""

    kind = "held"

    def __init__(self, shots: Sequence[Shot], seed: int, hold: int = HOLD_FRAMES,
                 name: str = "held") -> None:
        super().__init__(name, seed)
        self.shots, self.hold = tuple(shots), hold
        self._photo = _Cache(lambda path: read_rgb(path))

    def __len__(self) -> int:
        return len(self.shots) * self.hold

    @property
    def cuts(self) -> tuple[int, ...]:
        return tuple(k * self.hold for k in range(1, len(self.shots)))

    def view(self, i: int) -> np.ndarray:
        """The 2x3 affine map from photo pixels to frame pixels of frame i."""
        self._check(i)
        shot = self.shots[i // self.hold]
        u = _smoothstep((i % self.hold) / max(self.hold - 1, 1))
        zoom, px, py = (a + (b - a) * u for a, b in zip(shot.start, shot.end, strict=True))
        w, h = shot.size
        s = fit_transform(shot.size, FRAME)[0] * zoom
        cx, cy = FRAME[0] / 2 + px, FRAME[1] / 2 + py
        return np.array([[s, 0.0, cx - s * w / 2], [0.0, s, cy - s * h / 2]], np.float64)

    def frame(self, i: int) -> np.ndarray:
        matrix = self.view(i)
        shot = self.shots[i // self.hold]
        rgb = cv2.warpAffine(self._photo(shot.photo.path), matrix, FRAME, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        return add_noise(rgb, self.seed, i)

    def truth(self, i: int) -> list[Truth]:
        matrix = self.view(i)
        photo = self.shots[i // self.hold].photo
        out = []
        for k, ann in enumerate(photo.annotations):
            x1, y1, x2, y2 = ann.box
            s, tx, ty = matrix[0, 0], matrix[0, 2], matrix[1, 2]
            full = (s * x1 + tx, s * y1 + ty, s * x2 + tx, s * y2 + ty)
            box = clip_box(full, *FRAME)
            share = _area(box) / max(_area(full), 1e-9)
            if share > 0:
                out.append(Truth(f"{photo.path.name}#{k}", box, ann.label,
                                 share >= VISIBLE_SHARE))
        return out


def _area(box: Sequence[float]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def make_held(pool: PhotoPool, photos: int, seed: int) -> HeldClip:
    """`photos` photos of the pool (with a face >= MIN_FACE px once fitted), random views."""
    rng = np.random.default_rng([seed, 1])
    usable = []
    for item in pool.photos:
        size = header_size(item.path)
        if size is not None and max(a.short_side for a in item.annotations) \
                * fit_transform(size, FRAME)[0] >= MIN_FACE:
            usable.append((item, size))
    chosen = rng.choice(len(usable), size=min(photos, len(usable)), replace=False)
    shots = []
    for index in sorted(int(k) for k in chosen):
        item, size = usable[index]
        angle, pan = rng.uniform(0, 2 * math.pi), rng.uniform(0, MAX_PAN)
        dx, dy = pan * math.cos(angle) / 2, pan * math.sin(angle) / 2
        zooms = [1.0, 1.0 + rng.uniform(0, MAX_ZOOM)]
        rng.shuffle(zooms)
        shots.append(Shot(item, size, (zooms[0], -dx, -dy), (zooms[1], dx, dy)))
    rng.shuffle(shots)
    return HeldClip(shots, seed)


# ----------------------------------------------------------------------------- moving faces


class MovingClip(Clip):
    """Scenes of faces moving over backgrounds, separated by hard cuts (module docstring)."""

    def __init__(self, scenes: Sequence[Scene], seed: int, kind: str = "moving",
                 name: str | None = None) -> None:
        super().__init__(name or kind, seed)
        self.kind = kind
        self.scenes = tuple(scenes)
        self._starts = np.cumsum([0] + [s.length for s in self.scenes])
        self._background = _Cache(self._render_background, 1)
        self._pixels = _Cache(lambda key: sprite_pixels(*key), 32)

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def cuts(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self._starts[1:-1])

    def locate(self, i: int) -> tuple[Scene, int]:
        self._check(i)
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.scenes[k], i - int(self._starts[k])

    @staticmethod
    def _render_background(background: Background) -> np.ndarray:
        x0, y0, x1, y1 = background.crop
        crop = read_rgb(background.photo)[y0:y1, x0:x1]
        return cv2.resize(crop, FRAME, interpolation=cv2.INTER_LINEAR).astype(np.float32)

    def _placed(self, i: int) -> tuple[Scene, list[tuple[Mover, tuple[int, int]]]]:
        scene, t = self.locate(i)
        placed = [(m, corner) for m in sorted(scene.movers, key=lambda m: m.depth)
                  if (corner := m.place(t)) is not None]
        return scene, placed

    def frame(self, i: int) -> np.ndarray:
        scene, placed = self._placed(i)
        canvas = self._background(scene.background).copy()
        for mover, corner in placed:
            paste(canvas, self._pixels((mover.source, mover.sprite)),
                  sprite_alpha(*mover.sprite.size), corner)
        return add_noise(canvas, self.seed + 1000, i)

    def truth(self, i: int) -> list[Truth]:
        _, placed = self._placed(i)
        out = []
        for k, (mover, corner) in enumerate(placed):
            full = mover.box_at(corner)
            box = clip_box(full, *FRAME)
            if _area(box) <= 0:
                continue
            above = [(c, sprite_alpha(*m.sprite.size)) for m, c in placed[k + 1:]]
            out.append(Truth(mover.source.identity, box, mover.source.label,
                             visible_share(full, above) >= VISIBLE_SHARE))
        return out


def face_sources(pool: PhotoPool, label: str | None = None) -> list[FaceSource]:
    """The pool's faces of at least SOURCE_MIN_FACE px (only `label`'s, when given)."""
    return [FaceSource(item.path, k, ann.label, ann.box)
            for item in pool.photos for k, ann in enumerate(item.annotations)
            if ann.short_side >= SOURCE_MIN_FACE and (label is None or ann.label == label)]


def make_moving(pool: PhotoPool, scenes: int, frames: int, seed: int, kind: str = "moving",
                scripts: Sequence[str] = SCRIPTS) -> MovingClip:
    """`scenes` scenes of about `frames` frames, scripts in turn; `kind` "masked" pastes only
    with_mask faces. Each face appears in one scene only."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    faces = face_sources(pool, MASKED_LABEL if kind == "masked" else None)
    order = [int(k) for k in rng.permutation(len(faces))]
    backgrounds = [b for k in rng.permutation(len(pool.photos))
                   if (b := find_background(pool.photos[int(k)])) is not None][: max(scenes, 1)]
    if not faces or not backgrounds:
        raise ValueError(f"the {pool.split} photos give no faces or backgrounds for {kind}")
    built = []
    for n in range(scenes):
        script = scripts[n % len(scripts)]
        paths, length = scene_paths(script, rng, frames)
        movers = []
        for depth, path in enumerate(paths):
            if not order:
                break
            source = faces[order.pop()]
            width = min(path.width, (source.box[2] - source.box[0]) * 3.0)
            movers.append(Mover(source, sprite_of(source, max(width, 40.0)), path, depth))
        built.append(Scene(backgrounds[n % len(backgrounds)], length, tuple(movers), script))
    return MovingClip(built, seed, kind)


class DroppedClip(Clip):
    """Another clip with frames dropped at a jittered stride (DROP_STRIDES, seeded)."""

    kind = "dropped"

    def __init__(self, base: Clip, seed: int) -> None:
        super().__init__(f"{base.name} dropped", seed)
        rng = np.random.default_rng([seed, 3])
        kept, i = [], 0
        while i < len(base):
            kept.append(i)
            i += int(rng.choice(DROP_STRIDES, p=DROP_WEIGHTS))
        self.base, self.kept = base, tuple(kept)

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def cuts(self) -> tuple[int, ...]:
        return tuple(int(np.searchsorted(self.kept, c)) for c in self.base.cuts)

    def frame(self, i: int) -> np.ndarray:
        self._check(i)
        return self.base.frame(self.kept[i])

    def truth(self, i: int) -> list[Truth]:
        self._check(i)
        return self.base.truth(self.kept[i])

    @property
    def seconds(self) -> float:
        return len(self.base) / self.fps

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source_frames": len(self.base),
                "kept_share": round(len(self) / max(len(self.base), 1), 3)}


@dataclass(frozen=True)
class ClipPlan:
    """How much of each kind: held photos, moving / masked scenes of about `scene_frames`."""

    held_photos: int = 50
    moving_scenes: int = 6
    masked_scenes: int = 8  # 80 s at 15 FPS: one false alert is 45 per hour
    scene_frames: int = 150
    scripts: tuple[str, ...] = SCRIPTS


FULL_PLAN = ClipPlan()
QUICK_PLAN = ClipPlan(held_photos=3, moving_scenes=1, masked_scenes=1, scene_frames=45,
                      scripts=("cross",))


def build_clips(split: str, shared: Path, plan: ClipPlan = FULL_PLAN, seed: int = 0,
                kinds: Sequence[str] = KINDS) -> dict[str, Clip]:
    """The clips of one split (held-in or held-out: the same code, other photos), by kind."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown clip kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
    pool = photo_pool(split, shared)
    base = seed * 10 + SPLITS.index(split)
    clips: dict[str, Clip] = {}
    if "held" in kinds:
        clips["held"] = make_held(pool, plan.held_photos, base)
    if "moving" in kinds or "dropped" in kinds:
        moving = make_moving(pool, plan.moving_scenes, plan.scene_frames, base,
                             scripts=plan.scripts)
        if "moving" in kinds:
            clips["moving"] = moving
        if "dropped" in kinds:
            clips["dropped"] = DroppedClip(moving, base)
    if "masked" in kinds:
        clips["masked"] = make_moving(pool, plan.masked_scenes, plan.scene_frames, base,
                                      kind="masked", scripts=plan.scripts)
    return {k: clips[k] for k in KINDS if k in clips}

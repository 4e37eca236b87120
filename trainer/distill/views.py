"""A fixed set of views per face, rendered once, with the teacher's probabilities for each.

"Consistent" distillation (Beyer et al., CVPR 2022) wants teacher and student to see the same view.
On a CPU the teacher (the shipped ensemble, ~12-35 ms a view) cannot run inside the training loop,
so every face gets `views` views made from its photo up front, and the teacher reads each once:

- view 0 is the face as the device frames it (the box, `edge.core.imageops.crop_face` with its
margin);
- views 1.. re-frame the box (scale, aspect and shift jitter: detector boxes wander), mirror it,
  and change brightness and contrast;
- `mix` more views per face blend two of them (mixup: a random weight) with a face of the same
  fold from nearby photos, so cross-validation folds stay apart; the teacher reads the blend.

Each view is cropped from the photo once and resized to the teacher's input and to each student
size, so both see the same pixels at their own resolution. Work is done in chunks of faces, each
sealed on disk as it finishes (`views-<key>/`): a killed run loses one chunk at most, and a rerun
(another student setting, another fold) reads everything back. The teacher's outputs of all views
are also written as one `teacher-<sha>.npz` (probabilities + which face and view each row is).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.console import task
from edge.core.fileio import atomic_path, sha256_file
from edge.core.imageops import crop_face, resize_to_input
from trainer.data.images import decode_image
from trainer.distill.faces import FaceTable
from trainer.fit.features import seal, verified

#: Bump when rendering changes (jitter maths, resizing, mixing).
VIEWS_VERSION = 1
#: Most views per face (their parameters are drawn for this many, whatever `views` is).
MAX_VIEWS = 32


@dataclass(frozen=True)
class ViewSpec:
    """How many views per face and how far they stray from the device's framing."""

    views: int = 6  # per face; view 0 is the device's framing
    mix: int = 0  # extra mixup views per face
    scale: float = 0.15  # log box-size jitter (uniform +-)
    aspect: float = 0.10  # log aspect jitter
    shift: float = 0.08  # centre shift, fraction of the box side
    brightness: float = 25.0  # grey levels, uniform +-
    contrast: float = 0.25  # factor 1 +- this
    seed: int = 0
    chunk: int = 128  # faces per sealed chunk


@dataclass(frozen=True)
class ViewPlan:
    """Which face and view each rendered row is; rows are chunk by chunk (base views of the
    chunk's faces face-major, then its mixed views)."""

    face: np.ndarray  # (N,) face row index
    k: np.ndarray  # (N,) view index of `face` (0: the device's framing)
    partner: np.ndarray  # (N,) the face blended in, -1 for none
    partner_k: np.ndarray  # (N,) its view index
    lam: np.ndarray  # (N,) weight of `face` in the blend (1: no blend)
    chunk: np.ndarray  # (N,) chunk number

    def __len__(self) -> int:
        return len(self.face)


def views_key(table: FaceTable, spec: ViewSpec) -> str:
    """Cache key of the rendered views: the face table's key and the view settings."""
    text = json.dumps({"v": VIEWS_VERSION, "faces": table.info.get("key", ""),
                       "n": len(table), **asdict(spec)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _jitter(rng: np.random.Generator, n: int, spec: ViewSpec) -> np.ndarray:
    """(n, 7) view parameters: log scale, log aspect, dx, dy, mirror, brightness, contrast."""
    u = rng.uniform(-1.0, 1.0, size=(n, 7))
    return np.stack([u[:, 0] * spec.scale, u[:, 1] * spec.aspect, u[:, 2] * spec.shift,
                     u[:, 3] * spec.shift, (u[:, 4] > 0).astype(np.float64),
                     u[:, 5] * spec.brightness, 1.0 + u[:, 6] * spec.contrast], axis=1)


def view_params(spec: ViewSpec, n_faces: int) -> np.ndarray:
    """(n_faces, views, 7) parameters of every base view (view 0: identity), seeded. Drawn for
    `MAX_VIEWS` per face, so fewer views are the first ones of more."""
    if spec.views > MAX_VIEWS:
        raise ValueError(f"at most {MAX_VIEWS} views per face, not {spec.views}")
    params = _jitter(np.random.default_rng([spec.seed, 1]), n_faces * MAX_VIEWS, spec)
    params = params.reshape(n_faces, MAX_VIEWS, 7)[:, :spec.views].copy()
    params[:, 0] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    return params


def make_plan(table: FaceTable, spec: ViewSpec) -> ViewPlan:
    """Every view row: base views of each chunk, then its mixed views (partners of one fold)."""
    rng = np.random.default_rng([spec.seed, 2])
    folds = table.array("fold")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ViewPlan.__dataclass_fields__}
    v = spec.views
    for c, start in enumerate(range(0, len(table), spec.chunk)):
        faces = np.arange(start, min(len(table), start + spec.chunk))
        parts = [(np.repeat(faces, v), np.tile(np.arange(v), len(faces)),
                  np.full(len(faces) * v, -1), np.zeros(len(faces) * v, np.int64),
                  np.ones(len(faces) * v))]
        if spec.mix:
            own = np.repeat(faces, spec.mix)
            partner = np.array([rng.choice(faces[folds[faces] == folds[i]]) for i in own])
            parts.append((own, rng.integers(0, v, len(own)), partner,
                          rng.integers(0, v, len(own)), rng.uniform(0.0, 1.0, len(own))))
        for face, k, p, pk, lam in parts:
            for name, arr in zip(("face", "k", "partner", "partner_k", "lam"),
                                 (face, k, p, pk, lam), strict=True):
                cols[name].append(arr)
            cols["chunk"].append(np.full(len(face), c))
    return ViewPlan(**{k: np.concatenate(a) if a else np.zeros(0) for k, a in cols.items()})


def jittered_box(box: list[float], p: np.ndarray) -> tuple[float, float, float, float]:
    """`box` re-framed by one view's scale, aspect and shift."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    scale, aspect = np.exp(p[0]), np.exp(p[1])
    nw, nh = w * scale * np.sqrt(aspect), h * scale / np.sqrt(aspect)
    cx, cy = (x1 + x2) / 2 + p[2] * w, (y1 + y2) / 2 + p[3] * h
    return (float(cx - nw / 2), float(cy - nh / 2), float(cx + nw / 2), float(cy + nh / 2))


def render(photo: np.ndarray, box: list[float], p: np.ndarray,
           sizes: tuple[int, ...]) -> list[np.ndarray]:
    """One view of a face at each square size: crop with the device's margin, resize, mirror,
    brightness and contrast (around the crop's mean grey level)."""
    try:
        crop = crop_face(photo, jittered_box(box, p))
    except ValueError:  # re-framed off the photo: the box as it is
        crop = crop_face(photo, tuple(box))
    mean = float(crop.mean())
    out = []
    for size in sizes:
        img = resize_to_input(crop, (size, size))
        if p[4] > 0.5:
            img = img[:, ::-1]
        if p[5] != 0.0 or p[6] != 1.0:
            img = np.clip((img.astype(np.float32) - mean) * p[6] + mean + p[5], 0, 255)
            img = img.round()
        out.append(np.ascontiguousarray(img, dtype=np.uint8))
    return out


def render_chunk(table: FaceTable, plan: ViewPlan, chunk: int, params: np.ndarray,
                 sizes: tuple[int, ...]) -> list[np.ndarray]:
    """The rows of one chunk at each size: (rows, size, size, 3) uint8 per size."""
    rows = np.nonzero(plan.chunk == chunk)[0]
    faces = np.unique(plan.face[rows])
    base = {int(f): [np.zeros((params.shape[1], s, s, 3), np.uint8) for s in sizes]
            for f in faces}
    photo_key, photo = None, None
    for f in faces.tolist():
        row = table.rows[f]
        key = (row["src"], row["path"])
        if key != photo_key:
            photo_key, photo = key, decode_image(table.photo(row)).pixels
        for k in range(params.shape[1]):
            for target, img in zip(base[f], render(photo, row["box"], params[f, k], sizes),
                                   strict=True):
                target[k] = img
    out = []
    for si in range(len(sizes)):
        imgs = []
        for r in rows.tolist():
            own = base[int(plan.face[r])][si][plan.k[r]]
            if plan.partner[r] >= 0:
                other = base[int(plan.partner[r])][si][plan.partner_k[r]]
                lam = plan.lam[r]
                own = np.round(lam * own + (1.0 - lam) * other.astype(np.float64))
            imgs.append(own.astype(np.uint8))
        out.append(np.stack(imgs))
    return out


def _save(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)
        digest = sha256_file(tmp)
    seal(path, digest)


def _load(path: Path) -> np.ndarray | None:
    if not path.is_file() or not verified(path):
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


class ViewStore:
    """The rendered views of one face table and view spec, and the teacher's outputs of them."""

    def __init__(self, table: FaceTable, spec: ViewSpec, cache_dir: Path,
                 teacher: Path) -> None:
        self.table, self.spec = table, spec
        self.plan = make_plan(table, spec)
        self.params = view_params(spec, len(table))
        self.dir = Path(cache_dir) / f"views-{views_key(table, spec)}"
        self.teacher_path = Path(teacher)
        self.teacher_sha = sha256_file(teacher)[:16]
        self.chunks = int(self.plan.chunk.max()) + 1 if len(self.plan) else 0
        self._teacher: np.ndarray | None = None

    def _file(self, what: str, chunk: int) -> Path:
        return self.dir / f"{what}-c{chunk:05d}.npy"

    def prepare(self, sizes: tuple[int, ...], progress: bool = True) -> None:
        """Render every missing chunk at `sizes` and run the teacher on what it has not read."""
        from edge.inference.classifier import ClassifierOptions, MaskClassifier

        teacher = None
        tname = f"teacher-{self.teacher_sha}"
        with task("views: render + teacher", self.chunks, progress) as advance:
            for c in range(self.chunks):
                advance(1)
                need_t = not _load_ok(self._file(tname, c))
                todo = [s for s in sizes if not _load_ok(self._file(f"s{s}", c))]
                if not need_t and not todo:
                    continue
                if need_t and teacher is None:
                    teacher = MaskClassifier(ClassifierOptions(self.teacher_path))
                t_size = (teacher.input_size[0],) if need_t and teacher is not None else ()
                imgs = render_chunk(self.table, self.plan, c, self.params, (*t_size, *todo))
                if need_t and teacher is not None:
                    _save(self._file(tname, c), _predict(teacher, imgs.pop(0)))
                for s, arr in zip(todo, imgs, strict=True):
                    _save(self._file(f"s{s}", c), arr)
        self._write_teacher_npz()

    def _write_teacher_npz(self) -> None:
        path = self.dir / f"teacher-{self.teacher_sha}.npz"
        if path.is_file():
            return
        probs = self.teacher_probs()
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, probs=probs, face=self.plan.face, k=self.plan.k,
                     partner=self.plan.partner, partner_k=self.plan.partner_k,
                     lam=self.plan.lam, teacher=str(self.teacher_path))

    def teacher_probs(self) -> np.ndarray:
        """(N, C) teacher probabilities of every view row (after `prepare`; read once)."""
        if self._teacher is None:
            self._teacher = np.concatenate([self._need(f"teacher-{self.teacher_sha}", c)
                                            for c in range(self.chunks)])
        return self._teacher

    def images(self, size: int, rows: np.ndarray | None = None) -> np.ndarray:
        """(N, size, size, 3) uint8 view images (after `prepare` at `size`), all or `rows`."""
        if rows is None:
            return np.concatenate([self._need(f"s{size}", c) for c in range(self.chunks)])
        rows = np.asarray(rows)
        out = np.zeros((len(rows), size, size, 3), np.uint8)
        starts = np.searchsorted(self.plan.chunk, np.arange(self.chunks))
        for c in np.unique(self.plan.chunk[rows]).tolist():
            pick = self.plan.chunk[rows] == c
            out[pick] = self._need(f"s{size}", c)[rows[pick] - starts[c]]
        return out

    def _need(self, what: str, chunk: int) -> np.ndarray:
        arr = _load(self._file(what, chunk))
        if arr is None:
            raise RuntimeError(f"views chunk {what} {chunk} missing: call prepare() first")
        return arr


def _load_ok(path: Path) -> bool:
    """Whether a sealed chunk file is there and intact."""
    return path.is_file() and verified(path)


def _predict(teacher: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([teacher.predict(images[i:i + batch])
                           for i in range(0, len(images), batch)]).astype(np.float32)

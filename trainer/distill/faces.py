"""The faces a distilled student learns from: annotated and detector boxes, and close-ups.

At run time the classifier sees crops framed by the shipped detector, so the student trains (and is
cross-validated) on both framings of the same photos:

- `annotation`: every VOC face box of at least `min_face` pixels, with its label;
- `detector`: the shipped detector (`edge.detection.detectors`, YuNet as `edge run` builds it) over
the same
  photos; a detection matched to an annotation at IoU >= 0.5 (`edge.inference.evaluate.match`, as
  `edge evaluate` counts faces) carries that face's label, the others are unlabelled faces;
- `closeup`: one face per close-up image of a folder data set (face-mask-2c), unlabelled: the
  detector's best box, or the whole image when it finds none. The folder name is kept as `hint`
  (measured against the teacher, not trained on).

Photos are grouped by near-duplicate (`trainer.data.dedup`, whole-photo thumbnails; all faces of a
photo share its group) and the groups dealt into `folds` stratified folds, so cross-validation never
puts one photo, or two copies of one picture, on both sides. The table is cached as JSON under a key
of everything it depends on (file names and sizes, lists, detector file, settings): the detector
runs once per data set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.console import task
from edge.core.fileio import sha256_file, write_text_atomic
from edge.core.labelmap import LabelMap
from edge.core.voc import AnnotatedImage, load_voc
from trainer.data.dedup import group_samples
from trainer.data.images import BadImage, decode_image
from trainer.data.pixels import thumbnail
from trainer.errors import UserError

#: Bump when anything that changes the table changes (matching, grouping, folds).
FACES_VERSION = 1
KINDS = ("annotation", "detector", "closeup")
#: The annotation names of face-mask-ilc-dev's origin mapped onto face-mask-voc's.
LABEL_MAP = ("with_incorrect_mask=mask_weared_incorrect", "no_mask=without_mask")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class FaceSpec:
    """Where the faces come from and how they are found."""

    voc: tuple[Path, ...]  # VOC folders: annotated photos
    closeups: tuple[Path, ...] = ()  # class-folder data sets of close-ups (unlabelled)
    exclude: frozenset[str] = frozenset()  # photo file names never used (held-out lists)
    min_face: int = 16
    folds: int = 5
    seed: int = 0
    detector: str = "yunet"


@dataclass
class FaceTable:
    """One row per face (`rows`: src, path, box, label, kind, score, group, fold, hint)."""

    sources: list[dict[str, str]]  # name, root, format ("voc" | "folders")
    rows: list[dict[str, Any]]
    labels: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def array(self, key: str) -> np.ndarray:
        """One column as an array (`label`: index into `labels`, -1 for unlabelled faces)."""
        if key == "label":
            index = {x: i for i, x in enumerate(self.labels)}
            return np.array([index.get(r["label"], -1) if r["label"] else -1
                             for r in self.rows], np.int64)
        if key == "kind":
            return np.array([KINDS.index(r["kind"]) for r in self.rows], np.int64)
        if key == "short_side":
            return np.array([min(r["box"][2] - r["box"][0], r["box"][3] - r["box"][1])
                             for r in self.rows], np.float64)
        return np.array([r[key] for r in self.rows])

    def photo(self, row: dict[str, Any]) -> Path:
        return Path(self.sources[row["src"]]["root"]) / row["path"]

    def to_json(self) -> str:
        return json.dumps({"version": FACES_VERSION, "sources": self.sources,
                           "labels": list(self.labels), "info": self.info, "rows": self.rows})

    @staticmethod
    def from_json(text: str) -> FaceTable:
        data = json.loads(text)
        return FaceTable(data["sources"], data["rows"], tuple(data["labels"]), data["info"])


def _files_fingerprint(spec: FaceSpec) -> str:
    """File names and sizes of every source (cheap; a changed photo changes its size or name)."""
    h = hashlib.sha256()
    for root in (*spec.voc, *spec.closeups):
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            h.update(f"{path.relative_to(root)}:{path.stat().st_size};".encode())
    return h.hexdigest()


def table_key(spec: FaceSpec, detector_id: str) -> str:
    """Cache key of the face table: data, lists, detector and settings."""
    text = json.dumps({"v": FACES_VERSION, "voc": [str(p) for p in spec.voc],
                       "closeups": [str(p) for p in spec.closeups],
                       "exclude": sorted(spec.exclude), "min_face": spec.min_face,
                       "folds": spec.folds, "seed": spec.seed, "detector": detector_id,
                       "files": _files_fingerprint(spec)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _detector_id(name: str) -> tuple[Any, str]:
    """The shipped detector as `edge run` builds it, and what identifies its output."""
    from edge.core.assets import shipped_yunet_calibration, shipped_yunet_model
    from edge.detection.detectors import DetectorOptions, create_detector

    detector = create_detector(DetectorOptions(name=name))
    if not name.startswith("yunet"):
        return detector, name
    stock = name == "yunet-stock"
    files = (shipped_yunet_model(stock), shipped_yunet_calibration(stock))
    return detector, ":".join([name, *(sha256_file(f)[:16] for f in files)])


def _voc_rows(item: AnnotatedImage, src: int, rel: str, found: list[Any],
              min_face: int) -> list[dict[str, Any]]:
    """Annotation rows and detector rows (matched ones labelled) of one VOC photo."""
    from edge.inference.evaluate import match

    rows = [{"src": src, "path": rel, "box": [round(float(v), 2) for v in a.box],
             "label": a.label, "kind": "annotation", "score": 1.0}
            for a in item.annotations if a.short_side >= min_face]
    truth = np.array([a.box for a in item.annotations], np.float64).reshape(-1, 4)
    boxes = np.array([f.box for f in found], np.float64).reshape(-1, 4)
    matched = match(truth, boxes, np.array([f.score for f in found]))
    label_of = {int(d): item.annotations[g].label for g, d in enumerate(matched) if d >= 0}
    for d, face in enumerate(found):
        x1, y1, x2, y2 = face.box
        if min(x2 - x1, y2 - y1) >= min_face:
            rows.append({"src": src, "path": rel, "box": [round(float(v), 2) for v in face.box],
                         "label": label_of.get(d), "kind": "detector",
                         "score": round(float(face.score), 4)})
    return rows


def _closeup_row(src: int, rel: str, hint: str, rgb: np.ndarray, found: list[Any],
                 min_face: int) -> dict[str, Any]:
    """One close-up's face: the detector's best box if it is big enough, else the whole image."""
    h, w = rgb.shape[:2]
    box, score = [0.0, 0.0, float(w), float(h)], 0.0
    if found:
        best = max(found, key=lambda f: f.score)
        x1, y1, x2, y2 = best.box
        if min(x2 - x1, y2 - y1) >= min_face:
            box, score = [round(float(v), 2) for v in best.box], round(float(best.score), 4)
    return {"src": src, "path": rel, "box": box, "label": None, "kind": "closeup",
            "score": score, "hint": hint}


def _photos(spec: FaceSpec, label_map: LabelMap) -> tuple[list[dict[str, str]], list[Any]]:
    """The sources and every photo to read: (src, relative path, VOC item or class hint)."""
    sources, photos = [], []
    for root in spec.voc:
        src = len(sources)
        sources.append({"name": Path(root).name, "root": str(Path(root).resolve()),
                        "format": "voc"})
        for item in load_voc(root, label_map=label_map, exclude=set(spec.exclude)):
            photos.append((src, item.path.relative_to(root).as_posix(), item))
    for root in spec.closeups:
        src = len(sources)
        sources.append({"name": Path(root).name, "root": str(Path(root).resolve()),
                        "format": "folders"})
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()
                           and p.suffix.lower() in IMAGE_SUFFIXES and p.name not in spec.exclude):
            rel = path.relative_to(root)
            photos.append((src, rel.as_posix(), rel.parts[0]))
    return sources, photos


def _read_faces(spec: FaceSpec, sources: list[dict[str, str]], photos: list[Any],
                detector: Any, progress: bool) -> tuple[list[dict[str, Any]], list[np.ndarray],
                                                        int]:
    """Detect faces on every photo; the rows, one thumbnail per row, unreadable photo count."""
    rows: list[dict[str, Any]] = []
    thumbs: list[np.ndarray] = []
    unreadable = 0
    with task("faces: detector over the photos", len(photos), progress) as advance:
        for src, rel, what in photos:
            advance(1)
            try:
                rgb = decode_image(Path(sources[src]["root"]) / rel).pixels
            except BadImage:
                unreadable += 1
                continue
            found = detector.detect(rgb)
            if isinstance(what, AnnotatedImage):
                new = _voc_rows(what, src, rel, found, spec.min_face)
            else:
                new = [_closeup_row(src, rel, what, rgb, found, spec.min_face)]
            if new:
                thumb = thumbnail(rgb)
                rows += new
                thumbs += [thumb] * len(new)
    return rows, thumbs, unreadable


def group_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold (0..k-1) per sample: every group in one fold, each class (unlabelled: -1, a class
    of its own) spread about evenly. Groups holding the rarest classes are placed first, each
    into the fold that most lacks the classes it holds."""
    if k < 2:
        raise UserError(f"need at least 2 folds, got {k}")
    classes, cls = np.unique(labels, return_inverse=True)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    per_group = np.zeros((n_groups, len(classes)))
    np.add.at(per_group, (groups, cls), 1)
    totals = per_group.sum(axis=0)
    target = totals / k
    current = np.zeros((k, len(classes)))
    order = np.random.default_rng(seed).permutation(n_groups)
    rarity = np.array([totals[per_group[g] > 0].min() for g in range(n_groups)])
    order = order[np.argsort(rarity[order], kind="stable")]
    fold_of = np.zeros(n_groups, np.int64)
    for g in order:
        present = per_group[g] > 0
        need = ((target[present] - current[:, present]) / np.maximum(target[present], 1e-9))
        f = int(np.argmax(need.sum(axis=1)))
        fold_of[g] = f
        current[f] += per_group[g]
    return fold_of[groups]


def build_table(spec: FaceSpec, progress: bool = True) -> FaceTable:
    """Read every photo, detect, match, group and fold (see the module docstring)."""
    label_map = LabelMap.parse(list(LABEL_MAP))
    detector, detector_id = _detector_id(spec.detector)
    sources, photos = _photos(spec, label_map)
    rows, thumbs, unreadable = _read_faces(spec, sources, photos, detector, progress)
    if not any(r["label"] for r in rows):
        raise UserError("no labelled faces found in the VOC sources (after the exclude lists)")
    labels = tuple(sorted({r["label"] for r in rows if r["label"]}))
    photo_ids = [f"{r['src']}:{r['path']}" for r in rows]
    grouping = group_samples(np.stack(thumbs), photo_ids)
    table = FaceTable(sources, rows, labels)
    for row, g in zip(rows, grouping.groups.tolist(), strict=True):
        row["group"] = int(g)
    folds = group_folds(table.array("label"), grouping.groups, spec.folds, spec.seed)
    for row, f in zip(rows, folds.tolist(), strict=True):
        row["fold"] = int(f)
    table.info = {"detector": detector_id, "min_face": spec.min_face, "folds": spec.folds,
                  "seed": spec.seed, "photos": len(photos), "unreadable_photos": unreadable,
                  "excluded_names": len(spec.exclude), "label_map": list(LABEL_MAP),
                  "near_duplicate_pairs": grouping.near_duplicate_pairs,
                  "merged_groups": grouping.merged_groups}
    return table


def load_table(spec: FaceSpec, cache_dir: Path, progress: bool = True) -> FaceTable:
    """`build_table`, cached in `cache_dir/faces-<key>.json` (rebuilt when anything changed)."""
    _, detector_id = _detector_id(spec.detector)
    path = Path(cache_dir) / f"faces-{table_key(spec, detector_id)}.json"
    if path.is_file():
        try:
            return FaceTable.from_json(path.read_text())
        except (ValueError, KeyError):
            pass  # a damaged cache file is rebuilt
    table = build_table(spec, progress)
    table.info["key"] = path.stem
    write_text_atomic(path, table.to_json())
    return table


def table_counts(table: FaceTable) -> dict[str, Any]:
    """Faces per kind and label (None: unlabelled), and faces per fold."""
    counts: dict[str, dict[str, int]] = {}
    for r in table.rows:
        per = counts.setdefault(r["kind"], {})
        key = r["label"] or "unlabelled"
        per[key] = per.get(key, 0) + 1
    folds = np.bincount(table.array("fold"), minlength=table.info.get("folds", 1))
    return {"faces": len(table), "by_kind": counts, "per_fold": folds.tolist(),
            "groups": int(table.array("group").max()) + 1 if len(table) else 0}

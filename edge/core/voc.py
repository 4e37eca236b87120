"""The one Pascal VOC reader: `DATA/annotations/*.xml` with their `DATA/images/*`.

Used by the trainer (every face box is a sample), `edge evaluate` (whole photos with their boxes)
and the benchmarks, so all of them count the same faces in the same folder. Each `<object>` gives
an `Annotation` (class name after the label map, box in photo pixels); a bad box, an object
without a name or an annotation without its image is reported as a `VocProblem`, never guessed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from edge.core.boxes import Box
from edge.core.labelmap import LabelMap


class DatasetError(ValueError):
    """The folder is not a VOC-style dataset (one-line message)."""


@dataclass(frozen=True)
class Annotation:
    label: str
    box: Box

    @property
    def short_side(self) -> float:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])


@dataclass(frozen=True)
class AnnotatedImage:
    path: Path
    annotations: tuple[Annotation, ...]


@dataclass(frozen=True)
class VocProblem:
    """An annotation file or object that was not used, and why (path relative to the root)."""

    where: str
    reason: str


@dataclass
class VocFolder:
    root: Path
    images: list[AnnotatedImage]
    problems: list[VocProblem] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # faces left out by the label map


def is_voc(root: Path) -> bool:
    return (root / "annotations").is_dir() and (root / "images").is_dir()


def _box(obj: ET.Element) -> Box:
    bnd = obj.find("bndbox")
    if bnd is None:
        raise ValueError("object without bndbox")
    coords = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = bnd.findtext(key)
        if text is None or not text.strip():
            raise ValueError(f"bndbox without {key}")
        coords.append(float(text))
    x1, y1, x2, y2 = coords
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty box {coords}")
    return x1, y1, x2, y2


def _image_of(root: Path, xml_path: Path, filename: str | None) -> Path | None:
    images = root / "images"
    if filename:
        candidate = images / Path(filename).name
        if candidate.is_file():
            return candidate
    matches = sorted(p for p in images.glob(xml_path.stem + ".*") if p.is_file())
    return matches[0] if matches else None


def _read_one(root: Path, xml_path: Path, label_map: LabelMap,
              folder: VocFolder) -> AnnotatedImage | None:
    rel = xml_path.relative_to(root).as_posix()
    try:
        tree = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        folder.problems.append(VocProblem(rel, f"unreadable annotation: {str(exc)[:100]}"))
        return None
    image = _image_of(root, xml_path, tree.findtext("filename"))
    if image is None:
        folder.problems.append(VocProblem(rel, "annotation without an image in images/"))
        return None
    annotations = []
    for k, obj in enumerate(tree.iter("object")):
        raw = (obj.findtext("name") or "").strip()
        try:
            box = _box(obj)
        except ValueError as exc:
            folder.problems.append(VocProblem(f"{rel}#{k}", f"bad face box: {exc}"))
            continue
        if not raw:
            folder.problems.append(VocProblem(f"{rel}#{k}", "face box without a class name"))
            continue
        name = label_map(raw)
        if name is None:
            folder.dropped[raw] = folder.dropped.get(raw, 0) + 1
            continue
        annotations.append(Annotation(name, box))
    return AnnotatedImage(image, tuple(annotations))


def read_voc(root: str | Path, label_map: LabelMap | None = None, limit: int | None = None,
             only: set[str] | None = None, exclude: set[str] | None = None) -> VocFolder:
    """Every annotated photo under `root`, sorted by annotation file name.

    `only` / `exclude`: image file names to keep / leave out (a held-out list).
    """
    root = Path(root)
    if not is_voc(root):
        raise DatasetError(f"{root} is not a VOC folder (needs annotations/ and images/)")
    files = sorted((root / "annotations").glob("*.xml"))
    if not files:
        raise DatasetError(f"no annotations in {root / 'annotations'}")
    folder = VocFolder(root, [])
    for xml_path in files:
        item = _read_one(root, xml_path, label_map or LabelMap(), folder)
        if item is None or (only is not None and item.path.name not in only):
            continue
        if exclude and item.path.name in exclude:
            continue
        folder.images.append(item)
        if limit and len(folder.images) >= limit:
            break
    return folder


def load_voc(root: str | Path, limit: int | None = None, label_map: LabelMap | None = None,
             only: set[str] | None = None, exclude: set[str] | None = None
             ) -> list[AnnotatedImage]:
    """The annotated photos of a VOC folder (see `read_voc`)."""
    return read_voc(root, label_map, limit, only, exclude).images


def read_name_list(path: str | Path) -> set[str]:
    """File names, one a line (blank lines and `#` comments ignored): a held-out photo list."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read photo list {path}: {exc.strerror or exc}") from None
    return {Path(s).name for line in lines if (s := line.split("#", 1)[0].strip())}

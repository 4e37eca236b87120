"""Find the samples of a data set in any of the three accepted formats.

* folders: ``DATA/<class>/**/<image>`` -- one folder per class; every non-hidden file is a
  candidate (files that turn out not to be images are skipped later, with a reason);
* arrays:  ``DATA/dataset.npy`` (N, H, W, 3) + ``DATA/labels.npy`` (N,) of ints or strings;
* voc:     ``DATA/images/*`` + ``DATA/annotations/*.xml`` (Pascal VOC); every face box is a sample,
  boxes smaller than ``min_face`` pixels are dropped (counted).

Several sources (`discover_many`) make one "mixed" data set: each sample records its source
(`Sample.origin`, an index into `Dataset.sources`). A label map applies to every source.

Labels come from the data and are sorted (ints numerically, then written as strings); the index of a
label is its position in that order. Discovery reads no pixels: decoding is `trainer.data.pixels`'
job. `usable_images` reads the first bytes of each class-folder file (`looks_like_image`), so
`trainer fit` can refuse data that cannot make a model before TensorFlow loads (trainer/config.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge.core.labelmap import LabelMap
from edge.core.voc import is_voc, read_voc
from trainer.errors import UserError

FORMATS = ("folders", "arrays", "voc")
ARRAY_IMAGES, ARRAY_LABELS = "dataset.npy", "labels.npy"
#: Default smallest face box side (pixels) kept from VOC annotations.
DEFAULT_MIN_FACE = 16
#: How the image formats `trainer.data.images` decodes begin (JPEG, PNG, GIF, BMP, TIFF; WEBP is
#: RIFF with WEBP at byte 8): a class-folder file that starts otherwise will be skipped.
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM",
                    b"II*\x00", b"MM\x00*")


@dataclass(frozen=True)
class Sample:
    """One labelled image: a file (folders), a file + face box (voc) or an array row (arrays)."""

    path: str  # relative to the data root (arrays: the .npy file name)
    label: str
    box: tuple[float, float, float, float] | None = None  # voc: (x1, y1, x2, y2) in photo pixels
    index: int | None = None  # arrays: row in dataset.npy
    origin: int | None = None  # multi-source runs: index of the data source (None: the only one)

    @property
    def source(self) -> str:
        """What the pixels come from: faces of one photo share it (and so share a split group)."""
        where = self.path if self.index is None else f"{self.path}[{self.index}]"
        return where if self.origin is None else f"{self.origin}:{where}"


@dataclass(frozen=True)
class Source:
    """One data source of a (possibly multi-source) data set: its root, format and short name."""

    root: Path
    format: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"root": str(self.root), "format": self.format, "name": self.name}


@dataclass(frozen=True)
class Skipped:
    """A file or annotation that was not used, and why."""

    path: str
    reason: str


@dataclass
class Dataset:
    """What was found under a data root (before decoding)."""

    root: Path
    format: str
    labels: tuple[str, ...]
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)
    sources: tuple[Source, ...] = ()  # several sources: samples carry `origin`; else empty

    def all_sources(self) -> tuple[Source, ...]:
        """The data sources (one for a single-source data set)."""
        return self.sources or (Source(self.root, self.format, self.root.name),)

    def counts(self) -> dict[str, int]:
        c = Counter(s.label for s in self.samples)
        return {label: c.get(label, 0) for label in self.labels}


@dataclass(frozen=True)
class Usable:
    """What of a data set looks usable before decoding (`usable_images`)."""

    counts: dict[str, int]  # samples per class whose file looks like an image
    files: int  # class-folder files looked at (arrays and VOC samples are not counted)
    not_images: list[str]  # of those, the ones that do not look like an image

    @classmethod
    def decoded(cls, labels: tuple[str, ...], kept: list[Sample], tried: int,
                skipped: list[Skipped]) -> Usable:
        """The same for decoded samples: `tried` decoded, `kept` usable, `skipped` not."""
        found = Counter(s.label for s in kept)
        return cls({label: found.get(label, 0) for label in labels}, tried,
                   [s.path for s in skipped])


def looks_like_image(path: Path) -> bool:
    """Whether the file starts like an image `trainer.data.images` decodes (reads 12 bytes)."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head.startswith(IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def usable_images(dataset: Dataset) -> Usable:
    """Per class, the samples that look usable: every array row and VOC face, and the
    class-folder files that start like an image (the others will be skipped when decoding)."""
    sources = dataset.all_sources()
    counts = dict.fromkeys(dataset.labels, 0)
    files, not_images = 0, []
    for s in dataset.samples:
        source = sources[s.origin or 0]
        if source.format == "folders":
            files += 1
            if not looks_like_image(source.root / s.path):
                not_images.append(s.path if s.origin is None else f"{source.name}/{s.path}")
                continue
        counts[s.label] += 1
    return Usable(counts, files, not_images)


def sorted_labels(values: list[str] | list[int]) -> tuple[str, ...]:
    """Class names in index order: ints numerically, strings alphabetically."""
    unique = set(values)
    if all(isinstance(v, (int, np.integer)) for v in unique):
        return tuple(str(v) for v in sorted(int(v) for v in unique))
    return tuple(sorted(str(v) for v in unique))


def detect_format(root: Path) -> str:
    """'arrays', 'voc' or 'folders' for a data root (UserError if it is none of them)."""
    if not root.exists():
        raise UserError(f"data not found: {root}")
    if not root.is_dir():
        raise UserError(f"data must be a folder (class folders, dataset.npy+labels.npy or "
                        f"VOC images/+annotations/), got a file: {root}")
    if (root / ARRAY_IMAGES).is_file() or (root / ARRAY_LABELS).is_file():
        return "arrays"
    if is_voc(root):
        return "voc"
    return "folders"


def discover(root: str | Path, min_face: int = DEFAULT_MIN_FACE,
             label_map: LabelMap | None = None, exclude: set[str] | None = None,
             only: set[str] | None = None) -> Dataset:
    """Find the samples under `root` (any format). UserError when there is nothing to use.

    `label_map` renames or drops classes (folder names, array labels, VOC names alike);
    `exclude` / `only` are image file names whose samples are left out / the only ones kept.
    """
    root = Path(root).expanduser()
    fmt = detect_format(root)
    if fmt == "arrays":
        dataset = _discover_arrays(root)
    elif fmt == "voc":
        dataset = _discover_voc(root, min_face, label_map)
    else:
        dataset = _discover_folders(root)
    if fmt != "voc" and label_map:
        _apply_label_map(dataset, label_map)
    if exclude is not None or only is not None:
        _filter_names(dataset, exclude or set(), only)
    if not dataset.samples:
        left_out = (dataset.notes.get("left_out_by_label_map")
                    or dataset.notes.get("faces_left_out_by_label_map"))
        if left_out:
            raise UserError(f"--label-map leaves no class in {root} (it left out "
                            f"{', '.join(map(str, left_out))})")
        raise UserError(f"no images found in {root} ({fmt} format)")
    return dataset


def _apply_label_map(dataset: Dataset, label_map: LabelMap) -> None:
    """Rename / drop the classes of a folders or arrays data set (VOC maps while reading)."""
    kept: list[Sample] = []
    dropped: Counter[str] = Counter()
    for s in dataset.samples:
        name = label_map(s.label)
        if name is None:
            dropped[s.label] += 1
        else:
            kept.append(s if name == s.label else replace(s, label=name))
    dataset.samples = kept
    dataset.labels = sorted_labels([s.label for s in kept]) if kept else ()
    if dropped:
        dataset.notes["left_out_by_label_map"] = dict(sorted(dropped.items()))


def _filter_names(dataset: Dataset, exclude: set[str], only: set[str] | None) -> None:
    """Keep samples whose image file name is in `only` (if given) and not in `exclude`."""
    before = len(dataset.samples)
    dataset.samples = [s for s in dataset.samples if Path(s.path).name not in exclude
                       and (only is None or Path(s.path).name in only)]
    dataset.labels = tuple(x for x in dataset.labels if any(s.label == x for s in dataset.samples))
    dataset.notes["left_out_by_name_list"] = before - len(dataset.samples)


def _source_names(roots: list[Path]) -> list[str]:
    """Short unique names for the sources: folder names, numbered when they clash."""
    names = [r.name or str(r) for r in roots]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


def discover_many(roots: list[str | Path], min_face: int = DEFAULT_MIN_FACE,
                  label_map: LabelMap | None = None, exclude: set[str] | None = None,
                  only: set[str] | None = None) -> Dataset:
    """One data set from several sources (any formats, mixed); one source gives `discover`'s."""
    if len(roots) == 1:
        return discover(roots[0], min_face, label_map, exclude, only)
    parts = [discover(r, min_face, label_map, exclude, only) for r in roots]
    resolved = [p.root.resolve() for p in parts]
    if len(set(resolved)) < len(resolved):
        raise UserError("the same data folder is given twice")
    names = _source_names(resolved)
    sources = tuple(Source(r, p.format, n) for r, p, n in zip(resolved, parts, names, strict=True))
    samples = [replace(s, origin=k) for k, p in enumerate(parts) for s in p.samples]
    skipped = [Skipped(f"{names[k]}/{s.path}", s.reason) for k, p in enumerate(parts)
               for s in p.skipped]
    notes: dict[str, object] = {"sources": {n: p.notes for n, p in zip(names, parts, strict=True)}}
    return Dataset(root=resolved[0], format="mixed",
                   labels=sorted_labels([s.label for s in samples]), samples=samples,
                   skipped=skipped, notes=notes, sources=sources)


def require_two_classes(labels: list[str] | tuple[str, ...], where: Path) -> None:
    """UserError unless at least two classes have usable samples."""
    present = sorted(set(labels))
    if len(present) < 2:
        which = f" ({present[0]})" if present else ""
        raise UserError(f"need at least two classes with usable images in {where}, "
                        f"found {len(present)}{which}")


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _discover_folders(root: Path) -> Dataset:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples: list[Sample] = []
    for name in classes:
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and _visible(p, root))
        samples += [Sample(path=p.relative_to(root).as_posix(), label=name) for p in files]
    loose = [p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not samples and loose:
        raise UserError(f"no class folders in {root}: put each class's images in its own "
                        f"folder (e.g. {root}/with_mask/, {root}/without_mask/)")
    used = sorted({s.label for s in samples})
    return Dataset(root=root, format="folders", labels=tuple(used), samples=samples,
                   notes={"loose_files_ignored": len(loose)} if loose else {})


def _load_npy(path: Path, what: str, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"{path.name} missing: arrays need {ARRAY_IMAGES} and {ARRAY_LABELS}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise UserError(f"{path} holds Python objects; save {what} as a plain int or "
                            f"string array") from None
        raise UserError(f"{path} is not a readable .npy file: {exc}") from None
    except (OSError, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npy file: {exc}") from None


def _discover_arrays(root: Path) -> Dataset:
    images = _load_npy(root / ARRAY_IMAGES, "the images", mmap=True)
    labels = _load_npy(root / ARRAY_LABELS, "the labels", mmap=False)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3, 4)):
        raise UserError(f"{ARRAY_IMAGES} must be (N, H, W, 3) (or N,H,W / N,H,W,1 / N,H,W,4), "
                        f"got shape {images.shape}")
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1:
        raise UserError(f"{ARRAY_LABELS} must be (N,) ints or strings, got shape {labels.shape}")
    if len(labels) != len(images):
        raise UserError(f"{ARRAY_IMAGES} has {len(images)} images but {ARRAY_LABELS} has "
                        f"{len(labels)} labels")
    if labels.dtype.kind in "iu":
        values: list = [int(v) for v in labels]
    elif labels.dtype.kind in "US":
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in labels.tolist()]
    elif labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == labels // 1):
        values = [int(v) for v in labels]
    else:
        raise UserError(f"{ARRAY_LABELS} must hold ints or strings, got dtype {labels.dtype}")
    order = sorted_labels(values)
    samples = [Sample(path=ARRAY_IMAGES, label=str(v), index=i) for i, v in enumerate(values)]
    return Dataset(root=root, format="arrays", labels=order, samples=samples,
                   notes={"array_shape": list(images.shape), "array_dtype": str(images.dtype)})


def _discover_voc(root: Path, min_face: int, label_map: LabelMap | None = None) -> Dataset:
    folder = read_voc(root, label_map)
    samples: list[Sample] = []
    small: Counter[str] = Counter()
    for item in folder.images:
        rel_image = item.path.relative_to(root).as_posix()
        for ann in item.annotations:
            if ann.short_side < min_face:
                small[ann.label] += 1
                continue
            samples.append(Sample(path=rel_image, label=ann.label, box=ann.box))
    labels = sorted_labels([s.label for s in samples])
    notes: dict[str, object] = {"annotations": len(folder.images) + sum(
        p.reason.startswith(("unreadable", "annotation without")) for p in folder.problems),
        "min_face": min_face, "faces_below_min_face": dict(sorted(small.items()))}
    if folder.dropped:
        notes["faces_left_out_by_label_map"] = dict(sorted(folder.dropped.items()))
    skipped = [Skipped(p.where, p.reason) for p in folder.problems]
    return Dataset(root=root, format="voc", labels=labels, samples=samples, skipped=skipped,
                   notes=notes)

"""Representative images for int8 calibration: never test images.

By default a stratified, seeded sample of the model's own training split (from the run's split
manifest), decoded exactly as training saw it (`trainer.data.split.load_split`). `--representative
DIR` takes a folder of images instead -- flat, one folder per class, or any data set layout the
trainer reads -- decoded by the trainer's loader (`trainer.data.pixels.load_pixels`). A folder
holding any image of the model's test split (same file or same bytes) is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.defaults import DEFAULT_SAMPLES, DEFAULT_SEED
from converters.errors import ConvertError
from edge.core import console
from trainer.data.datasets import Sample, detect_format, discover
from trainer.data.pixels import load_pixels
from trainer.data.split import SplitManifest, load_split
from trainer.errors import UserError


@dataclass
class Calibration:
    """Calibration pixels (N, h, w, 3) uint8 and where they came from (for the contract)."""

    images: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)


def stratified_sample(rows: list[dict[str, Any]], samples: int, seed: int,
                      key: str = "label") -> list[dict[str, Any]]:
    """At most `samples` rows, each class in proportion to its share (at least one each)."""
    if len(rows) <= samples:
        return list(rows)
    by_class: dict[Any, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_class[row.get(key)].append(i)
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for _, idx in sorted(by_class.items(), key=lambda kv: str(kv[0])):
        take = max(1, round(samples * len(idx) / len(rows)))
        picked += rng.choice(idx, size=min(take, len(idx)), replace=False).tolist()
    if len(picked) > samples:  # rounding up of several small classes
        picked = rng.choice(picked, size=samples, replace=False).tolist()
    return [rows[i] for i in sorted(picked)]


def from_split(manifest: SplitManifest, size: tuple[int, int], samples: int = DEFAULT_SAMPLES,
               seed: int = DEFAULT_SEED, show_progress: bool = False) -> Calibration:
    """A stratified sample of the manifest's training split, decoded as training saw it."""
    train = manifest.rows_of("train")
    if not train:
        raise ConvertError("the split manifest has no training images to calibrate int8 on; "
                           "pass --representative DIR")
    rows = stratified_sample(train, samples, seed)
    try:
        with console.task("calibration images", len(rows), show_progress) as advance:
            images, _ = load_split(dataclasses.replace(manifest, rows=rows), "train", size,
                                   advance=advance)
    except UserError as exc:
        raise ConvertError(f"cannot read calibration images: {exc}") from None
    counts = {label: sum(r["label"] == label for r in rows) for label in manifest.labels}
    return Calibration(images, {"from": "train split", "samples": len(images), "seed": seed,
                                "per_class": counts})


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _directory_samples(directory: Path) -> tuple[str, list[Sample]]:
    fmt = detect_format(directory)
    if fmt != "folders":
        return fmt, discover(directory).samples
    files = sorted(p for p in directory.rglob("*")
                   if p.is_file() and not any(part.startswith(".")
                                              for part in p.relative_to(directory).parts))
    samples = []
    for p in files:
        rel = p.relative_to(directory)
        label = rel.parts[0] if len(rel.parts) > 1 else ""
        samples.append(Sample(path=rel.as_posix(), label=label))
    return fmt, samples


def _refuse_test_images(directory: Path, fmt: str, samples: list[Sample],
                        test_files: list[Path]) -> None:
    if fmt == "arrays" or not test_files:
        return
    chosen = {(directory / s.path).resolve() for s in samples}
    same_file = [p for p in test_files if p.resolve() in chosen]
    if not same_file:
        test_hashes = {h for h in map(_sha256, test_files) if h}
        same_file = [directory / s.path for s in samples
                     if _sha256(directory / s.path) in test_hashes]
    if same_file:
        raise ConvertError(f"--representative {directory} holds {len(same_file)} image(s) of the "
                           f"model's test split (e.g. {same_file[0].name}); calibrate on training "
                           f"images only")


def from_directory(directory: str | Path, size: tuple[int, int],
                   samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED,
                   test_files: list[Path] | None = None,
                   show_progress: bool = False) -> Calibration:
    """Up to `samples` images from a folder (stratified by class folder when there are any)."""
    directory = Path(directory).expanduser()
    try:
        fmt, found = _directory_samples(directory)
    except UserError as exc:
        raise ConvertError(f"representative set: {exc}") from None
    except OSError as exc:
        raise ConvertError(f"cannot read representative set {directory}: "
                           f"{exc.strerror or exc}") from None
    if not found:
        raise ConvertError(f"representative set {directory} is empty")
    rows = [{"label": s.label, "i": i} for i, s in enumerate(found)]
    chosen = [found[r["i"]] for r in stratified_sample(rows, samples, seed)]
    _refuse_test_images(directory, fmt, chosen, test_files or [])
    with console.task("calibration images", len(chosen), show_progress) as advance:
        loaded = load_pixels(directory, fmt, chosen, size, advance=advance)
    if not loaded.samples:
        first = loaded.skipped[0]
        raise ConvertError(f"representative set {directory} has no readable images "
                           f"({len(loaded.skipped)} skipped, e.g. {first.path}: {first.reason})")
    return Calibration(loaded.images, {"from": str(directory), "samples": len(loaded.samples),
                                       "seed": seed, "skipped": len(loaded.skipped)})

"""Samples -> model-input pixels: decode, crop faces, resize; in parallel; skip bad files.

Every stage that needs the images a model was trained or tested on goes through `load_pixels`, so
training, evaluation and the converters' checks see the same pixels:
`trainer.data.images.decode_image` (EXIF, colour modes, JPEG draft), `edge.core.imageops.crop_face`
for VOC boxes and `edge.core.imageops.resize_to_input` -- the functions the camera uses. Files are
decoded on a thread pool (PIL and OpenCV release the GIL); each photo is decoded once however many
faces it holds.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.console import Advance
from edge.core.imageops import crop_face, resize_to_input
from trainer.data.datasets import Sample, Skipped, Source
from trainer.data.images import ALPHA_BACKGROUND, BadImage, decode_image

#: Side of the grayscale thumbnail kept per sample for near-duplicate hashing.
THUMB = 32


@dataclass
class Loaded:
    """The usable samples, their pixels, and what was skipped."""

    images: np.ndarray  # (M, h, w, 3) uint8, model input size
    samples: list[Sample]  # the M usable samples, in input order
    thumbs: np.ndarray  # (M, THUMB, THUMB) float32 grayscale (VOC: the whole photo)
    digests: list[str]  # content fingerprint per usable sample
    skipped: list[Skipped]


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """Small grayscale image for perceptual hashing."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


def array_to_rgb(row: np.ndarray) -> np.ndarray:
    """One image of dataset.npy (H,W | H,W,1 | H,W,3 | H,W,4; uint8/uint16/float) -> uint8 RGB."""
    arr = np.asarray(row)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise BadImage("array image holds NaN or infinite values")
        scale = 255.0 if arr.size and float(arr.max()) <= 1.0 else 1.0
        arr = np.clip(arr * scale, 0, 255).round().astype(np.uint8)
    elif arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.size and int(arr.max()) > 255):
        arr = (arr.astype(np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        bg = np.asarray(ALPHA_BACKGROUND, np.float32)
        arr = (arr[:, :, :3] * alpha + bg * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def _box_digest(sha: str, box: tuple[float, float, float, float] | None) -> str:
    if box is None:
        return sha
    return hashlib.sha256(f"{sha}:{[round(v, 2) for v in box]}".encode()).hexdigest()


def _load_file(root: Path, path: str, group: list[tuple[int, Sample]], size: tuple[int, int],
               crop: bool) -> list[tuple[int, np.ndarray | None, np.ndarray | None, str]]:
    """Decode one file and make every sample that uses it: (position, pixels, thumb, digest|why)."""
    try:
        decoded = decode_image(root / path, min_side=None if crop else max(size))
    except BadImage as exc:
        return [(pos, None, None, str(exc)) for pos, _ in group]
    photo_thumb = thumbnail(decoded.pixels) if crop else None
    out = []
    for pos, sample in group:
        try:
            face = crop_face(decoded.pixels, sample.box) if crop and sample.box else decoded.pixels
        except ValueError as exc:
            out.append((pos, None, None, f"bad face box: {exc}"))
            continue
        pixels = resize_to_input(face, size)
        thumb = photo_thumb if photo_thumb is not None else thumbnail(pixels)
        out.append((pos, pixels, thumb, _box_digest(decoded.sha256, sample.box)))
    return out


def load_pixels(root: str | Path, fmt: str, samples: list[Sample], size: tuple[int, int],
                advance: Advance | None = None, workers: int | None = None) -> Loaded:
    """Decode `samples` of the data set at `root` to (h, w) uint8 RGB; skip what cannot be used."""
    root = Path(root)
    advance = advance or (lambda n: None)
    n = len(samples)
    images = np.zeros((n, size[0], size[1], 3), np.uint8)
    thumbs = np.zeros((n, THUMB, THUMB), np.float32)
    digests: list[str | None] = [None] * n
    reasons: dict[int, str] = {}

    if fmt == "arrays":
        by_file: dict[str, list[tuple[int, Sample]]] = defaultdict(list)
        for pos, s in enumerate(samples):
            by_file[s.path].append((pos, s))
        for path, group in by_file.items():
            array = np.load(root / path, mmap_mode="r", allow_pickle=False)
            for pos, s in group:
                advance(1)
                try:
                    rgb = array_to_rgb(array[s.index])
                except BadImage as exc:
                    reasons[pos] = str(exc)
                    continue
                images[pos] = resize_to_input(rgb, size)
                thumbs[pos] = thumbnail(images[pos])
                digests[pos] = hashlib.sha256(np.ascontiguousarray(array[s.index])).hexdigest()
    else:
        groups: dict[str, list[tuple[int, Sample]]] = defaultdict(list)
        for pos, s in enumerate(samples):
            groups[s.path].append((pos, s))
        crop = fmt == "voc"
        workers = workers or max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            jobs = [pool.submit(_load_file, root, path, group, size, crop)
                    for path, group in groups.items()]
            for job in jobs:
                results = job.result()
                for pos, pixels, thumb, digest in results:
                    if pixels is None:
                        reasons[pos] = digest
                    else:
                        images[pos], thumbs[pos], digests[pos] = pixels, thumb, digest
                advance(len(results))

    keep = [i for i in range(n) if i not in reasons]
    skipped = [Skipped(samples[i].source if samples[i].box is None else
                       f"{samples[i].path} box {[round(v) for v in samples[i].box]}", reasons[i])
               for i in sorted(reasons)]
    return Loaded(images=images[keep] if len(keep) < n else images,
                  samples=[samples[i] for i in keep], thumbs=thumbs[keep],
                  digests=[digests[i] for i in keep], skipped=skipped)


def load_from_sources(sources: tuple[Source, ...], samples: list[Sample], size: tuple[int, int],
                      advance: Advance | None = None) -> Loaded:
    """`load_pixels` for samples of one or several sources (`Sample.origin` picks the source).

    Samples without an origin belong to the first source. Usable samples keep their input order.
    """
    if len(sources) == 1:
        return load_pixels(sources[0].root, sources[0].format, samples, size, advance=advance)
    by_origin: dict[int, list[int]] = defaultdict(list)
    for pos, s in enumerate(samples):
        by_origin[s.origin or 0].append(pos)
    images = np.zeros((len(samples), size[0], size[1], 3), np.uint8)
    thumbs = np.zeros((len(samples), THUMB, THUMB), np.float32)
    kept: dict[int, tuple[Sample, str]] = {}
    skipped: list[Skipped] = []
    for k, positions in sorted(by_origin.items()):
        if k >= len(sources):
            raise ValueError(f"sample source {k} is not among the {len(sources)} sources")
        sub = [samples[p] for p in positions]
        loaded = load_pixels(sources[k].root, sources[k].format, sub, size, advance=advance)
        skipped += [Skipped(f"{sources[k].name}/{s.path}", s.reason) for s in loaded.skipped]
        where = {id(s): i for i, s in enumerate(sub)}
        for i, s in enumerate(loaded.samples):
            pos = positions[where[id(s)]]
            images[pos], thumbs[pos] = loaded.images[i], loaded.thumbs[i]
            kept[pos] = (s, loaded.digests[i])
        del loaded
    order = sorted(kept)
    if len(order) < len(samples):
        images, thumbs = images[order], thumbs[order]
    return Loaded(images=images, samples=[kept[p][0] for p in order], thumbs=thumbs,
                  digests=[kept[p][1] for p in order], skipped=skipped)

"""Bounded memory on large data: decode in chunks, backbone features in shards on disk.

The in-memory path (`trainer.data.pixels.load_from_sources`) holds every decoded image: ~150 KB per
image at 224 px, 7.5 GB for 50,000. The streaming path never does:

1. `scan` decodes the samples `CHUNK` at a time and keeps, per usable sample, only what grouping
   and the split need (a 32x32 uint8 thumbnail -- the same values the in-memory path holds as
   float32 -- and a content digest).
2. `extract_shards` decodes the usable samples again, one shard of `CHUNK` rows at a time, and
   writes the shard's clean features (and the augmented views of its training rows) to the
   feature cache as .npy files (atomic writes, each with a SHA-256 sidecar checked on reading; a
   damaged or missing shard is recomputed, so a killed run resumes where extraction stopped).
   A worker of a cluster extracts only its own shards (shard index modulo the number of workers).
3. The head trains on `feature_dataset`: a tf.data pipeline that reads one shard at a time (shard
   order and rows shuffled per epoch, then a bounded shuffle buffer), so what is in memory is a
   few shards, not the data set. Images for the reference recipe and the fine-tune come from
   `image_dataset`, which decodes chunk by chunk the same way.

Per sample the run still keeps a few small things (sample record, thumbnail, label, split): about
1.5 KB, against 150 KB of pixels.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from edge.core.console import Advance
from edge.core.fileio import atomic_path, write_text_atomic
from trainer.data.augment import build_augmenter
from trainer.data.datasets import Sample, Skipped, Source
from trainer.data.pixels import THUMB, Loaded, load_from_sources
from trainer.errors import UserError

#: Samples decoded at a time, and rows per feature shard (~1.3 MB of features at 1280 floats).
CHUNK = 256
#: Rows the head's training pipeline shuffles across shards (~5 MB of 1280-float features).
SHUFFLE_ROWS = 1024
#: `--stream auto` streams when the decoded images would take more than this.
AUTO_STREAM_BYTES = 2 << 30


def should_stream(mode: str, samples: int, size: int, multi_worker: bool) -> bool:
    """`--stream on|off|auto`: auto streams for multi-worker runs and when pixels exceed 2 GiB."""
    if mode == "on" or multi_worker:
        return True
    return mode == "auto" and samples * size * size * 3 > AUTO_STREAM_BYTES


def scan(sources: tuple[Source, ...], samples: list[Sample], size: tuple[int, int],
         advance: Advance | None = None, chunk: int = CHUNK) -> Loaded:
    """Decode `samples` chunk by chunk, keeping no pixels: a `Loaded` with zero images whose
    thumbnails are uint8 (the in-memory path's float32 values, losslessly)."""
    kept: list[Sample] = []
    digests: list[str] = []
    skipped: list[Skipped] = []
    thumbs = np.zeros((len(samples), THUMB, THUMB), np.uint8)
    n = 0
    for start in range(0, len(samples), chunk):
        part = load_from_sources(sources, samples[start:start + chunk], size, advance=advance)
        thumbs[n:n + len(part.samples)] = np.clip(part.thumbs, 0, 255).round().astype(np.uint8)
        n += len(part.samples)
        kept += part.samples
        digests += part.digests
        skipped += part.skipped
    return Loaded(images=np.zeros((0, size[0], size[1], 3), np.uint8), samples=kept,
                  thumbs=thumbs[:n], digests=digests, skipped=skipped)


@dataclass
class StreamData:
    """The usable samples of a run, decoded on demand (never all at once)."""

    sources: tuple[Source, ...]
    samples: list[Sample]
    size: tuple[int, int]
    chunk: int = CHUNK

    @property
    def shards(self) -> int:
        return math.ceil(len(self.samples) / self.chunk)

    def shard_rows(self, shard: int) -> np.ndarray:
        return np.arange(shard * self.chunk, min(len(self.samples), (shard + 1) * self.chunk))

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), h, w, 3) uint8 pixels of the given usable rows."""
        loaded = load_from_sources(self.sources, [self.samples[int(i)] for i in rows], self.size)
        if loaded.skipped:
            first = loaded.skipped[0]
            raise UserError(f"{first.path} can no longer be read ({first.reason}): the data "
                            "changed during the run")
        return loaded.images

    def chunks(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, pixels) `chunk` rows at a time."""
        for start in range(0, len(rows), self.chunk):
            part = rows[start:start + self.chunk]
            yield part, self.decode(part)


class ShardSet:
    """Feature shards under `directory`: `<shard>.npy` + `<shard>.sha256`, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _paths(self, shard: int) -> tuple[Path, Path]:
        return self.directory / f"{shard:05d}.npy", self.directory / f"{shard:05d}.sha256"

    def get(self, shard: int, rows: int) -> np.ndarray | None:
        """The shard's features if present, whole (checksum) and of `rows` rows; else None."""
        npy, sha = self._paths(shard)
        try:
            data = npy.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha.read_text().strip():
                return None
            arr = np.load(npy, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return arr if arr.ndim == 2 and len(arr) == rows else None

    def has(self, shard: int, rows: int) -> bool:
        return self.get(shard, rows) is not None

    def put(self, shard: int, features: np.ndarray) -> None:
        npy, sha = self._paths(shard)
        try:
            with atomic_path(npy) as tmp:
                np.save(tmp, np.ascontiguousarray(features, np.float32))
            write_text_atomic(sha, hashlib.sha256(npy.read_bytes()).hexdigest() + "\n")
        except OSError as exc:
            raise UserError(f"cannot write feature shards to {self.directory} ({exc.strerror}); "
                            "streaming needs a writable --cache-dir") from None


def augment_fn(seed: int, size: tuple[int, int],
               policy: str = "reference") -> Callable[[np.ndarray], np.ndarray]:
    """One augmented view per call (the seeded random stream continues across calls)."""
    augmenter = build_augmenter(seed, policy)
    spec = tf.TensorSpec((None, size[0], size[1], 3), tf.float32)
    fn = tf.function(lambda x: augmenter(x, training=True), input_signature=[spec])
    return lambda pixels: fn(tf.constant(pixels, tf.float32)).numpy()


@dataclass
class ShardJob:
    """What `extract_shards` computes: clean features for every row, views for training rows."""

    clean: ShardSet
    views: list[ShardSet]
    view_seeds: list[int]
    train_mask: np.ndarray  # (rows,) bool over usable rows
    mine: list[int]  # the shards this worker extracts
    augment: str = "reference"  # the views' augmentation policy


def extract_shards(stream: StreamData, job: ShardJob, extractor: Callable[[], Any],
                   advance: Advance | None = None, batch: int = 64) -> dict[str, int]:
    """Compute the missing shards of `job` (one decode per shard); hits and misses counted."""
    augmenters: dict[int, Callable[[np.ndarray], np.ndarray]] = {}
    hits = misses = 0
    for shard in job.mine:
        rows = stream.shard_rows(shard)
        train = job.train_mask[rows]
        need_clean = not job.clean.has(shard, len(rows))
        need = [v for v, views in enumerate(job.views) if not views.has(shard, int(train.sum()))]
        if not need_clean and not need:
            hits += 1
            if advance:
                advance(len(rows))
            continue
        misses += 1
        pixels = stream.decode(rows)
        if need_clean:
            job.clean.put(shard, extractor().clean(pixels))
        for v in need:
            if v not in augmenters:
                augmenters[v] = augment_fn(job.view_seeds[v], stream.size, job.augment)
            picked = pixels[train]
            feats = [extractor().clean(augmenters[v](picked[i:i + batch].astype(np.float32)))
                     for i in range(0, len(picked), batch)]
            job.views[v].put(shard, np.concatenate(feats) if feats else
                             np.zeros((0, job.clean.get(shard, len(rows)).shape[1]), np.float32))
        if advance:
            advance(len(rows))
    return {"shard_hits": hits, "shard_misses": misses}


@dataclass
class FeatureParts:
    """Where a split's features are: per shard, a loader of (features, targets, weights)."""

    loaders: list[Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]]
    rows: int
    dim: int
    targets: np.ndarray  # all rows' targets (their shape and dtype make the signature)


def feature_parts(stream: StreamData, job: ShardJob, selected: np.ndarray, targets: np.ndarray,
                  weights: np.ndarray, with_views: bool) -> FeatureParts:
    """The parts of the rows `selected` (bool over usable rows) in this worker's shards, plus
    their augmented views (training rows only) when `with_views`."""
    loaders: list[Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    rows = 0
    for shard in job.mine:
        idx = stream.shard_rows(shard)
        keep = selected[idx]
        if keep.any():
            loaders.append(_loader(job.clean, shard, idx, keep, targets, weights))
            rows += int(keep.sum())
        train_rows = idx[job.train_mask[idx]]
        for views in job.views if with_views else []:
            if len(train_rows):
                loaders.append(_loader(views, shard, train_rows, None, targets, weights))
                rows += len(train_rows)
    first = job.clean.get(job.mine[0], len(stream.shard_rows(job.mine[0]))) if job.mine else None
    dim = first.shape[1] if first is not None else 0
    return FeatureParts(loaders, rows, dim, targets[:0])


def _loader(shards: ShardSet, shard: int, idx: np.ndarray, keep: np.ndarray | None,
            targets: np.ndarray, weights: np.ndarray,
            ) -> Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    count = len(idx)

    def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feats = shards.get(shard, count)
        if feats is None:
            raise UserError(f"feature shard {shard} in {shards.directory} disappeared or was "
                            "damaged during the run")
        rows = idx if keep is None else idx[keep]
        feats = feats if keep is None else feats[keep]
        return feats, targets[rows], weights[rows]

    return load


def feature_dataset(parts: FeatureParts, batch: int, seed: int | None) -> tf.data.Dataset:
    """Batches of (features, targets, weights) read shard by shard; shuffled when seed given
    (shard order and rows per epoch, then a `SHUFFLE_ROWS` buffer). Cardinality is known."""
    epoch = [0]

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([seed or 0, epoch[0]])
        epoch[0] += 1
        order = rng.permutation(len(parts.loaders)) if seed is not None else range(
            len(parts.loaders))
        for k in order:
            feats, y, w = parts.loaders[int(k)]()
            perm = rng.permutation(len(feats)) if seed is not None else slice(None)
            yield feats[perm], y[perm], w[perm]

    signature = (tf.TensorSpec((None, parts.dim), tf.float32),
                 tf.TensorSpec((None, *parts.targets.shape[1:]), parts.targets.dtype),
                 tf.TensorSpec((None,), tf.float32))
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature).unbatch()
    if seed is not None:
        ds = ds.shuffle(SHUFFLE_ROWS, seed=seed, reshuffle_each_iteration=True)
    steps = math.ceil(parts.rows / batch)
    return ds.batch(batch).apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)


def image_dataset(stream: StreamData, rows: np.ndarray, targets: np.ndarray, batch: int,
                  seed: int | None, augment: bool, policy: str = "reference") -> tf.data.Dataset:
    """Batches of float pixels (augmented, chunk order shuffled) decoded chunk by chunk."""
    epoch = [0]
    h, w = stream.size

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([seed or 0, epoch[0]])
        epoch[0] += 1
        order = rng.permutation(len(rows)) if seed is not None else np.arange(len(rows))
        for part, pixels in stream.chunks(rows[order]):
            yield pixels, targets[part]

    signature = (tf.TensorSpec((None, h, w, 3), tf.uint8),
                 tf.TensorSpec((None, *targets.shape[1:]), targets.dtype))
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature).unbatch()
    if seed is not None:
        ds = ds.shuffle(min(stream.chunk, 512), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch).map(lambda x, t: (tf.cast(x, tf.float32), t),
                             num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        augmenter = build_augmenter(seed or 0, policy)
        ds = ds.map(lambda x, t: (augmenter(x, training=True), t),
                    num_parallel_calls=tf.data.AUTOTUNE)
    steps = math.ceil(len(rows) / batch)
    return ds.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)


def per_row_weights(weights: dict[int, float] | np.ndarray | None, y: np.ndarray) -> np.ndarray:
    """Class weights (a dict), per-sample weights (an array) or none, as one weight per row."""
    if isinstance(weights, np.ndarray):
        return weights.astype(np.float32)
    if isinstance(weights, dict):
        return np.array([weights.get(int(c), 1.0) for c in y], np.float32)
    return np.ones(len(y), np.float32)

"""Pooled backbone features, computed once and cached on disk.

The frozen MobileNetV2 base costs ~99 % of every training step, and its output for a given image
never changes while it is frozen. So phase 1 computes the pooled features of every clean image once,
plus `augment_views` augmented views of each training image, and trains the head on those
(`trainer.fit.run`). Features are cached as .npy files named by a key of everything they depend on
(data fingerprint, weights fingerprint, input size, alpha, which images, view seed), so a second
run on the same data -- another seed for the head, more epochs -- skips the backbone entirely.

On a CPU the backbone runs as a float32 TFLite model under LiteRT (XNNPACK): about 3x faster than
TensorFlow's own kernels here, with features equal to ~1e-5. It is traced once, frozen and
converted (~2 s), and the file is cached by weights, input size and alpha only, so other data
reuses it. Augmentation still runs in TensorFlow (Keras preprocessing layers) before it. With a
GPU, TensorFlow runs everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from edge.core.console import Advance
from edge.core.fileio import atomic_path, cache_root, sha256_file, write_bytes_atomic
from edge.core.runtime import BatchRunner, load_interpreter
from trainer.data.augment import build_augmenter

#: Bump when anything that changes feature values changes (decoding, resizing, augmentation).
FEATURE_VERSION = 1


def default_cache_dir() -> Path:
    """<maskedge cache>/features (see edge.core.fileio.cache_root)."""
    return cache_root() / "features"


def weights_fingerprint(weights: str, seed: int) -> str:
    """What the backbone's weights are: a file's SHA-256, 'imagenet', or random with a seed."""
    if weights == "imagenet":
        return "imagenet"
    if weights.lower() == "none":
        return f"random-seed{seed}"
    return "sha256:" + sha256_file(Path(weights).expanduser())


def cache_key(**parts: Any) -> str:
    text = json.dumps({"version": FEATURE_VERSION, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def backbone_key(parts: dict[str, Any]) -> str:
    """Cache key of the converted backbone: it depends on the weights and shape, not the data
    (`parts`: `FitRun.backbone_parts`)."""
    return cache_key(kind="backbone", **parts)


@contextlib.contextmanager
def _keras_messages_to_logging() -> Iterator[None]:
    """Keras prints every exported tensor while converting; send that to logging instead.

    Keras keeps this switch per thread, so other threads' output is untouched.
    """
    was = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was:
            keras.config.enable_interactive_logging()


def _frozen_function(features: keras.Model) -> Any | None:
    """The features model traced once (any batch size) with its weights as constants, or None.

    Converting this takes ~2 s; `from_keras_model` first exports a SavedModel (~12 s here). The
    freezing helper is TensorFlow's own (`convert_to_constants`), not in its public API: if it
    is missing or fails, the caller falls back to `from_keras_model`.
    """
    try:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        spec = tf.TensorSpec((None, *features.input_shape[1:]), tf.float32)
        traced = tf.function(lambda x: features(x, training=False)).get_concrete_function(spec)
        return convert_variables_to_constants_v2(traced)
    except Exception:  # any failure means: use the public path
        return None


def features_tflite(features: keras.Model, cache_path: Path | None) -> Path:
    """The features model as a float32 .tflite file (converted once, kept at `cache_path`)."""
    if cache_path is not None and cache_path.is_file() and verified(cache_path):
        return cache_path  # a damaged or unsealed file is converted again
    frozen = _frozen_function(features)
    if frozen is not None:
        data = tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
    else:
        with _keras_messages_to_logging():
            data = tf.lite.TFLiteConverter.from_keras_model(features).convert()
    target = cache_path
    if target is not None:
        try:
            write_bytes_atomic(target, data)
            seal(target, hashlib.sha256(data).hexdigest())
            return target
        except OSError:
            pass  # read-only cache: fall back to a temporary file
    fd, tmp = tempfile.mkstemp(suffix=".tflite")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(tmp)


class FeatureExtractor:
    """Runs the features model (optionally after augmentation) in fixed-size batches.

    engine "litert" runs the backbone under LiteRT (the CPU default), "tensorflow" in TensorFlow.
    """

    def __init__(self, features: keras.Model, batch_size: int = 64, engine: str = "tensorflow",
                 tflite_path: Path | None = None) -> None:
        self.features = features
        self.batch_size = batch_size
        self.engine = engine
        shape = (batch_size, *features.input_shape[1:])
        spec = tf.TensorSpec(shape, tf.float32)
        self._spec = spec
        if engine == "litert":
            loaded = load_interpreter(features_tflite(features, tflite_path),
                                      threads=os.cpu_count(), runtime="litert")
            run = BatchRunner(loaded.interpreter)

            def backbone(batch: Any) -> np.ndarray:
                return run(np.ascontiguousarray(batch, dtype=np.float32))

            self._clean: Any = backbone
            self._backbone = backbone
        else:
            self._clean = tf.function(lambda x: features(x, training=False),
                                      input_signature=[spec])
            self._backbone = None

    def _run(self, fn: Any, images: np.ndarray, advance: Advance | None) -> np.ndarray:
        n, bs = len(images), self.batch_size
        out = np.zeros((n, self.features.output_shape[-1]), np.float32)
        for start in range(0, n, bs):
            chunk = images[start:start + bs].astype(np.float32)
            real = len(chunk)
            if real < bs:  # pad to the traced batch size instead of retracing
                chunk = np.concatenate([chunk, np.zeros((bs - real, *chunk.shape[1:]),
                                                        np.float32)])
            result = fn(chunk if self._backbone is not None else tf.constant(chunk))
            out[start:start + real] = np.asarray(result)[:real]
            if advance:
                advance(real)
        return out

    def clean(self, images: np.ndarray, advance: Advance | None = None) -> np.ndarray:
        """(N, D) features of the images as they are."""
        return self._run(self._clean, images, advance)

    def augmented(self, images: np.ndarray, seed: int, advance: Advance | None = None,
                  policy: str = "reference") -> np.ndarray:
        """(N, D) features of one random augmented view of each image (seeded)."""
        augmenter = build_augmenter(seed, policy)
        features = self.features
        if self._backbone is not None:
            augment = tf.function(lambda x: augmenter(x, training=True),
                                  input_signature=[self._spec])
            backbone = self._backbone
            return self._run(lambda x: backbone(augment(tf.constant(x)).numpy()), images, advance)
        fn = tf.function(lambda x: features(augmenter(x, training=True), training=False),
                         input_signature=[self._spec])
        return self._run(fn, images, advance)


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def seal(path: Path, digest: str) -> None:
    """Record the SHA-256 of a finished cache file beside it (`<name>.sha256`, written last)."""
    write_bytes_atomic(_digest_path(path), digest.encode())


def verified(path: Path) -> bool:
    """True when `path` matches the digest `seal` recorded: a truncated, damaged or half-written
    cache file (a killed run, a full disk) is never used, only computed again."""
    try:
        return _digest_path(path).read_text().strip() == sha256_file(path)
    except (OSError, UnicodeDecodeError):
        return False


class FeatureCache:
    """Feature arrays on disk under `directory`, one .npy per key (atomic writes, each file
    sealed with its SHA-256 and checked before use)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = Path(directory) if directory else None

    def path(self, key: str, suffix: str = ".npy") -> Path | None:
        return self.directory / f"{key}{suffix}" if self.directory else None

    def get(self, key: str, rows: int) -> np.ndarray | None:
        path = self.path(key)
        if path is None or not path.is_file() or not verified(path):
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # a damaged cache entry is recomputed
        return arr if arr.ndim == 2 and len(arr) == rows else None

    def put(self, key: str, features: np.ndarray) -> None:
        path = self.path(key)
        if path is None:
            return
        try:
            with atomic_path(path) as tmp:
                np.save(tmp, features)
                digest = sha256_file(tmp)
            seal(path, digest)
        except OSError:
            pass  # caching is an optimisation: a read-only or full disk must not fail the run

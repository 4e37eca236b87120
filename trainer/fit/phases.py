"""The training phases of a `trainer fit` run: phase 1 (the head on cached backbone features, or
the reference recipe on images) and the optional fine-tune (phase 2).

Each phase reads and extends a `trainer.fit.state.FitRun`; on streamed data or under a cluster
the same phases call `trainer.fit.streamed`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from edge.core import console
from trainer.data.datasets import Dataset, Sample
from trainer.data.pixels import Loaded, load_from_sources
from trainer.data.stream import scan
from trainer.fit.features import (
    FeatureCache,
    FeatureExtractor,
    backbone_key,
    cache_key,
)
from trainer.fit.model import unfreeze_top
from trainer.fit.state import FitRun
from trainer.fit.training import Schedule, fit_head


def decode_images(dataset: Dataset, samples: list[Sample], size: tuple[int, int],
            show: bool, chunk: int = 0) -> Loaded:
    with console.task("decoding images", len(samples), show) as advance:
        return load_from_sources(dataset.all_sources(), samples, size, advance=advance)


def scan_images(dataset: Dataset, samples: list[Sample], size: tuple[int, int], show: bool,
          chunk: int) -> Loaded:
    """Streaming: decode chunk by chunk keeping thumbnails and digests, no pixels."""
    with console.task("scanning images", len(samples), show) as advance:
        return scan(dataset.all_sources(), samples, size, advance=advance, chunk=chunk)


def _features(extractor: Callable[[], FeatureExtractor], images: np.ndarray, key: str,
              cache: FeatureCache, what: str, show: bool,
              view_seed: int | None = None, policy: str = "reference") -> tuple[np.ndarray, bool]:
    """Cached features of `images` (clean, or one augmented view when view_seed is given)."""
    cached = cache.get(key, len(images))
    if cached is not None:
        return cached, True
    with console.task(what, len(images), show) as advance:
        feats = (extractor().clean(images, advance) if view_seed is None
                 else extractor().augmented(images, view_seed, advance, policy))
    cache.put(key, feats)
    return feats, False


def backbone_engine() -> str:
    """LiteRT runs the frozen backbone ~3x faster than TensorFlow on a CPU; a GPU keeps TF."""
    return "tensorflow" if tf.config.list_physical_devices("GPU") else "litert"


def extractor_factory(run: FitRun, cache: FeatureCache,
                       engine: str) -> Callable[[], FeatureExtractor]:
    made: list[FeatureExtractor] = []

    def extractor() -> FeatureExtractor:  # built on the first cache miss only
        if not made:
            tflite = cache.path(backbone_key(run.backbone_parts), suffix=".tflite")
            made.append(FeatureExtractor((run.plain or run.clf).features, engine=engine,
                                         tflite_path=tflite))
        return made[0]

    return extractor


def phase1_cached(run: FitRun) -> None:
    """Phase 1 on cached backbone features, in two stages.

    First the head trains on the clean features alone (phase "head-clean"): a good model exists
    as soon as one backbone pass is done. Then `augment_views` augmented views of the training
    images are added and the head goes on from there (phase "head"), so the time to a given
    accuracy is not held up by the augmented passes. With no views there is one stage ("head").
    """
    c = run.config
    cache = run.cache
    base = {"data": run.fingerprint, **run.backbone_parts}
    t0 = time.perf_counter()
    engine = backbone_engine()
    extractor = extractor_factory(run, cache, engine)
    feats, hit = _features(extractor, run.loaded.images, cache_key(**base, kind="clean"), cache,
                           "backbone features", run.show)
    train_idx, val_idx = run.index("train"), run.index("val")
    val = (feats[val_idx], run.y[val_idx])
    feature_seconds, head_seconds, hits = time.perf_counter() - t0, 0.0, [hit]
    if c.augment_views:
        t1 = time.perf_counter()
        _fit_cached(run, "head-clean", [feats[train_idx]], train_idx, val)
        head_seconds += time.perf_counter() - t1
    t0 = time.perf_counter()
    views = _augmented_views(run, extractor, cache, base, train_idx)
    feature_seconds += time.perf_counter() - t0
    hits += [h for _, h in views]
    t1 = time.perf_counter()
    n_train = _fit_cached(run, "head", [feats[train_idx], *(v for v, _ in views)], train_idx, val)
    head_seconds += time.perf_counter() - t1
    run.phase1 = {"path": "cached-features", "feature_seconds": round(feature_seconds, 2),
                  "head_train_seconds": round(head_seconds, 2),
                  "feature_cache_hits": sum(hits), "feature_cache_misses": len(hits) - sum(hits),
                  "feature_cache_dir": str(cache.directory), "head_train_samples": n_train,
                  "backbone_engine": engine, "examples_per_second": _rate(run, n_train, t1)}
    run.clean_feats = feats


def _augmented_views(run: FitRun, extractor: Callable[[], FeatureExtractor], cache: FeatureCache,
                     base: dict[str, Any], train_idx: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """(features, cache hit) of each of the `augment_views` augmented views of the train images."""
    c = run.config
    train_key = hashlib.sha256(train_idx.tobytes()).hexdigest()[:16]
    views = []
    for view in range(c.augment_views):
        view_seed = c.seed * 1000 + view
        key = cache_key(**base, kind="view", train=train_key, view_seed=view_seed,
                        **c.view_key())
        views.append(_features(extractor, run.loaded.images[train_idx], key, cache,
                               f"augmented view {view + 1}/{c.augment_views}", run.show,
                               view_seed=view_seed, policy=c.augment))
    return views


def _fit_cached(run: FitRun, phase: str, parts: list[np.ndarray], train_idx: np.ndarray,
                val: tuple[np.ndarray, np.ndarray]) -> int:
    """One stage of the head on `parts` (clean features first, then views): training samples."""
    x_train = np.concatenate(parts)
    y_train = np.tile(run.y[train_idx], len(parts))
    weights = run.weights
    if isinstance(weights, np.ndarray):  # per-sample (class x source) weights, repeated per view
        weights = np.tile(weights[train_idx], len(parts))
    keras.utils.set_random_seed(run.config.seed)
    run.history += fit_head(run.clf.head, run.contract, (x_train, y_train), val,
                            run.schedule(phase, weights=weights, callbacks=run.callbacks))
    return len(x_train)


def _phase1_images(run: FitRun) -> None:
    """Phase 1 as the reference recipe: augmented images through the frozen base every epoch."""
    keras.utils.set_random_seed(run.config.seed)
    t1 = time.perf_counter()
    run.history += _fit_on_images(run, run.schedule("head", callbacks=run.callbacks))
    run.phase1 = {"path": "images (reference recipe)",
                  "image_train_seconds": round(time.perf_counter() - t1, 2)}


def run_fine_tune(run: FitRun) -> None:
    """Phase 2: the top `fine_tune_layers` backbone layers (BatchNorm frozen) on images."""
    c = run.config
    if c.fine_tune_layers <= 0:
        return
    t2 = time.perf_counter()
    trainable = unfreeze_top(run.clf.backbone, c.fine_tune_layers)
    keras.utils.set_random_seed(c.seed + 1)
    scale = run.distribution.get("learning_rate_scale", 1)
    run.history += _fit_on_images(run, run.schedule(
        "fine_tune", learning_rate=c.fine_tune_learning_rate * scale,
        epochs=c.fine_tune_epochs, seed=c.seed + 1, cosine=True))
    run.clf.backbone.trainable = False
    run.fine_tune = {"layers": c.fine_tune_layers, "layers_with_trainable_weights": trainable,
                     "seconds": round(time.perf_counter() - t2, 2)}
    run.clean_feats = None  # the backbone changed: cached features no longer describe it


def run_phase1(run: FitRun) -> None:
    """Phase 1 on in-memory features, on feature shards (streaming), or on images."""
    if not run.config.feature_cache:
        _phase1_images(run)
    else:
        run.data.phase1_on_features(run)


def _fit_on_images(run: FitRun, schedule: Schedule) -> list[dict[str, Any]]:
    """The full model on images: in memory, or decoded chunk by chunk (streaming)."""
    return run.data.fit_images(run, schedule)


def _rate(run: FitRun, samples: int, since: float) -> float:
    """Training examples per second of phase 1 so far (all epochs run since `since`)."""
    epochs = sum(1 for r in run.history if r["phase"] == "head")
    return round(samples * epochs / max(time.perf_counter() - since, 1e-9), 1)


def barrier(run: FitRun) -> None:
    """Multi-worker: one all-reduce every worker joins, so none exits before the chief is done."""
    if run.cluster.strategy != "multi-worker":
        return
    strategy = run.strategy
    strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)

"""`trainer fit`: data folder -> run folder with a verified model and its reports.

discover (`datasets`) -> decode (`pixels`) -> group near-duplicates (`dedup`) -> split (`split`)
-> phase 1: head on cached backbone features (`features`, default; clean features first, then
with the augmented views added) or the reference recipe on images (`feature_cache=False`)
-> optional phase 2: fine-tune the top N backbone layers -> test metrics -> model files with
the contract (`artifacts`) -> reports (`reports`).

The run is assembled in a hidden folder beside `out` and renamed into place when complete, so a
failed or interrupted run never leaves a half-written run folder, and every user error (bad data,
bad weights) is raised before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from edge import console
from edge.contract import ModelContract
from edge.fileio import write_text_atomic
from edge.metrics import classification_report, per_class_summary
from trainer import fit_stream
from trainer.artifacts import save_keras_model
from trainer.config import FitConfig, check_usable, preflight
from trainer.datasets import Dataset, Sample, Usable
from trainer.dedup import group_samples
from trainer.distribute import Cluster, batch_and_rate, make_strategy
from trainer.errors import ClusterError, UserError
from trainer.features import (
    FeatureCache,
    FeatureExtractor,
    backbone_key,
    cache_key,
    default_cache_dir,
    weights_fingerprint,
)
from trainer.model import Classifier, adjust_prior, build_classifier, unfreeze_top
from trainer.pixels import Loaded, load_from_sources
from trainer.reports import plot_confusion, plot_curves, report_text, write_history_csv, write_json
from trainer.split import SPLITS, SplitManifest, make_manifest, redraw_val, write_manifest
from trainer.stream import ShardJob, StreamData, scan, should_stream
from trainer.training import Schedule, class_weights, fit_head, fit_images, predict

#: Samples of the test set on which the saved full model must reproduce the head's predictions.
CONSISTENCY_SAMPLES = 32

__all__ = ["FitConfig", "FitResult", "fit"]

#: Class weights (a dict by class index), per-sample weights (an array over all samples) or none.
Weights = dict[int, float] | np.ndarray | None


@dataclass
class FitResult:
    """Where the run went and what it measured."""

    run_dir: Path
    model_h5: Path
    model_keras: Path
    contract: ModelContract
    test_accuracy: float
    wall_seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def _limit_samples(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    if limit is None:
        return samples
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in sorted({s.label for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.label == label]
        if len(idx) > limit:
            idx = rng.choice(idx, size=limit, replace=False).tolist()
        keep += idx
    return [samples[i] for i in sorted(keep)]


def data_fingerprint(manifest: SplitManifest, digests: list[str]) -> str:
    """SHA-256 over every used sample's label, location and content digest, in manifest order."""
    h = hashlib.sha256()
    for row, digest in zip(manifest.rows, digests, strict=True):
        where = [row["label"], row["path"], row.get("box"), row.get("index"), digest]
        h.update(json.dumps(where if row.get("source") is None
                            else [*where, row["source"]]).encode())
    return h.hexdigest()


def _gpu_info(mixed_precision: bool) -> tuple[list[str], str]:
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    if mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
        return gpus, "mixed_float16"
    if mixed_precision:
        return gpus, "float32 (--mixed-precision ignored: no GPU)"
    return gpus, "float32"


def _decode(dataset: Dataset, samples: list[Sample], size: tuple[int, int],
            show: bool, chunk: int = 0) -> Loaded:
    with console.task("decoding images", len(samples), show) as advance:
        return load_from_sources(dataset.all_sources(), samples, size, advance=advance)


def _scan(dataset: Dataset, samples: list[Sample], size: tuple[int, int], show: bool,
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


def _backbone_engine() -> str:
    """LiteRT runs the frozen backbone ~3x faster than TensorFlow on a CPU; a GPU keeps TF."""
    return "tensorflow" if tf.config.list_physical_devices("GPU") else "litert"


@dataclass
class FitRun:
    """One run's state, from the split to the written folder: each phase reads and adds to it."""

    config: FitConfig
    dataset: Dataset
    loaded: Loaded
    manifest: SplitManifest
    clf: Classifier
    y: np.ndarray  # class index per usable sample
    split: np.ndarray  # "train" / "val" / "test" per usable sample
    weights: Weights
    work: Path  # the hidden folder the run is assembled in
    out: Path
    weight_fp: str
    device: dict[str, Any]
    start: float
    show: bool
    callbacks: Sequence[keras.callbacks.Callback] = ()
    info: dict[str, Any] = field(default_factory=dict)  # imbalance, grouping, timing
    history: list[dict[str, Any]] = field(default_factory=list)
    phase1: dict[str, Any] = field(default_factory=dict)
    fine_tune: dict[str, Any] | None = None
    clean_feats: np.ndarray | None = None  # backbone features, while they describe the model
    # Scaling (trainer.stream / trainer.distribute): the strategy the model trains under, this
    # process's part of the cluster, a copy of the classifier outside the strategy (features,
    # evaluation, saving), streamed samples and their feature shards.
    strategy: Any = None
    cluster: Cluster = field(default_factory=lambda: Cluster("one-device", 1))
    plain: Classifier | None = None
    stream: StreamData | None = None
    shards: ShardJob | None = None
    distribution: dict[str, Any] = field(default_factory=dict)

    @property
    def clean_valid(self) -> bool:
        """Cached clean features still describe the model (phase 1 on features, no fine-tune)."""
        return self.config.feature_cache and self.fine_tune is None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def cache(self) -> FeatureCache:
        """The run's feature cache: `--cache-dir`, else the default folder."""
        return FeatureCache(self.config.cache_dir or default_cache_dir())

    @property
    def backbone_parts(self) -> dict[str, Any]:
        """What the backbone's features depend on besides the data (in every feature cache key)."""
        c = self.config
        return {"weights": self.weight_fp, "size": c.input_size, "alpha": c.alpha,
                **({"nose_band": True} if c.nose_band else {})}  # earlier keys stay valid

    @property
    def contract(self) -> ModelContract:
        return ModelContract.for_labels(self.labels, self.config.input_size)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.info["data_fingerprint"])

    @property
    def log_dir(self) -> Path:
        return self.work / "tensorboard"

    def index(self, name: str) -> np.ndarray:
        return np.nonzero(self.split == name)[0]

    def images(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.index(name)
        return self.loaded.images[idx], self.y[idx]

    def schedule(self, phase: str, **changes: Any) -> Schedule:
        c, d = self.config, self.distribution
        return Schedule(**{"learning_rate": d.get("learning_rate", c.learning_rate),
                           "epochs": c.epochs, "batch_size": d.get("global_batch_size",
                                                                   c.batch_size),
                           "patience": c.patience, "weights": self.weights, "seed": c.seed,
                           "log_dir": self.log_dir, "verbose": 2 if self.show else 0,
                           "phase": phase, "checkpoint": self.work / "resume" / phase,
                           "augment": c.augment, "label_smoothing": c.label_smoothing,
                           **changes})


def _extractor_factory(run: FitRun, cache: FeatureCache,
                       engine: str) -> Callable[[], FeatureExtractor]:
    made: list[FeatureExtractor] = []

    def extractor() -> FeatureExtractor:  # built on the first cache miss only
        if not made:
            tflite = cache.path(backbone_key(run.backbone_parts), suffix=".tflite")
            made.append(FeatureExtractor((run.plain or run.clf).features, engine=engine,
                                         tflite_path=tflite))
        return made[0]

    return extractor


def _phase1_cached(run: FitRun) -> None:
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
    engine = _backbone_engine()
    extractor = _extractor_factory(run, cache, engine)
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


def _fine_tune(run: FitRun) -> None:
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


def fit(config: FitConfig, progress: bool = True,
        callbacks: Sequence[keras.callbacks.Callback] = ()) -> FitResult:
    """Train a classifier as configured and write its run folder (see module docstring).

    `callbacks` are extra Keras callbacks for phase 1 (the head on cached features, or the full
    model on images), e.g. a benchmark recording each epoch's weights and time.
    """
    show = progress
    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    dataset = preflight(config)  # every user error that needs no pixels, before any work
    strategy, cluster = make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    gpus, precision = _gpu_info(config.mixed_precision)
    device = {"gpus": gpus, "precision": precision, "load_average_at_start": round(load_start, 2)}
    contract0 = ModelContract.for_labels(dataset.labels, config.input_size)
    built = _build(contract0, config, strategy, cluster)  # WeightsError early
    built.weight_fp = weights_fingerprint(config.weights, config.seed)
    try:
        return _fit_with(config, dataset, built, callbacks, device, start, show)
    except tf.errors.UnavailableError as exc:
        if not lost_worker(exc, cluster):
            raise
        raise ClusterError(lost_worker_message(str(exc), config.out)) from None
    finally:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")


def lost_worker(exc: BaseException, cluster: Cluster) -> bool:
    """A collective op of a multi-worker run aborted because a peer stopped (heartbeats)."""
    return isinstance(exc, tf.errors.UnavailableError) and cluster.strategy == "multi-worker"


def lost_worker_message(error: str, out: Path | None) -> str:
    """One line for a collective op aborted because a peer stopped (TensorFlow's own text names
    the unhealthy tasks on the lines after its first)."""
    tasks = sorted({line.strip() for line in error.splitlines()
                    if line.strip().startswith("/job:")})
    first = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", (error.strip().splitlines() or [""])[0]).strip()
    who = ", ".join(tasks) if tasks else f"TensorFlow: {first[:160] or 'UnavailableError'}"
    return (f"lost a worker of the cluster ({who}); restart every worker with the same command "
            f"and --resume {out} to go on from the last finished epoch")


def source_weights(entries: list[str], manifest: SplitManifest) -> np.ndarray | None:
    """Per-row source weight from `--source-weight NAME=W` entries (None when none given)."""
    if not entries:
        return None
    names = [s.name for s in manifest.all_sources()]
    by_name: dict[str, float] = {}
    for entry in entries:
        name, _, value = entry.partition("=")
        if name not in names:
            raise UserError(f"--source-weight {entry!r}: no source named {name!r} "
                            f"(sources: {', '.join(names)})")
        try:
            by_name[name] = float(value)
        except ValueError:
            raise UserError(f"--source-weight takes NAME=WEIGHT, got {entry!r}") from None
    return np.array([by_name.get(manifest.source_name(r), 1.0) for r in manifest.rows])


def _sample_weights(cw: dict[int, float] | None, source_w: np.ndarray | None,
                    y: np.ndarray) -> Weights:
    """Class weights alone (a dict), or per-sample class x source weights (an array)."""
    if source_w is None:
        return cw
    per_class = np.array([cw.get(int(c), 1.0) for c in y]) if cw else np.ones(len(y))
    return (per_class * source_w).astype(np.float32)


def _split(config: FitConfig, dataset: Dataset, labels: tuple[str, ...], samples: list[Sample],
           grouping: Any) -> SplitManifest:
    """The run's split manifest (every source recorded) with its grouping and selection info."""
    manifest = make_manifest(
        dataset.root, dataset.format, labels, samples, grouping.groups, config.data_seed,
        (config.val_fraction, config.test_fraction),
        info={"groups": int(grouping.groups.max()) + 1,
              "near_duplicate_pairs": grouping.near_duplicate_pairs,
              "merged_groups": grouping.merged_groups,
              "samples_in_merged_groups": grouping.samples_in_merged_groups,
              "min_face": config.min_face if dataset.format in ("voc", "mixed") else None,
              "limit_per_class": config.limit_per_class,
              "label_map": config.label_map or None,
              "exclude_lists": [str(x) for x in config.exclude_lists] or None})
    manifest.sources = dataset.sources
    return manifest if config.val_seed is None else redraw_val(manifest, config.val_seed)


def _fit_with(config: FitConfig, dataset: Dataset, built: Built,
              callbacks: Sequence[keras.callbacks.Callback], device: dict[str, Any],
              start: float, show: bool) -> FitResult:
    """Decode, group and split the samples, then train and write the run (see `fit`)."""
    out = Path(config.out).expanduser()
    samples = _limit_samples(dataset.samples, config.limit_per_class, config.data_seed)
    size = (config.input_size, config.input_size)
    t_decode = time.perf_counter()
    streaming = should_stream(config.stream, len(samples), config.input_size,
                              built.cluster.strategy == "multi-worker")
    loaded = (_scan if streaming else _decode)(dataset, samples, size, show,
                                               config.stream_chunk)
    decode_seconds = time.perf_counter() - t_decode
    present = sorted({s.label for s in loaded.samples})
    check_usable(Usable.decoded(dataset.labels, loaded.samples, len(samples), loaded.skipped),
                 dataset.root, config, decoded=True)  # what decoded, as preflight's check
    labels = tuple(x for x in dataset.labels if x in present)
    if labels != dataset.labels:  # a class lost all its images to bad files
        keras.utils.set_random_seed(config.seed)
        built = _build(ModelContract.for_labels(labels, config.input_size), config,
                       built.strategy, built.cluster, built.weight_fp)
    grouping = group_samples(loaded.thumbs, [s.source for s in loaded.samples])
    manifest = _split(config, dataset, labels, loaded.samples, grouping)
    manifest.info["data_fingerprint"] = data_fingerprint(manifest, loaded.digests)
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[s.label] for s in loaded.samples], dtype=np.int64)
    split = np.array([r["split"] for r in manifest.rows])
    cw = class_weights(y[split == "train"], len(labels)) if config.class_weighting else None
    work = _work_dir(config, out, built.cluster)
    run = FitRun(config, dataset, loaded, manifest, built.clf, y, split,
                 _sample_weights(cw, source_weights(config.source_weights, manifest), y),
                 work, out, built.weight_fp, device, start, show, callbacks, info={
                     "imbalance": _imbalance(config, labels, y[split == "train"], cw),
                     "grouping": {"near_duplicate_pairs": grouping.near_duplicate_pairs,
                                  "merged_groups": grouping.merged_groups,
                                  "samples_in_merged_groups": grouping.samples_in_merged_groups},
                     "timing": {"decode_seconds": round(decode_seconds, 2)},
                     "skipped": dataset.skipped + loaded.skipped})
    _scale_run(run, built, samples=loaded.samples if streaming else None)
    train_text = ", ".join(f"{k}: {v}" for k, v in manifest.counts()["train"].items())
    console.say(f"{len(loaded.samples)} images of {len(labels)} classes ({train_text} in "
                f"train); {len(run.info['skipped'])} skipped; {grouping.merged_groups} "
                f"near-duplicate groups merged ({grouping.samples_in_merged_groups} images)",
                show)
    try:
        return _train_and_write(run)
    except BaseException as exc:
        if not (lost_worker(exc, run.cluster) and run.cluster.is_chief):
            shutil.rmtree(work, ignore_errors=True)
        raise  # a lost worker keeps the chief's checkpoints: restarted, the cluster resumes


def _imbalance(config: FitConfig, labels: tuple[str, ...], y_train: np.ndarray,
               cw: dict[int, float] | None) -> dict[str, Any]:
    counts = np.bincount(y_train, minlength=len(labels))
    return {"train_counts": dict(zip(labels, counts.tolist(), strict=True)),
            "ratio_largest_to_smallest": round(float(counts.max() / max(counts.min(), 1)), 3),
            "class_weights": ({labels[i]: round(w, 4) for i, w in cw.items()} if cw else None),
            "source_weights": config.source_weights or None}


def _train_and_write(run: FitRun) -> FitResult:
    """Inputs of the run, phase 1, the fine-tune, evaluation, model files, reports, publish."""
    _write_inputs(run)
    t_train = time.perf_counter()
    if run.stream is not None and run.config.feature_cache:  # outside the strategy's scope
        keras.utils.set_random_seed(run.config.seed)
        fit_stream.extract_sharded(run, _extractor_factory(run, run.cache, _backbone_engine()))
    with run.strategy.scope() if run.strategy is not None else contextlib.nullcontext():
        _phase1(run)
        _fine_tune(run)
    run.info["timing"]["train_seconds"] = round(time.perf_counter() - t_train, 2)
    _detach(run)
    if not run.cluster.is_chief:
        result = _worker_result(run)
        _barrier(run)  # stay until the chief has written the run (it checks our heartbeat)
        return result
    _adjust_prior(run)
    evaluation = _evaluate(run)
    contract = _write_model(run, evaluation)
    _write_reports(run, evaluation)
    summary = _summary(run, evaluation)
    shutil.rmtree(run.work / "resume", ignore_errors=True)  # checkpoints of the phases
    write_json(run.work / "summary.json", summary)
    publish_run(run.work, run.out)
    _barrier(run)
    out = run.out
    return FitResult(run_dir=out, model_h5=out / "model.h5", model_keras=out / "model.keras",
                     contract=contract, test_accuracy=evaluation.test["accuracy"],
                     wall_seconds=summary["timing"]["wall_seconds"], summary=summary)


def _adjust_prior(run: FitRun) -> None:
    """--logit-adjust: shift the trained model's decisions toward the training frequencies."""
    tau, weights = run.config.logit_adjust, run.info["imbalance"]["class_weights"]
    if not tau or not weights:
        return
    run.info["logit_adjust"] = {"tau": tau, "offsets": adjust_prior(run.clf.model, weights,
                                                                      run.labels, tau)}


def _write_inputs(run: FitRun) -> None:
    """split.json, config.json and skipped.txt: what the run was given."""
    write_manifest(run.manifest, run.work / "split.json")
    roots = [str(r.resolve()) for r in run.config.roots()]
    write_json(run.work / "config.json", {**asdict(run.config),
                                          "data": roots[0] if len(roots) == 1 else roots,
                                          "out": str(run.out.resolve())})
    write_text_atomic(run.work / "skipped.txt",
                      "".join(f"{s.path}\t{s.reason}\n" for s in run.info["skipped"]))


@dataclass(frozen=True)
class Evaluation:
    """The trained model on the run's own test and validation splits."""

    test: dict[str, Any]  # classification report
    val: dict[str, Any]
    by_source: dict[str, dict[str, Any]]
    consistency: dict[str, Any] | None  # full model against the head on cached features

    @property
    def per_class(self) -> dict[str, dict[str, Any]]:
        return per_class_summary(self.test)


def _evaluate(run: FitRun) -> Evaluation:
    if run.stream is not None:
        return _evaluate_stream(run)
    test_idx, val_idx = run.index("test"), run.index("val")
    images = run.loaded.images
    consistency = None
    if run.clean_feats is not None:
        test_out = predict(run.clf.head, run.clean_feats[test_idx])
        val_out = predict(run.clf.head, run.clean_feats[val_idx])
        check = test_idx[:CONSISTENCY_SAMPLES]
        full = predict(run.clf.model, images[check])
        consistency = {"samples": len(check), "max_abs_diff_full_vs_head":
                       float(np.abs(full - test_out[:len(check)]).max()) if len(check) else 0.0}
    else:
        test_out = predict(run.clf.model, images[test_idx])
        val_out = predict(run.clf.model, images[val_idx])
    return _evaluation(run, (test_out, val_out), consistency)


def _evaluation(run: FitRun, outputs: tuple[np.ndarray, np.ndarray],
                consistency: dict[str, Any] | None) -> Evaluation:
    """Reports from the model's test and validation outputs."""
    test_idx, val_idx = run.index("test"), run.index("val")
    test_out, val_out = outputs
    test_pred = run.contract.probabilities(test_out).argmax(1)
    val_pred = run.contract.probabilities(val_out).argmax(1)
    return Evaluation(classification_report(run.y[test_idx], test_pred, run.labels),
                      classification_report(run.y[val_idx], val_pred, run.labels),
                      per_source(run.manifest, run.y, test_idx, test_pred), consistency)


def _write_model(run: FitRun, ev: Evaluation) -> ModelContract:
    """model.h5, model.keras and metadata.json, with the contract and its measured metrics."""
    c = run.config
    source = {"split_manifest": "split.json", "data_fingerprint": run.fingerprint,
              "data": _data_text(run.dataset), "format": run.dataset.format,
              "weights": c.weights, "weights_fingerprint": run.weight_fp,
              "alpha": c.alpha, "seed": c.seed, "phase1": run.phase1["path"],
              "augment_views": c.augment_views if c.feature_cache else None,
              "fine_tune_layers": c.fine_tune_layers,
              **({"augment": c.augment} if c.augment != "reference" else {}),
              **({"label_smoothing": c.label_smoothing} if c.label_smoothing else {}),
              **({"split_seed": c.split_seed} if c.split_seed is not None else {}),
              **({"val_seed": c.val_seed} if c.val_seed is not None else {}),
              **({"logit_adjust": run.info["logit_adjust"]} if "logit_adjust" in run.info
                 else {})}
    metrics = {"test_accuracy": round(ev.test["accuracy"], 6), "n_test": len(run.index("test")),
               "val_accuracy": round(ev.val["accuracy"], 6), "n_val": len(run.index("val")),
               "n_train": len(run.index("train")), "per_class": ev.per_class,
               "macro_f1": round(ev.test["macro"]["f1"], 6)}
    contract = ModelContract.for_labels(run.labels, c.input_size, source=source, metrics=metrics)
    save_keras_model(run.clf.model, contract, run.work)
    write_text_atomic(run.work / "metadata.json", contract.to_json() + "\n")
    return contract


def _write_reports(run: FitRun, ev: Evaluation) -> None:
    """history.csv, curves.png, report.txt, metrics.json, confusion_matrix.png."""
    c, info = run.config, run.info
    write_history_csv(run.work / "history.csv", run.history)
    plot_curves(run.work / "curves.png", run.history)
    grouping, imbalance = info["grouping"], info["imbalance"]
    details = [f"data: {_data_text(run.dataset)} ({run.dataset.format}), split: split.json "
               f"(seed {c.seed})",
               f"model: MobileNetV2 alpha {c.alpha}, {c.input_size}x{c.input_size}"
               + (" (whole face at half size + nose-and-mouth band)" if c.nose_band else "")
               + f", weights {c.weights}, phase 1 on {run.phase1['path']}"
               + (f", fine-tuned top {c.fine_tune_layers} layers" if run.fine_tune else ""),
               f"train/val/test images: {len(run.index('train'))}/{len(run.index('val'))}/"
               f"{len(run.index('test'))}; skipped files: {len(info['skipped'])} (skipped.txt); "
               f"near-duplicate groups merged: {grouping['merged_groups']} "
               f"({grouping['samples_in_merged_groups']} images)",
               f"class imbalance (train): {imbalance['train_counts']}, ratio "
               f"{imbalance['ratio_largest_to_smallest']}, class weights "
               f"{imbalance['class_weights']}"
               + (f"; logit offsets (--logit-adjust {info['logit_adjust']['tau']}): "
                  f"{info['logit_adjust']['offsets']}" if "logit_adjust" in info else ""),
               _distribution_text(run)]
    text = report_text("Test set", ev.test, details) + "\n" + per_source_text(
        ev.by_source) + report_text("Validation set", ev.val)
    write_text_atomic(run.work / "report.txt", text)
    write_json(run.work / "metrics.json", {"test": ev.test, "val": ev.val,
                                           "per_source": ev.by_source})
    plot_confusion(run.work / "confusion_matrix.png", ev.test, "test set")


def _summary(run: FitRun, ev: Evaluation) -> dict[str, Any]:
    out, info, accuracy = run.out.resolve(), run.info, ev.test["accuracy"]
    return {
        "run_dir": str(out), "model_h5": str(out / "model.h5"),
        "model_keras": str(out / "model.keras"), "labels": list(run.labels),
        "format": run.dataset.format, "data": _data_text(run.dataset),
        "sources": [s.to_json() for s in run.dataset.all_sources()],
        "per_source": ev.by_source,
        "test_accuracy": round(accuracy, 6), "test_accuracy_percent": round(100 * accuracy, 2),
        "val_accuracy": round(ev.val["accuracy"], 6), "per_class": ev.per_class,
        "counts": run.manifest.counts(), "skipped": len(info["skipped"]),
        "skipped_by_reason": _reasons(info["skipped"]), "grouping": info["grouping"],
        "imbalance": info["imbalance"], "logit_adjust": info.get("logit_adjust"),
        "phase1": run.phase1, "fine_tune": run.fine_tune,
        "epochs_run": len(run.history), "best_epoch": _best_row(run.history),
        "consistency": ev.consistency, "data_fingerprint": run.fingerprint,
        "device": run.device, "notes": dict(run.dataset.notes),
        "distribution": {**run.cluster.to_json(), **run.distribution},
        "stream": _stream_info(run), "model_weights_sha256": weights_sha256(run.clf.model),
        "resumed_from": str(run.config.resume) if run.config.resume else None,
        "timing": {**info["timing"], "wall_seconds": round(time.perf_counter() - run.start, 2)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": round(os.getloadavg()[0], 2),
                    "tensorflow": tf.__version__, "keras": keras.__version__},
    }


def _data_text(dataset: Dataset) -> str:
    return ", ".join(str(s.root.resolve()) for s in dataset.all_sources())


def per_source(manifest: SplitManifest, y: np.ndarray, test_idx: np.ndarray,
               test_pred: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per data source: sample counts per split and class, test accuracy and test count."""
    out: dict[str, dict[str, Any]] = {}
    for src in manifest.all_sources():
        out[src.name] = {"root": str(src.root), "format": src.format,
                         "counts": {sp: dict.fromkeys(manifest.labels, 0) for sp in SPLITS},
                         "test_n": 0, "test_correct": 0}
    for row in manifest.rows:
        out[manifest.source_name(row)]["counts"][row["split"]][row["label"]] += 1
    for i, pred in zip(test_idx.tolist(), test_pred.tolist(), strict=True):
        entry = out[manifest.source_name(manifest.rows[i])]
        entry["test_n"] += 1
        entry["test_correct"] += int(pred == y[i])
    for entry in out.values():
        n = entry.pop("test_correct")
        entry["test_accuracy"] = round(n / entry["test_n"], 6) if entry["test_n"] else None
    return out


def per_source_text(by_source: dict[str, dict[str, Any]]) -> str:
    """Counts (train/val/test) and test accuracy per data source, as a report.txt block."""
    lines = ["Per data source", "===============", ""]
    for name, entry in by_source.items():
        counts = "; ".join(f"{sp} " + ", ".join(f"{k} {v}" for k, v in c.items())
                           for sp, c in entry["counts"].items())
        acc = ("-" if entry["test_accuracy"] is None
               else f"{100 * entry['test_accuracy']:.2f} %")
        lines.append(f"{name} ({entry['format']}): test accuracy {acc} on {entry['test_n']} "
                     f"images; {counts}")
    return "\n".join(lines) + "\n\n"


def _best_row(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in history if "val_loss" in r]
    return min(scored, key=lambda r: r["val_loss"]) if scored else None


def _reasons(skipped: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in skipped:
        kind = s.reason.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def publish_run(work: Path, out: Path) -> None:
    """Move the finished run into place (replacing `out` only if it was empty or --overwrite)."""
    if out.is_dir():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out)
    with contextlib.suppress(OSError):
        out.chmod(0o755)


# ----------------------------------------------------------------------------- scaling (issue 11)
# Strategy, streaming and resume plumbing: see trainer/distribute.py, trainer/stream.py,
# trainer/fit_stream.py and trainer/resume.py.


@dataclass
class Built:
    """The classifier under the run's strategy, and a copy outside it (None: one device)."""

    clf: Classifier
    plain: Classifier | None
    strategy: Any
    cluster: Cluster
    weight_fp: str = ""


def _build(contract: ModelContract, config: FitConfig, strategy: Any, cluster: Cluster,
           weight_fp: str = "") -> Built:
    """Build the classifier (under the strategy's scope unless one device) and its copy.

    The copy holds the same weights outside any strategy: features are extracted with it, and
    after training it takes the trained weights for evaluation and saving (a model of a
    multi-worker strategy must not run on the chief alone).
    """
    def make() -> Classifier:
        return build_classifier(contract, config.weights, config.alpha,
                                nose_band=config.nose_band)

    if cluster.strategy == "one-device":
        return Built(make(), None, None, cluster, weight_fp)
    with strategy.scope():
        clf = make()
    plain = make()
    plain.model.set_weights(clf.model.get_weights())
    return Built(clf, plain, strategy, cluster, weight_fp)


def _scale_run(run: FitRun, built: Built, samples: list[Sample] | None) -> None:
    """Attach strategy, cluster, batch/rate scaling and (streaming) the sample stream."""
    c = run.config
    run.strategy, run.cluster, run.plain = built.strategy, built.cluster, built.plain
    run.distribution = batch_and_rate(c.batch_size, c.learning_rate, built.cluster.replicas,
                                      c.scale_batch)
    if samples is not None:
        size = (c.input_size, c.input_size)
        run.stream = StreamData(run.dataset.all_sources(), samples, size, c.stream_chunk)


def _work_dir(config: FitConfig, out: Path, cluster: Cluster) -> Path:
    """Where the run is assembled: the killed run's folder (--resume), a hidden folder beside
    `out` (the chief), or a private temporary folder (other workers: they write no run).

    The replicas hold the same weights, so a resumed worker starts from a copy of the chief's
    checkpoints (its partial folder beside `out`, on storage every worker sees): every worker
    then goes on from the same epoch, whenever each was stopped.
    """
    if not cluster.is_chief:
        work = Path(tempfile.mkdtemp(prefix=f"maskedge-worker{cluster.worker_index}-"))
        if config.resume is not None and (Path(config.resume) / "resume").is_dir():
            shutil.copytree(Path(config.resume) / "resume", work / "resume", dirs_exist_ok=True)
        return work
    if config.resume is not None:
        return Path(config.resume)
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))


def _phase1(run: FitRun) -> None:
    """Phase 1 on in-memory features, on feature shards (streaming), or on images."""
    if not run.config.feature_cache:
        _phase1_images(run)
    elif run.stream is None:
        _phase1_cached(run)
    else:
        keras.utils.set_random_seed(run.config.seed)
        fit_stream.phase1_sharded(run)
        run.phase1["backbone_engine"] = _backbone_engine()


def _fit_on_images(run: FitRun, schedule: Schedule) -> list[dict[str, Any]]:
    """The full model on images: in memory, or decoded chunk by chunk (streaming)."""
    if run.stream is not None:
        return fit_stream.fit_images_stream(run, schedule)
    return fit_images(run.clf.model, run.contract, run.images("train"), run.images("val"),
                      schedule)


def _detach(run: FitRun) -> None:
    """After training under a strategy: the trained weights into the plain copy, used from now."""
    if run.plain is None:
        return
    run.plain.model.set_weights(run.clf.model.get_weights())
    run.clf = run.plain


def _evaluate_stream(run: FitRun) -> Evaluation:
    """Test and validation outputs computed shard by shard (see `fit_stream.split_outputs`)."""
    extractor = _extractor_factory(run, run.cache, _backbone_engine())
    test_idx, val_idx = run.index("test"), run.index("val")
    test_out = fit_stream.split_outputs(run, test_idx, extractor)
    val_out = fit_stream.split_outputs(run, val_idx, extractor)
    check = fit_stream.consistency(run, test_idx, test_out, CONSISTENCY_SAMPLES)
    return _evaluation(run, (test_out, val_out), check)


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 over every weight array's bytes (workers of one run must agree on it)."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _worker_result(run: FitRun) -> FitResult:
    """A worker that is not the chief: it trained with the others and writes nothing."""
    summary = {"chief": False, "distribution": {**run.cluster.to_json(), **run.distribution},
               "model_weights_sha256": weights_sha256(run.clf.model),
               "epochs_run": len(run.history), "phase1": run.phase1,
               "timing": {**run.info["timing"],
                          "wall_seconds": round(time.perf_counter() - run.start, 2)}}
    shutil.rmtree(run.work, ignore_errors=True)
    out = run.out
    return FitResult(run_dir=out, model_h5=out / "model.h5", model_keras=out / "model.keras",
                     contract=run.contract, test_accuracy=float("nan"),
                     wall_seconds=summary["timing"]["wall_seconds"], summary=summary)


def _stream_info(run: FitRun) -> dict[str, Any] | None:
    if run.stream is None:
        return None
    return {"chunk": run.stream.chunk, "shards": run.stream.shards, "mode": run.config.stream}


def _rate(run: FitRun, samples: int, since: float) -> float:
    """Training examples per second of phase 1 so far (all epochs run since `since`)."""
    epochs = sum(1 for r in run.history if r["phase"] == "head")
    return round(samples * epochs / max(time.perf_counter() - since, 1e-9), 1)


def _barrier(run: FitRun) -> None:
    """Multi-worker: one all-reduce every worker joins, so none exits before the chief is done."""
    if run.cluster.strategy != "multi-worker":
        return
    strategy = run.strategy
    strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def _distribution_text(run: FitRun) -> str:
    """One report.txt line: strategy, replicas, global batch and learning rate used."""
    cl, d = run.cluster, run.distribution
    return (f"strategy {cl.strategy}: {cl.replicas} replica(s) on {cl.workers} worker(s); "
            f"global batch {d.get('global_batch_size')} ({d.get('per_replica_batch_size')} per "
            f"replica), learning rate {d.get('learning_rate')} (x{d.get('learning_rate_scale')}, "
            f"{d.get('rule')})" + (f"; streamed in {run.stream.shards} shards"
                                   if run.stream is not None else ""))

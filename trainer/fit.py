"""`trainer fit`: data folder -> run folder with a verified model and its reports.

discover (`datasets`) -> decode (`pixels`) -> group near-duplicates (`dedup`) -> split (`split`)
-> phase 1: head on cached backbone features (`features`, default) or the reference recipe on
images (`feature_cache=False`) -> optional phase 2: fine-tune the top N backbone layers -> test
metrics -> model files with the contract (`artifacts`) -> reports (`reports`).

The run is assembled in a hidden folder beside `out` and renamed into place when complete, so a
failed or interrupted run never leaves a half-written run folder, and every user error (bad data,
bad weights) is raised before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
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

from edge.contract import ModelContract
from edge.fileio import write_text_atomic
from edge.metrics import classification_report
from trainer import progress as bars
from trainer.artifacts import save_keras_model
from trainer.config import FitConfig, preflight
from trainer.datasets import Dataset, Sample, require_two_classes
from trainer.dedup import group_samples
from trainer.errors import UserError
from trainer.features import (
    FeatureCache,
    FeatureExtractor,
    backbone_key,
    cache_key,
    default_cache_dir,
    weights_fingerprint,
)
from trainer.model import Classifier, build_classifier, unfreeze_top
from trainer.pixels import Loaded, load_from_sources
from trainer.reports import plot_confusion, plot_curves, report_text, write_history_csv, write_json
from trainer.split import SPLITS, SplitManifest, make_manifest, write_manifest
from trainer.training import class_weights, fit_head, fit_images, predict

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
            show: bool) -> Loaded:
    with bars.task("decoding images", len(samples), show) as advance:
        return load_from_sources(dataset.all_sources(), samples, size, advance=advance)


def _features(extractor: Callable[[], FeatureExtractor], images: np.ndarray, key: str,
              cache: FeatureCache, what: str, show: bool,
              view_seed: int | None = None) -> tuple[np.ndarray, bool]:
    """Cached features of `images` (clean, or one augmented view when view_seed is given)."""
    cached = cache.get(key, len(images))
    if cached is not None:
        return cached, True
    with bars.task(what, len(images), show) as advance:
        feats = (extractor().clean(images, advance) if view_seed is None
                 else extractor().augmented(images, view_seed, advance))
    cache.put(key, feats)
    return feats, False


def _backbone_engine() -> str:
    """LiteRT runs the frozen backbone ~3x faster than TensorFlow on a CPU; a GPU keeps TF."""
    return "tensorflow" if tf.config.list_physical_devices("GPU") else "litert"


def _run_phase1_cached(config: FitConfig, clf: Classifier, contract: ModelContract,
                       images: np.ndarray, y: np.ndarray, split: np.ndarray, fingerprint: str,
                       weight_fp: str, cw: Weights, log_dir: Path,
                       callbacks: Sequence[keras.callbacks.Callback],
                       show: bool) -> tuple[list[dict[str, Any]], dict[str, Any], np.ndarray]:
    cache = FeatureCache(config.cache_dir or default_cache_dir())
    base = {"data": fingerprint, "weights": weight_fp, "size": config.input_size,
            "alpha": config.alpha}
    t0 = time.perf_counter()
    engine = _backbone_engine()
    made: list[FeatureExtractor] = []

    def extractor() -> FeatureExtractor:  # built on the first cache miss only
        if not made:
            tflite = cache.path(backbone_key(weight_fp, config.input_size, config.alpha),
                                suffix=".tflite")
            made.append(FeatureExtractor(clf.features, engine=engine, tflite_path=tflite))
        return made[0]

    feats, hit = _features(extractor, images, cache_key(**base, kind="clean"), cache,
                           "backbone features", show)
    train_idx = np.nonzero(split == "train")[0]
    val_idx = np.nonzero(split == "val")[0]
    x_parts, y_parts = [feats[train_idx]], [y[train_idx]]
    train_key = hashlib.sha256(train_idx.tobytes()).hexdigest()[:16]
    hits = [hit]
    for view in range(config.augment_views):
        view_seed = config.seed * 1000 + view
        key = cache_key(**base, kind="view", train=train_key, view_seed=view_seed)
        view_feats, hit = _features(extractor, images[train_idx], key, cache,
                                    f"augmented view {view + 1}/{config.augment_views}", show,
                                    view_seed=view_seed)
        x_parts.append(view_feats)
        y_parts.append(y[train_idx])
        hits.append(hit)
    feature_seconds = time.perf_counter() - t0
    x_train, y_train = np.concatenate(x_parts), np.concatenate(y_parts)
    if isinstance(cw, np.ndarray):  # per-sample (class x source) weights, repeated per view
        cw = np.tile(cw[train_idx], len(x_parts))
    keras.utils.set_random_seed(config.seed)
    t1 = time.perf_counter()
    rows = fit_head(clf.head, contract, x_train, y_train, feats[val_idx], y[val_idx],
                    learning_rate=config.learning_rate, epochs=config.epochs,
                    batch_size=config.batch_size, patience=config.patience, weights=cw,
                    log_dir=log_dir, verbose=2 if show else 0, callbacks=callbacks)
    info = {"path": "cached-features", "feature_seconds": round(feature_seconds, 2),
            "head_train_seconds": round(time.perf_counter() - t1, 2),
            "feature_cache_hits": sum(hits), "feature_cache_misses": len(hits) - sum(hits),
            "feature_cache_dir": str(cache.directory), "head_train_samples": len(x_train),
            "backbone_engine": engine}
    return rows, info, feats


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
    samples = _limit_samples(dataset.samples, config.limit_per_class, config.seed)
    keras.utils.set_random_seed(config.seed)
    gpus, precision = _gpu_info(config.mixed_precision)
    device = {"gpus": gpus, "precision": precision, "load_average_at_start": round(load_start, 2)}
    contract0 = ModelContract.for_labels(dataset.labels, config.input_size)
    clf = build_classifier(contract0, config.weights, config.alpha)  # WeightsError early
    weight_fp = weights_fingerprint(config.weights, config.seed)
    try:
        return _fit_with(config, dataset, samples, clf, weight_fp, callbacks, device, start,
                         show)
    finally:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")


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
        dataset.root, dataset.format, labels, samples, grouping.groups, config.seed,
        config.val_fraction, config.test_fraction,
        info={"groups": int(grouping.groups.max()) + 1,
              "near_duplicate_pairs": grouping.near_duplicate_pairs,
              "merged_groups": grouping.merged_groups,
              "samples_in_merged_groups": grouping.samples_in_merged_groups,
              "min_face": config.min_face if dataset.format in ("voc", "mixed") else None,
              "limit_per_class": config.limit_per_class,
              "label_map": config.label_map or None,
              "exclude_lists": [str(x) for x in config.exclude_lists] or None})
    manifest.sources = dataset.sources
    return manifest


def _fit_with(config: FitConfig, dataset: Dataset, samples: list[Sample], clf: Classifier,
              weight_fp: str, callbacks: Sequence[keras.callbacks.Callback], device: dict[str, Any],
              start: float, show: bool) -> FitResult:
    """Decode, group and split the samples, then train and write the run (see `fit`)."""
    out = Path(config.out).expanduser()
    size = (config.input_size, config.input_size)
    t_decode = time.perf_counter()
    loaded = _decode(dataset, samples, size, show)
    decode_seconds = time.perf_counter() - t_decode
    skipped = dataset.skipped + loaded.skipped
    present = sorted({s.label for s in loaded.samples})
    require_two_classes(present, dataset.root)
    labels = tuple(x for x in dataset.labels if x in present)
    if labels != dataset.labels:  # a class lost all its images to bad files
        keras.utils.set_random_seed(config.seed)
        clf = build_classifier(ModelContract.for_labels(labels, config.input_size),
                               config.weights, config.alpha)

    grouping = group_samples(loaded.thumbs, [s.source for s in loaded.samples])
    manifest = _split(config, dataset, labels, loaded.samples, grouping)
    fingerprint = data_fingerprint(manifest, loaded.digests)
    manifest.info["data_fingerprint"] = fingerprint
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[s.label] for s in loaded.samples], dtype=np.int64)
    split = np.array([r["split"] for r in manifest.rows])
    train_counts = np.bincount(y[split == "train"], minlength=len(labels))
    cw = class_weights(y[split == "train"], len(labels)) if config.class_weighting else None
    source_w = source_weights(config.source_weights, manifest)
    imbalance = {
        "train_counts": dict(zip(labels, train_counts.tolist(), strict=True)),
        "ratio_largest_to_smallest": round(float(train_counts.max() / max(train_counts.min(), 1)),
                                           3),
        "class_weights": ({labels[i]: round(w, 4) for i, w in cw.items()} if cw else None),
        "source_weights": config.source_weights or None,
    }
    train_text = ", ".join(f"{k}: {v}" for k, v in manifest.counts()["train"].items())
    bars.say(f"{len(loaded.samples)} images of {len(labels)} classes ({train_text} in train); "
             f"{len(skipped)} skipped; {grouping.merged_groups} near-duplicate groups merged "
             f"({grouping.samples_in_merged_groups} images)", show)

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        result = _train_and_write(config, work, out, clf, labels, dataset, loaded, manifest,
                                  fingerprint, y, split, _sample_weights(cw, source_w, y),
                                  imbalance, skipped, grouping_info={
                                      "near_duplicate_pairs": grouping.near_duplicate_pairs,
                                      "merged_groups": grouping.merged_groups,
                                      "samples_in_merged_groups":
                                          grouping.samples_in_merged_groups},
                                  timing={"decode_seconds": round(decode_seconds, 2)},
                                  device=device, start=start, weight_fp=weight_fp,
                                  callbacks=callbacks, show=show)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return result


def _train_and_write(config: FitConfig, work: Path, out: Path, clf: Classifier,
                     labels: tuple[str, ...], dataset: Dataset, loaded: Loaded,
                     manifest: SplitManifest, fingerprint: str, y: np.ndarray, split: np.ndarray,
                     cw: Weights, imbalance: dict[str, Any], skipped: list,
                     grouping_info: dict[str, Any], timing: dict[str, Any],
                     device: dict[str, Any], start: float, weight_fp: str,
                     callbacks: Sequence[keras.callbacks.Callback], show: bool) -> FitResult:
    contract = ModelContract.for_labels(labels, config.input_size)
    write_manifest(manifest, work / "split.json")
    roots = [str(r.resolve()) for r in config.roots()]
    write_json(work / "config.json", {**asdict(config), "data": roots[0] if len(roots) == 1
                                      else roots,
                                      "out": str(out.resolve())})
    write_text_atomic(work / "skipped.txt", "".join(f"{s.path}\t{s.reason}\n" for s in skipped))
    log_dir = work / "tensorboard"
    images = loaded.images

    t_train = time.perf_counter()
    clean_feats = None
    if config.feature_cache:
        history, phase1, clean_feats = _run_phase1_cached(
            config, clf, contract, images, y, split, fingerprint, weight_fp, cw, log_dir,
            callbacks, show)
    else:
        keras.utils.set_random_seed(config.seed)
        t1 = time.perf_counter()
        history = fit_images(clf.model, contract, (images[split == "train"], y[split == "train"]),
                             (images[split == "val"], y[split == "val"]),
                             learning_rate=config.learning_rate, epochs=config.epochs,
                             batch_size=config.batch_size, patience=config.patience,
                             weights=cw if not isinstance(cw, np.ndarray) else None,
                             seed=config.seed, log_dir=log_dir, verbose=2 if show else 0,
                             phase="head", callbacks=callbacks)
        phase1 = {"path": "images (reference recipe)",
                  "image_train_seconds": round(time.perf_counter() - t1, 2)}
    fine_tune: dict[str, Any] | None = None
    if config.fine_tune_layers > 0:
        t2 = time.perf_counter()
        trainable = unfreeze_top(clf.backbone, config.fine_tune_layers)
        keras.utils.set_random_seed(config.seed + 1)
        history += fit_images(clf.model, contract,
                              (images[split == "train"], y[split == "train"]),
                              (images[split == "val"], y[split == "val"]),
                              learning_rate=config.fine_tune_learning_rate,
                              epochs=config.fine_tune_epochs, batch_size=config.batch_size,
                              patience=config.patience, seed=config.seed + 1,
                              weights=cw if not isinstance(cw, np.ndarray) else None,
                              log_dir=log_dir, verbose=2 if show else 0, phase="fine_tune")
        clf.backbone.trainable = False
        fine_tune = {"layers": config.fine_tune_layers, "layers_with_trainable_weights": trainable,
                     "seconds": round(time.perf_counter() - t2, 2)}
        clean_feats = None  # the backbone changed: cached features no longer describe it
    train_seconds = time.perf_counter() - t_train

    test_idx = np.nonzero(split == "test")[0]
    val_idx = np.nonzero(split == "val")[0]
    if clean_feats is not None:
        test_out = predict(clf.head, clean_feats[test_idx])
        val_out = predict(clf.head, clean_feats[val_idx])
        check = test_idx[:CONSISTENCY_SAMPLES]
        full = predict(clf.model, images[check])
        consistency = {"samples": len(check), "max_abs_diff_full_vs_head":
                       float(np.abs(full - test_out[:len(check)]).max()) if len(check) else 0.0}
    else:
        test_out = predict(clf.model, images[test_idx])
        val_out = predict(clf.model, images[val_idx])
        consistency = None
    test_pred = contract.probabilities(test_out).argmax(1)
    val_pred = contract.probabilities(val_out).argmax(1)
    test_report = classification_report(y[test_idx], test_pred, labels)
    val_report = classification_report(y[val_idx], val_pred, labels)
    accuracy = test_report["accuracy"]
    by_source = per_source(manifest, y, test_idx, test_pred)

    per_class = {k: {m: round(v[m], 4) for m in ("precision", "recall", "f1")} | {
        "support": v["support"]} for k, v in test_report["per_class"].items()}
    source = {"split_manifest": "split.json", "data_fingerprint": fingerprint,
              "data": _data_text(dataset), "format": dataset.format,
              "weights": config.weights, "weights_fingerprint": weight_fp,
              "alpha": config.alpha, "seed": config.seed,
              "phase1": phase1["path"], "augment_views": config.augment_views
              if config.feature_cache else None, "fine_tune_layers": config.fine_tune_layers}
    metrics = {"test_accuracy": round(accuracy, 6), "n_test": len(test_idx),
               "val_accuracy": round(val_report["accuracy"], 6), "n_val": len(val_idx),
               "n_train": int((split == "train").sum()), "per_class": per_class,
               "macro_f1": round(test_report["macro"]["f1"], 6)}
    contract = ModelContract.for_labels(labels, config.input_size, source=source, metrics=metrics)
    with _quiet_absl():  # Keras warns that .h5 is "legacy": the project ships it on purpose
        model_h5, model_keras = save_keras_model(clf.model, contract, work)
    write_text_atomic(work / "metadata.json", contract.to_json() + "\n")

    write_history_csv(work / "history.csv", history)
    plot_curves(work / "curves.png", history)
    details = [f"data: {_data_text(dataset)} ({dataset.format}), split: split.json "
               f"(seed {config.seed})",
               f"model: MobileNetV2 alpha {config.alpha}, {config.input_size}x{config.input_size}"
               f", weights {config.weights}, phase 1 on {phase1['path']}"
               + (f", fine-tuned top {config.fine_tune_layers} layers" if fine_tune else ""),
               f"train/val/test images: {metrics['n_train']}/{len(val_idx)}/{len(test_idx)}; "
               f"skipped files: {len(skipped)} (skipped.txt); near-duplicate groups merged: "
               f"{grouping_info['merged_groups']} ({grouping_info['samples_in_merged_groups']} "
               f"images)",
               f"class imbalance (train): {imbalance['train_counts']}, ratio "
               f"{imbalance['ratio_largest_to_smallest']}, class weights "
               f"{imbalance['class_weights']}"]
    text = report_text("Test set", test_report, details) + "\n" + per_source_text(
        by_source) + report_text("Validation set", val_report)
    write_text_atomic(work / "report.txt", text)
    write_json(work / "metrics.json", {"test": test_report, "val": val_report,
                                       "per_source": by_source})
    plot_confusion(work / "confusion_matrix.png", test_report, "test set")

    wall = time.perf_counter() - start
    best = _best_row(history)
    summary = {
        "run_dir": str(out.resolve()), "model_h5": str(out.resolve() / "model.h5"),
        "model_keras": str(out.resolve() / "model.keras"), "labels": list(labels),
        "format": dataset.format, "data": _data_text(dataset),
        "sources": [s.to_json() for s in dataset.all_sources()], "per_source": by_source,
        "test_accuracy": round(accuracy, 6), "test_accuracy_percent": round(100 * accuracy, 2),
        "val_accuracy": round(val_report["accuracy"], 6), "per_class": per_class,
        "counts": manifest.counts(), "skipped": len(skipped),
        "skipped_by_reason": _reasons(skipped), "grouping": grouping_info,
        "imbalance": imbalance, "phase1": phase1, "fine_tune": fine_tune,
        "epochs_run": len(history), "best_epoch": best, "consistency": consistency,
        "data_fingerprint": fingerprint, "device": device,
        "notes": {k: v for k, v in dataset.notes.items()},
        "timing": {**timing, "train_seconds": round(train_seconds, 2),
                   "wall_seconds": round(wall, 2)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": round(os.getloadavg()[0], 2),
                    "tensorflow": tf.__version__, "keras": keras.__version__},
    }
    write_json(work / "summary.json", summary)
    _publish(work, out)
    return FitResult(run_dir=out, model_h5=out / model_h5.name, model_keras=out / model_keras.name,
                     contract=contract, test_accuracy=accuracy, wall_seconds=wall,
                     summary=summary)


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


@contextlib.contextmanager
def _quiet_absl() -> Any:
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _best_row(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in history if "val_loss" in r]
    return min(scored, key=lambda r: r["val_loss"]) if scored else None


def _reasons(skipped: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in skipped:
        kind = s.reason.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _publish(work: Path, out: Path) -> None:
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

"""`trainer fit`: data folder -> run folder with a verified model and its reports.

discover (`trainer.data.datasets`) -> decode (`pixels`) -> group near-duplicates (`dedup`) ->
split (`split`) -> the run's state (`trainer.fit.state.FitRun`, its data in memory or streamed:
`trainer.fit.datapath`) -> phase 1: head on cached backbone features (`features`, default; clean
features first, then with the augmented views added) or the reference recipe on images
(`feature_cache=False`) -> optional phase 2: fine-tune the top N backbone layers (both in
`trainer.fit.phases`) -> test metrics, model files with the contract, reports, publish
(`trainer.fit.publish`).

The run is assembled in a hidden folder beside `out` and renamed into place when complete, so a
failed or interrupted run never leaves a half-written run folder, and every user error (bad data,
bad weights) is raised before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from edge.core import console
from edge.core.contract import ModelContract
from trainer.config import FitConfig, check_usable, preflight
from trainer.data.datasets import Dataset, Sample, Usable
from trainer.data.dedup import group_samples
from trainer.data.split import SplitManifest, make_manifest, redraw_val
from trainer.data.stream import StreamData, should_stream
from trainer.distribute import Cluster, batch_and_rate, make_strategy
from trainer.errors import ClusterError, UserError
from trainer.fit.datapath import InMemory, Streamed
from trainer.fit.features import (
    weights_fingerprint,
)
from trainer.fit.model import Classifier, adjust_prior, build_classifier
from trainer.fit.phases import (
    barrier,
    decode_images,
    run_fine_tune,
    run_phase1,
    scan_images,
)
from trainer.fit.publish import (
    evaluate_run,
    publish_run,
    run_summary,
    worker_result,
    write_inputs,
    write_model,
    write_reports,
)
from trainer.fit.reports import (
    write_json,
)
from trainer.fit.state import Built, FitResult, FitRun, Weights, data_fingerprint
from trainer.fit.training import class_weights

__all__ = ["FitConfig", "FitResult", "fit"]


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


def _gpu_info(mixed_precision: bool) -> tuple[list[str], str]:
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    if mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
        return gpus, "mixed_float16"
    if mixed_precision:
        return gpus, "float32 (--mixed-precision ignored: no GPU)"
    return gpus, "float32"


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
    loaded = (scan_images if streaming else decode_images)(dataset, samples, size, show,
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
                     "skipped": dataset.skipped + loaded.skipped}, data=InMemory())
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
    write_inputs(run)
    t_train = time.perf_counter()
    run.data.prepare(run)  # outside the strategy's scope
    with run.strategy.scope() if run.strategy is not None else contextlib.nullcontext():
        run_phase1(run)
        run_fine_tune(run)
    run.info["timing"]["train_seconds"] = round(time.perf_counter() - t_train, 2)
    _detach(run)
    if not run.cluster.is_chief:
        result = worker_result(run)
        barrier(run)  # stay until the chief has written the run (it checks our heartbeat)
        return result
    _adjust_prior(run)
    evaluation = evaluate_run(run)
    contract = write_model(run, evaluation)
    write_reports(run, evaluation)
    summary = run_summary(run, evaluation)
    shutil.rmtree(run.work / "resume", ignore_errors=True)  # checkpoints of the phases
    write_json(run.work / "summary.json", summary)
    publish_run(run.work, run.out)
    barrier(run)
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
        run.data = Streamed(StreamData(run.dataset.all_sources(), samples, size, c.stream_chunk))


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


def _detach(run: FitRun) -> None:
    """After training under a strategy: the trained weights into the plain copy, used from now."""
    if run.plain is None:
        return
    run.plain.model.set_weights(run.clf.model.get_weights())
    run.clf = run.plain
